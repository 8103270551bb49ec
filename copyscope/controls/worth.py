"""Specific worth: how much closer an image is to the protected work than to a background of generic images.

A metric such as SSIM rises for any change that sharpens or re-textures an image, copying or not. Scoring
every generated image against generic images as well as against the work separates the two: an image that
copies the work is close to the work and not to the background; a generic change moves both. The variants
(``worth:`` in the zoo file; docs/metrics.md "Controls") turn one image's similarity ``s`` to the work and its
similarities ``b`` (one per background image) into one number:

* ``raw``: ``s``, CopyScope's worth (no background);
* ``minus_mean``: ``s - mean(b)``;
* ``minus_hard``: ``s - mean`` of the ``HARD_K`` largest ``b`` (hard negatives, the score normalisation of
  the DISC2021 copy-detection challenge);
* ``percentile``: the fraction of background images less similar to the image than the work is (ties count
  half), in [0, 1];
* ``zscore``: ``(s - mean(b)) / sd(b)`` (unbounded: the distribution-free test does not apply).

Set metrics (KID, FD) compare sets, not images: every variant but ``raw`` takes their difference, distance to
the work minus distance to the background (as a worth: ``d(images, background) - d(images, work)``).
Everything here is pure numpy.
"""

from __future__ import annotations

import numpy as np

DEFAULT_WORTH = "raw"  # the zoo's `worth:` when it names none
WORTHS = ("raw", "minus_mean", "minus_hard", "percentile", "zscore")
HARD_K = 3  # hard negatives: the 3 most similar background images (fewer if the background is smaller)
SD_FLOOR = 1e-6  # a background whose similarities are all equal has no spread: the z-score divides by this


def specific_scores(s: np.ndarray, b: np.ndarray, worth: str) -> np.ndarray:
    """(n,) specific scores of ``n`` images: ``s`` (n,) their similarities to the work, ``b`` (n, K) to
    the K background images (same metric, same orientation: higher = closer)."""
    s = np.asarray(s, dtype=np.float64)
    if worth == "raw":
        return s
    b = np.asarray(b, dtype=np.float64)
    if b.ndim != 2 or b.shape[0] != s.shape[0] or b.shape[1] == 0:
        raise ValueError(f"background similarities of shape {b.shape} for {s.shape[0]} images")
    if worth == "minus_mean":
        return s - b.mean(axis=1)
    if worth == "minus_hard":
        k = min(HARD_K, b.shape[1])
        return s - np.sort(b, axis=1)[:, -k:].mean(axis=1)
    if worth == "percentile":
        below = (b < s[:, None]).sum(axis=1)
        ties = (b == s[:, None]).sum(axis=1)
        return (below + 0.5 * ties) / b.shape[1]
    if worth == "zscore":
        sd = b.std(axis=1, ddof=1) if b.shape[1] > 1 else np.zeros(len(s))
        return (s - b.mean(axis=1)) / np.maximum(sd, SD_FLOOR)
    raise ValueError(f"unknown worth {worth!r}; expected one of {', '.join(WORTHS)}")


def specific_range(value_range: tuple[float, float] | None, worth: str) -> tuple[float, float] | None:
    """The range of a specific score, from the metric's own range (None: unbounded or unknown). A difference
    of two values in [a, b] lies in [a - b, b - a]; a percentile in [0, 1]; a z-score is unbounded."""
    if worth == "raw":
        return value_range
    if worth == "percentile":
        return (0.0, 1.0)
    if worth == "zscore" or value_range is None:
        return None
    a, b = value_range
    return (a - b, b - a)


def specific_set_worth(d_work: float, d_background: float, worth: str) -> float:
    """A set metric's worth (higher = closer): ``-d_work`` raw, else ``d_background - d_work``."""
    return -d_work if worth == "raw" else d_background - d_work
