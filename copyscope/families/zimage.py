"""Z-Image: a flow-matching single-stream transformer over a Qwen3 text encoder (``generation.zimage``).

``generation.guidance`` is its classifier-free guidance (``guidance_scale``; 0 turns it off, as Z-Image-Turbo is
run), with the negative prompt (an empty one when none is given). diffusers' Z-Image ControlNet pipeline takes one
ControlNet (there is no multi-ControlNet model for it), so a Z-Image base audits at most one ControlNet player.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

from ..common.fields import Float, Int, Strict_
from .base import Family


class ZImageSettings(Strict_):
    max_sequence_length: Int = Field(512, ge=1, le=1024, description="Qwen3 tokens of the prompt (padded to this length)")
    cfg_normalization: Annotated[bool, Strict()] = Field(
        False, description="cap the guided prediction's norm at the conditional one's")
    cfg_truncation: Float = Field(1.0, ge=0.0, le=1.0, description="guidance stops past this fraction of the schedule")


FAMILY = Family(
    "zimage", "Z-Image", "ZImagePipeline", "ZImageControlNetPipeline", "ZImageControlNetModel", "transformer",
    ("ZImagePipeline",), cuda_dtype="bfloat16", control_arg="control_image", flow_matching=True, settings=ZImageSettings,
    call_arguments=lambda s, size: {"max_sequence_length": s.max_sequence_length, "cfg_normalization": s.cfg_normalization,
                                    "cfg_truncation": s.cfg_truncation},
    max_controlnets=1, size_multiple=16,
    # transformer counted from diffusers' default config (the checkpoint's); Qwen3-4B: its card's; Flux.1's VAE
    nominal=("Z-Image-Turbo", {"denoiser": 6154.9e6, "text_encoder": 4.02e9, "vae": 83.8e6}),
    lora_layouts=frozenset({"diffusers", "kohya"}),
    single_file_keys=r"^(model\.)?(diffusion_model\.)?((noise|context)_refiner\.\d+|layers\.\d+\.(attention|feed_forward|adaLN_modulation))\.",
)
ALIASES = {"z-image": "zimage", "z_image": "zimage", "z-image-turbo": "zimage"}
