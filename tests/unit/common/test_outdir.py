"""Output folders belong to copyscope (issue 19): a manifest marks them; a non-empty folder that is
not copyscope's is refused; a file the manifest does not list is never overwritten; a run's files
are staged and swapped in at the end, so an interrupted or failed run leaves the previous result
byte-identical (plus a line saying so); every OSError on the output or the cache is one line.

The audits here run with the engine's ``generate`` replaced by a deterministic stub (no model is
loaded), so the module takes seconds.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.common.outdir import MANIFEST, STAGING_PREFIX

from helpers.paths import REPO
from helpers.cli_errors import _stub_generate, _text, assert_one_line_error, snapshot, zoo_data

runner = CliRunner()
AUDIT_FILES = {"report.json", "report.html", "coalitions.csv", "attribution.csv", "per_seed.csv", "plan.json", "zoo.resolved.json"}


@pytest.fixture
def stubbed(monkeypatch):
    from copyscope.generate import CoalitionEngine

    monkeypatch.setattr(CoalitionEngine, "generate", _stub_generate(False))
    return monkeypatch


@pytest.fixture
def zoo(tiny_models, tmp_path) -> Path:
    data = zoo_data(tmp_path, {"root": tmp_path, **tiny_models})
    data["metrics"] = ["dhash"]
    path = tmp_path / "zoo.yaml"
    path.write_text(_text(data))
    return path


def _audit_ok(zoo: Path, *extra: str) -> Path:
    result = runner.invoke(app, ["audit", str(zoo), *extra])
    assert result.exit_code == 0, result.output
    return zoo.parent / "out"


def _manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())


def test_audit_writes_a_manifest_and_may_rerun_into_its_folder(stubbed, zoo):
    out = _audit_ok(zoo)
    m = _manifest(out)
    assert set(m["files"]) == AUDIT_FILES and m["last_run"]["status"] == "complete"
    first_run = m["last_run"]["run"]
    assert not list(out.glob(f"{STAGING_PREFIX}*"))
    _audit_ok(zoo)  # its own folder: allowed, files replaced, manifest updated
    m2 = _manifest(out)
    assert m2["last_run"]["run"] != first_run and set(m2["files"].values()) == {m2["last_run"]["run"]}


def test_non_copyscope_folder_is_refused_and_untouched(stubbed, zoo, tmp_path):
    """`output: .` beside the zoo file (named like one of copyscope's files): refused, nothing written."""
    folder = tmp_path / "mine"
    folder.mkdir()
    own = folder / "plan.json"
    own.write_text(zoo.read_text().replace(f"output: {tmp_path / 'out'}", "output: ."))
    before = snapshot(folder)
    result = runner.invoke(app, ["audit", str(own)])
    assert_one_line_error(result, r"plan\.json:\d+: output: .*mine: is not empty and is not a copyscope output folder "
                                  r"\(no \.copyscope-output\.json\); .*choose another output folder")
    assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == ["plan.json"]


def test_file_not_written_by_copyscope_is_never_overwritten(stubbed, zoo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"copyscope": 1, "files": {}}))  # a run that never finished
    (out / "report.html").write_text("my own notes\n")
    result = runner.invoke(app, ["audit", str(zoo)])
    assert_one_line_error(result, r"output: .*out: report\.html in the output folder was not written by copyscope "
                                  r"\(not in \.copyscope-output\.json\); move it away or choose another output folder")
    assert (out / "report.html").read_text() == "my own notes\n"
    assert not (out / "report.json").exists()


def test_folder_from_before_manifests_is_adopted(stubbed, zoo, tmp_path):
    out = _audit_ok(zoo)
    (out / MANIFEST).unlink()  # as written by a copyscope without manifests
    _audit_ok(zoo)
    assert set(_manifest(out)["files"]) == AUDIT_FILES


def test_interrupted_audit_leaves_the_previous_result_and_says_so(stubbed, zoo, tmp_path):
    from copyscope.generate import CoalitionEngine

    out = _audit_ok(zoo)
    before = {k: v for k, v in snapshot(out).items() if not k.startswith(("cache", MANIFEST))}
    zoo.write_text(zoo.read_text().replace("seeds: 2", "seeds: 3"))  # the new run would change every file

    def interrupted(self, members, items):
        raise KeyboardInterrupt

    stubbed.setattr(CoalitionEngine, "generate", interrupted)
    result = runner.invoke(app, ["audit", str(zoo)])
    assert result.exit_code == 130, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: audit interrupted; the previous result in ") and "is unchanged" in lines[-1], result.output
    assert "Traceback" not in result.output
    after = {k: v for k, v in snapshot(out).items() if not k.startswith(("cache", MANIFEST))}
    assert after == before
    assert not list(out.glob(f"{STAGING_PREFIX}*"))
    assert _manifest(out)["last_attempt"]["status"] == "interrupted"
    # the folder then says so whenever its views are rebuilt
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "note: the last run here (audit, " in result.output and "did not finish (interrupted)" in result.output


def test_failed_audit_after_start_leaves_the_previous_result(stubbed, zoo):
    from copyscope.generate import CoalitionEngine
    from copyscope.common.errors import CopyscopeError

    out = _audit_ok(zoo)
    before = {k: v for k, v in snapshot(out).items() if not k.startswith(("cache", MANIFEST))}
    zoo.write_text(zoo.read_text().replace("seeds: 2", "seeds: 3"))

    def failing(self, members, items):
        raise CopyscopeError("the GPU fell over", where="somewhere")

    stubbed.setattr(CoalitionEngine, "generate", failing)
    assert_one_line_error(runner.invoke(app, ["audit", str(zoo)]), r"somewhere: the GPU fell over")
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(("cache", MANIFEST))} == before
    assert _manifest(out)["last_attempt"]["status"].startswith("failed: somewhere: the GPU fell over")


