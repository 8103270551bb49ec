"""Adaptive seeds: look at the attribution after each round of seeds, stop once the verdict is decided.

The statistical core of adaptive seeds; the audit's round loop is copyscope/estimate/adaptive.py.
Seeds come in rounds ``m_1 < m_2 < ... < m_K`` (:func:`seed_rounds`: ``min`` times 1, 1.5, 2, 3,
4, 6, ... up to ``max``: 4, 6, 8, 12, 16 for 4..16), the same seeds for every coalition. After
round ``k`` the per-seed pseudo-values of the first ``m_k`` seeds give intervals and tests
(:func:`copyscope.estimate.shapley.inference.seed_inference`).

Looking repeatedly and stopping at the first good-looking result inflates false positives: with a
5 % test at each of 5 looks, a player whose true value is 0 is called positive far more often than
5 % of the time (``tests/unit/estimate/test_statistics_sequential.py`` measures it). So the error rate is spent
across the looks (alpha spending): look ``k`` spends ``alpha_k`` with ``sum_k alpha_k = alpha``,
``alpha_k = alpha ((m_k / m_K)^rho - (m_{k-1} / m_K)^rho)``; ``rho = 1`` (default) spends in
proportion to the seeds, ``rho > 1`` saves it for the last looks. Each of a look's ``n`` tests
spends ``alpha_k / n`` (a union bound over players). Across looks, two ways to keep the promise
(:func:`look_levels`):

* exact levels (default, :func:`exact_levels`): the level of look ``k``'s t test is set so that
  the probability of a first false rejection at look ``k`` is exactly the spent ``alpha_k / n``,
  for the known correlation of nested seed prefixes (a group-sequential boundary); over all looks
  a test's false-rejection probability is then ``alpha / n`` for Gaussian seed noise;
* the union bound over looks: each test at ``alpha_k / n``; valid whatever the correlation
  between looks, but it wastes level, because nested prefixes of the same seeds are strongly
  correlated (the exact levels are 1.2-1.7x larger after the first look).

Stopping rule (:func:`look`), with ``a`` the look's test level:

* the verdict is decided: the leader (largest value) is above zero (one-sided t test) and above
  every other player (one-sided paired t tests of the per-seed differences, leader minus player):
  ``reason = "decided"``. A false "decided" needs a false rejection among the ``n`` tests that
  involve the truly best player (its test against zero, and each other player's test against
  it), so its probability is at most ``alpha_k`` per look and ``alpha`` over all looks;
* every interval (two-sided, each side spending ``alpha_k / n / 2``: simultaneous over players
  and looks at ``1 - alpha``) is at most ``target`` wide (``reason = "target width"``), or
* the round reached ``max`` seeds (``reason = "max seeds"``).

The design (paired tests instead of the leader's interval above the others' intervals; looks
half-way between doublings; ``rho = 1``; exact levels) was chosen on synthetic games:
``python bench/bench_adaptive.py --synthetic`` (docs/estimation.md "Adaptive seeds"); its images
and verdicts on the validity scenarios and the demo zoo are in bench/adaptive_results.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley.inference import jackknife_pseudo_values, seed_inference

__all__ = ["seed_rounds", "spending", "exact_levels", "look_levels", "look", "Look", "run_sequential"]


def seed_rounds(min_seeds: int = 4, max_seeds: int = 64) -> list[int]:
    """Seed counts after each round: ``min`` times 1, 1.5, 2, 3, 4, 6, 8, ... (each doubling with a
    look half-way, in ratio), then ``max``: 4, 6, 8, 12, 16, 24, 32, 48, 64 for 4..64. The looks
    half-way were chosen on synthetic games (docs/estimation.md "Adaptive seeds"): with linear
    spending they cost almost no power, and an audit that is decided at 6 seeds stops there
    instead of at 8."""
    if min_seeds < 3 or max_seeds < min_seeds:
        raise CopyscopeError(f"adaptive seeds need 3 <= min <= max, got min={min_seeds}, max={max_seeds}")
    rounds, k = [], 0
    while True:
        m = min_seeds * 2 ** (k // 2) * (3 if k % 2 else 2) // 2
        if m >= max_seeds:
            break
        if not rounds or m > rounds[-1]:
            rounds.append(m)
        k += 1
    return rounds + [max_seeds]


def spending(rounds: list[int], alpha: float = 0.05, rho: float = 1.0) -> np.ndarray:
    """Per-look levels ``alpha_k = alpha (t_k^rho - t_{k-1}^rho)``, ``t_k = m_k / m_K``; they sum to
    ``alpha``. ``rho = 0`` is not allowed; ``rho = 1`` spends in proportion to the seeds."""
    t = np.asarray(rounds, dtype=float) / rounds[-1]
    cum = alpha * t**rho
    return np.diff(np.concatenate([[0.0], cum]))


@lru_cache(maxsize=4)  # up to (sims x looks) floats each: 29 MB for 400,000 x 9
def _null_p_values(rounds: tuple[int, ...], sims: int, seed: int) -> np.ndarray:
    """One-sided t-test p-values ``(sims, looks)`` of ``sims`` simulated all-null seed sequences (iid
    standard normal), looked at after each round: the joint law the exact levels are calibrated on.
    Made in chunks so that 64 seeds x 400,000 sequences stay small in memory."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    idx = np.asarray(rounds) - 1
    m = np.asarray(rounds, dtype=float)
    out = []
    for start in range(0, sims, 50_000):
        x = rng.standard_normal((min(50_000, sims - start), rounds[-1]))
        cs, cs2 = np.cumsum(x, axis=1)[:, idx], np.cumsum(x * x, axis=1)[:, idx]
        mean = cs / m
        sd = np.sqrt(np.maximum(cs2 - m * mean**2, 1e-300) / (m - 1))
        out.append(stats.t.sf(mean / (sd / np.sqrt(m)), m - 1))
    return np.concatenate(out)


