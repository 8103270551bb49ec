"""Building blocks of the HTML view: escaping, number formats, tables, image thumbnails, labels.

Every string that comes from the user goes through :func:`esc` (``html.escape(..., quote=True)``);
:func:`td` and :func:`_table` escape their text, cells passed to :func:`_table` must be HTML already.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Iterable, Sequence

from ..generate.cache import ImageCache
from ..common.finite import is_finite

MAX_COALITION_ROWS = 64  # rows of the generated-image grid
MAX_ITEM_COLUMNS = 12  # columns (prompt x seed) of the grid
GEN_THUMB = 96  # px, longest side of a generated-image thumbnail
REF_THUMB = 160
_KEY_RE = re.compile(r"^[0-9a-fA-F]{16,128}$")
KIND_LABEL = {"lora": "LoRA", "controlnet": "ControlNet", "base": "base model", "prompt": "prompt fragment",
              "ip_adapter": "IP-Adapter", "textual_inversion": "textual inversion"}

def esc(x: object) -> str:
    return html.escape("" if x is None else str(x), quote=True)


_finite = is_finite


def num(x, spec: str = ".3g") -> str:
    return format(x, spec) if _finite(x) else "n/a"


def fmt_p(p) -> str:
    if not _finite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def _pct(x) -> str:
    return f"{x:.0f}%" if _finite(x) else "n/a"


# ------------------------------------------------------------------------------------------- images


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _encode_thumb(arr_u8, max_side: int) -> bytes:
    from PIL import Image

    im = Image.fromarray(arr_u8, mode="RGB")
    if max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


STRIP_THUMB_FRAMES = 4  # frames a video's thumbnail shows (evenly spaced, first and last among them)


def _strip_frames(arr_u8, frame_width: int | None):
    """A video's film strip (copyscope.score.frames) -> a shorter strip of at most STRIP_THUMB_FRAMES of its frames,
    each thumbnailed apart; any other image as it is."""
    import numpy as np

    if not frame_width or arr_u8.shape[1] <= frame_width or arr_u8.shape[1] % frame_width:
        return arr_u8
    n = arr_u8.shape[1] // frame_width
    picks = sorted({round(i * (n - 1) / (STRIP_THUMB_FRAMES - 1)) for i in range(STRIP_THUMB_FRAMES)})
    return np.concatenate([arr_u8[:, i * frame_width:(i + 1) * frame_width] for i in picks], axis=1)


def image_thumb(path: Path, max_side: int, frame_width: int | None = None) -> tuple[str | None, str | None]:
    """(data URI, None) or (None, why not). ``frame_width``: the image is a video's film strip of frames this wide;
    its thumbnail shows a few of them, each ``max_side`` at most."""
    from ..common.files import to_uint8
    from ..common.inputs import load_image_rgb

    path = Path(path)
    if not path.is_file():
        return None, "file not found on this machine"
    try:
        arr = _strip_frames(to_uint8(load_image_rgb(path)), frame_width)
        n = arr.shape[1] // frame_width if frame_width and arr.shape[1] > frame_width else 1
        return _png_uri(_encode_thumb(arr, max_side * n)), None
    except Exception as exc:  # noqa: BLE001 - unreadable image (PIL raises many kinds): say so, keep rendering
        return None, f"unreadable ({exc.__class__.__name__})"


def cache_root(report: dict, out_dir: Path) -> Path:
    """report["cache_dir"] when it exists on this machine, else out_dir/cache."""
    c = report.get("cache_dir")
    if isinstance(c, str) and c and Path(c).is_dir():
        return Path(c)
    return Path(out_dir) / "cache"


def cached_image(root: Path, key: object, max_side: int = GEN_THUMB) -> tuple[str | None, str | None]:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        return None, "not a cache key"
    path = ImageCache(root).path(key)
    if not path.is_file():
        return None, "not in the image cache"
    return image_thumb(path, max_side, _frame_width(path))


def _frame_width(path: Path) -> int | None:
    """The frame width of a cached video (its key's size and a ``num_frames`` family setting, from the sidecar
    JSON), None for an image."""
    import json

    try:
        entry = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        fields = entry.get("fields", entry)
        if int((fields.get("family_settings") or {}).get("num_frames", 1)) > 1:
            return int(fields["size"][1])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return None


def images_per_prompt(report: dict, n: int) -> int | None:
    """How many of a coalition's ``n`` images each prompt has (they run prompts x maps x seeds, in that order);
    None when ``n`` does not fit the report's prompts and seeds."""
    s = report.get("settings") or {}
    prompts, seeds = s.get("prompts") or [], s.get("seeds") or []
    if prompts and seeds and n and n % (len(prompts) * len(seeds)) == 0:
        return n // len(prompts)
    return None


