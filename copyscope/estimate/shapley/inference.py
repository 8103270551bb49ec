"""Intervals and tests over seeds: the leave-one-seed-out jackknife with Student-t quantiles.

The game stage gives every coalition a worth on all ``m`` seeds (column 0) and on each set of
``m - 1`` seeds that leaves one seed out (columns ``1..m``). Every estimator is linear in the
worths, so the same estimator on column ``1 + s`` is the attribution without seed ``s``, and

    pseudo_s = m * value - (m - 1) * value_without_s

is seed ``s``'s *pseudo-value*. For a per-image metric (a worth that is a mean over seeds) the
pseudo-value is exactly the attribution computed on seed ``s`` alone, so the pseudo-values are
``m`` independent draws whose mean is the point estimate. For a set-level metric (KID, Fréchet
distance) they are Tukey's jackknife pseudo-values; no seed is ever paired with itself, so unlike
a bootstrap of seeds they stay centred on the estimator.

Interval: ``value +- t_{m-1, 1 - a/2} * se`` with ``se = sd(pseudo) / sqrt(m)`` (the jackknife
standard error). Test of ``H0: value <= 0``: ``p = P(T_{m-1} >= value / se)``, a continuous
p-value, not floored at ``1 / (B + 1)`` like a bootstrap count. The two agree: the two-sided
``1 - a`` interval excludes zero from above exactly when ``p < a / 2``. Why this pair was chosen
over percentile and other bootstrap intervals, with the simulated coverage and false-positive
rates: ``bench/bench_intervals.py`` and docs/estimation.md.

Exact ties: a player that changes no image has pseudo-values that are zero in exact arithmetic
but +-1e-17 in floating point; a t statistic of such noise is meaningless. Values and standard
errors at or below ``zero_tol`` (relative to the worths' scale, set by the audit) count as exactly
zero: such a player gets ``p = 1`` and a zero-width interval at its value.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = [
    "MIN_SEEDS",
    "seed_inference",
    "jackknife_pseudo_values",
    "jackknife_se",
    "t_interval",
    "t_test_greater",
    "default_zero_tol",
    "worths_zero_tol",
    "seed_count_warning",
    "power_note",
]

#: Fewest seeds from which the simulations of ``bench/bench_intervals.py`` (2000 audits per row)
#: give 95 % intervals a coverage of at least 93 % for every player in every scenario, skewed seed
#: noise included (Gaussian per-image noise and KID need only 4; strongly skewed noise 16). Below
#: it the audit warns (docs/estimation.md has the table).
MIN_SEEDS = 16


def jackknife_pseudo_values(values: np.ndarray, leave_one_out: np.ndarray) -> np.ndarray:
    """(n, m) pseudo-values ``m * values - (m - 1) * leave_one_out`` (row mean: bias-corrected
    estimate; for a mean over seeds exactly ``values``)."""
    loo = np.asarray(leave_one_out, dtype=float)
    m = loo.shape[-1]
    return m * np.asarray(values, dtype=float)[..., None] - (m - 1) * loo


def jackknife_se(leave_one_out: np.ndarray) -> np.ndarray:
    """Jackknife standard error ``sqrt((m - 1) / m * sum_s (loo_s - mean loo)**2)`` along the
    last axis (= sd(pseudo-values) / sqrt(m)); NaN for m < 2."""
    loo = np.asarray(leave_one_out, dtype=float)
    m = loo.shape[-1]
    if m < 2:
        return np.full(loo.shape[:-1], np.nan)
    dev = loo - loo.mean(axis=-1, keepdims=True)
    return np.sqrt((m - 1) / m * (dev**2).sum(axis=-1))


def worths_zero_tol(max_abs_worth: float) -> float:
    """What counts as exactly zero for estimates of a game whose largest worth magnitude is
    ``max_abs_worth``: 1e-10 of it (the audit's rule; floating-point residue of sums of worths)."""
    return 1e-10 * max(float(max_abs_worth), 1e-300)


def default_zero_tol(*arrays: np.ndarray | None) -> float:
    """A tolerance for 'exactly zero' when the worths' scale is not known: 1e-12 of the largest
    magnitude seen, and never below 1e-12."""
    scale = 1.0
    for a in arrays:
        if a is not None and np.size(a):
            finite = np.abs(np.asarray(a, dtype=float))
            finite = finite[np.isfinite(finite)]
            if finite.size:
                scale = max(scale, float(finite.max()))
    return 1e-12 * scale


def _snap(values: np.ndarray, se: np.ndarray, zero_tol: float) -> tuple[np.ndarray, np.ndarray]:
    values = np.where(np.abs(values) <= zero_tol, 0.0, values)
    se = np.where(np.abs(se) <= zero_tol, 0.0, se)
    return values, se


def t_interval(values: np.ndarray, se: np.ndarray, df: float, level: float, zero_tol: float = 0.0) -> np.ndarray:
    """(n, 2) interval ``values +- t_{df, (1 + level) / 2} * se``; zero width where se <= zero_tol."""
    values = np.asarray(values, dtype=float)
    _, se = _snap(values, np.asarray(se, dtype=float), zero_tol)
    q = float(stats.t.ppf(0.5 + level / 2.0, df)) if df > 0 else np.inf
    with np.errstate(invalid="ignore"):
        half = np.where(se > 0, q * se, 0.0)
    return np.stack([values - half, values + half], axis=-1)


def t_test_greater(values: np.ndarray, se: np.ndarray, df: float, zero_tol: float = 0.0) -> np.ndarray:
    """One-sided p-values of ``H0: true value <= 0`` from ``T = value / se ~ t_df``.

    Degenerate cases (se <= zero_tol, i.e. every seed gave the same contribution): p = 1 when the
    value is <= zero_tol (nothing shows an increase), 0 when it is above (every seed agrees)."""
    values, se = _snap(np.asarray(values, dtype=float), np.asarray(se, dtype=float), zero_tol)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = values / np.where(se > 0, se, 1.0)
        p = stats.t.sf(t, df) if df > 0 else np.full_like(t, np.nan)
    degenerate = np.where(values > 0, 0.0, 1.0)
    out = np.where(se > 0, p, degenerate)
    return np.where(np.isfinite(values) & np.isfinite(se), out, np.nan)


def _skewness(x: np.ndarray) -> np.ndarray:
    """Sample skewness (moment estimator, divisor m) along the last axis; 0 where constant."""
    dev = x - x.mean(axis=-1, keepdims=True)
    m2 = (dev**2).mean(axis=-1)
    m3 = (dev**3).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = m3 / m2**1.5
    return np.where(m2 > 0, g, 0.0)


def _hall_inverse(t: np.ndarray, g: np.ndarray, m: int) -> np.ndarray:
    """S with sqrt(m) (S + g S^2/3 + g^2 S^3/27 + g/(6m)) = t; the cubic is (1 + gS/3)^3 - 1 over g,
    monotone in S, so S = 3/g (cbrt(1 + g a) - 1) with a = t/sqrt(m) - g/(6m)."""
    a = t / math.sqrt(m) - g / (6.0 * m)
    small = np.abs(g) < 1e-8
    with np.errstate(divide="ignore", invalid="ignore"):
        s = 3.0 / np.where(small, 1.0, g) * (np.cbrt(1.0 + g * a) - 1.0)
    return np.where(small, a, s)


def _hall_statistic(s: np.ndarray, g: np.ndarray, m: int) -> np.ndarray:
    return math.sqrt(m) * (s + g * s**2 / 3.0 + g**2 * s**3 / 27.0 + g / (6.0 * m))


def seed_inference(values: np.ndarray, pseudo: np.ndarray, extra_se: np.ndarray | None, level: float,
                   zero_tol: float = 0.0, skew_correction: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Interval ``(n, 2)`` at ``level`` and one-sided p-values ``(n,)`` of ``H0: value <= 0`` from
    per-seed pseudo-values ``(n, m)``, centred on ``values``.

    ``skew_correction=False``: Student t, ``value +- t_{m-1} se``. ``True`` (default): Hall's
    (1992) cubic transformation of the studentized mean, which removes the first-order effect of
    skewed seed noise: with ``S = (value - mu) / sd`` and ``g`` the sample skewness,
    ``T = sqrt(m) (S + g S^2/3 + g^2 S^3/27 + g/(6m))`` is compared with ``t_{m-1}``; the cubic is
    monotone, so the interval is ``{mu : |T| <= t_q}`` and the test rejects exactly when the
    interval's lower end is above 0 (two-sided level 1 - 2 alpha). For symmetric noise it is the t
    interval to first order. ``extra_se``: an independent Gaussian error (the estimator's own
    sampling error) added in variance, which also dilutes the skewness.
    """
    values = np.asarray(values, dtype=float)
    pseudo = np.asarray(pseudo, dtype=float)
    m = pseudo.shape[-1]
    sd = pseudo.std(axis=-1, ddof=1) if m > 1 else np.full(values.shape, np.nan)
    g = _skewness(pseudo) if skew_correction else np.zeros(values.shape)
    if extra_se is not None:
        total = np.sqrt(sd**2 + m * np.asarray(extra_se, dtype=float) ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(total > 0, g * (sd / np.where(total > 0, total, 1.0)) ** 3, 0.0)
        sd = total
    se = sd / math.sqrt(m)
    values, se = _snap(values, se, zero_tol)
    df = m - 1
    q = float(stats.t.ppf(0.5 + level / 2.0, df)) if df > 0 else np.inf
    ok = se > 0
    safe_sd = np.where(ok, sd, 1.0)
    # mu = value - sd * S at T = -q (upper end) and T = +q (lower end)
    hi = values - safe_sd * _hall_inverse(np.full(values.shape, -q), g, m)
    lo = values - safe_sd * _hall_inverse(np.full(values.shape, q), g, m)
    ci = np.stack([np.where(ok, lo, values), np.where(ok, hi, values)], axis=-1)
    t0 = _hall_statistic(values / safe_sd, g, m)
    with np.errstate(invalid="ignore"):
        p = stats.t.sf(t0, df) if df > 0 else np.full(values.shape, np.nan)
    p = np.where(ok, p, np.where(values > 0, 0.0, 1.0))
    bad = ~(np.isfinite(values) & np.isfinite(se))
    ci[bad] = np.nan
    p = np.where(bad, np.nan, p)
    return ci, p


def seed_count_warning(n_seeds: int, rule: str = "t", bound: float | None = None) -> str | None:
    """The warning printed with every interval when the claims' guarantee does not hold at this seed
    count, or None. Under a rule with the distribution-free test (``rule`` both or distribution_free) and
    a bounded headline (``bound``), the guarantee is exact at any seed count: no warning, only the power
    note (:func:`power_note`)."""
    if n_seeds < 2:
        return (f"{n_seeds} seed: no interval or test is possible (the seed-to-seed spread is unknown); "
                f"use at least {MIN_SEEDS} seeds")
    if rule != "t" and bound is not None:
        return None
    if n_seeds >= MIN_SEEDS:
        return None
    return (f"only {n_seeds} seeds: below {MIN_SEEDS} seeds the intervals and p-values hold only if the per-seed "
            f"contributions are roughly symmetric; with skewed seed noise, simulated 95% intervals cover 91-93% and the "
            f"5% test has up to 9-13% false positives (docs/estimation.md); use at least {MIN_SEEDS} seeds")


def power_note(n_seeds: int, bound: float | None, alpha: float, players: int) -> str | None:
    """What the distribution-free test can confirm at this seed count: the smallest per-seed contribution
    that could be significant at all (every seed equal to it, the most significant of ``players`` after
    Holm), copyscope.estimate.shapley.bounded.min_detectable. None without a bound."""
    from .bounded import min_detectable

    if bound is None or n_seeds < 1:
        return None
    floor = min_detectable(n_seeds, bound, alpha / max(players, 1))
    return (f"with {n_seeds} seeds the distribution-free test can confirm a contribution only above {floor:.3g} "
            f"(per-seed contributions lie in [-{bound:g}, {bound:g}]); a contribution the t test alone finds "
            f"significant is marked (t) until more seeds confirm it (docs/estimation.md)")
