"""Stable Diffusion 3.x: a flow-matching transformer with three text encoders (``generation.sd3``)."""

from __future__ import annotations

from pydantic import Field

from ..common.fields import Int, Strict_
from .base import Family


class SD3Settings(Strict_):
    max_sequence_length: Int = Field(256, ge=1, le=512, description="T5 tokens of the prompt")


FAMILY = Family(
    "sd3", "Stable Diffusion 3.x", "StableDiffusion3Pipeline", "StableDiffusion3ControlNetPipeline", "SD3ControlNetModel",
    "transformer", ("StableDiffusion3Pipeline",), cuda_dtype="bfloat16", control_arg="control_image", flow_matching=True,
    ip_adapter=True, settings=SD3Settings, call_arguments=lambda s, size: {"max_sequence_length": s.max_sequence_length},
    nominal=("stable-diffusion-3-medium", {"denoiser": 2028.3e6, "text_encoder": 123.7e6, "text_encoder_2": 694.7e6,
                                           "text_encoder_3": 4762.3e6, "vae": 83.8e6}),
    lora_components=("transformer", "text_encoder", "text_encoder_2"),
    # the original checkpoint's names kohya's SD3 trainers write, which diffusers' SD3 loader does not convert
    lora_names=r"lora_unet_joint_blocks_|^(diffusion_model\.)?joint_blocks\.|context_block\.",
    denoiser_variants=({"dual_attention_layers": (0,)},),  # SD3.5's second attention (attn2)
    single_file_keys=r"joint_blocks\.",
)
ALIASES = {"sd35": "sd3", "sd3.5": "sd3"}
