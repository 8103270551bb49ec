"""A random-weight tiny Flux.2 pipeline (``Flux2Pipeline``: a Flux.2 transformer, ``AutoencoderKLFlux2``, a Mistral-3
text encoder), built from configs offline (found by name by :mod:`copyscope.demo.tiny_families`).

Sizes follow diffusers' fast test (tests/pipelines/flux2/test_pipeline_flux2.py), except that the text encoder has
30 layers (16 wide) so the pipeline's default ``text_encoder_out_layers`` (10, 20, 30) apply, and the VAE halves
once. That test downloads a Mistral processor; here the tokenizer is a byte-level BPE made locally (WORDS and the
words of the pipeline's system message as whole tokens, so the system message stays short and the prompt is not
truncated away) with a chat template that reads the pipeline's list-of-parts messages. diffusers 0.42 has no Flux.2
ControlNet: :func:`controlnet` returns None.
"""

from __future__ import annotations

import re
from pathlib import Path

from .tiny import WORDS, _seeded

TEXT_HIDDEN, TEXT_LAYERS = 16, 30
# the pipeline's messages: [{"role": ..., "content": [{"type": "text", "text": ...}]}]
CHAT_TEMPLATE = ("{% for message in messages %}[{{ message['role'] }}]{% for part in message['content'] %}"
                 "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}</s>{% endfor %}")


def tiny_mistral_tokenizer(dir: Path):
    """A byte-level BPE tokenizer (the 256 byte symbols; WORDS, the system message's words and the roles as whole tokens,
    with and without a leading space; ``<unk>``, ``<s>``, ``</s>``, ``<pad>``) with :data:`CHAT_TEMPLATE`, saved to
    ``dir`` and loaded back."""
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE
    from transformers import Qwen2Tokenizer

    from .tiny import _bpe, _bytes_to_unicode

    byte = _bytes_to_unicode()
    vocab = {byte[b]: b for b in range(256)}
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    words = list(WORDS) + re.findall(r"[A-Za-z]+", SYSTEM_MESSAGE) + ["system", "user"]
    for w in dict.fromkeys(words):
        for word in (w, byte[ord(" ")] + w):
            while len(symbols := _bpe(list(word), ranks)) > 1:  # add merges until the word is one token
                ranks[symbols[0], symbols[1]] = len(merges)
                merges.append((symbols[0], symbols[1]))
                vocab.setdefault(symbols[0] + symbols[1], len(vocab))
    for special in ("<unk>", "<s>", "</s>", "<pad>"):
        vocab[special] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                         pad_token="<pad>", model_max_length=32768)
    tok.chat_template = CHAT_TEMPLATE
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(dir))
    return Qwen2Tokenizer.from_pretrained(str(dir))


def pipeline(seed: int, tmp: Path):
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2Pipeline, Flux2Transformer2DModel
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    tok = tiny_mistral_tokenizer(Path(tmp) / "tokenizer")
    _seeded(seed)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=8, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=3 * TEXT_HIDDEN, timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4],
    ).eval()
    _seeded(seed + 1)
    vae = AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
                             latent_channels=2, norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False).eval()
    special = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    _seeded(seed + 2)
    text_encoder = Mistral3ForConditionalGeneration(Mistral3Config(
        text_config=dict(model_type="mistral", vocab_size=len(tok), hidden_size=TEXT_HIDDEN, intermediate_size=16,
                         max_position_embeddings=1024, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                         num_hidden_layers=TEXT_LAYERS, rms_norm_eps=1e-5, rope_theta=1e9, sliding_window=None, **special),
        vision_config=dict(model_type="pixtral", hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=16, image_size=30, patch_size=6, num_channels=3),
        image_seq_length=4, vision_feature_layer=-1, image_token_index=tok.unk_token_id, **special,
    )).eval()
    return Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tok,
                         transformer=transformer)


def controlnet(pipe, seed: int):
    """diffusers has no Flux.2 ControlNet (copyscope refuses ControlNet players on a Flux.2 base)."""
    return None
