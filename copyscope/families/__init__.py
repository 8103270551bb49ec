"""Pipeline families: SD1.x/2.x, SDXL, SD3.x, Flux.1, Qwen-Image, Z-Image, Chroma, Sana, Flux.2 and Wan (text to
video), one module each (:mod:`.sd`, :mod:`.sdxl`, :mod:`.sd3`, :mod:`.flux`, :mod:`.qwenimage`, :mod:`.zimage`,
:mod:`.chroma`, :mod:`.sana`, :mod:`.flux2`, :mod:`.wan`),
each a :class:`~.base.Family`: the diffusers pipelines that run a base (text-to-image, ControlNet and img2img, built
from the same module objects), the ControlNet model class, the denoiser, the dtype it expects on CUDA, its
capabilities (ControlNet and how many at once, IP-Adapter, textual inversion, negative prompt, prompt-embedding
cache, the sizes and settings its pipeline can generate) and its
own generation settings (``generation.<family>`` in the zoo file, part of every image key of that family) and call
arguments. The zoo schema's ``generation:`` section is built from the registered families.

The family of a base is declared (``family:`` on the base) or read from its ``model_index.json`` (local folder, or
the hub cache); a base whose family cannot be found is SD1.x/2.x, as before families existed. LoRA and ControlNet
files are checked against the base's family from their headers / config before anything loads
(:func:`lora_families`, :func:`controlnet_family`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import chroma, flux, flux2, qwenimage, sana, sd, sd3, sdxl, wan, zimage
from .base import Family

FAMILIES: dict[str, Family] = {}
ALIASES: dict[str, str] = {}


def register_family(family: Family, aliases: dict[str, str] | None = None) -> Family:
    """Add a family (registration order is the order of the zoo schema's ``generation:`` settings)."""
    FAMILIES[family.name] = family
    ALIASES.update(aliases or {})
    return family


for _module in (sd, sdxl, sd3, flux, qwenimage, zimage, chroma, sana, flux2, wan):
    register_family(_module.FAMILY, _module.ALIASES)


def canonical_family(name: str) -> str | None:
    """The family's canonical name for a declared ``family:`` value, None when unknown."""
    name = name.strip().lower()
    name = ALIASES.get(name, name)
    return name if name in FAMILIES else None


def family_names() -> str:
    return ", ".join(FAMILIES) + " (aliases " + ", ".join(sorted(ALIASES)) + ")"


def family_settings(fam: Family, gen) -> dict:
    """The family's generation settings (part of the image key); {} for a family without settings (SD1.x/2.x)."""
    settings = fam.settings_of(gen)
    return settings.model_dump(mode="json") if settings is not None else {}


def family_call_kwargs(fam: Family, gen) -> dict:
    """Pipeline-call arguments that only this family takes."""
    return fam.call_kwargs(gen)


def family_from_model_index(index: dict) -> str | None:
    cls = index.get("_class_name", "")
    for fam in FAMILIES.values():
        if cls in fam.model_index_classes:
            return fam.name
    return None


def detect_family(base_dir: Path | None, hub_id: str | None = None, revision: str | None = None) -> tuple[str | None, str | None]:
    """(family, the pipeline class named by model_index.json) of a local diffusers folder or a
    cached hub id; (None, None) when nothing can be read (single files, uncached hub ids)."""
    index = model_index(base_dir, hub_id, revision)
    if not isinstance(index, dict):
        return None, None
    return family_from_model_index(index), str(index.get("_class_name"))


def model_index(base_dir: Path | None, hub_id: str | None = None, revision: str | None = None):
    """The model_index.json of a local diffusers folder or a cached hub id (None when it cannot be read; a local
    file that is not JSON raises ValueError)."""
    index = None
    if base_dir is not None and base_dir.is_dir() and (base_dir / "model_index.json").is_file():
        index = json.loads((base_dir / "model_index.json").read_text(encoding="utf-8"))
    elif hub_id is not None:
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(hub_id, "model_index.json", revision=revision, local_files_only=True)
            index = json.loads(Path(path).read_text(encoding="utf-8"))
        except Exception:  # noqa: BLE001 - not cached or unreadable (hub errors vary): the family must be declared, or defaults to sd
            index = None
    return index


def family_from_single_file_keys(keys) -> str | None:
    """The family of a single-file (A1111 / ComfyUI) checkpoint from its tensor names."""
    keys = list(keys)
    if any("distilled_guidance_layer." in k for k in keys):  # Chroma: Flux.1's blocks, its own guidance approximator
        return "chroma"
    if any("double_blocks." in k or "single_blocks." in k for k in keys):
        return "flux"
    if any("joint_blocks." in k for k in keys):
        return "sd3"
    # ComfyUI's Qwen-Image / Z-Image files keep the transformers' own module names (under model.diffusion_model.)
    modules = [re.sub(r"^(model\.)?diffusion_model\.", "", k) for k in keys]
    if any(re.match(_QWEN_BLOCKS, m) for m in modules):
        return "qwenimage"
    if any(re.match(_ZIMAGE_BLOCKS, m) for m in modules):
        return "zimage"
    if any(k.startswith("conditioner.embedders.1") for k in keys):
        return "sdxl"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "sd"
    return None


# -- add-on checks ---------------------------------------------------------------------------------
_UNET_FAMILIES = frozenset({"sd", "sdxl"})
_TRANSFORMER_FAMILIES = frozenset({"sd3", "flux", "qwenimage", "zimage", "chroma", "sana", "flux2", "wan"})
_FLUX_BLOCKS = frozenset({"flux", "chroma"})  # Chroma keeps Flux.1's blocks and their names
# Flux.1's original module names (BFL, XLabs and kohya-trainer layouts), and those of its layers Chroma does not have
# (the blocks' modulation, the guidance / time / vector embedders: Chroma has a distilled-guidance approximator)
_FLUX_ORIGINAL = r"lora_unet_(double|single)_blocks_|^(diffusion_model\.)?(double|single)_blocks\."
_FLUX_ONLY_ORIGINAL = r"_mod[._]lin|modulation[._]lin|adaLN_modulation|(^|[._])(guidance_in|time_in|vector_in)[._]"
# the blocks only Qwen-Image's transformer has (their image / text MLPs and modulations), and Z-Image's: `layers.<n>`
# besides `noise_refiner` / `context_refiner` blocks (Lumina 2, no family here, has the same names: the layer check,
# lora_misfit, tells a Lumina 2 LoRA from a Z-Image one by its shapes); matched at the start of a module name
_QWEN_BLOCKS = r"transformer_blocks[._]\d+[._](img|txt)_(mlp|mod)[._]"
_ZIMAGE_BLOCKS = r"((noise|context)_refiner[._]\d+|layers[._]\d+[._](attention|feed_forward|adaLN_modulation))[._]"
# Wan's blocks: `blocks.<n>` (its self- and cross-attention attn1 / attn2, its feed-forward ffn)
_WAN_BLOCKS = r"blocks[._]\d+[._]"
# a diffusers transformer's blocks, at the start of its module names
_BLOCKS = re.compile(rf"((single_)?transformer_blocks[._]\d+[._]|{_ZIMAGE_BLOCKS}|{_WAN_BLOCKS})")
_TEXT_ENCODER_KEY = re.compile(r"^(text_encoder(_\d)?\.|lora_te\d?_)")
# how LoRA files spell a diffusers transformer's module names (the prefix before the module name), each with the
# families whose loader reads that spelling; the first match names a key's prefix
_SPELLINGS = (
    # kohya-style diffusers names that only the Flux loader converts (its "mixture" converter: Flux.1, Chroma)
    (re.compile(r"^lora_transformer_"), _FLUX_BLOCKS),
    # diffusers names under the original checkpoints' prefix: Qwen-Image's and Z-Image's converters strip it (SD3 /
    # Flux files under this prefix name joint_blocks / double_blocks, matched before)
    (re.compile(r"^diffusion_model\."), frozenset({"qwenimage", "zimage"})),
    # diffusers/peft names, kohya names of diffusers' modules (what kohya-style writers such as lycoris-lora produce
    # when they wrap diffusers' transformer: LORA_LAYOUTS says which loaders read them) and bare module names
    (re.compile(r"^transformer\.|^lora_unet_|^"), _TRANSFORMER_FAMILIES),
)
# diffusers' module names in the transformer families (after the prefix; '.' in diffusers/peft names, '_' in
# kohya-style ones), each with the families whose transformer has such a module: a file fits the families that have
# every module it names (a module in no row narrows nothing; tests/unit/families/test_lora_family_names.py checks every
# module of every family's transformer against this table)
_TRANSFORMER_MODULES = tuple((re.compile(p), frozenset(f)) for p, f in (
    (r"^distilled_guidance_layer", {"chroma"}),
    (r"[._]ff[._]conv_(inverted|depth|point)|^caption_projection|^patch_embed[._]|^time_embed[._]", {"sana"}),
    (r"scale_shift_table", {"sana", "wan"}),
    (r"[._]attn1[._]", {"sana", "wan"}),  # their self-attention
    (r"[._]attn2[._]", {"sd3", "sana", "wan"}),  # SD3.5's second attention; Sana's and Wan's cross-attention
    (rf"^{_WAN_BLOCKS}|^condition_embedder|[._]ffn[._]|^patch_embedding", {"wan"}),
    (r"^(single_)?transformer_blocks", _TRANSFORMER_FAMILIES - {"wan"}),  # Wan's blocks are `blocks.<n>`
    # Flux.2's own: its single blocks' fused projection, its shared modulations and guidance embedder, its
    # feed-forwards' linear_in / linear_out (Flux.1's are ff.net.*)
    (r"[._]to_qkv_mlp_proj|^(double_stream|single_stream)_modulation|^time_guidance_embed|[._]ff(_context)?[._]linear_(in|out)",
     {"flux2"}),
    (r"^single_transformer_blocks|^x_embedder", _FLUX_BLOCKS | {"flux2"}),
    # Flux.1's single blocks' own layers (Flux.2's single blocks fuse them: to_qkv_mlp_proj, attn.to_out)
    (r"[._]proj_mlp|^single_transformer_blocks[._]\d+[._](attn[._]to_[qkv][._]|proj_out)", _FLUX_BLOCKS),
    (rf"^{_QWEN_BLOCKS}|^(img|txt)_in[._]", {"qwenimage"}),
    (r"[._]norm1(_context)?[._]linear|[._]norm[._]linear", {"sd3", "flux"}),  # the blocks' modulation (not Chroma's)
    (r"^time_text_embed", {"sd3", "flux", "qwenimage"}),
    (r"^norm_out[._]linear", {"sd3", "flux", "qwenimage", "flux2"}),
    (r"[._]ff(_context)?[._]net[._]", {"sd3", "flux", "chroma"}),
    (r"^context_embedder", {"sd3", "flux", "chroma", "flux2"}),
    # the joint attention (add_*_proj, to_add_out inside; Flux.2's single blocks' attn.to_out)
    (r"[._]attn[._]", {"sd3", "flux", "chroma", "qwenimage", "flux2"}),
    (r"^pos_embed", {"sd3"}),
    (rf"^{_ZIMAGE_BLOCKS}|^all_x_embedder|^all_final_layer|^cap_embedder|^t_embedder", {"zimage"}),
    (r"^proj_out", {"sd3", "flux", "chroma", "qwenimage", "sana", "flux2", "wan"}),
))


def lora_families(keys) -> frozenset[str] | None:
    """The families a LoRA file can belong to, from its tensor names (diffusers/peft and kohya
    layouts); None when the names say nothing. A file whose names fit several families says several (a
    Flux.1 LoRA of the blocks' attention fits Chroma too): the layer check against the base
    (copyscope.modelfiles.lora_layouts.lora_misfit) and the load-time count of attached layers judge it there."""
    keys = list(keys)

    def has(pattern: str) -> bool:
        rx = re.compile(pattern)
        return any(rx.search(k) for k in keys)

    if has(_FLUX_ORIGINAL):
        if has(r"distilled_guidance_layer"):
            return frozenset({"chroma"})
        return frozenset({"flux"}) if has(_FLUX_ONLY_ORIGINAL) else _FLUX_BLOCKS
    if has(r"lora_unet_joint_blocks_|^(diffusion_model\.)?joint_blocks\.|context_block\."):
        return frozenset({"sd3"})
    if has(r"^(diffusion_model\.|lora_unet_)blocks[._]\d+[._]"):  # Wan's original names, musubi-tuner's
        return frozenset({"wan"})
    modules = _transformer_modules(keys)
    if modules:  # the families whose loader reads every spelling and whose transformer has every module it names
        families = _TRANSFORMER_FAMILIES
        for fams, module in modules:
            families &= fams.intersection(*(have for rx, have in _TRANSFORMER_MODULES if rx.search(module)))
        return families or None  # modules of no one family: the names say nothing (the layer check judges it)
    if has(r"^text_encoder_2\.|^lora_te2_"):
        return frozenset({"sdxl"})
    # SD1.x/2.x put attention in the first down block and one transformer layer per block; SDXL does neither
    if has(r"^unet\.down_blocks\.0\.attentions\.|lora_unet_down_blocks_0_attentions_|lora_unet_input_blocks_1_1_"):
        return frozenset({"sd"})
    if has(r"transformer_blocks[._]([1-9]\d*)[._]|lora_unet_input_blocks_4_1_"):
        return frozenset({"sdxl"})
    if has(r"^unet\.|^lora_unet_|^lora_te_|^text_encoder\."):
        return _UNET_FAMILIES
    return None


def _transformer_modules(keys: list[str]) -> list[tuple[frozenset[str], str]]:
    """(families whose loader reads the key's spelling, module name) of every key but the text encoders' (the layout
    check names those a family's loader drops) of a LoRA of a diffusers transformer; [] for any other file."""
    spelled = []
    for k in keys:
        if not _TEXT_ENCODER_KEY.match(k):
            rx, fams = next((rx, fams) for rx, fams in _SPELLINGS if rx.match(k))
            spelled.append((fams, k, k[rx.match(k).end():]))
    if any(k.startswith(("transformer.", "lora_transformer_")) or _BLOCKS.match(module) for _, k, module in spelled):
        return [(fams, module) for fams, _, module in spelled]
    return []


def controlnet_family(config: dict) -> str | None:
    """The family of a ControlNet from its config.json."""
    cls = config.get("_class_name", "")
    if cls == "ControlNetModel":  # SD1.x/2.x and SDXL share the class
        return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd"
    for fam in FAMILIES.values():  # every other family's ControlNet model class is its own
        if cls and cls == fam.controlnet_model:
            return fam.name
    return None


def base_family(zoo, index: int) -> Family:
    """The family of ``zoo.spec.bases[index]``: declared, else from its model_index.json (local or
    cached), else from a single file's tensor names, else SD1.x/2.x. A declared family that its
    model_index.json contradicts, or a pipeline class of no known family, is an error."""
    base = zoo.spec.bases[index]
    local = zoo.resolve_path(base.model) if zoo.is_local(base.model) else None
    try:
        detected, cls = detect_family(local, None if local is not None else base.model, base.revision)
    except ValueError as exc:  # a local model_index.json that is not JSON, or not UTF-8
        raise zoo.fail(
            f"{local / 'model_index.json'} is not a JSON file ({str(exc).splitlines()[0][:120]}); expected the diffusers "
            "pipeline's model_index.json", "bases", index, "model",
        ) from None
    if detected is None and local is not None and local.is_file() and local.suffix == ".safetensors":
        try:
            from ..modelfiles.formats import safetensors_header

            detected = family_from_single_file_keys(safetensors_header(local))
        except Exception:  # noqa: BLE001 - a malformed header fails in any way; the model-source checks report it
            detected = None
    if base.family is not None:
        if detected is not None and detected != base.family:
            raise zoo.fail(
                f"declared family {base.family!r} but the model is {FAMILIES[detected].title} "
                f"({cls or 'single-file keys'}: family {detected}); expected matching family and model",
                "bases", index, "family",
            )
        return _single_file_loadable(zoo, index, local, FAMILIES[base.family])
    if detected is None and cls is not None:
        raise zoo.fail(
            f"unknown family: model_index.json names {cls}, not a pipeline of a supported family; expected one of "
            f"{', '.join(f.pipeline for f in FAMILIES.values())} (or declare family: {' / '.join(FAMILIES)})",
            "bases", index, "model",
        )
    return _single_file_loadable(zoo, index, local, FAMILIES[detected or "sd"])


def _single_file_loadable(zoo, index: int, local: Path | None, fam: Family) -> Family:
    """A single-file base of a family whose diffusers pipeline has no ``from_single_file`` (Qwen-Image) is refused
    here, not after minutes of loading."""
    if local is not None and local.is_file():
        import diffusers

        if not hasattr(getattr(diffusers, fam.pipeline), "from_single_file"):
            raise zoo.fail(
                f"{local.name} is a single-file checkpoint, but diffusers {diffusers.__version__}'s {fam.pipeline} "
                f"({fam.title}) cannot load single files; expected a diffusers folder (model_index.json) or a hub id",
                "bases", index, "model",
            )
    return fam
