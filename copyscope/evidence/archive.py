"""The bundle's archive: written atomically and never over an existing file, read back safely.

Writing (:func:`write_archive`): a ``.tar.gz`` (or ``.tgz``) or a ``.zip`` by the destination's suffix, every
member under one top folder (``copyscope-evidence/``), written to a temporary file beside the destination and
linked into place only when complete (``os.link`` fails if the name was taken meanwhile: nothing is ever
overwritten).

Reading (:func:`extract_archive`) trusts nothing in the archive: a member must be a regular file or a folder
(no symlink, hard link, device or FIFO), its name relative, under the top folder, without ``..``, ``.``, empty
components, backslashes or NUL, and named once; the number of members, each member's size and the total are
limited, counted from the headers before a byte is written and again while copying (a header that understates
its data is caught). Any violation is one :class:`~copyscope.common.errors.CopyscopeError` line naming the member.
"""

from __future__ import annotations

import gzip
import os
import re
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable

from ..common.errors import CopyscopeError
from ..common.files import file_mode
from ..common.outdir import os_error_message

TOP = "copyscope-evidence"  # the one top folder of every bundle
SUFFIXES = (".tar.gz", ".tgz", ".zip")
MAX_MEMBERS = 500_000
MAX_MEMBER_BYTES = 4 << 30  # 4 GiB: report.html of a large audit is the largest member
MAX_TOTAL_BYTES = 64 << 30  # 64 GiB unpacked
MAX_NAME = 1024
_CHUNK = 1 << 20


def archive_kind(path: Path) -> str:
    """"zip" or "tar" from the destination's name; any other suffix is refused."""
    name = Path(path).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar"
    raise CopyscopeError("expected an archive name ending in .tar.gz, .tgz or .zip", where=str(path))


def write_archive(dest: Path, members: Iterable[tuple[str, bytes]]) -> None:
    """Write ``members`` ((name inside the archive, bytes), names relative to the top folder) to ``dest``:
    atomically, and never over an existing file (refused, one line)."""
    dest = Path(dest)
    kind = archive_kind(dest)
    if os.path.lexists(dest):
        raise CopyscopeError("exists; copyscope never overwrites an archive: remove it or choose another --out", where=str(dest))
    if not dest.parent.is_dir():
        raise CopyscopeError("the folder of the archive does not exist; create it or choose another --out", where=str(dest))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            (_write_zip if kind == "zip" else _write_tar)(f, members)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        try:
            os.link(tmp, dest)  # fails if the name exists: never over a file that appeared meanwhile
        except FileExistsError:
            raise CopyscopeError("exists; copyscope never overwrites an archive: remove it or choose another --out",
                                 where=str(dest)) from None
        except OSError:  # a filesystem without hard links
            if os.path.lexists(dest):
                raise CopyscopeError("exists; copyscope never overwrites an archive", where=str(dest)) from None
            os.replace(tmp, dest)
    except OSError as exc:
        raise os_error_message(exc, "archive path") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


def _write_tar(f: BinaryIO, members: Iterable[tuple[str, bytes]]) -> None:
    import io

    now = int(time.time())
    with gzip.GzipFile(fileobj=f, mode="wb", mtime=now, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))


def _write_zip(f: BinaryIO, members: Iterable[tuple[str, bytes]]) -> None:
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(f, "w") as z:
        for name, data in members:
            info = zipfile.ZipInfo(f"{TOP}/{name}", date_time=stamp)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            # PNGs are compressed already
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            z.writestr(info, data)


# -- reading --------------------------------------------------------------------------------------


def unsafe_name(name: str) -> str | None:
    """Why a member name may not be extracted (None: it may)."""
    if not name or "\x00" in name:
        return "an empty name or a NUL character"
    if len(name) > MAX_NAME:
        return f"a name over {MAX_NAME} characters"
    if "\\" in name:
        return "a backslash in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "a '..' component"
    if any(p in ("", ".") for p in parts):
        return "an empty or '.' component"
    if parts[0] != TOP:
        return f"a name outside {TOP}/"
    return None


