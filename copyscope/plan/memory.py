"""Before anything loads: how much GPU memory each memory plan of an audit needs, from the safetensors headers alone.

Parameter counts come from the headers of every weight file on this machine (a local folder or file, or the hub's
local cache): the base's components (denoiser, text encoders, VAE), the ControlNets and the LoRAs. A hub base not
downloaded yet is counted with its family's nominal sizes (``Family.nominal``, the reference checkpoint's parameter
counts); any other model not on this machine is named as not counted, and the estimate is then a lower
bound ("at least"). Bytes per parameter follow the dtype the audit runs in on CUDA and the plan's quantisation.

The peak is the weights on the GPU at the worst moment plus a working margin for activations (``MARGIN_*``, a rough
allowance, not a measurement: the GPU benchmark in bench/gpu/ measures real peaks):

* ``none``: every model on the GPU;
* ``model`` (``enable_model_cpu_offload``): one model at a time: the denoiser with its LoRAs, the largest text
  encoder, or the VAE, plus the ControlNets, which stay on the GPU;
* ``sequential`` (``enable_sequential_cpu_offload``): one layer at a time (the largest tensor of any component, times
  ``SEQUENTIAL_LAYER_FACTOR`` for the layer's other weights), plus the ControlNets.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..common.errors import CopyscopeError
from ..modelfiles.formats import safetensors_header

GIB = 1024**3
MARGIN_BYTES = int(1.5 * GIB)  # CUDA context and workspace
MARGIN_FRACTION = 0.10  # of the largest model on the GPU at once: activations at batch sizes an audit uses
SEQUENTIAL_LAYER_FACTOR = 4
BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}
# weights per parameter once quantised (nf4: 4 bits plus one scale per 64 weights)
QUANTIZED_BYTES = {"int8": 1.0, "nf4": 0.5 + 4 / 64, "fp8": 1.0}
PLANS = ("none", "model", "sequential")
@dataclass
class Sizes:
    """Parameters per model of one game, and the largest tensor, from headers (or nominal counts)."""

    base: dict[str, float] = field(default_factory=dict)  # component -> parameters
    controlnets: dict[str, float] = field(default_factory=dict)
    loras: dict[str, float] = field(default_factory=dict)
    largest_tensor: float = 0.0
    not_counted: list[str] = field(default_factory=list)  # models not on this machine
    nominal: str | None = None  # the reference checkpoint whose counts stand for the base


def files_parameters(files: list[Path]) -> tuple[float, float]:
    """(parameters, largest tensor) of safetensors files, from their headers."""
    total, largest = 0.0, 0.0
    for f in files:
        for info in safetensors_header(f).values():
            n = float(math.prod(info["shape"]))
            total += n
            largest = max(largest, n)
    return total, largest


def _folder_components(folder: Path, denoiser: str) -> dict[str, list[Path]]:
    """A diffusers folder's components (subfolders with safetensors weights); the denoiser under its own name."""
    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(sub.glob("*.safetensors"))
        if files:
            out["denoiser" if sub.name == denoiser else sub.name] = files
    return out


def _model_files(zoo, value: str, revision: str | None, weight_name: str | None = None) -> list[Path] | None:
    """The safetensors files of a model on this machine (a local file or folder, or its hub cache), or None."""
    from ..modelfiles.sources import cached_snapshot

    path = zoo.resolve_path(value) if zoo.is_local(value) else cached_snapshot(value, revision)
    if path is None or not path.exists():
        return None
    if path.is_file():
        return [path] if path.suffix == ".safetensors" else None
    if weight_name:
        return [path / weight_name] if (path / weight_name).is_file() else None
    files = sorted(path.rglob("*.safetensors"))
    return files or None


def game_sizes(zoo, game) -> Sizes:
    """Every model of one game, counted from what is on this machine."""
    from ..families import base_family

    fam = base_family(zoo, zoo.spec.bases.index(game.base))
    sizes = Sizes()
    base = game.base
    local = zoo.resolve_path(base.model) if zoo.is_local(base.model) else None
    if local is None:
        from ..modelfiles.sources import cached_snapshot

        local = cached_snapshot(base.model, base.revision)
    if local is not None and local.is_dir():
        for comp, files in _folder_components(local, fam.denoiser).items():
            n, big = files_parameters(files)
            sizes.base[comp] = n
            sizes.largest_tensor = max(sizes.largest_tensor, big)
    elif local is not None and local.is_file():
        n, big = files_parameters([local])
        sizes.base["checkpoint"] = n  # one file: the whole pipeline
        sizes.largest_tensor = big
    elif fam.nominal is not None:  # the family's reference checkpoint (copyscope.families.base.Family.nominal)
        sizes.nominal, sizes.base = fam.nominal[0], dict(fam.nominal[1])
        sizes.largest_tensor = max(sizes.base.values()) / 100  # no header: a layer of about 1% of the largest model
    else:  # a family without published sizes here: the estimate is a lower bound
        sizes.not_counted.append(base.name)
    for section, into in (("controlnets", sizes.controlnets), ("loras", sizes.loras)):
        for spec in getattr(zoo.spec, section):
            if spec.name not in game.names:
                continue
            files = _model_files(zoo, spec.model, getattr(spec, "revision", None), getattr(spec, "weight_name", None))
            if files is None:
                sizes.not_counted.append(spec.name)
                continue
            n, big = files_parameters(files)
            into[spec.name] = n
            sizes.largest_tensor = max(sizes.largest_tensor, big)
    return sizes


