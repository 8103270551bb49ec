"""The audit's intervals are rechecked from what it writes: per_seed.csv, report.json, warnings."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from copyscope.audit import audit_zoo
from copyscope.estimate.shapley.bounded import bounded_seed_inference, claim
from copyscope.estimate.shapley.inference import MIN_SEEDS, seed_inference
from helpers.zoo import make_zoo_file


@pytest.fixture(scope="module")
def audited(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stats_audit")
    zoo = make_zoo_file(tmp, tiny_models, loras=2, controlnet=False, metrics=["dhash", "cosine", "kid_pixels"],
                        generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 4, "batch_size": 4,
                                    "scheduler": "ddim"})
    report = audit_zoo(zoo)
    return report, tmp / "out"


def test_every_interval_and_p_value_is_rechecked_from_per_seed_csv(audited):
    report, out = audited
    s = report["settings"]
    assert s["intervals"] == "jackknife" and s["n_seeds"] == 4 and s["bootstrap"] is None
    rows = list(csv.DictReader((out / "per_seed.csv").open()))
    game = report["games"][0]
    level = s["confidence"]
    checked = 0
    for metric, sec in game["metrics"].items():
        for player, e in sec["shapley"].items():
            vals = [float(r["value"]) for r in rows
                    if r["metric"] == metric and r["what"] == "player" and r["name"] == player]
            assert len(vals) == 4 and [r["seed"] for r in rows if r["metric"] == metric and r["name"] == player
                                       and r["what"] == "player"] == ["0", "1", "2", "3"]
            if sec["kind"] == "per_image":  # pseudo-values of a mean: they average to the value
                assert np.mean(vals) == pytest.approx(e["value"], abs=1e-12)
            tol = report_tol = 1e-10 * max(abs(v) for v in sec["coalitions"].values())
            ci, p = seed_inference(np.array([e["value"]]), np.array([vals]), None, level, tol)
            t = e.get("t", e)  # the t test's own numbers; the claim's are rechecked below
            assert t["ci95"] == pytest.approx(ci[0].tolist(), abs=1e-12) and t["p_value"] == pytest.approx(p[0])
            assert e["df"] == 3 and report_tol >= 0
            # the claim (significance: both): the betting test on the same per-seed values, its bound from
            # the metric's declared range, then the larger p-value and the hull of the intervals
            bound = {"dhash": 1.0, "cosine": 2.0}.get(metric)
            assert sec["seed_bound"] == bound
            bounded = bounded_seed_inference(np.array([vals]), bound, level)
            ci_c, p_c, carried = claim("both", (ci, p), bounded)
            assert e["claim"] == carried and e["p_value"] == pytest.approx(p_c[0])
            assert e["ci95"] == pytest.approx(ci_c[0].tolist(), abs=1e-12)
            if bound is not None:
                assert e["bounded"]["p_value"] == pytest.approx(bounded[1][0]) and e["p_value"] >= t["p_value"]
            checked += 1
        # the coalitions' per-seed worths are stored too, and average to the worth of a per-image metric
        for key, worth in sec["coalitions"].items():
            seeds = [float(r["value"]) for r in rows if r["metric"] == metric and r["what"] == "coalition" and r["name"] == key]
            assert len(seeds) == 4
            if sec["kind"] == "per_image":
                assert np.mean(seeds) == pytest.approx(worth, abs=1e-12)
    assert checked == 2 * 4  # 2 players x (3 metrics + fusion)


def test_few_seeds_warn_in_report_html_and_terminal(audited, tmp_path):
    from typer.testing import CliRunner

    from copyscope.cli import app

    report, out = audited
    warn = report["settings"]["seed_warning"]
    assert warn and "4 seeds" in warn and str(MIN_SEEDS) in warn
    assert "Warning:" in (out / "report.html").read_text() and "4 seeds" in (out / "report.html").read_text()
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0 and "4 seeds" in res.output


def test_reports_of_older_versions_still_render(audited, tmp_path):
    """`copyscope report DIR` on a report.json without the new fields (bootstrap era)."""
    from typer.testing import CliRunner

    from copyscope.cli import app

    report, _ = audited
    old = json.loads(json.dumps(report))
    for key in ("intervals", "n_seeds", "min_seeds", "seed_warning"):
        old["settings"].pop(key)
    old["settings"]["bootstrap"] = 500
    for sec in old["games"][0]["metrics"].values():
        sec.pop("per_seed")
        sec.pop("seed_worths")
        for e in sec["shapley"].values():
            e.pop("se")
            e.pop("df")
    (tmp_path / "report.json").write_text(json.dumps(old))
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "bootstrap" in (tmp_path / "report.html").read_text()
    assert (tmp_path / "per_seed.csv").read_text().strip() == "base,metric,what,name,seed,value"
