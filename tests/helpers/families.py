"""What the pipeline-family tests share (tests/e2e/test_families*.py): one error line, and the rerun of an audit."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner


def one_error_line(result) -> str:
    """The one line a refused command printed (exit 2)."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def assert_rerun_generates_nothing(zoo: Path, out: Path, game: dict, images: int) -> None:
    """The same audit again: nothing generated, every one of ``images`` from the cache, the same Shapley values."""
    from copyscope.cli import app

    second = CliRunner().invoke(app, ["audit", str(zoo)])
    assert second.exit_code == 0, second.output
    rerun = json.loads((out / "report.json").read_text())
    assert rerun["generation"]["generated"] == 0 and rerun["generation"]["cached"] == images
    assert rerun["games"][0]["metrics"]["ssim"]["shapley"] == game["metrics"]["ssim"]["shapley"]