def exact_levels(rounds: list[int], spent: np.ndarray, sims: int = 400_000, seed: int = 0) -> np.ndarray:
    """Group-sequential nominal levels: the one-sided level ``q_k`` of look ``k``'s t test such that,
    for iid Gaussian seed noise and a true value of 0, the probability that the test first rejects
    at look ``k`` is ``spent[k]`` (so the probability of rejecting at any look is ``sum(spent)``).

    Why: spending ``spent[k]`` at each look and adding them up (the union bound) ignores that the
    looks are nested prefixes of the same seeds, strongly correlated; it holds whatever the
    correlation but wastes level. The correlation of nested means is known exactly from the seed
    counts (``sqrt(m_j / m_k)``), so the levels can be set to spend exactly ``spent[k]``: the
    classical group-sequential boundary (Lan & DeMets spending), computed here by simulating the
    looks' joint law (``sims`` sequences, fixed seed: deterministic). The first look needs no
    simulation (``q_1 = spent[0]``, exact); later looks are at least as large as ``spent[k]``
    (1.2-1.7x for the default 4..16 rounds). Like every t test here it assumes roughly symmetric
    per-seed contributions (docs/estimation.md, Adaptive seeds)."""
    key = (tuple(int(r) for r in rounds), tuple(float(x) for x in np.asarray(spent, dtype=float)), int(sims), int(seed))
    return np.array(_exact_levels(*key))


@lru_cache(maxsize=256)
def _exact_levels(rounds: tuple[int, ...], spent: tuple[float, ...], sims: int, seed: int) -> tuple[float, ...]:
    """:func:`exact_levels`, cached: a simulated audit looks up the same levels thousands of times."""
    p = _null_p_values(rounds, sims, seed)
    alive = np.ones(len(p), dtype=bool)
    q = []
    for k in range(len(rounds)):
        if k == 0:
            qk = float(spent[0])  # the first look's t test is exact on its own
        else:
            need = int(round(spent[k] * len(p)))
            alive_p = np.sort(p[alive, k])
            # the largest level whose first crossings at look k number `need`, never below the union bound's
            qk = max(float(alive_p[need - 1]) if need >= 1 else 0.0, float(spent[k]))
        q.append(qk)
        alive &= p[:, k] > qk
    return tuple(q)


