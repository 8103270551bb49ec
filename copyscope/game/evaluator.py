"""Stage 5 — game: the worth of each coalition under each metric, with seed-resampled replicates.

Worth is "higher = closer to the references": the mean per-image similarity over all work items
for a per-image metric, minus the distance for a set-level metric. Column 0 of every worth matrix
uses all seeds; the other columns use subsets of the seed list, the same for every coalition
(common random numbers), so seed-to-seed noise cancels in marginal contributions, and intervals
need no new generation. The audit's default (``estimator.intervals: jackknife``) has ``m`` such
columns, column ``s`` leaving seed ``s`` out: for a per-image metric that is the mean over the
other seeds, for a set-level metric the distance of the other seeds' images (no image enters a
set twice, so a U-statistic such as KID never pairs an image with itself). ``intervals:
bootstrap`` instead resamples the seeds with replacement (the older percentile intervals).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..generate.cache import ImageCache
from ..plan.coalitions import gray_rank  # noqa: F401  (re-exported: generation order)
from ..generate import BackgroundQueue, CoalitionEngine, GenerationStats, ensure_images
from ..common.errors import CopyscopeError
from ..plan.games import GamePlan, WorkItem
from ..score.scorer import Scorer

if TYPE_CHECKING:
    from ..score.metrics.base import SetResult


def bootstrap_indices(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """(B, n_seeds) resampled seed indices, with replacement."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds))


def jackknife_indices(n_seeds: int) -> np.ndarray:
    """(m, m - 1) seed indices: row s holds every seed but s, in order. Empty (0 rows) for m < 2:
    one seed says nothing about the seed-to-seed spread."""
    if n_seeds < 2:
        return np.zeros((0, max(n_seeds - 1, 0)), dtype=np.int64)
    full = np.arange(n_seeds)
    return np.stack([np.delete(full, s) for s in range(n_seeds)])


def seed_resamples(n_seeds: int, intervals: str, n_boot: int, seed: int) -> np.ndarray:
    """The seed index sets of the replicate columns for ``estimator.intervals``."""
    if intervals == "jackknife":
        return jackknife_indices(n_seeds)
    return bootstrap_indices(n_seeds, n_boot, seed)


