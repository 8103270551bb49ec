"""Combining scores: over reference images of a work (aggregation) and over metrics (fusion)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from copyscope.common.errors import CopyscopeError

AGGREGATIONS = {
    "max_mean": "max over each work's reference images, then mean over works",
    "mean_mean": "mean over each work's reference images, then mean over works",
    "max_max": "max over each work's reference images, then max over works",
}


def aggregate_references(sim: np.ndarray, work_of_ref: Sequence[str], how: str = "max_mean") -> np.ndarray:
    """Collapse an (n_gen, n_ref) similarity matrix to one score per generated image, shape (n_gen,).

    ``work_of_ref[j]`` names the work that reference image j shows. ``max_mean`` (default): a generated image
    copies a work if it is close to *any* of that work's reference images, so take the max within a work;
    works count equally, so average over works (a work with many reference images does not dominate).
    ``mean_mean`` averages within works instead; ``max_max`` scores each generated image by its single
    closest work. Meant for similarities (higher = closer), which every per-image metric here is.
    """
    s = np.asarray(sim, dtype=np.float64)
    if s.ndim != 2:
        raise CopyscopeError(f"aggregate_references: expected an (n_gen, n_ref) matrix, got shape {s.shape}")
    works = list(work_of_ref)
    if len(works) != s.shape[1]:
        raise CopyscopeError(
            f"aggregate_references: {len(works)} work labels for {s.shape[1]} reference columns"
        )
    if not works:
        raise CopyscopeError("aggregate_references: no reference images")
    if how not in AGGREGATIONS:
        raise CopyscopeError(
            f"aggregate_references: unknown aggregation '{how}'; valid: {', '.join(AGGREGATIONS)}"
        )
    order = list(dict.fromkeys(works))
    labels = np.asarray([order.index(w) for w in works])
    within = np.stack(
        [s[:, labels == k].max(axis=1) if how.startswith("max") else s[:, labels == k].mean(axis=1)
         for k in range(len(order))],
        axis=1,
    )
    return within.max(axis=1) if how == "max_max" else within.mean(axis=1)


def fusion(worths: dict[str, np.ndarray]) -> np.ndarray:
    """Fuse several metrics' coalition worths into one: mean over metrics of per-metric z-scores.

    ``worths[name]`` has shape (k,) or (k, B): k coalitions, B bootstrap replicates as columns, already
    oriented higher = closer. For every column each metric is standardised across the k coalitions,
    z = (w - mean) / std (population std); the fused worth is the mean of the z-scores of the metrics used.
    A metric is skipped in a column where it is constant across coalitions (z undefined) or not finite
    there (e.g. a NaN KID). A column where every metric is skipped fuses to 0 for all coalitions (no metric
    tells the coalitions apart). (k,) inputs are broadcast across the B columns of (k, B) ones; the result is
    (k,) if every input is (k,), else (k, B). Each used metric has equal weight; the spread of the result
    across coalitions is 1 when the metrics agree and shrinks as they disagree.
    """
    if not worths:
        raise CopyscopeError("fusion: no metrics to fuse")
    arrays = {name: np.asarray(w, dtype=np.float64) for name, w in worths.items()}
    k = None
    cols = 1
    two_d = False
    for name, a in arrays.items():
        if a.ndim not in (1, 2) or a.shape[0] == 0:
            raise CopyscopeError(f"fusion: worths of '{name}' must have shape (k,) or (k, B); got {a.shape}")
        if k is None:
            k = a.shape[0]
        elif a.shape[0] != k:
            raise CopyscopeError(f"fusion: '{name}' has {a.shape[0]} coalitions, others {k}")
        if a.ndim == 2:
            if two_d and a.shape[1] != cols:
                raise CopyscopeError(f"fusion: '{name}' has {a.shape[1]} replicates, others {cols}")
            two_d, cols = True, a.shape[1]
    total = np.zeros((k, cols))
    count = np.zeros(cols)
    for a in arrays.values():
        a2 = np.broadcast_to(a[:, None] if a.ndim == 1 else a, (k, cols))
        finite = np.isfinite(a2).all(axis=0)
        safe = np.where(np.isfinite(a2), a2, 0.0)
        mean = safe.mean(axis=0)
        std = safe.std(axis=0)
        scale = np.maximum(np.abs(mean), np.abs(safe).max(axis=0))
        use = finite & (std > 1e-12 * np.maximum(scale, 1e-300)) & (std > 0)
        z = np.where(use, (safe - mean) / np.where(use, std, 1.0), 0.0)
        total += z
        count += use
    fused = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return fused if two_d else fused[:, 0]
