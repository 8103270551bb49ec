"""Distribution-free intervals and tests for bounded per-seed contributions: betting confidence sequences.

Why: the t-based inference of :mod:`copyscope.estimate.shapley.inference` is calibrated for roughly symmetric
seed noise. With left-skewed noise (most seeds a little positive, a few strongly negative) its 5 %
test rejects a true value of 0 far more often than 5 % (``bench/bench_bounded.py`` measures it).
A per-image metric has a declared range ``[a, b]``, so each seed's exact Shapley contribution lies in
``[-(b - a), b - a]`` (a weighted mean of marginal contributions, weights summing to 1), and so does
the per-seed difference of two players' contributions (``phi_i - phi_j`` is a weighted mean of
``v(S + i) - v(S + j)``, weights again summing to 1: :func:`pair_difference_bound`). For bounded
draws there are tests whose error rate holds for every distribution, at every seed count and at any
stopping time.

The method (Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", JRSS-B
2024): rescale each draw to ``y in [0, 1]``. To test ``H0: mean <= m`` a gambler starts with capital 1
and, before seeing seed ``t``, stakes a fraction chosen from seeds ``1..t-1`` only:
``K_t(m) = prod_{i <= t} (1 + lam_i (y_i - m))`` with ``0 <= lam_i <= c / m``. Under ``H0`` the capital
is a nonnegative supermartingale, so by Ville's inequality ``P(sup_t K_t(m) >= 1 / alpha) <= alpha``
whatever the distribution: ``p = min(1, 1 / max_t K_t(0))`` is a p-value valid at every seed count and
under any stopping rule (an *anytime-valid* p-value). The interval is the set of means ``m`` not
rejected from either side at ``alpha / 2`` (a confidence sequence; intersected over seeds, so it only
shrinks), computed on a grid and widened by one grid step so that it contains the exact set.

The bets (``lam_i``): the approximate growth-rate-optimal plug-in (WSR's aGRAPA),
``lam = (mu - m) / (var + (mu - m)^2)`` from regularised running estimates, clipped to ``[0, c / m]``.
The regularisation (a prior mean slightly above ``m`` and a prior variance of 0.01 on the [0, 1] scale,
worth one seed) and ``c = 0.95`` were chosen by ``python bench/bench_bounded.py --design``: per-seed
Shapley contributions are small against their a-priori range (an SSIM or pHash plant contributes
0.1-0.3 of a range of 2), where the growth-optimal bet is near the largest allowed one. Any choice of
these keeps the guarantee; they only move the power.

What it cannot do: no valid test of a bounded mean can reject ``mean <= 0`` from ``n`` seeds that all
equal ``x > 0`` unless ``(R / (R + x))^n <= alpha`` (a law putting mass at ``-R`` could produce them).
At 8 or 16 seeds, contributions well below the range are therefore out of reach however consistent
they are; :func:`min_detectable` gives the floor for a seed count.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BET_CAP",
    "PRIOR_VAR",
    "PRIOR_SHIFT",
    "capital",
    "betting_p_values",
    "betting_intervals",
    "bounded_inference",
    "pair_difference_bound",
    "shapley_seed_bound",
    "min_detectable",
    "seeds_needed",
    "RULES",
    "bounded_seed_inference",
    "claim",
]

#: The largest stake, as a fraction of what the worst outcome could cost (``lam <= c / m``).
BET_CAP = 0.95
#: Prior variance and prior mean shift (above the tested mean) of the running estimates, on the
#: [0, 1] scale, each worth one seed.
PRIOR_VAR = 0.01
PRIOR_SHIFT = 0.05
#: Points of the grid of means the interval is computed on (the interval is widened by one step).
GRID = 2001


def _running_bets(y: np.ndarray, m: np.ndarray, upper: bool) -> np.ndarray:
    """Predictable stakes ``(..., G, T)`` for testing ``mean <= m`` (``upper``: bet on large draws) or
    ``mean >= m`` (bet on small draws, by symmetry ``y -> 1 - y``), each from the seeds before it."""
    if not upper:
        return _running_bets(1.0 - y, 1.0 - m, True)
    t = y.shape[-1]
    prior_mean = np.minimum(m + PRIOR_SHIFT, 1.0)[..., None]  # (G, 1)
    yy = y[..., None, :]  # (..., 1, T)
    counts = np.arange(1, t + 1, dtype=float)  # seeds seen, plus the prior's one
    csum = np.cumsum(yy, axis=-1)
    mean = (prior_mean + csum) / (counts + 1.0)  # after seed i
    dev = (yy - mean) ** 2
    var = (PRIOR_VAR + np.cumsum(dev, axis=-1)) / (counts + 1.0)
    # the bet for seed i uses the estimates after seed i - 1 (the prior alone for the first)
    mean_before = np.concatenate([np.broadcast_to(prior_mean, mean.shape[:-1] + (1,)), mean[..., :-1]], axis=-1)
    var_before = np.concatenate([np.full(var.shape[:-1] + (1,), PRIOR_VAR), var[..., :-1]], axis=-1)
    edge = mean_before - m[..., None]
    lam = edge / (var_before + edge**2)
    cap = BET_CAP / np.maximum(m, 1e-12)[..., None]
    return np.clip(lam, 0.0, cap)


def capital(y: np.ndarray, m, upper: bool = True) -> np.ndarray:
    """Running maximum of the capital, ``(..., G, T)``: ``max_{s <= t} K_s(m)`` for draws ``y`` in [0, 1]
    (last axis: seeds in order) against ``H0: mean <= m`` (``upper``) or ``mean >= m``."""
    y = np.asarray(y, dtype=float)
    m = np.atleast_1d(np.asarray(m, dtype=float))
    lam = _running_bets(y, m, upper)
    sign = 1.0 if upper else -1.0
    steps = 1.0 + sign * lam * (y[..., None, :] - m[..., None])
    with np.errstate(divide="ignore"):
        log_k = np.cumsum(np.log(np.maximum(steps, 0.0)), axis=-1)
    return np.exp(np.maximum.accumulate(np.maximum(log_k, 0.0), axis=-1))  # K_0 = 1 counts too


def _to_unit(x: np.ndarray, bound: float) -> np.ndarray:
    return (np.asarray(x, dtype=float) + bound) / (2.0 * bound)


def betting_p_values(per_seed: np.ndarray, bound: float) -> np.ndarray:
    """Anytime-valid one-sided p-values ``(n,)`` of ``H0: mean <= 0`` for per-seed draws ``(n, m)`` in
    ``[-bound, bound]``: ``min(1, 1 / max_t K_t(0))`` over the seeds in order."""
    y = _to_unit(per_seed, bound)
    k = capital(y, np.array([0.5]))[..., 0, -1]
    return np.minimum(1.0, 1.0 / k)


def betting_intervals(per_seed: np.ndarray, bound: float, level: float) -> np.ndarray:
    """``(n, 2)`` confidence-sequence intervals at ``level`` for the means of per-seed draws ``(n, m)`` in
    ``[-bound, bound]``: every mean not rejected from either side at ``(1 - level) / 2``, over all seeds
    so far; one grid step wider than the exact set on each side."""
    y = _to_unit(per_seed, bound)
    grid = np.linspace(0.0, 1.0, GRID)
    threshold = 2.0 / (1.0 - level)
    low_ok = capital(y, grid, upper=True)[..., -1] < threshold  # (n, G): mean >= m not rejected
    high_ok = capital(y, grid, upper=False)[..., -1] < threshold
    ok = low_ok & high_ok
    step = grid[1] - grid[0]
    out = np.empty(y.shape[:-1] + (2,))
    for idx in np.ndindex(*y.shape[:-1]):
        inside = np.flatnonzero(ok[idx])
        if inside.size == 0:  # cannot happen for a valid sequence; keep the whole range rather than claim
            lo, hi = 0.0, 1.0
        else:
            lo, hi = max(grid[inside[0]] - step, 0.0), min(grid[inside[-1]] + step, 1.0)
        out[idx] = (lo, hi)
    return out * (2.0 * bound) - bound


def bounded_inference(per_seed: np.ndarray, bound: float, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Interval ``(n, 2)`` and anytime-valid one-sided p-values ``(n,)`` of ``H0: mean <= 0`` for per-seed
    contributions in ``[-bound, bound]`` (see the module docstring)."""
    per_seed = np.asarray(per_seed, dtype=float)
    return betting_intervals(per_seed, bound, level), betting_p_values(per_seed, bound)


