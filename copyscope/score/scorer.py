"""Stage 4 — score: per-image similarities and features, stored per image in the cache.

Per-image metrics store, for every generated image, its row of similarities to every reference
image (so aggregation can change without re-scoring); set-level metrics store the image's feature
vector. Reference features are computed once per audit. Nothing here generates: adding a metric to
a finished audit only reads cached PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import UnidentifiedImageError

from ..generate.cache import ImageCache
from ..common.files import key_of
from ..config.zoo import Zoo, iter_reference_files
from ..common.errors import CopyscopeError
from ..common.inputs import check_image_file, image_sha256, load_image_rgb
from .frames import video_similarity_rows


@dataclass
class ReferenceSet:
    """The protected works: images grouped into named works."""

    files: list[Path]
    work_of: list[str]
    images: list[np.ndarray]
    sha256: list[str]

    @property
    def works(self) -> list[str]:
        return list(dict.fromkeys(self.work_of))

    @property
    def identity(self) -> str:
        return key_of({"refs": list(zip(self.work_of, self.sha256))})

    @classmethod
    def from_zoo(cls, zoo: Zoo) -> "ReferenceSet":
        files, work_of, images, hashes = [], [], [], []
        for i, (work, paths) in enumerate(iter_reference_files(zoo).items()):
            for path in paths:
                problem = check_image_file(path)  # type, header and pixel count first
                if problem is not None:
                    raise zoo.fail(f"reference file {path} is {problem}", "references", i, "paths")
                try:
                    img = load_image_rgb(path)
                except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                    reason = "not an image" if isinstance(exc, UnidentifiedImageError) else (
                        f"unreadable ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                    )
                    raise zoo.fail(f"reference file {path} is {reason}; expected an intact image file", "references", i, "paths") from None
                if min(img.shape[:2]) < 8:
                    raise zoo.fail(f"reference file {path} is too small ({img.shape[1]}x{img.shape[0]}); expected at least 8x8 pixels",
                                   "references", i, "paths")
                files.append(path)
                work_of.append(work)
                images.append(img)
                hashes.append(image_sha256(path))  # the file and its EXIF orientation
        return cls(files, work_of, images, hashes)


class Scorer:
    """Computes and caches per-image similarity rows (per-image metrics) and feature rows (set metrics)."""

    def __init__(self, metrics: Sequence, cache: ImageCache, refs: ReferenceSet, aggregate: str = "max_mean",
                 on_features: Callable[[int, int], None] | None = None, background=None, worth: str = "raw",
                 frame_width: int | None = None):
        self.metrics = {m.name: m for m in metrics}
        # a video family's audit (copyscope.score.frames.video_frame_width): every image is a film strip of frames
        # this wide, scored frame by frame and aggregated over its frames; None: every image is one image
        self.frame_width = frame_width
        self.cache = cache
        self.refs = refs
        self.aggregate = aggregate
        # the background of generic images (copyscope.controls): with a worth other than raw every score is made
        # specific against it; the positive controls and the report's background view read its rows in any case
        self.background = background
        self.worth = worth if background is not None else "raw"
        self._ref_feats: dict[str, np.ndarray] = {}
        self._bg_feats: dict[str, np.ndarray] = {}
        if on_features is not None:
            watch_feature_extraction(metrics, on_features)

    def _store_id(self, metric) -> str:
        # per-image rows depend on the references too; features depend on the metric alone
        return metric.config_id() + ("|refs:" + self.refs.identity if metric.kind == "per_image" else "") + self._frames_id()

    def _frames_id(self) -> str:
        from .frames import FRAME_AGGREGATE

        return "" if self.frame_width is None else f"|frames:{self.frame_width}:{FRAME_AGGREGATE}"

    def reference_features(self, metric) -> np.ndarray:
        if metric.name not in self._ref_feats:
            rows = []
            for sha, img in zip(self.refs.sha256, self.refs.images):
                row = self.cache.load_feature(metric.config_id() + "|reference", sha)
                if row is None:
                    row = np.asarray(metric.features([img]))[0]
                    self.cache.save_feature(metric.config_id() + "|reference", sha, row)
                rows.append(row)
            self._ref_feats[metric.name] = np.stack(rows)
        return self._ref_feats[metric.name]

    def rows(self, metric, image_keys: Sequence[str], batch: int = 16) -> np.ndarray:
        """Stored rows for images: similarity-to-each-reference rows, or feature rows."""
        store = self._store_id(metric)
        out: list[np.ndarray | None] = [self.cache.load_feature(store, k) for k in image_keys]
        todo = [i for i, r in enumerate(out) if r is None]
        for start in range(0, len(todo), batch):
            idx = todo[start : start + batch]
            images = [self.cache.load(image_keys[i]) for i in idx]
            if metric.kind == "per_image":
                values = video_similarity_rows(metric, images, self.reference_features(metric), self.frame_width)
            elif self.frame_width is not None:  # refused at validate (players.check_player_families)
                raise CopyscopeError(f"metric {metric.name} is a set metric, not defined for videos")
            else:
                values = np.asarray(metric.features(images))
            for i, row in zip(idx, values):
                self.cache.save_feature(store, image_keys[i], row)
                out[i] = row
        return np.stack(out) if out else np.zeros((0, 0))

    def per_image_scores(self, metric, image_keys: Sequence[str]) -> np.ndarray:
        """(n,) one score per generated image: its similarity aggregated over references and works, made
        specific against the background when the audit's worth is not raw."""
        from .metrics import aggregate_references

        sims = self.rows(metric, image_keys)
        return self.specific(metric, aggregate_references(sims, self.refs.work_of, self.aggregate), image_keys)

    def work_scores(self, metric, image_keys: Sequence[str], work: str) -> np.ndarray:
        """(n,) one score per image against one work's references alone (per-work attribution), specific
        as ``per_image_scores``."""
        sims = self.rows(metric, image_keys)
        return self.specific(metric, within_work_scores(sims, self.refs.work_of, [work], self.aggregate)[:, 0], image_keys)

    def specific(self, metric, scores: np.ndarray, image_keys: Sequence[str]) -> np.ndarray:
        """Per-image similarities -> the audit's worth variant (copyscope.controls.worth.specific_scores)."""
        from ..controls.worth import specific_scores

        if self.worth == "raw":
            return scores
        return specific_scores(scores, self.background_rows(metric, image_keys), self.worth)

    def background_features(self, metric) -> np.ndarray:
        """Feature rows of the background images (kept for the audit; cheap beside the generated images)."""
        if metric.name not in self._bg_feats:
            self._bg_feats[metric.name] = np.asarray(metric.features(list(self.background.images)))
        return self._bg_feats[metric.name]

    def background_rows(self, metric, image_keys: Sequence[str], batch: int = 16) -> np.ndarray:
        """(n, K) similarity of each generated image to each background image, stored per image in the
        feature cache like the reference rows."""
        store = metric.config_id() + "|background:" + self.background.identity + self._frames_id()
        out: list[np.ndarray | None] = [self.cache.load_feature(store, k) for k in image_keys]
        todo = [i for i, r in enumerate(out) if r is None]
        for start in range(0, len(todo), batch):
            idx = todo[start : start + batch]
            values = video_similarity_rows(metric, [self.cache.load(image_keys[i]) for i in idx],
                                           self.background_features(metric), self.frame_width)
            for i, row in zip(idx, values):
                self.cache.save_feature(store, image_keys[i], row)
                out[i] = row
        return np.stack(out) if out else np.zeros((0, len(self.background)))

    def set_worth(self, metric, feats: np.ndarray, ref: np.ndarray) -> tuple[object, float]:
        """A set metric's distance result against ``ref`` and the worth it gives (higher = closer): minus
        the distance, or with a background the distance to the background minus the distance to ``ref``."""
        from ..controls.worth import specific_set_worth

        res = metric.distance(feats, ref)
        if self.worth == "raw":
            return res, -res.value
        return res, specific_set_worth(res.value, metric.distance(feats, self.background_features(metric)).value, self.worth)