def plan_bytes(sizes: Sizes, plan: str, dtype: str, quantize) -> float:
    """The estimated peak GPU bytes of one plan (module docstring)."""
    per = BYTES[dtype]
    q_den = QUANTIZED_BYTES.get(quantize.denoiser, per)
    q_text = QUANTIZED_BYTES.get(quantize.text_encoders, per)

    def weights(comp: str, n: float) -> float:
        if comp in ("denoiser", "checkpoint"):
            return n * q_den
        return n * (q_text if comp.startswith("text_encoder") else per)

    base = {c: weights(c, n) for c, n in sizes.base.items()}
    lora = sum(sizes.loras.values()) * per
    cn = sum(sizes.controlnets.values()) * per
    den = base.get("denoiser", base.get("checkpoint", 0.0)) + lora
    others = [b for c, b in base.items() if c not in ("denoiser", "checkpoint")]
    if plan == "none":
        on_gpu = sum(base.values()) + lora + cn
        biggest = max([den, *others, cn])
    elif plan == "model":
        biggest = max([den, *others])
        on_gpu = biggest + cn
    else:
        biggest = sizes.largest_tensor * per * SEQUENTIAL_LAYER_FACTOR
        on_gpu = biggest + cn
    return on_gpu + MARGIN_BYTES + MARGIN_FRACTION * biggest


def parse_size(text: str) -> float:
    """``"24GB"``, ``"80 GiB"``, ``"24000MB"`` -> bytes (GB and GiB both read as 2**30: what tools print for a card)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(TB|TIB|GB|GIB|G|MB|MIB|M)?\s*", str(text).upper())
    if not m or float(m.group(1)) <= 0:
        raise CopyscopeError(f"{text!r} is not a memory size; expected e.g. 24GB or 80GiB", where="--gpu-memory")
    scale = {"TB": 1024**4, "TIB": 1024**4, "MB": 1024**2, "MIB": 1024**2, "M": 1024**2}.get(m.group(2) or "GB", GIB)
    return float(m.group(1)) * scale


def plans_that_fit(zoo, game, free_bytes: float, sizes: Sizes | None = None) -> list[dict]:
    """Each plan (the zoo's quantisation, and nf4 for the denoiser when the zoo has none) with its estimate and
    whether it fits ``free_bytes``; ``sizes``: the game's, when the caller has read them already."""
    from ..config.generation import QuantizeSettings
    from ..families import base_family

    gen = zoo.spec.generation
    fam = base_family(zoo, zoo.spec.bases.index(game.base))
    dtype = fam.cuda_dtype if gen.dtype == "auto" else gen.dtype
    sizes = sizes if sizes is not None else game_sizes(zoo, game)
    quants = [("as configured", gen.memory.quantize)]
    if gen.memory.quantize.denoiser == "none":
        quants.append(("denoiser nf4", QuantizeSettings(denoiser="nf4", text_encoders=gen.memory.quantize.text_encoders)))
    rows = []
    for label, quant in quants:
        for plan in PLANS:
            need = plan_bytes(sizes, plan, dtype, quant)
            rows.append({"offload": plan, "quantize": label, "gib": need / GIB, "fits": need <= free_bytes,
                         "lower_bound": bool(sizes.not_counted)})
    return rows


def check_fits(zoo, game, free_bytes: float, device: str) -> None:
    """Refuse, before anything loads, a plan whose estimate exceeds the device's free memory; name one that fits."""
    rows = plans_that_fit(zoo, game, free_bytes)
    mem = zoo.spec.generation.memory
    mine = next(r for r in rows if r["offload"] == mem.offload and r["quantize"] == "as configured")
    if mine["fits"]:
        return
    fit = next((r for r in rows if r["fits"]), None)
    hint = (f"expected generation.memory with offload: {fit['offload']}" + ("" if fit["quantize"] == "as configured"
            else ", quantize: {denoiser: nf4}") + f" (about {fit['gib']:.1f} GiB)") if fit else "no plan fits this device"
    raise zoo.fail(f"base {game.base.name!r} needs about {mine['gib']:.1f} GiB of GPU memory with offload: {mem.offload} "
                   f"but {device} has {free_bytes / GIB:.1f} GiB free; {hint}", "generation", "memory")
