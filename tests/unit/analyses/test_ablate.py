"""`copyscope ablate`: outputs, seed-subset recomputation against the audit and against an
independent computation, metric agreement, ground truth; plus the pure helpers."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from copyscope.analyses.ablate import planted_recovery, rank_agreement, ranking, seed_stability

from helpers.audit_run import N_SEEDS, audited_and_ablated
from helpers.zoo import brute_force_shapley


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    return audited_and_ablated(tiny_models, tmp_path_factory)


METRICS = ["ssim", "dhash", "histogram", "cosine", "fusion"]


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_outputs_and_table(run):
    out, ab = run["out"], run["ablation"]
    for name in ["ablation.json", "ablation.csv", "ablation_seeds.csv", "ablation_0_seeds.svg", "ablation_0_agreement.svg",
                 "ablation_0_planted.svg"]:
        assert (out / name).is_file(), name
    assert ab["audit_generation"]["generated"] == 0  # the audit's cached images, nothing regenerated
    assert ab["seeds"] == list(range(N_SEEDS)) and ab["config_sha256"] == run["report"]["config_sha256"]
    assert "Metric ablation" in run["ablate_output"] and "k stable" in run["ablate_output"]
    for m in METRICS:
        assert m in run["ablate_output"]
    rows = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [r["metric"] for r in rows] == METRICS
    seeds = list(csv.DictReader(io.StringIO((out / "ablation_seeds.csv").read_text())))
    assert len(seeds) == len(METRICS) * N_SEEDS * 2  # metric x k x player


def _rows(ab, metric):
    return {r["k"]: r for r in ab["games"][0]["seed_stability"][metric]["rows"]}


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_all_seed_row_equals_the_audit(run):
    ab, game = run["ablation"], run["report"]["games"][0]
    for m in METRICS:
        st = ab["games"][0]["seed_stability"][m]
        assert st["matches_report"] is True
        full = _rows(ab, m)[N_SEEDS]
        for p in game["players"]:
            assert full["values"][p] == pytest.approx(game["metrics"][m]["shapley"][p]["value"], rel=1e-12, abs=1e-15)
            assert full["ci95"][p] == pytest.approx(game["metrics"][m]["shapley"][p]["ci95"], rel=1e-12, abs=1e-15)
        assert st["full_ranking"] == ranking({p: game["metrics"][m]["shapley"][p]["value"] for p in game["players"]}, game["players"])


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_seed_stability_is_consistent(run):
    ab = run["ablation"]
    for m in METRICS:
        st = ab["games"][0]["seed_stability"][m]
        rows = _rows(ab, m)
        assert sorted(rows) == list(range(1, N_SEEDS + 1))
        assert rows[1]["ci95"] == {p: None for p in ab["games"][0]["players"]} and rows[1]["mean_ci_width"] is None
        for k in range(2, N_SEEDS + 1):
            for p, (lo, hi) in rows[k]["ci95"].items():
                assert rows[k]["ci_width"][p] == pytest.approx(hi - lo) and hi >= lo
        assert 1 <= st["k_stable"] <= N_SEEDS and st["k_top_stable"] <= st["k_stable"]
        assert all(rows[k]["same_ranking"] for k in range(st["k_stable"], N_SEEDS + 1))
        if st["k_stable"] > 1:
            assert not rows[st["k_stable"] - 1]["same_ranking"]
        assert rows[N_SEEDS]["kendall_vs_full"] in (1.0, None)


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_first_seed_values_match_an_independent_computation(run):
    """k = 1 from the metric itself on the cached seed-0 images, Shapley by brute force."""
    from copyscope.generate.cache import ImageCache
    from copyscope.score.metrics import build_metrics
    from copyscope.common.inputs import load_image_rgb

    report = run["report"]
    game = report["games"][0]
    cache = ImageCache(Path(report["cache_dir"]))
    (metric,) = build_metrics(["histogram"])
    refs = [load_image_rgb(Path(f)) for f in report["works"]["work"]]
    ref_feats = np.asarray(metric.features(refs))
    worth = {}
    for key, keys in game["images"].items():
        img = cache.load(keys[0])  # one prompt: item 0 is seed 0
        sims = np.asarray(metric.similarity(np.asarray(metric.features([img])), ref_feats))
        worth[key] = float(sims.max())  # one work: max over its references
    expected = brute_force_shapley(game["players"], worth)
    got = _rows(run["ablation"], "histogram")[1]["values"]
    for p in game["players"]:
        assert got[p] == pytest.approx(expected[p], rel=1e-9, abs=1e-12)
    # and differs from the all-seed value (the subset is really a subset)
    assert any(not math.isclose(got[p], game["metrics"]["histogram"]["shapley"][p]["value"]) for p in game["players"])


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_agreement_matrix(run):
    ab, game = run["ablation"], run["report"]["games"][0]
    ag = ab["games"][0]["agreement"]
    assert ag["metrics"] == METRICS
    vals = {m: [game["metrics"][m]["shapley"][p]["value"] for p in game["players"]] for m in METRICS}
    for a in METRICS:
        for b in METRICS:
            assert ag["kendall"][a][b] == ag["kendall"][b][a]
            if len(set(vals[a])) > 1 and len(set(vals[b])) > 1:
                assert ag["kendall"][a][b] == pytest.approx(stats.kendalltau(vals[a], vals[b])[0])
                assert ag["spearman"][a][b] == pytest.approx(stats.spearmanr(vals[a], vals[b])[0])
            else:
                assert ag["kendall"][a][b] is None


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_ground_truth_planted_component(run):
    ab, game = run["ablation"], run["report"]["games"][0]
    gt = ab["games"][0]["ground_truth"]
    assert ab["ground_truth_file"].endswith("ground_truth.json")
    assert gt["planted"] == ["lora1"] and gt["notes"] == []  # "memoriser" mapped through its file
    for m in METRICS:
        r = gt["metrics"][m]
        v = {p: game["metrics"][m]["shapley"][p]["value"] for p in game["players"]}
        assert r["best_other"] == "lora0"
        assert r["margin"] == pytest.approx(v["lora1"] - v["lora0"])
        assert r["planted_first"] == (r["margin"] > 0)
        assert r["planted_rank"] == (1 if r["margin"] > 0 else 2)
        assert 0.0 <= r["p_first"] <= 1.0
    rows = {r["metric"]: r for r in csv.DictReader(io.StringIO((run["out"] / "ablation.csv").read_text()))}
    assert rows["ssim"]["planted"] == "lora1" and float(rows["ssim"]["margin"]) == pytest.approx(gt["metrics"]["ssim"]["margin"])


# ------------------------------------------------------------------------------------------ pure helpers


def test_ranking_ties_and_missing():
    assert ranking({"a": 1.0, "b": 3.0, "c": 2.0}, ["a", "b", "c"]) == ["b", "c", "a"]
    assert ranking({"a": 1.0, "b": 1.0 + 1e-15, "c": None}, ["a", "b", "c"]) == ["a", "b", "c"]  # float-noise tie
    assert ranking({"a": -1.0, "b": float("nan"), "c": 0.5}, ["a", "b", "c"]) == ["c", "a", "b"]


def test_rank_agreement_undefined_cells():
    ag = rank_agreement({"m1": {"a": 1.0, "b": 2.0, "c": 3.0}, "m2": {"a": 3.0, "b": 2.0, "c": 1.0},
                         "flat": {"a": 0.0, "b": 0.0, "c": 0.0}}, ["a", "b", "c"])
    assert ag["kendall"]["m1"]["m2"] == pytest.approx(-1.0) and ag["spearman"]["m1"]["m1"] == pytest.approx(1.0)
    assert ag["kendall"]["m1"]["flat"] is None


def test_seed_stability_on_synthetic_values():
    def est(vals, w):
        return {"m": {"shapley": {p: {"value": v, "ci95": [v - w, v + w]} for p, v in vals.items()}}}

    per_k = {1: est({"a": 1, "b": 2}, 5), 2: est({"a": 2, "b": 1}, 2), 3: est({"a": 1, "b": 2}, 1), 4: est({"a": 3, "b": 2}, 0.5)}
    st = seed_stability(per_k, ["a", "b"], ["m"])["m"]
    assert st["k_stable"] == 4 and st["full_ranking"] == ["a", "b"]  # k=3 disagrees, so only k=4 counts
    rows = {r["k"]: r for r in st["rows"]}
    assert rows[2]["same_ranking"] and not rows[3]["same_ranking"]
    assert rows[4]["mean_ci_width"] == pytest.approx(1.0) and rows[4]["relative_ci_width"] == pytest.approx(1.0 / 3)
    assert rows[1]["mean_ci_width"] is None  # no interval from one seed


def test_planted_recovery_numbers():
    r = planted_recovery({"p": 0.5, "q": 0.2, "r": -1.0}, ["p", "q", "r"], ["p"],
                         {"p": [0.5, 0.1, 0.3, 0.0], "q": [0.2, 0.3, 0.1, 0.1], "r": [0, 0, 0, 0.2]})
    assert r["planted_first"] and r["planted_rank"] == 1 and r["best_other"] == "q"
    assert r["margin"] == pytest.approx(0.3) and r["relative_margin"] == pytest.approx(0.3)
    assert r["p_first"] == pytest.approx(0.5)
    r2 = planted_recovery({"p": 0.1, "q": 0.2}, ["p", "q"], ["p"])
    assert not r2["planted_first"] and r2["planted_rank"] == 2 and r2["margin"] == pytest.approx(-0.1) and r2["p_first"] is None


def _fake_zoo(root: Path, loras: dict[str, str], base: str = "models/base"):
    from types import SimpleNamespace as NS

    return NS(root=root, resolve_path=lambda v: root / v,
              spec=NS(loras=[NS(name=n, model=m) for n, m in loras.items()], controlnets=[], bases=[NS(model=base)]))


def test_ground_truth_lookup_and_mapping(tmp_path):
    from copyscope.analyses.ablate import find_ground_truth, planted_players

    (tmp_path / "models" / "base").mkdir(parents=True)
    (tmp_path / "models" / "loras").mkdir()
    zoo = _fake_zoo(tmp_path, {"style-a": "models/loras/x.safetensors", "style-b": "models/loras/y.safetensors"})
    assert find_ground_truth(zoo) is None
    gt_path = tmp_path / "models" / "ground_truth.json"  # one folder above the base model folder
    gt_path.write_text("{}")
    assert find_ground_truth(zoo) == gt_path
    (tmp_path / "ground_truth.json").write_text("{}")  # beside the zoo file wins
    assert find_ground_truth(zoo) == tmp_path / "ground_truth.json"
    # demo format: names in the ground truth differ from the zoo's; files relative to ground_truth.json
    gt = {"planted_infringer": "planted", "references": {"w": {"trained_into": ["planted", "ghost"]}},
          "components": {"loras": {"planted": {"file": "loras/y.safetensors"}, "decoy": {"file": "loras/x.safetensors"}}}}
    planted, notes = planted_players(gt, gt_path, zoo, ["style-a", "style-b"])
    assert planted == ["style-b"] and len(notes) == 1 and "ghost" in notes[0]
    # a plain name that is a player
    assert planted_players({"planted": ["style-a"]}, gt_path, zoo, ["style-a", "style-b"]) == (["style-a"], [])


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_missing_ground_truth_file_fails_before_the_audit(run, tmp_path):
    from copyscope.cli import app
    from helpers.audit_run import runner

    out = tmp_path / "never"
    r = runner.invoke(app, ["ablate", str(run["zoo"]), "--out", str(out), "--ground-truth", str(tmp_path / "nope.json")])
    assert r.exit_code == 2 and "ground truth file not found" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_from_cached_evaluator_reproduces_the_audit_and_never_generates(run):
    """CoalitionEvaluator.from_cached (what the ablation uses): the audit's worths from the cached
    images alone, in the audit's order; a coalition the audit did not generate is an error."""
    from copyscope.audit import prepare_audit
    from copyscope.plan.coalitions import members_of
    from copyscope.common.errors import CopyscopeError
    from copyscope.game.evaluator import CoalitionEvaluator, seed_resamples
    from copyscope.score.scorer import Scorer

    prep = prepare_audit(run["zoo"])
    game, g = prep.plan.games[0], run["report"]["games"][0]
    est = prep.zoo.spec.estimator
    full = (True,) * game.n_players
    keys = {members_of(k, game.names): v for k, v in g["images"].items() if members_of(k, game.names) != full}
    ev = CoalitionEvaluator.from_cached(
        game, prep.cache, Scorer(prep.metrics, prep.cache, prep.refs, prep.zoo.spec.aggregate), prep.plan.items,
        len(prep.plan.seeds), seed_resamples(len(prep.plan.seeds), est.intervals, est.bootstrap, est.seed), keys,
        resampling=est.intervals)
    assert ev.engine is None and list(ev.worths) == list(keys)
    for c in keys:
        for m in ("ssim", "histogram"):
            assert ev.values(np.array([c]), m)[0, 0] == pytest.approx(g["metrics"][m]["coalitions"][game.coalition_key(c)], rel=1e-12)
    with pytest.raises(CopyscopeError, match="was not generated by the audit"):
        ev.values(np.array([full]), "ssim")
