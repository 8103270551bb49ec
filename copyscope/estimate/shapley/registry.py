"""Estimators by name: the one registry that zoo files, the config schema and ``get_estimator`` use.

A new estimator: subclass :class:`~copyscope.estimate.shapley.base.Estimator` (set ``method``, ``index``,
``needs_budget``, ``deterministic``; implement ``_design``) and add the class to ``ESTIMATORS``.
Its name then reaches the zoo file's ``estimator.method`` if its ``index`` is "shapley".
"""

from __future__ import annotations

import numpy as np

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley.base import Estimator, check_budget
from copyscope.estimate.shapley.estimators import (
    ExactBanzhaf,
    ExactShapley,
    LeaveOneOut,
    PermutationShapley,
    SampledBanzhaf,
)
from copyscope.estimate.shapley.game import Game
from copyscope.estimate.shapley.kernelshap import KernelShap
from copyscope.estimate.shapley.odd_regression import OddShap
from copyscope.estimate.shapley.result import Estimate

__all__ = ["ESTIMATORS", "METHODS", "AUTO_EXACT_MAX_PLAYERS", "estimator_names", "get_estimator",
           "efficiency_gap"]

AUTO_EXACT_MAX_PLAYERS = 12
"""With no budget, "auto" enumerates exactly up to this many players (4096 coalitions)."""

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.method: cls
    for cls in (ExactShapley, PermutationShapley, KernelShap, OddShap, ExactBanzhaf, SampledBanzhaf,
                LeaveOneOut)
}
"""Every estimator class by its ``method`` name, in the order error messages list them."""

METHODS: dict[str, type[Estimator] | None] = {"auto": None, **ESTIMATORS}
"""The names ``get_estimator`` accepts: "auto" (chosen from n and the budget) and ``ESTIMATORS``."""


def estimator_names(index: str | None = None) -> tuple[str, ...]:
    """"auto" and the registered names, or only those whose ``index`` is ``index``.

    The zoo file's ``estimator.method`` takes ``estimator_names("shapley")`` (an audit reports
    Shapley values; Banzhaf and leave-one-out are computed beside them, not chosen)."""
    return ("auto",) + tuple(m for m, cls in ESTIMATORS.items() if index is None or cls.index == index)


def get_estimator(method: str, n_players: int, budget: int | None = None) -> Estimator:
    """The estimator for ``method`` with ``budget`` bound as its default.

    ``auto``: exact Shapley when ``2**n <= budget``, or when there is no budget and
    ``n <= 12``; OddShap (paired KernelSHAP + third-order odd terms, the most accurate sampled
    estimator in bench/bench_estimators.py) when a budget is given and smaller than ``2**n``;
    with no budget and ``n > 12`` a CopyscopeError asks for ``estimator.budget``.
    """
    if isinstance(n_players, bool) or not isinstance(n_players, (int, np.integer)) or n_players < 1:
        raise CopyscopeError(f"n_players must be a positive integer, got {n_players!r}")
    budget = check_budget(budget)
    key = str(method).strip().lower()
    if key not in METHODS:
        raise CopyscopeError(
            f"unknown estimator method '{method}': valid methods are {', '.join(METHODS)}"
        )
    n = int(n_players)
    if key == "auto":
        if budget is None:
            if n > AUTO_EXACT_MAX_PLAYERS:
                raise CopyscopeError(
                    f"too many players ({n}) for exact estimation: set estimator.budget"
                )
            return ExactShapley()
        if n <= 62 and 2**n <= budget:
            return ExactShapley(budget=budget)
        return OddShap(budget=budget)
    cls = METHODS[key]
    return cls(budget=budget)


def efficiency_gap(estimate: Estimate, game: Game) -> float:
    """``sum(values) - (v(N) - v(empty))`` on column 0 (all seeds).

    Zero up to rounding for the efficient methods (exact, permutation, kernelshap, oddshap); Banzhaf and
    leave-one-out are not efficient. May evaluate N and the empty coalition if the game has not
    seen them yet (at most 2 coalitions).
    """
    if not isinstance(game, Game):
        raise CopyscopeError(f"efficiency_gap() needs a Game, got {type(game).__name__}")
    if estimate.n_players != game.n_players:
        raise CopyscopeError(
            f"the estimate has {estimate.n_players} players but the game has {game.n_players}"
        )
    n = game.n_players
    ends = game.evaluate(np.array([np.zeros(n, dtype=bool), np.ones(n, dtype=bool)]))
    return float(estimate.values.sum() - (ends[1, 0] - ends[0, 0]))
