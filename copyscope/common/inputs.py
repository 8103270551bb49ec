"""Reading the user's input files with bounded size and type checks.

A zoo file, a report.json, a reference or a conditioning image must be a *regular* file: a FIFO
would block forever, ``/dev/zero`` would be read forever, and a looping symlink is not "missing".
Files are read with a size limit, and images are checked from their header (no pixel is decoded)
against a pixel limit, so a decompression bomb is refused at ``validate`` with one line. PIL's own
``DecompressionBombWarning`` never reaches the terminal. Every image is read upright: its EXIF
orientation applied (:func:`upright`), and the orientation is part of its identity in cache keys
(:func:`image_sha256`).
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from .errors import CopyscopeError

MAX_ZOO_BYTES = 4 << 20  # 4 MiB: a zoo file is a few kB
MAX_REPORT_BYTES = 1 << 30  # 1 GiB: report.json lists every image key of every coalition
# 64 megapixels (8192 x 8192): far above any reference scan or conditioning map a pipeline uses,
# below PIL's own bomb limit (89 MP warning, 179 MP error).
MAX_IMAGE_PIXELS = 8192 * 8192


def file_kind(path: Path) -> str | None:
    """None for a regular file (after symlinks); else what the path is, for an error message."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a broken symlink" if os.path.islink(path) else "not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink that loops"
        if exc.errno == errno.ENOTDIR:
            return "not found"
        return f"unreadable ({exc.strerror})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bounded(path: Path, limit: int, what: str, short: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or a one-line CopyscopeError.
    ``short``: the name used in "<short> not found" (default ``what``)."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "not found":
        raise CopyscopeError(f"{short or what} not found", where=str(path))
    if kind == "a folder":
        raise CopyscopeError(f"is a folder, expected a {what}", where=str(path))
    if kind is not None:
        raise CopyscopeError(f"is {kind}; expected a {what} (a regular file)", where=str(path))
    try:
        # O_NONBLOCK: should the path be swapped for a FIFO after the check, open() still returns
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise CopyscopeError(f"is not a regular file; expected a {what}", where=str(path))
            data = f.read(limit + 1)
    except OSError as exc:
        raise CopyscopeError(f"cannot read {what} ({exc.strerror or exc})", where=str(path)) from None
    if len(data) > limit:
        raise CopyscopeError(f"is larger than {limit >> 20} MiB; expected a {what}", where=str(path))
    return data


def read_json_object(path: Path, limit: int, what: str, expected: str, short: str | None = None) -> dict:
    """A JSON file holding an object, read with :func:`read_bounded`; every fault is one line naming the
    file: "<what> is not UTF-8 text (byte N)", "... is not valid JSON (line L: why)", "... is nested too
    deeply", "... is not a JSON object", each followed by "; <expected>"."""
    import json

    raw = read_bounded(path, limit, what, short)
    where = str(path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CopyscopeError(f"{what} is not UTF-8 text (byte {exc.start}); {expected}", where=where) from None
    except json.JSONDecodeError as exc:
        raise CopyscopeError(f"{what} is not valid JSON (line {exc.lineno}: {exc.msg}); {expected}", where=where) from None
    except RecursionError:
        raise CopyscopeError(f"{what} is nested too deeply; {expected}", where=where) from None
    if not isinstance(data, dict):
        raise CopyscopeError(f"{what} is not a JSON object; {expected}", where=where)
    return data


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) read from the header of an image file, with PIL's bomb warnings silenced
    (the caller applies MAX_IMAGE_PIXELS itself). Raises what PIL raises for a non-image."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                return im.size
        except Image.DecompressionBombError as exc:  # over 2x PIL's limit: PIL refuses the header
            import re

            m = re.search(r"\((\d+) pixels\)", str(exc))
            raise _TooLarge(int(m.group(1)) if m else None) from None


class _TooLarge(Exception):
    pass


