"""A validated zoo: names filled in, paths resolved against the zoo file's folder, errors that name
file, line and key; the cross-reference checks after validation; prompt rendering; reference files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..common.errors import CopyscopeError
from ..common.hubids import is_hub_id
from .base import IMAGE_SUFFIXES, PICKLE_SUFFIXES

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")


class Zoo:
    """A validated zoo file with names filled in and paths resolved against the file's folder."""

    def __init__(self, spec, path: Path, text: str, lines: dict[tuple, int]):
        self.spec = spec
        self.path = path
        self.root = path.parent
        self.text = text
        self._lines = lines
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        self.placebo = None  # copyscope.controls.placebo.add_placebo_player: the placebo LoRA's summary

    # -- error helpers -------------------------------------------------------------------------
    def where(self, *loc) -> str:
        """'zoo.yaml:LINE: key.path' for an error message."""
        return _where(self.path, loc, self._lines)

    def fail(self, message: str, *loc) -> CopyscopeError:
        return CopyscopeError(message, where=self.where(*loc))

    # -- path resolution -----------------------------------------------------------------------
    def resolve_path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def is_local(self, value: str) -> bool:
        """A model string is local if it names an existing path or cannot be a hub id."""
        if self.resolve_path(value).exists():
            return True
        return not is_hub_id(value) or value.startswith(".") or value.endswith(
            IMAGE_SUFFIXES + (".safetensors",) + PICKLE_SUFFIXES
        )

    @property
    def output_dir(self) -> Path:
        return self.resolve_path(self.spec.output or f"copyscope-out/{self.spec.name}")

    @property
    def cache_dir(self) -> Path:
        from ..common.files import default_cache_root  # shared by every audit unless the zoo says `cache:`

        return self.resolve_path(self.spec.cache) if self.spec.cache else default_cache_root()


def _where(path: Path, loc: tuple, lines: dict[tuple, int]) -> str:
    loc = tuple(loc)
    line = None
    for n in range(len(loc), -1, -1):  # the deepest key the parser has a line for
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    head = f"{path}:{line}" if line else str(path)
    return f"{head}: {key}" if key else head




def render_prompt(template: str, fragments: dict[str, str], active: set[str]) -> str:
    """A coalition's prompt: ``{name}`` placeholders take the fragment's text when the prompt player
    is in the coalition and vanish otherwise; active fragments the template does not mention are
    appended, comma-separated, in zoo order. Whitespace and stray commas are tidied."""
    used = set(_PLACEHOLDER_RE.findall(template))
    text = _PLACEHOLDER_RE.sub(lambda m: fragments[m.group(1)] if m.group(1) in active else "", template)
    extra = [fragments[n] for n in fragments if n in active and n not in used]
    text = ", ".join([text.strip()] + extra) if extra else text
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",(\s*,)+", ",", text)
    return text.strip().strip(",").strip()


def iter_reference_files(zoo: Zoo) -> dict[str, list[Path]]:
    """work name -> its image files (folders expanded, sorted). Errors name the offending key.

    A FIFO, a device or a looping symlink is an error here, never "not found" (which validate
    reports as a file still to be put in place); a file listed twice in one work is an error too
    (it would be counted twice)."""
    return {ref.name: expand_image_paths(zoo, ref.paths, "references", i) for i, ref in enumerate(zoo.spec.references)}


def expand_image_paths(zoo: Zoo, values: list[str], *loc) -> list[Path]:
    """Image files and folders of images (folders expanded, sorted) of one list key of the zoo at ``loc``
    (``references[i].paths``, ``background.paths``); errors name the entry."""
    from ..common.inputs import file_kind

    what = "reference" if loc[0] == "references" else loc[0]
    files: list[Path] = []
    where_from: dict[Path, int] = {}
    for j, value in enumerate(values):
        p = zoo.resolve_path(value)
        kind = file_kind(p)
        if kind == "a folder":
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and file_kind(f) is None)
            if not found:
                raise zoo.fail(f"folder {value!r} holds no images ({', '.join(IMAGE_SUFFIXES)})", *loc, "paths", j)
        elif kind is None:
            found = [p]
        elif kind == "not found":
            raise zoo.fail(f"{what} {value!r} not found (looked at {p})", *loc, "paths", j)
        else:
            raise zoo.fail(f"{what} {value!r} is {kind}; expected an image file or a folder of images", *loc, "paths", j)
        for f in found:
            real = f.resolve()
            if real in where_from:
                raise zoo.fail(f"{what} file {f} is listed twice (also by paths[{where_from[real]}]); list each file once",
                               *loc, "paths", j)
            where_from[real] = j
        files.extend(found)
    return files
