"""Per-seed contributions of a player whose true Shapley value is known, in many shapes of seed noise.

For checking the intervals and tests by simulation (``bench/bench_bounded.py`` prints the tables of
docs/estimation.md; ``tests/unit/estimate/test_statistics_bounded.py`` asserts the promises on a quick subset). Every
shape is a law on ``[-SPREAD, SPREAD]`` with mean exactly 0 (``SPREAD = 0.7``), so a shift by ``delta``
up to ``1 - SPREAD`` keeps every draw inside the bound ``[-1, 1]`` that the distribution-free test
is given. The shapes are the ones that break a t test: strongly skewed laws (a decoy that nudges most
images a little towards the work and wrecks a few is the left tail), rare spikes, two modes and two
points. Means are exact by construction (the lognormal shapes are truncated and then centred on
their truncated mean, computed in closed form).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["SPREAD", "SHAPES", "draw"]

SPREAD = 0.7


def _lognormal(rng, size, sign: float) -> np.ndarray:
    """``sign * (L - E[L])`` for ``L`` lognormal(0, 1) truncated at its 99.9 % quantile, scaled into the spread."""
    q = math.exp(stats.norm.ppf(0.999))
    # E[L | L <= q] for lognormal(0, 1): e^{1/2} Phi(ln q - 1) / Phi(ln q)
    mean = math.exp(0.5) * stats.norm.cdf(math.log(q) - 1.0) / stats.norm.cdf(math.log(q))
    u = rng.uniform(0.0, 0.999, size)
    x = np.exp(stats.norm.ppf(u)) - mean
    return sign * x * SPREAD / max(q - mean, mean)


def _spike(rng, size, sign: float) -> np.ndarray:
    """90 % at +1, 10 % at -9, plus uniform noise on [-0.5, 0.5] (mean 0), scaled into the spread."""
    x = np.where(rng.random(size) < 0.1, -9.0, 1.0) + rng.uniform(-0.5, 0.5, size)
    return sign * x * SPREAD / 9.5


def _bimodal(rng, size) -> np.ndarray:
    """Two modes at +-0.5 (uniform width 0.2 each), equal weights."""
    return np.where(rng.random(size) < 0.5, -0.5, 0.5) + rng.uniform(-0.2, 0.2, size)


def _two_point(rng, size) -> np.ndarray:
    """-SPREAD with probability 0.1, +SPREAD / 9 otherwise: the law the bounded-mean tests find hardest."""
    return np.where(rng.random(size) < 0.1, -SPREAD, SPREAD / 9.0)


def _gaussian(rng, size) -> np.ndarray:
    """N(0, 0.2^2) truncated symmetrically at +-SPREAD (still mean 0)."""
    lo, hi = stats.norm.cdf(-SPREAD / 0.2), stats.norm.cdf(SPREAD / 0.2)
    return 0.2 * stats.norm.ppf(rng.uniform(lo, hi, size))


SHAPES = {
    "gaussian": _gaussian,
    "lognormal, left tail": lambda rng, size: _lognormal(rng, size, -1.0),
    "lognormal, right tail": lambda rng, size: _lognormal(rng, size, 1.0),
    "rare spike, left tail": lambda rng, size: _spike(rng, size, 1.0),
    "rare spike, right tail": lambda rng, size: _spike(rng, size, -1.0),
    "bimodal": _bimodal,
    "two-point": _two_point,
}


def draw(shape: str, rng: np.random.Generator, size, delta: float = 0.0) -> np.ndarray:
    """Draws of ``shape`` shifted by ``delta`` (the true value), all inside ``[-1, 1]`` for ``|delta| <= 0.3``."""
    return SHAPES[shape](rng, size) + delta


def fixed_design(shape: str, seeds: int, audits: int, rng: np.random.Generator, delta: float = 0.0,
                 level: float = 0.95, alpha: float = 0.05) -> dict[str, dict[str, float]]:
    """One player's per-seed contributions, ``audits`` audits of ``seeds`` seeds each, true value ``delta``.
    Per method (``t``: the skew-corrected t of copyscope.estimate.shapley.inference; ``betting``: the distribution-free
    test of copyscope.estimate.shapley.bounded with bound 1; ``both``: a claim needs both): ``reject``, the share of
    one-sided tests of ``value <= 0`` below ``alpha``, and ``cover``, the share of ``level`` intervals
    holding ``delta``. The betting interval covers exactly when neither side's capital at ``delta`` crosses
    ``2 / (1 - level)`` (the reported interval is one grid step wider)."""
    from .bounded import betting_p_values, capital
    from .inference import seed_inference

    x = draw(shape, rng, (audits, seeds), delta)
    ci_t, p_t = seed_inference(x.mean(axis=1), x, None, level)
    y = (x + 1.0) / 2.0
    m = np.array([(delta + 1.0) / 2.0])
    crossed = 2.0 / (1.0 - level)
    cover_b = (capital(y, m, True)[:, 0, -1] < crossed) & (capital(y, m, False)[:, 0, -1] < crossed)
    cover_t = (ci_t[:, 0] <= delta) & (delta <= ci_t[:, 1])
    p_b = betting_p_values(x, 1.0)
    return {
        "t": {"reject": float((p_t < alpha).mean()), "cover": float(cover_t.mean())},
        "betting": {"reject": float((p_b < alpha).mean()), "cover": float(cover_b.mean())},
        "both": {"reject": float(((p_t < alpha) & (p_b < alpha)).mean()), "cover": float((cover_t | cover_b).mean())},
    }


def anytime_null(shape: str, max_seeds: int, audits: int, rng: np.random.Generator, players: int = 4,
                 alpha: float = 0.05) -> float:
    """Share of all-null audits (``players`` independent players of true value 0) in which the betting test
    calls some player significant at ANY seed count up to ``max_seeds`` (each at ``alpha / players``, as an
    adaptive audit's look does): an upper bound on the false-positive rate of every stopping rule, since an
    adaptive audit can only report the test at one of those seed counts."""
    from .bounded import capital

    y = (draw(shape, rng, (audits, players, max_seeds)) + 1.0) / 2.0
    best = capital(y, np.array([0.5]))[..., 0, -1]  # running max of the capital over all seed counts
    return float((best >= players / alpha).any(axis=1).mean())
