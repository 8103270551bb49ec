"""Field types and base models shared by every zoo section (the schema, the generation settings and
the player kinds' specs), the file suffixes, default names (:func:`stem`) and pydantic's error as one
line. A leaf of the config layer: the player kinds import it without the zoo schema."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import field_validator

from ..common.fields import Float, Int, Strict_  # noqa: F401 (the field types, re-exported: every zoo model's)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
MAX_NAME_LENGTH = 100
MAX_WEIGHT = 100.0  # bound of LoRA weights and ControlNet scales

_Strict = Strict_  # the old private name


def check_name(value: str | None) -> str | None:
    # names become file and folder names (the default output folder is copyscope-out/<zoo name>)
    if value is not None and len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"name is {len(value)} characters long; expected at most {MAX_NAME_LENGTH}")
    if value is not None and not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '_', '-' or '.' (no '+' or spaces)"
        )
    return value


_check_name = check_name


class NamedSpec(Strict_):
    """A spec with an optional ``name`` (checked; defaults are filled in after validation)."""

    name: str | None = None

    _name = field_validator("name")(check_name)


def stem(model: str) -> str:
    """A default name from a model path or hub id: its last part without a weights suffix."""
    name = Path(model.rstrip("/")).name
    for suffix in (".safetensors",) + PICKLE_SUFFIXES:
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", name) or "model"


def _pydantic_message(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "model_type":  # "Input should be a valid dictionary or instance of LoraSpec"
        got = err.get("input")
        return f"expected a mapping of keys (key: value), got {got!r}"[:200]
    msg = msg.removeprefix("Value error, ")
    if "input" in err and err["type"] not in ("model_type",) and not isinstance(err["input"], (dict, list)):
        got = repr(err["input"])
        if got not in msg:
            msg += f", got {got if len(got) <= 60 else got[:57] + '...'}"
    return msg
