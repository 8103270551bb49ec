"""The one-call GPU benchmark (bench/gpu/run.sh) run end to end on the CPU in its smoke mode: the same three runs
(SD1.5-, SDXL- and Flux-sized pipeline code, tiny models, 2 steps), each audit against bare diffusers, and the
table the README would quote. On a GPU the same script builds the full-size random models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO


@pytest.mark.slow
def test_gpu_benchmark_runs_end_to_end_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", str(REPO / "bench" / "gpu" / "run.sh"), "--smoke", str(out)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    logs = {p.name: p.read_text()[-2000:] for p in out.glob("*.log")}
    assert r.returncode == 0, (r.stdout, logs)
    table = (out / "table.md").read_text().splitlines()
    rows = [line.split("|")[1:-1] for line in table if line.startswith("| ") and not line.startswith("| family")]
    assert [cells[0].strip() for cells in rows] == ["sd15", "sdxl", "flux"]
    for cells in rows:
        bare, audit, ratio = (float(cells[i]) for i in (5, 6, 7))
        # every run generated images on both sides and timed them (the ratio is the two times' quotient)
        assert bare > 0 and audit > 0
        assert ratio == pytest.approx(bare / audit, rel=0.05, abs=0.01)
    assert any(line.startswith("machine: ") and "no GPU" in line for line in table)