def within_rule(aggregate: str) -> str:
    """How the zoo's ``aggregate`` combines a work's reference images: "max" (max_mean, max_max) or
    "mean" (mean_mean)."""
    return "mean" if aggregate == "mean_mean" else "max"


def within_work_scores(sims: np.ndarray, work_of_ref: Sequence[str], works: Sequence[str], aggregate: str = "max_mean") -> np.ndarray:
    """(n_images, len(works)) similarity of each image to each work: an (n_images, n_refs) similarity
    matrix reduced over each work's reference columns as the audit reduces it
    (``metrics.aggregate_references`` on that work alone). ``aggregate`` is the zoo's setting
    (max_mean, mean_mean, max_max) or its within-work rule ("max", "mean")."""
    from ..common.errors import CopyscopeError
    from .metrics import aggregate_references

    how = {"max": "max_mean", "mean": "mean_mean"}.get(aggregate, aggregate)
    s = np.asarray(sims, dtype=float)
    work_of_ref = list(work_of_ref)
    if s.ndim != 2 or s.shape[1] != len(work_of_ref):
        raise CopyscopeError(f"similarity rows have {s.shape[-1]} columns for {len(work_of_ref)} reference images")
    cols = []
    for w in works:
        mask = np.asarray([x == w for x in work_of_ref])
        if not mask.any():
            raise CopyscopeError(f"work {w!r} has no reference image")
        cols.append(aggregate_references(s[:, mask], [w] * int(mask.sum()), how))
    return np.stack(cols, axis=1)
def learned_backbones(metrics: Sequence) -> list:
    """The distinct learned backbones (effnet, sscd, clip, ...) of some metrics; pixel projections excluded."""
    seen: dict[int, object] = {}
    for m in metrics:
        bb = getattr(m, "backbone", None)
        if bb is not None and getattr(bb, "key", "pixels") != "pixels":
            seen.setdefault(id(bb), bb)
    return list(seen.values())


def watch_feature_extraction(metrics: Sequence, on_features: Callable[[int, int], None]) -> list[str]:
    """Report the learned backbones' feature extraction (images embedded, not read from the feature
    cache) as ``on_features(advance, add_total)``, the audit's progress-callback shape: each ``embed`` call
    first adds its new images to the total, then advances per chunk. Returns the backbone keys watched."""
    import threading

    lock = threading.Lock()  # the audit scores in a background thread too
    watched = []
    for bb in learned_backbones(metrics):
        last = [0]

        def on_progress(done: int, total: int, last=last) -> None:
            with lock:
                if done == 0:
                    last[0] = 0
                    on_features(0, total)
                else:
                    on_features(done - last[0], 0)
                    last[0] = done

        bb.on_progress = on_progress
        watched.append(bb.key)
    return watched
