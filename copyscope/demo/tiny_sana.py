"""A random-weight tiny Sana pipeline (``SanaPipeline``: a linear-attention transformer, a deep-compression
autoencoder, a Gemma2 text encoder) and its ControlNet (``SanaControlNetModel``), built from configs offline.

Sizes follow diffusers' fast tests (tests/pipelines/sana/test_sana.py, test_sana_controlnet.py,
tests/lora/test_lora_layers_sana.py): a two-layer transformer, an ``AutoencoderDC`` of two blocks, a one-layer
Gemma2 of width 8. The Gemma tokenizer is made here (:func:`tiny_gemma_tokenizer`: a BPE over characters whose
merges spell the tiny CLIP tokenizer's words), so nothing comes from the hub. The scheduler is the real
checkpoints' (``DPMSolverMultistepScheduler`` with flow sigmas, flow_shift 3). ``sample_size`` 32 is that of the
1024-px checkpoints: with ``sana.use_resolution_binning`` on (diffusers' default) a 32-px image is generated at
1024 px and resized, so tests switch binning off.
"""

from __future__ import annotations

from pathlib import Path

SANA_TRANSFORMER = dict(patch_size=1, in_channels=4, out_channels=4, num_layers=2, num_attention_heads=2,
                        attention_head_dim=4, num_cross_attention_heads=2, cross_attention_head_dim=4,
                        cross_attention_dim=8, caption_channels=8, sample_size=32)
# a ControlNet's block i is added after the transformer's block i + 1 (none after the first): two transformer
# layers, so that the ControlNet's one layer reaches the second


def tiny_gemma_tokenizer(dir: Path, words: tuple[str, ...] = ()):
    """A Gemma tokenizer (BPE over single characters and the metaspace, with merges that spell WORDS and ``words``,
    lower-case letters only) saved to ``dir`` and loaded back."""
    from transformers import GemmaTokenizer

    from .tiny import WORDS

    chars = "abcdefghijklmnopqrstuvwxyz0123456789,.-'!?:;\"()"
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "▁", "\n", *chars, *("▁" + c for c in chars)]
    merges = [("▁", c) for c in chars]
    for word in dict.fromkeys((*WORDS, *words)):
        piece = "▁" + word[0]
        for c in word[1:]:
            merges.append((piece, c))
            piece += c
            tokens.append(piece)
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    merges = list(dict.fromkeys(merges))
    tok = GemmaTokenizer(vocab=vocab, merges=merges, model_max_length=4096)
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(dir))
    return GemmaTokenizer.from_pretrained(str(dir))


def _gemma_text(tok, seed: int):
    from transformers import Gemma2Config, Gemma2Model

    from .tiny import _seeded

    _seeded(seed)
    cfg = Gemma2Config(head_dim=16, hidden_size=8, intermediate_size=16, max_position_embeddings=8192,
                       num_attention_heads=2, num_hidden_layers=1, num_key_value_heads=2, vocab_size=len(tok),
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                       attn_implementation="eager")
    return Gemma2Model(cfg).eval()


def _dc_vae(seed: int):
    from diffusers import AutoencoderDC

    from .tiny import _seeded

    _seeded(seed + 1)
    return AutoencoderDC(
        in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"), encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8), encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1), downsample_block_type="conv",
        upsample_block_type="interpolate", decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407,
    ).eval()


def pipeline(seed: int, tmp: Path):
    from diffusers import DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel

    from .tiny import _seeded

    tok = tiny_gemma_tokenizer(Path(tmp) / "tokenizer")
    _seeded(seed)
    transformer = SanaTransformer2DModel(**SANA_TRANSFORMER).eval()
    # the scheduler of the real Sana checkpoints (flow-matching DPM-Solver++)
    scheduler = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", prediction_type="flow_prediction",
                                            use_flow_sigmas=True, flow_shift=3.0, solver_order=2)
    return SanaPipeline(tokenizer=tok, text_encoder=_gemma_text(tok, seed + 2), vae=_dc_vae(seed),
                        transformer=transformer, scheduler=scheduler)


def controlnet(pipe, seed: int):
    """A ``SanaControlNetModel`` of the tiny transformer's shape (its zero projections are randomised by
    :func:`copyscope.demo.tiny_families.tiny_family_controlnet`)."""
    from diffusers import SanaControlNetModel

    from .tiny import _seeded

    _seeded(seed + 5)
    return SanaControlNetModel(**{**SANA_TRANSFORMER, "num_layers": 1})
