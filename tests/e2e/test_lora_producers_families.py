"""LoRA files made by independent producers for the SDXL, SD3, Flux.1, Qwen-Image, Z-Image, Chroma, Sana, Flux.2,
Lumina-Image 2.0 and Wan families
(the sd column's other cases are in tests/e2e/test_lora_producers.py), inside the test, on tiny random-weight bases of
each family
(:func:`copyscope.demo.tiny_families.tiny_family_pipeline`), each audited through the CLI with
``seeds: 1`` and compared with what the producing tool itself means by the file:

* peft + diffusers: peft ``LoraConfig`` adapters on the denoiser and on the text encoders the family's
  loader reads (SDXL: both CLIP encoders; SD3: both CLIP encoders; Flux.1: the CLIP encoder), with
  ``lora_alpha`` != rank, saved by the family pipeline's own ``save_lora_weights`` with the adapter
  metadata; with per-layer ranks and alphas (``rank_pattern`` / ``alpha_pattern``); with ``use_rslora``; on
  every Linear of the text encoders; with ``use_dora=True``; on every Linear / Conv2d of the denoiser, saved
  through diffusers' ``convert_state_dict_to_diffusers`` (as its SD/SDXL training scripts do: mixed names) or
  with peft's names (as its SD3/Flux scripts do; these and the patterns run for sd too); and peft's OFT / BOFT
  adapters saved the same way. The producer's images: peft's own merge of the adapters.
* lycoris-lora 4.1.3 (the library kohya's trainers use): its kohya-named network writer (LoRA, LoCon, LoCon
  with Tucker, LoHa, LoKr, full, IA3, diag-OFT, BOFT, GLoRA, DyLoRA, DoRA) wrapping the family's diffusers denoiser and text
  encoders. The producer's images: lycoris' own ``merge_to``. For SD3 and Flux.1 lycoris names diffusers'
  transformer modules (``lora_unet_transformer_blocks_0_attn_to_q``), not the original ones kohya's trainers
  of these families write (``lora_unet_joint_blocks_*``, ``lora_unet_double_blocks_*``): lycoris cannot wrap
  those models here (they are not diffusers models), so files in those layouts are not measured. With its
  prefix set to ``lora_transformer`` it writes the kohya-style Flux layout diffusers reads through its
  "mixture" converter (OneTrainer's names), for Flux.1 and for Chroma (whose pipeline loads LoRAs with Flux's loader).
* Chroma, Sana, Flux.2 and Lumina 2: the peft files of the denoiser (every layer, patterns, rsLoRA, DoRA), peft adapters on the
  text encoder (refused: diffusers stops on Chroma's T5 names, Sana's loader reads the transformer only), and
  lycoris' kohya-named files (none of which their loaders read).
* Wan (text to video; its audits' images are film strips of 5 frames): as Sana, and lycoris' kohya-named files of
  its diffusers modules (lora_unet_blocks_*), which copyscope refuses with musubi-tuner's layout (diffusers' Wan
  loader runs its musubi converter on them).
* Qwen-Image and Z-Image: the peft files of the transformer (their loaders read it alone) and lycoris' kohya-named
  files of their diffusers modules, which their loaders' converters read.

The merged weights are saved as a base folder and audited without the LoRA: the same generation code on
both sides, so any difference is the loading. Every file either gives the producer's pixels (within one
grey level) or is refused by ``copyscope validate`` with one line naming ``loras[0].model``, the layout and
the reason; ``test_family_refusals_are_needed`` checks each refusal against diffusers itself (it raises,
warns that layers were not loaded, or gives other images than the producer's). docs/zoo.md
("LoRA formats") quotes this table: ``python -m pytest tests/e2e/test_lora_producers_families.py``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from copyscope.cli import app

from helpers.cli_errors import assert_one_line_error
from helpers.producers import PROMPT, audit_images, perturb, producer_zoo, runner

lycoris = pytest.importorskip("lycoris", reason="lycoris-lora is a test dependency (pip install -e .[test])")

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]
DENOISER = {"sd": "unet", "sdxl": "unet", "sd3": "transformer", "flux": "transformer", "qwenimage": "transformer",
            "zimage": "transformer", "chroma": "transformer", "sana": "transformer", "flux2": "transformer",
            "lumina2": "transformer", "wan": "transformer"}
# the text encoders the cases with ``te`` put adapters on: those each family's LoRA loader reads, none for Qwen-Image
# and Z-Image (their loaders read the transformer only), and Chroma's and Sana's one encoder, which their loaders do
# not read (the peft-te refusal)
TEXT_ENCODERS = {"sd": ("text_encoder",), "sdxl": ("text_encoder", "text_encoder_2"), "sd3": ("text_encoder", "text_encoder_2"),
                 "flux": ("text_encoder",), "qwenimage": (), "zimage": (), "chroma": ("text_encoder",), "sana": ("text_encoder",),
                 "flux2": ("text_encoder",), "lumina2": ("text_encoder",), "wan": ("text_encoder",)}
# the text encoders' attention projections (CLIP's; Chroma's T5; Sana's Gemma2) and every Linear of them
TE_TARGETS = {"chroma": (["q", "v"], ["q", "k", "v", "o", "wi", "wo"]),
              "sana": (["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
              "flux2": (["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
              "lumina2": (["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
              "wan": (["q", "v"], ["q", "k", "v", "o", "wi_0", "wi_1", "wo"])}  # UMT5
CLIP_TARGETS = (["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
# the denoiser blocks lycoris wraps (its kohya writer names every Linear / Conv inside them)
LYCORIS_BLOCKS = {
    "sd": ["Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D"],
    "sdxl": ["Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D"],
    "sd3": ["JointTransformerBlock"],
    "flux": ["FluxTransformerBlock", "FluxSingleTransformerBlock"],
    "qwenimage": ["QwenImageTransformerBlock"],
    "zimage": ["ZImageTransformerBlock"],
    "chroma": ["ChromaTransformerBlock", "ChromaSingleTransformerBlock"],
    "sana": ["SanaTransformerBlock"],
    "flux2": ["Flux2TransformerBlock", "Flux2SingleTransformerBlock"],
    "lumina2": ["Lumina2TransformerBlock"],
    "wan": ["WanTransformerBlock"],
}

# (family, name) -> (producer, its arguments, expected: "exact" or a regex of the refusal after "LoRA 'style': ")
UNSUPPORTED = r"{title}.* is not supported by diffusers \d[\w.]* for {family}"
CASES: dict[tuple[str, str], tuple[str, dict, str]] = {}
for _fam in DENOISER:
    # adapters on every layer of the denoiser: saved through diffusers' convert_state_dict_to_diffusers (as its SD /
    # SDXL training scripts do), which renames only attention projections to lora.down/up: a file of mixed names
    # (Wan's first tensor in sorted order is an attention projection, blocks.0.attn1.to_k, renamed lora.down: diffusers
    # converts every name and loads the file exactly, as test_a_mixed_file_whose_first_tensor_has_the_older_names...)
    CASES[_fam, "peft-every-layer"] = ("peft", {"alpha": 2, "dora": False, "te": False, "every_layer": True}, UNSUPPORTED.format(
        title=r"a diffusers/peft LoRA whose \w+ tensors mix peft names", family=_fam) if _fam != "wan" else "exact")
    # ... and as diffusers' Flux / SD3 training scripts save it (peft's names as they are)
    CASES[_fam, "peft-every-layer-peft-names"] = ("peft", {"alpha": 2, "dora": False, "te": False, "every_layer": True,
                                                           "diffusers_names": False}, "exact")
    CASES[_fam, "peft-patterns"] = ("peft", {"alpha": 8, "dora": False, "te": False, "patterns": True}, "exact")
    if _fam == "sd":
        continue  # the sd column's other files: tests/e2e/test_lora_producers.py, on the shipped demo base
    CASES[_fam, "peft-dora"] = ("peft", {"alpha": 8, "dora": True, "te": False}, "exact")
    # lycoris names diffusers' own modules: kohya's layout for SDXL's UNet, but not the original module names
    # that kohya trainers of SD3 / Flux.1 / Chroma write (lora_unet_joint_blocks_*, lora_unet_double_blocks_*)
    # (diffusers' Qwen-Image and Z-Image converters read kohya names of their diffusers modules)
    CASES[_fam, "lora"] = ("lycoris", {"algo": "lora"}, "exact" if _fam in ("sdxl", "qwenimage", "zimage") else UNSUPPORTED.format(
        title=r"kohya-named LoRA of a diffusers transformer \(lora_unet_transformer_blocks_\*\)", family=_fam) if _fam != "wan"
        else r"musubi-tuner Wan LoRA \(lora_unet_blocks_\*\) is not supported by copyscope yet")
    CASES[_fam, "loha"] = ("lycoris", {"algo": "loha"}, UNSUPPORTED.format(title="LyCORIS LoHa", family=_fam))
    CASES[_fam, "dora"] = ("lycoris", {"algo": "lora", "dora_wd": True},
                           UNSUPPORTED.format(title=r"DoRA \(kohya/LyCORIS dora_scale\)", family=_fam))
    if _fam in ("chroma", "sana", "flux2", "lumina2", "wan"):
        continue
    CASES[_fam, "peft-alpha"] = ("peft", {"alpha": 8, "dora": False, "te": True}, "exact")
    # one file for two variants (the suite's time): rank-stabilised scaling, adapters on every text-encoder Linear
    CASES[_fam, "peft-rslora-te-every-layer"] = ("peft", {"alpha": 8, "dora": False, "te": True, "rslora": True,
                                                          "te_every_layer": True}, "exact")
    if TEXT_ENCODERS[_fam]:
        CASES[_fam, "peft-dora-te"] = ("peft", {"alpha": 8, "dora": True, "te": True},
                                       UNSUPPORTED.format(title="peft DoRA on the text encoder", family=_fam))
# Chroma's loader (Flux's) tries its one text encoder, T5, and stops on its names; Sana's, Flux.2's, Lumina 2's and
# Wan's read the transformer only
for _fam in ("chroma", "sana", "flux2", "lumina2", "wan"):
    CASES[_fam, "peft-alpha"] = ("peft", {"alpha": 8, "dora": False, "te": False}, "exact")
    CASES[_fam, "peft-rslora"] = ("peft", {"alpha": 8, "dora": False, "te": False, "rslora": True}, "exact")
    CASES[_fam, "peft-te"] = ("peft", {"alpha": 8, "dora": False, "te": True},
                              UNSUPPORTED.format(title="a diffusers/peft LoRA with text_encoder tensors", family=_fam))
# lycoris' kohya names of Lumina 2's blocks (lora_unet_layers_*, lora_unet_noise_refiner_*): kohya's layout, which
# Lumina 2's loader does not read (it converts only the original names under diffusion_model.)
CASES["lumina2", "lora"] = ("lycoris", {"algo": "lora"}, UNSUPPORTED.format(title="kohya LoRA/LoCon", family="lumina2"))
# the same mixed file is exact on Lumina 2: its transformer's first tensor in sorted order is an attention projection
# (context_refiner.0.attn.to_k), which convert_state_dict_to_diffusers renamed lora.down, so diffusers converts them all
CASES["lumina2", "peft-every-layer"] = ("peft", {"alpha": 2, "dora": False, "te": False, "every_layer": True}, "exact")
# T5 layers, which the SD3 and Flux.1 loaders do not load
for _fam in ("sd3", "flux"):
    CASES[_fam, "peft-t5"] = ("peft", {"alpha": 8, "dora": False, "te": True, "t5": True},
                              UNSUPPORTED.format(title="a diffusers/peft LoRA with text_encoder_[23] tensors", family=_fam))
# peft's orthogonal adapters saved by the pipeline's save_lora_weights
for _fam in ("sdxl", "flux"):
    CASES[_fam, "peft-oft"] = ("peft", {"alpha": 8, "dora": False, "te": False, "adapter": "oft",
                                        "diffusers_names": False},
                               UNSUPPORTED.format(title="peft OFT/BOFT", family=_fam))
    CASES[_fam, "peft-boft"] = ("peft", {"alpha": 8, "dora": False, "te": False, "adapter": "boft",
                                         "diffusers_names": False},
                                UNSUPPORTED.format(title="peft OFT/BOFT", family=_fam))
# LoCon with Tucker decomposition of the 3x3 convolutions (lora_mid)
for _fam in ("sd", "sdxl"):
    CASES[_fam, "locon-tucker"] = ("lycoris", {"algo": "locon", "conv_dim": 2, "conv_alpha": 1, "use_tucker": True},
                                   UNSUPPORTED.format(title=r"LyCORIS LoCon with Tucker/CP decomposition \(lora_mid\)", family=_fam))
CASES["sdxl", "locon"] = ("lycoris", {"algo": "locon", "conv_dim": 2, "conv_alpha": 1}, "exact")
# kohya-style names of diffusers' Flux modules with the prefix lora_transformer_ (OneTrainer's layout), which
# diffusers' Flux loader converts ("mixture"): written by lycoris with that prefix. Its converter maps the blocks'
# attention projections and the CLIP encoder's lora_te1_text_model_* layers only
_MIXTURE = r"kohya LoRA with diffusers Flux names \(lora_transformer_\*\).* is not supported by diffusers \d[\w.]* for flux as written"
CASES["flux", "lora-transformer-attention"] = (
    "lycoris", {"algo": "lora", "prefix": "lora_transformer", "te_text_model": True, "den_modules": ["FluxAttention"],
                "te_modules": ["CLIPAttention"]}, "exact")
CASES["flux", "lora-transformer-te-flat-names"] = (
    "lycoris", {"algo": "lora", "prefix": "lora_transformer", "den_modules": ["FluxAttention"], "te_modules": ["CLIPAttention"]},
    _MIXTURE + r" \(.*it stops on lora_te1_encoder_layers")
CASES["flux", "lora-transformer-blocks"] = (
    "lycoris", {"algo": "lora", "prefix": "lora_transformer", "te_text_model": True}, _MIXTURE + r" \(.*it stops on lora_transformer_")
# the same kohya-style Flux names on Chroma (its pipeline loads LoRAs with Flux's loader, so its "mixture" converter)
CASES["chroma", "lora-transformer-attention"] = (
    "lycoris", {"algo": "lora", "prefix": "lora_transformer", "den_modules": ["FluxAttention"], "te_modules": []}, "exact")
for _fam in ("sdxl", "sd3", "flux", "qwenimage", "zimage"):
    for _algo, _title in (("lokr", "LyCORIS LoKr"), ("full", r"LyCORIS full \(diff\)"), ("ia3", "LyCORIS IA3"),
                          ("diag-oft", "LyCORIS diag-OFT"), ("boft", "LyCORIS BOFT"), ("glora", "LyCORIS GLoRA"),
                          ("dylora", "kohya/LyCORIS DyLoRA")):
        CASES[_fam, _algo] = ("lycoris", {"algo": _algo}, UNSUPPORTED.format(title=_title, family=_fam))
    # BOFT cannot factor the tiny CLIP MLP's 37 features nor the transformers' 192-wide norm projections: there
    # it wraps the attention only
    CASES[_fam, "boft"][1]["te_modules"] = ["CLIPAttention"]
    if _fam != "sdxl":
        # DyLoRA stores only linear layers here (no 1x1 convolution): a kohya-named file of the transformer whose
        # alphas are integers, and which lycoris scales by alpha / (rank blocks + 1) where every loader uses alpha / rank
        CASES[_fam, "boft"][1]["den_modules"] = ["FluxAttention" if _fam == "flux" else "Attention"]
# LoRA deltas that change the tiny models' 32-px images by well over a grey level (the transformers'
# images move less per unit of weight than the UNet's)
STD = {"sd": 0.1, "sdxl": 0.1, "sd3": 0.3, "flux": 0.3, "qwenimage": 0.6, "zimage": 0.3, "chroma": 0.3, "sana": 0.3, "flux2": 2.0,
       "lumina2": 0.3, "wan": 0.3}


def _generation(family: str) -> dict:
    return {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 1, "batch_size": 1,
            "scheduler": "ddim" if family == "sd" else None, "dtype": "float32", "device": "cpu",
            "sd3": {"max_sequence_length": 16}, "flux": {"max_sequence_length": 16}, "qwenimage": {"max_sequence_length": 16},
            "zimage": {"max_sequence_length": 16}, "chroma": {"max_sequence_length": 16},
            "sana": {"max_sequence_length": 16, "use_resolution_binning": False, "complex_human_instruction": False},
            # Flux.2's prompt follows its system message (about 30 tokens of the tiny tokenizer)
            "flux2": {"max_sequence_length": 64},
            # Lumina 2's prompt follows its system prompt (about 30 tokens of the tiny tokenizer)
            "lumina2": {"max_sequence_length": 64}, "wan": {"num_frames": 5, "max_sequence_length": 16}}


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    from copyscope.demo.tiny_families import save_tiny_family_zoo

    root = tmp_path_factory.mktemp("family_bases")
    return {fam: save_tiny_family_zoo(root / fam, fam, seed=0, n_loras=0, controlnet=False)["base"] for fam in DENOISER}


def _pipe(base: Path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(base))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _save_merged(base: Path, out: Path, pipe, components) -> Path:
    """A copy of ``base`` whose ``components`` are those of ``pipe`` (which holds merged weights)."""
    shutil.copytree(base, out)
    for comp in components:
        shutil.rmtree(out / comp)
        getattr(pipe, comp).save_pretrained(str(out / comp), safe_serialization=True)
    return out


def _denoiser_layers(module) -> list[str]:
    """Every Linear and Conv2d of a denoiser (peft wraps both)."""
    # (not grouped convolutions, which peft wraps only at a rank divisible by the groups: Sana's depthwise conv_depth)
    return [n for n, m in module.named_modules()
            if isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv2d) and m.groups == 1)]


def _peft_file(root: Path, base: Path, family: str, name: str, alpha: int, dora: bool, te: bool,
               every_layer: bool = False, patterns: bool = False, diffusers_names: bool = True,
               adapter: str = "lora", te_every_layer: bool = False, rslora: bool = False, t5: bool = False) -> tuple[Path, Path]:
    """(the family pipeline's save_lora_weights of peft adapters, a base folder with peft's own merge of them).
    ``every_layer``: adapters on every Linear / Conv2d of the denoiser, not only its attention projections;
    ``patterns``: per-layer ranks and alphas (peft's rank_pattern / alpha_pattern, kept in the metadata);
    ``diffusers_names``: the state dicts go through diffusers' ``convert_state_dict_to_diffusers`` (as its SD /
    SDXL training scripts do) or are saved with peft's names (as its SD3 / Flux scripts do);
    ``adapter``: peft's ``lora``, or its orthogonal adapters ``oft`` / ``boft`` (saved the same way);
    ``te_every_layer``: the text encoders' adapters on every Linear (not only q_proj / v_proj);
    ``rslora``: peft's rank-stabilised scaling (alpha / sqrt(rank), ``use_rslora`` in the metadata);
    ``t5``: adapters on the T5 encoder too (SD3's text_encoder_3, Flux's text_encoder_2), whose layers no
    ``save_lora_weights`` takes: added to the saved file under the component's name, as other tools write them."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import BOFTConfig, LoraConfig, OFTConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import get_peft_model_state_dict

    pipe = _pipe(base)
    den = DENOISER[family]
    torch.manual_seed(1)
    targets = _denoiser_layers(getattr(pipe, den)) if every_layer else ["to_q", "to_k", "to_v", "to_out.0"]
    extra = {"rank_pattern": {"to_k": 2}, "alpha_pattern": {"to_v": 16}} if patterns else {}
    if adapter == "oft":
        dcfg = OFTConfig(r=0, oft_block_size=8, target_modules=targets)
    elif adapter == "boft":
        dcfg = BOFTConfig(boft_block_size=8, target_modules=targets)
    else:
        dcfg = LoraConfig(r=4, lora_alpha=alpha, target_modules=targets, use_dora=dora, use_rslora=rslora, **extra)
    getattr(pipe, den).add_adapter(dcfg)
    te_targets = TE_TARGETS.get(family, CLIP_TARGETS)[1 if te_every_layer else 0]
    tcfg = LoraConfig(r=4, lora_alpha=alpha, target_modules=te_targets, use_dora=dora, use_rslora=rslora)
    tes = TEXT_ENCODERS[family] if te else ()
    for comp in tes:
        inject_adapter_in_model(tcfg, getattr(pipe, comp))
    t5_comp = {"sd3": "text_encoder_3", "flux": "text_encoder_2"}[family] if t5 else None
    if t5_comp:
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=["q", "v"]), getattr(pipe, t5_comp))
    comps = (den, *tes, *([t5_comp] if t5_comp else []))
    perturb([p for c in comps for n, p in getattr(pipe, c).named_parameters() if re.search(r"lora_|oft_|boft_", n)], seed=len(name),
             std=STD[family] * (2 if dora else 1))  # DoRA renormalises the weights: a larger change to see it
    out = root / f"{family}-{name}"
    convert = convert_state_dict_to_diffusers if diffusers_names else dict
    kwargs = {f"{den}_lora_layers": convert(get_peft_model_state_dict(getattr(pipe, den))),
              f"{den}_lora_adapter_metadata": dcfg.to_dict()}
    beside = tes if family in ("sana", "flux2", "lumina2", "wan") else ()  # Sana's save_lora_weights takes no text encoder: written beside
    for comp in (c for c in tes if c not in beside):
        kwargs[f"{comp}_lora_layers"] = convert(get_peft_model_state_dict(getattr(pipe, comp)))
        kwargs[f"{comp}_lora_adapter_metadata"] = tcfg.to_dict()
    type(pipe).save_lora_weights(str(out), **kwargs)
    if t5_comp or beside:
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        saved = out / "pytorch_lora_weights.safetensors"
        extra = {f"{c}.{k}": v for c in ([t5_comp] if t5_comp else beside)
                 for k, v in get_peft_model_state_dict(getattr(pipe, c)).items()}
        save_file({**load_file(str(saved)), **extra}, str(saved), metadata=safe_open(str(saved), "pt").metadata())
    merged = _pipe(base)
    for comp in comps:
        for mod_name, module in getattr(pipe, comp).named_modules():
            if isinstance(module, BaseTunerLayer):
                module.merge()
                getattr(merged, comp).get_submodule(mod_name).weight.data.copy_(module.get_base_layer().weight.data)
    return out / "pytorch_lora_weights.safetensors", _save_merged(base, root / f"{family}-{name}-merged", merged, comps)


