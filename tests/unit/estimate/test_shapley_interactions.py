"""Pairwise interaction indices (copyscope.estimate.shapley.interactions): the transforms against definitions written
here with itertools, known games, the seed inference by simulation, JSON and the full-table requirement."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pytest

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley.base import all_coalitions
from copyscope.estimate.shapley.inference import jackknife_pseudo_values, seed_inference
from copyscope.estimate.shapley.interactions import (
    InteractionResult,
    banzhaf_interaction_pairs,
    interaction_inference,
    interactions_available,
    interactions_from_moebius,
    missing_coalitions,
    moebius,
    pair_list,
    require_full_table,
    shapley_interaction_pairs,
    worth_table,
)
from copyscope.estimate.shapley.pvalues_shares import adjust_p_values
from copyscope.estimate.shapley.seed_games import seed_columns


# ------------------------------------------------------------------------------ references written here
def _mask(members) -> int:
    return sum(1 << i for i in members)


def _subsets(items):
    items = list(items)
    for k in range(len(items) + 1):
        yield from combinations(items, k)


def brute_pairs(v: np.ndarray, n: int, index: str = "shapley") -> np.ndarray:
    """The definition, one pair and one S at a time (v indexed by bitmask, one column)."""
    out = np.full((n, n), np.nan)
    for i, j in combinations(range(n), 2):
        total = 0.0
        for s in _subsets(k for k in range(n) if k not in (i, j)):
            if index == "shapley":
                w = math.factorial(len(s)) * math.factorial(n - len(s) - 2) / math.factorial(n - 1)
            else:
                w = 1.0 / 2 ** (n - 2)
            total += w * (v[_mask(s + (i, j))] - v[_mask(s + (i,))] - v[_mask(s + (j,))] + v[_mask(s)])
        out[i, j] = out[j, i] = total
    return out


def brute_moebius(v: np.ndarray, n: int) -> np.ndarray:
    return np.array([sum((-1) ** (len(t) - len(s)) * v[_mask(s)] for s in _subsets(t))
                     for t in (tuple(i for i in range(n) if m >> i & 1) for m in range(2**n))])


def unanimity(n: int, carriers) -> np.ndarray:
    return all_coalitions(n)[:, list(carriers)].all(axis=1).astype(float)


def offdiag(a: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    return a[~np.eye(n, dtype=bool)]


# ------------------------------------------------------------------------------ known games
@pytest.mark.parametrize("carriers", [(1, 3), (0, 2, 3)])
def test_unanimity_game(carriers):
    n = 5
    v = unanimity(n, carriers)
    m = moebius(v)
    expected = np.zeros(2**n)
    expected[_mask(carriers)] = 1.0
    np.testing.assert_allclose(m, expected, atol=1e-12)
    inside = 1.0 / (len(carriers) - 1)  # 1 for a pair, 1/2 for each pair of a triple
    truth = np.zeros((n, n))
    for i, j in combinations(carriers, 2):
        truth[i, j] = truth[j, i] = inside
    np.fill_diagonal(truth, np.nan)
    for got in (shapley_interaction_pairs(v), interactions_from_moebius(m)):
        np.testing.assert_allclose(got, truth, atol=1e-12)
        assert np.isnan(np.diag(got)).all()
    # Banzhaf: m(T) / 2**(|T| - 2): also 1 and 1/2 here
    np.testing.assert_allclose(banzhaf_interaction_pairs(v), truth, atol=1e-12)


def test_additive_game_has_no_interactions():
    n = 5
    z = all_coalitions(n).astype(float)
    v = 3.0 + z @ np.array([1.0, -2.0, 4.0, 0.0, 7.0])  # integers: every second difference is exactly 0
    assert (offdiag(shapley_interaction_pairs(v)) == 0.0).all()
    assert (offdiag(banzhaf_interaction_pairs(v)) == 0.0).all()
    assert (offdiag(interactions_from_moebius(moebius(v))) == 0.0).all()


def test_two_players_is_the_second_difference():
    v = np.array([0.3, 1.1, -0.4, 2.9])  # empty, {0}, {1}, {0, 1}
    expected = v[3] - v[1] - v[2] + v[0]
    for f in (shapley_interaction_pairs, banzhaf_interaction_pairs):
        got = f(v)
        assert got.shape == (2, 2)
        assert got[0, 1] == pytest.approx(expected) and got[1, 0] == pytest.approx(expected)


@pytest.mark.parametrize("n", [3, 4, 5, 6])
def test_random_games_against_the_definition(n):
    rng = np.random.default_rng(n)
    v = rng.normal(size=2**n)
    np.testing.assert_allclose(moebius(v), brute_moebius(v, n), atol=1e-10)
    for index, vectorised in (("shapley", shapley_interaction_pairs), ("banzhaf", banzhaf_interaction_pairs)):
        truth = brute_pairs(v, n, index)
        np.testing.assert_allclose(vectorised(v), truth, atol=1e-10)
        np.testing.assert_allclose(interactions_from_moebius(moebius(v), index), truth, atol=1e-10)
    # adding an additive game changes no interaction
    plus = v + 2.5 + all_coalitions(n).astype(float) @ rng.normal(size=n)
    np.testing.assert_allclose(shapley_interaction_pairs(plus), shapley_interaction_pairs(v), atol=1e-10)
    np.testing.assert_allclose(banzhaf_interaction_pairs(plus), banzhaf_interaction_pairs(v), atol=1e-10)


def test_columns_are_transformed_independently():
    """Trailing replicate columns: each column's result is the result on that column alone."""
    n, rng = 4, np.random.default_rng(7)
    w = rng.normal(size=(2**n, 5))
    m = moebius(w)
    pairs = shapley_interaction_pairs(w)
    assert m.shape == (2**n, 5) and pairs.shape == (n, n, 5)
    for c in range(5):
        np.testing.assert_allclose(m[:, c], moebius(w[:, c]), atol=1e-12)
        np.testing.assert_allclose(pairs[:, :, c], shapley_interaction_pairs(w[:, c]), atol=1e-12)
    np.testing.assert_allclose(interactions_from_moebius(m), pairs, atol=1e-12)