def test_output_folder_that_cannot_be_created(stubbed, zoo):
    result = runner.invoke(app, ["audit", str(zoo), "--out", "/dev/null/x"])
    assert_one_line_error(result, r"^error: /dev/null/x: cannot write \(Not a directory\); a file stands where a folder is needed")


def test_permission_denied_on_the_output_is_one_line_and_keeps_the_previous_result(stubbed, zoo):
    """As root, chmod does not stop writes: the refusal is simulated at os.replace."""
    import copyscope.common.outdir as outdir

    out = _audit_ok(zoo)
    before = {k: v for k, v in snapshot(out).items() if not k.startswith(("cache", MANIFEST))}

    def denied(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    stubbed.setattr(outdir.os, "replace", denied)
    result = runner.invoke(app, ["audit", str(zoo)])
    assert_one_line_error(result, r"out/report\.json: cannot write \(Permission denied\); make it writable or choose another output folder")
    stubbed.undo()
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(("cache", MANIFEST))} == before


def test_cache_folder_not_writable_is_one_line(stubbed, zoo, tmp_path):
    data = zoo.read_text() + f"cache: {tmp_path / 'cache-file' / 'sub'}\n"
    (tmp_path / "cache-file").write_text("a file where the cache's parent should be\n")
    zoo.write_text(data)
    result = runner.invoke(app, ["audit", str(zoo)])
    assert_one_line_error(result, r"cache-file/sub(/\S+)?: cannot write \(Not a directory\); .*choose another cache folder")


def test_full_disk_is_one_line_and_keeps_the_previous_result(zoo, tmp_path):
    """A real write failure: the audit runs in a child process whose file-size limit (ulimit -f)
    is too small for its report; Python ignores SIGXFSZ, so the write fails with EFBIG."""
    script = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(REPO / 'tests')!r})
        from copyscope.generate import CoalitionEngine
        from helpers.cli_errors import _stub_generate
        CoalitionEngine.generate = _stub_generate(False)
        if sys.argv[1] == "small":
            resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))
        from copyscope.cli import app
        sys.argv = ["copyscope", "audit", {str(zoo)!r}]
        app()
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    ok = subprocess.run([sys.executable, "-c", script, "big"], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    out = tmp_path / "out"
    before = {k: v for k, v in snapshot(out).items() if not k.startswith(("cache", MANIFEST))}
    zoo.write_text(zoo.read_text().replace("seeds: 2", "seeds: 3"))
    full = subprocess.run([sys.executable, "-c", script, "small"], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in (full.stdout + full.stderr).splitlines() if line.strip()]
    assert full.returncode == 2, full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    assert lines[-1].startswith("error: ") and "cannot write (File too large); free disk space" in lines[-1], lines
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(("cache", MANIFEST))} == before


def test_folder_holding_only_copyscopes_own_subfolders_is_accepted(stubbed, zoo, tmp_path):
    """`reward-split` or `imitation` run before the audit leave <output>/cache and their subfolder."""
    out = tmp_path / "out"
    (out / "cache" / "images").mkdir(parents=True)
    (out / "reward-split").mkdir()
    _audit_ok(zoo)
    assert set(_manifest(out)["files"]) == AUDIT_FILES
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "reward-split").write_text("a file, not copyscope's subfolder\n")
    result = runner.invoke(app, ["audit", str(zoo), "--out", str(tmp_path / "other")])
    assert_one_line_error(result, r"--out .*other: is not empty and is not a copyscope output folder")


def test_a_swap_stopped_halfway_is_reported(tmp_path):
    """The manifest says a swap was under way; `report` and the note say the files may be mixed."""
    from copyscope.common.outdir import interrupted_note

    (tmp_path / MANIFEST).write_text(json.dumps({"copyscope": 1, "files": {}, "committing": "2026-01-01 abc"}))
    note = interrupted_note(tmp_path)
    assert note and "stopped while its files were being moved in" in note and "2026-01-01 abc" in note
    (tmp_path / MANIFEST).write_text(json.dumps({"copyscope": 1, "files": {}}))
    assert interrupted_note(tmp_path) is None


def test_a_manifest_that_is_not_copyscopes_is_refused(stubbed, zoo, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text("[1, 2, 3]\n")
    assert_one_line_error(runner.invoke(app, ["audit", str(zoo)]),
                          r"out/\.copyscope-output\.json: is not a copyscope manifest; move it away or choose another output folder")
    assert (out / MANIFEST).read_text() == "[1, 2, 3]\n"


def test_a_swap_that_fails_halfway_stays_visible(stubbed, zoo):
    """The disk fills up between two moves of the swap: one line, and the manifest keeps saying
    that the folder's files may be from two runs until an audit completes."""
    import copyscope.common.outdir as outdir
    from copyscope.common.outdir import interrupted_note

    out = _audit_ok(zoo)
    real_replace = os.replace

    def replace(src, dst):
        moving_in = Path(src).parent.name.startswith(STAGING_PREFIX) and not Path(dst).parent.name.startswith(STAGING_PREFIX)
        if moving_in and Path(dst).name == "report.html":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    stubbed.setattr(outdir.os, "replace", replace)
    result = runner.invoke(app, ["audit", str(zoo)])
    assert_one_line_error(result, r"out/report\.html: cannot write \(No space left on device\); free disk space")
    stubbed.setattr(outdir.os, "replace", real_replace)
    assert "committing" in _manifest(out)
    assert "stopped while its files were being moved in" in interrupted_note(out)
    _audit_ok(zoo)
    assert "committing" not in _manifest(out) and interrupted_note(out) is None
