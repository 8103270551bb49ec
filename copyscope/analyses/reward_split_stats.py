"""The reward split's statistics (Glinsky & Sokolsky 2024), pure functions of worth tables and
scores; the protocol on a zoo is :mod:`.reward_split`, whose docstring defines the worth and the rule."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..common.errors import CopyscopeError
from .harness import finite_or_none as _f

MODEL = "model"


def masked_bootstrap_means(scores: np.ndarray, keep: np.ndarray, boot: np.ndarray) -> np.ndarray:
    """(1 + B,) mean of ``scores`` (n_prompts, n_seeds) over kept items: column 0 on all seeds,
    column b on the resampled seed indices ``boot[b - 1]`` (a seed drawn twice counts twice). A
    replicate in which no kept item was drawn is NaN."""
    scores = np.asarray(scores, dtype=float)
    keep = np.asarray(keep, dtype=bool)
    if scores.shape != keep.shape or scores.ndim != 2:
        raise CopyscopeError(f"scores {scores.shape} and keep {keep.shape} must both be (n_prompts, n_seeds)")
    w = keep.astype(float)
    out = [np.sum(w * scores) / w.sum() if w.sum() > 0 else np.nan]
    if len(boot):
        boot = np.asarray(boot, dtype=int).reshape(-1, scores.shape[1])
        ws = w[:, boot]  # (P, B, S)
        num = (ws * scores[:, boot]).sum(axis=(0, 2))
        den = ws.sum(axis=(0, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out.extend(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
    return np.asarray(out, dtype=float)


def coalition_worths(
    scores: Mapping[tuple[bool, ...], np.ndarray], keep: np.ndarray, boot: np.ndarray
) -> tuple[dict[tuple[bool, ...], np.ndarray], np.ndarray]:
    """Worth rows (1 + B',) per coalition from per-item scores (n_prompts, n_seeds), using only kept
    items. Replicates without any kept item are dropped from every coalition; returns the table and
    the boolean mask of the B replicates kept."""
    rows = {c: masked_bootstrap_means(s, keep, boot) for c, s in scores.items()}
    if not rows:
        raise CopyscopeError("no coalition scores")
    ok = np.all(np.stack([np.isfinite(r[1:]) for r in rows.values()]), axis=0) if len(boot) else np.zeros(0, bool)
    if not all(np.isfinite(r[0]) for r in rows.values()):
        raise CopyscopeError("no work item is kept: every image was dropped by the recognisability filter")
    return {c: np.concatenate([[r[0]], r[1:][ok]]) for c, r in rows.items()}, ok


def recognisable_by_similarity(artist_sims: np.ndarray, threshold: float) -> np.ndarray:
    """Images (rows) whose similarity to some artist's work (columns) is >= threshold."""
    s = np.asarray(artist_sims, dtype=float)
    return (s >= float(threshold)).any(axis=1)


def recognisable_by_zero_shot(probs: np.ndarray, artist_cols: Sequence[int], threshold: float | None = None) -> np.ndarray:
    """Images whose artist CLIP recognises among all labels (artists' and default labels).

    ``threshold=None``: the most probable label is one of ``artist_cols``; a number: the
    probability of some artist's label is >= threshold."""
    p = np.asarray(probs, dtype=float)
    cols = np.asarray(list(artist_cols), dtype=int)
    if threshold is None:
        return np.isin(p.argmax(axis=1), cols)
    return (p[:, cols] >= float(threshold)).any(axis=1)


def percent_split(contributions: np.ndarray) -> np.ndarray:
    """Column-wise ``100 * max(x, 0) / sum(max(x, 0))`` over recipients (rows); NaN in a column
    where no recipient contributes positively."""
    from ..estimate.shapley.pvalues_shares import positive_shares  # lazy, like this module's other shapley imports

    return positive_shares(contributions, none_positive=np.nan)


def _interval(rep: np.ndarray, point: float, level: float) -> tuple[float | None, float | None]:
    rep = rep[np.isfinite(rep)]
    if rep.size == 0 or not np.isfinite(point):
        return None, None
    a = 1.0 - level
    lo, hi = np.quantile(rep, [a / 2, 1 - a / 2])
    return float(min(lo, point)), float(max(hi, point))


def split_reward(
    table: Mapping[tuple[bool, ...], object],
    artist_names: Sequence[str],
    *,
    model: str = "empty_coalition",
    estimator=None,
    budget: int | None = None,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """The reward split from a worth table: coalition of artists (tuple of bools) -> worth, a scalar
    or (1 + B,) with bootstrap replicate columns. The table must hold the empty and the full
    coalition and every coalition ``estimator`` asks for (default: exact Shapley, all 2**n).

    Returns ``{"model": {...}, "artists": {name: {...}}, ...}`` where each recipient has its
    contribution ``value`` (the model: v(empty) or its veto-player Shapley value; an artist: its
    Shapley value phi_i), ``share`` in percent with a bootstrap ``low``/``high``, and the artists
    their value's ``ci``. Shares sum to 100 (see the module docstring for the rule).
    """
    from ..estimate.shapley import ExactShapley, Game

    names = list(artist_names)
    n = len(names)
    if n < 1:
        raise CopyscopeError("a reward split needs at least one artist")
    if MODEL in names:
        raise CopyscopeError(f"{MODEL!r} is reserved for the model; rename that prompt player")
    rows = {tuple(bool(x) for x in k): np.atleast_1d(np.asarray(v, dtype=float)) for k, v in table.items()}
    empty, full = (False,) * n, (True,) * n
    for c, what in ((empty, "empty"), (full, "full")):
        if c not in rows:
            raise CopyscopeError(f"the worth table has no {what} coalition")
    estimator = estimator or ExactShapley()
    if model == "empty_coalition":
        game = Game.from_table(rows, names, n_players=n)
    elif model == "veto_player":
        width = len(rows[empty])
        vt = {}
        for c, v in rows.items():
            vt[(True,) + c] = v
            vt[(False,) + c] = np.zeros(width)
        game = Game.from_table(vt, [MODEL] + names, n_players=n + 1)
    else:
        raise CopyscopeError(f"unknown model rule {model!r}: use empty_coalition or veto_player")
    est = estimator.estimate(game, budget=budget, seed=seed)
    contrib = np.column_stack([est.values, est.replicates]) if est.replicates is not None else est.values[:, None]
    if model == "empty_coalition":  # the model's row: v(empty)
        contrib = np.vstack([rows[empty][None, : contrib.shape[1]], contrib])
    pct = percent_split(contrib)
    ci = est.ci(level)
    offset = 0 if model == "empty_coalition" else 1

    def recipient(k: int) -> dict:
        lo, hi = _interval(pct[k, 1:], pct[k, 0], level)
        vlo, vhi = _interval(contrib[k, 1:], contrib[k, 0], level)
        return {"value": _f(contrib[k, 0]), "value_ci": None if vlo is None else [vlo, vhi], "share": _f(pct[k, 0]), "low": lo, "high": hi}

    artists = {}
    for i, name in enumerate(names):
        r = recipient(i + 1)
        if ci is not None:
            r["value_ci"] = [_f(ci[i + offset, 0]), _f(ci[i + offset, 1])]
        artists[name] = r
    shares = pct[:, 0]
    return {
        "model_rule": model,
        "estimator": {"method": est.method, "coalitions_evaluated": int(est.n_evaluated)},
        "v_empty": _f(rows[empty][0]),
        "v_full": _f(rows[full][0]),
        "efficiency_gap": _f(contrib[:, 0].sum() - rows[full][0]),
        "model": recipient(0),
        "artists": artists,
        "sum_percent": _f(np.nansum(shares)) if np.isfinite(shares).any() else None,
        "n_replicates": int(contrib.shape[1] - 1),
        "level": level,
    }