def test_against_shapiq():
    shapiq = pytest.importorskip("shapiq")
    n = 5

    def f(z):
        z = np.asarray(z, dtype=bool)
        return 1.0 * z[:, [0, 1]].all(1) + 0.7 * z[:, [1, 2, 3]].all(1) - 0.4 * z[:, [0, 2, 3, 4]].all(1) + z[:, 4]

    v = f(all_coalitions(n))
    for index, ours in (("SII", shapley_interaction_pairs(v)), ("BII", banzhaf_interaction_pairs(v))):
        theirs = shapiq.ExactComputer(f, n_players=n)(index, order=2).dict_values
        for i, j in pair_list(n):
            assert ours[i, j] == pytest.approx(theirs[(i, j)], abs=1e-10)


def test_bad_tables_are_refused():
    with pytest.raises(CopyscopeError, match="2\\*\\*n rows"):
        shapley_interaction_pairs(np.zeros(6))
    with pytest.raises(CopyscopeError, match="interaction index"):
        interactions_from_moebius(np.zeros(4), "owen")


# ------------------------------------------------------------------------------ inference over seeds
DIVIDENDS = {(0,): 1.0, (1,): 0.5, (0, 1): 0.8, (1, 2): -0.4, (0, 1, 2): 0.3}  # pairs (0, 3), (1, 3), (2, 3): 0


def true_interactions(n: int) -> np.ndarray:
    out = np.zeros((n, n))
    for t, d in DIVIDENDS.items():
        for i, j in combinations(t, 2):
            out[i, j] += d / (len(t) - 1)
    return np.array([out[i, j] for i, j in pair_list(n)])


def per_seed_audits(rng, n_games: int, n: int = 4, m: int = 16) -> np.ndarray:
    """Per-seed worths (G, 2**n, m): the dividend game plus a seed effect, player-by-seed and
    pair-by-seed effects (the latter move the interactions from seed to seed) and coalition noise."""
    z = all_coalitions(n).astype(float)
    f = sum(d * z[:, list(t)].all(axis=1) for t, d in DIVIDENDS.items())
    pz = np.stack([z[:, i] * z[:, j] for i, j in pair_list(n)], axis=1)  # (2**n, P)
    u = rng.normal(scale=0.5, size=(n_games, 1, m))
    e = np.einsum("cn,gsn->gcs", z, rng.normal(scale=0.3, size=(n_games, m, n)))
    eta = np.einsum("cp,gsp->gcs", pz, rng.normal(scale=0.3, size=(n_games, m, pz.shape[1])))
    eps = rng.normal(scale=0.05, size=(n_games, 2**n, m))
    return f[None, :, None] + u + e + eta + eps


