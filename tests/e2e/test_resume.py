"""Interruption: an audit killed with SIGKILL at any point resumes where it stopped when rerun, never
reads a half-written image or score, and ends with the same report (bit-identical coalition and
Shapley values) as an uninterrupted run.

The audits run as subprocesses (``python -m copyscope.cli audit``) on a small zoo over the tiny
models: 2 LoRAs, 4 coalitions x 3 seeds = 12 images in chunks of 2 (batch_size 2), so a kill can
also land between the two images of one batch. Every subprocess runs torch with the same thread
count (1): CPU kernels may round differently with another thread count, and that is not part of an
image's cache key (docs/robustness.md).

The subprocess harness it shares with the concurrency and determinism tests is tests/helpers/subprocess_audit.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache

from helpers.subprocess_audit import (
    N_IMAGES,
    THREADS,
    _flat,
    count_images,
    finish,
    run_audit_subprocess,
    start_audit,
    values,
    workspace,
)

pytestmark = pytest.mark.slow  # subprocess audits or hundreds of CLI runs (pyproject: markers)

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
