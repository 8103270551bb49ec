"""Pipeline families: SD1.x/2.x, SDXL, SD3.x, Flux.1, Qwen-Image, Z-Image, Chroma, Sana, Flux.2, Lumina-Image 2.0 and
Wan (text to video), one module each (:mod:`.sd`, :mod:`.sdxl`, :mod:`.sd3`, :mod:`.flux`, :mod:`.qwenimage`,
:mod:`.zimage`, :mod:`.chroma`, :mod:`.sana`, :mod:`.flux2`, :mod:`.lumina2`, :mod:`.wan`),
each a :class:`~.base.Family`: the diffusers pipelines that run a base (text-to-image, ControlNet and img2img, built
from the same module objects), the ControlNet model class, the denoiser, the dtype it expects on CUDA, its
capabilities (ControlNet and how many at once, IP-Adapter, textual inversion, negative prompt, prompt-embedding
cache, the sizes and settings its pipeline can generate) and its
own generation settings (``generation.<family>`` in the zoo file, part of every image key of that family) and call
arguments. The zoo schema's ``generation:`` section is built from the registered families.

The family of a base is declared (``family:`` on the base) or read from its ``model_index.json`` (local folder, or
the hub cache); a base whose family cannot be found is SD1.x/2.x, as before families existed. LoRA and ControlNet
files are checked against the base's family from their headers / config before anything loads
(:func:`lora_families`: :mod:`.lora_detection`, :func:`controlnet_family`).
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from .base import Family

# the family modules, in registration order (the order of the zoo schema's `generation:` settings; reversed, of
# single-file detection, so that a family derived from another one comes after it): adding a family is one name here
REGISTERED = ("sd", "sdxl", "sd3", "flux", "qwenimage", "zimage", "chroma", "sana", "flux2", "lumina2", "wan")

FAMILIES: dict[str, Family] = {}
ALIASES: dict[str, str] = {}


def register_family(family: Family, aliases: dict[str, str] | None = None) -> Family:
    """Add a family (registration order is the order of the zoo schema's ``generation:`` settings)."""
    FAMILIES[family.name] = family
    ALIASES.update(aliases or {})
    return family


for _name in REGISTERED:
    _module = importlib.import_module(f".{_name}", __name__)
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
    """The family of a single-file (A1111 / ComfyUI) checkpoint from its tensor names: the last registered family
    whose ``single_file_keys`` one of them matches (a family derived from another one is registered after it)."""
    keys = list(keys)
    for fam in reversed(list(FAMILIES.values())):
        if fam.single_file_keys and any(re.search(fam.single_file_keys, k) for k in keys):
            return fam.name
    return None


def lora_families(head, path: Path | None = None) -> frozenset[str] | None:
    """The registered families a LoRA file can belong to, from its safetensors header (or its tensor names alone;
    ``path``: the file, for the few conversions that read values); None when its names say nothing
    (:mod:`.lora_detection`)."""
    from .lora_detection import lora_families as detect

    return detect(head, FAMILIES, path)


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
