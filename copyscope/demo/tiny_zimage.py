"""A random-weight tiny Z-Image pipeline and ControlNet, from configs, offline (found by name by
:mod:`copyscope.demo.tiny_families`).

Sizes follow diffusers' fast tests (tests/pipelines/z_image/test_z_image.py; it has no ControlNet test: the
ControlNet here is ``ZImageControlNetModel`` at the transformer's sizes, one control layer); the tokenizer is
:func:`~copyscope.demo.tiny_families.tiny_qwen_tokenizer` with its chat template (the pipeline formats prompts with
``apply_chat_template``), and the Qwen3 text encoder's vocabulary is that tokenizer's.
"""

from __future__ import annotations

from pathlib import Path

from .tiny import _seeded

DIM, HEADS, REFINERS = 32, 2, 1


def pipeline(seed: int, tmp: Path):
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    from .tiny_families import tiny_qwen_tokenizer

    tok = tiny_qwen_tokenizer(tmp / "tokenizer")
    _seeded(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=DIM, n_layers=2, n_refiner_layers=REFINERS,
        n_heads=HEADS, n_kv_heads=HEADS, norm_eps=1e-5, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
        axes_dims=[8, 4, 4], axes_lens=[256, 32, 32],
    ).eval()
    with torch.no_grad():  # the pad tokens start as torch.empty: fix them, as diffusers' tests do, for deterministic images
        transformer.x_pad_token.fill_(1.0)
        transformer.cap_pad_token.fill_(1.0)
    _seeded(seed + 1)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
                        latent_channels=16, norm_num_groups=32, sample_size=32, scaling_factor=0.3611,
                        shift_factor=0.1159).eval()
    _seeded(seed + 2)
    text_encoder = Qwen3Model(Qwen3Config(
        hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, head_dim=8,
        vocab_size=len(tok), max_position_embeddings=1024, bos_token_id=None, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id,
    )).eval()
    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tok,
                          transformer=transformer)


def controlnet(pipe, seed: int):
    from diffusers import ZImageControlNetModel

    _seeded(seed + 5)
    return ZImageControlNetModel(control_layers_places=[0], control_refiner_layers_places=[0], control_in_dim=16,
                                 all_patch_size=(2,), all_f_patch_size=(1,), dim=DIM, n_refiner_layers=REFINERS,
                                 n_heads=HEADS, n_kv_heads=HEADS)
