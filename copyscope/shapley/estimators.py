"""Estimators: exact enumeration, leave-one-out, permutation sampling, KernelSHAP, Banzhaf.

Every estimator works in two steps that never look at worths in between:

1. ``plan(n_players, budget, seed)`` draws the coalitions it needs (a bool matrix). It depends
   only on ``n``, the budget and the seed, so a pipeline can plan, generate images for exactly
   those coalitions, and estimate later from stored worths (:meth:`Game.from_table`).
2. ``estimate(game, budget, seed)`` asks the game for those coalitions in ONE batch call and
   solves column-wise: every column of the ``(k, 1 + B)`` worth matrix goes through the same
   linear map, so column 0 gives the point estimate and columns ``1..B`` the bootstrap
   replicates, all with the same sampled coalitions.

Budget = number of distinct coalitions an estimate uses. Sampled estimators never exceed it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from copyscope.errors import CopyscopeError
from copyscope.shapley.game import Game
from copyscope.shapley.result import Estimate

__all__ = [
    "Estimator",
    "ExactShapley",
    "ExactBanzhaf",
    "LeaveOneOut",
    "PermutationShapley",
    "KernelShap",
    "SampledBanzhaf",
    "MAX_EXACT_PLAYERS",
]

MAX_EXACT_PLAYERS = 20
"""Exact enumeration is refused above this many players (2**20 coalitions)."""

Solver = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None", dict]]


@dataclass
class Design:
    """The coalitions an estimate needs and how to turn their worths into values."""

    coalitions: np.ndarray  # (k, n) bool, distinct rows
    solve: Solver  # (k, C) worths -> (phi (n, C), estimator_se (n,) or None, info)
    method: str
    index: str = "shapley"
    info: dict = field(default_factory=dict)


def check_budget(budget: object) -> int | None:
    """None or a positive integer; anything else is a CopyscopeError."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        if isinstance(budget, float) and budget.is_integer():
            budget = int(budget)
        else:
            raise CopyscopeError(f"budget must be a positive integer, got {budget!r}")
    if budget < 1:
        raise CopyscopeError(f"budget must be a positive integer, got {budget}")
    return int(budget)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CopyscopeError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def all_coalitions(n: int) -> np.ndarray:
    """All 2**n coalitions; row m holds the bits of m (player i = bit i)."""
    masks = np.arange(2**n, dtype=np.int64)
    return ((masks[:, None] >> np.arange(n)) & 1).astype(bool)


def _comb(n: int, k: int) -> int:
    return math.comb(n, k)