def _lycoris_file(root: Path, base: Path, family: str, name: str, te_modules=("CLIPAttention", "CLIPMLP"),
                  den_modules=None, prefix: str | None = None, te_text_model: bool = False, **kwargs) -> tuple[Path, Path]:
    """(the LoRA file lycoris' kohya network writer saves, a base folder with lycoris' own merge of it).
    ``prefix``: lycoris' denoiser prefix instead of ``lora_unet`` (its text encoders then numbered, lora_te1_);
    ``te_text_model``: the text-encoder layers named as CLIP was before transformers 5.6 flattened it
    (``lora_te1_text_model_encoder_*``; this transformers names them ``lora_te1_encoder_*``)."""
    from lycoris.kohya import LycorisNetworkKohya, create_network
    from lycoris.logging import logger
    from safetensors.torch import load_file

    logger.setLevel(logging.ERROR)
    preset = root / f"{family}-{name}-preset.toml"
    preset.write_text(
        f"enable_conv = true\nunet_target_module = {json.dumps(den_modules or LYCORIS_BLOCKS[family])}\n"
        f"unet_target_name = {json.dumps(['conv_in', 'conv_out'] if family in ('sd', 'sdxl') else [])}\n"
        f"text_encoder_target_module = {json.dumps(list(te_modules))}\n"
    )
    pipe = _pipe(base)
    den, tes = DENOISER[family], [getattr(pipe, c) for c in TEXT_ENCODERS[family]]
    attrs = ("ENABLE_CONV", "UNET_TARGET_REPLACE_MODULE", "UNET_TARGET_REPLACE_NAME", "TEXT_ENCODER_TARGET_REPLACE_MODULE",
             "LORA_PREFIX_UNET")
    saved = {a: getattr(LycorisNetworkKohya, a) for a in attrs}
    te_arg = tes if len(tes) != 1 or prefix else tes[0]  # none for Qwen-Image / Z-Image
    torch.manual_seed(0)
    try:  # presets, prefixes and GLoRA set class attributes: restore them for the next network
        LycorisNetworkKohya.LORA_PREFIX_UNET = prefix or saved["LORA_PREFIX_UNET"]
        net = create_network(1.0, 4, 2, pipe.vae, te_arg, getattr(pipe, den), preset=str(preset), **kwargs)
        net.apply_to(te_arg, getattr(pipe, den), True, True)
        perturb(list(net.parameters()), seed=len(name), std=STD[family])
        out = root / f"{family}-{name}.safetensors"
        net.save_weights(str(out), None, {})
        for module in net.text_encoder_loras + net.unet_loras:
            module.restore()  # the modules' own forward back, then lycoris merges the deltas into their weights
        net.merge_to(tes, getattr(pipe, den), load_file(str(out)), torch.float32, "cpu")
    finally:
        for a, v in saved.items():
            setattr(LycorisNetworkKohya, a, v)
    if te_text_model:
        from safetensors.torch import save_file

        save_file({re.sub(r"^(lora_te\d?_)(?!text_model_)", r"\1text_model_", k): v for k, v in load_file(str(out)).items()},
                  str(out))
    merged = _save_merged(base, root / f"{family}-{name}-merged", pipe, (den, *TEXT_ENCODERS[family]))
    return out, merged


