"""``generation:`` settings of a zoo file: size, steps, guidance, scheduler, seeds, batch, dtype,
device, and the family-specific settings (each part of the image keys of its family only)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, ValidationError, create_model, field_validator, model_validator

from ..common.fields import MAX_GUIDANCE, MAX_SIDE  # noqa: F401 (the bounds, re-exported)
from .base import Float as _Float, Int as _Int, Strict_ as _Strict

# Seeds seed a torch.Generator, which takes 0 <= seed < 2**64; the others bound what one machine can
# hold or finish (docs/robustness.md).
MAX_SEED = 2**63 - 1
MAX_SEEDS = 100_000
MAX_BATCH = 4096

# zoo name -> diffusers scheduler class; the only list of schedulers (validated here, applied by the engine)
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "ddpm": "DDPMScheduler",
    "unipc": "UniPCMultistepScheduler",
}



def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class AdaptiveSeeds(_Strict):
    """``generation.seeds: {min, max, target, rho, levels}``: seeds in rounds until the headline verdict is
    decided (the round loop is copyscope/estimate/adaptive.py, the statistics
    copyscope/estimate/shapley/sequential.py). The seeds are 0, 1, 2, ...: a round of ``m`` seeds uses the
    same images as ``seeds: m``."""

    # 3, not 2: at 2 seeds the t quantile has 1 degree of freedom, and at the level a first look
    # spends (about 0.001 per player) it is over 300: a look at 2 seeds could never decide
    min: _Int = Field(4, ge=3, le=MAX_SEEDS, description="seeds of the first round")
    max: _Int = Field(64, ge=3, le=MAX_SEEDS, description="most seeds; the last round")
    target: _Float | None = Field(None, gt=0, description="stop when every headline interval is at most this wide")
    rho: _Float = Field(1.0, gt=0, le=10, description="alpha spending alpha * (m / max)**rho; 1: in proportion to the seeds")
    levels: Literal["exact", "union"] = Field(
        "exact", description="exact: group-sequential test levels for nested seed prefixes (spend exactly alpha); "
                             "union: the union bound over looks (conservative, no assumption on how the looks correlate)")

    @model_validator(mode="after")
    def _order(self):
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        return self


Quantization = Literal["none", "int8", "nf4", "fp8"]


class QuantizeSettings(_Strict):
    """``generation.memory.quantize``: the denoiser's and the text encoders' weights through diffusers' quantisation
    (int8 / nf4: bitsandbytes; fp8: torchao). Changes pixels: part of the image key."""

    denoiser: Quantization = "none"
    text_encoders: Quantization = "none"


class MemorySettings(_Strict):
    """``generation.memory``: how the pipeline fits the GPU (docs/scale.md "Memory plans"). Offloading moves weights
    between CPU and GPU and leaves the arithmetic as it is; VAE tiling and slicing and quantisation change the
    computation, so they join the image key (only when set: keys of audits without them do not change)."""

    offload: Literal["none", "model", "sequential"] = "none"
    vae_tiling: Annotated[bool, Strict()] = False
    vae_slicing: Annotated[bool, Strict()] = False
    quantize: QuantizeSettings = QuantizeSettings()

    def image_key(self) -> dict:
        """The settings that change pixels and differ from the default ({} for the default plan)."""
        out = {k: v for k, v in (("vae_tiling", self.vae_tiling), ("vae_slicing", self.vae_slicing)) if v}
        quant = {k: v for k, v in self.quantize.model_dump().items() if v != "none"}
        return {**out, **({"quantize": quant} if quant else {})}


class _GenerationCommon(_Strict):
    """The settings every family shares; :data:`GenerationSpec` adds each registered family's own."""

    resolution: Any = 512  # an integer or [height, width]: checked by _resolution
    steps: _Int = Field(30, ge=1, le=10_000)
    guidance: _Float = Field(7.5, ge=0, le=MAX_GUIDANCE)
    scheduler: str | None = Field(None, description="ddim, euler, euler_a, dpm, pndm, lms, or null for the base's own")
    seeds: Any = 4  # a count, a list of distinct seeds, or adaptive {min, max, target, rho}: checked by _seeds
    batch_size: _Int = Field(4, ge=1, le=MAX_BATCH)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N, mps or xpu")
    compile: Annotated[bool, Strict()] = Field(
        False, description="torch.compile the UNet (GPU; one compile per adapter set, docs/scale.md)")
    memory: MemorySettings = MemorySettings()

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v):
        # whether it applies to the base's family is checked with the families (players.check_player_families)
        if v is not None and v not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {v!r}; expected one of {', '.join(sorted(SCHEDULERS))}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if is_int(v):
            if v < 1:
                raise ValueError("need at least one seed")
            if v > MAX_SEEDS:
                raise ValueError(f"{v} seeds is too many; expected at most {MAX_SEEDS}")
            return v
        if isinstance(v, AdaptiveSeeds):
            return v
        if isinstance(v, dict):  # adaptive seeds: one line naming the inner key
            from .base import _pydantic_message

            try:
                return AdaptiveSeeds.model_validate(v)
            except ValidationError as exc:
                e = exc.errors()[0]
                key = ".".join(str(p) for p in e["loc"])
                raise ValueError(f"{key + ': ' if key else ''}{_pydantic_message(e)}") from None
        if not isinstance(v, list):
            raise ValueError(f"expected a number of seeds or a list of seeds (or adaptive {{min, max, target}}), got {v!r}")
        if not v:
            raise ValueError("need at least one seed")
        if len(v) > MAX_SEEDS:
            raise ValueError(f"{len(v)} seeds is too many; expected at most {MAX_SEEDS}")
        for i, seed in enumerate(v):
            if not is_int(seed) or not 0 <= seed <= MAX_SEED:
                raise ValueError(f"seeds[{i}] is {seed!r}; expected an integer from 0 to 2**63-1")
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if not re.match(r"^(auto|cpu|mps|(cuda|xpu)(:\d{1,3})?)$", v):
            raise ValueError(f"unknown device {v!r}; expected auto, cpu, cuda, cuda:N, mps or xpu")
        return v

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v):
        if is_int(v):
            sizes = (v, v)
        elif isinstance(v, list) and len(v) == 2 and all(is_int(s) for s in v):
            sizes = v = tuple(v)
        else:
            raise ValueError(f"expected an integer or [height, width] (two integers), got {v!r}")
        if any(s < 8 or s % 8 for s in sizes):
            raise ValueError(f"resolution must be a positive multiple of 8, got {v!r}")
        if any(s > MAX_SIDE for s in sizes):
            raise ValueError(f"resolution {v!r} is too large; expected at most {MAX_SIDE} pixels a side")
        return v

    @property
    def seed_list(self) -> list[int]:
        if isinstance(self.seeds, AdaptiveSeeds):  # every seed the last round may use
            return list(range(self.seeds.max))
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.resolution, self.resolution) if isinstance(self.resolution, int) else tuple(self.resolution)


def _generation_spec() -> type[_GenerationCommon]:
    """``generation:``: the common settings plus ``generation.<family>`` for every registered family with settings of
    its own (copyscope/families/), each part of the image keys of its family only."""
    from ..families import FAMILIES

    fields = {f.name: (f.settings, f.settings()) for f in FAMILIES.values() if f.settings is not None}
    return create_model("GenerationSpec", __base__=_GenerationCommon, __module__=__name__, **fields)


GenerationSpec = _generation_spec()
