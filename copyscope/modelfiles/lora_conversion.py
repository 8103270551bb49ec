"""A LoRA file as diffusers' own loader for a family sees it, from the file's header alone.

Each family's pipeline class has its LoRA loader's ``lora_state_dict``: the key conversions diffusers runs
before it attaches anything (kohya, BFL / ai-toolkit, XLabs, OneTrainer's "mixture", the LyCORIS variants a
loader converts). :func:`diffusers_view` runs it over the file's tensor names with meta tensors of the header's
shapes in place of the weights (no weight is read; the conversions only rename, split and concatenate, which
meta tensors do), so the names and shapes it returns are the ones ``load_lora_weights`` would attach. What the
header checks then compare with a base (:func:`~copyscope.modelfiles.lora_layouts.lora_misfit`) are diffusers'
names, whatever the producer wrote, instead of a copy of diffusers' renaming rules kept here.

A conversion that raises is what diffusers would raise when loading the file: the view carries its message.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
           "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


@dataclass(frozen=True)
class DiffusersView:
    """What a family's diffusers LoRA loader makes of a file: ``shapes`` (converted tensor name -> shape) or
    ``error`` (the first line of what its conversion raised); ``undetermined``: the conversion needs the tensors'
    values and only the header was given."""

    family: str
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    error: str | None = None
    undetermined: bool = False

    def component(self, name: str) -> dict[str, tuple[int, ...]]:
        """The converted tensors of one pipeline component (``transformer``), without its prefix."""
        p = name + "."
        return {k[len(p):]: s for k, s in self.shapes.items() if k.startswith(p)}

    def outside(self, components) -> list[str]:
        """Converted tensor names under none of ``components``: diffusers' loader leaves them unattached."""
        return sorted(k for k in self.shapes if k.split(".", 1)[0] not in components)


def _meta_state_dict(head: dict, path: Path | None):
    """The header's tensors as meta tensors; 1-element tensors (alphas, scales: some conversions read their
    value) read from ``path`` when given, else 1.0 (names and shapes do not depend on them)."""
    import torch

    sd = {}
    scalars = [k for k, v in head.items() if _numel(v.get("shape") or []) <= 1]
    values = {}
    if path is not None and scalars:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            values = {k: f.get_tensor(k) for k in scalars}
    for k, v in head.items():
        shape = list(v.get("shape") or [])
        dtype = getattr(torch, _DTYPES.get(v.get("dtype", "F32"), "float32"))
        if k in values:
            sd[k] = values[k]
        elif _numel(shape) <= 1:
            sd[k] = torch.ones(shape, dtype=dtype if dtype.is_floating_point else torch.float32)
        else:
            sd[k] = torch.empty(shape, dtype=dtype, device="meta")
    return sd


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def diffusers_view(head: dict, family, path: Path | None = None) -> DiffusersView:
    """Run ``family``'s diffusers ``lora_state_dict`` (its pipeline class's LoRA loader) over a header. A
    conversion that reads values (kohya's Flux.2 converter tests whether a fused up weight is block-sparse) cannot
    run on meta tensors: it then runs on the file's tensors when ``path`` is given, else the view is ``undetermined``."""
    try:
        return _converted(family, _meta_state_dict(head, path))
    except _NeedsValues:
        if path is None:
            return DiffusersView(family.name, undetermined=True)
    from safetensors.torch import load_file

    try:
        return _converted(family, load_file(str(path)))
    except _NeedsValues as exc:  # not a meta tensor then: diffusers' own failure
        return DiffusersView(family.name, error=str(exc))


class _NeedsValues(Exception):
    """The conversion read a meta tensor's value."""


def _converted(family, sd: dict) -> DiffusersView:
    import diffusers

    cls = getattr(diffusers, family.pipeline)
    logger = logging.getLogger("diffusers")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its notes on the conversion it chose are not this check's output
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = cls.lora_state_dict(dict(sd))
    except Exception as exc:  # noqa: BLE001 - diffusers' converters raise ValueError, KeyError, RuntimeError...: each is a refusal
        lines = str(exc).strip().splitlines()
        first = lines[0][:300] if lines else type(exc).__name__
        if "meta" in str(exc) and any(getattr(v, "is_meta", False) for v in sd.values()):
            raise _NeedsValues(first) from None
        return DiffusersView(family.name, error=first)
    finally:
        logger.setLevel(level)
    if isinstance(out, tuple):  # (state dict, network alphas / metadata)
        out = out[0]
    return DiffusersView(family.name, {k: tuple(v.shape) for k, v in out.items() if hasattr(v, "shape")})
