"""Adaptive seeds: look at the attribution after each round of seeds, stop once the verdict is decided.

The statistical core of issue 16's adaptive seeds; the audit's round loop is copyscope/adaptive.py.
Seeds come in rounds ``m_1 < m_2 < ... < m_K`` (:func:`seed_rounds`: ``min`` times 1, 1.5, 2, 3,
4, 6, ... up to ``max``: 4, 6, 8, 12, 16 for 4..16), the same seeds for every coalition. After
round ``k`` the per-seed pseudo-values of the first ``m_k`` seeds give intervals and tests
(:func:`copyscope.shapley.inference.seed_inference`).

Looking repeatedly and stopping at the first good-looking result inflates false positives: with a
5 % test at each of 5 looks, a player whose true value is 0 is called positive far more often than
5 % of the time (``tests/test_statistics_sequential.py`` measures it). So the error rate is spent
across the looks (alpha spending): look ``k`` tests at level ``alpha_k`` with
``sum_k alpha_k = alpha``. By the union bound the probability of a false claim at any look is at
most ``sum_k alpha_k = alpha``, whatever the correlation between looks and whenever the audit
stops. The spending is ``alpha_k = alpha ((m_k / m_K)^rho - (m_{k-1} / m_K)^rho)``; ``rho = 1``
(default) spends in proportion to the seeds, ``rho > 1`` saves it for the last looks.

Stopping rule (:func:`look`): each test of look ``k`` is at ``a = alpha_k / n`` (``n`` players).
Stop when

* the verdict is decided: the leader (largest value) is above zero (one-sided t test) and above
  every other player (one-sided paired t tests of the per-seed differences, leader minus player):
  ``reason = "decided"``. A false "decided" needs a false rejection among the ``n`` tests that
  involve the truly best player (its test against zero, and each other player's test against
  it), so its probability is at most ``n a = alpha_k`` per look and ``alpha`` over all looks;
* every interval (two-sided at ``1 - a``: simultaneous over players and looks at ``1 - alpha``)
  is at most ``target`` wide (``reason = "target width"``), or
* the round reached ``max`` seeds (``reason = "max seeds"``).

The design (paired tests instead of the leader's interval above the others' intervals; looks
half-way between doublings; ``rho = 1``) was chosen on synthetic games:
``python bench/bench_adaptive.py --synthetic`` (docs/estimation.md "Adaptive seeds"). Measured on
the validity scenarios and the demo zoo (``python bench/bench_adaptive.py``): the same headline
verdict as the fixed 16-seed design in 6 of 7 audits with 0.78x the images; issue 16's goal of
<= 0.5x is NOT met there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from copyscope.errors import CopyscopeError
from copyscope.shapley.inference import jackknife_pseudo_values, seed_inference

__all__ = ["seed_rounds", "spending", "look", "Look", "run_sequential"]


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

    def to_dict(self, names: list[str]) -> dict:
        others = [n for i, n in enumerate(names) if i != self.leader]
        return {"seeds": self.seeds, "alpha": self.alpha, "stop": self.stop, "reason": self.reason,
                "leader": names[self.leader],
                "significant": [n for n, s in zip(names, self.significant) if s],
                "values": {n: float(v) for n, v in zip(names, self.values)},
                "intervals": {n: [float(lo), float(hi)] for n, (lo, hi) in zip(names, self.ci)},
                "p_values": {n: float(p) for n, p in zip(names, self.p_values)},
                "leader_vs_p": {n: float(p) for n, p in zip(others, self.pair_p)}}


def look(values: np.ndarray, pseudo: np.ndarray, alpha_k: float, last: bool, target: float | None = None,
         zero_tol: float = 0.0, skew_correction: bool = False, paired: bool = True) -> Look:
    """Intervals and tests after one round, and whether to stop (module docstring).

    Each test at this look has level ``a = alpha_k / n``. Decided: the leader is above zero
    (one-sided ``p < a``) and above every other player by a paired test of the per-seed
    differences (``paired=True``: leader minus player ``j``, seed by seed, one-sided ``p < a``;
    common random numbers make these differences far less noisy than either player). A false
    "decided" needs a false rejection among the ``n`` tests that involve the truly best player
    ``j*`` (``j*`` above zero, and each other player above ``j*``), at most ``n a = alpha_k`` at
    this look. ``paired=False`` is the older rule: the leader's lower bound (``1 - 2a`` interval)
    above every other player's upper bound; valid too, never more powerful.

    The recorded intervals are two-sided at ``1 - a`` (``a / 2`` a side): over all players and
    every look together they all cover with probability >= ``1 - alpha`` (union bound), so they
    are simultaneous intervals at the audit's confidence, and the target width is judged on them.

    Plain t by default: the spent levels are tiny at early looks (1e-4 at 4 seeds), and there the
    skew correction's tail is far from nominal (1.5e-4 observed for 3e-6 nominal with Gaussian
    noise at 4 seeds), while the t tail is exact for Gaussian seed noise."""
    values = np.asarray(values, dtype=float)
    pseudo = np.asarray(pseudo, dtype=float)
    n = len(values)
    a = alpha_k / n
    ci, p = seed_inference(values, pseudo, None, 1.0 - a, zero_tol, skew_correction)
    leader = int(np.argmax(values))
    significant = p < a
    others = [j for j in range(n) if j != leader]
    if paired:
        diff_values = values[leader] - values[others]
        diffs = pseudo[leader][None, :] - pseudo[others]
        _, pair_p = seed_inference(diff_values, diffs, None, 0.5, zero_tol, skew_correction)
        separated = bool(np.all(pair_p < a))
    else:
        wide, _ = seed_inference(values, pseudo, None, 1.0 - 2.0 * a, zero_tol, skew_correction)
        pair_p = np.full(len(others), np.nan)
        separated = bool(not others or wide[leader, 0] > wide[others, 1].max())
    decided = bool(significant[leader]) and separated
    narrow = target is not None and bool(np.all(ci[:, 1] - ci[:, 0] <= target))
    reason = "decided" if decided else "target width" if narrow else "max seeds" if last else None
    return Look(pseudo.shape[-1], float(alpha_k), values, ci, p, reason is not None, reason, leader, significant,
                np.asarray(pair_p, dtype=float))


def run_sequential(per_seed_phi: np.ndarray, rounds: list[int], alpha: float = 0.05, target: float | None = None,
                   rho: float = 1.0, levels: np.ndarray | None = None, paired: bool = True,
                   skew_correction: bool = False) -> list[Look]:
    """Replay the rounds on per-seed attributions ``(n, max_seeds)`` (a per-image metric: the
    pseudo-values of the first ``m`` seeds are the per-seed values themselves); returns the looks
    up to and including the one that stopped. ``levels`` overrides the spending (e.g. ``alpha`` at
    every look, the naive design the tests show to be wrong)."""
    levels = spending(rounds, alpha, rho) if levels is None else np.asarray(levels, dtype=float)
    looks = []
    for k, m in enumerate(rounds):
        x = per_seed_phi[:, :m]
        values = x.mean(axis=1)
        loo = (x.sum(axis=1, keepdims=True) - x) / (m - 1)
        pseudo = jackknife_pseudo_values(values, loo)  # = x, computed as the audit would
        looks.append(look(values, pseudo, levels[k], k == len(rounds) - 1, target, paired=paired,
                          skew_correction=skew_correction))
        if looks[-1].stop:
            break
    return looks
