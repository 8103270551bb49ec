"""The distribution-free (betting) intervals and tests: their bound, their arithmetic, and their promise
under every shape of seed noise (a quick subset of bench/bench_bounded.py)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from copyscope.estimate.shapley.bounded import (
    BET_CAP,
    PRIOR_SHIFT,
    PRIOR_VAR,
    betting_intervals,
    betting_p_values,
    bounded_seed_inference,
    capital,
    claim,
    min_detectable,
    pair_difference_bound,
    seeds_needed,
    shapley_seed_bound,
)
from copyscope.estimate.shapley.null_shapes import SHAPES, anytime_null, draw, fixed_design
from copyscope.estimate.shapley.seed_games import shapley_matrix
from copyscope.estimate.shapley.sequential import run_sequential, seed_rounds


# ----------------------------------------------------------------------------- the bound
def test_per_seed_shapley_values_and_their_differences_stay_inside_the_range_of_the_worths():
    """Worths in [a, b]: every Shapley value, and every difference of two, lies in [-(b - a), b - a]; both
    ends are reached (so the bound cannot be tightened without knowing the game)."""
    n = 4
    w = shapley_matrix(n)  # phi = v @ W
    rng = np.random.default_rng(0)
    a, b = -0.25, 0.75
    v = rng.choice([a, b], size=(20000, 2**n))  # extreme games: every worth at an end of the range
    v = np.concatenate([v, rng.uniform(a, b, (20000, 2**n))])
    phi = v @ w
    bound = shapley_seed_bound((a, b))
    assert bound == pytest.approx(1.0) and pair_difference_bound((a, b)) == bound
    assert np.abs(phi).max() <= bound + 1e-12
    diffs = np.abs(phi[:, :, None] - phi[:, None, :]).max()
    assert diffs <= bound + 1e-12
    # player 0 alone decides the worth: phi_0 = b - a, the bound itself, and phi_0 - phi_1 too
    masks = np.arange(2**n)
    dictator = np.where(masks & 1, b, a)
    phi_d = dictator @ w
    assert phi_d[0] == pytest.approx(bound) and phi_d[0] - phi_d[1] == pytest.approx(bound)


def test_the_difference_weights_sum_to_one():
    """phi_i - phi_j = sum over S without i, j of |S|! (n - |S| - 2)! / (n - 1)! (v(S + i) - v(S + j))."""
    for n in range(2, 9):
        total = sum(math.comb(n - 2, s) * math.factorial(s) * math.factorial(n - s - 2) / math.factorial(n - 1)
                    for s in range(n - 1))
        assert total == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the arithmetic
def _capital_by_hand(y: list[float], m: float) -> float:
    """The betting capital of copyscope.estimate.shapley.bounded, one seed at a time in plain Python (an independent
    writing of the same recursion), returning its running maximum."""
    prior_mean = min(m + PRIOR_SHIFT, 1.0)
    k, best, seen = 1.0, 1.0, []
    mean, var = prior_mean, PRIOR_VAR
    for yi in y:
        edge = mean - m
        lam = min(max(edge / (var + edge * edge), 0.0), BET_CAP / m)
        k *= 1.0 + lam * (yi - m)
        best = max(best, k)
        seen.append(yi)
        t = len(seen)
        means = [(prior_mean + sum(seen[: i + 1])) / (i + 2) for i in range(t)]
        mean = means[-1]
        var = (PRIOR_VAR + sum((seen[i] - means[i]) ** 2 for i in range(t))) / (t + 1)
    return best


def test_the_capital_matches_a_plain_python_writing_of_the_recursion():
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.uniform(0, 1, 12)
        for m in (0.3, 0.5, 0.8):
            assert capital(y, np.array([m]))[0, -1] == pytest.approx(_capital_by_hand(list(y), m), rel=1e-12)
    # the other side is the same recursion on 1 - y against 1 - m
    y = rng.uniform(0, 1, 10)
    assert capital(y, np.array([0.4]), upper=False)[0, -1] == pytest.approx(_capital_by_hand(list(1 - y), 0.6), rel=1e-12)


def test_p_values_are_one_over_the_best_capital_and_fall_as_consistent_seeds_accumulate():
    x = np.full((1, 40), 0.3)
    ps = [betting_p_values(x[:, :m], 1.0)[0] for m in (4, 8, 16, 32, 40)]
    assert all(a >= b for a, b in zip(ps, ps[1:])) and ps[0] > 0.05 and ps[-1] < 0.01
    y = (x + 1) / 2
    assert ps[-1] == pytest.approx(1.0 / capital(y, np.array([0.5]))[0, 0, -1])
    assert betting_p_values(np.full((1, 30), -0.2), 1.0)[0] == 1.0  # nothing above zero: no bet is ever won


def test_no_valid_test_could_reject_below_the_floor_and_this_one_does_not():
    """Seeds all equal to x below min_detectable could come from a law with mass at -bound: no valid test
    rejects them, so the betting test must not either; the floor and seeds_needed are inverses."""
    for n in (4, 8, 16, 32):
        floor = min_detectable(n, 1.0, 0.05)
        x = np.full((1, n), 0.98 * floor)
        assert betting_p_values(x, 1.0)[0] >= 0.05
        assert seeds_needed(floor * 1.0001, 1.0, 0.05) <= n <= seeds_needed(floor * 0.9999, 1.0, 0.05)
    assert seeds_needed(0.0, 1.0, 0.05) is None


def test_the_interval_holds_every_mean_the_capital_does_not_reject_and_shrinks_with_seeds():
    rng = np.random.default_rng(5)
    x = draw("rare spike, left tail", rng, (3, 48), delta=0.2)
    level = 0.9
    ci = [betting_intervals(x[:, :m], 1.0, level) for m in (8, 16, 48)]
    for wide, narrow in zip(ci, ci[1:]):  # the running intersection: nested
        assert np.all(narrow[:, 0] >= wide[:, 0] - 1e-12) and np.all(narrow[:, 1] <= wide[:, 1] + 1e-12)
    y = (x + 1) / 2
    grid = np.linspace(-1, 1, 401)
    m = (grid + 1) / 2
    ok = (capital(y, m, True)[..., -1] < 2 / (1 - level)) & (capital(y, m, False)[..., -1] < 2 / (1 - level))
    for i in range(3):
        kept = grid[ok[i]]
        assert kept.size and ci[-1][i, 0] <= kept.min() and kept.max() <= ci[-1][i, 1]
    assert np.all(ci[-1][:, 1] - ci[-1][:, 0] < ci[0][:, 1] - ci[0][:, 0])


def test_values_outside_the_declared_bound_get_no_distribution_free_claim():
    inside = np.array([[0.1, 0.2, -0.3]])
    assert bounded_seed_inference(inside, 1.0, 0.95) is not None
    assert bounded_seed_inference(inside * 10, 1.0, 0.95) is None  # the declared range does not hold
    assert bounded_seed_inference(inside, None, 0.95) is None
    assert bounded_seed_inference(None, 1.0, 0.95) is None


def test_a_claim_under_both_needs_both_tests():
    ci_t = np.array([[0.1, 0.3], [-0.1, 0.2]])
    p_t = np.array([0.001, 0.4])
    ci_b = np.array([[-0.2, 0.5], [-0.3, 0.1]])
    p_b = np.array([0.3, 0.2])
    ci, p, carried = claim("both", (ci_t, p_t), (ci_b, p_b))
    assert carried == "t and distribution-free" and p.tolist() == [0.3, 0.4]
    assert ci.tolist() == [[-0.2, 0.5], [-0.3, 0.2]]  # the hull: it covers whenever either covers
    assert claim("distribution_free", (ci_t, p_t), (ci_b, p_b))[1].tolist() == [0.3, 0.2]
    assert claim("t", (ci_t, p_t), (ci_b, p_b))[2] == "t"
    assert claim("both", (ci_t, p_t), None)[2].startswith("t (asymptotic")
    with pytest.raises(ValueError, match="significance rule"):
        claim("bayes", (ci_t, p_t), None)


# ----------------------------------------------------------------------------- the promise
@pytest.mark.parametrize("shape, seeds", list(itertools.product(SHAPES, (8, 16, 64))))
def test_the_claims_false_positives_and_coverage_hold_for_every_shape(shape, seeds):
    """Quick subset of bench/bench_bounded.py: 4000 audits a row; the promise (FP <= 5 %, cover >= 95 %)
    with 3 Monte-Carlo standard errors of slack."""
    r = fixed_design(shape, seeds, 4000, np.random.default_rng(hash((shape, seeds)) % 2**32))
    slack = 3 * math.sqrt(0.05 * 0.95 / 4000)
    for method in ("betting", "both"):
        assert r[method]["reject"] <= 0.05 + slack, (method, r)
        assert r[method]["cover"] >= 0.95 - slack, (method, r)


def test_the_t_test_alone_breaks_its_promise_on_left_tails():
    """Why the claim needs the betting test: the t test's false positives under a rare left spike."""
    r = fixed_design("rare spike, left tail", 8, 4000, np.random.default_rng(1))
    assert r["t"]["reject"] > 0.3 and r["betting"]["reject"] <= 0.05


