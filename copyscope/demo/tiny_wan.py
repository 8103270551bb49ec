"""A random-weight tiny Wan text-to-video pipeline (``WanPipeline``: a 3-D transformer over a causal video
autoencoder, a UMT5 text encoder), built from configs offline. Wan has no ControlNet pipeline in diffusers.

Sizes follow diffusers' fast tests (tests/pipelines/wan/test_wan.py): a two-layer ``WanTransformer3DModel`` of
patch (1, 2, 2), an ``AutoencoderKLWan`` of base width 3 with temporal downsampling (4x in time, 8x in space), a
two-layer UMT5 of width 32 over :func:`copyscope.demo.tiny_families.tiny_t5_tokenizer`. The scheduler is the real
Wan2.1 checkpoints' (``UniPCMultistepScheduler`` with flow sigmas, flow_shift 3). A 32-px video of 5 frames is two
latent frames of 4x4: a second or so on a CPU core.
"""

from __future__ import annotations

from pathlib import Path

WAN_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
                       out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                       qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def _umt5_text(tok, seed: int):
    from transformers import UMT5Config, UMT5EncoderModel

    from .tiny import _seeded

    _seeded(seed)
    cfg = UMT5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                     decoder_start_token_id=tok.pad_token_id)
    return UMT5EncoderModel(cfg).eval()


def _wan_vae(seed: int):
    from diffusers import AutoencoderKLWan

    from .tiny import _seeded

    _seeded(seed + 1)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True]).eval()


def pipeline(seed: int, tmp: Path):
    from diffusers import UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    from .tiny import _seeded
    from .tiny_families import tiny_t5_tokenizer

    tok = tiny_t5_tokenizer(Path(tmp) / "tokenizer")
    _seeded(seed)
    transformer = WanTransformer3DModel(**WAN_TRANSFORMER).eval()
    # the scheduler of the real Wan2.1 text-to-video checkpoints
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                        num_train_timesteps=1000)
    return WanPipeline(tokenizer=tok, text_encoder=_umt5_text(tok, seed + 2), vae=_wan_vae(seed),
                       transformer=transformer, scheduler=scheduler)


def controlnet(pipe, seed: int):
    """None: diffusers has no Wan ControlNet pipeline."""
    return None
