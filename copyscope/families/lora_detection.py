"""Which families a LoRA file can belong to, from its safetensors header, with no table of ours per family.

A transformer family's claim on a file comes from two of diffusers' own sources:

* its **LoRA loader's conversion** (:func:`copyscope.modelfiles.lora_conversion.diffusers_view`: the family's
  ``lora_state_dict`` over the header): kohya, BFL / ai-toolkit, XLabs, OneTrainer's names become diffusers' module
  names as that loader would make them, or the conversion fails;
* its **denoiser's module names** (:func:`denoiser_modules`): the diffusers model class its pipeline takes, built on
  the meta device from its default configuration (the reference checkpoint's architecture) and the variants the
  family names (``Family.denoiser_variants``), every index into a list of blocks written ``#``.

A file fits a family when the family's loader converts all of it into modules of its denoiser, or when its names as
written (in diffusers' or kohya's spelling of the modules, whether or not the loader reads it: the layout check then
names that) are all its denoiser's, a module of no family's denoiser narrowing nothing. UNet families (SD1.x/2.x,
SDXL) are told by their names (``Family.lora_names``), as are a family's original-checkpoint names no diffusers loader
converts (SD3's ``joint_blocks``). A file that several families fit says several: the layer check against a base
(copyscope.modelfiles.lora_fit.lora_misfit) and the load-time count of attached layers judge it there.
"""

from __future__ import annotations

import inspect
import re
import typing
from functools import lru_cache
from pathlib import Path

from .base import Family

_TEXT_ENCODER_KEY = re.compile(r"^(text_encoder(_\d)?\.|lora_te\d?_)")
# a tensor's role after its module name: LoRA factors in every spelling, DoRA magnitudes, alphas, LyCORIS factors
_ROLE = re.compile(r"\.(lora_[AB]|lora\.(down|up)|lora_(down|up)|lora_linear_layer\.(down|up)|lora_mid|lora_magnitude_vector|"
                   r"alpha|dora_scale|hada_\w+|lokr_\w+|diff(_b)?|on_input|oft_\w+|[ab][12])(\.weight)?$")
# the prefixes before a transformer's module names that say nothing of the family (diffusers/peft, kohya); other
# writers' prefixes (ai-toolkit's diffusion_model., OneTrainer's lora_transformer_) are claimed by the loaders that
# convert them
_PREFIX = re.compile(r"^(transformer\.|lora_unet_)")


def has_module(modules: frozenset[str], module: str) -> bool:
    """Whether a (diffusers-named) module is among a denoiser's ``modules``, where ``#`` stands for any index of a
    list of blocks (``transformer_blocks.#.attn.to_q``): each index of the name is tried as written and as ``#``."""
    parts = module.split(".")
    numeric = [i for i, p in enumerate(parts) if p.isdigit()]
    if len(numeric) > 6:
        return False
    for mask in range(1 << len(numeric)):
        trial = list(parts)
        for bit, i in enumerate(numeric):
            if mask >> bit & 1:
                trial[i] = "#"
        if ".".join(trial) in modules:
            return True
    return False


def denoiser_class(fam: Family):
    """The diffusers model class the family's pipeline takes as its denoiser (from its ``__init__`` annotation)."""
    import diffusers

    annotation = inspect.signature(getattr(diffusers, fam.pipeline).__init__).parameters[fam.denoiser].annotation
    if isinstance(annotation, str):  # a postponed annotation: "WanTransformer3DModel | None"
        annotation = annotation.split("|")[0].strip()
        return getattr(diffusers, annotation)
    # an optional denoiser (Wan's: `WanTransformer3DModel | None`, for Wan2.2's second expert)
    return next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)


def denoiser_modules(fam: Family) -> frozenset[str]:
    """The names of every layer with a weight matrix (what a LoRA adapts) of the family's denoiser, at its default
    configuration and at each of ``fam.denoiser_variants``, built on the meta device (no weights); an index into a list
    of blocks (an ``nn.ModuleList``, not an ``nn.Sequential`` whose positions are fixed) written ``#``."""
    key = (fam.name, fam.pipeline, fam.denoiser, repr(fam.denoiser_variants))
    if key not in _MODULES:
        _MODULES[key] = _build_modules(fam)
    return _MODULES[key]


_MODULES: dict[tuple, frozenset[str]] = {}  # (a Family holds dicts: not hashable for lru_cache)


def _build_modules(fam: Family) -> frozenset[str]:
    import torch

    cls = denoiser_class(fam)
    names: set[str] = set()
    for overrides in ({}, *fam.denoiser_variants):
        with torch.device("meta"):
            model = cls(**overrides)
        lists = {n for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)}
        for n, m in model.named_modules():
            if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2:
                parts = n.split(".")
                names.add(".".join("#" if p.isdigit() and ".".join(parts[:i]) in lists else p for i, p in enumerate(parts)))
    return frozenset(names)


def _module(key: str) -> str | None:
    """The module a tensor adapts, without its role; None for a tensor of no known role."""
    m = _ROLE.search(key)
    return key[: m.start()] if m else None


