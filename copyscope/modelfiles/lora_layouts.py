"""LoRA files judged from their safetensors headers alone, before anything loads: which layout a file is
(:data:`LORA_LAYOUTS`, :func:`lora_layout`: every LoRA layout in circulation, and the families whose
diffusers loader reads it), why the installed diffusers cannot load it for a family
(:func:`lora_unsupported`), down/up ranks that disagree (:func:`lora_rank_mismatch`) and how many layers loading must
attach (:func:`lora_layers_by_component`). Why a file cannot fit a base is :mod:`copyscope.modelfiles.lora_fit`'s; the
tensor names come from :mod:`copyscope.modelfiles.formats`.
"""

from __future__ import annotations

import re

from .formats import _DIFFUSERS_LORA_RE, _KOHYA_COMPONENT, _KOHYA_LORA_RE


# -- LoRA layouts, from headers ----------------------------------------------------------------------
# Every LoRA layout in circulation, by name, with its title in messages. Which families' diffusers loaders read each
# one is the family's (``Family.lora_layouts``, :func:`layout_families`), measured for sd by
# tests/e2e/test_lora_producers.py and for the other families by tests/e2e/test_lora_producers_families.py, with files
# lycoris-lora and peft write; the layouts no available tool writes follow diffusers' own loaders: SD and SDXL share
# one kohya converter, Chroma's pipeline loads LoRAs with Flux's loader (FluxLoraLoaderMixin, so its converters),
# Sana's reads diffusers/peft names only, every family filters out ``dora_scale``, LyCORIS suffixes other than
# lora_down / lora_up are renamed by none of them but Z-Image's, which reads ai-toolkit's LoKr only.
LORA_LAYOUTS: dict[str, str] = {
    "diffusers": "diffusers/peft LoRA",
    "diffusers-legacy": "diffusers attention-processor LoRA",
    "kohya": "kohya LoRA/LoCon",
    "kohya-transformer": "kohya-named LoRA of a diffusers transformer (lora_unet_transformer_blocks_*)",
    "kohya-mixture": "kohya LoRA with diffusers Flux names (lora_transformer_*)",
    "xlabs": "XLabs Flux LoRA",
    "bfl": "BFL/Flux original-layout LoRA",
    "dora": "DoRA (kohya/LyCORIS dora_scale)",
    "loha": "LyCORIS LoHa",
    "lokr": "LyCORIS LoKr",
    "full": "LyCORIS full (diff)",
    "glora": "LyCORIS GLoRA",
    "ia3": "LyCORIS IA3",
    "diag-oft": "LyCORIS diag-OFT",
    "boft": "LyCORIS BOFT",
    "tucker": "LyCORIS LoCon with Tucker/CP decomposition (lora_mid)",
    "dylora": "kohya/LyCORIS DyLoRA (1x1-conv up weights stored 2-D, or integer alphas)",
    "peft-oft": "peft OFT/BOFT",
    # diffusers' Wan loader converts both; no tool here writes them, so they are refused (_NOT_MEASURED)
    "wan-original": "Wan original-layout LoRA (diffusion_model.blocks.*)",
    "wan-musubi": "musubi-tuner Wan LoRA (lora_unet_blocks_*)",
}
_NOT_MEASURED = ("diffusers converts its names, but no tool available here writes such a file, so whether copyscope "
                 "applies it as its producer meant is not measured")
_WAN_LAYOUTS = {"wan-original": re.compile(r"^diffusion_model\.(blocks\.\d+|head|text_embedding|time_embedding)\..*lora"),
                "wan-musubi": re.compile(r"^lora_unet_blocks_\d+_")}


def layout_families(layout: str) -> frozenset[str]:
    """The registered families whose diffusers loader reads a layout as written."""
    from ..families import FAMILIES

    return frozenset(f.name for f in FAMILIES.values() if layout in f.lora_layouts)


# why a layout is not loaded, for the one-line refusal
_WHY_NOT = {
    "dora": "diffusers drops the dora_scale magnitudes with a warning, so the images would be those of the LoRA without DoRA",
    "dylora": ("diffusers expects 4-D up weights for convolution layers and stops after the base has loaded; and lycoris "
               "scales a DyLoRA layer by alpha / (rank blocks + 1), diffusers by alpha / rank, so the images would not be "
               "the producer's"),
    "peft-oft": "diffusers' LoRA loaders read only tensors whose names contain 'lora' and stop after the base has loaded",
    "bfl": ("only Flux.2's loader converts the original module names written with peft's lora_A / lora_B (ai-toolkit's "
            "layout); Flux.1's and Chroma's leave them as they are and attach none of them"),
    "kohya-transformer": ("diffusers' SD3 and Sana loaders have no kohya converter and apply none of its tensors; its Flux "
                          "converter (Flux.1 and Chroma) reads only the original Flux names (lora_unet_double_blocks_*, "
                          "lora_unet_single_blocks_*) and stops on these after the base has loaded"),
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
    for wan, rx in _WAN_LAYOUTS.items():
        if any(rx.match(k) for k in keys):
            return wan
    if any(_KOHYA_LORA_RE.match(k) for k in keys):
        if _dylora_layers(head) or _integer_alphas(head):
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


def _integer_alphas(head: dict) -> bool:
    """Every ``.alpha`` stored as an integer tensor: lycoris' DyLoRA writes them so (its LoRA, kohya's trainers and
    diffusers' converters write float alphas), also where it stores no convolution for :func:`_dylora_layers` to see."""
    alphas = [v.get("dtype", "") for k, v in head.items() if k.endswith(".alpha")]
    return bool(alphas) and all(d.startswith(("I", "U")) for d in alphas)


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
    if layout in LORA_LAYOUTS and family not in layout_families(layout):
        title = LORA_LAYOUTS[layout]
        if layout.startswith("wan-"):
            return f"{title} is not supported by copyscope yet ({_NOT_MEASURED})"
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
            return f"{LORA_LAYOUTS[layout]} is not supported by diffusers {version} for {family} as written ({why})"
    if layout == "diffusers":
        comps = sorted({k.split(".", 1)[0] for k in head if _COMPONENT_RE.match(k.split(".", 1)[0]) and "." in k})
        from ..families import FAMILIES

        allowed = FAMILIES[family].lora_components if family in FAMILIES else ()
        other = [c for c in comps if c not in allowed]
        # a denoiser of another family is the family check's to name (LoraPlayer.families)
        if other and allowed and not any(c in ("unet", "transformer") for c in other):
            first = min(k for k in head if k.startswith(other[0] + "."))
            outcome = FAMILIES[family].lora_other_components
            return (
                f"a diffusers/peft LoRA with {other[0]} tensors is not supported by diffusers {version} for {family} (its "
                f"{family} loader loads {', '.join(allowed)} only, so tensors such as {first} {outcome})"
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
