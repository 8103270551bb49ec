"""Random-weight tiny pipelines of every family (SD1.x, SDXL, SD3, Flux.1 here; the other families, Qwen-Image,
Z-Image, Chroma, Sana, Flux.2, Lumina 2 and Wan, in ``copyscope/demo/tiny_<family>.py``, found by name), built from
configs offline.

Sizes follow diffusers' own fast tests (tests/pipelines/stable_diffusion_xl, stable_diffusion_3,
flux and their ControlNet tests) but every tokenizer is made here: the CLIP ones from
:func:`copyscope.demo.tiny.write_tokenizer_files`, the T5 one as a Unigram ``tokenizer.json``
(:func:`tiny_t5_tokenizer`), the Qwen one (Qwen-Image's Qwen2.5-VL and Z-Image's Qwen3 encoders) as a byte-level
BPE (:func:`tiny_qwen_tokenizer`; Sana's and Lumina 2's Gemma one is :func:`copyscope.demo.tiny_sana.tiny_gemma_tokenizer`), so
nothing comes from the hub. :func:`save_tiny_family_zoo` writes a base
folder, a LoRA file and a ControlNet folder of one family plus a control image, for tests and benches.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from .tiny import WORDS, _seeded, control_image, tiny_tokenizer, tiny_vae, write_tokenizer_files

BUILTIN = ("sd", "sdxl", "sd3", "flux")


def _family_module(family: str):
    """``copyscope/demo/tiny_<family>.py``: another family's tiny pipeline, in a module of its own, with
    ``pipeline(seed, tmp) -> pipe`` and ``controlnet(pipe, seed) -> model`` (None where the family has none)."""
    name = f"{__package__}.tiny_{family}"
    return importlib.import_module(name) if importlib.util.find_spec(name) is not None else None


def _family_names() -> tuple[str, ...]:
    from ..families import FAMILIES

    return BUILTIN + tuple(f for f in FAMILIES if f not in BUILTIN and _family_module(f) is not None)


FAMILY_NAMES = _family_names()  # the families with a tiny pipeline here


def tiny_t5_tokenizer(dir: Path):
    """A T5 tokenizer (Unigram over WORDS plus single characters) saved to ``dir`` and loaded back."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789,.-'!?"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + w, -1.0) for w in dict.fromkeys(WORDS)] + [(c, -5.0) for c in chars] + [("▁" + c, -4.0) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.save(str(dir / "tokenizer.json"))
    t5 = T5TokenizerFast(tokenizer_file=str(dir / "tokenizer.json"), eos_token="</s>", pad_token="<pad>",
                         unk_token="<unk>", extra_ids=0, model_max_length=512)
    t5.save_pretrained(str(dir))
    return T5TokenizerFast.from_pretrained(str(dir))


# the words of Qwen-Image's prompt template, so that its first 34 tokens (which its pipeline drops) are the template's
# as with the real tokenizer, and of the chat roles
QWEN_TEMPLATE_WORDS = ("system Describe the image by detailing color shape size texture quantity text spatial relationships of "
                       "objects and background user assistant").split()
# a minimal Qwen chat template (Z-Image's pipeline calls apply_chat_template); Qwen3's own adds only tool and thinking parts
QWEN_CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_qwen_tokenizer(dir: Path):
    """A Qwen2 byte-level BPE tokenizer (the 256 byte symbols, WORDS and the template words as whole tokens, with and
    without a leading space; ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``) and a chat template, saved to ``dir``
    and loaded back."""
    from transformers import Qwen2Tokenizer

    from .tiny import _bpe, _bytes_to_unicode

    byte = _bytes_to_unicode()
    vocab = {byte[b]: b for b in range(256)}
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for w in dict.fromkeys(list(WORDS) + QWEN_TEMPLATE_WORDS):
        for word in (w, byte[ord(" ")] + w):
            while len(symbols := _bpe(list(word), ranks)) > 1:  # add merges until the word is one token
                ranks[symbols[0], symbols[1]] = len(merges)
                merges.append((symbols[0], symbols[1]))
                vocab.setdefault(symbols[0] + symbols[1], len(vocab))
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                         additional_special_tokens=["<|im_start|>", "<|im_end|>"], model_max_length=32768)
    tok.chat_template = QWEN_CHAT_TEMPLATE
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(dir))
    return Qwen2Tokenizer.from_pretrained(str(dir))