@pytest.mark.parametrize("shape", list(SHAPES))
def test_no_stopping_rule_inflates_the_betting_tests_error(shape):
    """All-null 4-player audits, looked at after every seed up to 64: any player ever significant."""
    assert anytime_null(shape, 64, 2000, np.random.default_rng(7)) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000)


def test_the_adaptive_replay_decides_a_consistent_copier_and_not_a_null_player():
    rng = np.random.default_rng(11)
    rounds = seed_rounds(4, 64)
    copier = np.vstack([0.6 + 0.05 * rng.standard_normal(64), draw("two-point", rng, (2, 64))])
    looks = run_sequential(np.clip(copier, -1, 1), rounds, bound=1.0, rule="both")
    assert looks[-1].reason == "decided" and looks[-1].leader == 0 and looks[-1].seeds < 64
    assert looks[-1].test_level == pytest.approx(0.05 / 3)  # every look at the whole level: no spending
    null = np.vstack([draw("rare spike, left tail", rng, (3, 64))])
    for lk in run_sequential(null, rounds, bound=1.0, rule="both"):
        assert not lk.significant.any()
    # the same null under the t design with spending: the left tail fools it at some look
    fooled = 0
    for _ in range(200):
        x = draw("rare spike, left tail", rng, (3, 64))
        fooled += any(lk.significant.any() for lk in run_sequential(x, rounds))
    assert fooled / 200 > 0.1
