"""Glinsky & Sokolsky's reward split: pure functions on worth tables whose answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from copyscope.common.errors import CopyscopeError
from copyscope.analyses.reward_split import (
    coalition_worths,
    masked_bootstrap_means,
    percent_split,
    recognisable_by_similarity,
    recognisable_by_zero_shot,
    split_reward,
    within_work_scores,
)
from copyscope.estimate.shapley import KernelShap
from copyscope.estimate.shapley.synthetic import brute_force_shapley


def coalitions(n):
    return [tuple(bool(x) for x in bits) for bits in itertools.product([False, True], repeat=n)]


def additive_table(c, w, noise=None):
    """v(S) = c + sum_{i in S} w_i (optionally with bootstrap replicate columns)."""
    w = np.asarray(w, float)
    table = {}
    for S in coalitions(len(w)):
        v = c + w[list(S)].sum()
        table[S] = v if noise is None else v + noise
    return table


def test_additive_game_split_is_exact():
    # model earns v(empty) = 2; artists earn their own increments 1 and 5: of v(N) = 8
    r = split_reward(additive_table(2.0, [1.0, 5.0]), ["ada", "bo"])
    assert r["model"]["share"] == pytest.approx(25.0)
    assert r["artists"]["ada"]["share"] == pytest.approx(12.5)
    assert r["artists"]["bo"]["share"] == pytest.approx(62.5)
    assert r["model"]["value"] == pytest.approx(2.0)
    assert r["artists"]["bo"]["value"] == pytest.approx(5.0)
    assert r["sum_percent"] == pytest.approx(100.0)
    assert r["efficiency_gap"] == pytest.approx(0.0, abs=1e-12)
    assert r["v_empty"] == 2.0 and r["v_full"] == 8.0


def brute_shapley(n, v):
    phi = brute_force_shapley(range(n), lambda s: v[tuple(i in s for i in range(n))])
    return np.array([phi[i] for i in range(n)])


def test_interacting_game_matches_definition():
    rng = np.random.default_rng(3)
    table = {S: 1.0 + rng.random() for S in coalitions(3)}
    table[(True, True, True)] = 5.0
    r = split_reward(table, ["a", "b", "c"])
    phi = brute_shapley(3, table)
    for i, name in enumerate("abc"):
        assert r["artists"][name]["value"] == pytest.approx(phi[i])
    raw = np.array([table[(False,) * 3], *phi])
    expect = 100 * np.maximum(raw, 0) / np.maximum(raw, 0).sum()
    got = [r["model"]["share"]] + [r["artists"][x]["share"] for x in "abc"]
    np.testing.assert_allclose(got, expect)
    assert sum(got) == pytest.approx(100.0)


def test_veto_player_rule_closed_form():
    # one artist: v(empty) = a, v(artist) = b; with the model as a veto player,
    # phi_model = (a + b) / 2 and phi_artist = (b - a) / 2, of v(N) = b
    a, b = 0.6, 1.0
    r = split_reward({(False,): a, (True,): b}, ["ada"], model="veto_player")
    assert r["model"]["value"] == pytest.approx((a + b) / 2)
    assert r["artists"]["ada"]["value"] == pytest.approx((b - a) / 2)
    assert r["model"]["share"] == pytest.approx(80.0)
    assert r["artists"]["ada"]["share"] == pytest.approx(20.0)
    # the default rule gives the model v(empty) / v(N)
    d = split_reward({(False,): a, (True,): b}, ["ada"])
    assert d["model"]["share"] == pytest.approx(60.0) and d["artists"]["ada"]["share"] == pytest.approx(40.0)


def test_negative_contribution_gets_nothing_and_others_renormalise():
    # naming bo makes the images *less* like the works: phi_bo = -1; ada +2, model 2
    r = split_reward(additive_table(2.0, [2.0, -1.0]), ["ada", "bo"])
    assert r["artists"]["bo"]["value"] == pytest.approx(-1.0)
    assert r["artists"]["bo"]["share"] == 0.0
    assert r["model"]["share"] == pytest.approx(50.0) and r["artists"]["ada"]["share"] == pytest.approx(50.0)
    assert r["sum_percent"] == pytest.approx(100.0)


def test_bootstrap_intervals_contain_the_point_and_sum_to_100():
    rng = np.random.default_rng(0)
    B = 200
    base = additive_table(1.0, [0.5, 1.5])
    noisy = {S: np.concatenate([[v], v + 0.05 * rng.standard_normal(B)]) for S, v in base.items()}
    r = split_reward(noisy, ["ada", "bo"], level=0.9)
    assert r["n_replicates"] == B
    rows = [r["model"], *r["artists"].values()]
    assert sum(x["share"] for x in rows) == pytest.approx(100.0)
    for x in rows:
        assert 0.0 <= x["low"] <= x["share"] <= x["high"] <= 100.0
        assert x["value_ci"][0] <= x["value"] <= x["value_ci"][1]
    assert r["model"]["share"] == pytest.approx(100 / 3)


def test_sampled_estimator_and_missing_coalitions():
    table = additive_table(1.0, [1.0, 2.0, 3.0])
    r = split_reward(table, ["a", "b", "c"], estimator=KernelShap(budget=8), budget=8, seed=0)
    assert r["artists"]["c"]["value"] == pytest.approx(3.0, abs=1e-6)
    with pytest.raises(CopyscopeError, match="empty coalition"):
        split_reward({(True,): 1.0}, ["a"])
    with pytest.raises(CopyscopeError, match="reserved"):
        split_reward({(False,): 0.0, (True,): 1.0}, ["model"])


def test_within_work_scores_max_and_mean():
    sims = np.array([[0.1, 0.9, 0.5], [0.4, 0.2, 0.3]])
    work_of = ["ada", "ada", "bo"]
    np.testing.assert_allclose(within_work_scores(sims, work_of, ["bo", "ada"], "max"), [[0.5, 0.9], [0.3, 0.4]])
    np.testing.assert_allclose(within_work_scores(sims, work_of, ["ada"], "mean"), [[0.5], [0.3]])
    with pytest.raises(CopyscopeError):
        within_work_scores(sims, work_of, ["cy"])


def test_masked_bootstrap_means_known_values():
    scores = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (prompts, seeds)
    keep = np.array([[True, False, True], [True, True, False]])
    boot = np.array([[0, 0, 0], [1, 1, 2], [2, 1, 1]])
    out = masked_bootstrap_means(scores, keep, boot)
    assert out[0] == pytest.approx((1 + 3 + 4 + 5) / 4)
    assert out[1] == pytest.approx((1 + 4) * 3 / 6)  # seed 0 drawn three times
    assert out[2] == pytest.approx((3 + 5 + 5) / 3)  # prompt 0 seed 1 and prompt 1 seed 2 are dropped
    assert out[3] == pytest.approx((3 + 5 + 5) / 3)
    # a replicate that drew only dropped items is NaN and coalition_worths removes it everywhere
    keep2 = np.array([[True, False, False], [True, False, False]])
    table, used = coalition_worths({(False,): scores, (True,): scores + 1}, keep2, np.array([[1, 2, 2], [0, 1, 2]]))
    assert used.tolist() == [False, True]
    assert table[(False,)].shape == (2,) and table[(True,)][1] == pytest.approx(3.5)
    with pytest.raises(CopyscopeError, match="recognisability"):
        coalition_worths({(False,): scores}, np.zeros_like(keep), boot)


def test_recognisability_filters():
    sims = np.array([[0.2, 0.7], [0.1, 0.3], [0.65, 0.0]])
    assert recognisable_by_similarity(sims, 0.6).tolist() == [True, False, True]
    # labels: two artists then two default labels
    probs = np.array([[0.5, 0.1, 0.3, 0.1], [0.1, 0.2, 0.6, 0.1], [0.1, 0.35, 0.25, 0.3]])
    assert recognisable_by_zero_shot(probs, [0, 1]).tolist() == [True, False, True]
    assert recognisable_by_zero_shot(probs, [0, 1], threshold=0.3).tolist() == [True, False, True]
    assert recognisable_by_zero_shot(probs, [0, 1], threshold=0.4).tolist() == [True, False, False]
    assert recognisable_by_zero_shot(probs, [0, 1], threshold=0.0).all()


def test_percent_split_columns():
    x = np.array([[1.0, -1.0], [3.0, -2.0]])
    p = percent_split(x)
    np.testing.assert_allclose(p[:, 0], [25.0, 75.0])
    assert np.isnan(p[:, 1]).all()
