"""File helpers every stage shares: canonical JSON and SHA-256 keys, atomic writes (a reader never sees half a
file), PNG bytes, file and folder hashes (memoised per path, size and mtime), and where the shared image cache lives."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def default_cache_root() -> Path:
    """``$COPYSCOPE_CACHE``, else ``$XDG_CACHE_HOME/copyscope``, else ``~/.cache/copyscope``."""
    if os.environ.get("COPYSCOPE_CACHE"):
        return Path(os.environ["COPYSCOPE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "copyscope"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_of(fields: dict) -> str:
    return sha256_bytes(canonical_json(fields).encode())


def file_mode() -> int:
    """The mode open() would give a new file (0o666 minus the umask); mkstemp alone gives 0o600,
    which would hide reports and cache entries from the rest of a team."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` atomically. An OSError always names a path (copyscope.common.outdir turns it into
    one error line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # not on Windows
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename is None:
            # write() on a full disk names no file: name the one being written, for the error line
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0,1] (H,W,3) -> uint8, NaN -> 0."""
    return (np.nan_to_num(np.clip(image, 0.0, 1.0), nan=0.0) * 255.0 + 0.5).astype(np.uint8)


def png_bytes(image_u8: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image_u8, mode="RGB").save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


_file_hash_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _file_hash_memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _file_hash_memo[memo_key] = h.hexdigest()
    return _file_hash_memo[memo_key]


def tree_sha256(path: Path, suffixes: tuple[str, ...] | None = None) -> str:
    """Hash of a file, or of a folder's files (relative names + contents)."""
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)):
        if suffixes and f.suffix not in suffixes:
            continue
        h.update(str(f.relative_to(path)).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()
