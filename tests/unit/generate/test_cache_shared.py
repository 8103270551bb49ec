"""The shared image cache: where it is, reuse across output folders, `cache info` / `cache prune`,
and prune never deleting an image a running audit uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.common.files import default_cache_root
from copyscope.generate.cache_admin import cache_info, live_leases, parse_age, parse_size, prune_cache
from copyscope.cli import app
from copyscope.config import load_zoo
from copyscope.common.errors import CopyscopeError

from helpers.cache_entries import aged_entries
from helpers.subprocess_audit import cli_env
from helpers.zoo import make_zoo_file

from helpers.paths import REPO
runner = CliRunner()
DAY = 86400.0


def test_default_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("COPYSCOPE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "copyscope"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "copyscope"
    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "env"))
    assert default_cache_root() == tmp_path / "env"
    # the zoo's `cache:` key beats the environment; without it the zoo uses the shared cache
    zoo = tmp_path / "zoo.yaml"
    base = ("bases: [{name: b, model: m}]\nreferences: [{name: w, paths: [r]}]\n"
            "prompts: [{name: p, text: t}]\n")
    zoo.write_text(base)
    assert load_zoo(zoo).cache_dir == tmp_path / "env"
    zoo.write_text(base + "cache: mine\n")
    assert load_zoo(zoo).cache_dir == (tmp_path / "mine").resolve()


def test_prune_by_age_and_size_and_info(tmp_path):
    root = tmp_path / "c"
    old = aged_entries(root, 3, age=10 * DAY)
    info = cache_info(root)
    assert info["images"] == 3 and info["bytes"] > 0
    assert prune_cache(root, older_than=30 * DAY)["deleted"] == 0
    r = prune_cache(root, older_than=5 * DAY, dry_run=True)
    assert r["deleted"] == 3 and all(ImageCache(root).path(k).exists() for k in old)
    r = prune_cache(root, older_than=5 * DAY)
    assert r["deleted"] == 3 and r["freed_bytes"] == info["bytes"]
    assert not any(ImageCache(root).path(k).exists() for k in old)
    assert not list((root / "features").rglob("*.npy"))
    # by size: the least recently used go first
    keys = aged_entries(root, 4, age=3 * DAY)
    for i, k in enumerate(keys):  # key i last used i hours after the others
        t = time.time() - 3 * DAY + i * 3600
        for f in (ImageCache(root).path(k), ImageCache(root).path(k).with_suffix(".json")):
            os.utime(f, (t, t))
    size = cache_info(root)["bytes"]
    two_oldest = sum(f.stat().st_size for k in keys[:2] for f in root.rglob(f"{k}.*"))
    r = prune_cache(root, max_size=size - two_oldest)
    assert r["deleted"] == 2 and r["bytes_left"] == size - two_oldest
    assert [ImageCache(root).path(k).exists() for k in keys] == [False, False, True, True]


def test_size_and_age_parsing():
    assert parse_size("500MB") == 500 * 10**6 and parse_size("2GiB") == 2 * 2**30
    assert parse_size("1000") == 1000
    assert parse_age("30d") == 30 * DAY and parse_age("90m") == 5400 and parse_age("2w") == 14 * DAY
    with pytest.raises(CopyscopeError, match="--max-size: expected a size"):
        parse_size("lots")
    with pytest.raises(CopyscopeError, match="--older-than: expected an age"):
        parse_age("3x")
    with pytest.raises(CopyscopeError, match="say what to prune"):
        prune_cache("/nonexistent")


HOLDER = """
import sys
from copyscope.generate.cache import ImageCache
cache = ImageCache(sys.argv[1])
assert all(cache.has(k) for k in sys.argv[2:])  # uses them, like an audit's cache check
print("ready", flush=True)
sys.stdin.readline()
for k in sys.argv[2:]:
    cache.load(k)  # still there
