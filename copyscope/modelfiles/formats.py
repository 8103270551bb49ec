"""Real model files: safetensors headers, and the tensor names of the layouts people ship, both ways.

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

This module reads headers, converts names and files, and lists a base's layers (:func:`base_layers`); it
imports no other copyscope module. What is judged from the headers lives beside it:
:mod:`copyscope.modelfiles.lora_layouts` (which LoRA layout a file is, whether diffusers loads it for a family,
:func:`~copyscope.modelfiles.lora_fit.lora_misfit`: why a LoRA cannot fit a base, for every layout above, before
anything is loaded) and :mod:`copyscope.modelfiles.single_file_checks` (a single-file checkpoint against its config).
The zoo-level checks (single-file configs offline, variants) are in :mod:`copyscope.modelfiles.file_checks`.
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


# -- a base's layers (diffusers names), from headers ------------------------------------------------
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
