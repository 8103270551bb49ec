"""Metric suite: how close generated images are to reference works.

Pure functions (``ssim``, ``rgb_ssim``, ``cosine_similarity``, ``histogram_similarity``, ``dhash_similarity``,
``phash_similarity``, ``phash_soft_similarity``, ``frechet_distance``, ``kernel_inception_distance``) plus thin :class:`Metric` objects
that split the work into per-image ``features`` (cacheable) and a cheap ``similarity`` / ``distance``.
See docs/metrics.md for definitions, orientation, aggregation and fusion.
"""

from .base import Metric, Option, SetResult
from .combine import AGGREGATIONS, aggregate_references, fusion
from .hashes import dct_coefficients, dhash_similarity, hash_bits, phash_similarity, phash_soft_similarity
from .pixel import cosine_similarity, histogram_similarity
from .registry import DEFAULT_METRICS, METRIC_NAMES, build_metrics, list_metrics
from .setstats import frechet_distance, kernel_inception_distance, mmd2_unbiased, polynomial_kernel
from .ssim import rgb_ssim, ssim

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_METRICS",
    "METRIC_NAMES",
    "Metric",
    "Option",
    "SetResult",
    "aggregate_references",
    "build_metrics",
    "cosine_similarity",
    "dct_coefficients",
    "dhash_similarity",
    "frechet_distance",
    "fusion",
    "hash_bits",
    "histogram_similarity",
    "kernel_inception_distance",
    "list_metrics",
    "mmd2_unbiased",
    "phash_similarity",
    "phash_soft_similarity",
    "polynomial_kernel",
    "rgb_ssim",
    "ssim",
]
