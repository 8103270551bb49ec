"""Casper et al.'s statistics, pure numpy/scipy functions: zero-shot identification accuracy and
the matching (rank-sum) test with its random-assignment control. The protocol is :mod:`.imitation`."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..common.errors import CopyscopeError


def chance_accuracy(n_labels: int) -> float:
    """Accuracy of a uniformly random guess among ``n_labels`` labels."""
    if n_labels < 1:
        raise CopyscopeError("chance accuracy needs at least one label")
    return 1.0 / n_labels


def accuracy_per_class(predicted: np.ndarray, true: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) share of the images of class c predicted as c (NaN for a class with no image)."""
    predicted = np.asarray(predicted, dtype=int)
    true = np.asarray(true, dtype=int)
    if predicted.shape != true.shape:
        raise CopyscopeError(f"{predicted.shape[0]} predictions for {true.shape[0]} images")
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mine = true == c
        if mine.any():
            out[c] = float((predicted[mine] == c).mean())
    return out


def zero_shot_accuracy(scores: np.ndarray, true: np.ndarray, n_classes: int | None = None) -> dict:
    """Zero-shot identification from an (n_images, n_labels) matrix of probabilities or similarities.

    ``true[i]`` is the label index image i was generated for (the classes are the first
    ``n_classes`` labels; later columns are default labels that are never correct). Returns the
    predicted label per image, per-class accuracy, the mean over classes (each class weighs the
    same), the mean probability/score of the correct label per class, and chance = 1 / n_labels.
    """
    s = np.asarray(scores, dtype=float)
    true = np.asarray(true, dtype=int)
    if s.ndim != 2 or s.shape[0] != true.shape[0]:
        raise CopyscopeError(f"zero-shot: scores must be (n_images, n_labels), got {s.shape} for {true.shape[0]} images")
    n_classes = int(true.max()) + 1 if n_classes is None else int(n_classes)
    if n_classes > s.shape[1]:
        raise CopyscopeError(f"zero-shot: {n_classes} classes but only {s.shape[1]} labels")
    pred = s.argmax(axis=1)
    per_class = accuracy_per_class(pred, true, n_classes)
    conf = np.full(n_classes, np.nan)
    for c in range(n_classes):
        if (true == c).any():
            conf[c] = float(s[true == c, c].mean())
    return {
        "predicted": pred,
        "correct": pred == true,
        "per_class": per_class,
        "mean": float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan"),
        "confidence": conf,
        "chance": chance_accuracy(s.shape[1]),
    }


def rank_sum_test(own: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """One-sided Mann-Whitney U test of H1: ``own`` tends to be larger than ``other``.

    Returns (U of ``own``, p). NaN p when either sample is empty. scipy picks the exact null
    distribution for small samples without ties and the normal approximation otherwise.
    """
    from scipy.stats import mannwhitneyu

    own = np.asarray(own, dtype=float).ravel()
    other = np.asarray(other, dtype=float).ravel()
    if own.size == 0 or other.size == 0:
        return float("nan"), float("nan")
    res = mannwhitneyu(own, other, alternative="greater")
    return float(res.statistic), float(res.pvalue)


def matching_test(
    sim: np.ndarray, owner: np.ndarray, artist_of_row: Sequence[int], alpha: float = 0.05
) -> dict:
    """Casper et al.'s matching test.

    ``sim[r, j]``: similarity of reference work r to imitation j; ``owner[j]``: the artist imitation
    j imitates; ``artist_of_row[r]``: the artist work r is by. For each row, the rank-sum test of the
    similarities to that artist's imitations against those to every other artist's imitations.
    p-values are Bonferroni-corrected over the rows tested (m = rows with a finite p):
    ``p_bonferroni = min(1, m p)``; ``significant = p_bonferroni < alpha``.
    """
    from ..estimate.shapley import adjust_p_values

    sim = np.asarray(sim, dtype=float)
    owner = np.asarray(owner, dtype=int)
    rows = [int(a) for a in artist_of_row]
    if sim.ndim != 2 or sim.shape != (len(rows), owner.shape[0]):
        raise CopyscopeError(f"matching: sim must be (works, imitations) = ({len(rows)}, {owner.shape[0]}), got {sim.shape}")
    U = np.full(len(rows), np.nan)
    p = np.full(len(rows), np.nan)
    for r, a in enumerate(rows):
        U[r], p[r] = rank_sum_test(sim[r, owner == a], sim[r, owner != a])
    p_adj = adjust_p_values(p, "bonferroni")
    sig = np.where(np.isfinite(p_adj), p_adj < alpha, False)
    return {
        "U": U,
        "p": p,
        "p_bonferroni": p_adj,
        "m": int(np.isfinite(p).sum()),
        "significant": sig,
        "n_significant": int(sig.sum()),
        "alpha": float(alpha),
    }


def matching_control(
    sim: np.ndarray, owner: np.ndarray, artist_of_row: Sequence[int], alpha: float = 0.05, n_perm: int = 100, seed: int = 0
) -> dict:
    """The matching test with works assigned to artists at random (uniform permutations of the
    work -> artist assignment, as in the paper's control). Returns the mean count and share of
    significant artists over ``n_perm`` permutations."""
    rows = np.asarray(list(artist_of_row), dtype=int)
    if len(rows) < 2:
        return {"n_permutations": 0, "mean_significant": None, "mean_share": None}
    rng = np.random.default_rng(seed)
    counts = []
    for _ in range(n_perm):
        res = matching_test(sim, owner, rng.permutation(rows), alpha)
        counts.append(res["n_significant"])
    mean = float(np.mean(counts))
    return {"n_permutations": int(n_perm), "seed": int(seed), "mean_significant": mean, "mean_share": mean / len(rows)}
