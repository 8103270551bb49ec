"""The estimator interface (:class:`Estimator`, :class:`Design`) and exact enumeration.

Every estimator works in two steps that never look at worths in between:

1. ``plan(n_players, budget, seed)`` draws the coalitions it needs (a bool matrix). It depends
   only on ``n``, the budget and the seed, so a pipeline can plan, generate images for exactly
   those coalitions, and estimate later from stored worths (:meth:`Game.from_table`).
2. ``estimate(game, budget, seed)`` asks the game for those coalitions in ONE batch call and
   solves column-wise: every column of the ``(k, 1 + B)`` worth matrix goes through the same
   linear map, so column 0 gives the point estimate and columns ``1..B`` the bootstrap
   replicates, all with the same sampled coalitions.

Budget = number of distinct coalitions an estimate uses. Sampled estimators never exceed it.

:meth:`Estimator.plan` is THE answer to "which coalitions will this estimator evaluate?": plan.json,
``copyscope plan`` and the distributed dry run should ask it rather than re-derive the rule, and
``estimate`` evaluates exactly ``plan``'s rows (tests/unit/estimate/test_shapley.py checks this for every
registered estimator).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley.game import Game
from copyscope.estimate.shapley.result import Estimate

__all__ = ["Design", "Estimator", "MAX_EXACT_PLAYERS", "all_coalitions", "check_budget"]

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
    # no draw from the seed (enumeration, leave-one-out): the Estimate then records seed=None.
    # A design, not an estimator, property: a sampled estimator whose budget covers all 2**n
    # coalitions falls back to the (deterministic) exact design.
    deterministic: bool = False


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
    """Base class. Subclasses implement :meth:`_design` and set the class attributes below; the
    registry (:mod:`copyscope.estimate.shapley.registry`) reads them, so each fact is written once."""

    method = "estimator"  # the name the registry and zoo files use
    index = "shapley"  # the attribution index: "shapley", "banzhaf" or "loo"
    needs_budget = False
    deterministic = False  # True: never draws from the seed (its designs are all deterministic)

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
        """The distinct coalitions :meth:`estimate` will evaluate, as a bool matrix (k, n).

        The one answer to "which coalitions does this estimator need?" for every estimator: it
        runs the same design as :meth:`estimate`, which then evaluates exactly these rows, in this
        order, in one batch. Depends on ``n_players``, the budget and the seed only.
        """
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
                f"estimate() needs a copyscope.estimate.shapley.Game, got {type(game).__name__}"
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
            seed=None if design.deterministic else seed,
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

    return Design(coalitions, solve, method, index, deterministic=True)


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

