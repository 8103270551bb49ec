"""SSIM (grey) and RGB-SSIM (per channel), Gaussian-window SSIM of Wang et al. (2004).

Matches ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` (``channel_axis=-1`` for RGB): Gaussian window sigma 1.5
truncated at 3.5 sigma (11 taps), reflect padding, K1 = 0.01, K2 = 0.03, L = 1, mean of the SSIM map with a
5-pixel border cropped. Both images are first resized (bicubic interpolation) to size x size, default 256.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from copyscope.common.errors import CopyscopeError

from ._imageops import check_image, resize, resize_plane, to_grey
from .base import MAX_SIDE, Option, PerImageMetric

SIGMA = 1.5
TRUNCATE = 3.5
K1, K2, DATA_RANGE = 0.01, 0.03, 1.0
C1 = (K1 * DATA_RANGE) ** 2
C2 = (K2 * DATA_RANGE) ** 2
PAD = int(TRUNCATE * SIGMA + 0.5)  # filter radius (5): border excluded from the mean, as in skimage
WIN = 2 * PAD + 1


def _filt(a: np.ndarray) -> np.ndarray:
    """Gaussian filter over the last two axes (leading axes are a batch)."""
    sig = (0.0,) * (a.ndim - 2) + (SIGMA, SIGMA)
    return gaussian_filter(a, sigma=sig, truncate=TRUNCATE, mode="reflect")


def _ssim_one_to_many(x: np.ndarray, ys: np.ndarray, ux, vx, uys, vys) -> np.ndarray:
    """Mean SSIM of plane x (H, W) against each plane of ys (m, H, W); local stats precomputed."""
    vxy = _filt(x[None] * ys) - ux[None] * uys
    s = ((2 * ux * uys + C1) * (2 * vxy + C2)) / ((ux**2 + uys**2 + C1) * (vx + vys + C2))
    return s[:, PAD:-PAD, PAD:-PAD].mean(axis=(1, 2))


def _local_stats(planes: np.ndarray):
    u = _filt(planes)
    v = _filt(planes * planes) - u * u
    return u, v


def ssim_matrix(g: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Mean SSIM for all pairs; g (n, C, H, W), r (m, C, H, W) float64 -> (n, m), averaged over channels."""
    n, c = g.shape[:2]
    m = r.shape[0]
    ug, vg = _local_stats(g)
    ur, vr = _local_stats(r)
    out = np.zeros((n, m), dtype=np.float64)
    for ch in range(c):
        for i in range(n):
            out[i] += _ssim_one_to_many(g[i, ch], r[:, ch], ug[i, ch], vg[i, ch], ur[:, ch], vr[:, ch])
    return out / c


def ssim_planes(img: np.ndarray, size: int, grey: bool) -> np.ndarray:
    """The planes SSIM compares: (1, size, size) grey or (3, size, size) RGB, float32."""
    if grey:
        return np.clip(resize_plane(to_grey(img), (size, size)), 0.0, 1.0)[None]
    return np.moveaxis(resize(img, (size, size)), -1, 0)


def _pair_ssim(a: np.ndarray, b: np.ndarray, size: int, grey: bool) -> float:
    if size < WIN:
        raise CopyscopeError(f"ssim: size must be at least {WIN} (the Gaussian window), got {size}")
    pa = ssim_planes(check_image(a, "a"), size, grey)[None].astype(np.float64)
    pb = ssim_planes(check_image(b, "b"), size, grey)[None].astype(np.float64)
    return float(ssim_matrix(pa, pb)[0, 0])


def ssim(a: np.ndarray, b: np.ndarray, size: int = 256) -> float:
    """Grey (BT.709 luma) SSIM of a and b after resizing both to size x size. In [-1, 1], 1 = identical."""
    return _pair_ssim(a, b, size, grey=True)


def rgb_ssim(a: np.ndarray, b: np.ndarray, size: int = 256) -> float:
    """Mean over R, G, B of the per-channel SSIM after resizing both to size x size."""
    return _pair_ssim(a, b, size, grey=False)


class SSIMMetric(PerImageMetric):
    OPTIONS = {"size": Option(256, int, minimum=WIN, maximum=MAX_SIDE, help="side of the square resize before SSIM")}

    def __init__(self, name: str, grey: bool, description: str = "", **options):
        self.grey = grey
        super().__init__(name, description, **options)

    @property
    def channels(self) -> int:
        return 1 if self.grey else 3

    def feature_dim_hint(self) -> int:
        return self.channels * self.options["size"] ** 2

    def _features(self, images):
        s = self.options["size"]
        return np.stack([ssim_planes(im, s, self.grey).ravel() for im in images])

    def _similarity(self, g, r):
        s = self.options["size"]
        shape = (self.channels, s, s)
        if g.shape[1] != self.channels * s * s:
            raise CopyscopeError(f"metric '{self.name}': features do not match size={s}")
        return ssim_matrix(g.reshape(-1, *shape), r.reshape(-1, *shape))
