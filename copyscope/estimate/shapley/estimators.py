"""Estimators: exact enumeration, leave-one-out, permutation sampling, sampled Banzhaf.

The interface (:class:`Estimator`: ``plan`` then ``estimate``) and exact enumeration live in
:mod:`copyscope.estimate.shapley.base`, KernelSHAP in :mod:`copyscope.estimate.shapley.kernelshap`, OddShap in
:mod:`copyscope.estimate.shapley.odd_regression`, the names in :mod:`copyscope.estimate.shapley.registry`.
This module re-exports the base names and ``KernelShap`` (older imports keep working).
"""

from __future__ import annotations

import math

import numpy as np

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley.base import (
    MAX_EXACT_PLAYERS,
    Design,
    Estimator,
    _banzhaf_weights,
    _exact_design,
    _exact_if_affordable,
    _shapley_weights,
    all_coalitions,
    check_budget,
)
from copyscope.estimate.shapley.kernelshap import KernelShap
__all__ = [
    "Estimator",
    "ExactShapley",
    "ExactBanzhaf",
    "LeaveOneOut",
    "PermutationShapley",
    "KernelShap",
    "SampledBanzhaf",
    "MAX_EXACT_PLAYERS",
    "Design",
    "all_coalitions",
    "check_budget",
]


class ExactShapley(Estimator):
    """Shapley values by enumerating all 2**n coalitions.

    ``phi_i = sum_{S not containing i} |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))``.
    Needs ``budget >= 2**n`` when a budget is given; refused above 20 players.
    """

    method = "exact"
    deterministic = True

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        return _exact_design(n, budget, _shapley_weights, self.method, self.index)  # a subclass reports its own name


class ExactBanzhaf(Estimator):
    """Banzhaf values by enumeration: ``beta_i = 2**-(n-1) sum_{S not containing i}
    (v(S + i) - v(S))``. Not efficient: the values need not sum to v(N) - v(empty)."""

    method = "banzhaf"
    index = "banzhaf"
    deterministic = True

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        return _exact_design(n, budget, _banzhaf_weights, self.method, self.index)


class LeaveOneOut(Estimator):
    """``loo_i = v(N) - v(N - i)``: the n + 1 coalitions N and N - i. Not efficient."""

    method = "loo"
    index = "loo"
    deterministic = True

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        if budget is not None and budget < n + 1:
            raise CopyscopeError(
                f"leave-one-out with {n} players needs {n + 1} coalitions, budget is {budget}"
            )
        coalitions = np.ones((n + 1, n), dtype=bool)
        coalitions[np.arange(1, n + 1), np.arange(n)] = False

        def solve(worths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
            return worths[0][None, :] - worths[1:], np.zeros(n), {}

        return Design(coalitions, solve, "loo", "loo", deterministic=True)


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
        rows, perms, prefix_ids = self._draw(n, budget, np.random.default_rng(seed), per_unit)
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

    def _draw(self, n: int, budget: int, rng: np.random.Generator, per_unit: int):
        """Units (a permutation, or an antithetic pair) until the next would exceed ``budget``
        distinct coalitions: (distinct rows, permutations, per permutation its n + 1 prefix rows'
        indices). Empty and full come first."""
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
        return rows, perms, prefix_ids

    def __repr__(self) -> str:
        return f"PermutationShapley(antithetic={self.antithetic}, budget={self.budget})"


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
