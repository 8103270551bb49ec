"""Stable Diffusion XL: micro-conditioning settings (``generation.sdxl``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

from ..common.fields import MAX_SIDE, Strict_
from .base import Family

# sizes are positive, crop offsets >= 0, both within the largest image; strict integers (a boolean is not a coordinate)
_Side = Annotated[int, Strict(), Field(ge=1, le=MAX_SIDE)]
_Offset = Annotated[int, Strict(), Field(ge=0, le=MAX_SIDE)]


class SDXLSettings(Strict_):
    """SDXL micro-conditioning (sizes as [height, width]); null sizes mean the generated size."""

    original_size: tuple[_Side, _Side] | None = None
    target_size: tuple[_Side, _Side] | None = None
    crops_coords_top_left: tuple[_Offset, _Offset] = (0, 0)


def _call(s: SDXLSettings, size: tuple[int, int]) -> dict:
    return {
        "original_size": tuple(s.original_size or size),
        "target_size": tuple(s.target_size or size),
        "crops_coords_top_left": tuple(s.crops_coords_top_left),
    }


FAMILY = Family(
    "sdxl", "Stable Diffusion XL", "StableDiffusionXLPipeline", "StableDiffusionXLControlNetPipeline", "ControlNetModel",
    "unet", ("StableDiffusionXLPipeline",), load_kwargs={"add_watermarker": False}, ip_adapter=True,
    textual_inversion=True, settings=SDXLSettings, call_arguments=_call,
    nominal=("stable-diffusion-xl-base-1.0", {"denoiser": 2567.5e6, "text_encoder": 123.1e6, "text_encoder_2": 694.7e6,
                                              "vae": 83.7e6}),
    lora_layouts=frozenset({"diffusers", "diffusers-legacy", "kohya"}),
    lora_components=("unet", "text_encoder", "text_encoder_2"),
    # a second text encoder; more than one transformer layer per block (SGM names: input_blocks.4.1)
    lora_names=r"^text_encoder_2\.|^lora_te2_|^(unet\.|lora_unet_).*transformer_blocks[._]([1-9]\d*)[._]|lora_unet_input_blocks_4_1_",
    single_file_keys=r"^conditioner\.embedders\.1",
)
ALIASES: dict[str, str] = {}
