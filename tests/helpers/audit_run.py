"""Shared, once-per-session audit + ablation on the tiny models for tests/unit/report/test_report_html.py and
tests/unit/analyses/test_ablate.py (imported by both, so the ~40 s audit runs once)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from helpers.zoo import make_zoo_file

runner = CliRunner()
N_SEEDS = 3
_STATE: dict = {}


def audited_and_ablated(tiny_models: dict, tmp_path_factory) -> dict:
    """`copyscope audit` then `copyscope ablate` on a 2-LoRA zoo with 3 seeds (4 coalitions x 3 images)."""
    if _STATE:
        return _STATE
    from copyscope.cli import app

    tmp = tmp_path_factory.mktemp("report_audit")
    zoo = make_zoo_file(
        tmp, tiny_models, loras=2, controlnet=False,
        generation={"resolution": 32, "steps": 1, "guidance": 3.0, "seeds": N_SEEDS, "batch_size": N_SEEDS, "scheduler": "ddim"},
        metrics=["ssim", "dhash", "histogram", "cosine"],
    )
    # ground truth in the demo zoo's format; its component name differs from the player name on purpose:
    # the ablation must map it to the player through the LoRA file it names
    lora1 = Path(tiny_models["loras"][1]).resolve()
    (tmp / "ground_truth.json").write_text(json.dumps({
        "format": "copyscope-demo-ground-truth/1",
        "planted_infringer": "memoriser",
        "references": {"work": {"paths": ["refs"], "trained_into": ["memoriser"]}},
        "components": {"loras": {"memoriser": {"file": str(lora1), "role": "planted_infringer"}}},
    }))
    out = tmp / "out"
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    html_audit = (out / "report.html").read_bytes()
    report = json.loads((out / "report.json").read_text())
    r2 = runner.invoke(app, ["ablate", str(zoo)])
    assert r2.exit_code == 0, r2.output
    _STATE.update(
        tmp=tmp, zoo=zoo, out=out, report=report, html_audit=html_audit, ablate_output=r2.output,
        report_after=json.loads((out / "report.json").read_text()),
        ablation=json.loads((out / "ablation.json").read_text()),
        html=(out / "report.html").read_text(encoding="utf-8"),
    )
    return _STATE
