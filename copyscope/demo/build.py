"""Build the demo zoo: a tiny Stable-Diffusion-shaped pipeline trained on CPU, with a planted infringer.

Everything is trained here, deterministically from ``seed``, from images bundled with scikit-image
(``skimage.data``; nothing is downloaded):

1. **base** (tokenizer + text encoder + VAE + UNet) trained on *generic* images (never the references,
   never the decoy images) with simple captions ("a photo of a cat", ...). Random square crops and
   flips give enough samples. The VAE is trained first; its reconstruction SSIM is measured and
   recorded.
2. **controlnet-depth**: a ControlNet (``ControlNetModel.from_unet``) trained on
   ``(pseudo_depth(image), image)`` pairs over the same generic images. No depth estimator is
   available offline, so :func:`pseudo_depth` (blurred, min-max normalised luminance) stands in for
   a depth map. It is *not* depth; it plays the role of a depth map of the work.
3. **LoRAs**, each trained with the caption the audit prompt uses (so the prompt is neutral and the
   LoRA decides what comes out): ``planted`` memorises the reference work(s) — the planted
   infringer — and each ``decoy-<name>`` memorises other images.

Layout written to ``out_dir``::

    base/                      diffusers folder (safetensors)
    controlnet-depth/          diffusers ControlNet folder (safetensors)
    loras/<name>.safetensors   diffusers-format LoRA files
    references/<work>/*.png    the protected works (square centre crop + near-full crops as extra views)
    control/<work>_depth.png   pseudo_depth of each reference; control/neutral.png (flat grey)
    ground_truth.json          which component was trained on which images, seeds, steps, timings, SSIM
    zoo.yaml                   a zoo file for ``copyscope audit`` (paths relative to it)

The work is split four ways: :mod:`.images` (the data: scikit-image images, crops, reference views),
:mod:`.training` (the training loops and ``HYPER``), :mod:`.build_args` (the default steps and pools, the
arguments' check and the record of one build), and this module (the orchestration: the stages in order, the
files and ground_truth.json). :mod:`.check` (the Shapley sanity check) imports
:mod:`.images` only, so this module may call it without an import cycle.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..conditioning import pseudo_depth  # the named detector `pseudo_depth` (a stand-in for depth)
from . import tiny
from .build_args import _Build, _checked
from .images import (
    DEFAULT_BASE_IMAGES,
    caption_of,
    center_square,
    grey_ssim,
    random_crops,
    resize_square,
    save_png,
    source_of,
    write_reference_views,
)
from .scenarios import checked_world
from .training import (
    HYPER,
    Latents,
    encode_latents,
    lora_latents,
    train_base_unet,
    train_controlnet,
    train_lora,
    train_vae,
    vae_reconstruct,
)

DEFAULT_PROMPT = "a painting"

TEMPLATE_PATH = Path(__file__).with_name("zoo_template.yaml")


def zoo_yaml(*, references: Sequence[str], lora_names: Sequence[str], prompt: str, resolution: int) -> str:
    """The zoo file text for a built zoo (paths relative to the zoo file, which sits in the zoo folder).

    For the default build this is the template verbatim (comments kept); otherwise the template's
    data with the lists replaced, dumped as YAML.
    """
    import yaml

    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["controlnets"][0]["conditioning"] = {"per_work": {w: f"./control/{w}_depth.png" for w in references}}
    data["loras"] = [{"name": n, "model": f"./loras/{n}.safetensors", "weight": 1.0} for n in lora_names]
    data["references"] = [{"name": w, "paths": [f"./references/{w}"]} for w in references]
    data["prompts"] = [{"name": f"{w}-neutral", "text": prompt, "negative": "", "work": w} for w in references]
    data["generation"]["resolution"] = resolution
    if data == yaml.safe_load(text):
        return text
    head = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    return head + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)


def _data(b: _Build, rng: np.random.Generator):
    """Generic crops (pixels, captions) for base, VAE and ControlNet; the references, full and small."""
    t = time.time()
    gen_pix, gen_caps = [], []
    for name in b.base_images:
        crops = random_crops(b.image(name), b.pool["base_per_image"], b.resolution, rng,
                             scale=HYPER["base_crop_scale"], flip=True)
        gen_pix.append(crops)
        gen_caps += [caption_of(name)] * len(crops)
    gen_pix = np.concatenate(gen_pix)
    ref_full = {w: center_square(b.image(w)) for w in b.references}
    ref_small = {w: resize_square(a, b.resolution) for w, a in ref_full.items()}
    b.timings["data"] = time.time() - t
    b.log(f"data: {len(gen_pix)} generic crops from {len(b.base_images)} images ({b.timings['data']:.1f}s)")
    return gen_pix, gen_caps, ref_full, ref_small


def _train_vae_stage(b: _Build, gen_pix: np.ndarray, ref_small: dict):
    """Train the VAE, measure its reconstruction SSIM, set its latent scaling; the encoded crops."""
    import torch

    vae = tiny.tiny_vae(b.seed, b.resolution, block_out_channels=HYPER["vae_channels"], norm_num_groups=8,
                        mid_block_add_attention=False)
    t = time.time()
    train_vae(vae, gen_pix, b.steps["vae"], b.seed + 11, b.log)
    b.timings["vae"] = time.time() - t
    check_idx = np.random.default_rng(b.seed + 5).choice(len(gen_pix), size=min(64, len(gen_pix)), replace=False)
    rec_train = vae_reconstruct(vae, gen_pix[check_idx])
    ssim_train = float(np.mean([grey_ssim(x, y) for x, y in zip(gen_pix[check_idx], rec_train)]))
    held = np.stack([ref_small[w] for w in b.references]
                    + [resize_square(center_square(b.image(x)), b.resolution) for x in b.decoy_images])
    rec_held = vae_reconstruct(vae, held)
    ssim_held = float(np.mean([grey_ssim(x, y) for x, y in zip(held, rec_held)]))
    mean, std = encode_latents(vae, gen_pix)
    lat_std = float((mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(b.seed))).std())
    scaling = 1.0 / max(lat_std, 1e-6)
    vae.register_to_config(scaling_factor=scaling)
    b.facts.update(ssim_train=ssim_train, ssim_held=ssim_held, scaling=scaling)
    b.log(f"vae: reconstruction SSIM train {ssim_train:.3f}, held-out {ssim_held:.3f}; "
          f"latent scaling {scaling:.3f} ({b.timings['vae']:.1f}s)")
    return vae, Latents(mean, std, scaling)


def _train_base_stage(b: _Build, gen_pix, gen_caps, ref_small):
    """Tokenizer, text encoder, VAE and UNet, saved as ``base/``; returns the pipeline."""
    from diffusers import StableDiffusionPipeline

    tok_dir = b.out / "base" / "tokenizer"
    tokenizer = tiny.tiny_tokenizer(tok_dir)
    text_encoder = tiny.tiny_text_encoder(tokenizer, b.seed)
    vae, gen_lat = _train_vae_stage(b, gen_pix, ref_small)
    unet = tiny.tiny_unet(b.seed, b.resolution)
    t = time.time()
    train_base_unet(unet, text_encoder, tokenizer, gen_lat, gen_caps, b.steps["base"], b.seed + 23, b.log)
    b.timings["base"] = time.time() - t
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=tiny.tiny_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(str(b.out / "base"), safe_serialization=True)
    tiny.write_tokenizer_files(tok_dir)
    b.log(f"base: trained {b.steps['base']} steps ({b.timings['base']:.1f}s)")
    return pipe, gen_lat


def _train_controlnet_stage(b: _Build, pipe, gen_lat: Latents, gen_pix, gen_caps) -> None:
    """The ControlNet on (pseudo_depth(crop), crop) pairs, saved as ``controlnet-depth/``."""
    t = time.time()
    controlnet = tiny.tiny_controlnet(pipe.unet, seed=b.seed, randomize=False)  # zero convs: trained below
    conds = np.stack([pseudo_depth(p) for p in gen_pix])
    train_controlnet(controlnet, pipe.unet, pipe.text_encoder, pipe.tokenizer, gen_lat, conds, gen_caps,
                     b.steps["controlnet"], b.seed + 37, b.log)
    controlnet.requires_grad_(False)
    controlnet.save_pretrained(str(b.out / "controlnet-depth"), safe_serialization=True)
    b.timings["controlnet"] = time.time() - t
    b.log(f"controlnet-depth: trained {b.steps['controlnet']} steps ({b.timings['controlnet']:.1f}s)")


def _train_loras_stage(b: _Build, pipe, rng: np.random.Generator) -> dict:
    """The planted LoRA (on the references) and one decoy LoRA per decoy set; their ground truth."""
    lora_info = {}
    scaling = b.facts["scaling"]
    for k, (name, imgs, role) in enumerate(b.lora_sets()):
        t = time.time()
        lat = lora_latents(pipe.vae, [b.image(x) for x in imgs], b.pool["lora_per_image"], b.resolution, rng,
                           scaling)
        lu = train_lora(pipe, lat, b.prompt, b.steps["lora"], b.seed + 101 + k, b.log, name, rank=b.lora_rank)
        path = tiny.save_lora_file(b.out / "loras" / f"{name}.safetensors", lu, None, "lora")
        del lu
        b.timings[f"lora:{name}"] = time.time() - t
        lora_info[name] = {
            "file": f"loras/{name}.safetensors",
            "role": role,
            "trained_on": list(imgs),
            "caption": b.prompt,
            "rank": b.lora_rank,
            "targets": list(HYPER["lora_targets"]),
            "samples": int(len(lat)),
            "seed": b.seed + 101 + k,
            "bytes": path.stat().st_size,
        }
        b.log(f"lora {name} ({role}, on {', '.join(imgs)}): {b.steps['lora']} steps "
              f"({b.timings[f'lora:{name}']:.1f}s)")
    return lora_info


def _write_inputs(b: _Build, ref_full: dict, ref_small: dict) -> tuple[dict, dict]:
    """References, conditioning images and zoo.yaml; (reference paths, control paths), relative."""
    size = min(HYPER["reference_png_size"], min(a.shape[0] for a in ref_full.values()))
    ref_paths = write_reference_views(b.out, ref_full, size, HYPER["reference_views"], b.seed,
                                      HYPER["lora_crop_scale"])
    control_paths = {}
    for w in b.references:
        control_paths[w] = str(save_png(pseudo_depth(ref_small[w]), b.out / "control" / f"{w}_depth.png")
                               .relative_to(b.out))
    control_paths["neutral"] = str(save_png(np.full((b.resolution, b.resolution, 3), 0.5, np.float32),
                                            b.out / "control" / "neutral.png").relative_to(b.out))
    (b.out / "zoo.yaml").write_text(
        zoo_yaml(references=b.references, lora_names=[n for n, _, _ in b.lora_sets()], prompt=b.prompt,
                 resolution=b.resolution), encoding="utf-8")
    return ref_paths, control_paths


def _versions() -> dict[str, str]:
    import diffusers
    import peft
    import skimage
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "scikit-image": skimage.__version__, "python": platform.python_version()}


def _ground_truth(b: _Build, n_generic: int, ref_paths: dict, control_paths: dict, lora_info: dict) -> dict:
    import torch

    return {
        "format": "copyscope-demo-ground-truth/1",
        "seed": b.seed,
        "quick": b.quick,
        "resolution": b.resolution,
        "prompt": b.prompt,
        "planted_infringer": "planted",
        "references": {w: {"paths": ref_paths[w], "source": source_of(w, b.library),
                           "trained_into": ["planted"]} for w in b.references},
        "components": {
            "base": {
                "path": "base",
                "trained_on": list(b.base_images),
                "captions": {n: caption_of(n) for n in b.base_images},
                "samples": n_generic,
                "augmentation": f"random square crops (side {HYPER['base_crop_scale']} of the short side), "
                                "horizontal flips",
                "note": "tokenizer, text encoder, VAE and UNet; never saw the references or decoy images",
            },
            "controlnet-depth": {
                "path": "controlnet-depth",
                "trained_on": list(b.base_images),
                "conditioning": "pseudo_depth(image): Gaussian-blurred (sigma = side/8), min-max normalised "
                                "luminance; a stand-in for a depth map (no depth model offline)",
                "control_images": control_paths,
            },
            "loras": lora_info,
        },
        "steps": b.steps,
        "pool": b.pool,
        "hyperparameters": {**{k: list(v) if isinstance(v, tuple) else v for k, v in HYPER.items()},
                            "lora_rank": b.lora_rank},
        "vae_reconstruction_ssim": {"train_crops": round(b.facts["ssim_train"], 4),
                                    "held_out": round(b.facts["ssim_held"], 4),
                                    "held_out_images": list(b.references) + b.decoy_images},
        "vae_scaling_factor": b.facts["scaling"],
        "timings_s": {k: round(v, 2) for k, v in b.timings.items()},
        "threads": torch.get_num_threads(),
        "versions": _versions(),
    }


def build_demo_zoo(
    out_dir: Path | str,
    *,
    references: Sequence[str] = ("astronaut",),
    decoys: Sequence[Sequence[str]] = (("coffee",), ("rocket",)),
    base_images: Sequence[str] = DEFAULT_BASE_IMAGES,
    resolution: int = 32,
    seed: int = 0,
    quick: bool = False,
    steps: dict[str, int] | None = None,
    lora_rank: int | None = None,
    prompt: str = DEFAULT_PROMPT,
    check: bool | None = None,
    check_seeds: int = 8,
    threads: int | None = 2,
    log: Callable[[str], None] | None = print,
    overwrite: bool = False,
    images: Path | None = None,
    world: dict | None = None,
) -> Path:
    """Train and write the demo zoo into ``out_dir``; returns ``out_dir``.

    ``images``: a folder of image files whose stems name images beside scikit-image's (``--images``): the
    references, decoys and base images may then be any PNG/JPEG (a second benchmark world).
    ``world``: the validity benchmark's world on this zoo (:class:`copyscope.demo.scenarios.World`), recorded in
    ground_truth.json; without it the benchmark uses the scikit-image world.

    ``steps`` overrides training steps per stage (keys: vae, base, controlnet, lora); ``lora_rank`` the
    LoRAs' rank (default ``HYPER["lora_rank"]``, 16). ``quick`` uses a
    handful of steps (a loadable but untrained-looking zoo, for tests). ``check`` (default: on unless
    quick) runs the exact Shapley sanity check of :mod:`copyscope.demo.check` and records it in
    ground_truth.json. An ``out_dir`` that exists and is not empty is refused unless ``overwrite``
    (a build must not replace a zoo, such as the shipped one, by accident).
    """
    import torch

    t_all = time.time()
    from .images import image_library

    args = _checked(out_dir, references, decoys, base_images, resolution, quick, steps, overwrite, lora_rank,
                    image_library(images))
    b = _Build(resolution=resolution, seed=seed, quick=quick, prompt=prompt, log=log or (lambda s: None), **args)
    world_doc = checked_world(world, b.library, b.references, b.base_images, images)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        b.out.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)  # base crops first, then the LoRA crops: the order is the seed's
        gen_pix, gen_caps, ref_full, ref_small = _data(b, rng)
        pipe, gen_lat = _train_base_stage(b, gen_pix, gen_caps, ref_small)
        _train_controlnet_stage(b, pipe, gen_lat, gen_pix, gen_caps)
        lora_info = _train_loras_stage(b, pipe, rng)
        ref_paths, control_paths = _write_inputs(b, ref_full, ref_small)
        gt = {**_ground_truth(b, int(len(gen_pix)), ref_paths, control_paths, lora_info), "world": world_doc}
        (b.out / "ground_truth.json").write_text(json.dumps(gt, indent=2) + "\n", encoding="utf-8")
        if check if check is not None else not quick:
            from .check import shapley_check

            t = time.time()
            gt["shapley_check"] = shapley_check(b.out, seeds=check_seeds, log=b.log)
            b.timings["check"] = time.time() - t
        b.timings["total"] = time.time() - t_all
        gt["timings_s"] = {k: round(v, 2) for k, v in b.timings.items()}
        gt["size_bytes"] = sum(p.stat().st_size for p in b.out.rglob("*") if p.is_file())
        (b.out / "ground_truth.json").write_text(json.dumps(gt, indent=2) + "\n", encoding="utf-8")
        b.log(f"demo zoo written to {b.out} in {b.timings['total']:.0f}s ({gt['size_bytes'] / 1e6:.1f} MB)")
        return b.out
    finally:
        torch.set_num_threads(old_threads)
