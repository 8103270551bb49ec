"""Chroma: Flux.1's blocks without their modulation layers (a distilled-guidance approximator instead), one T5 text
encoder, real classifier-free guidance with a negative prompt (``generation.chroma``). Its LoRAs load through
diffusers' Flux loader and name the same blocks as Flux.1's (copyscope.families.lora_families); diffusers 0.42 has
no Chroma ControlNet pipeline."""

from __future__ import annotations

from pydantic import Field

from ..common.fields import Int, Strict_
from .base import Family


class ChromaSettings(Strict_):
    max_sequence_length: Int = Field(512, ge=1, le=512, description="T5 tokens of the prompt")


FAMILY = Family(
    "chroma", "Chroma", "ChromaPipeline", None, None, "transformer", ("ChromaPipeline",), cuda_dtype="bfloat16",
    flow_matching=True,  # FlowMatchEulerDiscreteScheduler
    # ChromaPipeline has Flux's IP-Adapter loader (FluxIPAdapterMixin, the transformer's encoder_hid_proj); its
    # textual-inversion mixin would embed tokens into T5, for which no embeddings circulate (as for Flux: off)
    ip_adapter=True, img2img="ChromaImg2ImgPipeline", settings=ChromaSettings,
    call_arguments=lambda s, size: {"max_sequence_length": s.max_sequence_length},
    # transformer counted from diffusers' default config (the checkpoint's); Flux.1's T5-XXL encoder and VAE
    nominal=("Chroma1-HD", {"denoiser": 8900.0e6, "text_encoder": 4762.3e6, "vae": 83.8e6}),
    # Flux's loader (FluxLoraLoaderMixin), so Flux's converters; its text_encoder is T5, whose names diffusers'
    # text-encoder LoRA loader does not convert ("Could not automatically infer state dict type"): the transformer only
    lora_layouts=frozenset({"diffusers", "kohya", "kohya-mixture", "xlabs"}),
    lora_other_components="stop it after the base has loaded",
    single_file_keys=r"distilled_guidance_layer\.",  # Flux.1's blocks and its own guidance approximator
)
ALIASES = {"chroma1": "chroma", "chroma1-hd": "chroma"}
