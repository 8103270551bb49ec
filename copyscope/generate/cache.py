"""Content-addressed on-disk cache for generated images and per-image features.

An image's key is the SHA-256 of a canonical JSON of everything that determines it (see
``engine.CoalitionEngine.image_fields``). Each image is a PNG plus a JSON sidecar holding the fields
and the PNG's own SHA-256. Writes are atomic (temporary file + ``os.replace``) and the sidecar is
written last, so a reader never sees half an image: an entry counts only when its sidecar exists
and the PNG's hash matches. Two audits may share one cache folder: they write identical bytes
under identical names, and ``os.replace`` is atomic.

The default cache is shared by every audit of the user (like the Hugging Face cache):
``$COPYSCOPE_CACHE``, else ``$XDG_CACHE_HOME/copyscope``, else ``~/.cache/copyscope``; a zoo's
``cache:`` key overrides it. So an audit into another ``--out`` reuses every image already made.

Safe pruning while audits run (``copyscope cache prune``, :mod:`copyscope.generate.cache_admin`): a process
that uses a cache holds a *lease* (``leases/*.json``, exclusively ``flock``-ed for the process's
lifetime, so a crashed process frees it) recording when it started, and it touches every entry it
checks or writes (mtime = last use), under a shared lock on ``.lock``. Prune takes that lock
exclusively and never deletes an entry used since the start of a live lease.

A cache folder carries a marker, ``.copyscope-cache``, written when copyscope first writes an
entry into a new or empty folder (or into a cache from before markers, which has copyscope's own
layout only). Prune refuses a folder without it: pointed at a folder of photos, it deletes nothing.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..common.files import atomic_write_bytes, atomic_write_text, canonical_json, decode_png, key_of, png_bytes, sha256_bytes, to_uint8


try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: leases are then judged by age (cache_admin)
    fcntl = None


LOCK_NAME = ".lock"
LEASES = "leases"
MARKER = ".copyscope-cache"
# what copyscope itself puts at the top of a cache folder (the marker aside)
CACHE_LAYOUT = {"images", "features", "placebo", LEASES, LOCK_NAME}  # placebo: copyscope.controls.placebo


def mark_cache(root: Path) -> None:
    """Write the marker into ``root`` if it is new or empty, or a cache from before markers; a folder
    holding anything else stays unmarked (prune then refuses it)."""
    root = Path(root)
    try:
        if (root / MARKER).exists():
            return
        names = {p.name for p in root.iterdir()}
        if names and not is_cache_before_markers(root, names):
            return
        atomic_write_text(root / MARKER, json.dumps({"copyscope_cache": 1, "created": time.time()}) + "\n")
    except OSError:  # a read-only shared cache: someone else marked (or will mark) it
        pass


_KEY_RE = re.compile(r"[0-9a-f]{64}")
_HEX2_RE = re.compile(r"[0-9a-f]{2}")
_HEX16_RE = re.compile(r"[0-9a-f]{16}")


def is_own_image_file(p: Path) -> bool:
    """``images/ab/<key>.png|json``, named as copyscope names them (ab = the key's first two digits)."""
    return p.suffix in (".png", ".json") and bool(_KEY_RE.fullmatch(p.stem)) and p.parent.name == p.stem[:2]


def is_own_feature_file(p: Path) -> bool:
    """``features/<16 hex>/ab/<key>.npy``."""
    return (bool(_KEY_RE.fullmatch(p.stem)) and p.parent.name == p.stem[:2]
            and bool(_HEX16_RE.fullmatch(p.parent.parent.name)))


def is_cache_before_markers(root: Path, names: set[str]) -> bool:
    """A cache written before markers: copyscope's layout only (images/ab/, features/<16 hex>/, leases/,
    .lock) and copyscope's own bookkeeping in it (a sidecar naming its key, lease files, the empty .lock)."""
    if not names <= CACHE_LAYOUT:
        return False
    for sub, pattern in (("images", _HEX2_RE), ("features", _HEX16_RE)):
        if sub in names:
            folder = root / sub
            if folder.is_symlink() or not folder.is_dir():
                return False
            if any(not pattern.fullmatch(c.name) or c.is_symlink() or not c.is_dir() for c in folder.iterdir()):
                return False
    if "images" in names:
        for i, p in enumerate((root / "images").glob("*/*.json")):
            if i >= 20:
                break
            if is_own_image_file(p) and p.is_file():
                try:
                    info = json.loads(p.read_bytes()[: 1 << 20])
                except (OSError, ValueError):
                    return False
                return isinstance(info, dict) and info.get("key") == p.stem and "png_sha256" in info
    lock = root / LOCK_NAME
    if lock.is_file() and not lock.is_symlink() and lock.stat().st_size == 0:
        return True
    leases = root / LEASES
    return leases.is_dir() and all(f.suffix in (".json", ".tmp") for f in leases.iterdir())


_leases: dict[str, Any] = {}  # cache root -> the open, locked lease file of this process


def _take_lease(root: Path) -> None:
    """Hold a lease on ``root`` for the rest of this process (once per root)."""
    key = str(root.resolve())
    if key in _leases:
        return
    folder = root / LEASES
    path = folder / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    tmp = path.with_suffix(".tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "w")
    except OSError:  # a read-only shared cache: this process cannot write, nothing to protect
        _leases[key] = None
        return
    if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
    f.flush()
    os.replace(tmp, path)  # visible to prune only once locked and complete
    _leases[key] = f


class _SharedLock:
    """A shared flock on ``root/.lock`` (prune holds it exclusively while it deletes)."""

    def __init__(self, root: Path):
        self.root = root
        self.f = None

    def __enter__(self):
        if fcntl is not None:
            try:
                self.f = open(self.root / LOCK_NAME, "a")
            except OSError:  # read-only cache
                return self
            fcntl.flock(self.f.fileno(), fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc):
        if self.f is not None:
            self.f.close()  # releases the lock


def _touch(*paths: Path) -> None:
    for p in paths:
        try:
            os.utime(p)
        except OSError:  # a read-only shared cache: nothing to protect from us
            pass


class ImageCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.images = self.root / "images"
        self.features = self.root / "features"

    def _paths(self, key: str) -> tuple[Path, Path]:
        d = self.images / key[:2]
        return d / f"{key}.png", d / f"{key}.json"

    def _in_use(self) -> _SharedLock:
        _take_lease(self.root)
        return _SharedLock(self.root)

    def sidecar(self, key: str) -> dict | None:
        """The sidecar of a complete, intact entry, else None. Marks the entry as used now."""
        png, meta = self._paths(key)
        if not self.root.is_dir():
            return None
        with self._in_use():
            _touch(meta, png)  # before reading: prune then keeps it (or it is gone: a miss)
            return self._read_sidecar(png, meta)

    def _read_sidecar(self, png: Path, meta: Path) -> dict | None:
        try:
            info = json.loads(meta.read_text())
            data = png.read_bytes()
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            return None
        if sha256_bytes(data) != info.get("png_sha256"):
            return None
        return info

    def has(self, key: str) -> bool:
        return self.sidecar(key) is not None

    def load(self, key: str) -> np.ndarray:
        png, _ = self._paths(key)
        return decode_png(png.read_bytes())

    def path(self, key: str) -> Path:
        return self._paths(key)[0]

    def put(self, key: str, image: np.ndarray, fields: dict, flags: list[str]) -> None:
        png, meta = self._paths(key)
        data = png_bytes(to_uint8(image))
        self.root.mkdir(parents=True, exist_ok=True)
        mark_cache(self.root)
        with self._in_use():
            atomic_write_bytes(png, data)
            atomic_write_text(meta, canonical_json({"key": key, "fields": fields, "flags": flags, "png_sha256": sha256_bytes(data)}))

    # -- features: one .npy per (metric config, image) -------------------------------------------
    def feature_path(self, metric_id: str, image_key: str) -> Path:
        return self.features / key_of({"metric": metric_id})[:16] / image_key[:2] / f"{image_key}.npy"

    def load_feature(self, metric_id: str, image_key: str) -> np.ndarray | None:
        p = self.feature_path(metric_id, image_key)
        try:
            return np.load(p, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None

    def save_feature(self, metric_id: str, image_key: str, value: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        self.root.mkdir(parents=True, exist_ok=True)
        mark_cache(self.root)
        atomic_write_bytes(self.feature_path(metric_id, image_key), buf.getvalue())
