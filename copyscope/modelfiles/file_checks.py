"""Zoo-level checks of real model files, before anything loads: single-file checkpoints and their
``config:`` (offline too), ``variant:`` weights, files listed in the wrong section; and what of the
loading options enters the image key.

Layout knowledge (names, headers) lives in :mod:`copyscope.modelfiles.formats`, :mod:`copyscope.modelfiles.lora_layouts` and
:mod:`copyscope.modelfiles.single_file_checks`; this module only applies it to a zoo's bases and ControlNets and
phrases the one-line errors.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from . import formats, lora_layouts, single_file_checks
from ..common.files import tree_sha256
from ..config.zoo import Zoo
from ..common.errors import CopyscopeError

_CONFIG_SUFFIXES = (".json", ".txt", ".model")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_KIND = {"bases": "base", "controlnets": "ControlNet"}


def config_arg(zoo: Zoo, value: str | None) -> str | None:
    """What to pass as ``config=`` to ``from_single_file``: a local folder (resolved against the zoo
    file's folder) or a hub id."""
    if value is None:
        return None
    return str(zoo.resolve_path(value)) if zoo.is_local(value) else value


def load_identity(zoo: Zoo, spec) -> dict:
    """Loading options that change the weights or modules loaded, for the image key. Empty when none is
    set, so the keys of zoo files without them stay as they were."""
    out: dict = {}
    if getattr(spec, "variant", None):
        out["variant"] = spec.variant
    cfg = getattr(spec, "config", None)
    if cfg:
        out["config"] = (
            {"local_sha256": tree_sha256(zoo.resolve_path(cfg), _CONFIG_SUFFIXES)} if zoo.is_local(cfg) else {"hub_id": cfg}
        )
    return out


def default_config_repo(head: dict) -> str | None:
    """The hub repo whose configs diffusers' ``from_single_file`` would fetch for a checkpoint without
    ``config:`` (its own guess from the tensor names and shapes)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS, infer_diffusers_model_type

    shapes = {k: SimpleNamespace(shape=tuple(v.get("shape") or ())) for k, v in head.items()}
    try:
        return DIFFUSERS_DEFAULT_PIPELINE_PATHS[infer_diffusers_model_type(shapes)]["pretrained_model_name_or_path"]
    except Exception:  # noqa: BLE001 - diffusers' guess on arbitrary tensor names can fail in any way: no guess
        return None


def _variant_files(folder: Path) -> dict[str, dict[str, set[str]]]:
    """{component folder: {variant or "": weight file names}} of a diffusers folder."""
    out: dict[str, dict[str, set[str]]] = {}
    for f in folder.rglob("*"):
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
            parts = f.name.split(".")
            variant = parts[-2].split("-")[0] if len(parts) >= 3 else ""  # x.fp16-00001-of-00002
            out.setdefault(f.parent.relative_to(folder).as_posix(), {}).setdefault(variant, set()).add(f.name)
    return out


def _check_one(zoo: Zoo, section: str, i: int, spec, config_marker: str) -> list[CopyscopeError]:
    """Hard errors raise; problems of a missing local hub cache (offline) are returned."""
    # lazily: generation's package imports this module (engine -> file_checks)
    from .sources import cached_snapshot, hub_offline

    problems: list[CopyscopeError] = []
    if not zoo.is_local(spec.model):
        if spec.config:
            raise zoo.fail(
                f"'config' applies to a single-file checkpoint; {spec.model!r} is a hub id (a diffusers repo, "
                "which has its own configs): remove 'config'", section, i, "config",
            )
        return problems
    path = zoo.resolve_path(spec.model)
    single = path.is_file() and path.suffix == ".safetensors"
    if path.is_dir():
        if spec.config:
            raise zoo.fail(
                f"'config' applies to a single-file checkpoint; {spec.model!r} is a diffusers folder, which has its "
                "own configs: remove 'config'", section, i, "config",
            )
        files = _variant_files(path)
        if spec.variant:
            if not any(spec.variant in v for v in files.values()):
                raise zoo.fail(
                    f"no {spec.variant!r} weights in {spec.model!r} (expected files such as "
                    f"diffusion_pytorch_model.{spec.variant}.safetensors); remove 'variant' or add those weights",
                    section, i, "variant",
                )
        else:
            only = sorted({v for comp in files.values() if "" not in comp for v in comp})
            if only:
                comps = sorted(c for c, comp in files.items() if "" not in comp)
                raise zoo.fail(
                    f"{spec.model!r} holds only {', '.join(repr(v) for v in only)} variant weights "
                    f"(in {', '.join(comps)}); set variant: {only[0]}", section, i, "model",
                )
    if not single:
        return problems
    if spec.variant:
        raise zoo.fail(
            f"'variant' selects weight files in a diffusers folder; {path.name} is a single file, loaded as it is "
            "(in the dtype of generation.dtype): remove 'variant'", section, i, "variant",
        )
    head = formats.header(path)
    is_checkpoint = any(k.startswith((formats.UNET_PREFIX, formats.CONTROLNET_PREFIX)) for k in head)
    if not is_checkpoint and lora_layouts.lora_layout(head) in lora_layouts.LORA_LAYOUTS:
        raise zoo.fail(
            f"{path.name} is a LoRA file ({lora_layouts.lora_layout(head)} layout), not a {_KIND[section]} checkpoint; "
            "list it under 'loras:'", section, i, "model",
        )
    if section == "bases":
        _check_single_file(zoo, i, spec, path, head)
    elif spec.config and zoo.is_local(spec.config) and zoo.resolve_path(spec.config).is_dir():
        why = single_file_checks.single_controlnet_mismatch(head, zoo.resolve_path(spec.config))
        if why:
            raise zoo.fail(
                f"single-file ControlNet {path.name} cannot load with config {spec.config!r}: it does not match the config's "
                f"ControlNet: {why}; expected a ControlNet checkpoint of the config's architecture", section, i, "model",
            )
    if spec.config:
        if zoo.is_local(spec.config):
            cfg = zoo.resolve_path(spec.config)
            if not cfg.is_dir():
                what = "not found" if not cfg.exists() else "is a file"
                raise zoo.fail(
                    f"config folder {spec.config!r} {what} (looked at {cfg}); expected a diffusers folder with "
                    f"{config_marker}", section, i, "config",
                )
            if not (cfg / config_marker).is_file():
                raise zoo.fail(
                    f"config folder {spec.config!r} has no {config_marker}; expected the diffusers configs of a "
                    f"{_KIND[section]} of the same architecture", section, i, "config",
                )
        elif hub_offline() and cached_snapshot(spec.config) is None:
            problems.append(zoo.fail(
                f"config {spec.config!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; download "
                f"it first (huggingface-cli download {spec.config}) or point 'config' at a local diffusers folder",
                section, i, "config",
            ))
    elif hub_offline():
        repo = default_config_repo(head)
        if repo is None or cached_snapshot(repo) is None:
            fetch = f"the configs of {repo}" if repo else "its configs"
            problems.append(zoo.fail(
                f"single-file checkpoint {path.name} has no 'config:' and HF_HUB_OFFLINE is set, so diffusers cannot "
                f"fetch {fetch} from the hub; set 'config:' to a local diffusers folder of the same architecture "
                f"(with {config_marker}{' and the component configs' if section == 'bases' else ''})", section, i, "config",
            ))
    return problems


def _check_single_file(zoo: Zoo, i: int, spec, path: Path, head: dict) -> None:
    """An SD 1.x/2.x single file against its config (a local folder, or a hub id in the local cache),
    from the header: what ``from_single_file`` would stop on after minutes of loading."""
    from .sources import cached_snapshot

    cfg = None
    if spec.config:
        cfg = zoo.resolve_path(spec.config) if zoo.is_local(spec.config) else cached_snapshot(spec.config)
        if cfg is not None and not (cfg / "model_index.json").is_file():
            cfg = None  # reported by the config checks below
    why = single_file_checks.single_file_mismatch(head, cfg)
    if why:
        raise zoo.fail(
            f"single-file checkpoint {path.name} cannot load{f' with config {spec.config!r}' if cfg else ''}: {why}; expected "
            "an SD 1.x/2.x checkpoint of the config's architecture in the A1111 layout", "bases", i, "model",
        )


def check_real_files(zoo: Zoo) -> list[CopyscopeError]:
    """Check every base and ControlNet file against its loading options. Raises on hard errors;
    returns the problems that only a missing local hub cache causes (the audit raises them, ``validate``
    and ``plan`` list them)."""
    problems: list[CopyscopeError] = []
    for i, b in enumerate(zoo.spec.bases):
        problems += _check_one(zoo, "bases", i, b, "model_index.json")
    for i, cn in enumerate(zoo.spec.controlnets):
        problems += _check_one(zoo, "controlnets", i, cn, "config.json")
    for i, lo in enumerate(zoo.spec.loras):
        path = zoo.resolve_path(lo.model) if zoo.is_local(lo.model) else None
        if path is not None and path.is_file() and path.suffix == ".safetensors":
            head = formats.header(path)
            if lora_layouts.lora_layout(head) == "not-lora" and any(k.startswith(formats.UNET_PREFIX) for k in head):
                raise zoo.fail(
                    f"{path.name} is a base checkpoint (A1111 layout), not a LoRA; list it under 'bases:'",
                    "loras", i, "model",
                )
    return problems
