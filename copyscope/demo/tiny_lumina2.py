"""A random-weight tiny Lumina-Image 2.0 pipeline (``Lumina2Pipeline``: a Lumina2 transformer with noise and context
refiners, an ``AutoencoderKL``, a Gemma2 text encoder), built from configs offline (found by name by
:mod:`copyscope.demo.tiny_families`).

Sizes follow diffusers' fast test (tests/pipelines/lumina2/test_pipeline_lumina2.py: a two-layer transformer with
``multiple_of`` 16 and rotary axes 4 + 2 + 2), with two heads of width 8 and a Gemma2 (the real checkpoint's encoder
class; the test uses Gemma) of two layers, since the pipeline takes the second-to-last hidden state. The pipeline
fixes ``vae_scale_factor`` at 8 whatever the VAE, so the VAE here halves three times (four blocks) and a 32-px image
is made at 32 px. The tokenizer is :func:`copyscope.demo.tiny_sana.tiny_gemma_tokenizer`, with the words of the
pipeline's system prompt as whole tokens, so that the prompt the pipeline prefixes with it stays short. diffusers
0.42 has no Lumina2 ControlNet: :func:`controlnet` returns None.
"""

from __future__ import annotations

import re
from pathlib import Path

from .tiny import _seeded

TRANSFORMER = dict(sample_size=4, patch_size=2, in_channels=4, hidden_size=16, num_layers=2, num_refiner_layers=1,
                   num_attention_heads=2, num_kv_heads=1, multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5,
                   scaling_factor=1.0, axes_dim_rope=[4, 2, 2], axes_lens=[300, 64, 64], cap_feat_dim=8)
SYSTEM_PROMPT = ("You are an assistant designed to generate superior images with the superior degree of image-text "
                 "alignment based on textual prompts or user prompts.")  # Lumina2Pipeline's own


def pipeline(seed: int, tmp: Path):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    from .tiny_sana import tiny_gemma_tokenizer

    tok = tiny_gemma_tokenizer(Path(tmp) / "tokenizer", words=tuple(re.findall(r"\b[a-z][a-z-]*\b", SYSTEM_PROMPT)))
    _seeded(seed)
    transformer = Lumina2Transformer2DModel(**TRANSFORMER).eval()
    _seeded(seed + 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=32, use_quant_conv=False,
                        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035).eval()
    _seeded(seed + 2)
    text_encoder = Gemma2Model(Gemma2Config(
        head_dim=4, hidden_size=8, intermediate_size=16, max_position_embeddings=1024, num_attention_heads=2,
        num_hidden_layers=2, num_key_value_heads=2, vocab_size=len(tok), pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, attn_implementation="eager")).eval()
    return Lumina2Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                           text_encoder=text_encoder, tokenizer=tok)


def controlnet(pipe, seed: int):
    return None  # diffusers has no Lumina2 ControlNet
