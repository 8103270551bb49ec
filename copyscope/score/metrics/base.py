"""The metric interface: one :class:`Metric` object per configured metric.

Two kinds of metric:

* ``per_image``: ``similarity(gen_feats, ref_feats)`` returns an (n_gen, n_ref) matrix of pair scores;
  every per-image metric here is ``higher_is_closer``.
* ``set``: ``distance(gen_feats, ref_feats)`` compares the two sets as distributions and returns a
  :class:`SetResult`; every set metric here is ``lower_is_closer`` (the game uses worth = -distance).

Work is split in two so the scoring stage can cache per image: ``features(images)`` (deterministic, one
row per image, independent of the other images) and the cheap pairwise / set comparison of feature rows.
"""

from __future__ import annotations

import math

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from copyscope.common.errors import CopyscopeError

from ._imageops import check_images

Kind = Literal["per_image", "set"]
Orientation = Literal["higher_is_closer", "lower_is_closer"]


@dataclass(frozen=True)
class SetResult:
    """Result of a set-level metric (a distance between the generated and the reference sets).

    ``warning`` is set when the sample is too small for the statistic to mean much (for the Fréchet distance:
    fewer images than feature dimensions + 1, so a covariance is rank-deficient). ``std`` is the spread over
    KID subsets (None for Fréchet distances).
    """

    value: float
    n_gen: int
    n_ref: int
    feature_dim: int
    warning: str | None = None
    std: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "n_gen": self.n_gen,
            "n_ref": self.n_ref,
            "feature_dim": self.feature_dim,
            "warning": self.warning,
            "std": self.std,
        }


MAX_OPTION = 2**63 - 1  # any numeric option: seeds included
MAX_SIDE = 8192  # resize sides, as generation.resolution (copyscope.config.generation)
MAX_BATCH = 4096  # images per forward pass, as generation.batch_size


@dataclass(frozen=True)
class Option:
    """One user-settable option of a metric (an entry of a ``metrics:`` dict in the zoo file)."""

    default: Any
    type: type = int
    minimum: float | None = None
    maximum: float | None = None  # what one machine can hold or finish (a side of 10**6 pixels is a hang)
    choices: tuple[Any, ...] | None = None
    affects_output: bool = True  # False for e.g. batch_size: not part of config_id()
    help: str = ""

    def validate(self, metric: str, key: str, value: Any) -> Any:
        if self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            try:
                value = float(value) if ok else value
            except OverflowError:  # an integer of 400 digits
                ok = False
            ok = ok and math.isfinite(value)
        else:
            ok = isinstance(value, self.type)
        if not ok:
            raise CopyscopeError(
                f"metric '{metric}': option '{key}' expects {self.type.__name__}, got {value!r}"
            )
        if self.choices is not None and value not in self.choices:
            raise CopyscopeError(
                f"metric '{metric}': option '{key}' must be one of {', '.join(map(str, self.choices))}; "
                f"got {value!r}"
            )
        if self.minimum is not None and value < self.minimum:
            raise CopyscopeError(
                f"metric '{metric}': option '{key}' must be >= {self.minimum:g}, got {value!r}"
            )
        maximum = self.maximum if self.maximum is not None else MAX_OPTION
        if self.type in (int, float) and value > maximum:
            shown = repr(value) if len(repr(value)) <= 30 else repr(value)[:27] + "..."
            raise CopyscopeError(f"metric '{metric}': option '{key}' must be <= {maximum:g}, got {shown}")
        return value


def validate_options(metric: str, spec: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(spec))
    if unknown:
        valid = ", ".join(sorted(spec)) or "(none)"
        raise CopyscopeError(f"metric '{metric}': unknown option '{unknown[0]}'; valid options: {valid}")
    out = {k: o.default for k, o in spec.items()}
    for k, v in given.items():
        out[k] = spec[k].validate(metric, k, v)
    return out


