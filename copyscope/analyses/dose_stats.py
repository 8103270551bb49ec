"""The dose-response statistics (pure numpy/scipy): per strength, a component's contribution over seeds with a
t interval and a one-sided test, Holm across the strengths, the smallest strength whose contribution is
significant, and whether the curve rises within its intervals.

A contribution at strength w is paired per seed: the worth of the pipeline with the component at w minus the
worth of the same pipeline without it, for the same prompts and seeds (``with_w - without``, one value per
seed). Pairing removes the seed-to-seed variation the two share, as the audit's per-seed Shapley values do.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..common.finite import finite_or_none
from ..estimate.shapley.inference import t_interval, t_test_greater
from ..estimate.shapley.pvalues_shares import adjust_p_values


def mean_interval(per_seed: np.ndarray, level: float) -> dict:
    """The mean over seeds of ``per_seed`` with its t interval (n - 1 degrees of freedom)."""
    x = np.asarray(per_seed, dtype=float)
    n = x.size
    se = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    ci = t_interval(np.array([x.mean()]), np.array([se]), n - 1, level)[0]
    return {"mean": finite_or_none(x.mean()), "ci": [finite_or_none(ci[0]), finite_or_none(ci[1])],
            "se": finite_or_none(se), "per_seed": [finite_or_none(v) for v in x]}


def contribution_curve(weights: Sequence[float], with_w: Sequence[np.ndarray], without: np.ndarray,
                       level: float = 0.95) -> dict:
    """The contribution at each strength (paired per seed against ``without``), its interval, its one-sided
    p-value (H0: the component adds nothing or less), Holm-adjusted across the strengths above 0; the smallest
    strength whose adjusted p-value is below 1 - level; and whether the curve rises within its intervals (each
    mean at least the previous strength's lower bound)."""
    alpha = 1.0 - level
    points = []
    for w, worth in zip(weights, with_w):
        diff = np.asarray(worth, dtype=float) - np.asarray(without, dtype=float)
        point = {"weight": float(w), "worth": mean_interval(worth, level), "contribution": mean_interval(diff, level)}
        n = diff.size
        se = diff.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
        point["p_value"] = finite_or_none(t_test_greater(np.array([diff.mean()]), np.array([se]), n - 1)[0]) if w > 0 else None
        points.append(point)
    tested = [i for i, pt in enumerate(points) if pt["p_value"] is not None]
    if tested:
        adjusted = adjust_p_values(np.array([points[i]["p_value"] for i in tested], dtype=float))
        for i, p in zip(tested, adjusted):
            points[i]["p_holm"] = finite_or_none(p)
    significant = [pt["weight"] for pt in points if pt.get("p_holm") is not None and pt["p_holm"] < alpha]
    return {
        "points": points,
        "smallest_significant_weight": min(significant) if significant else None,
        "rises_within_intervals": rises_within_intervals(points),
    }


def rises_within_intervals(points: list[dict]) -> bool:
    """True when, in order of strength, no contribution falls below the previous one's lower interval bound."""
    ordered = sorted(points, key=lambda pt: pt["weight"])
    for prev, cur in zip(ordered, ordered[1:]):
        low, mean = prev["contribution"]["ci"][0], cur["contribution"]["mean"]
        if low is not None and mean is not None and mean < low:
            return False
    return True