def _zoo(tmp: Path, family: str, base: Path, lora: Path | None) -> Path:
    return producer_zoo(tmp, f"tiny-{family}", base, lora, _generation(family))


@pytest.fixture(scope="module")
def produced(bases, tmp_path_factory):
    """(family, name) -> (LoRA file, merged base folder), made on first use."""
    root = tmp_path_factory.mktemp("family_producers")
    made: dict = {}

    def get(family: str, name: str) -> tuple[Path, Path]:
        if (family, name) not in made:
            producer, kwargs, _ = CASES[family, name]
            make = _peft_file if producer == "peft" else _lycoris_file
            made[family, name] = make(root, bases[family], family, name, **kwargs)
        return made[family, name]

    return get


@pytest.mark.parametrize("family, name", list(CASES), ids=[f"{f}-{n}" for f, n in CASES])
def test_family_producer_file_is_exact_or_refused_at_validate(bases, produced, tmp_path, family, name):
    lora, merged = produced(family, name)
    expected = CASES[family, name][2]
    zoo = _zoo(tmp_path / "with-lora", family, bases[family], lora)
    if expected != "exact":
        assert_one_line_error(runner.invoke(app, ["validate", str(zoo)]),
                              rf"zoo\.yaml:\d+: loras\[0\]\.model: LoRA 'style': {expected}")
        return
    validated = runner.invoke(app, ["validate", str(zoo)])
    assert validated.exit_code == 0, validated.output
    images = audit_images(zoo)
    audited, base_image = images["style"], images[""]
    producer = audit_images(_zoo(tmp_path / "merged", family, merged, None))[f"tiny-{family}"]
    # the LoRA matters (else equality proves nothing), and copyscope gives the producer's pixels
    assert np.abs(producer - base_image).max() >= 8, (family, name, np.abs(producer - base_image).max())
    assert np.abs(audited - producer).max() <= 1, (family, name, np.abs(audited - producer).max())


