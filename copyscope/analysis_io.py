"""Plumbing shared by the two CLIP analyses (``copyscope imitation`` and ``copyscope reward-split``):
output and cache folders, CLIP embeddings cached per image, and writing the result JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import CopyscopeError
from .finite import finite_or_none  # noqa: F401  (re-exported for the analyses)


def analysis_dirs(zoo, out: str | Path | None, default: str):
    """(output folder, ImageCache): the output defaults to <zoo output>/<default>; the cache follows
    the audit's rule (the zoo's ``cache:``, else <zoo output>/cache, else <--out>/cache), so images
    are shared with ``copyscope audit`` over the same zoo file."""
    from .cache import ImageCache

    out_dir = Path(out) if out else zoo.output_dir / default
    if out_dir.exists() and not out_dir.is_dir():
        raise CopyscopeError("output path exists and is not a folder", where=str(out_dir))
    cache = ImageCache(zoo.cache_dir)
    if cache.root.exists() and not cache.root.is_dir():
        raise CopyscopeError("cache path exists and is not a folder", where=str(cache.root))
    return out_dir, cache


def embed_cached(zs, cache, keys: Sequence[str], batch: int = 32) -> np.ndarray:
    """CLIP image embeddings of cached images, stored per image in the cache's features."""
    fid = "clip_zero_shot_image|" + json.dumps(zs.fingerprint(), sort_keys=True, default=str)
    rows = [cache.load_feature(fid, k) for k in keys]
    todo = [i for i, r in enumerate(rows) if r is None]
    for s in range(0, len(todo), batch):
        idx = todo[s : s + batch]
        feats = zs.embed([cache.load(keys[i]) for i in idx])
        for i, f in zip(idx, feats):
            cache.save_feature(fid, keys[i], f)
            rows[i] = f
    return np.stack(rows) if rows else np.zeros((0, 0))


def write_analysis(result: dict, out_dir: Path, filename: str, t0: float) -> dict:
    """Add the wall time and output folder to an analysis result, write it as ``out_dir/filename``
    (JSON), and return it."""
    from .cache import atomic_write_text

    result["wall_seconds"] = round(time.perf_counter() - t0, 3)
    result["output_dir"] = str(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / filename, json.dumps(result, indent=2))
    return result
