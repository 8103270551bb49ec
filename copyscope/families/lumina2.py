"""Lumina-Image 2.0: a flow-matching single-stream transformer with noise and context refiners (Z-Image's transformer
derives from it) over a Gemma2 text encoder, whose prompt the pipeline prefixes with a system prompt
(``generation.lumina2``).

``generation.guidance`` is its classifier-free guidance (``guidance_scale``, on above 1), with the negative prompt (an
empty one when none is given), renormalised to the conditional prediction's norm (``lumina2.cfg_normalization``, on
by default) and applied over the first ``lumina2.cfg_trunc_ratio`` of the steps. diffusers has no Lumina2 ControlNet
and no img2img pipeline: ControlNet players are refused, the positive controls skipped. Its pipeline has no
``from_single_file``: single-file bases are refused.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

from ..common.fields import Float, Int, Strict_
from .base import Family


class Lumina2Settings(Strict_):
    max_sequence_length: Int = Field(256, ge=1, le=1024, description="Gemma tokens of the system prompt and the prompt "
                                     "together (padded to this length; diffusers' default)")
    cfg_normalization: Annotated[bool, Strict()] = Field(
        True, description="rescale the guided prediction to the conditional one's norm (diffusers' default)")
    cfg_trunc_ratio: Float = Field(1.0, ge=0.0, le=1.0, description="guidance stops past this fraction of the steps "
                                   "(1: every step)")
    system_prompt: str | None = Field(
        None, max_length=2000, description="the system prompt put before every prompt (None: the pipeline's own)")


def _call(s: Lumina2Settings, size: tuple[int, int]) -> dict:
    out = {"max_sequence_length": s.max_sequence_length, "cfg_normalization": s.cfg_normalization,
           "cfg_trunc_ratio": s.cfg_trunc_ratio}
    if s.system_prompt is not None:
        out["system_prompt"] = s.system_prompt
    return out


FAMILY = Family(
    "lumina2", "Lumina-Image 2.0", "Lumina2Pipeline", None, None, "transformer", ("Lumina2Pipeline", "Lumina2Text2ImgPipeline"),
    cuda_dtype="bfloat16",  # its Gemma2 text encoder must not run in float16
    flow_matching=True,  # FlowMatchEulerDiscreteScheduler: the SD schedulers do not apply
    img2img=None, settings=Lumina2Settings, call_arguments=_call,
    size_multiple=16,  # check_inputs: height and width divisible by vae_scale_factor * 2
    # Lumina 2's original blocks: Z-Image's names, but its modulation is adaLN_modulation.1 (Z-Image's .0); no
    # from_single_file, so base_family refuses such a file in one line (not a Z-Image mismatch)
    single_file_keys=r"^(model\.)?(diffusion_model\.)?(layers|noise_refiner)\.\d+\.adaLN_modulation\.1\.",
    # transformer counted from diffusers' default config (2.6B, the checkpoint's published size); gemma-2-2b: its
    # card's; Flux.1's VAE, which it uses
    nominal=("Lumina-Image-2.0", {"denoiser": 2606.8e6, "text_encoder": 2.61e9, "vae": 83.8e6}),
)
ALIASES = {"lumina": "lumina2", "lumina-2": "lumina2", "lumina-image-2": "lumina2", "lumina-image-2.0": "lumina2"}
