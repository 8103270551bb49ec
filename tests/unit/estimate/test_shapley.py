"""Exact estimators against closed forms, the memoised game, the registry, user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley import (
    Estimate,
    ExactBanzhaf,
    ExactShapley,
    Game,
    KernelShap,
    OddShap,
    LeaveOneOut,
    PermutationShapley,
    SampledBanzhaf,
    efficiency_gap,
    get_estimator,
)
from copyscope.estimate.shapley.synthetic import (
    additive_game,
    airport_game,
    airport_shapley,
    brute_force_banzhaf,
    brute_force_shapley,
    game_worth,
    dividend_banzhaf,
    dividend_game,
    dividend_shapley,
    glove_game,
    glove_shapley,
    unanimity_game,
    weighted_majority_game,
)

TOL = 1e-9


# ----------------------------------------------------------------------------- closed forms
def test_additive_game_all_exact_methods_return_the_weights():
    w = [0.5, -1.25, 2.0, 0.0, 3.5]
    for est in (ExactShapley(), ExactBanzhaf(), LeaveOneOut()):
        g = additive_game(w, constant=7.0)
        np.testing.assert_allclose(est.estimate(g).values, w, atol=TOL)
    g = additive_game(w, constant=7.0)
    assert abs(efficiency_gap(ExactShapley().estimate(g), g)) < TOL


@pytest.mark.parametrize("carriers", [[0], [1, 3], [0, 2, 4, 5]])
def test_unanimity_game(carriers):
    n = 6
    g = unanimity_game(n, carriers)
    t = len(carriers)
    member = np.isin(np.arange(n), carriers)
    sv = ExactShapley().estimate(g)
    np.testing.assert_allclose(sv.values, np.where(member, 1.0 / t, 0.0), atol=TOL)
    assert abs(efficiency_gap(sv, g)) < TOL
    bz = ExactBanzhaf().estimate(g)
    np.testing.assert_allclose(bz.values, np.where(member, 2.0 ** -(t - 1), 0.0), atol=TOL)
    loo = LeaveOneOut().estimate(g)
    np.testing.assert_allclose(loo.values, member.astype(float), atol=TOL)


@pytest.mark.parametrize("left,right", [(1, 2), (1, 5), (3, 3)])
def test_glove_game(left, right):
    g = glove_game(left, right)
    sv = ExactShapley().estimate(g)
    np.testing.assert_allclose(sv.values, glove_shapley(left, right), atol=TOL)
    assert abs(efficiency_gap(sv, g)) < TOL
    if left == 1:  # Banzhaf closed form: left 1 - 2**-R, each right 2**-R
        bz = ExactBanzhaf().estimate(glove_game(left, right))
        expected = [1 - 2.0**-right] + [2.0**-right] * right
        np.testing.assert_allclose(bz.values, expected, atol=TOL)


def test_airport_game_littlechild_owen():
    costs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]  # unsorted, with a tie
    g = airport_game(costs)
    sv = ExactShapley().estimate(g)
    expected = airport_shapley(costs)
    np.testing.assert_allclose(sv.values, expected, atol=TOL)
    # hand check of the formula on the smallest cost: c/(n) with c = 1, n = 8
    assert expected[1] == pytest.approx(1.0 / 8)
    assert abs(efficiency_gap(sv, g)) < TOL
    assert sv.values.sum() == pytest.approx(max(costs))


@pytest.mark.parametrize("quota,weights", [(6, [4, 3, 2, 1, 1, 1]), (51, [49, 25, 20, 6]),
                                           (3, [1, 1, 1, 1, 1])])
def test_weighted_majority_against_brute_force(quota, weights):
    g = weighted_majority_game(quota, weights)
    sv = ExactShapley().estimate(g)
    phi = brute_force_shapley(range(g.n_players), game_worth(g))
    np.testing.assert_allclose(sv.values, [phi[i] for i in range(g.n_players)], atol=TOL)
    assert abs(efficiency_gap(sv, g)) < TOL
    bz = ExactBanzhaf().estimate(g)
    np.testing.assert_allclose(bz.values, brute_force_banzhaf(g), atol=TOL)
    n = len(weights)
    full = np.ones((1, n), dtype=bool)
    minus = ~np.eye(n, dtype=bool)
    loo = g.evaluate(full)[0, 0] - g.evaluate(minus)[:, 0]
    np.testing.assert_allclose(LeaveOneOut().estimate(g).values, loo, atol=TOL)


def test_dividend_game_and_banzhaf_not_efficient():
    div = {(0,): 1.0, (1, 2): 0.6, (0, 2, 3): -0.9, (1, 3, 4, 5): 0.4}
    g = dividend_game(6, div, constant=2.0)
    sv = ExactShapley().estimate(g)
    np.testing.assert_allclose(sv.values, dividend_shapley(6, div), atol=TOL)
    bz = ExactBanzhaf().estimate(g)
    np.testing.assert_allclose(bz.values, dividend_banzhaf(6, div), atol=TOL)
    # Banzhaf is not efficient: sum = 1 + 0.6 - 0.9 * 3/4 + 0.4 * 4/8 = 1.125 vs v(N) - v(0) = 1.1
    assert efficiency_gap(bz, g) == pytest.approx(0.025, abs=TOL)
    assert abs(efficiency_gap(sv, g)) < TOL
    assert bz.index == "banzhaf" and sv.index == "shapley"


def test_one_player_game():
    g = Game(1, lambda z: 2.0 + 3.0 * z[:, 0])
    for est in (ExactShapley(), ExactBanzhaf(), LeaveOneOut(), PermutationShapley(budget=2),
                KernelShap(budget=2)):
        e = est.estimate(g)
        assert e.values.tolist() == pytest.approx([3.0])


# ----------------------------------------------------------------------------- memoised game
def _counting_game(n=4, B=None):
    calls: list[np.ndarray] = []

    def vf(z):
        calls.append(z.copy())
        base = z.astype(float) @ (np.arange(n) + 1.0)
        if B is None:
            return base
        return base[:, None] + np.arange(B + 1)[None, :]

    return Game(n, vf), calls


def test_game_memoises_and_batches():
    g, calls = _counting_game()
    z = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    out = g(z)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, [1.0, 5.0, 1.0, 0.0])  # input order, duplicates kept
    assert len(calls) == 1 and len(calls[0]) == 3  # one batch, each distinct coalition once
    assert g.n_evaluated == 3
    out2 = g(np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]]))  # ints accepted
    np.testing.assert_allclose(out2, [5.0, 10.0, 0.0])
    assert len(calls) == 2 and calls[1].tolist() == [[True, True, True, True]]
    assert g.n_evaluated == 4
    g(z)  # nothing new: no call
    assert len(calls) == 2 and g.n_calls == 2
    table = g.values_table()
    assert len(table) == 4 and table[(False, True, True, False)].tolist() == [5.0]


def test_game_matrix_output_and_from_table():
    g, _ = _counting_game(B=3)
    out = g(np.eye(4, dtype=bool))
    assert out.shape == (4, 4) and g.n_replicates == 3
    np.testing.assert_allclose(out[:, 2], np.arange(4) + 1.0 + 2)
    tg = Game.from_table(g.values_table(), player_names=list("abcd"))
    np.testing.assert_allclose(tg(np.eye(4, dtype=bool)), out)
    with pytest.raises(CopyscopeError, match=r"\{a, b\} has no stored value"):
        tg(np.array([[1, 1, 0, 0]], dtype=bool))


def test_game_rejects_bad_input_and_output():
    g, _ = _counting_game()
    with pytest.raises(CopyscopeError, match="shape"):
        g(np.zeros((2, 3), dtype=bool))
    with pytest.raises(CopyscopeError, match="0/1"):
        g(np.full((1, 4), 2))
    with pytest.raises(CopyscopeError, match="values for"):
        Game(2, lambda z: np.zeros(len(z) + 1))(np.eye(2, dtype=bool))
    with pytest.raises(CopyscopeError, match=r"non-finite worth for coalition \{x\}"):
        Game(2, lambda z: np.where(z[:, 0], np.nan, 0.0), ["x", "y"])(np.eye(2, dtype=bool))
    flip = iter([np.zeros((1, 3)), np.zeros((1, 2))])
    g2 = Game(2, lambda z: next(flip))
    g2(np.array([[1, 0]]))
    with pytest.raises(CopyscopeError, match="must not change"):
        g2(np.array([[0, 1]]))
    with pytest.raises(CopyscopeError, match="unique"):
        Game(2, lambda z: z.sum(1), ["a", "a"])
    with pytest.raises(CopyscopeError, match="2 players"):
        Game(2, lambda z: z.sum(1), ["a"])
    with pytest.raises(CopyscopeError):
        Game(0, lambda z: z.sum(1))


def test_estimators_make_one_batch_call_and_count():
    for est, budget in ((ExactShapley(), None), (LeaveOneOut(), None), (ExactBanzhaf(), None),
                        (PermutationShapley(), 40), (KernelShap(), 40), (SampledBanzhaf(), 40)):
        g, calls = _counting_game(n=7)
        e = est.estimate(g, budget=budget, seed=3)
        assert len(calls) == 1, est
        assert e.n_evaluated == g.n_evaluated == len(calls[0])
        planned = est.plan(7, budget=budget, seed=3)
        assert {r.tobytes() for r in planned} == {r.tobytes() for r in calls[0]}
        if budget is not None:
            assert e.n_evaluated <= budget
    g, _ = _counting_game(n=7)
    assert LeaveOneOut().estimate(g).n_evaluated == 8
    assert ExactShapley().estimate(g).n_evaluated == 2**7


# ----------------------------------------------------------------------------- registry, errors
def test_get_estimator_auto_rule_and_errors():
    assert isinstance(get_estimator("auto", 8, None), ExactShapley)
    assert isinstance(get_estimator("auto", 12, None), ExactShapley)
    assert isinstance(get_estimator("auto", 8, 256), ExactShapley)
    assert isinstance(get_estimator("auto", 8, 255), OddShap)  # issue 16: auto samples with OddShap
    assert isinstance(get_estimator("auto", 30, 500), OddShap)
    assert get_estimator("auto", 30, 500).budget == 500
    with pytest.raises(CopyscopeError,
                       match=r"too many players \(13\) for exact estimation: set estimator.budget"):
        get_estimator("auto", 13, None)
    with pytest.raises(CopyscopeError, match="valid methods are auto, exact, permutation"):
        get_estimator("shapley-magic", 4, None)
    assert isinstance(get_estimator(" Permutation ", 4, 50), PermutationShapley)
    assert isinstance(get_estimator("loo", 4, None), LeaveOneOut)
    with pytest.raises(CopyscopeError, match="budget"):
        get_estimator("kernelshap", 4, -3)
    with pytest.raises(CopyscopeError, match="budget"):
        get_estimator("kernelshap", 4, "many")


def test_estimators_refuse_impossible_budgets():
    g = additive_game(np.arange(6.0))
    with pytest.raises(CopyscopeError, match="needs 2\\*\\*6 = 64 coalitions"):
        ExactShapley().estimate(g, budget=63)
    with pytest.raises(CopyscopeError, match="needs a budget"):
        KernelShap().estimate(g)
    with pytest.raises(CopyscopeError, match="too small"):
        PermutationShapley().estimate(g, budget=11)  # an antithetic pair needs 12
    with pytest.raises(CopyscopeError, match="too small"):
        KernelShap().estimate(g, budget=5)
    with pytest.raises(CopyscopeError, match="leave-one-out"):
        LeaveOneOut().estimate(g, budget=6)
    with pytest.raises(CopyscopeError, match="too many players"):
        ExactShapley().plan(21)
    with pytest.raises(CopyscopeError, match="Game"):
        ExactShapley().estimate(lambda z: z.sum(1))
    with pytest.raises(CopyscopeError, match="seed"):
        KernelShap(budget=20).estimate(g, seed=-1)


def test_large_budget_falls_back_to_exact():
    g = dividend_game(5, {(0, 1, 2): 1.0, (3,): 0.5})
    for est in (PermutationShapley(), KernelShap()):
        e = est.estimate(g, budget=10_000, seed=1)
        assert e.method == "exact" and e.n_evaluated == 32
        np.testing.assert_allclose(e.values, [1 / 3, 1 / 3, 1 / 3, 0.5, 0.0], atol=TOL)


# ----------------------------------------------------------------------------- result object
def test_to_dict_is_json_safe_and_round_trips():
    g, _ = _counting_game(n=5, B=4)
    e = PermutationShapley().estimate(g, budget=12, seed=0)  # one antithetic pair: se = inf
    assert np.isinf(e.estimator_se).all()
    d = json.loads(json.dumps(e.to_dict(), allow_nan=False))
    assert d["estimator_se"] == [None] * 5 and d["method"] == "permutation"
    assert d["n_evaluated"] == e.n_evaluated <= 12
    back = Estimate.from_dict(d)
    np.testing.assert_allclose(back.values, e.values)
    np.testing.assert_allclose(back.replicates, e.replicates)
    assert back.player_names == e.player_names
    assert "player_0" in e.table()


def test_level_and_adjustment_validation():
    e = Estimate(["a", "b"], [1.0, 2.0], replicates=np.ones((2, 5)))
    with pytest.raises(CopyscopeError, match="level"):
        e.ci(1.5)
    with pytest.raises(CopyscopeError, match="holm, bonferroni"):
        e.p_adjusted("fdr-magic")
    assert Estimate(["a"], [1.0]).ci() is None
    assert np.isnan(Estimate(["a"], [1.0]).p_values()).all()


# ---------------------------------------------------------------------------------- registry and plan
from copyscope.estimate.shapley import ESTIMATORS, estimator_names, positive_shares  # noqa: E402


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("n,budget", [(3, None), (3, 8), (6, 24), (9, 60)])
def test_plan_is_exactly_what_estimate_evaluates(name, n, budget):
    """Estimator.plan is the one answer to 'which coalitions?': estimate asks the game for the same
    rows, in the same order, in one call, for every registered estimator."""
    cls = ESTIMATORS[name]
    if budget is None and cls.needs_budget:
        budget = 2**n
    try:
        planned = cls().plan(n, budget, seed=5)
    except CopyscopeError:
        assert budget is not None and budget < 2**n  # e.g. exact with too small a budget
        return
    calls = []

    def worth(z):
        calls.append(z.copy())
        return z.astype(float) @ np.arange(1.0, n + 1) + z.all(axis=1)

    cls().estimate(Game(n, worth), budget=budget, seed=5)
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], planned)
    assert len({r.tobytes() for r in planned}) == len(planned)  # distinct
    assert budget is None or len(planned) <= budget


def test_registry_names_and_attributes_come_from_the_classes():
    assert all(cls.method == name for name, cls in ESTIMATORS.items())
    assert estimator_names()[0] == "auto" and set(estimator_names()[1:]) == set(ESTIMATORS)
    assert estimator_names("shapley") == ("auto", "exact", "permutation", "kernelshap", "oddshap")
    from copyscope.config import EstimatorSpec

    assert EstimatorSpec(method="oddshap").method == "oddshap"
    with pytest.raises(Exception, match="literal"):
        EstimatorSpec(method="loo")  # not a Shapley estimator: computed beside, never chosen
    deterministic = {name for name, cls in ESTIMATORS.items() if cls.deterministic}
    assert deterministic == {"exact", "banzhaf", "loo"}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_estimate_records_a_seed_only_when_it_drew_from_it(name):
    cls = ESTIMATORS[name]
    game = additive_game([1.0, 2.0, 3.0, 4.0, 5.0])
    small = None if cls.deterministic else 20  # below 2**5: really sampled
    assert (cls().estimate(game, budget=small, seed=7).seed is None) == cls.deterministic
    if not cls.deterministic:  # a budget covering every coalition falls back to exact enumeration
        est = cls().estimate(additive_game([1.0, 2.0, 3.0, 4.0, 5.0]), budget=32, seed=7)
        assert est.method in ("exact", "banzhaf") and est.seed is None


def test_brute_force_formula_matches_the_permutation_definition():
    """The one brute force (subset formula) against the other definition: the mean marginal
    contribution over all n! orders, on a random game with interactions of every order."""
    import itertools

    rng = np.random.default_rng(11)
    n = 5
    table = {frozenset(s): rng.normal() for k in range(n + 1) for s in itertools.combinations(range(n), k)}
    by_orders = np.zeros(n)
    orders = list(itertools.permutations(range(n)))
    for order in orders:
        members: frozenset = frozenset()
        for p in order:
            by_orders[p] += table[members | {p}] - table[members]
            members = members | {p}
    phi = brute_force_shapley(range(n), table.__getitem__)
    np.testing.assert_allclose([phi[i] for i in range(n)], by_orders / len(orders), atol=1e-12)


def test_positive_shares():
    phi = np.array([[3.0, -1.0, np.nan], [1.0, -2.0, 0.0], [-4.0, -1.0, 0.0]])
    out = positive_shares(phi, none_positive=np.nan)
    np.testing.assert_allclose(out[:, 0], [75.0, 25.0, 0.0])
    assert np.isnan(out[:, 1]).all()  # nobody positive
    assert positive_shares(np.array([[-1.0], [0.0]]), none_positive=0.0).tolist() == [[0.0], [0.0]]


def test_the_fused_table_keeps_one_column_without_replicates():
    """One seed: every worth row has one column; the fusion's rows must too (a 1-seed audit with two metrics
    crashed building its report before)."""
    import numpy as np

    from copyscope.estimate.per_game import _fused_table
    from copyscope.score.metrics import fusion

    worths = {(False,): {"a": np.array([0.1]), "b": np.array([0.5])}, (True,): {"a": np.array([0.3]), "b": np.array([1.0])}}
    table = _fused_table(fusion, worths, ["a", "b"])
    assert all(row.shape == (1,) for row in table.values())
    assert table[(True,)][0] == pytest.approx(1.0) and table[(False,)][0] == pytest.approx(-1.0)  # z-scores +-1
