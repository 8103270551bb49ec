"""``copyscope cache info`` and ``copyscope cache prune``: what the image cache holds, and
removing the least recently used entries, safely while audits run (see :mod:`copyscope.cache`).

Prune holds the cache's ``.lock`` exclusively while it deletes, so no audit can check or write an
entry in between; it never deletes an entry used (checked or written) since the start of a live
lease, i.e. by an audit still running. Dead leases (their process ended, so their ``flock`` is
free) are removed.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .cache import LEASES, LOCK_NAME, ImageCache, default_cache_root, fcntl
from .errors import CopyscopeError

__all__ = ["cache_info", "prune_cache", "parse_age", "parse_size"]

# file systems keep mtimes to 1-2 s on some platforms: protect a little before a lease started
_MTIME_SLACK_S = 2.0
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str, where: str = "--max-size") -> int:
    """'500MB', '2GiB', '1000' (bytes) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise CopyscopeError(f"expected a size such as 500MB or 2GiB, got {text!r}", where=where)
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_age(text: str, where: str = "--older-than") -> float:
    """'30d', '12h', '90m', '3600s', '2w' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not m:
        raise CopyscopeError(f"expected an age such as 30d, 12h, 90m or 3600s, got {text!r}", where=where)
    return float(m.group(1)) * _AGES[m.group(2)]


@dataclass
class Entry:
    key: str
    files: list[Path]
    size: int
    last_used: float  # newest mtime of its files


def _entries(cache: ImageCache) -> list[Entry]:
    """One entry per image key: its PNG, sidecar and feature files."""
    by_key: dict[str, list[Path]] = {}
    if cache.images.is_dir():
        for p in cache.images.glob("*/*"):
            if p.suffix in (".png", ".json") and not p.name.startswith("."):
                by_key.setdefault(p.stem, []).append(p)
    if cache.features.is_dir():
        for p in cache.features.glob("*/*/*.npy"):
            by_key.setdefault(p.stem, []).append(p)
    out = []
    for key, files in by_key.items():
        size, newest = 0, 0.0
        for f in files:
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            size += st.st_size
            # features are written by scoring, images by generation; an image's use is what counts
            if f.suffix != ".npy":
                newest = max(newest, st.st_mtime)
        if newest == 0.0:  # features of an image that is gone: as old as possible
            newest = min((f.stat().st_mtime for f in files if f.exists()), default=0.0)
        out.append(Entry(key, files, size, newest))
    return out


def live_leases(root: Path, remove_dead: bool = False) -> list[dict]:
    """The leases of processes still using the cache (their lock is held)."""
    live = []
    folder = root / LEASES
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            f = open(path, "r+")
        except OSError:
            continue
        with f:
            try:
                info = json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                info = {}
            if fcntl is None:  # no flock: a lease younger than a day counts as live
                alive = time.time() - path.stat().st_mtime < 86400
            else:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                    alive = False
                except BlockingIOError:
                    alive = True
            if alive:
                info.setdefault("started", path.stat().st_mtime)
                live.append({**info, "file": path.name})
            elif remove_dead:
                path.unlink(missing_ok=True)
    return live


def cache_info(root: str | Path | None = None) -> dict:
    root = Path(root) if root else default_cache_root()
    cache = ImageCache(root)
    entries = _entries(cache)
    images = [e for e in entries if any(f.suffix == ".png" for f in e.files)]
    return {
        "root": str(root),
        "exists": root.is_dir(),
        "images": len(images),
        "bytes": int(sum(e.size for e in entries)),
        "oldest_use": min((e.last_used for e in images), default=None),
        "newest_use": max((e.last_used for e in images), default=None),
        "running_audits": len(live_leases(root)) if root.is_dir() else 0,
    }


def prune_cache(root: str | Path | None = None, older_than: float | None = None,
                max_size: int | None = None, dry_run: bool = False) -> dict:
    """Delete entries unused for ``older_than`` seconds, then the least recently used ones until
    the cache holds at most ``max_size`` bytes; never an entry used by a running audit."""
    if older_than is None and max_size is None:
        raise CopyscopeError("say what to prune: --older-than AGE and/or --max-size SIZE", where="cache prune")
    root = Path(root) if root else default_cache_root()
    cache = ImageCache(root)
    result = {"root": str(root), "deleted": 0, "freed_bytes": 0, "kept_in_use": 0, "dry_run": dry_run}
    if not root.is_dir():
        return result
    lock = open(root / LOCK_NAME, "a")
    with lock:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # no audit checks or writes meanwhile
        leases = live_leases(root, remove_dead=not dry_run)
        protect_after = min((float(x["started"]) for x in leases), default=float("inf")) - _MTIME_SLACK_S
        entries = sorted(_entries(cache), key=lambda e: e.last_used)  # least recently used first
        total = sum(e.size for e in entries)
        now = time.time()
        for e in entries:
            too_old = older_than is not None and now - e.last_used > older_than
            too_big = max_size is not None and total > max_size
            if not (too_old or too_big):
                continue
            if e.last_used >= protect_after:
                result["kept_in_use"] += 1
                continue
            if not dry_run:
                # sidecar first: without it the entry is a miss, never half an image
                for f in sorted(e.files, key=lambda p: p.suffix != ".json"):
                    f.unlink(missing_ok=True)
            total -= e.size
            result["deleted"] += 1
            result["freed_bytes"] += e.size
    result["bytes_left"] = int(total)
    return result


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_info(info: dict) -> str:
    def when(t):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"

    return (f"cache {info['root']}{'' if info['exists'] else ' (does not exist yet)'}\n"
            f"  images: {info['images']}, size {_human(info['bytes'])}\n"
            f"  last used: oldest {when(info['oldest_use'])}, newest {when(info['newest_use'])}\n"
            f"  running audits: {info['running_audits']}")


def format_prune(r: dict) -> str:
    verb = "would delete" if r["dry_run"] else "deleted"
    return (f"{verb} {r['deleted']} images ({_human(r['freed_bytes'])}) from {r['root']}; "
            f"{r['kept_in_use']} kept because a running audit uses them; "
            f"{_human(r.get('bytes_left', 0))} left")
