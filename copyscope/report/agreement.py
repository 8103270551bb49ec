"""Agreement between metrics, computed from a report's data: do the metrics order the players alike?

Used by the HTML view (its "Agreement between metrics" section) and by ``copyscope ablate``.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

from ..common.finite import finite_or_none, is_finite

_finite = is_finite


def ranking(values: Mapping[str, float | None], players: Sequence[str]) -> list[str]:
    """Players ordered by value, highest first. Values equal up to 1e-9 of the largest magnitude
    tie, and ties keep the players' order (so float noise does not reorder tied players).
    Players without a finite value go last."""
    finite = [abs(values[p]) for p in players if _finite(values.get(p))]
    scale = max(finite) if finite and max(finite) > 0 else 1.0

    def key(ip):
        i, p = ip
        v = values.get(p)
        return (0, -round(v / scale, 9), i) if _finite(v) else (1, 0.0, i)

    return [p for _, p in sorted(enumerate(players), key=key)]


def _corr(kind: str, a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy import stats

    if len(a) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = stats.kendalltau(a, b) if kind == "kendall" else stats.spearmanr(a, b)
    return finite_or_none(r[0])


def rank_agreement(values: Mapping[str, Mapping[str, float | None]], players: Sequence[str]) -> dict:
    """Pairwise rank correlation of the players' values between metrics.

    ``values[metric][player]``. Returns ``{"metrics": [...], "kendall": {m1: {m2: tau}},
    "spearman": {m1: {m2: rho}}}``; a cell is None when it is undefined (fewer than 2 players with
    finite values under both metrics, or a metric whose values are all equal).
    """
    metrics = list(values)
    out = {"metrics": metrics, "kendall": {}, "spearman": {}}
    for kind in ("kendall", "spearman"):
        for m1 in metrics:
            row = {}
            for m2 in metrics:
                ps = [p for p in players if _finite(values[m1].get(p)) and _finite(values[m2].get(p))]
                row[m2] = _corr(kind, [values[m1][p] for p in ps], [values[m2][p] for p in ps])
            out[kind][m1] = row
    return out


def shapley_values(game_report: dict, metric: str) -> dict[str, float | None]:
    return {p: e["value"] for p, e in game_report["metrics"][metric]["shapley"].items()}
