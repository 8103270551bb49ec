"""Qwen-Image: a flow-matching MMDiT transformer over a Qwen2.5-VL text encoder (``generation.qwenimage``).

Its classifier-free guidance is ``true_cfg_scale`` with the negative prompt (diffusers' pipeline: CFG runs when
``true_cfg_scale > 1`` and a negative prompt is given); the zoo's ``generation.guidance`` goes to the pipeline's
``guidance_scale``, which only guidance-distilled Qwen-Image transformers read (the released one ignores it).
diffusers' Qwen-Image ControlNet pipeline runs one ControlNet (its ``QwenImageMultiControlNetModel`` holds a single
union ControlNet), so a Qwen-Image base audits at most one ControlNet player.
"""

from __future__ import annotations

from pydantic import Field

from ..common.fields import MAX_GUIDANCE, Float, Int, Strict_
from .base import Family


class QwenImageSettings(Strict_):
    max_sequence_length: Int = Field(512, ge=1, le=1024, description="Qwen2.5-VL tokens of the prompt")
    true_cfg_scale: Float = Field(4.0, ge=1.0, le=MAX_GUIDANCE,
                                  description="> 1 runs classifier-free guidance with the negative prompt")


FAMILY = Family(
    "qwenimage", "Qwen-Image", "QwenImagePipeline", "QwenImageControlNetPipeline", "QwenImageControlNetModel",
    "transformer", ("QwenImagePipeline",), cuda_dtype="bfloat16", control_arg="control_image", negative_prompt=False,
    flow_matching=True, settings=QwenImageSettings,
    call_arguments=lambda s, size: {"max_sequence_length": s.max_sequence_length, "true_cfg_scale": s.true_cfg_scale},
    negative_prompt_if=lambda s: s.true_cfg_scale > 1, max_controlnets=1, size_multiple=16,
    # transformer and VAE counted from diffusers' default configs (the checkpoint's); Qwen2.5-VL-7B-Instruct: its card's
    nominal=("Qwen-Image", {"denoiser": 20430.4e6, "text_encoder": 8.29e9, "vae": 126.9e6}),
    # its converter reads kohya names of its diffusers modules (lora_unet_transformer_blocks_*) and strips trainers'
    # diffusion_model. prefix
    lora_layouts=frozenset({"diffusers", "kohya-transformer"}),
    denoiser_variants=({"guidance_embeds": True, "use_additional_t_cond": True},),
    single_file_keys=r"^(model\.)?(diffusion_model\.)?transformer_blocks\.\d+\.(img|txt)_(mlp|mod)\.",
)
ALIASES = {"qwen-image": "qwenimage", "qwen_image": "qwenimage", "qwen": "qwenimage"}
