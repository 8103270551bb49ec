"""OddShap (paired KernelSHAP + ridge third-order odd terms): closed forms, budget, efficiency,
linearity over bootstrap columns, estimator SE coverage, accuracy against KernelSHAP and shapiq."""

from __future__ import annotations

import numpy as np
import pytest

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley import ExactShapley, Game, KernelShap, OddShap, efficiency_gap, get_estimator
from copyscope.estimate.shapley.synthetic import (
    airport_game,
    airport_shapley,
    dividend_game,
    dividend_shapley,
    random_dividend_game,
)


def _order4_game(n: int, seed: int):
    """Pair, triple and four-way Harsanyi dividends: the odd part has order <= 3."""
    rng = np.random.default_rng(seed)
    div = {(i,): float(rng.normal()) for i in range(n)}
    for size, count in ((2, n), (3, n // 2), (4, 3)):
        while sum(len(t) == size for t in div) < count:
            t = tuple(sorted(rng.choice(n, size=size, replace=False).tolist()))
            div.setdefault(t, float(rng.normal(scale=0.5)))
    return dividend_game(n, div), dividend_shapley(n, div)


def test_pairwise_games_are_exact_at_any_budget():
    """Paired designs see only the odd part; a game with order <= 2 has a linear odd part."""
    n = 9
    rng = np.random.default_rng(0)
    div = {(i,): float(rng.normal()) for i in range(n)}
    div.update({(0, 1): 1.5, (2, 5): -0.7, (3, 8): 0.4})
    truth = dividend_shapley(n, div)
    for budget in (40, 100, 300):  # large enough that the design tells every player apart
        e = OddShap().estimate(dividend_game(n, div), budget=budget, seed=1)
        assert e.method == "oddshap" and not e.info["indistinguishable"]
        np.testing.assert_allclose(e.values, truth, atol=1e-9)


def test_order_four_games_are_recovered_where_kernelshap_is_not():
    """Interactions up to order 4 leave an odd part of order 3: OddShap fits it, KernelSHAP
    (linear terms only) cannot. n = 10, 600 of 1024 coalitions."""
    game, truth = _order4_game(10, seed=4)
    odd = OddShap().estimate(game, budget=600, seed=0)
    kern = KernelShap(n_bootstrap=0).estimate(game, budget=600, seed=0)
    assert np.abs(odd.values - truth).max() < 2e-3
    assert np.abs(kern.values - truth).max() > 5 * np.abs(odd.values - truth).max()
    assert odd.info["third_order"] is True


def test_plan_budget_and_efficiency_on_every_column():
    n = 11
    base, _, _ = random_dividend_game(n, seed=2)
    rng = np.random.default_rng(5)
    noise = rng.normal(scale=0.05, size=(2**n, 6))

    def vf(z):  # (k, 1 + B): a column per bootstrap replicate
        idx = z.astype(np.int64) @ (1 << np.arange(n))
        return np.tanh(base.evaluate(z)[:, :1] / 2) + noise[idx]

    for budget in (30, 97, 400):
        game = Game(n, vf)
        planned = OddShap().plan(n, budget=budget, seed=3)
        assert (planned == KernelShap().plan(n, budget=budget, seed=3)).all()
        e = OddShap().estimate(game, budget=budget, seed=3)
        assert game.n_evaluated == len(planned) <= budget
        assert e.replicates.shape == (n, 5)
        ends = game.evaluate(np.array([np.zeros(n, bool), np.ones(n, bool)]))
        np.testing.assert_allclose(e.values.sum(), ends[1, 0] - ends[0, 0], atol=1e-9)
        np.testing.assert_allclose(e.replicates.sum(axis=0), ends[1, 1:] - ends[0, 1:], atol=1e-9)
        assert abs(efficiency_gap(e, game)) < 1e-9


def test_replicates_use_the_same_linear_map():
    """Column b is fitted with the lambda chosen on column 0: adding an additive game c * w to a
    column adds exactly c * w to its values (every lambda fits an additive game exactly)."""
    n = 10
    base, _, _ = random_dividend_game(n, seed=7)
    w = np.linspace(-1, 1, n)

    def vf(z):
        v = np.tanh(base.evaluate(z)[:, 0])
        return np.stack([v, v + 2.0 * (z @ w), v - 0.5 * (z @ w)], axis=1)

    e = OddShap().estimate(Game(n, vf), budget=200, seed=0)
    np.testing.assert_allclose(e.replicates[:, 0], e.values + 2.0 * w, atol=1e-9)
    np.testing.assert_allclose(e.replicates[:, 1], e.values - 0.5 * w, atol=1e-9)


def test_budget_at_least_two_to_the_n_is_exact_and_small_budgets_are_refused():
    game = airport_game([1.0, 0.2, 0.5, 0.1])
    e = OddShap().estimate(game, budget=16)
    assert e.method == "exact"
    np.testing.assert_allclose(e.values, airport_shapley([1.0, 0.2, 0.5, 0.1]), atol=1e-12)
    with pytest.raises(CopyscopeError, match="too small"):
        OddShap().estimate(airport_game(np.ones(8)), budget=5)
    with pytest.raises(CopyscopeError, match="needs a budget"):
        OddShap().estimate(airport_game(np.ones(8)))


def _tanh_game(n=11, seed=3):
    base, _, _ = random_dividend_game(n, seed=seed, n_pairs=15, n_triples=8)

    def vf(z):
        return np.tanh(base.evaluate(z)[:, 0] / 2.0)

    return vf, ExactShapley().estimate(Game(n, vf)).values


def test_more_accurate_than_kernelshap_and_se_covers():
    """Saturating 11-player game (interactions of every order, not fitted exactly): OddShap's
    mean absolute error is below KernelSHAP's at the same coalitions, and value +- 1.96 SE
    covers the truth for most players and seeds."""
    n = 11
    vf, truth = _tanh_game(n)
    errs = {"odd": [], "kern": []}
    covered = []
    for seed in range(8):
        odd = OddShap().estimate(Game(n, vf), budget=256, seed=seed)
        kern = KernelShap(n_bootstrap=0).estimate(Game(n, vf), budget=256, seed=seed)
        errs["odd"].append(np.abs(odd.values - truth).mean())
        errs["kern"].append(np.abs(kern.values - truth).mean())
        assert np.isfinite(odd.estimator_se).all() and (odd.estimator_se > 0).all()
        covered.append(np.abs(odd.values - truth) <= 1.96 * odd.estimator_se)
    assert np.mean(errs["odd"]) < 0.9 * np.mean(errs["kern"])
    assert np.mean(covered) >= 0.85


def test_dominant_player_game_against_shapiq_kernelshap():
    """The quick subset of bench/bench_estimators.py: a max-type game (one dominant player, like a
    planted LoRA), 12 players, budget 128: OddShap's error <= 0.8x shapiq's paired KernelSHAP."""
    shapiq = pytest.importorskip("shapiq")
    import warnings

    n = 12
    rng = np.random.default_rng(11)
    costs = np.concatenate([[1.0], rng.uniform(0.0, 0.3, n - 1)])
    truth = airport_shapley(costs)
    game = airport_game(costs)
    f = lambda z: game.value_function(np.atleast_2d(np.asarray(z, bool)))  # noqa: E731
    ours, theirs = [], []
    for seed in range(6):
        ours.append(np.abs(OddShap().estimate(Game(n, f), budget=128, seed=seed).values
                           - truth).mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iv = shapiq.KernelSHAP(n, pairing_trick=True, random_state=seed).approximate(128, f)
        theirs.append(np.abs(np.array([iv[(i,)] for i in range(n)]) - truth).mean())
    assert np.mean(ours) <= 0.8 * np.mean(theirs)


def test_registered_for_zoo_files():
    e = get_estimator("oddshap", 12, 300)
    assert isinstance(e, OddShap) and e.budget == 300
    from copyscope.config import EstimatorSpec

    assert EstimatorSpec(method="oddshap", budget=300).method == "oddshap"