def test_intervals_cover_and_tests_hold_their_level():
    rng = np.random.default_rng(2024)
    G, n = 200, 4
    truth = true_interactions(n)
    cols = seed_columns(per_seed_audits(rng, G))  # (G, 16, 1 + m): all seeds, then without each seed
    results = [interaction_inference(cols[g]) for g in range(G)]
    ci = np.stack([r.ci for r in results])  # (G, P, 2)
    p = np.stack([r.p_values for r in results])
    covered = (ci[..., 0] <= truth) & (truth <= ci[..., 1])
    tol = 3 * math.sqrt(0.95 * 0.05 / G)  # binomial: 3 standard deviations of a 95% coverage over G audits
    assert (covered.mean(axis=0) >= 0.95 - tol).all(), covered.mean(axis=0)
    assert 0.95 - tol <= covered.mean() <= 0.95 + tol, covered.mean()
    null = truth == 0.0
    assert (p[:, null] < 0.05).mean() <= 0.05 + tol  # two-sided test of a pair with no interaction
    power = (p[:, ~null] < 0.05).mean(axis=0)  # the real ones: 0.95, 0.15, -0.25
    assert power[0] > 0.99 and (power > 0.05 + 3 * tol).all(), power
    np.testing.assert_allclose(np.stack([r.values for r in results]).mean(axis=0), truth, atol=0.03)


def test_two_sided_p_agrees_with_the_interval_and_one_sided_mirrors_seed_inference():
    rng = np.random.default_rng(5)
    cols = seed_columns(per_seed_audits(rng, 1, m=8))[0]
    two = interaction_inference(cols, level=0.9)
    reject = two.p_values < 0.1
    outside = (two.ci[:, 0] > 0) | (two.ci[:, 1] < 0)
    np.testing.assert_array_equal(reject, outside)
    assert reject.any() and not reject.all()
    greater = interaction_inference(cols, alternative="greater")
    less = interaction_inference(cols, alternative="less")
    full = shapley_interaction_pairs(cols)
    loo = np.array([full[i, j, 1:] for i, j in pair_list(4)])
    pseudo = jackknife_pseudo_values(greater.values, loo)
    tol = 1e-10 * np.abs(cols).max()  # the audit's zero tolerance (inference.worths_zero_tol)
    np.testing.assert_allclose(greater.p_values, seed_inference(greater.values, pseudo, None, 0.95, tol)[1])
    np.testing.assert_allclose(two.p_values, np.minimum(1, 2 * np.minimum(greater.p_values, less.p_values)))
    sd = pseudo.std(axis=1, ddof=1) / math.sqrt(8)
    np.testing.assert_allclose(greater.standard_error, sd)


def test_holm_is_applied_across_pairs():
    rng = np.random.default_rng(11)
    cols = seed_columns(per_seed_audits(rng, 1, n=5, m=10))[0]
    r = interaction_inference(cols, players=list("abcde"))
    assert len(r.pairs) == 10 and r.pairs == pair_list(5)
    assert (r.p_adjusted >= r.p_values - 1e-15).all()
    np.testing.assert_array_equal(r.p_adjusted, adjust_p_values(r.p_values, "holm"))
    assert (r.p_adjusted > r.p_values).any()
    none = interaction_inference(cols, p_adjust="none")
    np.testing.assert_array_equal(none.p_adjusted, none.p_values)


def test_an_additive_game_with_seed_noise_is_exactly_zero():
    """Seed noise that is additive across players cancels in every column: value and SE are
    floating-point residue, counted as exactly zero (p = 1, a zero-width interval)."""
    rng, n, m = np.random.default_rng(3), 4, 12
    z = all_coalitions(n).astype(float)
    per_seed = (z @ rng.normal(size=n))[:, None] + z @ rng.normal(size=(n, m)) + rng.normal(size=(1, m))
    r = interaction_inference(seed_columns(per_seed) * 1e3)
    assert (r.values == 0).all() and (r.standard_error == 0).all() and (r.p_values == 1).all() and (r.ci == 0).all()
    assert (interaction_inference(seed_columns(per_seed), zero_tol=0.0).values != 0).any()  # the residue is there