class Metric:
    """Base class: one instance per configured metric (see module docstring).

    Subclasses set ``kind``, ``orientation``, ``description`` and ``OPTIONS`` and implement ``_features`` plus
    ``similarity`` (per_image) or ``distance`` (set). ``VERSION`` is bumped whenever an implementation change
    alters outputs, so cached scores keyed by :meth:`config_id` are invalidated.
    """

    name: str
    kind: Kind
    orientation: Orientation
    description: str = ""
    OPTIONS: ClassVar[dict[str, Option]] = {}
    VERSION: ClassVar[int] = 1
    #: The range every per-image similarity lies in, declared by the metric (None: unbounded, e.g. a
    #: distance between sets). It bounds each seed's Shapley contribution, which the distribution-free
    #: tests need (copyscope.estimate.shapley.bounded).
    value_range: ClassVar[tuple[float, float] | None] = None

    def __init__(self, name: str, description: str = "", **options: Any):
        self.name = name
        if description:
            self.description = description
        self.options = validate_options(name, self.OPTIONS, options)

    # -- identity ---------------------------------------------------------------------------------------
    def _backbone_id(self) -> dict[str, Any]:
        return {}

    def config_id(self) -> str:
        """Stable JSON string of everything that changes this metric's output (used in cache keys)."""
        payload = {
            "metric": self.name,
            "impl": f"{type(self).__name__}/v{self.VERSION}",
            "options": {k: v for k, v in sorted(self.options.items()) if self.OPTIONS[k].affects_output},
        }
        payload.update(self._backbone_id())
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    def availability(self) -> tuple[bool, str]:
        return True, ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.options}>"

    # -- computation ------------------------------------------------------------------------------------
    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """One row per image, (n, d); deterministic; a row depends only on its own image."""
        imgs = check_images(images)
        if not imgs:
            return np.zeros((0, self.feature_dim_hint()), dtype=np.float32)
        return self._features(imgs)

    def feature_dim_hint(self) -> int:
        return 0

    def _features(self, images: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def similarity(self, gen_feats: np.ndarray, ref_feats: np.ndarray) -> np.ndarray:
        raise CopyscopeError(f"metric '{self.name}' is a set metric: use distance(), not similarity()")

    def distance(self, gen_feats: np.ndarray, ref_feats: np.ndarray) -> SetResult:
        raise CopyscopeError(f"metric '{self.name}' is a per-image metric: use similarity(), not distance()")

    def score(self, gen_images: Sequence[np.ndarray], ref_images: Sequence[np.ndarray]):
        """Convenience: features of both sides, then ``similarity`` (per_image) or ``distance`` (set)."""
        g, r = self.features(gen_images), self.features(ref_images)
        return self.similarity(g, r) if self.kind == "per_image" else self.distance(g, r)


def check_feature_pair(name: str, gen_feats: np.ndarray, ref_feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(gen_feats)
    r = np.asarray(ref_feats)
    if g.ndim != 2 or r.ndim != 2:
        raise CopyscopeError(f"metric '{name}': features must be 2-D (n, d), got {g.shape} and {r.shape}")
    if g.shape[1] != r.shape[1]:
        raise CopyscopeError(
            f"metric '{name}': feature dimensions differ ({g.shape[1]} vs {r.shape[1]}); "
            "were they computed with the same metric options?"
        )
    return g.astype(np.float64, copy=False), r.astype(np.float64, copy=False)


class PerImageMetric(Metric):
    kind: Kind = "per_image"
    orientation: Orientation = "higher_is_closer"
    value_range: ClassVar[tuple[float, float] | None] = (-1.0, 1.0)  # a correlation or cosine; narrower ones say so

    def similarity(self, gen_feats: np.ndarray, ref_feats: np.ndarray) -> np.ndarray:
        g, r = check_feature_pair(self.name, gen_feats, ref_feats)
        if g.shape[0] == 0 or r.shape[0] == 0:
            return np.zeros((g.shape[0], r.shape[0]), dtype=np.float64)
        return self._similarity(g, r)

    def _similarity(self, g: np.ndarray, r: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SetMetric(Metric):
    kind: Kind = "set"
    orientation: Orientation = "lower_is_closer"

    def distance(self, gen_feats: np.ndarray, ref_feats: np.ndarray) -> SetResult:
        g, r = check_feature_pair(self.name, gen_feats, ref_feats)
        if g.shape[0] == 0 or r.shape[0] == 0:
            raise CopyscopeError(
                f"metric '{self.name}': needs at least one image on each side (n_gen={g.shape[0]}, "
                f"n_ref={r.shape[0]})"
            )
        return self._distance(g, r)

    def _distance(self, g: np.ndarray, r: np.ndarray) -> SetResult:
        raise NotImplementedError