def look_levels(rounds: list[int], alpha: float, rho: float, tests: int, exact: bool = True,
                spent: np.ndarray | None = None) -> np.ndarray:
    """Per look ``k``: ``[alpha_k, test level, interval level a side]`` for ``tests`` tests sharing the
    look's level ``alpha_k`` (``tests`` = players, times works + 1 with several works). Union bound
    (``exact=False``): ``alpha_k / tests`` and half of it a side. Exact (default): the
    :func:`exact_levels` of those spent levels. ``spent`` replaces the spending ``alpha_k``."""
    spent = spending(rounds, alpha, rho) if spent is None else np.asarray(spent, dtype=float)
    per_test = spent / tests
    if not exact:
        return np.stack([spent, per_test, per_test / 2.0], axis=1)
    return np.stack([spent, exact_levels(rounds, per_test), exact_levels(rounds, per_test / 2.0)], axis=1)


@dataclass
class Look:
    """One round's result: what the report records."""

    seeds: int
    alpha: float
    values: np.ndarray
    ci: np.ndarray
    p_values: np.ndarray
    stop: bool
    reason: str | None
    leader: int
    significant: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    pair_p: np.ndarray = field(default_factory=lambda: np.zeros(0))  # leader vs each other player, in player order
    test_level: float = float("nan")  # each one-sided test's nominal level at this look

    def to_dict(self, names: list[str]) -> dict:
        others = [n for i, n in enumerate(names) if i != self.leader]
        return {"seeds": self.seeds, "alpha": self.alpha, "test_level": self.test_level, "stop": self.stop,
                "reason": self.reason,
                "leader": names[self.leader],
                "significant": [n for n, s in zip(names, self.significant) if s],
                "values": {n: float(v) for n, v in zip(names, self.values)},
                "intervals": {n: [float(lo), float(hi)] for n, (lo, hi) in zip(names, self.ci)},
                "p_values": {n: float(p) for n, p in zip(names, self.p_values)},
                "leader_vs_p": {n: float(p) for n, p in zip(others, self.pair_p)}}