def _clip_text(tok, seed: int, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    _seeded(seed)
    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                         num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, projection_dim=32,
                         hidden_act="gelu")
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _t5_text(tok, seed: int):
    from transformers import T5Config, T5EncoderModel

    _seeded(seed)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                   decoder_start_token_id=tok.pad_token_id)
    return T5EncoderModel(cfg).eval()


def _flow_vae(seed: int, latent_channels: int):
    from diffusers import AutoencoderKL

    _seeded(seed + 1)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 64), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=32, sample_size=32,
                         use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                         scaling_factor=1.5035).eval()


def _sdxl(seed: int, tmp: Path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tok = tiny_tokenizer(tmp / "tokenizer")
    _seeded(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80, cross_attention_dim=64,  # 6 * 8 + 32; 32 + 32
    ).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=tiny_vae(seed).eval(), text_encoder=_clip_text(tok, seed + 2), text_encoder_2=_clip_text(tok, seed + 3, True),
        tokenizer=tok, tokenizer_2=tok, unet=unet, scheduler=scheduler, add_watermarker=False,
    )


def _sd3(seed: int, tmp: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tok, t5 = tiny_tokenizer(tmp / "tokenizer"), tiny_t5_tokenizer(tmp / "tokenizer_3")
    _seeded(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=1, in_channels=8, num_layers=2, attention_head_dim=8, num_attention_heads=4,
        joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=64, out_channels=8,
    ).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flow_vae(seed, 8),
        text_encoder=_clip_text(tok, seed + 2, True), tokenizer=tok, text_encoder_2=_clip_text(tok, seed + 3, True),
        tokenizer_2=tok, text_encoder_3=_t5_text(t5, seed + 4), tokenizer_3=t5,
    )


FLUX_TRANSFORMER = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])


def _flux(seed: int, tmp: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tok, t5 = tiny_tokenizer(tmp / "tokenizer"), tiny_t5_tokenizer(tmp / "tokenizer_2")
    _seeded(seed)
    transformer = FluxTransformer2DModel(**FLUX_TRANSFORMER).eval()
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flow_vae(seed, 4), text_encoder=_clip_text(tok, seed + 2),
        tokenizer=tok, text_encoder_2=_t5_text(t5, seed + 4), tokenizer_2=t5, transformer=transformer,
    )


def tiny_family_pipeline(family: str, seed: int = 0, tmp: Path | None = None):
    """A random-weight pipeline of ``family`` (sd, sdxl, sd3, flux, or any with a tiny_<family>.py), deterministic
    from ``seed``.
    ``tmp``: where tokenizer files are written (a temporary folder when None)."""
    import tempfile

    from .tiny import tiny_pipeline

    if family == "sd":
        return tiny_pipeline(seed, tokenizer_dir=tmp)
    build = {"sdxl": _sdxl, "sd3": _sd3, "flux": _flux}.get(family) or _family_module(family).pipeline
    if tmp is None:
        with tempfile.TemporaryDirectory() as d:
            pipe = build(seed, Path(d))
    else:
        pipe = build(seed, Path(tmp))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _randomize_zeros(module, seed: int, std: float = 0.05):
    """Give zero-initialised parameters (ControlNet zero convs / projections) small random values,
    so an untrained ControlNet changes images."""
    import torch

    g = torch.Generator().manual_seed(seed + 17)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if p.numel() and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return module.eval()


def tiny_family_controlnet(family: str, pipe, seed: int = 0):
    from diffusers import ControlNetModel, FluxControlNetModel, SD3ControlNetModel

    if family not in BUILTIN:
        cn = _family_module(family).controlnet(pipe, seed)
        return None if cn is None else _randomize_zeros(cn, seed)
    if family in ("sd", "sdxl"):
        cn = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32))
    elif family == "sd3":
        _seeded(seed + 5)
        cn = SD3ControlNetModel(sample_size=16, patch_size=1, in_channels=8, num_layers=1, attention_head_dim=8,
                                num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=32,
                                pooled_projection_dim=64, out_channels=8)
    else:
        _seeded(seed + 5)
        cn = FluxControlNetModel(**FLUX_TRANSFORMER)
    return _randomize_zeros(cn, seed)


