"""The dose-response's statistics on per-seed worths whose answer is known, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from copyscope.analyses.dose import parse_weights
from copyscope.analyses.dose_stats import contribution_curve, mean_interval, rises_within_intervals
from copyscope.common.errors import CopyscopeError


def test_mean_interval_is_the_t_interval():
    x = np.array([0.1, 0.3, 0.2, 0.4, 0.25])
    got = mean_interval(x, 0.9)
    se = x.std(ddof=1) / np.sqrt(5)
    q = stats.t.ppf(0.95, 4)
    assert got["mean"] == pytest.approx(x.mean())
    assert got["ci"] == pytest.approx([x.mean() - q * se, x.mean() + q * se])


def test_contributions_are_paired_per_seed_and_holm_adjusted():
    rng = np.random.default_rng(0)
    seeds = 12
    shared = rng.normal(0, 1.0, seeds)  # seed effects both settings share: pairing removes them
    without = 0.5 + shared
    weights = [0.0, 0.5, 1.0]
    with_w = [without + w * 0.2 + rng.normal(0, 0.01, seeds) * (w > 0) for w in weights]
    curve = contribution_curve(weights, with_w, without, level=0.95)
    pts = curve["points"]
    assert pts[0]["contribution"]["mean"] == 0.0 and pts[0]["p_value"] is None  # weight 0: nothing to test
    assert [p["contribution"]["mean"] for p in pts] == pytest.approx([0.0, 0.1, 0.2], abs=0.01)
    assert pts[2]["contribution"]["ci"][1] - pts[2]["contribution"]["ci"][0] < 0.05  # the shared noise is gone
    raw = np.array([pts[1]["p_value"], pts[2]["p_value"]])
    assert pts[1]["p_holm"] >= raw[0] and pts[2]["p_holm"] >= raw[1]
    assert max(pts[1]["p_holm"], pts[2]["p_holm"]) == pytest.approx(min(1.0, max(raw.max(), 2 * raw.min())))
    assert curve["smallest_significant_weight"] == 0.5 and curve["rises_within_intervals"]


def test_a_component_that_adds_nothing_is_never_significant():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(200):
        without = rng.normal(0, 1, 8)
        with_w = [without + rng.normal(0, 0.1, 8) for _ in range(3)]
        hits += contribution_curve([0.5, 1.0, 1.5], with_w, without)["smallest_significant_weight"] is not None
    assert hits <= 200 * 0.05 + 3 * np.sqrt(200 * 0.05)  # Holm keeps the family-wise rate at 5%


def test_a_falling_curve_does_not_rise_within_its_intervals():
    pt = lambda w, m, lo: {"weight": w, "contribution": {"mean": m, "ci": [lo, m + 0.01]}}  # noqa: E731
    assert rises_within_intervals([pt(0, 0.0, -0.01), pt(1, 0.2, 0.19), pt(2, 0.195, 0.18)])  # within the interval
    assert not rises_within_intervals([pt(0, 0.0, -0.01), pt(1, 0.2, 0.19), pt(2, 0.1, 0.09)])


@pytest.mark.parametrize("text, message", [
    ("1,x", "not a comma-separated list of numbers"),
    ("", "expected 1 to 64 distinct finite strengths"),
    ("1,1", "expected 1 to 64 distinct finite strengths"),
    ("nan", "expected 1 to 64 distinct finite strengths"),
])
def test_bad_weights_are_one_line(text, message):
    with pytest.raises(CopyscopeError, match=message) as err:
        parse_weights(text)
    assert str(err.value).startswith("--weights: ")


def test_weights_are_sorted():
    assert parse_weights("1, 0,0.25") == [0.0, 0.25, 1.0]