def look(values: np.ndarray, pseudo: np.ndarray, alpha_k: float, last: bool, target: float | None = None,
         zero_tol: float = 0.0, skew_correction: bool = False, paired: bool = True,
         levels: tuple[float, float] | None = None, bound: float | None = None, rule: str = "t") -> Look:
    """Intervals and tests after one round, and whether to stop (module docstring).

    The look spends ``alpha_k``; each of its ``n`` one-sided tests spends ``alpha_k / n``, and is
    run at level ``a = alpha_k / n`` (the union bound over looks) or, when given, at ``levels[0]``,
    the exact group-sequential level that spends exactly that (:func:`look_levels`). Decided: the
    leader is above zero (one-sided ``p < a``) and above every other player by a paired test of the
    per-seed differences (``paired=True``: leader minus player ``j``, seed by seed, one-sided
    ``p < a``; common random numbers make these differences far less noisy than either player). A
    false "decided" needs a false rejection among the ``n`` tests that involve the truly best
    player ``j*`` (``j*`` above zero, and each other player above ``j*``), each spending
    ``alpha_k / n``: at most ``alpha_k`` at this look. ``paired=False`` is the older rule: the
    leader's lower bound (``1 - 2a`` interval) above every other player's upper bound; valid too,
    never more powerful.

    The recorded intervals are two-sided, spending ``alpha_k / n / 2`` a side (at that level a side,
    or at ``levels[1]``, its exact level): over all players and every look together they all cover
    with probability >= ``1 - alpha``, so they are simultaneous intervals at the audit's
    confidence, and the target width is judged on them.

    Plain t by default: the spent levels are tiny at early looks (1e-4 at 4 seeds), and there the
    skew correction's tail is far from nominal (1.5e-4 observed for 3e-6 nominal with Gaussian
    noise at 4 seeds), while the t tail is exact for Gaussian seed noise.

    ``bound`` with ``rule`` ``both`` or ``distribution_free`` (copyscope.estimate.shapley.bounded.claim): every test
    and interval also (both) or only (distribution_free) through the anytime-valid betting test of
    per-seed values in ``[-bound, bound]`` (the leader-minus-player differences too: the same bound,
    copyscope.estimate.shapley.bounded.pair_difference_bound). Anytime-valid: the caller runs every look at the
    whole level (``levels``), with no spending across looks."""
    from .bounded import betting_p_values, bounded_inference, bounded_seed_inference, claim

    values = np.asarray(values, dtype=float)
    pseudo = np.asarray(pseudo, dtype=float)
    n = len(values)
    a, side = (alpha_k / n, alpha_k / n / 2.0) if levels is None else (float(levels[0]), float(levels[1]))
    # None without a bound, or with per-seed values outside it (then the declared range does not hold)
    betting = bounded_seed_inference(pseudo, bound, 1.0 - 2.0 * side) if rule != "t" else None
    bounded = betting is not None
    ci, p = seed_inference(values, pseudo, None, 1.0 - 2.0 * side, zero_tol, skew_correction)
    if bounded:
        ci, p, _ = claim(rule, (ci, p), betting)
    leader = int(np.argmax(values))
    significant = p < a
    others = [j for j in range(n) if j != leader]
    if paired:
        diff_values = values[leader] - values[others]
        diffs = pseudo[leader][None, :] - pseudo[others]
        _, pair_p = seed_inference(diff_values, diffs, None, 0.5, zero_tol, skew_correction)
        if bounded:
            pair_b = betting_p_values(np.clip(diffs, -bound, bound), bound)
            pair_p = pair_b if rule == "distribution_free" else np.fmax(pair_p, pair_b)
        separated = bool(np.all(pair_p < a))
    else:
        wide, p_wide = seed_inference(values, pseudo, None, 1.0 - 2.0 * a, zero_tol, skew_correction)
        if bounded:
            wide, _, _ = claim(rule, (wide, p_wide), bounded_inference(pseudo, bound, 1.0 - 2.0 * a))
        pair_p = np.full(len(others), np.nan)
        separated = bool(not others or wide[leader, 0] > wide[others, 1].max())
    decided = bool(significant[leader]) and separated
    narrow = target is not None and bool(np.all(ci[:, 1] - ci[:, 0] <= target))
    reason = "decided" if decided else "target width" if narrow else "max seeds" if last else None
    return Look(pseudo.shape[-1], float(alpha_k), values, ci, p, reason is not None, reason, leader, significant,
                np.asarray(pair_p, dtype=float), a)


def run_sequential(per_seed_phi: np.ndarray, rounds: list[int], alpha: float = 0.05, target: float | None = None,
                   rho: float = 1.0, levels: np.ndarray | None = None, paired: bool = True,
                   skew_correction: bool = False, exact: bool = True, bound: float | None = None,
                   rule: str = "t") -> list[Look]:
    """Replay the rounds on per-seed attributions ``(n, max_seeds)`` (a per-image metric: the
    pseudo-values of the first ``m`` seeds are the per-seed values themselves); returns the looks
    up to and including the one that stopped. ``exact``: the group-sequential levels (default) or
    the union bound over looks. ``levels`` overrides the spending with union-bound tests at those
    levels (e.g. ``alpha`` at every look, the naive design the tests show to be wrong). ``bound`` with
    ``rule`` both or distribution_free: the anytime-valid design (:func:`look`), every look at the whole
    level ``alpha / n``, as the audit runs it (copyscope.estimate.adaptive.game_look)."""
    n = per_seed_phi.shape[0]
    anytime = bound is not None and rule != "t"
    if anytime:
        table = np.tile([alpha, alpha / n, alpha / n / 2.0], (len(rounds), 1))
    else:
        table = look_levels(rounds, alpha, rho, n, exact and levels is None, spent=levels)
    looks = []
    for k, m in enumerate(rounds):
        x = per_seed_phi[:, :m]
        values = x.mean(axis=1)
        loo = (x.sum(axis=1, keepdims=True) - x) / (m - 1)
        pseudo = jackknife_pseudo_values(values, loo)  # = x, computed as the audit would
        looks.append(look(values, pseudo, table[k, 0], k == len(rounds) - 1, target, paired=paired,
                          skew_correction=skew_correction, levels=(table[k, 1], table[k, 2]), bound=bound, rule=rule))
        if looks[-1].stop:
            break
    return looks
