"""Image helpers shared by the metrics: validation, resizing, grey conversion, PIL round trip.

Images are ``numpy.ndarray`` float (H, W, 3) RGB in [0, 1]. Resizing always interpolates (PIL bicubic
on float32 planes, which low-pass filters when it shrinks); it never reshapes (the original CopyScope
passed the reference through ``np.resize``, which scrambles pixels when sizes differ).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from copyscope.common.errors import CopyscopeError

# Rec. ITU-R BT.709 luma weights, the ones skimage.color.rgb2gray uses.
LUMA = np.array([0.2125, 0.7154, 0.0721], dtype=np.float64)

_RANGE_TOL = 1e-4


def check_image(img: object, what: str = "image") -> np.ndarray:
    """Validate one image and return it as a float32 (H, W, 3) array."""
    if not isinstance(img, np.ndarray):
        raise CopyscopeError(f"{what}: expected a numpy array, got {type(img).__name__}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise CopyscopeError(f"{what}: expected shape (H, W, 3) RGB, got {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise CopyscopeError(f"{what}: empty image of shape {img.shape}")
    if not np.issubdtype(img.dtype, np.floating):
        raise CopyscopeError(
            f"{what}: expected float values in [0, 1], got dtype {img.dtype} (divide uint8 images by 255)"
        )
    if not np.isfinite(img).all():
        raise CopyscopeError(f"{what}: contains NaN or infinite values")
    lo, hi = float(img.min()), float(img.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise CopyscopeError(f"{what}: values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def check_images(images: Sequence[np.ndarray], what: str = "images") -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise CopyscopeError(f"{what}: expected a sequence of images, got a single (H, W, 3) array")
    return [check_image(img, f"{what}[{i}]") for i, img in enumerate(images)]


def resize_plane(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one float (H, W) plane to ``size`` = (height, width) with PIL bicubic interpolation."""
    h, w = size
    if plane.shape == (h, w):
        return plane.astype(np.float32, copy=True)
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    out = im.resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.float32)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) float image to ``size`` = (height, width); result clipped to [0, 1].

    The bicubic kernel can overshoot at sharp edges; clipping keeps the [0, 1] contract.
    """
    if img.shape[:2] == tuple(size):
        return img.astype(np.float32, copy=True)
    planes = [resize_plane(img[..., c], size) for c in range(img.shape[2])]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)


def to_grey(img: np.ndarray) -> np.ndarray:
    """BT.709 luma (same weights as ``skimage.color.rgb2gray``), float32 (H, W)."""
    return (img.astype(np.float64) @ LUMA).astype(np.float32)


def to_pil(img: np.ndarray) -> Image.Image:
    """float [0, 1] RGB -> 8-bit PIL RGB image (round to nearest).

    Exact inverse of ``np.asarray(pil, dtype=np.float32) / 255`` for 8-bit images, so hashes computed on the
    result equal the hashes of the original PIL image bit for bit.
    """
    arr = np.clip(np.rint(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


def from_pil(pil: Image.Image) -> np.ndarray:
    """PIL image -> float32 (H, W, 3) RGB in [0, 1]."""
    return np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0
