"""Audits as subprocesses (``python -m copyscope.cli audit``) over the tiny models, shared by test_resume.py,
test_concurrency.py, test_determinism.py and test_cache_shared.py: the environment, start / finish, one
uninterrupted solo run per session (``workspace``), and what two reports must agree on."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from helpers.zoo import make_zoo_file

REPO = Path(__file__).resolve().parents[2]
THREADS = 1
N_IMAGES = 12  # 4 coalitions x 3 seeds

def cli_env() -> dict:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS=str(THREADS),
        MKL_NUM_THREADS=str(THREADS),
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.pop("COPYSCOPE_PROGRESS", None)
    return env


def audit_argv(zoo: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "copyscope.cli", "audit", str(zoo), "--out", str(out)]


def start_audit(zoo: Path, out: Path, log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    f = open(log, "wb")
    env = cli_env()
    env["COPYSCOPE_CACHE"] = str(out / "cache")  # each output folder its own cache (unless `cache:`)
    p = subprocess.Popen(audit_argv(zoo, out), env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    p._log_file = f  # closed by finish()
    return p


def finish(p: subprocess.Popen, timeout: float = 300) -> int:
    try:
        return p.wait(timeout=timeout)
    finally:
        p._log_file.close()


def run_audit_subprocess(zoo: Path, out: Path, timeout: float = 300) -> dict:
    log = out.parent / f"{out.name}.log"
    rc = finish(start_audit(zoo, out, log), timeout)
    assert rc == 0, log.read_text(errors="replace")[-3000:]
    return json.loads((out / "report.json").read_text())


VOLATILE = {"time_utc", "wall_seconds", "seconds", "output_dir", "cache_dir"}


def comparable(report: dict) -> dict:
    """The report minus what legitimately differs between two runs of one zoo file: timestamps,
    durations and the output / cache folders."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE and not k.endswith("_seconds")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(copy.deepcopy(report))


def values(report: dict) -> dict:
    """Coalition values and Shapley values (with intervals and p-values) of every game and metric."""
    return {
        g["base"]: {name: {"coalitions": m["coalitions"], "shapley": m["shapley"]} for name, m in g["metrics"].items()}
        for g in report["games"]
    }


def _flat(tree, prefix: str = "") -> dict:
    """A nested report fragment as {path: leaf}, so pytest.approx can compare its numbers."""
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}/{key}").items()}
    if isinstance(tree, list):
        return {k: v for i, sub in enumerate(tree) for k, v in _flat(sub, f"{prefix}[{i}]").items()}
    return {prefix: tree}


_WORKSPACE: dict = {}


def workspace(tiny_models: dict, tmp_path_factory) -> dict:
    """Once per session: the zoo files and an uninterrupted solo run to compare against.

    ``zoo``: no ``cache:`` key (each output folder holds its own cache); ``shared_zoo``: the same
    zoo with ``cache: <dir>/shared-cache``. ``solo``: the report of ``zoo`` run uninterrupted.
    """
    if not _WORKSPACE:
        root = tmp_path_factory.mktemp("resume_ws")
        zoo = make_zoo_file(
            root,
            tiny_models,
            loras=2,
            controlnet=False,
            generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 3, "batch_size": 2, "scheduler": "ddim"},
            metrics=["ssim", "dhash", "histogram"],
            estimator={"bootstrap": 20},
        )
        data = yaml.safe_load(zoo.read_text())
        data["cache"] = str(root / "shared-cache")
        shared = root / "zoo-shared.yaml"
        shared.write_text(yaml.safe_dump(data, sort_keys=False))
        t0 = time.perf_counter()
        solo = run_audit_subprocess(zoo, root / "solo")
        _WORKSPACE.update(root=root, zoo=zoo, shared_zoo=shared, solo=solo, solo_out=root / "solo", solo_seconds=time.perf_counter() - t0)
        assert solo["generation"]["generated"] == N_IMAGES
    return _WORKSPACE


def count_images(cache_root: Path) -> int:
    """Complete entries: a sidecar is written last, after its PNG."""
    return len(list((cache_root / "images").glob("*/*.json")))
