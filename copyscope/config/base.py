"""Field types and base models shared by every zoo section (the schema, the generation settings and
the player kinds' specs)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
MAX_NAME_LENGTH = 100
MAX_WEIGHT = 100.0  # bound of LoRA weights and ControlNet scales
# Numbers: booleans are not numbers (pydantic would read `true` as 1), and NaN/inf are refused.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class Strict_(BaseModel):
    """Base of every zoo model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=False)


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


