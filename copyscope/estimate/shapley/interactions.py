"""Pairwise interaction indices of a fully enumerated game, with inference over seeds.

A Shapley value says how much a player moves the worth on average; it cannot say whether two
players copy *together* (a LoRA that copies only with a given ControlNet). The pairwise Shapley
interaction index (Grabisch & Roubens 1999) does:

    I(i, j) = sum_{S in N - {i, j}} |S|! (n - |S| - 2)! / (n - 1)! * [v(S+i+j) - v(S+i) - v(S+j) + v(S)]
            = sum_{T contains i and j} m(T) / (|T| - 1)          (m: Moebius transform, Harsanyi dividends)

positive when the pair does more together than apart. The Banzhaf interaction weighs every S by
``1 / 2**(n - 2)`` (``m(T) / 2**(|T| - 2)`` in the Moebius form).

Layout (as copyscope.estimate.shapley.base): a worth table is ``(2**n,)`` or ``(2**n, C)``, row = coalition
bitmask (player ``i`` is bit ``i``, row 0 the empty coalition, :func:`all_coalitions` order); every
transform here is linear and applied column by column. The game stage's columns are: 0 = all seeds,
``1..m`` = leave seed ``s`` out, so the interactions of column ``1 + s`` are the interactions without
seed ``s`` and :mod:`copyscope.estimate.shapley.inference`'s jackknife applies unchanged
(:func:`interaction_inference`). Pair matrices are ``(n, n)`` or ``(n, n, C)``, symmetric, with NaN
on the diagonal (a player does not form a pair with itself: NaN, not 0, so that the diagonal is
never read as "no interaction"). Pairs are listed as ``(i, j)``, ``i < j``, in ``np.triu_indices``
order.

Each pair needs every coalition (``S`` runs over all subsets of the others, each with and without
``i`` and ``j``), so with a sampled design the interactions are not identifiable:
:func:`require_full_table` says which coalitions are missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ...common.errors import CopyscopeError
from ...common.finite import finite_or_none
from .inference import jackknife_pseudo_values, jackknife_se, seed_inference, worths_zero_tol
from .pvalues_shares import _check_level, adjust_p_values

__all__ = [
    "moebius",
    "shapley_interaction_pairs",
    "banzhaf_interaction_pairs",
    "interactions_from_moebius",
    "pair_list",
    "missing_coalitions",
    "interactions_available",
    "require_full_table",
    "worth_table",
    "interaction_inference",
    "InteractionResult",
]

INDICES = ("shapley", "banzhaf")
ALTERNATIVES = ("two-sided", "greater", "less")


# ------------------------------------------------------------------------------ transforms
def _table(worths: ArrayLike) -> tuple[np.ndarray, int, bool]:
    """``(2**n, C)`` float view of a worth table, ``n``, and whether the input was one column."""
    w = np.asarray(worths, dtype=float)
    if w.ndim not in (1, 2) or w.shape[0] < 2 or w.shape[0] & (w.shape[0] - 1):
        raise CopyscopeError(f"a full worth table has 2**n rows (n >= 1), one per coalition bitmask; got shape {w.shape}")
    n = w.shape[0].bit_length() - 1
    return (w[:, None] if w.ndim == 1 else w), n, w.ndim == 1


def _sizes(n: int) -> np.ndarray:
    """|S| of every bitmask 0..2**n - 1."""
    masks = np.arange(2**n, dtype=np.int64)
    return ((masks[:, None] >> np.arange(n)) & 1).sum(axis=1)


def _zeta(w: np.ndarray, n: int, superset: bool, sign: float) -> np.ndarray:
    """A copy's subset sums ``sum_{S subset of T}`` (``superset=False``) or superset sums, one bit at a
    time, O(n 2**n) per column; ``sign=-1`` on subsets inverts the subset sum: the Moebius transform."""
    a = w.copy()
    for i in range(n):
        view = a.reshape(2 ** (n - 1 - i), 2, 2**i, a.shape[-1])  # axis 1 = bit i
        if superset:
            view[:, 0] += sign * view[:, 1]
        else:
            view[:, 1] += sign * view[:, 0]
    return a


def moebius(worths: ArrayLike) -> np.ndarray:
    """Harsanyi dividends ``m(T) = sum_{S subset of T} (-1)**(|T| - |S|) v(S)``, same shape as
    ``worths``: the part of the worth that only the whole of ``T`` produces (v(S) = sum_{T in S} m(T))."""
    w, n, flat = _table(worths)
    m = _zeta(w, n, superset=False, sign=-1.0)
    return m[:, 0] if flat else m


def pair_list(n: int) -> list[tuple[int, int]]:
    """The ``n (n - 1) / 2`` pairs ``(i, j)``, ``i < j``, in ``np.triu_indices(n, 1)`` order."""
    return [(int(i), int(j)) for i, j in zip(*np.triu_indices(n, 1))]


def _symmetric(values: dict[tuple[int, int], np.ndarray], n: int, c: int, flat: bool) -> np.ndarray:
    out = np.full((n, n, c), np.nan)
    for (i, j), v in values.items():
        out[i, j] = out[j, i] = v
    return out[:, :, 0] if flat else out


def _pair_weights(index: str, n: int) -> np.ndarray:
    """Weight of ``v(S+i+j) - v(S+i) - v(S+j) + v(S)`` by ``|S| = 0..n-2``."""
    if index == "shapley":
        return np.array([math.factorial(s) * math.factorial(n - s - 2) / math.factorial(n - 1) for s in range(max(n - 1, 0))])
    return np.full(max(n - 1, 0), 1.0 / 2.0 ** (n - 2))


def _interaction_pairs(worths: ArrayLike, index: str) -> np.ndarray:
    """The definition: for each pair a weighted sum of second differences over S in N - {i, j}."""
    w, n, flat = _table(worths)
    masks = np.arange(2**n, dtype=np.int64)
    size, weight = _sizes(n), _pair_weights(index, n)
    out = {}
    for i, j in pair_list(n):
        bi, bj = 1 << i, 1 << j
        s = masks[(masks & (bi | bj)) == 0]
        second = w[s | bi | bj] - w[s | bi] - w[s | bj] + w[s]
        out[(i, j)] = weight[size[s]] @ second
    return _symmetric(out, n, w.shape[1], flat)


def shapley_interaction_pairs(worths: ArrayLike) -> np.ndarray:
    """Pairwise Shapley interaction index (Grabisch & Roubens 1999) from a full worth table:
    ``(n, n)`` or ``(n, n, C)``, NaN diagonal. Zero for additive games; 1 for the pair of a
    two-player unanimity game."""
    return _interaction_pairs(worths, "shapley")


def banzhaf_interaction_pairs(worths: ArrayLike) -> np.ndarray:
    """Pairwise Banzhaf interaction index (every S weighted ``1 / 2**(n - 2)``), as
    :func:`shapley_interaction_pairs`."""
    return _interaction_pairs(worths, "banzhaf")


def interactions_from_moebius(dividends: ArrayLike, index: str = "shapley") -> np.ndarray:
    """The same pair matrix from Harsanyi dividends: ``sum_{T contains i, j} m(T) / (|T| - 1)``
    (Shapley) or ``m(T) / 2**(|T| - 2)`` (Banzhaf), via one superset sum, O(n 2**n)."""
    index = _check_choice(index, INDICES, "interaction index")
    d, n, flat = _table(dividends)
    size = _sizes(n).astype(float)
    with np.errstate(divide="ignore"):
        scale = 1.0 / (size - 1.0) if index == "shapley" else 2.0 ** (2.0 - size)
    scale[size < 2] = 0.0  # only coalitions of two or more contain a pair
    up = _zeta(d * scale[:, None], n, superset=True, sign=1.0)
    return _symmetric({(i, j): up[(1 << i) | (1 << j)] for i, j in pair_list(n)}, n, d.shape[1], flat)


_PAIRS = {"shapley": shapley_interaction_pairs, "banzhaf": banzhaf_interaction_pairs}


# ------------------------------------------------------------------------------ which coalitions
def _mask_of(coalition: ArrayLike | int, n: int) -> int:
    """Bitmask of a coalition given as an int (a bitmask) or a row of n bools (tuple, array row)."""
    if isinstance(coalition, (int, np.integer)) and not isinstance(coalition, (bool, np.bool_)):
        if not 0 <= coalition < 2**n:
            raise CopyscopeError(f"coalition bitmask {coalition} is out of range for {n} players")
        return int(coalition)
    row = np.asarray(coalition, dtype=bool).reshape(-1)
    if row.shape[0] != n:
        raise CopyscopeError(f"a coalition of {n} players needs {n} entries, got {row.shape[0]}")
    return int((row.astype(np.int64) << np.arange(n)).sum())


def missing_coalitions(coalitions: Iterable[object], n: int) -> list[int]:
    """Bitmasks of the coalitions pairwise interactions need that ``coalitions`` lacks (all 2**n
    are needed: each pair's sum runs over every subset of the other players)."""
    have = {_mask_of(c, n) for c in coalitions}
    return [m for m in range(2**n) if m not in have]


def interactions_available(coalitions: Iterable[object], n: int) -> bool:
    """True when every coalition is present, i.e. the pairwise interactions are identifiable."""
    return not missing_coalitions(coalitions, n)


def _describe(mask: int, players: Sequence[str]) -> str:
    return "{" + ", ".join(p for i, p in enumerate(players) if mask >> i & 1) + "}"


def require_full_table(coalitions: Iterable[object], n: int, players: Sequence[str] | None = None) -> None:
    """Raise a one-line CopyscopeError naming the missing coalitions, if any."""
    missing = missing_coalitions(coalitions, n)
    if missing:
        names = list(players) if players is not None else [f"player_{i}" for i in range(n)]
        shown = ", ".join(_describe(m, names) for m in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise CopyscopeError(
            f"pairwise interactions need all 2**{n} = {2**n} coalitions (a full table, e.g. the exact estimator; "
            f"a sampled design does not identify them): {len(missing)} missing: {shown}")


def worth_table(table: Mapping[tuple[bool, ...], object], n: int, players: Sequence[str] | None = None) -> np.ndarray:
    """``(2**n, C)`` table in bitmask order from coalition -> worth row (``Game.values_table()``,
    ``GameResult.table(metric)``); CopyscopeError naming what is missing when it is not full."""
    rows = {_mask_of(k, n): np.atleast_1d(np.asarray(v, dtype=float)) for k, v in table.items()}
    require_full_table(rows, n, players)
    return np.stack([rows[m] for m in range(2**n)])


# ------------------------------------------------------------------------------ inference
def _check_choice(value: str, options: tuple[str, ...], what: str) -> str:
    key = str(value).strip().lower()
    if key not in options:
        raise CopyscopeError(f"unknown {what} {value!r}: valid ones are {', '.join(options)}")
    return key


@dataclass(frozen=True, eq=False)
class InteractionResult:
    """Per pair ``pairs[k] = (i, j)``: ``values[k]``, jackknife ``standard_error[k]``, ``ci[k]`` (two-sided
    at ``level`` whatever the alternative), ``p_values[k]`` and Holm-adjusted ``p_adjusted[k]`` over the
    pairs. Without replicate columns the last four are NaN."""

    players: list[str]
    pairs: list[tuple[int, int]]
    values: np.ndarray
    standard_error: np.ndarray
    ci: np.ndarray  # (P, 2)
    p_values: np.ndarray
    p_adjusted: np.ndarray
    index: str = "shapley"
    level: float = 0.95
    alternative: str = "two-sided"
    p_adjust: str = "holm"
    n_seeds: int = 0

    def matrix(self, field: str = "values") -> np.ndarray:
        """``(n, n)`` symmetric matrix of a per-pair field, NaN diagonal."""
        n = len(self.players)
        return _symmetric(dict(zip(self.pairs, getattr(self, field))), n, 1, True)

    def to_json(self) -> dict:
        """JSON-safe dict; NaN and infinities become None (copyscope.finite)."""
        def arr(a: np.ndarray) -> list:
            return [arr(x) if np.ndim(x) else finite_or_none(x) for x in a]

        return {"index": self.index, "players": list(self.players), "pairs": [list(p) for p in self.pairs],
                "values": arr(self.values), "standard_error": arr(self.standard_error), "ci": arr(self.ci),
                "p_values": arr(self.p_values), "p_adjusted": arr(self.p_adjusted), "level": self.level,
                "alternative": self.alternative, "p_adjust": self.p_adjust, "n_seeds": self.n_seeds}

    @classmethod
    def from_json(cls, data: Mapping) -> InteractionResult:
        """Rebuild from :meth:`to_json` (None -> NaN)."""
        def arr(key: str, shape: tuple[int, ...]) -> np.ndarray:
            flat = np.ravel(np.asarray(data[key], dtype=object))
            return np.array([np.nan if x is None else x for x in flat], dtype=float).reshape(shape)

        try:
            k = len(data["pairs"])
            return cls(players=[str(p) for p in data["players"]], pairs=[(int(i), int(j)) for i, j in data["pairs"]],
                       values=arr("values", (k,)), standard_error=arr("standard_error", (k,)), ci=arr("ci", (k, 2)),
                       p_values=arr("p_values", (k,)), p_adjusted=arr("p_adjusted", (k,)), index=str(data["index"]),
                       level=float(data["level"]), alternative=str(data["alternative"]), p_adjust=str(data["p_adjust"]),
                       n_seeds=int(data["n_seeds"]))
        except KeyError as exc:
            raise CopyscopeError(f"interaction result is missing key {exc.args[0]!r}") from None


def _p_values(values: np.ndarray, pseudo: np.ndarray, alternative: str, tol: float, skew: bool) -> np.ndarray:
    """p of H0 ``I <= 0`` (greater), ``I >= 0`` (less) or ``I = 0`` (two-sided: twice the smaller
    one-sided p, which agrees with the two-sided interval)."""
    def greater(v: np.ndarray, ps: np.ndarray) -> np.ndarray:
        return seed_inference(v, ps, None, 0.95, tol, skew)[1]

    if alternative == "greater":
        return greater(values, pseudo)
    if alternative == "less":
        return greater(-values, -pseudo)
    return np.minimum(1.0, 2.0 * np.minimum(greater(values, pseudo), greater(-values, -pseudo)))


def interaction_inference(worths: ArrayLike, players: Sequence[str] | None = None, *, index: str = "shapley",
                          level: float = 0.95, alternative: str = "two-sided", p_adjust: str = "holm",
                          zero_tol: float | None = None, skew_correction: bool = True,
                          resampling: str = "jackknife") -> InteractionResult:
    """Pairwise interactions of a full table ``(2**n, 1 + m)`` (column 0 all seeds, column ``1 + s``
    without seed ``s``, as ``Game.evaluate(all_coalitions(n))`` gives it) with the audit's seed
    inference: jackknife SE, the (skew-corrected, as :meth:`Estimate.ci`) t interval at ``level``,
    p-values (two-sided by default: interactions can be negative) adjusted across the pairs.

    ``zero_tol``: values and SEs at or below it count as exactly zero (floating-point residue: value 0, p = 1,
    a zero-width interval); None: the audit's rule, 1e-10 of the largest worth.
    A ``(2**n,)`` or ``(2**n, 1)`` table gives values only (the rest NaN)."""
    index = _check_choice(index, INDICES, "interaction index")
    level = _check_level(level)
    alternative = _check_choice(alternative, ALTERNATIVES, "alternative")
    if _check_choice(resampling, ("jackknife", "bootstrap"), "resampling") != "jackknife":
        raise CopyscopeError("interaction inference needs leave-one-seed-out (jackknife) replicate columns, not bootstrap ones")
    w, n, _ = _table(worths)
    names = [f"player_{i}" for i in range(n)] if players is None else [str(p) for p in players]
    if len(names) != n:
        raise CopyscopeError(f"{len(names)} player names for a table of 2**{n} coalitions")
    pairs = pair_list(n)
    full = _PAIRS[index](w)
    cols = np.array([full[i, j] for i, j in pairs]).reshape(len(pairs), w.shape[1])
    tol = worths_zero_tol(np.abs(w[np.isfinite(w)]).max(initial=0.0)) if zero_tol is None else float(zero_tol)
    raw, loo, m = cols[:, 0], cols[:, 1:], w.shape[1] - 1
    se, ci, p = np.full(len(pairs), np.nan), np.full((len(pairs), 2), np.nan), np.full(len(pairs), np.nan)
    if m >= 2:  # the same calls as Estimate.ci / p_values on leave-one-seed-out columns
        pseudo = jackknife_pseudo_values(raw, loo)
        se = _snap(jackknife_se(loo), tol)
        ci = seed_inference(raw, pseudo, None, level, tol, skew_correction)[0]
        p = _p_values(raw, pseudo, alternative, tol, skew_correction)
    return InteractionResult(players=names, pairs=pairs, values=_snap(raw, tol), standard_error=se, ci=ci, p_values=p,
                             p_adjusted=adjust_p_values(p, p_adjust), index=index, level=level,
                             alternative=alternative, p_adjust=str(p_adjust).strip().lower(), n_seeds=m)


def _snap(x: np.ndarray, tol: float) -> np.ndarray:
    """Floating-point residue at or below ``tol`` is exactly zero."""
    return np.where(np.abs(x) <= tol, 0.0, x)
