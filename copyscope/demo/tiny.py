"""Random-weight tiny Stable-Diffusion-shaped components, deterministic from a seed.

Everything is built from configs (no hub access). Shapes follow SD 1.x in miniature:

* UNet2DConditionModel, block_out_channels (32, 64), one layer per block, cross-attention dim 32;
* AutoencoderKL with two blocks (x2 spatial downsampling), 4 latent channels;
* CLIPTextModel, hidden size 32, with a hand-made byte-level BPE tokenizer (vocab.json + merges.txt)
  whose merges spell a few hundred common words, so any prompt tokenizes (unknown words fall back to
  byte characters);
* DDIMScheduler.

``tiny_controlnet`` derives a ControlNet from the UNet; with ``randomize=True`` its zero convolutions get
small random weights so that it changes images (an untrained ControlNet is an exact no-op).
``tiny_lora`` writes a LoRA with random non-zero A and B as one diffusers-format ``.safetensors`` file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Common words spelled by merges (everything else falls back to characters).
WORDS = (
    "a an the of in on at with and or by for to from photo photograph painting picture image drawing sketch "
    "portrait landscape still life close up view style art artwork texture pattern surface detail high quality "
    "woman man person people girl boy face astronaut space suit helmet flag cup coffee mug rocket launch cat "
    "kitten dog horse animal moon sky star stars galaxy planet earth brick wall grass gravel stone rock road "
    "page text book letter coin coins money camera cameraman tripod logo colour color wheel cell cells tissue "
    "retina eye microscope field deep red green blue yellow black white grey gray dark light bright old new "
    "small large big city street house building tree trees flower flowers water sea river mountain forest "
    "oil canvas watercolor digital render realistic abstract simple generic scene object objects"
).split()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        pairs = [(r, i) for r, i in pairs if r is not None]
        if not pairs:
            break
        _, i = min(pairs)
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2 :]
    return symbols


def tiny_vocab_and_merges(words=WORDS) -> tuple[dict[str, int], list[str]]:
    chars = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for tok in ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]:
        vocab.setdefault(tok, len(vocab))
    merges: list[str] = []
    ranks: dict[tuple[str, str], int] = {}
    for w in dict.fromkeys(words):
        # Simulate BPE with the merges so far; add merges (lowest priority) until the word is one token.
        while True:
            symbols = _bpe(list(w[:-1]) + [w[-1] + "</w>"], ranks)
            if len(symbols) == 1:
                break
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(f"{pair[0]} {pair[1]}")
            vocab.setdefault(pair[0] + pair[1], len(vocab))
    return vocab, merges


def write_tokenizer_files(dir: Path) -> None:
    """Write the slow-tokenizer files (vocab.json, merges.txt) and configs into ``dir``."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab_and_merges()
    (dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    (dir / "special_tokens_map.json").write_text(json.dumps(specials), encoding="utf-8")
    if not (dir / "tokenizer_config.json").exists():
        cfg = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **specials}
        (dir / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")


def tiny_tokenizer(dir: Path):
    """Write vocab.json + merges.txt (+ tokenizer config) to ``dir`` and return the CLIPTokenizer."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(dir)
    return CLIPTokenizer.from_pretrained(str(dir))


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


def tiny_unet(seed: int = 0, sample_size: int = 32):
    from diffusers import UNet2DConditionModel

    _seeded(seed)
    return UNet2DConditionModel(
        sample_size=sample_size // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def tiny_vae(seed: int = 0, sample_size: int = 32, block_out_channels=(32, 64), norm_num_groups: int = 32,
             mid_block_add_attention: bool = True):
    from diffusers import AutoencoderKL

    _seeded(seed + 1)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=tuple(block_out_channels),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        mid_block_add_attention=mid_block_add_attention,
    )


def tiny_text_encoder(tokenizer, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    _seeded(seed + 2)
    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=32,
    )
    return CLIPTextModel(cfg).eval()


def tiny_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def tiny_pipeline(seed: int = 0, sample_size: int = 32, tokenizer_dir: Path | None = None):
    """A StableDiffusionPipeline with random weights, deterministic from ``seed``."""
    import tempfile

    from diffusers import StableDiffusionPipeline

    if tokenizer_dir is None:
        with tempfile.TemporaryDirectory() as d:
            tok = tiny_tokenizer(Path(d))
    else:
        tok = tiny_tokenizer(Path(tokenizer_dir))
    unet = tiny_unet(seed, sample_size)
    vae = tiny_vae(seed, sample_size)
    te = tiny_text_encoder(tok, seed)
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=te,
        tokenizer=tok,
        unet=unet.eval(),
        scheduler=tiny_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_controlnet(unet, seed: int = 0, randomize: bool = True, std: float = 0.05):
    """ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32)).

    ``randomize=True`` re-initialises the zero-initialised convolutions (conditioning embedding output,
    per-block and mid-block output convs) with small random weights so that the ControlNet changes images.
    """
    import torch
    from diffusers import ControlNetModel

    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    if randomize:
        g = torch.Generator().manual_seed(seed + 17)
        zero_convs = [cn.controlnet_cond_embedding.conv_out, cn.controlnet_mid_block, *cn.controlnet_down_blocks]
        with torch.no_grad():
            for conv in zero_convs:
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * std)
                if conv.bias is not None:
                    conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * std)
    return cn.eval()


UNET_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
# Wider targets (attention, transformer projections and feed-forward, resnet convs): what the demo
# zoo's LoRAs use, so that a LoRA can memorise an image in a few hundred CPU steps.
UNET_LORA_TARGETS_WIDE = UNET_LORA_TARGETS + [
    "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2", "conv_shortcut", "time_emb_proj",
]
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def lora_copies(pipe, adapter_name: str = "lora", rank: int = 4, text_encoder: bool = False,
                init: str | bool = "gaussian", targets: list[str] | str | None = None):
    """Deep copies of pipe's UNet (and text encoder) with a fresh LoRA adapter (alpha = rank) attached.

    The pipe itself is not touched (peft wraps layers in place, and deleting an adapter leaves the
    wrappers, so adapters are attached to copies). Returns ``(unet, text_encoder_or_None)``.
    """
    import copy

    from peft import LoraConfig

    unet = copy.deepcopy(pipe.unet)
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=init, target_modules=targets or UNET_LORA_TARGETS),
        adapter_name=adapter_name,
    )
    te = None
    if text_encoder:
        from peft import inject_adapter_in_model

        te = copy.deepcopy(pipe.text_encoder)
        # peft directly, not transformers' add_adapter: transformers >= 5.24 refuses peft < 0.22 there,
        # and the package registry has no peft 0.22 yet
        te = inject_adapter_in_model(
            LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=init, target_modules=TEXT_LORA_TARGETS),
            te,
            adapter_name=adapter_name,
        )
    return unet, te


def lora_parameters(module, adapter_name: str = "lora"):
    """The LoRA A/B parameters of ``adapter_name`` in ``module``, in a stable (name-sorted) order."""
    return [p for n, p in sorted(module.named_parameters(), key=lambda kv: kv[0])
            if f".{adapter_name}." in n and "lora_" in n]


def save_lora_file(out_file: Path, unet, text_encoder=None, adapter_name: str = "lora") -> Path:
    """Save ``adapter_name`` of ``unet`` (and ``text_encoder``) as one diffusers-format .safetensors file."""
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)

    def sd(m):
        # PEFT-format keys ("<module>.lora_A.weight"), which load_lora_weights reads for linear and conv
        # layers alike (converting to the old "lora.down" format breaks mixed linear+conv adapters).
        d = get_peft_model_state_dict(m, adapter_name=adapter_name)
        return {k: v.detach().float().contiguous() for k, v in d.items()}

    StableDiffusionPipeline.save_lora_weights(
        str(out_file.parent),
        unet_lora_layers=sd(unet),
        text_encoder_lora_layers=sd(text_encoder) if text_encoder is not None else None,
        weight_name=out_file.name,
        safe_serialization=True,
    )
    return out_file


def tiny_lora(pipe, out_file: Path, seed: int, rank: int = 4, scale: float = 1.0, text_encoder: bool = False,
              targets: list[str] | None = None) -> Path:
    """Write a LoRA with random non-zero A and B (B scaled by ``scale``) to ``out_file``; pipe is unchanged."""
    import torch

    unet, te = lora_copies(pipe, "lora", rank=rank, text_encoder=text_encoder, targets=targets)
    g = torch.Generator().manual_seed(seed + 101)
    with torch.no_grad():
        for m in [unet] + ([te] if te is not None else []):
            for p_name, p in sorted(m.named_parameters(), key=lambda kv: kv[0]):
                if ".lora." in p_name and "lora_A" in p_name:
                    p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p[0].numel()))
                elif ".lora." in p_name and "lora_B" in p_name:
                    p.copy_(torch.randn(p.shape, generator=g) * (0.5 * scale / np.sqrt(p[0].numel())))
    out = save_lora_file(out_file, unet, te, "lora")
    del unet, te
    return out


def control_image(size: int = 32, seed: int = 0):
    """A simple conditioning image (PIL RGB): a soft radial blob plus a bar, deterministic from seed."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    cx, cy = rng.uniform(0.3, 0.7, 2)
    v = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)
    v[int(size * 0.75) :, :] = 0.5
    arr = (np.clip(v, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(np.stack([arr] * 3, -1), "RGB")


def save_tiny_zoo(out_dir: Path, seed: int = 0, n_loras: int = 2, controlnet: bool = True, sample_size: int = 32) -> dict:
    """Write a random-weight tiny zoo: base/, controlnet/, loras/lora{i}.safetensors, control.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = tiny_pipeline(seed, sample_size)
    paths: dict = {"base": out_dir / "base", "loras": [], "controlnet": None, "control": None}
    pipe.save_pretrained(str(paths["base"]), safe_serialization=True)
    write_tokenizer_files(paths["base"] / "tokenizer")
    for i in range(n_loras):
        paths["loras"].append(tiny_lora(pipe, out_dir / "loras" / f"lora{i}.safetensors", seed=seed * 1000 + i))
    if controlnet:
        cn = tiny_controlnet(pipe.unet, seed=seed)
        cn.save_pretrained(str(out_dir / "controlnet"), safe_serialization=True)
        paths["controlnet"] = out_dir / "controlnet"
        control_image(sample_size, seed).save(out_dir / "control.png")
        paths["control"] = out_dir / "control.png"
    return paths
