"""Concurrency: two audits sharing one cache folder (same ``cache:`` key, different output folders)
run at the same time; both finish, and both reports equal a solo run's. They write identical bytes
under identical names with atomic renames, so neither can read the other's half-written file."""

from __future__ import annotations

import json

import pytest

from copyscope.generate.cache import ImageCache

from helpers.subprocess_audit import N_IMAGES, count_images, finish, start_audit, values, workspace

pytestmark = pytest.mark.slow  # subprocess audits (pyproject: markers)


def test_two_audits_share_one_cache_at_the_same_time(tiny_models, tmp_path_factory):
    ws = workspace(tiny_models, tmp_path_factory)
    root = ws["root"]
    outs = [root / "concurrent-a", root / "concurrent-b"]
    procs = [start_audit(ws["shared_zoo"], out, root / f"{out.name}.log") for out in outs]
    rcs = [finish(p) for p in procs]
    for out, rc in zip(outs, rcs):
        assert rc == 0, (root / f"{out.name}.log").read_text(errors="replace")[-3000:]

    reports = [json.loads((out / "report.json").read_text()) for out in outs]
    shared = root / "shared-cache"
    assert count_images(shared) == N_IMAGES
    assert not any((out / "cache").exists() for out in outs)  # the cache: key was honoured
    cache = ImageCache(shared)
    for r in reports:
        gen = r["generation"]
        assert gen["generated"] + gen["cached"] == N_IMAGES
        assert values(r) == values(ws["solo"])
        assert r["games"][0]["images"] == ws["solo"]["games"][0]["images"]
        assert r["games"][0]["flagged_images"] == {}
    for keys in reports[0]["games"][0]["images"].values():
        assert all(cache.has(k) for k in keys)
    # no temporary file is left behind by two clean runs
    assert not [p for p in shared.rglob("*.tmp")]
