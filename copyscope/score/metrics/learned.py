"""Metrics built on a feature backbone: embedding cosines (per image) and Fréchet distance / KID (set)."""

from __future__ import annotations

import numpy as np

from .backbones import Backbone
from .base import Option, PerImageMetric, SetMetric, SetResult
from .setstats import frechet_distance, kernel_inception_distance


class _BackboneMixin:
    """A metric whose features are the rows of a (shared) backbone."""

    backbone: Backbone

    def __init__(self, name: str, backbone: Backbone, description: str = "", **options):
        self.backbone = backbone
        super().__init__(name, description, **options)

    def availability(self) -> tuple[bool, str]:
        return self.backbone.availability()

    def _backbone_id(self):
        return self.backbone.fingerprint()

    def feature_dim_hint(self) -> int:
        return self.backbone.dim

    def _features(self, images) -> np.ndarray:
        return self.backbone.embed(images)


class EmbeddingCosine(_BackboneMixin, PerImageMetric):
    """Cosine similarity of L2-normalised backbone embeddings (features are the unit vectors)."""

    OPTIONS = {}

    def _features(self, images):
        e = self.backbone.embed(images).astype(np.float64)
        n = np.linalg.norm(e, axis=1, keepdims=True)
        return (e / np.where(n > 0, n, 1.0)).astype(np.float32)

    def _similarity(self, g, r):
        return np.clip(g @ r.T, -1.0, 1.0)


def _rank_warning(n_gen: int, n_ref: int, d: int) -> str | None:
    if min(n_gen, n_ref) > d:
        return None
    msg = (
        f"small sample: n_gen={n_gen}, n_ref={n_ref} <= feature_dim={d}, so a covariance is rank-deficient; "
        "the Fréchet distance is biased upward at small n and only comparable between sets of equal size"
    )
    if min(n_gen, n_ref) == 1:
        msg += "; a single image's covariance is taken as zero"
    return msg


class FrechetMetric(_BackboneMixin, SetMetric):
    """Fréchet distance between Gaussians fitted to backbone features of the two sets."""

    OPTIONS = {}

    def _distance(self, g, r):
        n_gen, n_ref, d = g.shape[0], r.shape[0], g.shape[1]
        return SetResult(
            value=frechet_distance(g, r), n_gen=n_gen, n_ref=n_ref, feature_dim=d,
            warning=_rank_warning(n_gen, n_ref, d),
        )


class KIDMetric(_BackboneMixin, SetMetric):
    """Kernel Inception Distance (unbiased MMD^2, cubic polynomial kernel) on backbone features."""

    OPTIONS = {
        "subsets": Option(100, int, minimum=1, maximum=100_000, help="number of random subsets averaged"),
        "subset_size": Option(1000, int, minimum=2, maximum=1_000_000, help="upper bound of the subset size"),
        "seed": Option(0, int, minimum=0, help="seed of the subset sampling"),
    }

    def _distance(self, g, r):
        n_gen, n_ref, d = g.shape[0], r.shape[0], g.shape[1]
        o = self.options
        value, std, m = kernel_inception_distance(g, r, o["subsets"], o["subset_size"], o["seed"])
        warning = None
        if m < 2:
            warning = (
                f"KID is undefined with fewer than 2 images on a side (n_gen={n_gen}, n_ref={n_ref}): value is NaN"
            )
        elif min(n_gen, n_ref) <= d:
            warning = (
                f"small sample: n_gen={n_gen}, n_ref={n_ref} <= feature_dim={d}; KID stays unbiased but is noisy "
                f"(subset size {m}, std over subsets {std:.3g})"
            )
        return SetResult(value=value, n_gen=n_gen, n_ref=n_ref, feature_dim=d, warning=warning, std=std)
