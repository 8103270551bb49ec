"""A random-weight tiny Chroma pipeline (``ChromaPipeline``: Flux.1's blocks without the modulation layers, a
distilled-guidance approximator, one T5 text encoder), built from configs offline.

Sizes follow diffusers' fast test (tests/pipelines/chroma/test_pipeline_chroma.py), with the transformer's
blocks as wide as the tiny Flux.1 one's (:data:`copyscope.demo.tiny_families.FLUX_TRANSFORMER`), so a tiny Flux.1
LoRA names layers of the same shapes here (what a Flux.1 LoRA on a real Chroma base does). The T5 tokenizer is
made locally (:func:`copyscope.demo.tiny_families.tiny_t5_tokenizer`). diffusers 0.42 has no Chroma ControlNet
pipeline: :func:`controlnet` returns None.
"""

from __future__ import annotations

from pathlib import Path

# FLUX_TRANSFORMER's blocks (the same attention widths), with Chroma's approximator in place of Flux's modulation
CHROMA_TRANSFORMER = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                          num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=[4, 4, 8],
                          approximator_hidden_dim=32, approximator_layers=1, approximator_num_channels=16)


def pipeline(seed: int, tmp: Path):
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    from .tiny import _seeded
    from .tiny_families import _flow_vae, _t5_text, tiny_t5_tokenizer

    t5 = tiny_t5_tokenizer(Path(tmp) / "tokenizer")
    _seeded(seed)
    transformer = ChromaTransformer2DModel(**CHROMA_TRANSFORMER).eval()
    return ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flow_vae(seed, 4),
                          text_encoder=_t5_text(t5, seed + 4), tokenizer=t5, transformer=transformer)


def controlnet(pipe, seed: int):
    """diffusers has no Chroma ControlNet (copyscope refuses ControlNet players on a Chroma base)."""
    return None
