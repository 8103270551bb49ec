"""``copyscope cache info`` and ``copyscope cache prune``: what the image cache holds, and
removing the least recently used entries, safely while audits run (see :mod:`copyscope.generate.cache`).

Prune holds the cache's ``.lock`` exclusively while it deletes, so no audit can check or write an
entry in between; it never deletes an entry used (checked or written) since the start of a live
lease, i.e. by an audit still running. Dead leases (their process ended, so their ``flock`` is
free) are removed.

Prune deletes only in a folder that is copyscope's cache (it carries ``.copyscope-cache``, see
:mod:`copyscope.generate.cache`; a cache from before markers is recognised by its layout and its own sidecars,
and marked), and there only files named as copyscope names its entries (``images/ab/<key>.png``).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from .cache import LEASES, LOCK_NAME, MARKER, ImageCache, fcntl, is_cache_before_markers, is_own_feature_file, is_own_image_file, mark_cache
from ..common.files import default_cache_root
from ..common.errors import CopyscopeError

__all__ = ["cache_info", "prune_cache", "parse_age", "parse_size"]

# file systems keep mtimes to 1-2 s on some platforms: protect a little before a lease started
_MTIME_SLACK_S = 2.0
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


MAX_SIZE = 10**18  # 1 EB: any larger --max-size is a typo
MAX_AGE_S = 1000 * 365 * 86400.0


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


def parse_size(text: str, where: str = "--max-size") -> int:
    """'500MB', '2GiB', '1000' (bytes) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise CopyscopeError(f"expected a size such as 500MB or 2GiB, got {_short(str(text))}", where=where)
    # Decimal, not float: 400 digits would overflow int(float(...))
    size = Decimal(m.group(1)) * _UNITS[m.group(2).lower()]
    if size > MAX_SIZE:
        raise CopyscopeError(f"size {_short(str(text))} is too large; expected at most {MAX_SIZE} bytes (1 EB)", where=where)
    return int(size)


def parse_age(text: str, where: str = "--older-than") -> float:
    """'30d', '12h', '90m', '3600s', '2w' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not m:
        raise CopyscopeError(f"expected an age such as 30d, 12h, 90m or 3600s, got {_short(str(text))}", where=where)
    age = Decimal(m.group(1)) * _AGES[m.group(2)]
    if age > Decimal(MAX_AGE_S):
        raise CopyscopeError(f"age {_short(str(text))} is too large; expected at most 1000 years", where=where)
    return float(age)


@dataclass
class Entry:
    key: str
    files: list[Path]
    size: int
    last_used: float  # newest mtime of its files


def _entries(cache: ImageCache) -> list[Entry]:
    """One entry per image key: its PNG, sidecar and feature files (only files named as copyscope
    names them: nothing else in the folder is ever counted or deleted)."""
    by_key: dict[str, list[Path]] = {}
    if cache.images.is_dir():
        for p in cache.images.glob("*/*"):
            if is_own_image_file(p) and not p.is_symlink() and not p.parent.is_symlink():  # never through a link
                by_key.setdefault(p.stem, []).append(p)
    if cache.features.is_dir():
        for p in cache.features.glob("*/*/*.npy"):
            if is_own_feature_file(p) and not any(q.is_symlink() for q in (p, p.parent, p.parent.parent)):
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


def resolve_cache(root: str | Path | None) -> tuple[Path, str]:
    """The cache folder (``root``, else the default) and how errors name it."""
    if root:
        return Path(root), f"--cache {root}"
    path = default_cache_root()
    return path, (f"$COPYSCOPE_CACHE {path}" if os.environ.get("COPYSCOPE_CACHE") else str(path))


def check_cache_folder(root: Path, where: str, adopt: bool = True) -> bool:
    """True if ``root`` is copyscope's cache (it carries the marker, or it is a cache from before
    markers: then it is marked when ``adopt``); False if it does not exist or is empty (nothing to
    prune); else one error line: a file, or a folder copyscope did not make."""
    if not os.path.lexists(root):
        return False
    if not root.is_dir():
        raise CopyscopeError("is a file, not a cache folder; expected copyscope's cache folder (check --cache / "
                             "$COPYSCOPE_CACHE / the zoo's cache:)", where=where)
    try:
        names = {p.name for p in root.iterdir()}
        if not names:
            return False
        marker = root / MARKER
        if MARKER in names and marker.is_file() and not marker.is_symlink():
            return True
        if MARKER not in names and is_cache_before_markers(root, names):
            if adopt:
                mark_cache(root)
            return True
    except OSError as exc:
        raise CopyscopeError(f"cannot read the cache folder ({exc.strerror or exc}); check --cache / $COPYSCOPE_CACHE",
                             where=where) from None
    shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
    raise CopyscopeError(
        f"is not a copyscope cache (no {MARKER}; it holds {shown}); copyscope prunes and inspects only a cache "
        "folder it made: check --cache / $COPYSCOPE_CACHE", where=where)


def cache_info(root: str | Path | None = None) -> dict:
    root, where = resolve_cache(root)
    check_cache_folder(root, where, adopt=False)  # a file, or a folder copyscope did not make: one line
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
    the cache holds at most ``max_size`` bytes; never an entry used by a running audit. Refuses a
    folder that is not copyscope's cache (copyscope.generate.cache's marker)."""
    from ..common.outdir import os_error_message

    if older_than is None and max_size is None:
        raise CopyscopeError("say what to prune: --older-than AGE and/or --max-size SIZE", where="cache prune")
    root, where = resolve_cache(root)
    result = {"root": str(root), "deleted": 0, "freed_bytes": 0, "kept_in_use": 0, "dry_run": dry_run}
    if not check_cache_folder(root, where, adopt=not dry_run):
        return result
    try:
        return _prune(root, older_than, max_size, dry_run, result)
    except OSError as exc:
        raise os_error_message(exc, "cache folder") from None


def _open_lock(root: Path, dry_run: bool):
    try:
        return open(root / LOCK_NAME, "a")
    except OSError:
        if not dry_run:
            raise
        return open(os.devnull)  # a read-only cache: a dry run only reads, and takes no lock


def _prune(root: Path, older_than: float | None, max_size: int | None, dry_run: bool, result: dict) -> dict:
    cache = ImageCache(root)
    with _open_lock(root, dry_run) as lock:
        if fcntl is not None and lock.name != os.devnull:
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

    from ..common.termtext import plain  # the path is printed: control characters escaped

    return (f"cache {plain(info['root'])}{'' if info['exists'] else ' (does not exist yet)'}\n"
            f"  images: {info['images']}, size {_human(info['bytes'])}\n"
            f"  last used: oldest {when(info['oldest_use'])}, newest {when(info['newest_use'])}\n"
            f"  running audits: {info['running_audits']}")


def format_prune(r: dict) -> str:
    from ..common.termtext import plain

    verb = "would delete" if r["dry_run"] else "deleted"
    return (f"{verb} {r['deleted']} images ({_human(r['freed_bytes'])}) from {plain(r['root'])}; "
            f"{r['kept_in_use']} kept because a running audit uses them; "
            f"{_human(r.get('bytes_left', 0))} left")
