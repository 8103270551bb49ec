"""Adaptive seeds: repeated looks keep the false-positive rate at alpha (simulated audits)."""

from __future__ import annotations

import numpy as np
import pytest

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley.seed_games import per_image_audits, shapley_matrix
from copyscope.estimate.shapley.sequential import run_sequential, seed_rounds, spending

ROUNDS = seed_rounds(4, 64)
GAMES = 1000


def _null_per_seed(rng, games=GAMES, m=64, n=4):
    """Per-seed attributions of players whose true value is 0 (Gaussian seed noise)."""
    return rng.normal(scale=0.3, size=(games, n, m))


def test_rounds_and_spending():
    assert ROUNDS == [4, 6, 8, 12, 16, 24, 32, 48, 64] and seed_rounds(5, 30) == [5, 7, 10, 15, 20, 30]
    assert seed_rounds(4, 16) == [4, 6, 8, 12, 16] and seed_rounds(3, 3) == [3] and seed_rounds(4, 5) == [4, 5]
    a = spending(ROUNDS, 0.05)
    assert a.sum() == pytest.approx(0.05) and (a > 0).all()
    np.testing.assert_allclose(a, 0.05 * np.diff([0] + ROUNDS) / 64)  # in proportion to the new seeds
    with pytest.raises(CopyscopeError):
        seed_rounds(2, 8)


def test_repeated_looks_with_spending_keep_false_positives_at_alpha():
    rng = np.random.default_rng(0)
    phi = _null_per_seed(rng)
    decided = naive = ever_sig = 0
    for g in range(GAMES):
        looks = run_sequential(phi[g], ROUNDS)
        decided += looks[-1].reason == "decided"
        ever_sig += any(lk.significant.any() for lk in looks)
        # naive: one null player tested at 5 % at every look, no spending
        naive += any(lk.p_values[0] < 0.05 for lk in looks)
    # the promise is alpha = 0.05; 0.06 leaves room for the Monte Carlo error of 1000 audits, as the
    # single-look tests do
    assert decided / GAMES <= 0.06  # a null leader declared the verdict
    assert ever_sig / GAMES <= 0.06  # any of the 4 null players called positive at any look
    assert naive / GAMES > 0.08  # without spending, repeated looks inflate one player's 5 % (why spending is needed)


def test_adaptive_seeds_decide_when_the_fixed_design_does_and_stop_early_on_clear_games():
    """The 4-player game of the interval tests (strong 0.9, moderate 0.55) with little player-by-
    seed noise: the fixed 16-seed design decides (leader above zero and above the others, paired
    tests, Bonferroni across players) in most audits; the adaptive rounds to 64 name the same leader
    at least as often. With larger effects relative to the noise they stop at 8 seeds or fewer on
    average."""
    from copyscope.estimate.shapley.sequential import look

    rng = np.random.default_rng(1)
    per_seed, _ = per_image_audits(200, 64, rng, noise=(0.5, 0.15, 0.05))
    phi = np.einsum("gcs,cn->gns", per_seed, shapley_matrix(4))
    fixed = np.mean([look(phi[g, :, :16].mean(axis=1), phi[g, :, :16], 0.05, True).reason == "decided"
                     for g in range(len(phi))])
    adaptive = [run_sequential(phi[g], ROUNDS)[-1] for g in range(len(phi))]
    assert fixed >= 0.9
    assert np.mean([a.reason == "decided" and a.leader == 0 for a in adaptive]) >= fixed
    clear = phi.copy()
    clear[:, 0] += 1.0  # the leader's effect doubled
    used = [run_sequential(clear[g], ROUNDS)[-1].seeds for g in range(len(phi))]
    assert np.mean(used) <= 8


def test_target_width_stops_and_max_seeds_is_the_last_resort():
    rng = np.random.default_rng(2)
    phi = _null_per_seed(rng, games=1)[0]
    looks = run_sequential(phi, ROUNDS, target=10.0)
    assert looks[-1].reason == "target width" and looks[-1].seeds == 4
    looks = run_sequential(phi * 0 + rng.normal(scale=1e-3, size=phi.shape), ROUNDS)
    assert looks[-1].reason == "max seeds" and [lk.seeds for lk in looks] == ROUNDS
    rec = looks[-1].to_dict(list("abcd"))
    assert rec["seeds"] == 64 and rec["reason"] == "max seeds" and rec["stop"]


