"""Components against the placebo (copyscope.controls.against_placebo): paired per-seed differences, the claim's
rule, Holm; a claim needs beating the placebo, and the placebo itself is never claimed."""

from __future__ import annotations

import numpy as np

from copyscope.controls.against_placebo import against_placebo, annotate_placebo
from copyscope.report.headline import significant, t_only


def _section(per_seed: dict[str, np.ndarray], bound=4.0):
    sh = {n: {"value": float(np.mean(v)), "p_holm": 0.001, "t": {"p_holm": 0.001}} for n, v in per_seed.items()}
    return {"shapley": sh, "per_seed": {n: list(map(float, v)) for n, v in per_seed.items()}, "seed_bound": bound}


def test_a_copier_beats_the_placebo_and_a_generic_change_does_not():
    rng = np.random.default_rng(0)
    placebo = 0.2 + 0.02 * rng.standard_normal(64)
    sec = _section({"copier": placebo + 0.3 + 0.01 * rng.standard_normal(64),
                    "generic": placebo + 0.01 * rng.standard_normal(64), "placebo": placebo}, bound=1.0)
    vs = against_placebo(sec, ["copier", "generic", "placebo"], 0.95, "both")
    assert vs["copier"]["beats"] and vs["copier"]["value"] > 0.25 and vs["copier"]["ci95"][0] > 0
    assert not vs["generic"]["beats"] and vs["generic"]["ci95"][0] < 0 < vs["generic"]["ci95"][1]
    # Holm over the two comparisons: never below the raw p-value
    assert all(v["p_holm"] >= v["p_value"] for v in vs.values())


def test_claims_need_the_placebo_beaten():
    rng = np.random.default_rng(1)
    placebo = 0.2 + 0.02 * rng.standard_normal(32)
    metrics = {"phash": _section({"copier": placebo + 0.3, "generic": placebo + 0.001 * rng.standard_normal(32),
                                  "placebo": placebo}, bound=1.0)}
    annotate_placebo(metrics, ["copier", "generic", "placebo"], 0.95, "t")
    sh = metrics["phash"]["shapley"]
    assert sh["copier"]["beats_placebo"] and significant(sh["copier"], 0.05)
    assert sh["generic"]["beats_placebo"] is False and not significant(sh["generic"], 0.05) and not t_only(sh["generic"], 0.05)
    assert sh["placebo"]["placebo"] and not significant(sh["placebo"], 0.05)


def test_no_placebo_or_no_per_seed_values():
    sec = _section({"a": np.ones(4), "b": np.zeros(4)})
    assert against_placebo(sec, ["a", "b"], 0.95, "t") is None
    sec = _section({"a": np.ones(4), "placebo": np.zeros(4)})
    sec["per_seed"] = None
    assert against_placebo(sec, ["a", "placebo"], 0.95, "t") is None
