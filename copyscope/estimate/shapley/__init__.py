"""Attribution by cooperative game theory, independent of diffusion.

Three parts, as in shapiq: the *game* (:class:`Game`, a memoised worth function over boolean
coalition matrices, returning ``(k,)`` or ``(k, 1 + B)`` with replicate columns over seeds), the
*estimators* (exact, leave-one-out, permutation sampling, KernelSHAP, OddShap, Banzhaf; each
``estimate(game, budget, seed)``), and the *result* (:class:`Estimate`: values, replicates over
seeds (leave-one-seed-out or bootstrap), estimator standard error, intervals, one-sided tests,
liability shares; :mod:`copyscope.estimate.shapley.inference` for the intervals over seeds).

    >>> import numpy as np
    >>> from copyscope.estimate.shapley import Game, get_estimator
    >>> game = Game(3, lambda z: z @ np.array([1.0, 2.0, 3.0]), ["a", "b", "c"])
    >>> est = get_estimator("auto", 3, None).estimate(game)
    >>> est.values.round(6).tolist()
    [1.0, 2.0, 3.0]
"""

from copyscope.estimate.shapley.estimators import (
    Estimator,
    ExactBanzhaf,
    ExactShapley,
    KernelShap,
    LeaveOneOut,
    PermutationShapley,
    SampledBanzhaf,
    all_coalitions,
)
from copyscope.estimate.shapley.game import Game
from copyscope.estimate.shapley.odd_regression import OddShap
from copyscope.estimate.shapley.registry import ESTIMATORS, METHODS, efficiency_gap, estimator_names, get_estimator
from copyscope.estimate.shapley.pvalues_shares import adjust_p_values, positive_shares
from copyscope.estimate.shapley.result import Estimate

__all__ = [
    "Game",
    "Estimate",
    "Estimator",
    "ExactShapley",
    "ExactBanzhaf",
    "LeaveOneOut",
    "PermutationShapley",
    "KernelShap",
    "OddShap",
    "SampledBanzhaf",
    "ESTIMATORS",
    "METHODS",
    "estimator_names",
    "get_estimator",
    "efficiency_gap",
    "adjust_p_values",
    "positive_shares",
    "all_coalitions",
]