def extract_archive(path: Path, into: Path) -> list[str]:
    """Extract a bundle into the empty folder ``into``; return the files' names relative to ``into/TOP``.
    Refuses (one line) anything :func:`unsafe_name` or the limits reject, links and special files."""
    path = Path(path)
    if not path.is_file():
        raise CopyscopeError("not found" if not os.path.lexists(path) else "is not a regular file; expected a bundle",
                             where=str(path))
    try:
        if zipfile.is_zipfile(path):
            return _extract_zip(path, into)
        if not tarfile.is_tarfile(path):
            raise CopyscopeError("is not a .tar.gz or .zip archive; expected a bundle `copyscope bundle` wrote", where=str(path))
        return _extract_tar(path, into)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile) as exc:
        raise CopyscopeError(f"is not a readable archive ({exc.__class__.__name__}: {' '.join(str(exc).split())[:120]})",
                             where=str(path)) from None


class _Budget:
    """The limits of one extraction, counted member by member."""

    def __init__(self, archive: Path):
        self.archive = archive
        self.members = 0
        self.total = 0
        self.seen: set[str] = set()

    def admit(self, name: str, size: int, is_dir: bool) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            self.refuse(f"holds over {MAX_MEMBERS} members; refused")
        why = unsafe_name(name)
        if why:
            self.refuse(f"member {name!r} has {why}; refused (a bundle holds only files under {TOP}/)")
        key = name.rstrip("/")
        if key in self.seen:
            self.refuse(f"member {name!r} appears twice; refused")
        self.seen.add(key)
        if is_dir:
            return
        if size > MAX_MEMBER_BYTES:
            self.refuse(f"member {name!r} is {size} bytes, over the limit of {MAX_MEMBER_BYTES}; refused")
        self.total += size
        if self.total > MAX_TOTAL_BYTES:
            self.refuse(f"unpacks to over {MAX_TOTAL_BYTES} bytes; refused")

    def refuse(self, message: str):
        raise CopyscopeError(message, where=str(self.archive))


def _target(into: Path, name: str) -> Path:
    dest = into / name.rstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def _copy(src: BinaryIO, dest: Path, size: int, budget: _Budget, name: str) -> None:
    """Copy a member's data, refusing more bytes than its header declared."""
    written = 0
    with open(dest, "xb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > size:
                budget.refuse(f"member {name!r} holds more data than its header declares; refused")
            out.write(chunk)
    if written != size:
        budget.refuse(f"member {name!r} is truncated ({written} of {size} bytes)")


def _extract_tar(path: Path, into: Path) -> list[str]:
    budget, files = _Budget(path), []
    with tarfile.open(path, "r:*") as tar:
        while (m := tar.next()) is not None:
            budget.admit(m.name + ("/" if m.isdir() else ""), m.size, m.isdir())
            if m.isdir():
                continue
            if not m.isfile():
                kind = "a symlink" if m.issym() else "a hard link" if m.islnk() else "a device or FIFO"
                budget.refuse(f"member {m.name!r} is {kind}; refused (a bundle holds only regular files)")
            try:
                dest = _target(into, m.name)
                src = tar.extractfile(m)
                _copy(src, dest, m.size, budget, m.name)
            except OSError as exc:
                budget.refuse(f"member {m.name!r} cannot be extracted ({exc.strerror or exc}); refused")
            files.append(m.name.split("/", 1)[1])
    return files


def _extract_zip(path: Path, into: Path) -> list[str]:
    budget, files = _Budget(path), []
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if len(infos) > MAX_MEMBERS:
            budget.refuse(f"holds over {MAX_MEMBERS} members; refused")
        for info in infos:
            budget.admit(info.filename, info.file_size, info.is_dir())
        for info in infos:
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if mode and not stat.S_ISREG(mode):
                budget.refuse(f"member {info.filename!r} is not a regular file (a link?); refused")
            try:
                dest = _target(into, info.filename)
                with z.open(info) as src:
                    _copy(src, dest, info.file_size, budget, info.filename)
            except (OSError, RuntimeError, NotImplementedError) as exc:  # RuntimeError: an encrypted member
                budget.refuse(f"member {info.filename!r} cannot be extracted ({' '.join(str(exc).split())[:120]}); refused")
            files.append(info.filename.split("/", 1)[1])
    return files
