"""Perceptual hashes (difference hash, DCT hash) from ImageHash, compared as 1 - Hamming / 64.

The float image is rounded to 8 bits and handed to ``imagehash`` itself, so the bits equal
``imagehash.dhash(pil)`` / ``imagehash.phash(pil)`` of the 8-bit image exactly.
"""

from __future__ import annotations

import imagehash
import numpy as np

from ._imageops import check_image, to_pil
from .base import PerImageMetric

HASH_BITS = 64

_HASHES = {
    "dhash": lambda pil: imagehash.dhash(pil, hash_size=8),
    "phash": lambda pil: imagehash.phash(pil, hash_size=8, highfreq_factor=4),
}


def hash_bits(img: np.ndarray, method: str = "dhash") -> np.ndarray:
    """The 64 hash bits of one image, as a 0/1 uint8 vector (row-major order of ImageHash.hash)."""
    h = _HASHES[method](to_pil(img))
    return np.asarray(h.hash, dtype=np.uint8).ravel()


def hamming_similarity_matrix(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """1 - Hamming distance / n_bits for all pairs of 0/1 rows."""
    agree = g @ r.T + (1.0 - g) @ (1.0 - r).T
    return agree / g.shape[1]


def hash_similarity(a: np.ndarray, b: np.ndarray, method: str = "dhash") -> float:
    """1 - Hamming(hash(a), hash(b)) / 64; 1 for identical images, ~0.5 for unrelated ones."""
    ha = hash_bits(check_image(a, "a"), method).astype(np.float64)[None]
    hb = hash_bits(check_image(b, "b"), method).astype(np.float64)[None]
    return float(hamming_similarity_matrix(ha, hb)[0, 0])


def dhash_similarity(a: np.ndarray, b: np.ndarray) -> float:
    return hash_similarity(a, b, "dhash")


def phash_similarity(a: np.ndarray, b: np.ndarray) -> float:
    return hash_similarity(a, b, "phash")


class HashMetric(PerImageMetric):
    OPTIONS = {}
    value_range = (0.0, 1.0)  # 1 - Hamming distance / bits

    def __init__(self, name: str, method: str, description: str = ""):
        self.method = method
        super().__init__(name, description)

    def feature_dim_hint(self) -> int:
        return HASH_BITS

    def _backbone_id(self):
        return {"hash": self.method, "imagehash": imagehash.__version__}

    def _features(self, images):
        return np.stack([hash_bits(im, self.method) for im in images]).astype(np.float32)

    def _similarity(self, g, r):
        return hamming_similarity_matrix(g, r)
