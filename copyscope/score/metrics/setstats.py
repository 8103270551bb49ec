"""Set-level statistics on feature rows: Fréchet distance and KID (pure numpy, float64).

Fréchet distance (Heusel et al. 2017) between Gaussians fitted to two feature sets::

    FD = |mu_g - mu_r|^2 + tr(S_g) + tr(S_r) - 2 tr((S_g S_r)^(1/2))

S is the unbiased sample covariance (divisor n - 1, as pytorch-fid); the covariance of a single sample is
defined as the zero matrix, so FD of n = 1 is the squared distance of the means plus the other side's trace.
tr((S_g S_r)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
S_g^(1/2) S_r S_g^(1/2) (same eigenvalues as S_g S_r), with tiny negative eigenvalues clipped to 0. This is
exact for rank-deficient covariances (no eps offset, no complex parts to discard).

With fewer samples than dimensions (a coalition's 8 images against 4 reference images in 1280-d features)
the same quantity comes from the samples directly: with A, B the centred sample matrices (n x d, m x d),
S_g = A^T A / (n - 1), S_r = B^T B / (m - 1), the non-zero eigenvalues of S_g S_r are those of
(A B^T)(A B^T)^T / ((n - 1)(m - 1)), so tr((S_g S_r)^(1/2)) = ||A B^T||_* / sqrt((n - 1)(m - 1)) (the sum of
the singular values of the n x m matrix A B^T) and tr(S) = ||A||_F^2 / (n - 1). Exact, and O(n m d) instead
of O(d^3): the audit computes a distance per bootstrap replicate of every coalition.

KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged over random
subsets of size m = min(n_gen, n_ref, subset_size) drawn without replacement.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (zeros for a single sample) of rows of ``feats`` (n, d)."""
    x = np.asarray(feats, dtype=np.float64)
    mu = x.mean(axis=0)
    if x.shape[0] < 2:
        return mu, np.zeros((x.shape[1], x.shape[1]))
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((s1 s2)^(1/2)) for symmetric PSD s1, s2 (possibly singular)."""
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def frechet_distance_from_stats(mu1, s1, mu2, s2) -> float:
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    val = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
    return float(max(val, 0.0))  # FD >= 0; clips round-off only


def _frechet_distance_from_samples(x: np.ndarray, y: np.ndarray) -> float:
    """The same distance through the n x m cross-product of centred samples (for n or m < d; module doc)."""
    a, b = x - x.mean(axis=0), y - y.mean(axis=0)
    ca, cb = max(x.shape[0] - 1, 0), max(y.shape[0] - 1, 0)  # a single sample has zero covariance
    tr_a = float((a * a).sum()) / ca if ca else 0.0
    tr_b = float((b * b).sum()) / cb if cb else 0.0
    cross = float(np.linalg.svd(a @ b.T, compute_uv=False).sum()) / np.sqrt(ca * cb) if ca and cb else 0.0
    diff = x.mean(axis=0) - y.mean(axis=0)
    return float(max(diff @ diff + tr_a + tr_b - 2.0 * cross, 0.0))


def frechet_distance(gen_feats: np.ndarray, ref_feats: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the two feature sets (rows = samples)."""
    x = np.asarray(gen_feats, dtype=np.float64)
    y = np.asarray(ref_feats, dtype=np.float64)
    if min(x.shape[0], y.shape[0]) < x.shape[1]:
        return _frechet_distance_from_samples(x, y)
    mu1, s1 = gaussian_stats(x)
    mu2, s2 = gaussian_stats(y)
    return frechet_distance_from_stats(mu1, s1, mu2, s2)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all row pairs; d = feature dimension."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m, n = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 estimate with the KID polynomial kernel; needs >= 2 rows on each side."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("the unbiased MMD^2 needs at least 2 samples on each side")
    return _mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


def kernel_inception_distance(
    gen_feats: np.ndarray,
    ref_feats: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float, int]:
    """KID of two feature sets: (mean, std over subsets, subset size m).

    m = min(n_gen, n_ref, subset_size). When m covers both sets entirely every subset would be the same, so
    the full-sample estimate is returned once (std 0). Returns (nan, nan, m) when m < 2 (undefined).
    Subsets come from ``numpy.random.default_rng(seed)``: the result is deterministic.
    """
    x = np.asarray(gen_feats, np.float64)
    y = np.asarray(ref_feats, np.float64)
    m = min(x.shape[0], y.shape[0], subset_size)
    if m < 2:
        return float("nan"), float("nan"), m
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    if m == x.shape[0] == y.shape[0]:
        return _mmd2_from_kernels(kxx, kyy, kxy), 0.0, m
    # All subsets at once (a random permutation per subset, first m kept): the audit calls this for
    # every bootstrap replicate of every coalition, so a Python loop over subsets would dominate it.
    rng = np.random.default_rng(seed)
    ii = rng.random((subsets, x.shape[0])).argsort(axis=1)[:, :m]
    jj = rng.random((subsets, y.shape[0])).argsort(axis=1)[:, :m]
    vals = np.empty(subsets)
    step = max(1, 4_000_000 // (m * m))  # bounds the (subsets, m, m) gathers to ~100 MB
    for s in range(0, subsets, step):
        i, j = ii[s : s + step], jj[s : s + step]
        a = kxx[i[:, :, None], i[:, None, :]]
        b = kyy[j[:, :, None], j[:, None, :]]
        c = kxy[i[:, :, None], j[:, None, :]]
        sxx = (a.sum(axis=(1, 2)) - np.einsum("sii->s", a)) / (m * (m - 1))
        syy = (b.sum(axis=(1, 2)) - np.einsum("sii->s", b)) / (m * (m - 1))
        vals[s : s + step] = sxx + syy - 2.0 * c.mean(axis=(1, 2))
    return float(vals.mean()), float(vals.std()), m