def test_a_tie_at_the_top_is_declared_decided_at_most_alpha_of_the_time():
    """Two players with the same large value: naming either one the leader is a false verdict. The
    paired tests (leader minus each other player, seed by seed) must keep that at <= alpha over
    all looks; the players are correlated across seeds, as common random numbers make them."""
    rng = np.random.default_rng(5)
    shared = rng.normal(scale=0.3, size=(GAMES, 1, 64))
    phi = np.concatenate([1.0 + shared + rng.normal(scale=0.2, size=(GAMES, 2, 64)),
                          rng.normal(scale=0.3, size=(GAMES, 2, 64))], axis=1)
    decided = sum(run_sequential(phi[g], ROUNDS)[-1].reason == "decided" for g in range(GAMES))
    assert decided / GAMES <= 0.06


def test_paired_rule_is_never_less_powerful_than_separated_intervals():
    """On the synthetic 4-player game the paired rule decides at least as often and stops no later
    on average than the older rule (the leader's interval above every other player's)."""
    rng = np.random.default_rng(6)
    per_seed, _ = per_image_audits(200, 16, rng, noise=(0.5, 0.15, 0.05))
    phi = np.einsum("gcs,cn->gns", per_seed, shapley_matrix(4))
    rounds = seed_rounds(4, 16)
    paired = [run_sequential(phi[g], rounds)[-1] for g in range(len(phi))]
    separate = [run_sequential(phi[g], rounds, paired=False)[-1] for g in range(len(phi))]
    assert np.mean([lk.reason == "decided" for lk in paired]) >= np.mean([lk.reason == "decided" for lk in separate])
    assert np.mean([lk.seeds for lk in paired]) < np.mean([lk.seeds for lk in separate])


def test_exact_levels_spend_exactly_the_planned_level_at_each_look():
    """The group-sequential levels are calibrated on one set of simulated null sequences; on fresh
    ones (another seed) the rate of first false rejections at each look is the spent level, and
    the total over looks is the test's share of alpha, while every level is at least the union
    bound's (so the exact rule is never less powerful)."""
    from scipy import stats

    from copyscope.estimate.shapley.sequential import look_levels

    rounds = seed_rounds(4, 16)
    spent = spending(rounds, 0.05) / 4
    exact = look_levels(rounds, 0.05, 1.0, 4)
    union = look_levels(rounds, 0.05, 1.0, 4, exact=False)
    assert (exact[:, 1] >= union[:, 1]).all() and (exact[1:, 1] > 1.2 * union[1:, 1]).all()
    assert exact[0, 1] == pytest.approx(spent[0])  # the first look needs no calibration
    x = np.random.default_rng(123).standard_normal((200_000, 16))

    def first_crossings(levels: np.ndarray) -> list[float]:
        """Per look, the rate of null sequences whose t test first rejects there."""
        alive = np.ones(len(x), dtype=bool)
        rates = []
        for k, m in enumerate(rounds):
            y = x[:, :m]
            p = stats.t.sf(y.mean(axis=1) / (y.std(axis=1, ddof=1) / np.sqrt(m)), m - 1)
            cross = alive & (p < levels[k])
            rates.append(cross.mean())
            alive &= ~cross
        return rates

    first = first_crossings(exact[:, 1])
    # binomial standard error of a rate near 0.003 from 200,000 sequences: about 1.2e-4
    np.testing.assert_allclose(first, spent, atol=5e-4)
    assert sum(first) == pytest.approx(0.05 / 4, abs=6e-4)
    # the union bound spends less than planned: its levels are conservative
    assert sum(first_crossings(union[:, 1])) < 0.8 * (0.05 / 4)


def test_exact_levels_are_deterministic():
    from copyscope.estimate.shapley.sequential import exact_levels

    rounds = seed_rounds(4, 16)
    spent = spending(rounds, 0.05) / 3
    np.testing.assert_array_equal(exact_levels(rounds, spent), exact_levels(list(rounds), spent.copy()))