def shapley_seed_bound(value_range: tuple[float, float]) -> float:
    """The bound ``R`` with every per-seed exact Shapley value in ``[-R, R]`` when each coalition's
    per-seed worth lies in ``value_range``: ``R = b - a``."""
    a, b = value_range
    return float(b) - float(a)


def pair_difference_bound(value_range: tuple[float, float]) -> float:
    """The bound on ``phi_i - phi_j`` per seed: also ``b - a``. Shapley's difference formula writes it as
    ``sum_{S not containing i, j} |S|! (n - |S| - 2)! / (n - 1)! * (v(S + i) - v(S + j))``, and those
    weights sum to 1 (tests/unit/estimate/test_statistics_bounded.py checks it on random games)."""
    return shapley_seed_bound(value_range)


def min_detectable(n_seeds: int, bound: float, alpha: float) -> float:
    """The smallest ``x`` for which ``n_seeds`` seeds all equal to ``x`` could reject ``mean <= 0`` at
    ``alpha`` by any valid test of a mean in ``[-bound, bound]``: ``bound ((1 / alpha)^(1/n) - 1)``."""
    return bound * ((1.0 / alpha) ** (1.0 / max(int(n_seeds), 1)) - 1.0)


def seeds_needed(x: float, bound: float, alpha: float) -> int | None:
    """The fewest seeds at which a contribution ``x`` could be confirmed (:func:`min_detectable` inverted),
    None for ``x <= 0``. A floor: seed noise adds more."""
    if not x > 0:
        return None
    return int(math.ceil(math.log(1.0 / alpha) / math.log1p(x / bound)))