def _generate(pipe, family: str) -> np.ndarray:
    extra = {"max_sequence_length": 64 if family in ("flux2", "lumina2") else 16} if family not in ("sd", "sdxl") else {}
    if family == "sana":
        extra.update(use_resolution_binning=False, complex_human_instruction=None)
    if family == "wan":  # a video: its frames side by side, as the audit stores it
        from copyscope.score.frames import to_strip

        return to_strip(pipe(prompt=PROMPT, num_inference_steps=2, guidance_scale=3.0, height=32, width=32, num_frames=5,
                             output_type="np", generator=torch.Generator().manual_seed(0), **extra).frames[0])
    return pipe(prompt=PROMPT, num_inference_steps=2, guidance_scale=3.0, height=32, width=32, output_type="np",
                generator=torch.Generator().manual_seed(0), **extra).images[0]


def _diffusers_result(base: Path, family: str, lora: Path):
    """What diffusers does with the file loaded by path: ('raises', message), ('warns', message) or ('image', array)."""
    from diffusers.utils import logging as dlogging

    pipe = _pipe(base)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    for name in ("diffusers", "transformers", "peft"):
        logging.getLogger(name).addHandler(handler)
    level = dlogging.get_verbosity()
    dlogging.set_verbosity(dlogging.CRITICAL)  # the failure logs of the refused files are long
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="x")
        # peft says with warnings.warn when the file's layers and the adapters it injected disagree
        records += [str(w.message) for w in caught if re.search(r"inconsistency|missing adapter keys|unexpected", str(w.message))]
    except Exception as exc:  # noqa: BLE001 - whatever diffusers raises, the file is not loadable
        return "raises", str(exc)
    finally:
        dlogging.set_verbosity(level)
        for name in ("diffusers", "transformers", "peft"):
            logging.getLogger(name).removeHandler(handler)
    return ("warns", records[0]) if records else ("image", _generate(pipe, family))