class CoalitionEvaluator:
    """Memoised coalition -> {metric: worth row (1+B,)} for one game, backed by the caches.

    ``values(coalitions, metric)`` is the batched value function the Shapley estimators call: the
    coalitions of a batch that are not yet known are generated together (in Gray-code order, one
    adapter switch between neighbours), scored, and remembered.
    """

    def __init__(
        self,
        game: GamePlan,
        engine: CoalitionEngine | None,
        cache: ImageCache,
        scorer: Scorer,
        items: list[WorkItem],
        n_seeds: int,
        boot: np.ndarray,
        stats: GenerationStats,
        on_generate: Callable[[int, int], None] | None = None,
        on_score: Callable[[int, int], None] | None = None,
        resampling: str = "bootstrap",
        queue: BackgroundQueue | None = None,
    ):
        self.game = game
        self.queue = queue  # PNG writes and per-coalition scoring off the generation's thread
        self.engine = engine
        self.cache = cache
        self.scorer = scorer
        self.items = items
        self.n_prompts = len(items) // n_seeds
        self.n_seeds = n_seeds
        self.boot = boot
        self.resampling = resampling  # what the rows of ``boot`` are: "jackknife" or "bootstrap"
        self.stats = stats
        self.on_generate = on_generate
        self.on_score = on_score  # (advance, add_total) in coalition x metric units
        self.image_keys: dict[tuple[bool, ...], list[str]] = {}
        self.worths: dict[tuple[bool, ...], dict[str, np.ndarray]] = {}
        self.set_results: dict[tuple[bool, ...], dict[str, SetResult]] = {}
        self.flags: dict[tuple[bool, ...], dict[str, list[str]]] = {}
        self.work_worths: dict[tuple[bool, ...], dict[tuple[str, str], np.ndarray]] = {}
        self.prompt_worths: dict[tuple[bool, ...], dict[tuple[str, str], np.ndarray]] = {}

    @classmethod
    def from_cached(
        cls,
        game: GamePlan,
        cache: ImageCache,
        scorer: Scorer,
        items: list[WorkItem],
        n_seeds: int,
        boot: np.ndarray,
        image_keys: dict[tuple[bool, ...], list[str]],
        resampling: str = "bootstrap",
        undefined_as_nan: bool = False,
    ) -> "CoalitionEvaluator":
        """An evaluator over images already generated (``image_keys``: coalition -> the cache keys
        of its ``items``, in order); it never generates, and asking it for another coalition is a
        CopyscopeError. Worths are computed from the cached scores in the order of ``image_keys``.
        ``undefined_as_nan``: a metric that fails on these images (a set distance from too few
        images) gets a NaN worth, which estimate_game then skips like any non-finite metric."""
        ev = cls(game, None, cache, scorer, items, n_seeds, boot, GenerationStats(), resampling=resampling)
        for c, keys in image_keys.items():
            if len(keys) != len(items):
                raise CopyscopeError(f"coalition {game.coalition_key(c)!r} has {len(keys)} images for {len(items)} work items")
            ev.image_keys[c] = list(keys)
            ev.flags[c] = {}
        ev._score(list(image_keys), undefined_as_nan)
        return ev

    def prefetch(self, coalitions: Sequence[tuple[bool, ...]]) -> None:
        """Generate (cache first) and score the coalitions not yet known, in Gray-code order."""
        todo = sorted({c for c in coalitions if c not in self.worths}, key=gray_rank)
        if not todo:
            return
        if self.engine is None:  # from_cached: nothing may be generated
            raise CopyscopeError(f"coalition {self.game.coalition_key(todo[0])!r} was not generated by the audit; "
                                 "rerun `copyscope audit`")
        if self.on_generate:
            self.on_generate(0, len(todo) * len(self.items))
        keys = ensure_images(
            self.engine,
            self.cache,
            todo,
            self.items,
            self.stats,
            progress=(lambda n: self.on_generate(n, 0)) if self.on_generate else None,
            queue=self.queue,
        )
        for c in todo:
            self.image_keys[c] = keys[c]
            flagged = {}
            for k in keys[c]:
                f = self.cache.sidecar(k)
                if f and f.get("flags"):
                    flagged[k] = f["flags"]
            self.flags[c] = flagged
        self._score(todo)

    def _score(self, todo: list[tuple[bool, ...]], undefined_as_nan: bool = False) -> None:
        """Worth rows of every metric for coalitions whose images are known."""
        if self.on_score:
            self.on_score(0, len(todo) * len(self.scorer.metrics))
        for c in todo:
            self.worths[c] = {}
            self.set_results[c] = {}
            for name, metric in self.scorer.metrics.items():
                try:
                    self.worths[c][name] = self._worth(c, metric)
                except CopyscopeError:
                    raise
                except Exception:
                    if not undefined_as_nan:
                        raise
                    self.worths[c][name] = np.full(1 + len(self.boot), np.nan)
                if self.on_score:
                    self.on_score(1, 0)

    def _worth(self, c: tuple[bool, ...], metric) -> np.ndarray:
        keys = self.image_keys[c]
        if metric.kind == "per_image":
            scores = self.scorer.per_image_scores(metric, keys).reshape(self.n_prompts, self.n_seeds)
            return self._per_image_worth(scores)
        feats = self.scorer.rows(metric, keys)
        ref = self.scorer.reference_features(metric)
        full, worth = self.scorer.set_worth(metric, feats, ref)
        self.set_results[c][metric.name] = full
        return self._set_worth(metric, feats, ref, worth)

    def _per_image_worth(self, scores: np.ndarray) -> np.ndarray:
        """(n_prompts, n_seeds) per-image scores -> worth row: the mean, then its replicates over seeds."""
        boot = scores[:, self.boot].mean(axis=(0, 2)) if len(self.boot) else np.zeros(0)
        return np.concatenate([[scores.mean()], boot])

    def _set_worth(self, metric, feats: np.ndarray, ref: np.ndarray, full_worth: float) -> np.ndarray:
        """Worth row of a set metric: ``full_worth`` (all seeds), then the worth of each seed subset."""
        per_seed = feats.reshape(-1, self.n_seeds, feats.shape[-1])
        boot = [self.scorer.set_worth(metric, per_seed[:, idx].reshape(-1, feats.shape[-1]), ref)[1] for idx in self.boot]
        if np.isfinite(full_worth) and not np.isfinite(boot).all():
            # e.g. KID of 2 seeds: defined on both images, undefined without one of them. This
            # depends only on the counts, so every coalition of the metric drops its replicates
            # alike: the metric keeps its value, without an interval.
            return np.array([full_worth])
        return np.concatenate([[full_worth], boot])

    def work_worth(self, c: tuple[bool, ...], metric, work: str) -> np.ndarray:
        """The worth of ``c`` for one protected work alone: the images of that work's prompts (and of
        prompts tied to no work) against that work's references only. Per-work attribution uses it."""
        memo = self.work_worths.setdefault(c, {})
        if (metric.name, work) not in memo:
            rows = [i for i, it in enumerate(self.items) if it.work in (work, None)]
            if not rows or work not in self.scorer.refs.work_of:
                raise ValueError(f"work {work!r} has no prompts or no references")
            memo[(metric.name, work)] = self._subset_worth(c, metric, rows, work)
        return memo[(metric.name, work)]

    def prompt_worth(self, c: tuple[bool, ...], metric, prompt: str) -> np.ndarray:
        """The worth of ``c`` for one prompt alone: that prompt's images against the references the pooled worth
        uses for it (its work's, when the prompt names one; every work's otherwise). Per-prompt attribution uses it."""
        memo = self.prompt_worths.setdefault(c, {})
        if (metric.name, prompt) not in memo:
            rows = [i for i, it in enumerate(self.items) if it.prompt == prompt]
            if not rows:
                raise ValueError(f"prompt {prompt!r} has no work items")
            memo[(metric.name, prompt)] = self._subset_worth(c, metric, rows, self.items[rows[0]].work)
        return memo[(metric.name, prompt)]

    def _subset_worth(self, c: tuple[bool, ...], metric, rows: list[int], work: str | None) -> np.ndarray:
        """The worth row of ``c`` over the work items ``rows`` against one work's references (every work's when
        ``work`` is None), with its replicates over seeds."""
        self.prefetch([c])
        keys = self.image_keys[c]
        if metric.kind == "per_image":
            sub = [keys[i] for i in rows]
            scores = self.scorer.work_scores(metric, sub, work) if work is not None else self.scorer.per_image_scores(metric, sub)
            return self._per_image_worth(np.asarray(scores).reshape(-1, self.n_seeds))
        cols = [j for j, w in enumerate(self.scorer.refs.work_of) if work is None or w == work]
        feats = self.scorer.rows(metric, keys)[rows]
        ref = self.scorer.reference_features(metric)[cols]
        return self._set_worth(metric, feats, ref, self.scorer.set_worth(metric, feats, ref)[1])

    def prompt_values(self, coalitions: np.ndarray, metric: str, prompt: str) -> np.ndarray:
        """Batched value function of the per-prompt game of ``prompt`` under ``metric``."""
        return self._part_values(coalitions, metric, self.prompt_worth, prompt)

    def work_values(self, coalitions: np.ndarray, metric: str, work: str) -> np.ndarray:
        """Batched value function of the per-work game of ``work`` under ``metric``."""
        return self._part_values(coalitions, metric, self.work_worth, work)

    def _part_values(self, coalitions: np.ndarray, metric: str, worth_of, part: str) -> np.ndarray:
        rows = [tuple(bool(x) for x in r) for r in np.asarray(coalitions, dtype=bool)]
        self.prefetch(rows)
        m = self.scorer.metrics[metric]
        return np.stack([worth_of(r, m, part) for r in rows])

    def values(self, coalitions: np.ndarray, metric: str) -> np.ndarray:
        rows = [tuple(bool(x) for x in r) for r in np.asarray(coalitions, dtype=bool)]
        self.prefetch(rows)
        return np.stack([self.worths[r][metric] for r in rows])

    def table(self, metric: str) -> dict[tuple[bool, ...], np.ndarray]:
        return {c: w[metric] for c, w in self.worths.items() if metric in w}
