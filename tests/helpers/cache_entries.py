"""Small entries in an image cache, aged: what the cache prune / info tests work on."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from copyscope.generate.cache import ImageCache
from copyscope.common.files import key_of


def aged_entries(root: Path, n: int, age: float) -> list[str]:
    """n small cache entries (PNG, sidecar, one feature row) in the cache at ``root``, last used ``age`` seconds
    ago; their keys. Lease files and the lock keep their times."""
    cache = ImageCache(root)
    keys = []
    for i in range(n):
        k = key_of({"fake": i, "root": str(root)})
        cache.put(k, np.full((8, 8, 3), i / n), {"fake": i}, [])
        cache.save_feature("m", k, np.arange(4.0))
        keys.append(k)
    old = time.time() - age
    for f in root.rglob("*"):
        if f.is_file() and f.parent.name != "leases" and f.name != ".lock":
            os.utime(f, (old, old))
    return keys
