"""Why a LoRA file cannot fit a base, from the two files' headers alone (no weights loaded): :func:`lora_misfit`
for UNet bases (SD1.x/2.x, SDXL; folder or single file; diffusers/peft or kohya names) and transformer folders (the
LoRA's tensors as the base family's diffusers loader converts them, :mod:`copyscope.modelfiles.lora_conversion`).
"""

from __future__ import annotations

import re
from pathlib import Path

from .formats import (
    _DIFFUSERS_LORA_RE,
    _KOHYA_COMPONENT,
    _KOHYA_LORA_RE,
    base_layers,
    header,
    text_model_name,
    unet_layout,
    unet_name_to_ldm,
)


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


def lora_misfit(base: Path, lora_file: Path, family=None) -> str | None:
    """Why a LoRA file cannot fit a local base, from the two files' headers alone (no weights loaded);
    None when it fits or the two cannot be compared (a layout not known here). UNet bases (SD1.x/2.x,
    SDXL; folder or single file; diffusers/peft or kohya LoRAs), and transformer folders: the LoRA's tensors as
    ``family``'s diffusers loader converts them (:mod:`copyscope.modelfiles.lora_conversion`: every layout it
    reads), or as written when no family is given."""
    base = Path(base)
    transformer = sorted((base / "transformer").glob("*.safetensors")) if base.is_dir() else []
    if not transformer:
        return _unet_lora_misfit(base, lora_file)
    head = header(lora_file)
    if family is not None:
        from .lora_conversion import diffusers_view

        view = diffusers_view(head, family, lora_file)
        if view.error:
            return f"diffusers' {family.title} LoRA loader cannot convert it ({view.error})"
        left = [k for k in view.outside(("transformer", "text_encoder", "text_encoder_2", "text_encoder_3"))
                if not re.match(r"^lora_te\d?_", k)]  # text encoders: the layout check's (lora_unsupported)
        if left:
            return (f"diffusers' {family.title} LoRA loader leaves {len(left)} of its tensors under names it does not load "
                    f"(first: {left[0]}), so they would not apply")
        head = {k: {"shape": list(s)} for k, s in view.shapes.items()}
    return _transformer_lora_misfit(transformer, head)


def loader_note(lora_file: Path, family) -> str:
    """What ``family``'s diffusers loader makes of a LoRA file it does not fit, for a refusal: " (... cannot convert it:
    ...)", " (... leaves N of its tensors under names it does not load ...)", or "" (UNet families, nothing to add)."""
    from .lora_conversion import diffusers_view

    if family.denoiser != "transformer":
        return ""
    view = diffusers_view(header(lora_file), family, lora_file)
    left = view.outside((family.denoiser, "text_encoder", "text_encoder_2", "text_encoder_3"))
    if view.error:
        return f" (diffusers' {family.title} LoRA loader cannot convert it: {view.error})"
    if left:
        return f" (diffusers' {family.title} LoRA loader leaves {len(left)} of its tensors under names it does not load, e.g. {left[0]})"
    return ""


def _transformer_lora_misfit(transformer: list[Path], lora: dict) -> str | None:
    base: dict[str, list[int]] = {}
    for f in transformer:
        base.update({k: v.get("shape") for k, v in header(f).items()})
    n_found = n_lora = 0
    first_absent = None
    for key, info in sorted(lora.items()):
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
