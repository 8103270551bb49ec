"""The committed trigger-world run (bench/world_trigger.md): its judgement (bench/validity_world_trigger.json) is what
bench/world_trigger.py computes from the committed results document, and what the md file says of the predictions
holds in them."""

from __future__ import annotations

import json

from helpers.bench import load_bench
from helpers.paths import REPO

from copyscope.demo.bench_verdicts import headline_bar

BENCH = REPO / "bench"


def _docs():
    return (json.loads((BENCH / "validity_world_trigger.json").read_text()),
            json.loads((BENCH / "validity_world_trigger_results.json").read_text()))


def test_the_judgement_is_the_scripts_reading_of_the_committed_results():
    wt = load_bench("world_trigger")
    judged, results = _docs()
    assert results["pool_recipe"] == judged["run"]["pool_recipe"] == "trigger-leave-alone"
    assert results["scenarios"] == 28 and results["audit_seeds"] == 8 and results["worth"] == "raw"
    for metric in results["metrics"]:
        assert judged["counts"][metric] == wt.verdict_counts(results["results"], metric), metric
    assert results["headline_rule"] == headline_bar(results["results"])
    # the demo pool's column: the same 28 scenarios of the committed scikit-image run
    base = json.loads((BENCH / "validity_results_full_8seeds.json").read_text())
    same = [r for r in base["results"] if r["scenario"] in {r["scenario"] for r in results["results"]}]
    assert len(same) == 28 and judged["baseline_counts"]["phash"] == wt.verdict_counts(same, "phash")
    text = (BENCH / "world_trigger.md").read_text()
    assert text.index("## Predictions") < text.index("## Results")
    for line in wt.tables(judged).splitlines():
        assert line in text, line


def test_the_loras_combine_and_the_bar_fails_on_one_decoy():
    """Predictions 1, 2, 3, 5, 6, 7 held; 4 failed, on one decoy of one work."""
    judged, results = _docs()
    assert all(v >= 0.10 for v in judged["effect_alone"].values()) and len(judged["effect_alone"]) == 4
    rets = [s["retention_both_decoys"] for s in judged["plain_no_controlnet"].values()]
    assert len(rets) == 12 and min(rets) >= 0.7
    assert len(judged["partner_alone"]) == 12 and all(abs(v) <= 0.05 for v in judged["partner_alone"].values())
    assert judged["interactions_significant"] == [2, 24]
    assert judged["counts"]["ssim"]["decoy_significant_t"][0] >= 10
    assert judged["two_works_own_work"] == [2, 2]
    phash = judged["counts"]["phash"]
    assert phash["first_vs_decoys"] == [28, 28] and phash["plant_significant_t"] == [28, 28]
    assert phash["decoy_significant_t"] == [4, 28]
    called = [r for r in results["results"] if r["verdicts"]["phash"]["decoy_significant_t"]]
    assert {r["works"][0] for r in called} == {"astronaut"} and all("coffee" in r["decoys"] for r in called)
    assert sorted(r["kind"] for r in called) == ["half-weight", "half-weight", "plain", "plain"]
    assert results["headline_rule"]["meets_bar_t_vs_decoys"] == [24, 28]
