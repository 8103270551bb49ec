"""Sana: a linear-attention transformer over a 32x deep-compression autoencoder, a Gemma2 text encoder prompted
with a "complex human instruction", aspect-ratio binning of the generated size (``generation.sana``). One ControlNet
at a time (SanaControlNetPipeline takes a single SanaControlNetModel); no img2img pipeline in diffusers, so no
positive controls."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

from ..common.fields import Int, Strict_
from .base import Family

_Bool = Annotated[bool, Strict()]


class SanaSettings(Strict_):
    max_sequence_length: Int = Field(300, ge=1, le=1024, description="Gemma tokens of the prompt")
    use_resolution_binning: _Bool = Field(
        True, description="generate at the nearest of the checkpoint's aspect-ratio bins, then resize to the asked size "
        "(diffusers' default); false: generate at the asked size, a multiple of 32")
    complex_human_instruction: _Bool = Field(
        True, description="prefix the prompt with the pipeline's built-in instruction for Gemma (diffusers' default)")


def _call(s: SanaSettings, size: tuple[int, int]) -> dict:
    out = {"max_sequence_length": s.max_sequence_length, "use_resolution_binning": s.use_resolution_binning}
    if not s.complex_human_instruction:
        out["complex_human_instruction"] = None
    return out


def _check(s: SanaSettings, size: tuple[int, int]) -> str | None:
    if not s.use_resolution_binning and (size[0] % 32 or size[1] % 32):
        return (f"Sana generates sizes divisible by 32 (its autoencoder compresses 32x), got {size[0]}x{size[1]} with "
                "sana.use_resolution_binning off; expected a resolution divisible by 32, or the binning on")
    return None


FAMILY = Family(
    "sana", "Sana", "SanaPipeline", "SanaControlNetPipeline", "SanaControlNetModel", "transformer", ("SanaPipeline",),
    cuda_dtype="bfloat16",  # its Gemma2 text encoder and DC-AE must not run in float16
    control_arg="control_image", max_controlnets=1,
    flow_matching=True,  # a flow-prediction DPM-Solver (use_flow_sigmas): the SD schedulers do not apply
    img2img=None, settings=SanaSettings, call_arguments=_call, check_generation=_check,
    # transformer counted from diffusers' default config (1.6B, the checkpoint's published size); DC-AE: diffusers'
    # default AutoencoderDC counted (not checked against the checkpoint); gemma-2-2b: its card's
    nominal=("Sana_1600M_1024px", {"denoiser": 1604.5e6, "text_encoder": 2.61e9, "vae": 362.9e6}),
    denoiser_variants=({"guidance_embeds": True},),  # Sana Sprint's guidance embedder
)
ALIASES: dict[str, str] = {}