def _item_labels(report: dict, n: int) -> list[str]:
    per_prompt = images_per_prompt(report, n)
    if per_prompt is None:
        return [f"image {i + 1}" for i in range(n)]
    s = report["settings"]
    prompts, seeds = s["prompts"], s["seeds"]
    maps = per_prompt // len(seeds)  # > 1 with `reference: each`: prompts x maps x seeds
    return [f"{(prompts[i // per_prompt] or {}).get('name', '')} / "
            + (f"map {(i % per_prompt) // len(seeds)} / " if maps > 1 else "") + f"seed {seeds[i % len(seeds)]}"
            for i in range(n)]


_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def collapse_warnings(warnings: Iterable[object]) -> list[tuple[str, int]]:
    """Warnings that differ only in their numbers as one line each, with how many rows gave it, in order of first
    occurrence: a number equal in every row is kept, one that varies is shown as its range ('0.018–0.151')."""
    groups: dict[tuple[str, ...], list[list[str]]] = {}
    for w in warnings:
        text = str(w)
        groups.setdefault(tuple(_NUMBER_RE.split(text)), []).append(_NUMBER_RE.findall(text))
    out = []
    for parts, numbers in groups.items():
        pieces = [parts[0]]
        for i, rest in enumerate(parts[1:]):
            values = sorted({row[i] for row in numbers}, key=float)
            pieces += [values[0] if len(values) == 1 else f"{values[0]}–{values[-1]}", rest]
        out.append(("".join(pieces), len(numbers)))
    return out


def _img(uri: str | None, why: str | None, alt: str, cls: str = "", title: str = "") -> str:
    if uri is None:
        return f'<span class="warn">{esc(why)}</span>'
    c = f' class="{cls}"' if cls else ""
    t = f' title="{esc(title)}"' if title else ""
    return f'<img src="{uri}" alt="{esc(alt)}"{c}{t}>'


def player_label(game: dict, player: str) -> str:
    kind = (game.get("player_kinds") or {}).get(player)
    return f"{KIND_LABEL.get(kind, kind or 'player')} {player}"


def metric_label(metric: str) -> str:
    return "fusion (mean z-score over the metrics)" if metric == "fusion" else metric


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """``headers`` are escaped here; row cells must already be HTML (escaped by the caller)."""
    c = f' class="{cls}"' if cls else ""
    h = "".join(f"<th>{esc(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table{c}><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def td(text: object, numeric: bool = False, title: str = "") -> str:
    t = f' title="{esc(title)}"' if title else ""
    return f'<td class="num"{t}>{esc(text)}</td>' if numeric else f"<td{t}>{esc(text)}</td>"


def _corr_cell(x) -> str:
    if not _finite(x):
        return '<td class="num muted">n/a</td>'
    a = min(1.0, abs(x))
    color = f"rgba(192,57,43,{a * 0.6:.2f})" if x > 0 else f"rgba(46,134,193,{a * 0.6:.2f})"
    return f'<td class="num" style="background:{color}">{x:+.2f}</td>'
