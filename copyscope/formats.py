"""Real model files: the layouts people ship, recognised from safetensors headers.

* **Single-file checkpoints** (A1111 / ComfyUI, SD 1.x/2.x): one ``.safetensors`` with the UNet under
  ``model.diffusion_model.*`` (the original LDM names: ``input_blocks``, ``middle_block``,
  ``output_blocks``), the VAE under ``first_stage_model.*`` and the CLIP text encoder under
  ``cond_stage_model.transformer.*``; single-file ControlNets under ``control_model.*``. diffusers'
  ``from_single_file`` reads them; this module maps names both ways (diffusers -> LDM to write such files
  in tests, LDM -> diffusers to check a LoRA against a single-file base from its header alone).
* **LoRA files**: diffusers / peft (``unet.<module>.lora_A.weight``, ``text_encoder.<module>.lora_B.weight``,
  older ``lora.down`` / ``lora.up`` and ``lora_linear_layer``), and kohya / Civitai
  (``lora_unet_<module with _>.lora_down.weight``, ``lora_te_...``, ``lora_te1_`` / ``lora_te2_`` for two
  text encoders, an ``.alpha`` scalar per layer).

:func:`lora_misfit` says why a LoRA cannot fit a base from the two files' headers, for every layout above,
before anything is loaded. The zoo-level checks (single-file configs offline, variants) are in
:mod:`copyscope.file_checks`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
CONTROLNET_PREFIX = "control_model."


def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes), read without loading
    any tensor. Raises ValueError when the file is not a complete safetensors file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError("shorter than a safetensors header")
        n = int.from_bytes(raw, "little")
        if n > size - 8:
            raise ValueError(f"header length {n} exceeds the file size {size}")
        try:
            head = json.loads(f.read(n))
        except ValueError:
            raise ValueError("its header is not JSON: not a safetensors file") from None
    if not isinstance(head, dict):
        raise ValueError("header is not a JSON object")
    head.pop("__metadata__", None)
    end = _check_tensor_table(head)
    if 8 + n + end > size:
        raise ValueError(f"truncated: tensors need {8 + n + end} bytes, the file has {size}")
    return head


# bytes per element of every dtype the installed safetensors reads into torch
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U64": 8, "U32": 4, "U16": 2, "C64": 8, "F8_E4M3": 1, "F8_E4M3FNUZ": 1, "F8_E5M2": 1, "F8_E5M2FNUZ": 1,
}


def _check_tensor_table(head: dict) -> int:
    """What safetensors checks only when the tensors load (after the base has loaded): every entry
    has a known dtype, a shape whose size matches its byte range, and the ranges tile the data without
    overlap or gap. Returns the end of the data; raises ValueError naming the tensor."""
    spans = []
    for name, info in head.items():
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list) or not isinstance(info.get("data_offsets"), list):
            raise ValueError(f"tensor {name!r} has no shape / data_offsets entry")
        dtype, shape, offsets = info.get("dtype"), info["shape"], info["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise ValueError(f"tensor {name!r} has unknown dtype {str(dtype)[:20]!r}")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ValueError(f"tensor {name!r} has an invalid shape {str(shape)[:60]}")
        ints = all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        if len(offsets) != 2 or not ints or not 0 <= offsets[0] <= offsets[1]:
            raise ValueError(f"tensor {name!r} has invalid data_offsets {str(offsets)[:60]}")
        need = DTYPE_BYTES[dtype]
        for d in shape:
            need *= d
        if offsets[1] - offsets[0] != need:
            raise ValueError(f"tensor {name!r} ({dtype} {shape}) needs {need} bytes but its data_offsets span {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            what = "overlaps the tensor before it" if begin < end else "leaves a gap before it"
            raise ValueError(f"tensor {name!r} {what} (its data starts at byte {begin}, the previous ends at {end})")
        end = stop
    return end


header = safetensors_header


# -- UNet / ControlNet names: diffusers <-> LDM ----------------------------------------------------
_RESNET = {  # diffusers -> LDM, inside a resnet block
    "norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection",
}
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
    "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
}
_CONTROLNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0", "controlnet_mid_block": "middle_block_out.0",
    "controlnet_cond_embedding.conv_in": "input_hint_block.0",
    "controlnet_cond_embedding.conv_out": "input_hint_block.14",
}


def _swap_prefix(rest: str, table: dict[str, str]) -> str:
    for a, b in table.items():
        if rest == a or rest.startswith(a + "."):
            return b + rest[len(a):]
    return rest


def _resnet_d2l(rest: str) -> str:
    return _swap_prefix(rest, _RESNET)


def _resnet_l2d(rest: str) -> str:
    return _swap_prefix(rest, {v: k for k, v in _RESNET.items()})


def unet_layout(diffusers_modules) -> tuple[int, set[int]]:
    """(layers_per_block, up blocks that have attentions) of a diffusers UNet, from its names."""
    resnets = [int(m[1]) for k in diffusers_modules if (m := re.match(r"down_blocks\.\d+\.resnets\.(\d+)\.", k))]
    up_attn = {int(m[1]) for k in diffusers_modules if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    return (max(resnets) + 1 if resnets else 1), up_attn


def unet_name_to_ldm(name: str, layers: int, up_attn: set[int], fixed=None) -> str | None:
    """A diffusers UNet parameter or module name -> its LDM name (None: no LDM counterpart)."""
    fixed = _UNET_FIXED if fixed is None else fixed
    n = layers + 1
    for a, b in fixed.items():
        if name == a or name.startswith(a + "."):
            return b + name[len(a):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$", name):
        i = 1 + int(m[1]) * n + int(m[3])
        return f"input_blocks.{i}.0.{_resnet_d2l(m[4])}" if m[2] == "resnets" else f"input_blocks.{i}.1.{m[4]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv(.*)$", name):
        return f"input_blocks.{(int(m[1]) + 1) * n}.0.op{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)$", name):
        return f"middle_block.{2 * int(m[1])}.{_resnet_d2l(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)$", name):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$", name):
        i = int(m[1]) * n + int(m[3])
        return f"output_blocks.{i}.0.{_resnet_d2l(m[4])}" if m[2] == "resnets" else f"output_blocks.{i}.1.{m[4]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv(.*)$", name):
        b = int(m[1])
        return f"output_blocks.{b * n + layers}.{2 if b in up_attn else 1}.conv{m[2]}"
    return None


def ldm_unet_layers(ldm_names) -> int:
    """layers_per_block of an LDM UNet, from where its first downsampler sits (input_blocks.{L+1}.0.op)."""
    ops = [int(m[1]) for k in ldm_names if (m := re.match(r"input_blocks\.(\d+)\.0\.op\.", k))]
    if ops:
        return min(ops) - 1
    blocks = [int(m[1]) for k in ldm_names if (m := re.match(r"input_blocks\.(\d+)\.", k))]
    return max(blocks, default=1)  # a single down block: every input block after conv_in is a layer


def unet_name_from_ldm(name: str, layers: int) -> str | None:
    """The inverse of :func:`unet_name_to_ldm` (what diffusers' ``convert_ldm_unet_checkpoint`` does)."""
    n = layers + 1
    for a, b in _UNET_FIXED.items():
        if name == b or name.startswith(b + "."):
            return a + name[len(b):]
    if m := re.match(r"input_blocks\.(\d+)\.0\.op(.*)$", name):
        return f"down_blocks.{(int(m[1]) - 1) // n}.downsamplers.0.conv{m[2]}"
    if m := re.match(r"input_blocks\.(\d+)\.([01])\.(.+)$", name):
        b, j = divmod(int(m[1]) - 1, n)
        return f"down_blocks.{b}.resnets.{j}.{_resnet_l2d(m[3])}" if m[2] == "0" else f"down_blocks.{b}.attentions.{j}.{m[3]}"
    if m := re.match(r"middle_block\.(\d+)\.(.+)$", name):
        k = int(m[1])
        return f"mid_block.attentions.0.{m[2]}" if k == 1 else f"mid_block.resnets.{k // 2}.{_resnet_l2d(m[2])}"
    if m := re.match(r"output_blocks\.(\d+)\.([12])\.conv(\.[^.]+)?$", name):
        return f"up_blocks.{int(m[1]) // n}.upsamplers.0.conv{m[3] or ''}"
    if m := re.match(r"output_blocks\.(\d+)\.([01])\.(.+)$", name):
        b, j = divmod(int(m[1]), n)
        return f"up_blocks.{b}.resnets.{j}.{_resnet_l2d(m[3])}" if m[2] == "0" else f"up_blocks.{b}.attentions.{j}.{m[3]}"
    return None


def controlnet_name_to_ldm(name: str, layers: int) -> str | None:
    if m := re.match(r"controlnet_down_blocks\.(\d+)(\..+)$", name):
        return f"zero_convs.{m[1]}.0{m[2]}"
    if m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)(\..+)$", name):
        return f"input_hint_block.{2 * (int(m[1]) + 1)}{m[2]}"
    return unet_name_to_ldm(name, layers, set(), fixed=_CONTROLNET_FIXED)