def _kohya_names(fam: Family) -> re.Pattern:
    """The family's module names as kohya writes them (``.`` as ``_``), every index any number."""
    return _kohya_rx(denoiser_modules(fam))


@lru_cache(maxsize=None)
def _kohya_rx(modules: frozenset[str]) -> re.Pattern:
    return re.compile("|".join(re.escape(n.replace(".", "_")).replace("\\#", r"\d+") for n in sorted(modules)))


_UNET_NAMES = (r"^(unet\.|lora_unet_)(down_blocks|up_blocks|mid_block|input_blocks|middle_block|output_blocks|conv_in|conv_out|"
               r"conv_norm_out|time_embed|label_emb|add_embedding|out)[._]|^lora_te_|^text_encoder\.")
_PARTNERS = (("lora_A", "lora_B"), ("lora_down", "lora_up"), ("lora.down", "lora.up"))


def _names_header(keys) -> dict:
    """A header for bare tensor names (each naming a LoRA layer: its other factor, and a kohya layer's alpha, added
    where missing, as converters require them): rank-4 factors of 48 features, 1-element alphas."""
    names = list(keys)
    for k in list(names):
        for a, b in _PARTNERS:
            for x, y in ((a, b), (b, a)):
                if f".{x}." in k and k.replace(f".{x}.", f".{y}.") not in names:
                    names.append(k.replace(f".{x}.", f".{y}."))
    for k in list(names):  # kohya layers carry an alpha
        if k.endswith(".lora_down.weight") and k[: -len("lora_down.weight")] + "alpha" not in names:
            names.append(k[: -len("lora_down.weight")] + "alpha")

    def shape(k: str) -> list[int]:
        if k.endswith(".alpha"):
            return []
        return [48, 4] if re.search(r"\.(lora_B|lora_up|lora\.up)\.", k) else [4, 48]

    return {k: {"dtype": "F32", "shape": shape(k)} for k in names}


def lora_families(head, families: dict[str, Family], path: Path | None = None) -> frozenset[str] | None:
    """The families (of ``families``) a LoRA file can belong to; None when its names say nothing. ``head``: its
    safetensors header (or only its tensor names); ``path``: the file, for the conversions that read values."""
    if not isinstance(head, dict):
        head = _names_header(head)
    keys = list(head)
    transformers = [f for f in families.values() if f.denoiser == "transformer"]
    fits = {f.name for f in transformers if _converted_claim(f, head, path)} | _written_claim(transformers, keys)
    if fits:
        return frozenset(fits)
    named = {f.name for f in families.values() if f.lora_names and any(re.search(f.lora_names, k) for k in keys)}
    if named:
        return frozenset(named)
    # UNet names that tell neither SD1.x/2.x from SDXL (a UNet's modules, in diffusers' or the original names): any UNet
    # family
    if any(re.match(_UNET_NAMES, k) for k in keys):
        return frozenset(f.name for f in families.values() if f.denoiser == "unet") or None
    return None


def _converted_claim(fam: Family, head: dict, path: Path | None) -> bool:
    """The family's loader converts every tensor of the file (but the text encoders', the layout check's) into
    modules of its denoiser."""
    from ..modelfiles.lora_conversion import diffusers_view

    view = diffusers_view(head, fam, path)
    if view.error or view.undetermined:
        return False
    keys = [k for k in view.shapes if not _TEXT_ENCODER_KEY.match(k)]
    prefix = fam.denoiser + "."
    if not keys or any(not k.startswith(prefix) for k in keys):
        return False
    modules = {_module(k[len(prefix):]) for k in keys}
    # a conversion splits fused layers (qkv into q, k, v), never joins them: fewer layers out than in is a loader
    # that dropped some (Flux's drops kohya names it does not map)
    written = {_module(k) or k for k in head if not _TEXT_ENCODER_KEY.match(k)}
    if None in modules or len(modules) < len(written):
        return False
    # every converted module must be one of its denoiser's (peft would not find the others)
    return all(has_module(denoiser_modules(fam), m) for m in modules)


def _written_claim(transformers: list[Family], keys: list[str]) -> set[str]:
    """The families whose denoiser has every module the file names as written (after a writer's prefix; kohya's with
    ``_`` for ``.``), whether or not their loader reads that spelling (the layout check refuses what it does not read);
    a module of no family narrows nothing, and a file that names no family's module is claimed by none."""
    fits, named = {f.name for f in transformers}, False
    for k in keys:
        if _TEXT_ENCODER_KEY.match(k):
            continue
        if not _PREFIX.match(k):  # another writer's spelling: the loaders that convert it claim the file
            return set()
        module = _module(_PREFIX.sub("", k))
        if module is None:
            continue
        if "." in module:
            have = {f.name for f in transformers if has_module(denoiser_modules(f), module)}
        else:  # kohya: the module path with '_' for '.'
            have = {f.name for f in transformers if _kohya_names(f).fullmatch(module)}
        if have:
            fits &= have
            named = True
    return fits if named else set()
