"""Bootstrap replicates: column-wise linearity, interval coverage, one-sided tests, shares."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri

from copyscope.estimate.shapley import (
    Estimate,
    ExactBanzhaf,
    ExactShapley,
    Game,
    KernelShap,
    LeaveOneOut,
    PermutationShapley,
    SampledBanzhaf,
    adjust_p_values,
    all_coalitions,
)
from copyscope.estimate.shapley.synthetic import dividend_game, dividend_shapley, random_dividend_game


# ----------------------------------------------------------------------------- noisy seed game
def noisy_seed_game(n, dividends, rng, n_seeds=30, n_boot=200, noise=(0.5, 0.3, 0.05)):
    """A game measured on random seeds, as the lead's game stage will produce it.

    Per-seed worth of coalition S on seed s:
        w_s(S) = f(S) + u_s + sum_{i in S} e_{s,i} + eps_{s,S}
    with f a dividend game (known Shapley), u_s a seed effect shared by every coalition (common
    random numbers), e_{s,i} a player-by-seed effect and eps_{s,S} coalition noise, all mean 0,
    so E[w_s(S)] = f(S) and the true Shapley values are those of f. Column 0 is the mean over
    all seeds; column b the mean over bootstrap resample b of the seed indices, drawn ONCE and
    applied to every coalition.
    """
    z = all_coalitions(n)
    f = dividend_game(n, dividends).evaluate(z)[:, 0]  # (2**n,)
    u = rng.normal(scale=noise[0], size=n_seeds)
    e = rng.normal(scale=noise[1], size=(n_seeds, n))
    eps = rng.normal(scale=noise[2], size=(len(z), n_seeds))
    per_seed = f[:, None] + u[None, :] + z.astype(float) @ e.T + eps  # (2**n, n_seeds)
    idx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # one resample for all coalitions
    cols = np.column_stack([per_seed.mean(axis=1), per_seed[:, idx].mean(axis=2)])
    masks = 1 << np.arange(n)

    def vf(coalitions):
        return cols[coalitions.astype(np.int64) @ masks]

    return Game(n, vf)


DIVIDENDS = {(0,): 1.0, (1,): 0.4, (2,): -0.3, (1, 2): 0.5, (0, 1, 2): -0.3}  # player 3: null
TRUE = dividend_shapley(4, DIVIDENDS)


def test_truth_has_a_strong_and_a_null_player():
    assert TRUE[0] > 0.8 and TRUE[3] == 0.0


@pytest.fixture(scope="module")
def repeated_exact():
    rng = np.random.default_rng(2024)
    return [ExactShapley().estimate(noisy_seed_game(4, DIVIDENDS, rng)) for _ in range(150)]


def test_bootstrap_intervals_cover_the_true_shapley_values(repeated_exact):
    covered = np.array([(e.ci(0.95)[:, 0] <= TRUE) & (TRUE <= e.ci(0.95)[:, 1])
                        for e in repeated_exact])
    assert covered.mean() >= 0.90
    assert covered.mean(axis=0).min() >= 0.85  # every player, not just on average
    # the intervals are informative, not huge
    widths = np.array([np.diff(e.ci(0.95), axis=1)[:, 0] for e in repeated_exact])
    assert widths.mean() < 1.0
    assert repeated_exact[0].ci(0.5)[0, 1] - repeated_exact[0].ci(0.5)[0, 0] < widths[0, 0]


def test_p_values_null_rarely_strong_always(repeated_exact):
    p = np.array([e.p_values() for e in repeated_exact])
    holm = np.array([e.p_adjusted("holm") for e in repeated_exact])
    assert (p[:, 3] < 0.05).mean() <= 0.10  # true value 0: rarely significant
    assert (holm[:, 0] < 0.05).all()  # strong player: always, even after correction
    assert (holm >= p - 1e-15).all()
    for raw, adj in zip(p, holm):
        order = np.argsort(raw, kind="stable")
        assert (np.diff(adj[order]) >= -1e-15).all()  # monotone in the raw p-values
    bonf = np.array([e.p_adjusted("bonferroni") for e in repeated_exact])
    assert (bonf >= holm - 1e-15).all()


def test_sampled_estimates_need_the_estimator_se_in_their_intervals():
    """KernelSHAP at a small budget on a 9-player game with a little seed noise: intervals
    from the replicates alone ignore coalition sampling and under-cover; widened by the
    estimator SE they cover."""
    rng = np.random.default_rng(7)
    n = 9
    div = {(i,): float(rng.normal()) for i in range(n)}
    for size, count in ((2, 6), (3, 6), (4, 3)):
        for _ in range(count):
            div[tuple(sorted(rng.choice(n, size, replace=False).tolist()))] = float(
                rng.normal(scale=0.7))
    truth = dividend_shapley(n, div)
    both, seed_only = [], []
    for rep in range(60):
        game = noisy_seed_game(n, div, rng, n_seeds=20, n_boot=100, noise=(0.2, 0.02, 0.01))
        e = KernelShap(n_bootstrap=100).estimate(game, budget=40, seed=rep)
        ci = e.ci(0.95)
        both.append((ci[:, 0] <= truth) & (truth <= ci[:, 1]))
        q = np.quantile(e.replicates, [0.025, 0.975], axis=1).T
        seed_only.append((q[:, 0] <= truth) & (truth <= q[:, 1]))
        # with a zero estimator SE, ci() is exactly the percentile interval
        plain = Estimate(e.player_names, e.values, e.replicates, np.zeros(n))
        np.testing.assert_allclose(plain.ci(0.95), q)
    assert np.mean(both) >= 0.90
    assert np.mean(seed_only) < 0.6


# ----------------------------------------------------------------------------- formulas
def test_p_value_and_interval_formulas_by_hand():
    reps = np.array([[-1.0, 0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    e = Estimate(["a", "b"], [1.0, 3.0], replicates=reps)
    np.testing.assert_allclose(e.p_values(), [(1 + 2) / 6, 1 / 6])
    np.testing.assert_allclose(e.p_adjusted("bonferroni"), [1.0, 2 / 6])
    np.testing.assert_allclose(e.p_adjusted("holm"), [3 / 6, 2 / 6])
    lvl = 0.8
    q = np.quantile(reps, [0.1, 0.9], axis=1).T
    np.testing.assert_allclose(e.ci(lvl), q)
    se = np.array([0.5, 0.0])
    w = Estimate(["a", "b"], [1.0, 3.0], replicates=reps, estimator_se=se)
    zq = float(ndtri(0.9))
    lo = 1.0 - np.sqrt((1.0 - q[0, 0]) ** 2 + (zq * 0.5) ** 2)
    hi = 1.0 + np.sqrt((q[0, 1] - 1.0) ** 2 + (zq * 0.5) ** 2)
    np.testing.assert_allclose(w.ci(lvl)[0], [lo, hi])
    np.testing.assert_allclose(w.ci(lvl)[1], q[1])  # se 0: unchanged
    only_se = Estimate(["a"], [1.0], estimator_se=[0.5])
    np.testing.assert_allclose(only_se.ci(0.95)[0], [1.0 - 0.98, 1.0 + 0.98], atol=1e-3)
    assert only_se.p_values()[0] == pytest.approx(0.02275, abs=1e-4)  # Phi(-2)


def test_holm_known_example():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4 -> 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(adjust_p_values(p, "holm"), [0.03, 0.06, 0.06, 0.02, np.nan])


# ----------------------------------------------------------------------------- shares
def test_shares_split_liability_among_positive_players():
    rng = np.random.default_rng(0)
    values = np.array([3.0, 1.0, -2.0, 0.0])
    reps = values[:, None] + rng.normal(scale=0.4, size=(4, 300))
    e = Estimate(["lora", "controlnet", "base", "prompt"], values, replicates=reps)
    sh = e.shares()
    assert sh["lora"]["share"] == pytest.approx(75.0)
    assert sh["controlnet"]["share"] == pytest.approx(25.0)
    assert sh["base"]["share"] == 0.0 and sh["prompt"]["share"] == 0.0
    assert sum(v["share"] for v in sh.values()) == pytest.approx(100.0)
    for v in sh.values():
        assert v["low"] <= v["share"] <= v["high"]
    assert sh["base"]["high"] < 5.0  # rarely positive in the replicates
    assert 50 < sh["lora"]["low"] < 75 < sh["lora"]["high"] < 95
    none = Estimate(["a", "b"], [-1.0, 0.0]).shares()
    assert none == {"a": {"share": 0.0, "low": None, "high": None},
                    "b": {"share": 0.0, "low": None, "high": None}}


def test_shares_interval_contains_point_even_when_replicates_miss_it():
    values = np.array([1.0, 1.0])
    reps = np.array([[2.0, 2.0, 2.0], [1.0, 1.0, 1.0]])  # replicates all give 66.7 / 33.3
    sh = Estimate(["a", "b"], values, replicates=reps).shares()
    assert sh["a"]["share"] == pytest.approx(50.0)
    assert sh["a"]["low"] == pytest.approx(50.0) and sh["a"]["high"] == pytest.approx(200 / 3)


# ----------------------------------------------------------------------------- linearity
@pytest.mark.parametrize("est,budget", [(ExactShapley(), None), (ExactBanzhaf(), None),
                                        (LeaveOneOut(), None), (PermutationShapley(), 60),
                                        (KernelShap(n_bootstrap=20), 60), (SampledBanzhaf(), 60)])
def test_columnwise_equals_each_column_alone(est, budget):
    n = 7
    games = [random_dividend_game(n, seed=s)[0].value_function for s in range(4)]

    def matrix_vf(z):
        return np.column_stack([g(z) for g in games])

    e = est.estimate(Game(n, matrix_vf), budget=budget, seed=11)
    assert e.replicates.shape == (n, 3)
    for c, g in enumerate(games):
        alone = est.estimate(Game(n, g), budget=budget, seed=11)
        assert alone.replicates is None and alone.n_evaluated == e.n_evaluated
        column = e.values if c == 0 else e.replicates[:, c - 1]
        np.testing.assert_allclose(column, alone.values, atol=1e-10)
        if c == 0 and alone.estimator_se is not None:  # SE is computed on column 0
            np.testing.assert_allclose(e.estimator_se, alone.estimator_se, atol=1e-10)
