"""Cheap pixel metrics: mean-centred pixel cosine and colour-histogram similarity."""

from __future__ import annotations

import numpy as np

from ._imageops import check_image, resize
from .base import MAX_SIDE, Option, PerImageMetric

# ---------------------------------------------------------------------------------------------------------
# cosine


def cosine_features(img: np.ndarray, size: int = 64) -> np.ndarray:
    """Image resized to size x size RGB, flattened, minus its own mean, scaled to unit length.

    A constant image gives the zero vector.
    """
    v = resize(img, (size, size)).astype(np.float64).ravel()
    v = v - v.mean()
    n = np.linalg.norm(v)
    return (v / n if n > 0 else np.zeros_like(v)).astype(np.float32)


def cosine_matrix(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Cosine of unit rows; a pair of two zero rows (two constant images) counts as identical (1)."""
    sim = g @ r.T
    gz = ~np.any(g != 0, axis=1)
    rz = ~np.any(r != 0, axis=1)
    sim[np.outer(gz, rz)] = 1.0
    return np.clip(sim, -1.0, 1.0)


def cosine_similarity(a: np.ndarray, b: np.ndarray, size: int = 64) -> float:
    """Pearson correlation of the two images' pixel vectors at size x size RGB (mean-centred cosine).

    In [-1, 1]; 1 for identical images (and for images that differ by a brightness offset or a contrast
    gain), about 0 for unrelated images. Unlike the uncentred cosine of the original CopyScope (always 0.83-0.98
    for positive pixel values), it separates unrelated images.
    """
    fa = cosine_features(check_image(a, "a"), size)[None].astype(np.float64)
    fb = cosine_features(check_image(b, "b"), size)[None].astype(np.float64)
    return float(cosine_matrix(fa, fb)[0, 0])


class PixelCosine(PerImageMetric):
    description = (
        "Pearson correlation (mean-centred cosine) of the RGB pixel vectors at size x size (default 64x64)"
    )
    OPTIONS = {"size": Option(64, int, minimum=2, maximum=MAX_SIDE, help="side of the square resize")}

    def feature_dim_hint(self) -> int:
        return 3 * self.options["size"] ** 2

    def _features(self, images):
        return np.stack([cosine_features(im, self.options["size"]) for im in images])

    def _similarity(self, g, r):
        return cosine_matrix(g, r)


# ---------------------------------------------------------------------------------------------------------
# histogram


def histogram_features(img: np.ndarray, bins: int = 8) -> np.ndarray:
    """sqrt of the normalised joint RGB histogram with ``bins`` levels per channel (bins**3 cells).

    Computed at the image's own resolution (a normalised histogram does not depend on size).
    """
    q = np.minimum((img.astype(np.float64) * bins).astype(np.int64), bins - 1)
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    h = np.bincount(idx.ravel(), minlength=bins**3).astype(np.float64)
    return np.sqrt(h / h.sum()).astype(np.float32)


def histogram_similarity(a: np.ndarray, b: np.ndarray, bins: int = 8) -> float:
    """Bhattacharyya coefficient sum_k sqrt(p_k q_k) of the joint RGB histograms (= 1 - Hellinger^2).

    In [0, 1]: 1 for identical colour distributions, 0 for disjoint ones.
    """
    fa = histogram_features(check_image(a, "a"), bins).astype(np.float64)
    fb = histogram_features(check_image(b, "b"), bins).astype(np.float64)
    return float(np.clip(fa @ fb, 0.0, 1.0))


class Histogram(PerImageMetric):
    description = (
        "Bhattacharyya coefficient (1 - squared Hellinger distance) of joint RGB histograms, 8 bins per channel"
    )
    OPTIONS = {"bins": Option(8, int, minimum=2, maximum=256, help="levels per channel (bins**3 cells)")}
    value_range = (0.0, 1.0)

    def feature_dim_hint(self) -> int:
        return self.options["bins"] ** 3

    def _features(self, images):
        return np.stack([histogram_features(im, self.options["bins"]) for im in images])

    def _similarity(self, g, r):
        return np.clip(g @ r.T, 0.0, 1.0)