print("done", flush=True)
"""


def test_prune_keeps_what_a_running_process_uses(tmp_path):
    root = tmp_path / "c"
    keys = aged_entries(root, 6, age=10 * DAY)
    used = keys[:2]
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), *used], env=cli_env(), cwd=REPO,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        assert len(live_leases(root)) >= 1
        r = prune_cache(root, older_than=DAY)  # used just now: not old any more
        assert r["deleted"] == 4 and all(ImageCache(root).path(k).exists() for k in used)
        r = prune_cache(root, max_size=0)  # even "delete everything" keeps them
        assert r["deleted"] == 0 and r["kept_in_use"] == 2
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "done"
    finally:
        p.stdin.close()
        assert p.wait(timeout=60) == 0
    # the process has ended: its lease is dead, removed by the next prune, and nothing is protected
    for k in used:
        for f in (ImageCache(root).path(k), ImageCache(root).path(k).with_suffix(".json")):
            os.utime(f, (time.time() - 10 * DAY,) * 2)
    r = prune_cache(root, older_than=DAY)
    assert r["deleted"] == 2 and r["kept_in_use"] == 0
    assert not any(x["pid"] == p.pid for x in live_leases(root))
    assert not any(str(p.pid) in f.name for f in (root / "leases").glob("*.json"))


@pytest.fixture(scope="module")
def zoo(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shared")
    return make_zoo_file(tmp, tiny_models, loras=1, controlnet=False, metrics=["dhash", "histogram"],
                         estimator={"bootstrap": 20})


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_audit_into_another_out_generates_nothing(zoo, tmp_path, monkeypatch):
    root = tmp_path / "user-cache"
    monkeypatch.setenv("COPYSCOPE_CACHE", str(root))
    r = runner.invoke(app, ["audit", str(zoo), "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    first = json.loads((tmp_path / "a" / "report.json").read_text())
    assert first["generation"]["generated"] == 4 and first["cache_dir"] == str(root.resolve())
    assert not (tmp_path / "a" / "cache").exists()
    r = runner.invoke(app, ["audit", str(zoo), "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    second = json.loads((tmp_path / "b" / "report.json").read_text())
    assert second["generation"]["generated"] == 0 and second["generation"]["cached"] == 4
    assert second["games"][0]["metrics"]["dhash"]["shapley"] == first["games"][0]["metrics"]["dhash"]["shapley"]
    r = runner.invoke(app, ["cache", "info", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["images"] == 4
    r = runner.invoke(app, ["cache", "prune", "--older-than", "3x"])
    assert r.exit_code == 2 and "--older-than" in r.output


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_prune_during_a_running_audit_never_deletes_its_images(zoo, tmp_path):
    """A real audit in a subprocess while this process prunes down to size 0 in a loop: stale
    entries of an earlier run go, the audit finishes, and every image it reports is still there."""
    root = tmp_path / "user-cache"
    stale = aged_entries(root, 3, age=10 * DAY)
    env = cli_env()
    env["COPYSCOPE_CACHE"] = str(root)
    p = subprocess.Popen([sys.executable, "-m", "copyscope.cli", "audit", str(zoo), "--out", str(tmp_path / "o")],
                         env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    kept, stop = [], threading.Event()

    def prune_loop():
        while not stop.is_set():
            kept.append(prune_cache(root, max_size=0)["kept_in_use"])
            time.sleep(0.05)

    t = threading.Thread(target=prune_loop)
    t.start()
    try:
        out, _ = p.communicate(timeout=400)
    finally:
        stop.set()
        t.join()
    assert p.returncode == 0, out.decode(errors="replace")[-3000:]
    assert not any(ImageCache(root).path(k).exists() for k in stale)
    assert max(kept) > 0  # prune ran while the audit had images in use
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["generation"]["generated"] == 4
    cache = ImageCache(root)
    assert all(cache.has(k) for keys in report["games"][0]["images"].values() for k in keys)