class Estimator:
    """Base class. Subclasses implement :meth:`_design`."""

    method = "estimator"
    index = "shapley"
    needs_budget = False

    def __init__(self, budget: int | None = None):
        self.budget = check_budget(budget)

    def _resolve_budget(self, budget: int | None) -> int | None:
        budget = check_budget(budget)
        if budget is None:
            budget = self.budget
        if budget is None and self.needs_budget:
            raise CopyscopeError(f"the {self.method} estimator needs a budget (estimator.budget)")
        return budget

    def _design(self, n: int, budget: int | None, seed: int) -> Design:  # pragma: no cover
        raise NotImplementedError

    def plan(self, n_players: int, budget: int | None = None, seed: int = 0) -> np.ndarray:
        """The distinct coalitions :meth:`estimate` will evaluate, as a bool matrix (k, n)."""
        if isinstance(n_players, bool) or not isinstance(n_players, (int, np.integer)):
            raise CopyscopeError(f"n_players must be an integer, got {n_players!r}")
        if n_players < 1:
            raise CopyscopeError(f"a game needs at least one player, got {n_players}")
        design = self._design(int(n_players), self._resolve_budget(budget), _check_seed(seed))
        return design.coalitions.copy()

    def estimate(self, game: Game, budget: int | None = None, seed: int = 0) -> Estimate:
        """Estimate the values of ``game`` within ``budget`` distinct coalitions."""
        if not isinstance(game, Game):
            raise CopyscopeError(
                f"estimate() needs a copyscope.shapley.Game, got {type(game).__name__}"
            )
        budget = self._resolve_budget(budget)
        seed = _check_seed(seed)
        design = self._design(game.n_players, budget, seed)
        worths = game.evaluate(design.coalitions)  # (k, 1 + B), one batch call
        phi, se, info = design.solve(worths)
        replicates = phi[:, 1:] if phi.shape[1] > 1 else None
        return Estimate(
            player_names=list(game.player_names),
            values=phi[:, 0],
            replicates=replicates,
            estimator_se=se,
            n_evaluated=int(design.coalitions.shape[0]),
            method=design.method,
            budget=budget,
            index=design.index,
            seed=seed if design.method not in ("exact", "banzhaf", "loo") else None,
            info={**design.info, **info},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(budget={self.budget})"


# ---------------------------------------------------------------------------------- exact
def _exact_design(n: int, budget: int | None, weights: Callable[[int], np.ndarray], method: str,
                  index: str) -> Design:
    if n > MAX_EXACT_PLAYERS:
        raise CopyscopeError(
            f"too many players ({n}) for exact estimation: 2**{n} coalitions; "
            f"use a sampled estimator with estimator.budget"
        )
    total = 2**n
    if budget is not None and budget < total:
        raise CopyscopeError(
            f"exact {index} estimation of {n} players needs 2**{n} = {total} coalitions, "
            f"but the budget is {budget}"
        )
    coalitions = all_coalitions(n)
    sizes = coalitions.sum(axis=1)
    w = weights(n)  # weight of a marginal contribution v(S + i) - v(S) by |S|

    def solve(worths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        masks = np.arange(total, dtype=np.int64)
        phi = np.empty((n, worths.shape[1]))
        for i in range(n):
            without = masks[(masks >> i) & 1 == 0]
            diff = worths[without | (1 << i)] - worths[without]
            phi[i] = w[sizes[without]] @ diff
        return phi, np.zeros(n), {}

    return Design(coalitions, solve, method, index)


def _exact_if_affordable(n: int, budget: int, weights: Callable[[int], np.ndarray], method: str,
                         index: str) -> Design | None:
    """The exact design when ``budget >= 2**n`` covers every coalition (cheaper than sampling),
    else None: the sampled estimators fall back to it."""
    if n <= MAX_EXACT_PLAYERS and budget >= 2**n:
        design = _exact_design(n, None, weights, method, index)
        design.info["note"] = f"budget {budget} >= 2**{n}: exact enumeration"
        return design
    return None


def _shapley_weights(n: int) -> np.ndarray:
    s = np.arange(n)
    return np.array([1.0 / (n * _comb(n - 1, int(k))) for k in s])


def _banzhaf_weights(n: int) -> np.ndarray:
    return np.full(n, 1.0 / 2 ** (n - 1))


class ExactShapley(Estimator):
    """Shapley values by enumerating all 2**n coalitions.

    ``phi_i = sum_{S not containing i} |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))``.
    Needs ``budget >= 2**n`` when a budget is given; refused above 20 players.
    """

    method = "exact"

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        return _exact_design(n, budget, _shapley_weights, "exact", "shapley")


class ExactBanzhaf(Estimator):
    """Banzhaf values by enumeration: ``beta_i = 2**-(n-1) sum_{S not containing i}
    (v(S + i) - v(S))``. Not efficient: the values need not sum to v(N) - v(empty)."""

    method = "banzhaf"
    index = "banzhaf"

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        return _exact_design(n, budget, _banzhaf_weights, "banzhaf", "banzhaf")


class LeaveOneOut(Estimator):
    """``loo_i = v(N) - v(N - i)``: the n + 1 coalitions N and N - i. Not efficient."""

    method = "loo"
    index = "loo"

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        if budget is not None and budget < n + 1:
            raise CopyscopeError(
                f"leave-one-out with {n} players needs {n + 1} coalitions, budget is {budget}"
            )
        coalitions = np.ones((n + 1, n), dtype=bool)
        coalitions[np.arange(1, n + 1), np.arange(n)] = False

        def solve(worths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
            return worths[0][None, :] - worths[1:], np.zeros(n), {}

        return Design(coalitions, solve, "loo", "loo")


# ---------------------------------------------------------------------------------- permutation
class PermutationShapley(Estimator):
    """Monte Carlo over permutations (ApproShapley, Castro et al. 2009), memoised.

    Each permutation pi yields one marginal vector ``m_i = v(P_i + i) - v(P_i)`` (P_i = players
    before i), whose sum is exactly v(N) - v(empty): the estimate is efficient. With
    ``antithetic=True`` each permutation is paired with its reverse, and the pair's average is one
    sampling unit (a negative-correlation variance reduction).

    Budget: units are drawn until the next unit would need more distinct coalitions than
    ``budget`` (coalitions shared between permutations, such as empty, full and small prefixes,
    are counted once). ``estimator_se`` = sd of the units (column 0) / sqrt(#units); inf with a
    single unit. With ``budget >= 2**n`` the exact enumeration is cheaper and is used instead
    (``method = "exact"``).
    """

    method = "permutation"
    needs_budget = True

    def __init__(self, antithetic: bool = True, budget: int | None = None,
                 max_units: int | None = None):
        super().__init__(budget)
        self.antithetic = bool(antithetic)
        self.max_units = max_units

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        assert budget is not None
        exact = _exact_if_affordable(n, budget, _shapley_weights, "exact", "shapley")
        if exact is not None:
            return exact
        per_unit = 2 if self.antithetic else 1
        minimum = 2 + per_unit * (n - 1)
        if budget < minimum:
            raise CopyscopeError(
                f"budget {budget} is too small for permutation sampling of {n} players: one "
                f"{'antithetic pair' if self.antithetic else 'permutation'} needs {minimum} "
                f"coalitions"
            )
        rng = np.random.default_rng(seed)
        lower = np.arange(n + 1)[:, None] > np.arange(n)[None, :]  # prefix t holds pi[:t]
        index: dict[bytes, int] = {}
        rows: list[np.ndarray] = []

        def key_of(row: np.ndarray) -> int:
            key = row.tobytes()
            if key not in index:
                index[key] = len(rows)
                rows.append(row)
            return index[key]

        key_of(np.zeros(n, dtype=bool))
        key_of(np.ones(n, dtype=bool))
        perms: list[np.ndarray] = []
        prefix_ids: list[list[int]] = []
        max_units = self.max_units or max(1000, 20 * budget)
        while len(perms) // per_unit < max_units:
            pi = rng.permutation(n)
            unit = [pi, pi[::-1].copy()] if self.antithetic else [pi]
            pending: dict[bytes, np.ndarray] = {}
            unit_rows = []
            for p in unit:
                z = np.empty((n + 1, n), dtype=bool)
                z[:, p] = lower
                unit_rows.append(z)
                for row in z:
                    k = row.tobytes()
                    if k not in index:
                        pending[k] = row
            if len(rows) + len(pending) > budget:
                break
            for p, z in zip(unit, unit_rows):
                perms.append(p)
                prefix_ids.append([key_of(row) for row in z])
        coalitions = np.array(rows, dtype=bool)
        perm_arr = np.array(perms)  # (P, n)
        ids = np.array(prefix_ids)  # (P, n + 1)
        n_units = len(perms) // per_unit

        def solve(worths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
            vals = worths[ids]  # (P, n + 1, C)
            diffs = vals[:, 1:] - vals[:, :-1]  # contribution of pi[t], in permutation order
            position = np.argsort(perm_arr, axis=1)  # position of player i in each permutation
            marg = np.take_along_axis(diffs, position[:, :, None], axis=1)  # (P, n, C)
            units = marg.reshape(n_units, per_unit, n, -1).mean(axis=1)
            phi = units.mean(axis=0)
            if n_units > 1:
                se = units[:, :, 0].std(axis=0, ddof=1) / math.sqrt(n_units)
            else:
                se = np.full(n, np.inf)
            return phi, se, {}

        info = {"n_permutations": len(perms), "antithetic": self.antithetic}
        return Design(coalitions, solve, "permutation", "shapley", info)

    def __repr__(self) -> str:
        return f"PermutationShapley(antithetic={self.antithetic}, budget={self.budget})"


# ---------------------------------------------------------------------------------- KernelSHAP
def _sample_distinct(rng: np.random.Generator, n: int, s: int, m: int,
                     paired_middle: bool = False) -> np.ndarray:
    """m distinct coalitions of size s, uniformly without replacement, as a bool matrix.

    With ``paired_middle`` (s = n/2) m/2 distinct unordered pairs {S, N - S} are drawn and both
    members returned (m must be even)."""
    total = _comb(n, s)
    out: list[np.ndarray] = []
    seen: set[bytes] = set()
    target = m // 2 if paired_middle else m
    if total <= 4096:  # enumerate and choose
        combos = list(combinations(range(n), s))
        order = rng.permutation(len(combos))
        for j in order:
            if len(out) >= target:
                break
            row = np.zeros(n, dtype=bool)
            row[list(combos[j])] = True
            if row.tobytes() in seen:
                continue
            seen.add(row.tobytes())
            if paired_middle:
                seen.add((~row).tobytes())
            out.append(row)
    else:
        while len(out) < target:
            row = np.zeros(n, dtype=bool)
            row[rng.choice(n, size=s, replace=False)] = True
            k = row.tobytes()
            if k in seen:
                continue
            seen.add(k)
            if paired_middle:
                seen.add((~row).tobytes())
            out.append(row)
    z = np.array(out, dtype=bool).reshape(-1, n)
    if paired_middle:
        z = np.concatenate([z, ~z])
    return z


def _largest_remainder(total: int, shares: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Integer allocation of ``total`` proportional to ``shares``, at most ``caps[j]`` each."""
    shares = np.asarray(shares, dtype=float)
    caps = np.asarray(caps, dtype=int)
    alloc = np.zeros(len(shares), dtype=int)
    remaining = int(total)
    while remaining > 0:
        active = alloc < caps
        w = np.where(active, shares, 0.0)
        if w.sum() <= 0:
            break
        ideal = remaining * w / w.sum()
        base = np.minimum(np.floor(ideal).astype(int), caps - alloc)
        alloc += base
        remaining -= int(base.sum())
        added = int(base.sum())
        frac = np.where(alloc < caps, ideal - np.floor(ideal), 0.0)
        for j in np.argsort(-frac, kind="stable"):
            if remaining <= 0 or frac[j] <= 0:
                break
            alloc[j] += 1
            remaining -= 1
            added += 1
        if added == 0:
            break
    return alloc


def _kkt_solve(A: np.ndarray, b: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Solve min (y - Z phi)' W (y - Z phi) s.t. sum(phi) = delta, given A = Z'WZ and b = Z'Wy.

    Batched: A (..., n, n), b (..., n, C), delta (..., C); returns (..., n, C). Uses the
    pseudo-inverse of the KKT matrix, so a rank-deficient design (e.g. two players that are
    inside or outside every sampled coalition together) gets the minimum-norm solution, which
    splits the indistinguishable players' total equally, instead of numerical garbage."""
    n = A.shape[-1]
    batch = A.shape[:-2]
    K = np.zeros(batch + (n + 1, n + 1))
    K[..., :n, :n] = A
    K[..., :n, n] = 1.0
    K[..., n, :n] = 1.0
    rhs = np.concatenate([b, delta[..., None, :]], axis=-2)
    sol = np.linalg.pinv(K, rcond=1e-10) @ rhs
    return sol[..., :n, :]


class KernelShap(Estimator):
    """KernelSHAP (Lundberg & Lee 2017) with exact efficiency and stratified paired sampling.

    The Shapley values are the solution of the weighted least squares problem
    ``min sum_S k(|S|) (v(S) - v(empty) - sum_{i in S} phi_i)**2`` subject to
    ``sum_i phi_i = v(N) - v(empty)``, with the Shapley kernel ``k(s) = (n-1) / (C(n,s) s (n-s))``
    over ``0 < |S| < n``. The empty and full coalitions are always evaluated and the constraint
    is solved exactly (KKT system), so efficiency holds to rounding error.

    Sampling (all depends on n, budget and seed only): the budget left after empty and full is
    split across coalition sizes in proportion to the kernel mass of each size, ``1/(s(n-s))``.
    Sizes whose share would cover all their C(n, s) coalitions are enumerated (the "border
    trick"); in the other sizes a fixed number of distinct coalitions is drawn uniformly without
    replacement (stratified sampling). With ``paired=True`` every drawn coalition comes with its
    complement (Covert & Lee 2021). A sampled coalition of size s carries weight
    ``K(s) / m_s`` (K(s) the total kernel mass of the size, m_s the number drawn), so the
    regression's normal equations are stratified estimates of the exact ones.

    ``estimator_se``: bootstrap over the sampled coalitions (pairs kept together, resampled
    within each size; enumerated sizes fixed), ``n_bootstrap`` re-solves on column 0. It ignores
    the finite-population gain of drawing without replacement, so it errs on the large side.
    With ``budget >= 2**n`` every coalition is enumerated and the result is exact.
    """

    method = "kernelshap"
    needs_budget = True

    def __init__(self, paired: bool = True, budget: int | None = None, n_bootstrap: int = 200):
        super().__init__(budget)
        self.paired = bool(paired)
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or (
                n_bootstrap < 0):
            raise CopyscopeError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
        self.n_bootstrap = int(n_bootstrap)

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        assert budget is not None
        exact = _exact_if_affordable(n, budget, _shapley_weights, "exact", "shapley")
        if exact is not None:
            return exact
        if n == 1:  # 2**1 = 2 > budget means budget == 1
            raise CopyscopeError(f"budget {budget} is too small: a 1-player game needs 2")
        minimum = n + 2 if not self.paired else n + 2 + (n % 2)
        if budget < minimum:
            raise CopyscopeError(
                f"budget {budget} is too small for KernelSHAP with {n} players: it needs at least "
                f"{minimum} coalitions"
            )
        rng = np.random.default_rng(seed)
        sizes = np.arange(1, n)
        mass = 1.0 / (sizes * (n - sizes))  # relative kernel mass per size
        # coalitions per size, capped (any budget is far below 2**62)
        counts = np.array([min(_comb(n, int(s)), 2**62) for s in sizes], dtype=np.int64)
        remaining = budget - 2
        sampled = np.ones(n - 1, dtype=bool)
        # border trick: enumerate sizes whose expected share covers them entirely
        while True:
            q = np.where(sampled, mass, 0.0)
            q = q / q.sum() if q.sum() > 0 else q
            full = sampled & (remaining * q >= counts)
            if not full.any():
                break
            remaining -= int(counts[full].sum())
            sampled &= ~full
        enumerated = ~sampled
        blocks: list[np.ndarray] = [np.zeros((1, n), dtype=bool), np.ones((1, n), dtype=bool)]
        weights: list[np.ndarray] = [np.zeros(1), np.zeros(1)]
        unit_ids: list[np.ndarray] = [np.full(1, -1), np.full(1, -1)]  # -1 = not resampled
        stratum_of_unit: list[int] = []
        kernel_total = (n - 1) * mass  # K(s) = C(n,s) k(s)
        for j in np.flatnonzero(enumerated):
            s = int(sizes[j])
            z = np.array([[i in c for i in range(n)] for c in combinations(range(n), s)],
                         dtype=bool).reshape(-1, n)
            blocks.append(z)
            weights.append(np.full(len(z), kernel_total[j] / counts[j]))
            unit_ids.append(np.full(len(z), -1))
        n_units = 0
        strata_info = {}
        if sampled.any():
            if self.paired:
                # pair strata: sizes s < n/2 with their complements n - s; the middle size alone
                lows = [int(s) for s in sizes[sampled] if 2 * s <= n]
                share = np.array([mass[s - 1] * (1 if 2 * s == n else 2) for s in lows])
                caps = np.array([counts[s - 1] // 2 if 2 * s == n else counts[s - 1]
                                 for s in lows])
                pairs = _largest_remainder(remaining // 2, share, caps)
                for s, p in zip(lows, pairs):
                    if p == 0:
                        continue
                    if 2 * s == n:
                        z = _sample_distinct(rng, n, s, 2 * int(p), paired_middle=True)
                        ids = np.concatenate([np.arange(p), np.arange(p)]) + n_units
                        blocks.append(z)
                        weights.append(np.full(len(z), kernel_total[s - 1] / (2 * p)))
                        unit_ids.append(ids)
                    else:
                        z = _sample_distinct(rng, n, s, int(p))
                        z = np.concatenate([z, ~z])
                        ids = np.concatenate([np.arange(p), np.arange(p)]) + n_units
                        blocks.append(z)
                        weights.append(np.concatenate([
                            np.full(p, kernel_total[s - 1] / p),
                            np.full(p, kernel_total[n - s - 1] / p),
                        ]))
                        unit_ids.append(ids)
                    n_units += int(p)
                    stratum_of_unit.extend([len(strata_info)] * int(p))
                    strata_info[f"{s}|{n - s}"] = int(p)
            else:
                idx = np.flatnonzero(sampled)
                alloc = _largest_remainder(remaining, mass[idx], counts[idx])
                for j, m in zip(idx, alloc):
                    if m == 0:
                        continue
                    s = int(sizes[j])
                    z = _sample_distinct(rng, n, s, int(m))
                    blocks.append(z)
                    weights.append(np.full(m, kernel_total[j] / m))
                    unit_ids.append(np.arange(m) + n_units)
                    n_units += int(m)
                    stratum_of_unit.extend([len(strata_info)] * int(m))
                    strata_info[str(s)] = int(m)
        coalitions = np.concatenate(blocks)
        w = np.concatenate(weights)
        uid = np.concatenate(unit_ids)
        strata = np.array(stratum_of_unit, dtype=int)
        zf = coalitions.astype(float)
        reg = slice(2, None)  # rows after empty and full
        Zr, wr = zf[reg], w[reg]
        A = Zr.T @ (wr[:, None] * Zr)
        n_boot = self.n_bootstrap
        seed_boot = seed
        present = set(coalitions[2:].sum(axis=1).tolist())
        unsampled = [int(s) for s in sizes if int(s) not in present]

        def solve(worths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
            y = worths[reg] - worths[0]
            delta = worths[1] - worths[0]
            b = Zr.T @ (wr[:, None] * y)
            phi = _kkt_solve(A, b, delta)
            se: np.ndarray | None
            if n_units == 0:  # nothing sampled: exact if every size is covered
                se = np.full(n, np.inf) if unsampled else np.zeros(n)
            elif n_boot <= 1:
                se = None  # not computed
            else:
                brng = np.random.default_rng([seed_boot, 7919])
                # Rao-Wu rescaled bootstrap: m - 1 draws with replacement among a stratum's m
                # units, counts scaled by m / (m - 1), so the bootstrap variance of a stratum
                # mean is not shrunk by (m - 1) / m (which matters with 2-5 units per size)
                unit_counts = np.ones((n_boot, n_units))
                for st in np.unique(strata):
                    members = np.flatnonzero(strata == st)
                    m = len(members)
                    if m > 1:
                        draws = brng.multinomial(m - 1, np.full(m, 1.0 / m), n_boot)
                        unit_counts[:, members] = draws * (m / (m - 1))
                uid_r = uid[reg]
                mult = np.where(uid_r >= 0, unit_counts[:, np.maximum(uid_r, 0)], 1.0)
                wb = wr[None, :] * mult  # (R, k)
                if Zr.shape[0] * n * n <= 20_000_000:  # one GEMM over outer products
                    outer = (Zr[:, :, None] * Zr[:, None, :]).reshape(len(Zr), n * n)
                    Ab = (wb @ outer).reshape(n_boot, n, n)
                else:
                    Ab = np.stack([(Zr.T * wr_b) @ Zr for wr_b in wb])
                bb = ((wb * y[None, :, 0]) @ Zr)[..., None]  # (R, n, 1)
                db = np.full((n_boot, 1), delta[0])
                boot = _kkt_solve(Ab, bb, db)[..., 0]
                se = boot.std(axis=0, ddof=1)
            return phi, se, {}

        # players inside/outside every regression coalition together cannot be told apart:
        # the solver splits their total equally; report them
        groups: dict[bytes, list[int]] = {}
        for i in range(n):
            groups.setdefault(Zr[:, i].tobytes(), []).append(i)
        info = {
            "indistinguishable": [g for g in groups.values() if len(g) > 1],
            "paired": self.paired,
            "enumerated_sizes": [int(s) for s in sizes[enumerated]],
            "sampled_per_stratum": strata_info,
            "unsampled_sizes": unsampled,
        }
        return Design(coalitions, solve, "kernelshap", "shapley", info)

    def __repr__(self) -> str:
        return f"KernelShap(paired={self.paired}, budget={self.budget})"


# ---------------------------------------------------------------------------------- Banzhaf
class SampledBanzhaf(Estimator):
    """Banzhaf values by maximum sample reuse (Wang & Jia 2023) with paired coalitions.

    Distinct coalitions are drawn uniformly (each player in with probability 1/2), each with its
    complement, so every player is inside and outside equally often:
    ``beta_i = mean_{S contains i} v(S) - mean_{S lacks i} v(S)``, unbiased. ``estimator_se`` is
    the sd over pairs of the signed differences / sqrt(#pairs). Not efficient.
    """

    method = "sampled_banzhaf"
    index = "banzhaf"
    needs_budget = True

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        assert budget is not None
        exact = _exact_if_affordable(n, budget, _banzhaf_weights, "banzhaf", "banzhaf")
        if exact is not None:
            return exact
        if budget < 4:
            raise CopyscopeError(f"budget {budget} is too small for sampled Banzhaf: needs 4")
        rng = np.random.default_rng(seed)
        n_pairs = budget // 2
        seen: set[bytes] = set()
        rows: list[np.ndarray] = []
        while len(rows) < n_pairs:
            row = rng.random(n) < 0.5
            k = row.tobytes()
            if k in seen:
                continue
            seen.add(k)
            seen.add((~row).tobytes())
            rows.append(row)
        z = np.array(rows, dtype=bool)
        coalitions = np.concatenate([z, ~z])
        sign = np.where(z, 1.0, -1.0)  # (P, n): +1 if i is in the first member

        def solve(worths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
            d = worths[:n_pairs] - worths[n_pairs:]  # (P, C)
            signed = sign[:, :, None] * d[:, None, :]  # (P, n, C)
            phi = signed.mean(axis=0)
            se = signed[:, :, 0].std(axis=0, ddof=1) / math.sqrt(n_pairs) if n_pairs > 1 else (
                np.full(n, np.inf))
            return phi, se, {}

        return Design(coalitions, solve, "sampled_banzhaf", "banzhaf", {"n_pairs": n_pairs})
