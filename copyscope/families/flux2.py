"""Flux.2: a flow-matching transformer with distilled guidance over a Mistral-3 (Mistral Small 3.1) text encoder
(``generation.flux2``).

diffusers' ``Flux2Pipeline`` takes no negative prompt and has no true CFG: the zoo's ``generation.guidance`` goes to
its ``guidance_scale``, the distilled guidance embedded in the transformer (FLUX.2-dev's default is 4). Its text
embeddings stack the encoder's hidden states of layers 10, 20 and 30 (the pipeline's default, kept). Its LoRAs load
through ``Flux2LoraLoaderMixin`` (the transformer only); their diffusers names differ from Flux.1's where the modules
differ (the fused single-block projection, the shared modulations, the feed-forwards' ``linear_in`` / ``linear_out``:
copyscope.families.lora_families). diffusers 0.42 has no Flux.2 ControlNet pipeline (ControlNet players refused),
no Flux.2 img2img pipeline for ``AutoPipelineForImage2Image`` (Flux2Pipeline edits reference images instead: not
used, positive controls skipped), no IP-Adapter or textual-inversion loader for it.
"""

from __future__ import annotations

from pydantic import Field

from ..common.fields import Int, Strict_
from .base import Family


class Flux2Settings(Strict_):
    max_sequence_length: Int = Field(512, ge=1, le=512, description="Mistral-3 tokens of the prompt (with its system message)")


FAMILY = Family(
    "flux2", "Flux.2", "Flux2Pipeline", None, None, "transformer", ("Flux2Pipeline",), cuda_dtype="bfloat16",
    negative_prompt=False, flow_matching=True,  # FlowMatchEulerDiscreteScheduler
    img2img=None, settings=Flux2Settings,
    call_arguments=lambda s, size: {"max_sequence_length": s.max_sequence_length},
    # the real VAE halves 3 times and the latents are packed in 2x2 patches: check_inputs resizes other sides
    size_multiple=16,
    # transformer and VAE counted from diffusers' default configs (the checkpoint's); Mistral-Small-3.1-24B: its card's
    nominal=("FLUX.2-dev", {"denoiser": 32223.3e6, "text_encoder": 24.0e9, "vae": 84.05e6}),
    # its converters read BFL / ai-toolkit names (diffusion_model.double_blocks.*) and kohya's of the original blocks
    lora_layouts=frozenset({"diffusers", "kohya", "bfl"}),
)
ALIASES = {"flux.2": "flux2", "flux-2": "flux2", "flux2-dev": "flux2"}
