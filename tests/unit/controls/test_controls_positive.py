"""Positive controls and the per-audit headline: the statistics on known inputs, the rule on a fixed set of
control scores, img2img controls at strength 0 and 1 on the tiny models, and the guard that the headline is
chosen from the control images alone, never from the audit's coalitions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from copyscope.controls.headline import choose_headline
from copyscope.controls.sensitivity import equivalent_strength, mann_whitney_auc, sensitivity
from helpers.paths import REPO


def test_auc_by_hand():
    assert mann_whitney_auc([3, 4], [1, 2]) == 1.0
    assert mann_whitney_auc([1], [1]) == 0.5
    assert mann_whitney_auc([2, 0], [1]) == 0.5
    assert np.isnan(mann_whitney_auc([], [1]))


def _controls(gap_per_strength, n_seeds=4, n_neg=3, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s, gap in gap_per_strength.items():
        for k in range(n_seeds):
            rows.append(("w", True, s, k, gap + noise * rng.standard_normal()))
            for _ in range(n_neg):
                rows.append(("w", False, s, k, noise * rng.standard_normal()))
    work, copy, strength, seed_, score = map(np.array, zip(*rows))
    return score, work, copy, strength, seed_


def test_sensitivity_of_a_metric_that_responds_and_one_that_does_not():
    good = sensitivity(*_controls({0.3: 0.5, 0.5: 0.3, 0.7: 0.2, 0.9: 0.1}, noise=0.01), n_boot=300)
    assert good["auc"] == 1.0 and good["auc_ci"][0] == 1.0 and not good["blind"]
    assert [d["strength"] for d in good["dose_response"]] == [0.3, 0.5, 0.7, 0.9]
    assert good["dose_response"][0]["gap"] == pytest.approx(0.5, abs=0.02)
    flat = sensitivity(*_controls({0.3: 0.0, 0.5: 0.0, 0.7: 0.0, 0.9: 0.0}, noise=0.1, n_seeds=6), n_boot=300)
    assert flat["blind"] and flat["auc_ci"][0] <= 0.5 <= flat["auc_ci"][1]


def test_strength_one_is_left_out_of_the_pooled_auc():
    res = sensitivity(*_controls({0.5: 0.4, 1.0: -0.4}, noise=0.01), n_boot=100)
    assert res["auc"] == 1.0  # strength 1 keeps nothing of the work: it cannot speak for the metric
    assert res["dose_response"][1]["auc"] == 0.0


def test_equivalent_strength_interpolates_and_bounds():
    dose = [{"strength": 0.3, "gap": 0.4}, {"strength": 0.5, "gap": 0.2}, {"strength": 0.7, "gap": 0.1}]
    assert equivalent_strength(0.3, dose) == {"strength": pytest.approx(0.4), "bound": None}
    assert equivalent_strength(0.5, dose) == {"strength": 0.3, "bound": "at most"}
    assert equivalent_strength(0.0, dose) == {"strength": 0.7, "bound": "at least"}


def _sens(auc, lo, hi, blind=False):
    return {"auc": auc, "auc_ci": [lo, hi], "blind": blind}


def test_rule_on_fixed_control_scores():
    controls = {"phash": _sens(0.9, 0.8, 1.0), "dhash": _sens(0.95, 0.85, 1.0), "ssim": _sens(1.0, 1.0, 1.0),
                "effnet": _sens(0.55, 0.3, 0.8, blind=True)}
    computed = ["phash", "dhash", "ssim", "effnet", "kid_pixels"]
    pref = ("phash", "kid_pixels", "fusion")
    admitted = ("phash", "dhash", "effnet", "kid_pixels")
    c = choose_headline(controls, computed, pref, admitted)
    # dhash's AUC is larger but its interval overlaps phash's: the benchmark's preference stands
    assert c["metric"] == "phash" and c["rule"] == "controls" and "no other admitted metric" in c["why"]
    assert set(c["candidates"]) == {"phash", "dhash", "effnet"} and c["candidates"]["effnet"]["blind"]
    # a candidate whose interval lies wholly above the preferred one's is chosen (ssim, better still, is not admitted)
    clear = {**controls, "phash": _sens(0.72, 0.6, 0.84)}
    c = choose_headline(clear, computed, pref, admitted)
    assert c["metric"] == "dhash" and "clearly better than the benchmark's preferred phash" in c["why"]
    # the preferred metric blind: the next admitted one in the benchmark's order
    veto = {**controls, "phash": _sens(0.6, 0.4, 0.8, blind=True)}
    assert choose_headline(veto, computed, pref, admitted)["metric"] == "dhash"
    # every admitted metric blind: the global preference, saying why
    blind = {"phash": _sens(0.5, 0.2, 0.8, True), "dhash": _sens(0.5, 0.2, 0.8, True)}
    fb = choose_headline(blind, computed, pref, admitted)
    assert fb["metric"] == "phash" and fb["rule"] == "fallback" and "blind: dhash, phash" in fb["why"]
    # a metric the audit did not compute is never chosen
    assert choose_headline(clear, ["phash"], pref, admitted)["metric"] == "phash"


def _zoo(tmp_path, tiny_models, **controls):
    from helpers.zoo import make_zoo_file

    return make_zoo_file(tmp_path, tiny_models, loras=2, controlnet=False, metrics=["ssim", "dhash", "phash"],
                         generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 2, "batch_size": 2,
                                     "scheduler": "ddim"},
                         controls={"strengths": [0.0, 0.5, 1.0], "negatives": 2, **controls})


@pytest.mark.slow
def test_img2img_controls_at_strength_zero_and_one(tiny_models, tmp_path):
    """Strength 0 is the work itself; at strength 1 the image keeps nothing of its source: a copy and a
    non-copy of the same seed are the same image."""
    from copyscope.generate.cache import ImageCache
    from copyscope.controls.background import fit_to
    from copyscope.controls.positive import ensure_control_images
    from copyscope.generate import CoalitionEngine
    from copyscope.audit.prepare import prepare_audit

    prep = prepare_audit(_zoo(tmp_path, tiny_models), tmp_path / "out")
    engine = CoalitionEngine(prep.zoo, prep.plan.games[0])
    cache = ImageCache(tmp_path / "cache")
    spec = prep.zoo.spec.controls
    controls = ensure_control_images(engine, cache, prep.refs, prep.background, spec, prep.plan.items)
    assert len(controls) == 3 * 3 * 2  # (work + 2 non-copies) x 3 strengths x 2 seeds
    by = {(c.source, c.strength, c.seed): cache.load(c.key) for c in controls}
    work = fit_to(prep.refs.images[0], (32, 32))
    np.testing.assert_allclose(by[("work", 0.0, 0)], work, atol=1 / 255)
    neg = prep.background.labels[0]
    np.testing.assert_allclose(by[(neg, 0.0, 0)], fit_to(prep.background.images[0], (32, 32)), atol=1 / 255)
    # strength 1: pure noise at the first step (DDIM with 2 steps starts at t = 999 whatever the source)
    diff1 = np.abs(by[("work", 1.0, 0)] - by[(neg, 1.0, 0)]).mean()
    diff5 = np.abs(by[("work", 0.5, 0)] - by[(neg, 0.5, 0)]).mean()
    assert diff1 < 0.25 * diff5, (diff1, diff5)
    assert np.abs(by[("work", 0.5, 0)] - work).mean() < np.abs(by[("work", 1.0, 0)] - work).mean()
    # cached: a second call generates nothing and gives the same keys
    again = ensure_control_images(engine, cache, prep.refs, prep.background, spec, prep.plan.items)
    assert [c.key for c in again] == [c.key for c in controls]


@pytest.mark.slow
def test_headline_never_computed_from_the_coalition_images(tiny_models, tmp_path):
    """The audit's chosen headline and its control numbers come back the same from the control images alone:
    the coalition images and their scores are deleted from the cache, the controls are recomputed, the rule
    chooses again. A rule that read a coalition image would fail here (the image is gone) or choose otherwise."""
    from typer.testing import CliRunner

    from copyscope.generate.cache import ImageCache
    from copyscope.cli import app
    from copyscope.controls.positive import run_positive_controls
    from copyscope.generate import CoalitionEngine
    from copyscope.audit.prepare import prepare_audit
    from copyscope.report.controls import controls_section
    from copyscope.score.scorer import Scorer

    zoo = _zoo(tmp_path, tiny_models, strengths=[0.3, 0.6])
    r = CliRunner().invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    g = rep["games"][0]
    assert g["headline"] == g["controls"]["headline"]["metric"]
    # the background view: each coalition's similarity to the work is its raw worth; one value per background image
    view = g["controls"]["background_view"]
    for m in ("ssim", "dhash", "phash"):
        assert set(view["metrics"][m]) == set(g["metrics"][m]["coalitions"])
        for key, row in view["metrics"][m].items():
            assert row["work"] == pytest.approx(g["metrics"][m]["coalitions"][key], abs=1e-9)
            assert len(row["background"]) == len(view["labels"]) == 15
    html = (tmp_path / "out" / "report.html").read_text()
    assert "each coalition's images against every generic image" in html and 'id="game-0-controls"' in html
    cache = ImageCache(rep["cache_dir"])
    control_keys = {k for w in g["controls"]["images"].values() for s in w.values() for ks in s.values() for k in ks}
    removed = 0
    for keys in g["images"].values():
        for k in keys:
            assert k not in control_keys
            for f in cache.root.rglob(f"{k}.*"):
                f.unlink()
                removed += 1
    assert removed
    prep = prepare_audit(zoo, tmp_path / "out")
    scorer = Scorer(prep.metrics, cache, prep.refs, background=prep.background, worth=prep.zoo.spec.worth)
    engine = CoalitionEngine(prep.zoo, prep.plan.games[0])
    again = run_positive_controls(engine, cache, scorer, prep.refs, prep.background, prep.zoo.spec.controls, prep.plan.items)
    assert engine.pipe is None  # every control image came from the cache: nothing was loaded or generated
    sec = controls_section(again, g["metrics"], g["players"], "auto")
    assert sec["headline"] == g["controls"]["headline"]
    assert sec["metrics"] == g["controls"]["metrics"]


def test_plan_counts_the_control_images():
    """`copyscope plan` says what the controls add: the shipped demo, 1 work x 4 strengths x (1 + 3) sources x 4 seeds."""

    from typer.testing import CliRunner

    from copyscope.cli import app

    root = REPO
    r = CliRunner().invoke(app, ["plan", str(root / "model_zoo.yaml")])
    assert r.exit_code == 0, r.output
    assert "positive controls: 64 img2img image(s)" in " ".join(r.output.split())