# -- VAE and text encoder ----------------------------------------------------------------------------
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_name_to_ldm(name: str, n_up: int) -> str:
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$", name):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)$", name):
        return f"{m[1]}.mid.attn_1.{_swap_prefix(m[2], _VAE_ATTN)}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", name):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv(.*)$", name):
        return f"encoder.down.{m[1]}.downsample.conv{m[2]}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$", name):  # LDM numbers up blocks bottom-up
        return f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv(.*)$", name):
        return f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv{m[2]}"
    return name.replace("conv_norm_out", "norm_out")


def text_model_name(name: str) -> str:
    """A CLIP text-encoder name without the ``text_model.`` level (transformers >= 5.6 dropped it)."""
    return name.removeprefix("text_model.")


# -- conversions (used by tests and by users who need an A1111 file or a kohya LoRA) ----------------
def _load_folder_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors: dict = {}
    for f in sorted(folder.glob("*.safetensors")):
        if f.name.count(".") == 1:  # skip variants (x.fp16.safetensors)
            tensors.update(load_file(str(f)))
    if not tensors:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    return tensors


def _save(tensors: dict, out_file: Path, dtype=None) -> Path:
    from safetensors.torch import save_file

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_file))
    return out_file


def pipeline_to_single_file(folder: Path, out_file: Path, dtype=None) -> Path:
    """A diffusers SD 1.x/2.x folder (unet/, vae/, text_encoder/ with CLIPTextModel) -> one A1111-layout
    ``.safetensors`` (what ``from_single_file`` reads back with the folder's configs)."""
    folder = Path(folder)
    out: dict = {}
    unet = _load_folder_weights(folder / "unet")
    layers, up_attn = unet_layout(unet)
    for k, v in unet.items():
        ldm = unet_name_to_ldm(k, layers, up_attn)
        if ldm is None:
            raise ValueError(f"UNet tensor {k} has no A1111 name")
        out[UNET_PREFIX + ldm] = v
    vae = _load_folder_weights(folder / "vae")
    n_up = 1 + max(int(m[1]) for k in vae if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    for k, v in vae.items():
        ldm = vae_name_to_ldm(k, n_up)
        if ".mid.attn_1." in ldm and ldm.endswith(".weight") and v.ndim == 2:
            v = v[:, :, None, None]  # the LDM VAE attention uses 1x1 convolutions
        out[VAE_PREFIX + ldm] = v
    for k, v in _load_folder_weights(folder / "text_encoder").items():
        out[CLIP_PREFIX + "text_model." + text_model_name(k)] = v
    return _save(out, out_file, dtype)


def controlnet_to_single_file(folder: Path, out_file: Path, dtype=None) -> Path:
    """A diffusers ControlNet folder -> one ``.safetensors`` in the original ``control_model.*`` layout."""
    cn = _load_folder_weights(Path(folder))
    layers, _ = unet_layout(cn)
    out = {}
    for k, v in cn.items():
        ldm = controlnet_name_to_ldm(k, layers)
        if ldm is None:
            raise ValueError(f"ControlNet tensor {k} has no original name")
        out[CONTROLNET_PREFIX + ldm] = v
    return _save(out, out_file, dtype)


def config_folder(folder: Path, out_dir: Path) -> Path:
    """Copy a diffusers folder without its weights: the ``config:`` a single-file checkpoint needs offline."""
    import shutil

    folder, out_dir = Path(folder), Path(out_dir)
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.suffix not in (".safetensors", ".bin", ".ckpt", ".pt", ".pth"):
            dest = out_dir / f.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
    return out_dir


_DIFFUSERS_LORA_RE = re.compile(
    r"^(unet|text_encoder|text_encoder_2)\.(.+?)\.(lora_A|lora_B|lora\.down|lora\.up|lora_linear_layer\.down|lora_linear_layer\.up)\.weight$"
)
_KOHYA_LORA_RE = re.compile(r"^lora_(unet|te|te1|te2)_(.+)\.(lora_down|lora_up)\.weight$")
_KOHYA_COMPONENT = {"unet": "unet", "te": "text_encoder", "te1": "text_encoder", "te2": "text_encoder_2"}


def lora_to_kohya(lora_file: Path, out_file: Path, alpha: float | None = None) -> Path:
    """A diffusers/peft-format LoRA file -> the kohya (Civitai) layout, with an ``.alpha`` per layer.

    kohya scales a layer by ``alpha / rank``; ``lora_up`` is multiplied by ``rank / alpha`` so the file
    means the same LoRA (exactly, when ``rank / alpha`` is a power of two)."""
    import torch
    from safetensors.torch import load_file

    src = load_file(str(lora_file))
    out: dict = {}
    for k, v in src.items():
        m = _DIFFUSERS_LORA_RE.match(k)
        if not m:
            raise ValueError(f"{k} is not a diffusers LoRA tensor name")
        comp, module, role = m.groups()
        if comp.startswith("text_encoder"):
            prefix = "lora_te2_" if comp == "text_encoder_2" else "lora_te_"
            name = prefix + ("text_model." + text_model_name(module)).replace(".", "_")
        else:
            name = "lora_unet_" + module.replace(".", "_")
        down = role in ("lora_A", "lora.down", "lora_linear_layer.down")
        rank = v.shape[0] if down else v.shape[1]
        a = float(rank if alpha is None else alpha)
        out[f"{name}.{'lora_down' if down else 'lora_up'}.weight"] = v if down else v * (rank / a)
        out[f"{name}.alpha"] = torch.tensor(a)
    return _save(out, out_file)


# -- LoRA vs base, from headers ------------------------------------------------------------------------
# Every LoRA layout in circulation, by name: its title in messages, and the families whose loader in
# diffusers reads it (measured for sd by tests/test_lora_producers.py and for sdxl, sd3, flux by
# tests/test_lora_producers_families.py, with files lycoris-lora and peft write; the layouts no available tool
# writes follow diffusers' own loaders: SD and SDXL share one kohya converter, every family filters out
# ``dora_scale``, LyCORIS suffixes other than lora_down / lora_up are renamed by none of them).
LORA_LAYOUTS: dict[str, tuple[str, frozenset[str]]] = {
    "diffusers": ("diffusers/peft LoRA", frozenset({"sd", "sdxl", "sd3", "flux"})),
    "diffusers-legacy": ("diffusers attention-processor LoRA", frozenset({"sd", "sdxl"})),
    "kohya": ("kohya LoRA/LoCon", frozenset({"sd", "sdxl", "flux"})),
    "kohya-transformer": ("kohya-named LoRA of a diffusers transformer (lora_unet_transformer_blocks_*)", frozenset()),
    "kohya-mixture": ("kohya LoRA with diffusers Flux names (lora_transformer_*)", frozenset({"flux"})),
    "xlabs": ("XLabs Flux LoRA", frozenset({"flux"})),
    "bfl": ("BFL/Flux original-layout LoRA", frozenset({"flux"})),
    "dora": ("DoRA (kohya/LyCORIS dora_scale)", frozenset()),
    "loha": ("LyCORIS LoHa", frozenset()),
    "lokr": ("LyCORIS LoKr", frozenset()),
    "full": ("LyCORIS full (diff)", frozenset()),
    "glora": ("LyCORIS GLoRA", frozenset()),
    "ia3": ("LyCORIS IA3", frozenset()),
    "diag-oft": ("LyCORIS diag-OFT", frozenset()),
    "boft": ("LyCORIS BOFT", frozenset()),
    "tucker": ("LyCORIS LoCon with Tucker/CP decomposition (lora_mid)", frozenset()),
    "dylora": ("kohya/LyCORIS DyLoRA (1x1-conv up weights stored 2-D)", frozenset()),
    "peft-oft": ("peft OFT/BOFT", frozenset()),
}
# why a layout is not loaded, for the one-line refusal
_WHY_NOT = {
    "dora": "diffusers drops the dora_scale magnitudes with a warning, so the images would be those of the LoRA without DoRA",
    "dylora": "diffusers expects 4-D up weights for convolution layers and stops after the base has loaded",
    "peft-oft": "diffusers' LoRA loaders read only tensors whose names contain 'lora' and stop after the base has loaded",
    "kohya-transformer": ("diffusers' SD3 loader has no kohya converter and applies none of its tensors; its Flux converter "
                          "reads only the original Flux names (lora_unet_double_blocks_*, lora_unet_single_blocks_*) and "
                          "stops on these after the base has loaded"),
}
_LYCORIS_SUFFIXES = (  # (layout, tensor-name suffix) in kohya-named files; first match wins
    ("dora", ".dora_scale"), ("loha", ".hada_w1_a"), ("lokr", ".lokr_w1"), ("lokr", ".lokr_w1_a"), ("full", ".diff"),
    ("glora", ".a1.weight"), ("ia3", ".on_input"), ("tucker", ".lora_mid.weight"),
    ("peft-oft", ".oft_r"), ("peft-oft", ".oft_R.weight"), ("peft-oft", ".boft_R"),  # OFT: older peft's / peft 0.21's names
)
# kohya names of diffusers' SD3 / Flux transformer modules (lycoris-lora wrapping diffusers' transformer writes
# them); trainers for these families name the original modules (lora_unet_joint_blocks_*, lora_unet_double_blocks_*)
_KOHYA_TRANSFORMER_RE = re.compile(r"^lora_unet_(single_)?transformer_blocks_\d+_")
# kohya-style names of diffusers' Flux modules with the prefix lora_transformer_ (OneTrainer's layout), which
# diffusers' Flux loader reads through its "mixture" converter; the layers that converter maps by name:
_MIXTURE_RE = re.compile(r"^lora_transformer_.+\.(lora_down\.weight|lora_up\.weight|alpha)$")
_MIXTURE_MAPPED = re.compile(
    r"^lora_transformer_((single_)?transformer_blocks_\d+_attn_(to_q|to_k|to_v|to_out_0|to_add_out|add_q_proj|add_k_proj|"
    r"add_v_proj)|context_embedder|norm_out_linear|proj_out|x_embedder|time_text_embed_(guidance|text|timestep)_embedder_linear_\d+)$"
    r"|^lora_te1_text_model_encoder_layers_\d+_(self_attn_(q|k|v|out)_proj|mlp_fc[12])$"
)
_LEGACY_RE = re.compile(r"\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
_XLABS_RE = re.compile(r"\.processor\.(proj_lora\d|qkv_lora\d)\.(down|up)\.weight$")
_BFL_RE = re.compile(
    r"^(diffusion_model\.)?(double_blocks|single_blocks|img_in|txt_in|final_layer|time_in|vector_in|guidance_in)\..*\.lora_[AB]\.weight$"
)
_LORA_ISH = re.compile(r"lora|hada_|lokr_|\.diff(_b)?$|\.oft_|\.on_input$|dora_scale|\.alpha$|\.a1\.weight$")


def lora_layout(head: dict) -> str:
    """The LoRA layout of a safetensors header: a key of :data:`LORA_LAYOUTS`, or 'empty' (no tensors),
    'not-lora' (no tensor name of any LoRA layout: a full model, an embedding, ...), 'unknown' (LoRA-like
    names of no layout known here)."""
    if not head:
        return "empty"
    keys = list(head)
    for layout, suffix in _LYCORIS_SUFFIXES:
        if any(k.endswith(suffix) for k in keys):
            return layout
    oft = [len(head[k].get("shape") or ()) for k in keys if k.endswith(".oft_blocks")]
    if oft:
        return "boft" if max(oft) == 4 else "diag-oft"
    if any(_XLABS_RE.search(k) for k in keys):
        return "xlabs"
    if any(_BFL_RE.match(k) for k in keys):
        return "bfl"
    if any(_MIXTURE_RE.match(k) for k in keys):
        return "kohya-mixture"
    if any(_KOHYA_LORA_RE.match(k) for k in keys):
        if _dylora_layers(head):
            return "dylora"
        return "kohya-transformer" if any(_KOHYA_TRANSFORMER_RE.match(k) for k in keys) else "kohya"
    if any(_DIFFUSERS_LORA_RE.match(k) for k in keys):
        return "diffusers"
    if any(_LEGACY_RE.search(k) for k in keys):
        return "diffusers-legacy"
    if any(re.match(r"^transformer\..*\.(lora_A|lora_B)\.weight$", k) for k in keys):
        return "diffusers"
    return "unknown" if any(_LORA_ISH.search(k) for k in keys) else "not-lora"


def is_lora(layout: str) -> bool:
    return layout in LORA_LAYOUTS or layout == "unknown"


def _dylora_layers(head: dict) -> list[str]:
    """kohya layers whose lora_down is a 4-D convolution weight but whose lora_up is 2-D (DyLoRA's way
    of storing 1x1 convolutions)."""
    out = []
    for k, v in head.items():
        if k.endswith(".lora_down.weight") and len(v.get("shape") or ()) == 4:
            up = head.get(k[: -len("lora_down.weight")] + "lora_up.weight")
            if up is not None and len(up.get("shape") or ()) == 2:
                out.append(k[: -len(".lora_down.weight")])
    return out


def lora_unsupported(head: dict, family: str) -> str | None:
    """Why the installed diffusers cannot load this LoRA as written for ``family`` (None: it can, or the
    layout is not known here)."""
    import diffusers

    layout = lora_layout(head)
    version = diffusers.__version__
    if layout in LORA_LAYOUTS and family not in LORA_LAYOUTS[layout][1]:
        title = LORA_LAYOUTS[layout][0]
        why = _WHY_NOT.get(layout)
        return f"{title} is not supported by diffusers {version} for {family}" + (f" ({why})" if why else "")
    te_dora = sorted(k for k in head if "lora_magnitude_vector" in k and k.startswith("text_encoder"))
    if te_dora:
        return (
            f"peft DoRA on the text encoder is not supported by diffusers {version} for {family} (its "
            f"lora_magnitude_vector tensors, e.g. {te_dora[0]}, are not loaded into the text encoder)"
        )
    if layout == "kohya-mixture":
        why = _mixture_unconvertible(head)
        if why:
            return f"{LORA_LAYOUTS[layout][0]} is not supported by diffusers {version} for {family} as written ({why})"
    if layout == "diffusers":
        comps = sorted({k.split(".", 1)[0] for k in head if _COMPONENT_RE.match(k.split(".", 1)[0]) and "." in k})
        allowed = LORA_COMPONENTS.get(family, ())
        other = [c for c in comps if c not in allowed]
        # a denoiser of another family is the family check's to name (LoraPlayer.families)
        if other and allowed and not any(c in ("unet", "transformer") for c in other):
            first = min(k for k in head if k.startswith(other[0] + "."))
            return (
                f"a diffusers/peft LoRA with {other[0]} tensors is not supported by diffusers {version} for {family} (its "
                f"{family} loader loads {', '.join(LORA_COMPONENTS[family])} only, so tensors such as {first} would be dropped)"
            )
    mixed = _mixed_spellings(head) if layout == "diffusers" else None
    if mixed:
        comp, first, other, n = mixed
        return (
            f"a diffusers/peft LoRA whose {comp} tensors mix peft names (lora_A/lora_B) and older diffusers names "
            f"(lora.down/lora.up) is not supported by diffusers {version} for {family} (it converts the names of a "
            f"component by its first tensor, {first}, so {n} tensors such as {other} would not load; diffusers' "
            "convert_state_dict_to_diffusers writes such files when adapters are on more than attention projections)"
        )
    return None


def _mixture_unconvertible(head: dict) -> str | None:
    """Why diffusers' Flux "mixture" converter (lora_transformer_* / lora_te1_* names) cannot take this file
    as written: it maps a fixed list of layers and stops on any other after the base has loaded, needs an
    alpha per layer, and drops lora_unet_* tensors without a word."""
    layers: dict[str, set[str]] = {}
    for k in head:
        layer, _, part = k.rpartition(".lora_") if ".lora_" in k else k.rpartition(".")
        layers.setdefault(layer, set()).add(part)
    for layer in sorted(layers):
        if layer.startswith("lora_unet_"):
            return f"its converter drops the lora_unet_* layers, e.g. {layer}, without a word"
        if not _MIXTURE_MAPPED.match(layer):
            return (f"its converter maps only the attention projections of the blocks, the embedders, proj_out and the text "
                    f"encoder's lora_te1_text_model_* layers; it stops on {layer} after the base has loaded")
        if "alpha" not in layers[layer]:
            return f"its converter needs an alpha per layer and stops on {layer}, which has none"
    return None


# the pipeline components each family's LoRA loader in diffusers loads (load_lora_weights): a diffusers/peft
# file's tensors for any other component (SD3's T5 text_encoder_3, Flux's T5 text_encoder_2) are dropped
LORA_COMPONENTS = {
    "sd": ("unet", "text_encoder"),
    "sdxl": ("unet", "text_encoder", "text_encoder_2"),
    "sd3": ("transformer", "text_encoder", "text_encoder_2"),
    "flux": ("transformer", "text_encoder"),
}
_COMPONENT_RE = re.compile(r"^(unet|transformer|text_encoder(_\d)?)$")


_OLD_DIFFUSERS_NAMES = re.compile(r"\.(lora\.(down|up)|lora_linear_layer\.(down|up))\.weight$")


def _mixed_spellings(head: dict) -> tuple[str, str, str, int] | None:
    """(component, its first tensor, an unloadable tensor, how many) of a diffusers/peft LoRA whose denoiser
    tensors diffusers would load only in part: its denoiser loader (``load_lora_adapter``) converts older
    diffusers names (``lora.down``) to peft's only when the component's first tensor (in safetensors' sorted
    order) is not already a peft name (``lora_A``), and then injects adapters for peft names alone."""
    for comp in ("unet", "transformer"):
        keys = sorted(k for k in head if k.startswith(comp + "."))
        if not keys or "lora_A" not in keys[0]:
            continue
        old = [k for k in keys if _OLD_DIFFUSERS_NAMES.search(k)]
        if old:
            return comp, keys[0], old[0], len(old)
    return None


def lora_rank_mismatch(head: dict) -> str | None:
    """A layer whose down and up weights disagree on the rank (a corrupt or mis-merged file), from the header."""
    pairs = (("lora_down.weight", "lora_up.weight"), ("lora_A.weight", "lora_B.weight"), ("lora.down.weight", "lora.up.weight"),
             ("lora_linear_layer.down.weight", "lora_linear_layer.up.weight"))
    for k, v in sorted(head.items()):
        for down, up in pairs:
            if k.endswith("." + down):
                other = head.get(k[: -len(down)] + up)
                d, u = v.get("shape") or [], (other or {}).get("shape") or []
                if other is None:
                    return f"layer {k[: -len(down) - 1]} has a {down} tensor but no {up}"
                if len(d) >= 2 and len(u) >= 2 and d[0] != u[1]:
                    return f"layer {k[: -len(down) - 1]} has rank {d[0]} in {down} {d} but {u[1]} in {up} {u}"
    return None


def base_layers(base: Path) -> dict[str, dict[str, list[int]]]:
    """``{component: {module: weight shape}}`` of a local base (diffusers folder or single file), from
    headers. Components: ``unet``, ``text_encoder`` (and ``text_encoder_2`` for two-encoder folders)."""
    out: dict[str, dict[str, list[int]]] = {}
    if base.is_dir():
        for comp in ("unet", "text_encoder", "text_encoder_2"):
            for f in sorted((base / comp).glob("*.safetensors")):
                for k, v in header(f).items():
                    if k.endswith(".weight"):
                        name = k[: -len(".weight")]
                        out.setdefault(comp, {})[text_model_name(name) if comp != "unet" else name] = v.get("shape")
        return out
    head = header(base)
    unet = {k[len(UNET_PREFIX):]: v for k, v in head.items() if k.startswith(UNET_PREFIX)}
    layers = ldm_unet_layers(unet)
    for k, v in unet.items():
        name = unet_name_from_ldm(k, layers)
        if name is not None and name.endswith(".weight"):
            out.setdefault("unet", {})[name[: -len(".weight")]] = v.get("shape")
    for k, v in head.items():
        if k.startswith(CLIP_PREFIX) and k.endswith(".weight"):
            out.setdefault("text_encoder", {})[text_model_name(k[len(CLIP_PREFIX): -len(".weight")])] = v.get("shape")
    return out


def _kohya_names(comp: str, modules) -> dict[str, str]:
    """kohya layer name (module path with '_' for '.') -> module, in every spelling trainers use."""
    names: dict[str, str] = {}
    if comp == "unet":
        layers, up_attn = unet_layout(modules)
        for mod in modules:
            names[mod.replace(".", "_")] = mod
            ldm = unet_name_to_ldm(mod, layers, up_attn)  # SGM/LDM spelling (input_blocks_4_1_...)
            if ldm is not None:
                names.setdefault(ldm.replace(".", "_"), mod)
    else:
        for mod in modules:
            names[("text_model." + mod).replace(".", "_")] = mod
            names[mod.replace(".", "_")] = mod
    return names


_COMPONENT_WORDS = {"unet": "UNet", "text_encoder": "text-encoder", "text_encoder_2": "second text-encoder"}


def lora_misfit(base: Path, lora_file: Path) -> str | None:
    """Why a LoRA file cannot fit a local base, from the two files' headers alone (no weights loaded);
    None when it fits or the two cannot be compared (a layout not known here). UNet bases (SD1.x/2.x,
    SDXL; folder or single file; diffusers/peft or kohya LoRAs), and transformer bases (SD3, Flux
    folders) with diffusers-layout LoRAs."""
    base = Path(base)
    transformer = sorted((base / "transformer").glob("*.safetensors")) if base.is_dir() else []
    return _transformer_lora_misfit(transformer, lora_file) if transformer else _unet_lora_misfit(base, lora_file)


def _transformer_lora_misfit(transformer: list[Path], lora_file: Path) -> str | None:
    base: dict[str, list[int]] = {}
    for f in transformer:
        base.update({k: v.get("shape") for k, v in header(f).items()})
    n_found = n_lora = 0
    first_absent = None
    for key, info in sorted(header(lora_file).items()):
        # peft names (lora_A / lora_B) and older diffusers names (lora.down / lora.up)
        m = re.match(r"^transformer\.(.+)\.(lora_A|lora_B|lora\.down|lora\.up)\.weight$", key)
        if not m:
            continue
        n_lora += 1
        target, got = base.get(m.group(1) + ".weight"), info.get("shape")
        if target is None:
            first_absent = first_absent or key
            continue
        n_found += 1
        if len(target) != 2 or not got or len(got) != 2:
            continue
        down = m.group(2) in ("lora_A", "lora.down")
        if (down and got[1] != target[1]) or (not down and got[0] != target[0]):
            return (
                f"layer {m.group(1)} maps {target[1]} -> {target[0]} features in the base, but the LoRA's "
                f"{m.group(2)} weight has shape {list(got)}"
            )
    if n_lora and not n_found:
        return f"none of its {n_lora} transformer tensors name a layer of the base"
    if n_found < n_lora:
        return (f"{n_lora - n_found} of its {n_lora} transformer tensors name no layer of the base (first: "
                f"{first_absent}), so only part of the LoRA would apply")
    return None


def _unet_lora_misfit(base: Path, lora_file: Path) -> str | None:
    layers = base_layers(Path(base))
    if "unet" not in layers:
        return None
    kohya_maps: dict[str, dict[str, str]] = {}
    counts: dict[str, list[int]] = {}  # component -> [tensors, tensors naming a base layer]
    for key, info in sorted(header(lora_file).items()):
        if m := _DIFFUSERS_LORA_RE.match(key):
            comp, module, role = m.groups()
            module = module if comp == "unet" else text_model_name(module)
        elif m := _KOHYA_LORA_RE.match(key):
            comp, role = _KOHYA_COMPONENT[m[1]], m[3]
            if comp in layers and comp not in kohya_maps:
                kohya_maps[comp] = _kohya_names(comp, layers[comp])
            module = kohya_maps.get(comp, {}).get(m[2], m[2])
        else:
            continue
        if comp not in layers:
            return (
                f"it has {_COMPONENT_WORDS[comp]} tensors ({key}), but the base has no {comp}: "
                "it was trained for a base with another text-encoder layout (SDXL has two)"
            )
        c = counts.setdefault(comp, [0, 0, None])
        c[0] += 1
        target, got = layers[comp].get(module), info.get("shape")
        if target is None:
            c[2] = c[2] or key
            continue
        c[1] += 1
        if len(target) < 2 or not got or len(got) < 2:
            continue
        down = role in ("lora_A", "lora.down", "lora_linear_layer.down", "lora_down")
        if (down and got[1] != target[1]) or (not down and got[0] != target[0]):
            return (
                f"layer {module} maps {target[1]} -> {target[0]} features in the base, but the LoRA's "
                f"{role} weight has shape {list(got)}"
            )
    for comp, (n, found, first_absent) in counts.items():
        if n and not found:
            return f"none of its {n} {_COMPONENT_WORDS[comp]} tensors name a layer of the base"
        if found < n:  # diffusers would drop these layers without a word: the LoRA would apply in part
            return (
                f"{n - found} of its {n} {_COMPONENT_WORDS[comp]} tensors name no layer of the base (first: "
                f"{first_absent}), so only part of the LoRA would apply"
            )
    return None


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def lora_layers_by_component(head: dict) -> dict[str, int]:
    """{pipeline component: layers} of a diffusers/peft or kohya LoRA, from its tensor names (the
    number of adapter layers loading must attach; empty for other layouts)."""
    layers: dict[str, set[str]] = {}
    for key in head:
        if m := _DIFFUSERS_LORA_RE.match(key):
            comp, module = m[1], m[2]
        elif m := _KOHYA_LORA_RE.match(key):
            comp, module = _KOHYA_COMPONENT[m[1]], m[2]
        elif m := re.match(r"^transformer\.(.+)\.(lora_A|lora_B|lora\.down|lora\.up)\.weight$", key):
            comp, module = "transformer", m[1]
        elif m := re.match(r"^lora_transformer_(.+)\.(lora_down|lora_up)\.weight$", key):
            comp, module = "transformer", m[1]
        else:
            continue
        layers.setdefault(comp, set()).add(module)
    return {comp: len(mods) for comp, mods in layers.items()}


# -- single-file checkpoints vs their config, from the header ----------------------------------------
_SD_COMPONENTS = (("UNet", UNET_PREFIX), ("VAE", VAE_PREFIX), ("text encoder", "cond_stage_model."))


def single_file_mismatch(head: dict, config: Path | None) -> str | None:
    """Why an SD 1.x/2.x single-file checkpoint cannot load with the diffusers configs in ``config``
    (a folder with unet/, vae/, text_encoder/ configs), from its header alone: a component with no
    tensors, text-encoder names without ``text_model.``, or tensors that diffusers' own converters map
    to other names or shapes than the config's models have (the converters run on meta tensors: no
    weight is read). None when it fits, or when the file is not an SD 1.x/2.x checkpoint."""
    import diffusers

    from .families import family_from_single_file_keys

    if family_from_single_file_keys(head) != "sd":
        return None
    for what, prefix in _SD_COMPONENTS:
        if not any(k.startswith(prefix) for k in head):
            return f"it has no {what} tensors ({prefix}*)"
    clip = [k for k in head if k.startswith(CLIP_PREFIX)]
    if clip and not any(k.startswith(CLIP_PREFIX + "text_model.") for k in clip):
        return (
            f"its text-encoder tensors lack the text_model. level ({clip[0]}; diffusers' converter writes them so under "
            f"transformers >= 5.6), which diffusers {diffusers.__version__}'s from_single_file does not read"
        )
    if config is None:
        return None
    ckpt = _meta_checkpoint(head)
    for what, sub, check in (("UNet", "unet", _unet_vs_config), ("VAE", "vae", _vae_vs_config),
                             ("text encoder", "text_encoder", _clip_vs_config)):
        cfg = Path(config) / sub / "config.json"
        if not cfg.is_file():
            continue
        try:
            why = check(ckpt, read_json(cfg))
        except Exception as exc:  # noqa: BLE001 - diffusers' converter fails on the file: so would the load
            why = f"diffusers' converter fails on it ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
        if why:
            return f"its {what} does not match the config's ({cfg.parent.name}/config.json): {why}"
    return None


def _meta_checkpoint(head: dict) -> dict:
    import torch

    dtypes = {"F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    return {k: torch.empty(v.get("shape") or [], dtype=dtypes.get(v.get("dtype"), torch.float32), device="meta")
            for k, v in head.items()}


def _compare(got: dict, model) -> str | None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in got.items()}
    missing = [k for k in want if k not in have]
    if missing:
        return f"{len(missing)} of the {len(want)} tensors it needs are missing (first: {missing[0]})"
    for k, shape in want.items():
        if have[k] != shape:
            return f"{k} has shape {list(have[k])} in the file but {list(shape)} in the config's model"
    return None


def _empty(cls, config: dict):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(config)


def _unet_vs_config(ckpt: dict, config: dict) -> str | None:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    return _compare(convert_ldm_unet_checkpoint(ckpt, config), _empty(UNet2DConditionModel, config))


def _vae_vs_config(ckpt: dict, config: dict) -> str | None:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    return _compare(convert_ldm_vae_checkpoint(ckpt, config), _empty(AutoencoderKL, config))


def _clip_vs_config(ckpt: dict, config: dict) -> str | None:
    from transformers import CLIPTextConfig, CLIPTextModel

    if not any(k.startswith(CLIP_PREFIX) for k in ckpt):
        return None  # an OpenCLIP text encoder (SD 2.x): converted differently, left to the loader
    model = _empty(CLIPTextModel, CLIPTextConfig(**{k: v for k, v in config.items() if not k.startswith("_")}))
    got = {k[len(CLIP_PREFIX):]: v for k, v in ckpt.items() if k.startswith(CLIP_PREFIX)}
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel (as diffusers' loader does)
        got = {k.removeprefix("text_model."): v for k, v in got.items()}
    want = set(model.state_dict())
    return _compare({k: v for k, v in got.items() if k in want or not k.endswith("position_ids")}, model)


def single_controlnet_mismatch(head: dict, config: Path) -> str | None:
    """Why a single-file SD ControlNet (``control_model.*``) cannot load with the ``config.json`` in
    ``config``: the tensors diffusers' own converter (on meta tensors) maps to other names or shapes than
    the config's ControlNet has. None when it fits or is not such a file."""
    cfg = Path(config) / "config.json"
    if not any(k.startswith(CONTROLNET_PREFIX) for k in head) or not cfg.is_file():
        return None
    config_data = read_json(cfg)
    if config_data.get("_class_name") not in (None, "ControlNetModel"):
        return None
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    try:
        return _compare(convert_controlnet_checkpoint(_meta_checkpoint(head), config_data), _empty(ControlNetModel, config_data))
    except Exception as exc:  # noqa: BLE001 - diffusers' converter fails on the file: so would the load
        return f"diffusers' converter fails on it ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