def test_matrix_and_json_round_trip():
    rng = np.random.default_rng(1)
    cols = seed_columns(per_seed_audits(rng, 1, m=6))[0]
    r = interaction_inference(cols, players=["lora_a", "cn", "lora_b", "ip"], index="banzhaf", level=0.9)
    np.testing.assert_allclose(r.matrix(), banzhaf_interaction_pairs(cols[:, 0]), atol=1e-12)
    back = InteractionResult.from_json(json.loads(json.dumps(r.to_json(), allow_nan=False)))
    for f in ("values", "standard_error", "ci", "p_values", "p_adjusted"):
        np.testing.assert_array_equal(getattr(back, f), getattr(r, f))
    assert (back.players, back.pairs, back.index, back.level, back.alternative, back.n_seeds) == (
        r.players, r.pairs, "banzhaf", 0.9, "two-sided", 6)
    # no replicate columns: values only; NaN goes to null and back
    point = interaction_inference(cols[:, 0])
    data = point.to_json()
    assert data["standard_error"] == [None] * 6 and data["ci"][0] == [None, None]
    back = InteractionResult.from_json(json.loads(json.dumps(data, allow_nan=False)))
    assert np.isnan(back.p_adjusted).all() and np.isnan(back.ci).all()
    np.testing.assert_array_equal(back.values, point.values)
    with pytest.raises(CopyscopeError, match="missing key 'pairs'"):
        InteractionResult.from_json({k: v for k, v in data.items() if k != "pairs"})


def test_bad_arguments_are_one_line_errors():
    cols = np.zeros((8, 5))
    for kwargs, match in (({"alternative": "sideways"}, "alternative"), ({"level": 1.5}, "level"), ({"level": "high"}, "level"),
                          ({"resampling": "bootstrap"}, "jackknife"), ({"p_adjust": "bh"}, "adjustment"),
                          ({"players": ["a"]}, "player names")):
        with pytest.raises(CopyscopeError, match=match):
            interaction_inference(cols, **kwargs)


# ------------------------------------------------------------------------------ sampled designs
def test_interactions_need_every_coalition():
    n, names = 4, ["lora", "cn", "ip", "text"]
    z = all_coalitions(n)
    assert interactions_available(z, n) and interactions_available(range(2**n), n)
    assert missing_coalitions([tuple(row) for row in z[:-1]], n) == [15]
    sampled = z[[0, 1, 2, 4, 8, 15]]  # e.g. leave-one-out style coverage
    assert not interactions_available(sampled, n)
    with pytest.raises(CopyscopeError) as info:
        require_full_table(sampled, n, names)
    msg = str(info.value)
    assert "\n" not in msg and "all 2**4 = 16 coalitions" in msg and "10 missing" in msg
    assert "{lora, cn}" in msg and "..." in msg
    table = {tuple(bool(x) for x in row): np.array([float(k), 1.0]) for k, row in enumerate(z) if k != 6}
    with pytest.raises(CopyscopeError, match=r"1 missing: \{cn, ip\}$"):
        worth_table(table, n, names)
    table[tuple(bool(x) for x in z[6])] = np.array([6.0, 1.0])
    full = worth_table(table, n)
    assert full.shape == (16, 2) and (full[:, 0] == np.arange(16)).all()
    with pytest.raises(CopyscopeError, match="out of range"):
        interactions_available([16], n)


def test_from_a_game_the_exact_estimator_evaluated():
    """The way estimate_game would call it: the game's memoised table after an exact estimate."""
    from copyscope.estimate.shapley import ExactShapley, Game, PermutationShapley

    n, rng = 3, np.random.default_rng(4)
    cols = seed_columns(per_seed_audits(rng, 1, n=n, m=5))[0]
    names = ["lora", "cn", "ip"]

    def game():
        return Game(n, lambda z: cols[(z.astype(np.int64) << np.arange(n)).sum(axis=1)], names)

    g = game()
    ExactShapley().estimate(g)
    r = interaction_inference(worth_table(g.values_table(), n, names), names)
    np.testing.assert_allclose(r.values, [shapley_interaction_pairs(cols[:, 0])[i, j] for i, j in r.pairs], atol=1e-12)
    assert r.n_seeds == 5 and np.isfinite(r.ci).all()
    g = game()
    PermutationShapley(budget=6).estimate(g)
    assert not interactions_available(g.values_table(), n)
    with pytest.raises(CopyscopeError, match="missing"):
        worth_table(g.values_table(), n, names)
    single = interaction_inference(np.array([0.0, 1.0]))  # one player: no pair
    assert single.pairs == [] and single.values.shape == (0,) and single.to_json()["ci"] == []
