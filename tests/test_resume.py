"""Interruption: an audit killed with SIGKILL at any point resumes where it stopped when rerun, never
reads a half-written image or score, and ends with the same report (bit-identical coalition and
Shapley values) as an uninterrupted run.

The audits run as subprocesses (``python -m copyscope.cli audit``) on a small zoo over the tiny
models: 2 LoRAs, 4 coalitions x 3 seeds = 12 images in chunks of 2 (batch_size 2), so a kill can
also land between the two images of one batch. Every subprocess runs torch with the same thread
count (1): CPU kernels may round differently with another thread count, and that is not part of an
image's cache key (docs/robustness.md).

This module also holds the harness the concurrency and determinism tests share (``workspace``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from copyscope.cache import ImageCache

from zoo_helpers import make_zoo_file

REPO = Path(__file__).resolve().parents[1]
THREADS = 1
N_IMAGES = 12  # 4 coalitions x 3 seeds

# -- harness (shared with test_concurrency.py and test_determinism.py) ---------------------------


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


# -- tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tiny_models, tmp_path_factory):
    return workspace(tiny_models, tmp_path_factory)


def _kill_when(p: subprocess.Popen, predicate, timeout: float = 240) -> bool:
    """SIGKILL ``p`` as soon as ``predicate()`` holds; False if it exited first."""
    deadline = time.monotonic() + timeout
    while p.poll() is None:
        if predicate():
            os.kill(p.pid, signal.SIGKILL)
            finish(p)
            return True
        assert time.monotonic() < deadline, "audit neither reached the kill point nor finished"
        time.sleep(0.02)
    finish(p)
    return False


def test_sigkill_at_any_point_then_resume_gives_identical_report(ws):
    out = ws["root"] / "killed"
    cache = out / "cache"
    t_start = [0.0]

    stages = [
        ("during start-up (imports, model loading)", lambda: time.monotonic() - t_start[0] > 1.0),
        ("after 3 images", lambda: count_images(cache) >= 3),
        ("after 8 images", lambda: count_images(cache) >= 8),
        ("after the last image, while scoring", lambda: count_images(cache) >= N_IMAGES),
    ]
    seen = []
    for i, (label, predicate) in enumerate(stages):
        before = count_images(cache) if cache.exists() else 0
        t_start[0] = time.monotonic()
        p = start_audit(ws["zoo"], out, ws["root"] / f"killed-{i}.log")
        killed = _kill_when(p, predicate)
        after = count_images(cache) if cache.exists() else 0
        seen.append((label, killed, before, after))
        if i in (1, 2):  # far from the end: these must be real kills mid-generation
            assert killed and after < N_IMAGES, seen
        assert after >= before, seen  # a restart never loses finished images
        assert not (out / "report.json").exists() or not killed
    before_final = count_images(cache)
    report = run_audit_subprocess(ws["zoo"], out)

    # resumed where it stopped: only the missing images were generated
    assert report["generation"]["generated"] == N_IMAGES - before_final, seen
    assert report["generation"]["generated"] + report["generation"]["cached"] == N_IMAGES
    # ... and the result is bit-identical to the uninterrupted run
    assert values(report) == values(ws["solo"]), seen
    assert report["games"][0]["images"] == ws["solo"]["games"][0]["images"]
    # every cache entry the report uses is complete and intact, byte-identical to the solo run's
    solo_cache, c = ImageCache(ws["solo_out"] / "cache"), ImageCache(cache)
    for keys in report["games"][0]["images"].values():
        for k in keys:
            assert c.has(k)
            assert c.path(k).read_bytes() == solo_cache.path(k).read_bytes()


def test_corrupt_cache_entries_are_regenerated_not_read(ws, tmp_path, monkeypatch):
    """A truncated PNG, a sidecar with a wrong hash and a truncated score file are regenerated /
    recomputed; the report equals the clean run's."""
    import torch

    from copyscope.cli import app

    out = tmp_path / "out"
    monkeypatch.setenv("COPYSCOPE_CACHE", str(out / "cache"))
    shutil.copytree(ws["solo_out"], out)
    (out / "report.json").unlink()
    cache = ImageCache(out / "cache")
    keys = ws["solo"]["games"][0]["images"]
    k_png, k_meta = keys["lora0"][0], keys["lora0+lora1"][2]
    original = {k: cache.path(k).read_bytes() for k in (k_png, k_meta)}

    png = cache.path(k_png)
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])  # a torn write
    meta = png.with_suffix(".json")
    meta_path = cache.path(k_meta).with_suffix(".json")
    info = json.loads(meta_path.read_text())
    info["png_sha256"] = "0" * 64  # a sidecar that does not match its PNG
    meta_path.write_text(json.dumps(info))
    assert not cache.has(k_png) and not cache.has(k_meta) and meta.exists()
    # a torn score file for another image: must be recomputed, not read
    k_score = keys[""][1]
    rows = sorted(p for p in (out / "cache" / "features").rglob(f"{k_score}.npy"))
    assert rows
    for r in rows:
        r.write_bytes(r.read_bytes()[:20])

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)  # the solo run's thread count, for bit-identical pixels
    try:
        result = CliRunner().invoke(app, ["audit", str(ws["zoo"]), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["generation"]["generated"] == 2
    assert cache.has(k_png) and cache.has(k_meta)
    for k, data in original.items():
        assert cache.path(k).read_bytes() == data
    for r in rows:
        assert np.load(r, allow_pickle=False).size > 0
    # a recomputed feature file may differ from the original by one ulp (another batch shape), and
    # the leave-one-seed-out intervals carry that into their last digits: equal to 1e-12, not bitwise
    got, want = _flat(values(report)), _flat(values(ws["solo"]))
    assert got.keys() == want.keys()
    numbers = {k for k, v in want.items() if isinstance(v, float)}
    assert {k: got[k] for k in numbers} == pytest.approx({k: want[k] for k in numbers}, rel=1e-12, abs=1e-15)
    assert {k: got[k] for k in got.keys() - numbers} == {k: want[k] for k in want.keys() - numbers}
