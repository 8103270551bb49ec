"""Vectorised synthetic audits with seed noise, for checking intervals and tests by simulation.

Each builder draws ``n_games`` independent audits of a 4-player game at once and returns the worth
columns the game stage would produce, ``(n_games, 2**n, 1 + R)`` (row = coalition bitmask: player
``i`` is bit ``i``; column 0 = all seeds, columns ``1..R`` = seed resamples), and the true Shapley
values. :func:`calibration` runs the product's :class:`Estimate` on every audit and counts how
often the intervals cover the truth and how often a true-zero player is called significant.
``bench/bench_intervals.py`` prints the tables of docs/estimation.md from these; the tests in
``tests/test_statistics_*.py`` assert the promised rates.

Two kinds of metric, as in the audit (copyscope/game/evaluator.py):

* **per image** (:func:`per_image_audits`): seed ``s`` of coalition ``S`` scores
  ``f(S) + u_s + sum_{i in S} e_{s,i} + eps_{s,S}``: ``f`` a dividend game (known Shapley values),
  ``u_s`` a seed effect shared by every coalition (common random numbers), ``e_{s,i}`` a
  player-by-seed effect (Gaussian, or skewed: a centred, scaled exponential), ``eps`` coalition
  noise. The worth is the mean over seeds, so the truth is the Shapley value of ``f``.
* **set level** (:func:`kid_audits`): seed ``s`` of coalition ``S`` makes one image whose
  ``d``-dimensional features are ``mu_S + z_s + sum_{i in S} e_{s,i} + eps_{s,S}``; the worth is
  minus the unbiased MMD^2 (KID's cubic kernel) to 4 fixed reference feature vectors. The truth
  is minus the population MMD^2, in closed form for Gaussian features (:func:`kid_population_worth`).
"""

from __future__ import annotations

import math

import numpy as np

from copyscope.estimate.shapley.inference import default_zero_tol, jackknife_pseudo_values, seed_inference
from copyscope.estimate.shapley.result import Estimate
from copyscope.estimate.shapley.synthetic import dividend_shapley

__all__ = [
    "shapley_matrix",
    "seed_columns",
    "per_image_audits",
    "kid_audits",
    "kid_population_worth",
    "calibration",
    "DIVIDENDS",
]

#: 4 players: strong, moderate (with a pair interaction), negative, and a null player (value 0).
DIVIDENDS = {(0,): 1.0, (1,): 0.4, (2,): -0.3, (1, 2): 0.5, (0, 1, 2): -0.3}
N_PLAYERS = 4


def _coalitions(n: int) -> np.ndarray:
    masks = np.arange(2**n, dtype=np.int64)
    return ((masks[:, None] >> np.arange(n)) & 1).astype(bool)


def shapley_matrix(n: int) -> np.ndarray:
    """(2**n, n) ``W`` with ``phi = v @ W`` for worths ``v`` indexed by coalition bitmask."""
    z = _coalitions(n)
    size = z.sum(axis=1)
    w = np.zeros((2**n, n))
    for i in range(n):
        without = ~z[:, i]
        s = size[without]
        weight = np.array([math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in s])
        idx = np.flatnonzero(without)
        w[idx | (1 << i), i] += weight
        w[idx, i] -= weight
    return w


