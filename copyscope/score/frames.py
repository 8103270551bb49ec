"""Videos as images: a video family's generation (``Family.video``: Wan) is stored as ONE cache entry, a film strip
(its F frames side by side, H x (F*W) x 3), so the cache, the image keys, the game and the report treat a video as
one image. The scorer splits a strip back into its frames (the frame width is the audit's generation width), scores
every frame against the references, and aggregates each reference column over the frames with
:func:`aggregate_frames`: the mean of the top k = ceil(F / 4) frames (docs/metrics.md "Videos" has the measurements
that chose it: the plain mean dilutes a copy in a few frames, the max follows one frame's coincidence).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

FRAME_AGGREGATE = "top_quarter_mean"  # the rule's name, part of the stored rows' identity for video audits


def to_strip(frames) -> np.ndarray:
    """(F, H, W, 3) frames -> one H x (F*W) x 3 film strip (float32)."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4:
        raise ValueError(f"expected (frames, height, width, channels), got shape {frames.shape}")
    return np.concatenate(list(frames), axis=1)


def split_strip(strip: np.ndarray, frame_width: int) -> list[np.ndarray]:
    """A film strip -> its frames, each ``frame_width`` wide (an image as wide as one frame is one frame)."""
    w = strip.shape[1]
    if frame_width <= 0 or w % frame_width:
        raise ValueError(f"a film strip {w} px wide is not a whole number of {frame_width}-px frames")
    return [strip[:, i * frame_width:(i + 1) * frame_width] for i in range(w // frame_width)]


def top_k(n_frames: int) -> int:
    """How many of a video's frames its score averages: a quarter, rounded up (1 for a single frame)."""
    return max(1, math.ceil(n_frames / 4))


def aggregate_frames(rows: np.ndarray, how: str = FRAME_AGGREGATE) -> np.ndarray:
    """(F, R) per-frame similarity rows of one video -> its (R,) row: per reference column, the mean of the top
    ceil(F/4) frames (``how``: "top_quarter_mean"; "max" and "mean" are the alternatives the measurements compare)."""
    rows = np.asarray(rows, dtype=np.float64)
    if how == "max":
        return rows.max(axis=0)
    if how == "mean":
        return rows.mean(axis=0)
    if how != FRAME_AGGREGATE:
        raise ValueError(f"unknown frame aggregate {how!r}")
    k = top_k(rows.shape[0])
    return np.sort(rows, axis=0)[-k:].mean(axis=0)


def video_similarity_rows(metric, images: Sequence[np.ndarray], others: np.ndarray, frame_width: int | None,
                          how: str = FRAME_AGGREGATE) -> np.ndarray:
    """(n, R) similarity rows of generated images to ``others`` (feature rows of references or background
    images). ``frame_width`` None: each image is one image (``metric.similarity`` of its features); else each
    image is a strip whose frames are scored one by one and aggregated (:func:`aggregate_frames`)."""
    if frame_width is None:
        return np.asarray(metric.similarity(np.asarray(metric.features(list(images))), others), dtype=np.float64)
    frames = [split_strip(img, frame_width) for img in images]
    flat = [f for fs in frames for f in fs]
    sims = np.asarray(metric.similarity(np.asarray(metric.features(flat)), others), dtype=np.float64)
    out, start = [], 0
    for fs in frames:
        out.append(aggregate_frames(sims[start:start + len(fs)], how))
        start += len(fs)
    return np.stack(out)


def video_frame_width(zoo) -> int | None:
    """The frame width of the zoo's film strips when a base is of a video family (the generation width), else
    None. Image families' images are one frame wide, so a zoo that mixes families scores each image correctly."""
    from ..families import base_family

    if any(base_family(zoo, i).video for i in range(len(zoo.spec.bases))):
        return int(zoo.spec.generation.size[1])
    return None
