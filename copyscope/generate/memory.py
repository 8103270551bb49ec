"""The memory plan of a pipeline (``generation.memory``): quantisation through diffusers' own quantisation config,
CPU offload, VAE tiling and slicing; and the checks that refuse a plan this machine cannot run, before anything loads.

The quantisation backends are optional (``copyscope[quantize]``: bitsandbytes for int8 / nf4, torchao for fp8) and
imported only when a zoo asks for them. Offloading and bitsandbytes need a CUDA device.
"""

from __future__ import annotations

import importlib.util

from ..common.errors import CopyscopeError

# quantisation -> (diffusers' quant_backend, the package it needs, its quant_kwargs without the compute dtype)
BACKENDS = {
    "int8": ("bitsandbytes_8bit", "bitsandbytes", {"load_in_8bit": True}),
    "nf4": ("bitsandbytes_4bit", "bitsandbytes", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}),
    "fp8": ("torchao", "torchao", {"quant_type": "float8wo_e4m3"}),
}


def memory_problems(memory, device: str, where) -> list[CopyscopeError]:
    """What keeps this machine from running the plan: a missing quantisation package, offloading or bitsandbytes
    without a CUDA device. ``where(*key)`` names the zoo key. Each a one-line error; none for the default plan."""
    problems = []
    for part, q in memory.quantize.model_dump().items():
        if q == "none":
            continue
        _, package, _ = BACKENDS[q]
        if importlib.util.find_spec(package) is None:
            problems.append(CopyscopeError(f"{q} quantisation needs the {package} package: pip install 'copyscope[quantize]'",
                                           where=where("generation", "memory", "quantize", part)))
        if package == "bitsandbytes" and not device.startswith("cuda"):
            problems.append(CopyscopeError(f"{q} quantisation (bitsandbytes) needs a CUDA device; this audit runs on "
                                           f"{device}", where=where("generation", "memory", "quantize", part)))
    if memory.offload != "none" and not device.startswith("cuda"):
        problems.append(CopyscopeError(f"offload: {memory.offload} moves weights between CPU and a CUDA device; this "
                                       f"audit runs on {device}; expected offload: none", where=where("generation", "memory", "offload")))
    return problems


def quantization_config(memory, family, dtype):
    """diffusers' ``PipelineQuantizationConfig`` for the plan (None when nothing is quantised): the family's denoiser
    and its text encoders (``text_encoder``, ``text_encoder_2``, ``text_encoder_3`` as the pipeline has them)."""
    parts = {"denoiser": [family.denoiser], "text_encoders": ["text_encoder", "text_encoder_2", "text_encoder_3"]}
    chosen = {q for q in memory.quantize.model_dump().values() if q != "none"}
    if not chosen:
        return None
    if len(chosen) > 1:
        raise CopyscopeError(f"quantize: one method for the denoiser and the text encoders (got {sorted(chosen)}); "
                             "expected the same value, or none for one of them")
    (method,) = chosen
    backend, _, kwargs = BACKENDS[method]
    components = [c for part, q in memory.quantize.model_dump().items() if q == method for c in parts[part]]
    from diffusers import PipelineQuantizationConfig

    if backend.startswith("bitsandbytes"):
        kwargs = {**kwargs, **({"bnb_4bit_compute_dtype": dtype} if method == "nf4" else {})}
    return PipelineQuantizationConfig(quant_backend=backend, quant_kwargs=kwargs, components_to_quantize=components)


def place_pipeline(pipe, memory, device: str) -> None:
    """Put a loaded pipeline on the device as the plan says: whole (``offload: none``), one model at a time on the
    GPU (``model``), or layer by layer (``sequential``); then VAE tiling / slicing. The ControlNet pipelines built
    later from the same modules share their offload hooks; the ControlNet models themselves stay on the device."""
    if memory.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif memory.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    if memory.vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if memory.vae_slicing and vae is not None and hasattr(vae, "enable_slicing"):
        vae.enable_slicing()
