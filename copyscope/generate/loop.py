"""The generate-into-cache loop: every (coalition, work item) image of a game made once, in fixed
batches, into the content-addressed image cache; with a :class:`BackgroundQueue` passed in, PNG
writes and the caller's per-coalition work (the audit's scoring) overlap the next batch."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .cache import ImageCache
from ..common.files import key_of
from ..plan.games import WorkItem


def image_flags(image: np.ndarray) -> list[str]:
    """Problems worth flagging in the report: NaN output (fp16 overflow) or an all-black image."""
    flags = []
    if not np.isfinite(image).all():
        flags.append("nan")
    elif float(np.nanmax(image)) < 2.0 / 255.0:
        flags.append("black")
    return flags


@dataclass
class GenerationStats:
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0
    switches: int = 0


def ensure_images(
    engine,
    cache: ImageCache,
    coalitions: Iterable[tuple[bool, ...]],
    items: list[WorkItem],
    stats: GenerationStats,
    progress: Callable[[int], None] | None = None,
    work_filter: Callable[[int], bool] | None = None,
    queue: "BackgroundQueue | None" = None,
) -> dict[tuple[bool, ...], list[str]]:
    """Make sure every (coalition, item) image is in the cache; return the keys per coalition.

    Batches are fixed chunks of each coalition's item list (not "whatever is missing"), so a
    resumed or partial run feeds the pipeline exactly the same batches as an uninterrupted one.
    ``work_filter(chunk_index)`` selects the chunks this process generates (distributed runs).
    ``engine``: a :class:`~copyscope.generate.engine.CoalitionEngine`. With a ``queue`` (a
    :class:`BackgroundQueue`, passed in by the caller, which also closes it), images are written to the cache by its
    thread while the next batch generates, each finished coalition is handed to its
    ``on_coalition`` (the audit scores it there), and everything has completed when this returns.
    """
    bs = engine.gen.batch_size
    keys: dict[tuple[bool, ...], list[str]] = {}
    chunk_index = 0
    bg = queue
    for members in coalitions:
        fields = [engine.image_fields(members, it) for it in items]
        coalition_keys = [key_of(f) for f in fields]
        keys[members] = coalition_keys
        for start in range(0, len(items), bs):
            chunk_keys = coalition_keys[start : start + bs]
            mine = work_filter is None or work_filter(chunk_index)
            chunk_index += 1
            missing = [k for k in chunk_keys if not cache.has(k)] if mine else []
            if not missing:
                if mine:
                    stats.cached += len(chunk_keys)
                if progress:
                    progress(len(chunk_keys))
                continue
            chunk_items = items[start : start + bs]
            t0 = time.perf_counter()
            images = engine.generate(members, chunk_items)
            stats.seconds += time.perf_counter() - t0
            for k, f, img in zip(chunk_keys, fields[start : start + bs], images):
                if k in missing:
                    entry = {**f, "coalition": engine.game.coalition_key(members)}
                    if bg is not None:
                        bg.submit(cache.put, k, img, entry, image_flags(img))
                    else:
                        cache.put(k, img, entry, image_flags(img))
                    stats.generated += 1
                else:
                    stats.cached += 1
            if progress:
                progress(len(chunk_keys))
        if bg is not None and work_filter is None:
            bg.coalition_done(coalition_keys)
    if bg is not None:
        bg.wait()
    return keys


class BackgroundQueue:
    """One worker thread that runs tasks in submission order: the PNG writes of a coalition's
    images, then ``on_coalition(keys)`` for it (the audit's scoring), overlapping the generation of
    the next batches (a GPU generating leaves the CPU idle; PNG encoding and scoring would otherwise
    sit on the critical path). At most ``max_pending`` tasks wait (backpressure: generated images are
    not piled up in memory). Tasks never run concurrently with each other; ``wait()`` returns when
    all have run and re-raises the first error in the caller's thread."""

    def __init__(self, on_coalition: Callable[[list[str]], None] | None = None, max_pending: int = 64):
        from concurrent.futures import ThreadPoolExecutor

        self.on_coalition = on_coalition
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copyscope-bg")
        self._pending: list = []

    def submit(self, fn: Callable, *args) -> None:
        while len(self._pending) >= self.max_pending:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(fn, *args))

    def coalition_done(self, keys: list[str]) -> None:
        if self.on_coalition is not None:
            self.submit(self.on_coalition, list(keys))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for f in self._pending:
                f.cancel()
        self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close(cancel=exc_type is not None)
        return False
