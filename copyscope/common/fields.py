"""The field types every zoo model is made of (the zoo schema, the generation settings, the pipeline families'
settings, the player kinds' specs): numbers that refuse booleans, NaN and infinities, a base model that refuses
unknown keys, and the bounds a number of pixels or a guidance scale may take. A leaf: imports no copyscope
module, so the families (below the config layer) and the config layer share it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

# Numbers: booleans are not numbers (pydantic would read `true` as 1), and NaN/inf are refused.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
MAX_SIDE = 8192  # pixels of a generated image's side
MAX_GUIDANCE = 1000.0


class Strict_(BaseModel):
    """Base of every zoo model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=False)
