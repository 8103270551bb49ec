"""Wan text-to-video (Wan2.1 / Wan2.2 ``WanPipeline``): a flow-matching 3-D transformer over a causal video
autoencoder (4x in time, 8x in space, patches of 2x2: sides in multiples of 16), a UMT5 text encoder
(``generation.wan``). Each generation is a video of ``wan.num_frames`` frames (4k + 1, the autoencoder's temporal
stride), which the engine stores as one film-strip image and the scorer scores frame by frame
(docs/metrics.md "Videos").

``generation.guidance`` is the pipeline's ``guidance_scale``: classifier-free guidance with the negative prompt
(on when > 1; the checkpoints' recommended 5.0). Two-transformer Wan2.2 checkpoints (``boundary_ratio``) use it for
both experts (the pipeline's ``guidance_scale_2`` defaults to it). diffusers has no Wan ControlNet pipeline and no
Wan entry in ``AutoPipelineForImage2Image`` (its ``WanVideoToVideoPipeline`` is not an img2img pipeline), so no
ControlNet players and no positive controls."""

from __future__ import annotations

from pydantic import Field, field_validator

from ..common.fields import Int, Strict_
from .base import Family


class WanSettings(Strict_):
    num_frames: Int = Field(81, ge=1, le=1001, description="frames of each video (4k + 1; diffusers' default 81)")
    max_sequence_length: Int = Field(512, ge=1, le=1024, description="UMT5 tokens of the prompt (diffusers' default)")

    @field_validator("num_frames")
    @classmethod
    def _four_k_plus_one(cls, v: int) -> int:
        if (v - 1) % 4:
            raise ValueError(f"Wan generates 4k + 1 frames (its autoencoder compresses time 4x; its pipeline rounds "
                             f"other counts down with a warning), got {v}; expected one of {v - (v - 1) % 4}, "
                             f"{v - (v - 1) % 4 + 4}, ...")
        return v


TWO_EXPERTS = ("copyscope loads a LoRA into its first expert (transformer) only and none into transformer_2 "
               "(diffusers' load_into_transformer_2), so it would apply to part of the denoising")


def _check_base(zoo, index: int) -> None:
    """A Wan2.2 two-expert base (transformer and transformer_2) with LoRA players is refused where its
    model_index.json can be read (a local folder, a cached hub id); the engine refuses it after loading otherwise."""
    from . import model_index

    spec = zoo.spec.bases[index]
    if not zoo.spec.loras:
        return
    local = zoo.resolve_path(spec.model) if zoo.is_local(spec.model) else None
    try:
        index_json = model_index(local, None if local is not None else spec.model, spec.revision)
    except ValueError:  # not JSON: base_family has said so already
        return
    if isinstance(index_json, dict) and (index_json.get("transformer_2") or [None])[0] is not None:
        raise zoo.fail(f"base {spec.name!r} is a two-expert Wan2.2 checkpoint (transformer_2): {TWO_EXPERTS}; expected a "
                       "one-expert Wan base (Wan2.1, Wan2.2 TI2V-5B) for LoRA players", "loras", 0, "model")


FAMILY = Family(
    "wan", "Wan", "WanPipeline", None, None, "transformer", ("WanPipeline",),
    cuda_dtype="bfloat16",  # the checkpoints' transformer dtype (diffusers' docs load it in bfloat16)
    flow_matching=True,  # UniPC with flow sigmas: the SD schedulers do not apply
    img2img=None, size_multiple=16, settings=WanSettings, video=True,
    call_arguments=lambda s, size: {"num_frames": s.num_frames, "max_sequence_length": s.max_sequence_length},
    # its loader reads diffusers/peft names (the original and musubi-tuner layouts it converts are not measured here:
    # copyscope.modelfiles.lora_layouts refuses them), for Wan2.2's second expert too
    lora_components=("transformer", "transformer_2"), check_base=_check_base,
    # transformer and VAE counted from diffusers' default configs (Wan2.1-T2V-14B's: 14.3B); UMT5-XXL's encoder counted
    # from its published config (d_model 4096, 24 layers, 256384 tokens) on the meta device
    nominal=("Wan2.1-T2V-14B", {"denoiser": 14288.5e6, "text_encoder": 5680.9e6, "vae": 126.9e6}),
)
ALIASES = {"wan2.1": "wan", "wan2.2": "wan", "wan-t2v": "wan"}