def check_image_file(path: Path) -> str | None:
    """None if ``path`` is a regular image file within MAX_IMAGE_PIXELS, else the problem, phrased
    to follow "<reference file> <path> is ..." (e.g. "a FIFO (named pipe); expected an image file")."""
    from PIL import UnidentifiedImageError

    kind = file_kind(path)
    if kind is not None:
        return f"{kind}; expected an image file" if kind != "not found" else "not found"
    try:
        w, h = image_size(path)
    except _TooLarge as exc:
        n = f"{exc.args[0]} pixels" if exc.args and exc.args[0] else "too many pixels"
        return f"too large ({n}, a decompression bomb?); expected at most {MAX_IMAGE_PIXELS} pixels"
    except UnidentifiedImageError:
        return "not an image; expected an intact image file"
    except (OSError, ValueError, SyntaxError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"unreadable ({exc.__class__.__name__}: {first}); expected an intact image file"
    if w * h > MAX_IMAGE_PIXELS:
        return f"too large ({w}x{h} = {w * h} pixels, a decompression bomb?); expected at most {MAX_IMAGE_PIXELS} pixels"
    return None


def open_image_quietly(path):
    """Image.open (of a path or a file object) with PIL's bomb warning silenced (the size was
    checked by check_image_file). Callers load it through :func:`upright`."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


_ORIENTATION = 0x0112  # EXIF tag: how the stored pixels must be turned to stand upright


def exif_orientation(im) -> int:
    """The image's EXIF orientation (1 = as stored; 2-8 = flipped and/or turned); 1 without a valid tag."""
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(im):
    """The loaded image as a viewer shows it: EXIF orientation applied (a phone photo of an artwork is
    stored sideways with orientation 6 or 8). Every image copyscope reads goes through here."""
    from PIL import ImageOps

    im.load()
    return ImageOps.exif_transpose(im) if exif_orientation(im) != 1 else im


def read_image(source):
    """The one image reader of copyscope (a path or a file object): decoded, upright (EXIF
    orientation applied), PIL's bomb warning silenced. References, conditioning images and sources,
    IP-Adapter images and thumbnails are all read here."""
    with open_image_quietly(source) as im:
        image = upright(im)
        return image.copy() if image is im else image  # usable after the file is closed


_identity_memo: dict[tuple[str, int, int], str] = {}


def image_sha256(path: Path) -> str:
    """What identifies an input image in cache keys: the file's SHA-256, combined with its EXIF
    orientation when that turns it (so images and scores made from a file read sideways, before
    orientation was applied, are never reused for it)."""
    from .files import file_sha256, sha256_bytes

    path = Path(path)
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _identity_memo:
        sha = file_sha256(path)
        try:
            with open_image_quietly(path) as im:
                orientation = exif_orientation(im)
        except Exception:  # noqa: BLE001 - not an image: its bytes identify it (readers refuse it)
            orientation = 1
        _identity_memo[memo] = sha if orientation == 1 else sha256_bytes(f"{sha}|exif-orientation:{orientation}".encode())
    return _identity_memo[memo]


def load_image_rgb(path: Path) -> np.ndarray:
    """Any PIL-readable image as float32 RGB in [0,1]. Greyscale is replicated; transparency is
    composited on white (a transparent pixel of a scanned work is paper, not black)."""
    from PIL import Image

    im = read_image(path)  # EXIF orientation applied: a phone photo stored sideways is compared upright
    if im.mode.startswith("I") or im.mode == "F":
        # 16-bit / 32-bit greyscale: PIL's convert("RGB") clips at 255 (a 16-bit scan turns white)
        g = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and g.max() > 255):
            g = g / 65535.0
        elif im.mode == "F" and g.max() <= 1.0:
            pass
        else:
            g = g / 255.0
        g = np.clip(np.nan_to_num(g), 0.0, 1.0).astype(np.float32)
        return np.repeat(g[..., None], 3, axis=-1)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
