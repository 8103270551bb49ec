"""Perceptual hashes (difference hash, DCT hash, a 256-bit DCT hash) from ImageHash, compared as 1 - Hamming / bits;
and the DCT hash before it is binarised (``phash_soft``).

The float image is rounded to 8 bits and handed to ``imagehash`` itself, so the bits equal
``imagehash.dhash(pil)`` / ``imagehash.phash(pil)`` of the 8-bit image exactly.

``phash_soft`` keeps the 63 numbers that phash thresholds: the low 8x8 DCT coefficients of the same 32x32 grey
image, minus their median (phash's bit is whether this is positive), the DC term left out. Two images are
compared by the cosine of these vectors. Like the hash it ignores brightness (only the DC term moves) and contrast
(a positive scale), and a coefficient near the median no longer flips a whole bit from one image to the next. It
was built to find weak copiers with fewer seeds and measured not to (bench/soft_phash.md): it is no more powerful
and far less specific (decoy LoRAs gain similarity to the work), so it is sensitivity analysis, never a default.
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
    # 256 bits: the low 16x16 DCT block of a 64x64 grey image (bench/phash_256.md)
    "phash256": lambda pil: imagehash.phash(pil, hash_size=16, highfreq_factor=4),
}
_BITS = {"dhash": HASH_BITS, "phash": HASH_BITS, "phash256": 256}


def hash_bits(img: np.ndarray, method: str = "dhash") -> np.ndarray:
    """The hash bits of one image (64; 256 for phash256), as a 0/1 uint8 vector (row-major order of ImageHash.hash)."""
    h = _HASHES[method](to_pil(img))
    return np.asarray(h.hash, dtype=np.uint8).ravel()


def dct_coefficients(img: np.ndarray) -> np.ndarray:
    """The 63 median-centred low-frequency DCT coefficients phash thresholds (row-major, DC dropped), unit length.

    Computed as ``imagehash.phash`` computes them (8-bit grey, LANCZOS to 32x32, ``scipy.fftpack.dct`` on both
    axes, the top-left 8x8 block minus its median), so ``coefficients > 0`` are phash's bits but the DC one. A flat
    image has no structure: its vector is zero (cosine 0 against anything).
    """
    import scipy.fftpack
    from PIL import Image

    grey = to_pil(img).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low = dct[:8, :8]
    centred = (low - np.median(low)).ravel()[1:]
    norm = float(np.linalg.norm(centred))
    return centred / norm if norm > 1e-9 else np.zeros_like(centred)


def phash_soft_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the two images' :func:`dct_coefficients`: 1 for identical images, ~0 for unrelated ones."""
    return float(dct_coefficients(check_image(a, "a")) @ dct_coefficients(check_image(b, "b")))


def hamming_similarity_matrix(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """1 - Hamming distance / n_bits for all pairs of 0/1 rows."""
    agree = g @ r.T + (1.0 - g) @ (1.0 - r).T
    return agree / g.shape[1]


def hash_similarity(a: np.ndarray, b: np.ndarray, method: str = "dhash") -> float:
    """1 - Hamming(hash(a), hash(b)) / bits; 1 for identical images, ~0.5 for unrelated ones."""
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
        return _BITS[self.method]

    def _backbone_id(self):
        return {"hash": self.method, "imagehash": imagehash.__version__}

    def _features(self, images):
        return np.stack([hash_bits(im, self.method) for im in images]).astype(np.float32)

    def _similarity(self, g, r):
        return hamming_similarity_matrix(g, r)


class SoftHashMetric(PerImageMetric):
    """phash before binarising: the cosine of :func:`dct_coefficients` (value range -1..1)."""

    OPTIONS = {}

    def feature_dim_hint(self) -> int:
        return HASH_BITS - 1

    def _backbone_id(self):
        return {"dct": "phash-low-8x8-median-centred", "imagehash": imagehash.__version__}

    def _features(self, images):
        return np.stack([dct_coefficients(im) for im in images]).astype(np.float32)

    def _similarity(self, g, r):
        return np.clip(g.astype(np.float64) @ r.astype(np.float64).T, -1.0, 1.0)