def seed_columns(per_seed: np.ndarray, resampling: str = "jackknife", n_boot: int = 200,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Worth columns of per-seed worths ``(..., m)`` (a per-image metric: the worth is the mean
    over seeds), as copyscope/game/evaluator.py builds them: the mean over all seeds, then the mean without
    each seed (jackknife) or over each bootstrap resample, drawn once for every coalition."""
    m = per_seed.shape[-1]
    full = per_seed.mean(axis=-1, keepdims=True)
    if resampling == "jackknife":
        loo = (per_seed.sum(axis=-1, keepdims=True) - per_seed) / (m - 1)
        return np.concatenate([full, loo], axis=-1)
    idx = (rng or np.random.default_rng(0)).integers(0, m, size=(n_boot, m))
    return np.concatenate([full, per_seed[..., idx].mean(axis=-1)], axis=-1)


def per_image_audits(n_games: int, n_seeds: int, rng: np.random.Generator, skew: float = 0.0,
                     noise: tuple[float, float, float] = (0.5, 0.3, 0.05)) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed worths ``(n_games, 16, n_seeds)`` and the true Shapley values ``(4,)``.

    ``skew`` = 0: Gaussian player-by-seed effects; +1 / -1: centred exponential ones (skewness
    +2 / -2: rare large increases / decreases, e.g. a LoRA that copies on a few seeds only)."""
    n = N_PLAYERS
    z = _coalitions(n).astype(float)
    f = np.zeros(2**n)
    for t, d in DIVIDENDS.items():
        f += d * z[:, list(t)].all(axis=1)
    u = rng.normal(scale=noise[0], size=(n_games, 1, n_seeds))
    if skew:
        e = np.sign(skew) * (rng.exponential(size=(n_games, n_seeds, n)) - 1.0) * noise[1]
    else:
        e = rng.normal(scale=noise[1], size=(n_games, n_seeds, n))
    eps = rng.normal(scale=noise[2], size=(n_games, 2**n, n_seeds))
    per_seed = f[None, :, None] + u + np.einsum("cn,gsn->gcs", z, e) + eps
    return per_seed, dividend_shapley(n, DIVIDENDS)


# ------------------------------------------------------------------------------ set level (KID)
KID_DIM = 8
KID_SIGMA = {"seed": 0.6, "players": (0.5, 0.3, 0.4, 0.0), "image": 0.4}


def _kid_setup() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed reference features (4, d), player shifts (4, d) and per-player seed-noise scales."""
    rng = np.random.default_rng(12345)
    d = KID_DIM
    ref = 1.0 + 0.5 * rng.normal(size=(4, d))
    target = ref.mean(axis=0)
    shift = np.stack([0.6 * target, 0.3 * target + 0.3 * rng.normal(size=d), -0.4 * target, np.zeros(d)])
    return ref, shift, np.asarray(KID_SIGMA["players"], dtype=float)


def _poly(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (np.einsum("...id,...jd->...ij", x, y) / x.shape[-1] + 1.0) ** 3


def kid_population_worth(mu: np.ndarray, var: float, ref: np.ndarray) -> float:
    """Minus the population MMD^2 (cubic kernel (x.y/d + 1)^3) between N(mu, var I) features and
    the fixed reference rows (their term as the unbiased within-reference mean).

    With t = x.y/d + 1 Gaussian given y, E t^3 = a^3 + 3 a b^2; averaging over y ~ N(mu, var I)
    gives E k(x, x') = A^3 + 3AB^2 + 3 var/d^2 (A(|mu|^2 + d var) + 2 B sqrt(var) |mu|) with
    A = 1 + |mu|^2/d, B = sqrt(var) |mu| / d."""
    d = mu.shape[0]
    s = math.sqrt(var)
    mu2 = float(mu @ mu)
    big_a, big_b = 1.0 + mu2 / d, s * math.sqrt(mu2) / d
    kxx = big_a**3 + 3 * big_a * big_b**2 + 3 * var / d**2 * (big_a * (mu2 + d * var) + 2 * big_b * s * math.sqrt(mu2))
    a = ref @ mu / d + 1.0
    b2 = var * (ref * ref).sum(axis=1) / d**2
    kxr = float(np.mean(a**3 + 3 * a * b2))
    kyy = _poly(ref, ref)
    r = ref.shape[0]
    syy = (kyy.sum() - np.trace(kyy)) / (r * (r - 1))
    return -(kxx + syy - 2 * kxr)


def kid_audits(n_games: int, n_seeds: int, rng: np.random.Generator, resampling: str = "jackknife",
               n_boot: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Worth columns of minus the unbiased MMD^2 (one image per seed and coalition) and the true
    Shapley values of minus the population MMD^2. Jackknife: ``(n_games, 16, 1 + n_seeds)``, each
    column without one seed. Bootstrap: ``(n_games, 16, 1 + n_boot)``, the seeds resampled with
    replacement as the older audits did (a repeated image then forms pairs with itself inside the
    U-statistic, which is why those replicates sat above the estimate)."""
    n, d, m = N_PLAYERS, KID_DIM, n_seeds
    ref, shift, sig = _kid_setup()
    z = _coalitions(n).astype(float)
    zs = rng.normal(scale=KID_SIGMA["seed"], size=(n_games, 1, m, d))
    e = rng.normal(size=(n_games, m, n, d)) * sig[None, None, :, None]
    eps = rng.normal(scale=KID_SIGMA["image"], size=(n_games, 2**n, m, d))
    x = (z @ shift)[None, :, None, :] + zs + np.einsum("cn,gsnd->gcsd", z, e) + eps  # (G, 16, m, d)
    kxx = _poly(x, x)
    kxr = _poly(x, np.broadcast_to(ref, (n_games, 2**n) + ref.shape))
    kyy = _poly(ref, ref)
    syy = (kyy.sum() - np.trace(kyy)) / (4 * 3)
    off = kxx.sum(axis=(-1, -2)) - np.einsum("...ii->...", kxx)  # sum over i != j
    rowoff = kxx.sum(axis=-1) - np.einsum("...ii->...i", kxx)  # (G, 16, m)
    full = -(off / (m * (m - 1)) + syy - 2 * kxr.mean(axis=(-1, -2)))
    if resampling == "bootstrap":
        cnt = np.stack([np.bincount(i, minlength=m) for i in rng.integers(0, m, size=(n_boot, m))]).astype(float)
        diag = np.einsum("...ii->...i", kxx)  # (G, 16, m)
        pairs = np.einsum("bi,gcij,bj->gcb", cnt, kxx, cnt) - np.einsum("bi,gci->gcb", cnt, diag)
        boot_xr = np.einsum("bi,gci->gcb", cnt, kxr.mean(axis=-1)) / m
        boot = -(pairs / (m * (m - 1)) + syy - 2 * boot_xr)
        cols = np.concatenate([full[..., None], boot], axis=-1)
    loo_xx = (off[..., None] - 2 * rowoff) / ((m - 1) * (m - 2))
    loo_xr = (kxr.sum(axis=(-1, -2))[..., None] - kxr.sum(axis=-1)) / ((m - 1) * ref.shape[0])
    loo = -(loo_xx + syy - 2 * loo_xr)
    worth = np.array([kid_population_worth(z[c] @ shift, KID_SIGMA["seed"] ** 2 + float(z[c] @ sig**2)
                                           + KID_SIGMA["image"] ** 2, ref) for c in range(2**n)])
    if resampling != "bootstrap":
        cols = np.concatenate([full[..., None], loo], axis=-1)
    return cols, worth @ shapley_matrix(n)


# ------------------------------------------------------------------------------ calibration
def calibration(columns: np.ndarray, truth: np.ndarray, resampling: str = "jackknife",
                level: float = 0.95, alpha: float = 0.05, skew_correction: bool = True) -> dict[str, np.ndarray]:
    """Intervals and tests on each audit's worth columns ``(G, 2**n, 1 + R)`` (exact Shapley).

    Jackknife columns go through :func:`seed_inference` for all audits at once (what
    :class:`Estimate` calls; ``tests/unit/estimate/test_statistics_intervals.py`` checks they agree), bootstrap
    columns through :class:`Estimate` one audit at a time. Returns per player: ``coverage`` (share
    of audits whose ``level`` interval holds the true value), ``reject`` (share with a one-sided
    p-value below ``alpha``, uncorrected), ``width`` (mean interval width) and ``bias`` (mean of
    value - truth)."""
    n = truth.shape[0]
    phi = np.einsum("gcr,cn->gnr", columns, shapley_matrix(n))  # (G, n, 1 + R)
    values = phi[:, :, 0]
    if resampling == "jackknife":
        pseudo = jackknife_pseudo_values(values, phi[:, :, 1:])
        tol = default_zero_tol(columns)
        ci, p = seed_inference(values.reshape(-1), pseudo.reshape(-1, pseudo.shape[-1]), None, level, tol,
                               skew_correction)
        ci, p = ci.reshape(values.shape + (2,)), p.reshape(values.shape)
    else:
        names = [f"p{i}" for i in range(n)]
        ests = [Estimate(names, phi[g, :, 0], replicates=phi[g, :, 1:], resampling=resampling) for g in range(len(phi))]
        ci = np.stack([e.ci(level) for e in ests])
        p = np.stack([e.p_values() for e in ests])
    return {
        "coverage": ((ci[..., 0] <= truth) & (truth <= ci[..., 1])).mean(axis=0),
        "reject": (p < alpha).mean(axis=0),
        "width": (ci[..., 1] - ci[..., 0]).mean(axis=0),
        "bias": (values - truth).mean(axis=0),
    }
