"""A random-weight tiny Qwen-Image pipeline and ControlNet, from configs, offline (found by name by
:mod:`copyscope.demo.tiny_families`).

Sizes follow diffusers' fast tests (tests/pipelines/qwenimage/test_qwenimage.py, test_qwenimage_controlnet.py); the
tokenizer is :func:`~copyscope.demo.tiny_families.tiny_qwen_tokenizer` (diffusers' tests download a hub one), and the
Qwen2.5-VL text encoder's vocabulary is that tokenizer's (its image / video token ids point past it: the pipeline
never passes images to it).
"""

from __future__ import annotations

from pathlib import Path

from .tiny import _seeded

TRANSFORMER = dict(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
                   joint_attention_dim=16, axes_dims_rope=(8, 4, 4))


def _text_encoder(tok, seed: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    n = len(tok)
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    _seeded(seed)
    cfg = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "rope_theta": 1e6, "vocab_size": n, "bos_token_id": None,
                     "eos_token_id": eos, "pad_token_id": pad,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=n, bos_token_id=None, eos_token_id=eos, pad_token_id=pad, image_token_id=n,
        video_token_id=n, vision_start_token_id=n, vision_end_token_id=n, vision_token_id=n,
    )
    return Qwen2_5_VLForConditionalGeneration(cfg).eval()


def pipeline(seed: int, tmp: Path):
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel

    from .tiny_families import tiny_qwen_tokenizer

    tok = tiny_qwen_tokenizer(tmp / "tokenizer")
    _seeded(seed)
    transformer = QwenImageTransformer2DModel(guidance_embeds=False, **TRANSFORMER).eval()
    _seeded(seed + 1)
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
                                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4).eval()
    return QwenImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_text_encoder(tok, seed + 2),
                             tokenizer=tok, transformer=transformer)


def controlnet(pipe, seed: int):
    from diffusers import QwenImageControlNetModel

    _seeded(seed + 5)
    return QwenImageControlNetModel(**{**TRANSFORMER, "num_layers": 1})