def tiny_family_lora(family: str, pipe, out_file: Path, seed: int, rank: int = 4, scale: float = 1.0) -> Path:
    """A LoRA with random non-zero A and B on the denoiser's attention projections, saved by the
    family pipeline's own ``save_lora_weights`` (diffusers/peft layout); pipe is unchanged."""
    import copy

    import numpy as np
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    denoiser_name = "unet" if family in ("sd", "sdxl") else "transformer"
    den = copy.deepcopy(getattr(pipe, denoiser_name))
    den.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                               target_modules=["to_q", "to_k", "to_v", "to_out.0"]), adapter_name="lora")
    g = torch.Generator().manual_seed(seed + 101)
    with torch.no_grad():
        for name, p in sorted(den.named_parameters(), key=lambda kv: kv[0]):
            if ".lora." in name and "lora_A" in name:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p[0].numel()))
            elif ".lora." in name and "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 * scale / np.sqrt(p[0].numel())))
    layers = {k: v.detach().float().contiguous() for k, v in get_peft_model_state_dict(den, adapter_name="lora").items()}
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(str(out_file.parent), **{f"{denoiser_name}_lora_layers": layers},
                                 weight_name=out_file.name, safe_serialization=True)
    return out_file


def save_tiny_family_zoo(out_dir: Path, family: str, seed: int = 0, n_loras: int = 1, controlnet: bool = True) -> dict:
    """Write a random-weight tiny zoo of one family: base/, loras/lora{i}.safetensors, controlnet/, control.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = tiny_family_pipeline(family, seed, tmp=out_dir / "_tokenizers")
    base = out_dir / "base"
    pipe.save_pretrained(str(base), safe_serialization=True)
    for sub in ("tokenizer", "tokenizer_2"):  # CLIP tokenizers: write the slow files we built them from
        if (base / sub).is_dir() and type(getattr(pipe, sub)).__name__.startswith("CLIP"):
            write_tokenizer_files(base / sub)
    paths: dict = {"family": family, "base": base, "loras": [], "controlnet": None, "control": None}
    for i in range(n_loras):
        paths["loras"].append(tiny_family_lora(family, pipe, out_dir / "loras" / f"lora{i}.safetensors", seed * 1000 + i))
    cn = tiny_family_controlnet(family, pipe, seed) if controlnet else None
    if cn is not None:  # a family without a ControlNet pipeline has none
        cn.save_pretrained(str(out_dir / "controlnet"), safe_serialization=True)
        paths["controlnet"] = out_dir / "controlnet"
        control_image(32, seed).save(out_dir / "control.png")
        paths["control"] = out_dir / "control.png"
    return paths


def tiny_ip_adapter(pipe, out_dir: Path, seed: int = 0, num_tokens: int = 4, std: float = 0.3) -> Path:
    """An IP-Adapter for a tiny SD pipeline's UNet, in diffusers' layout: ``out_dir/ip-adapter.safetensors``
    (``image_proj.*`` and ``ip_adapter.<n>.to_k_ip/to_v_ip`` weights, random) and a random-weight
    CLIP image encoder in ``out_dir/image_encoder``."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unet = pipe.unet
    cross, blocks = unet.config.cross_attention_dim, list(unet.config.block_out_channels)
    _seeded(seed + 31)
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, image_size=32, patch_size=8, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=37,
    )).save_pretrained(str(out_dir / "image_encoder"), safe_serialization=True)
    g = torch.Generator().manual_seed(seed + 37)
    state = {
        "image_proj.proj.weight": torch.randn(cross * num_tokens, 32, generator=g) * std,
        "image_proj.proj.bias": torch.zeros(cross * num_tokens),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    for name in unet.attn_processors:  # same numbering as diffusers' own IP-Adapter loader
        if not name.endswith("attn1.processor"):
            if name.startswith("mid_block"):
                hidden = blocks[-1]
            elif name.startswith("up_blocks"):
                hidden = list(reversed(blocks))[int(name[len("up_blocks.")])]
            else:
                hidden = blocks[int(name[len("down_blocks.")])]
            for part in ("to_k_ip", "to_v_ip"):
                state[f"ip_adapter.{key_id}.{part}.weight"] = torch.randn(hidden, cross, generator=g) * std
            key_id += 2
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / "ip-adapter.safetensors"))
    return out_dir


def tiny_textual_inversion(pipe, out_file: Path, seed: int = 0, vectors: int = 1, std: float = 1.0) -> Path:
    """A random textual-inversion embedding for the pipeline's text encoder, saved as
    ``{"emb_params": [vectors, hidden]}`` (the A1111 safetensors layout)."""
    import torch
    from safetensors.torch import save_file

    hidden = pipe.text_encoder.config.hidden_size
    g = torch.Generator().manual_seed(seed + 43)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": torch.randn(vectors, hidden, generator=g) * std}, str(out_file))
    return out_file
