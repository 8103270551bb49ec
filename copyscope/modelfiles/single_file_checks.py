"""Single-file checkpoints (A1111 / ComfyUI) against their diffusers configs, from the header alone:
:func:`single_file_mismatch` (an SD 1.x/2.x checkpoint: a missing component, text-encoder names without
``text_model.``, tensors that diffusers' own converters, run on meta tensors, map to other names or shapes
than the config's models) and :func:`single_controlnet_mismatch` (a ``control_model.*`` ControlNet).
No weight is read. The names come from :mod:`copyscope.modelfiles.formats`; :mod:`copyscope.modelfiles.file_checks` applies these
checks to a zoo's bases and ControlNets.
"""

from __future__ import annotations

import json
from pathlib import Path

from .formats import CLIP_PREFIX, CONTROLNET_PREFIX, UNET_PREFIX, VAE_PREFIX


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# -- single-file checkpoints vs their config, from the header ----------------------------------------
_SD_COMPONENTS = (("UNet", UNET_PREFIX), ("VAE", VAE_PREFIX), ("text encoder", "cond_stage_model."))


def single_file_mismatch(head: dict, config: Path | None) -> str | None:
    """Why an SD 1.x/2.x single-file checkpoint cannot load with the diffusers configs in ``config``
    (a folder with unet/, vae/, text_encoder/ configs), from its header alone: a component with no
    tensors, text-encoder names without ``text_model.``, or tensors that diffusers' own converters map
    to other names or shapes than the config's models have (the converters run on meta tensors: no
    weight is read). None when it fits, or when the file is not an SD 1.x/2.x checkpoint."""
    import diffusers

    from ..families import family_from_single_file_keys

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