#: What ``estimator.significance`` can ask of a claim (docs/estimation.md, "Which test carries a claim").
RULES = ("both", "distribution_free", "t")


def bounded_seed_inference(per_seed: np.ndarray | None, bound: float | None, level: float):
    """The betting interval and p-values of per-seed contributions, or None when there is no bound
    (set metrics, the fusion, sampled estimators), no per-seed values, or a value outside the bound
    (then the declared range does not hold, so no distribution-free claim is made)."""
    if bound is None or per_seed is None or not bound > 0:
        return None
    x = np.asarray(per_seed, dtype=float)
    if x.ndim != 2 or x.shape[1] < 1 or not np.isfinite(x).all() or np.abs(x).max() > bound * (1 + 1e-9):
        return None
    return bounded_inference(np.clip(x, -bound, bound), bound, level)


def claim(rule: str, t: tuple[np.ndarray, np.ndarray], bounded: tuple[np.ndarray, np.ndarray] | None):
    """``(interval, p-values, what carried it)`` of a significance claim under ``rule``.

    ``both``: a claim needs both tests, so its p-value is the larger of the two (the test that rejects
    only when both do: valid whenever either is) and its interval the hull of both intervals (it covers
    whenever either covers). Without a bound (``bounded`` None) every rule falls back to the t test,
    labelled asymptotic."""
    if rule not in RULES:
        raise ValueError(f"significance rule {rule!r}: expected one of {', '.join(RULES)}")
    ci_t, p_t = t
    if rule == "t":
        return ci_t, p_t, "t"
    if bounded is None:
        return ci_t, p_t, "t (asymptotic: no bound per seed)"
    ci_b, p_b = bounded
    if rule == "distribution_free":
        return ci_b, p_b, "distribution-free"
    hull = ci_b.copy() if ci_t is None else np.stack([np.fmin(ci_t[:, 0], ci_b[:, 0]), np.fmax(ci_t[:, 1], ci_b[:, 1])], axis=1)
    return hull, np.fmax(p_t, p_b), "t and distribution-free"
