"""Every component against the placebo LoRA (``controls.placebo``): does it copy more than a LoRA of the same
strength with no content?

From a metric's report section alone: per player, the difference of its Shapley value and the placebo's, the
per-seed differences of their jackknife pseudo-values (the same seeds: paired), the t test and, when the
section's per-seed bound holds, the distribution-free betting test of ``difference > 0`` under the audit's
significance rule, Holm-corrected across players. A difference of two per-seed contributions bounded by R is
bounded by R too (copyscope.estimate.shapley.bounded.pair_difference_bound).
"""

from __future__ import annotations

import numpy as np

PLACEBO = "placebo"


def against_placebo(section: dict, names: list[str], level: float, rule: str) -> dict | None:
    """{player: {value, ci95, p_value, p_holm, beats}} for every player but the placebo; None when the section
    has no per-seed values (bootstrap intervals, sampled estimators) or no placebo."""
    from ..estimate.shapley.bounded import bounded_seed_inference, claim
    from ..estimate.shapley.inference import seed_inference
    from ..estimate.shapley.pvalues_shares import adjust_p_values

    per_seed = section.get("per_seed") or {}
    if PLACEBO not in names or PLACEBO not in per_seed:
        return None
    others = [n for n in names if n != PLACEBO]
    try:
        base = np.asarray(per_seed[PLACEBO], dtype=float)
        diffs = np.stack([np.asarray(per_seed[n], dtype=float) - base for n in others])
        values = np.array([section["shapley"][n]["value"] - section["shapley"][PLACEBO]["value"] for n in others], float)
    except (TypeError, KeyError, ValueError):
        return None
    if not np.isfinite(diffs).all() or not np.isfinite(values).all():
        return None
    t = seed_inference(values, diffs, None, level)
    ci, p, _ = claim(rule, t, bounded_seed_inference(diffs, section.get("seed_bound"), level))
    adj = adjust_p_values(p, "holm")
    alpha = 1.0 - level
    return {n: {"value": float(values[i]), "ci95": [float(ci[i, 0]), float(ci[i, 1])], "p_value": float(p[i]),
                "p_holm": float(adj[i]), "beats": bool(adj[i] < alpha and values[i] > 0)} for i, n in enumerate(others)}


def annotate_placebo(metrics: dict, names: list[str], level: float, rule: str) -> None:
    """Add ``vs_placebo`` to every metric section of a game with a placebo player, and ``beats_placebo`` to
    each player's Shapley entry: a component is claimed as copying only if it also beats the placebo
    (copyscope.report.headline.significant)."""
    if PLACEBO not in names:
        return
    for section in metrics.values():
        vs = against_placebo(section, names, level, rule)
        section["vs_placebo"] = vs
        for n, entry in section["shapley"].items():
            if n == PLACEBO:
                entry["placebo"] = True  # a control: its own value says how a metric takes content-free change
            elif vs is not None:
                entry["beats_placebo"] = vs[n]["beats"]