@pytest.mark.parametrize("family, name", [c for c in CASES if CASES[c][2] != "exact"],
                         ids=[f"{f}-{n}" for f, n in CASES if CASES[f, n][2] != "exact"])
def test_family_refusals_are_needed(bases, produced, family, name):
    """Each refused file, loaded by diffusers itself: it raises, or warns that it drops tensors, or gives
    images other than the producer's. When a diffusers release loads one exactly, this fails: move the
    layout to the supported column (copyscope.modelfiles.lora_layouts.LORA_LAYOUTS) and docs/zoo.md's table."""
    lora, merged = produced(family, name)
    what, detail = _diffusers_result(bases[family], family, lora)
    if what == "image":
        ref = _generate(_pipe(merged), family)
        assert np.abs(ref - detail).max() * 255 > 2, f"diffusers now loads {family} {name} exactly: support it"


# (not chroma: its approximator's out_proj takes diffusers' text-encoder renaming, `out_proj.lora_linear_layer.down`,
# and peft finds no such key; the load-time check refuses that file in one line after the base loads)
@pytest.mark.parametrize("family", [f for f in DENOISER if f != "chroma"])
def test_a_mixed_file_whose_first_tensor_has_the_older_names_is_accepted_and_exact(bases, produced, tmp_path, family):
    """The refusal of mixed names is no wider than diffusers' failure: when the denoiser's first tensor (in
    safetensors' sorted order) has the older names, diffusers converts them all and loads the file exactly,
    so copyscope audits it (here the every-layer file with its first layer renamed lora_A -> lora.down)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    lora, merged = produced(family, "peft-every-layer")
    tensors = load_file(str(lora))
    first = sorted(k for k in tensors if k.startswith(DENOISER[family] + "."))[0].rsplit(".lora_A", 1)[0] + "."
    renamed = {(k.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up.") if k.startswith(first) else k): v
               for k, v in tensors.items()}
    out = tmp_path / "first-old" / "lora.safetensors"
    out.parent.mkdir()
    save_file(renamed, str(out), metadata=safe_open(str(lora), "pt").metadata())
    zoo = _zoo(tmp_path / "with-lora", family, bases[family], out)
    validated = runner.invoke(app, ["validate", str(zoo)])
    assert validated.exit_code == 0, validated.output
    audited = audit_images(zoo)["style"]
    producer = audit_images(_zoo(tmp_path / "merged", family, merged, None))[f"tiny-{family}"]
    assert np.abs(audited - producer).max() <= 1, np.abs(audited - producer).max()


@pytest.mark.parametrize("family, name, other", [
    ("sdxl", "lora", "sd3"), ("sdxl", "lora", "flux"), ("sd3", "lora", "sd"), ("sd3", "lora", "sdxl"), ("flux", "lora", "sdxl"),
    ("flux", "lora-transformer-attention", "sd3"), ("sdxl", "peft-alpha", "sd"), ("qwenimage", "peft-every-layer-peft-names", "flux"),
    ("qwenimage", "lora", "zimage"), ("zimage", "peft-alpha", "qwenimage"), ("zimage", "lora", "sdxl"), ("flux", "lora", "zimage"),
    ("chroma", "peft-alpha", "sdxl"), ("sana", "peft-alpha", "sd3"), ("sd3", "peft-alpha", "sana"), ("sana", "lora", "flux"),
    ("lumina2", "peft-alpha", "zimage"), ("zimage", "peft-alpha", "lumina2"), ("zimage", "lora", "lumina2"),
    ("lumina2", "peft-every-layer-peft-names", "flux"),
    ("wan", "peft-alpha", "sana"), ("sana", "peft-alpha", "wan"), ("wan", "peft-every-layer-peft-names", "flux"),
])
def test_a_file_of_another_family_is_refused_at_validate(bases, produced, tmp_path, family, name, other):
    """docs/zoo.md's "another family" cells: the family check names the file's families and the base's."""
    from copyscope.families import FAMILIES

    zoo = _zoo(tmp_path, other, bases[other], produced(family, name)[0])
    assert_one_line_error(runner.invoke(app, ["validate", str(zoo)]),
                          rf"loras\[0\]\.model: LoRA 'style' is an? .*{re.escape(FAMILIES[family].title)}.* LoRA but base "
                          rf"'tiny-{other}' is {re.escape(FAMILIES[other].title)}")
