"""Flux.1: a flow-matching transformer with distilled guidance; no negative prompt unless true CFG (``generation.flux``)."""

from __future__ import annotations

from pydantic import Field

from ..common.fields import MAX_GUIDANCE, Float, Int, Strict_
from .base import Family


class FluxSettings(Strict_):
    max_sequence_length: Int = Field(512, ge=1, le=512, description="T5 tokens of the prompt")
    true_cfg_scale: Float = Field(1.0, ge=1.0, le=MAX_GUIDANCE,
                                  description="> 1 runs real classifier-free guidance with the negative prompt")


FAMILY = Family(
    "flux", "Flux.1", "FluxPipeline", "FluxControlNetPipeline", "FluxControlNetModel", "transformer", ("FluxPipeline",),
    cuda_dtype="bfloat16", control_arg="control_image", negative_prompt=False, flow_matching=True, ip_adapter=True,
    settings=FluxSettings,
    call_arguments=lambda s, size: {"max_sequence_length": s.max_sequence_length, "true_cfg_scale": s.true_cfg_scale},
    negative_prompt_if=lambda s: s.true_cfg_scale > 1,
    nominal=("FLUX.1-dev", {"denoiser": 11901.4e6, "text_encoder": 123.1e6, "text_encoder_2": 4762.3e6, "vae": 83.8e6}),
    lora_layouts=frozenset({"diffusers", "kohya", "kohya-mixture", "xlabs"}), lora_components=("transformer", "text_encoder"),
    denoiser_variants=({"guidance_embeds": True},),  # FLUX.1-dev's guidance embedder
    single_file_keys=r"double_blocks\.|single_blocks\.",
)
ALIASES = {"flux1": "flux", "flux.1": "flux"}
