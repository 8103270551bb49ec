"""The p-value and share helpers: what an :class:`~copyscope.estimate.shapley.result.Estimate` computes across its
players, written without it so that other modules use the same rules without an estimate in hand.

``adjust_p_values`` is the family-wise correction across players (Holm's step-down, Bonferroni, or none;
``P_ADJUST_METHODS``), used by the estimate, the interaction indices, the report, the placebo control and the
analyses; ``positive_shares`` is the one positive-share formula (the estimate's liability shares, the reward
split's percentages); ``_check_level`` the check of a confidence level that the estimate's intervals and the
interaction indices share. Pure NumPy; imports nothing of copyscope but its error type.
"""

from __future__ import annotations

import numpy as np

from ...common.errors import CopyscopeError

__all__ = ["P_ADJUST_METHODS", "adjust_p_values", "positive_shares"]

P_ADJUST_METHODS = ("holm", "bonferroni", "none")


def _check_level(level: float) -> float:
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise CopyscopeError(f"confidence level must be a number in (0, 1), got {level!r}") from None
    if not 0.0 < level < 1.0:
        raise CopyscopeError(f"confidence level must be in (0, 1), got {level}")
    return level


def adjust_p_values(p: np.ndarray, method: str = "holm") -> np.ndarray:
    """Family-wise error correction across players.

    ``holm``: Holm's step-down (uniformly more powerful than Bonferroni, same guarantee);
    ``bonferroni``: ``min(1, m * p)``; ``none``: unchanged. NaN entries stay NaN and do not
    count towards ``m``.
    """
    key = str(method).strip().lower()
    if key not in P_ADJUST_METHODS:
        raise CopyscopeError(
            f"unknown p-value adjustment '{method}': valid ones are {', '.join(P_ADJUST_METHODS)}"
        )
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    q = p[ok]
    if key == "none":
        adj = q.copy()
    elif key == "bonferroni":
        adj = np.minimum(1.0, m * q)
    else:  # holm
        order = np.argsort(q, kind="stable")
        stepped = (m - np.arange(m)) * q[order]
        stepped = np.minimum(1.0, np.maximum.accumulate(stepped))
        adj = np.empty(m)
        adj[order] = stepped
    out[ok] = adj
    return out


def positive_shares(phi: np.ndarray, none_positive: float) -> np.ndarray:
    """Column-wise ``100 * max(phi, 0) / sum(max(phi, 0))`` over the rows (players, recipients):
    each one's percent of the positive total; ``none_positive`` in columns where none is positive.
    The one positive-share formula (the estimate's liability shares, the reward split's percentages)."""
    pos = np.maximum(np.asarray(phi, dtype=float), 0.0)
    tot = pos.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 * pos / tot
    return np.where(tot > 0, out, none_positive)
