"""A standalone sanity check of a built demo zoo: exact Shapley values with diffusers directly.

Independent of copyscope's audit engine (on purpose: it checks the zoo, not the engine). Players are
the depth ControlNet (fed the pseudo-depth of the reference) and every LoRA of the zoo; the worth of a
coalition is the mean similarity of its generated images (one per seed) to the reference work, under
three similarities:

* ``ssim``: SSIM of the luminance, Gaussian window (sigma 1.5), skimage;
* ``colour_hist``: intersection of joint RGB histograms (4 bins per channel);
* ``centred_cosine``: cosine of the pixel vectors after subtracting each image's mean.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..common.files import to_uint8
from ..estimate.shapley.synthetic import brute_force_shapley
from .images import grey_ssim


def colour_hist_similarity(a: np.ndarray, b: np.ndarray, bins: int = 4) -> float:
    def h(x):
        q = np.clip((x * bins).astype(int), 0, bins - 1).reshape(-1, 3)
        idx = q[:, 0] * bins * bins + q[:, 1] * bins + q[:, 2]
        c = np.bincount(idx, minlength=bins**3).astype(np.float64)
        return c / c.sum()

    return float(np.minimum(h(a), h(b)).sum())


def centred_cosine(a: np.ndarray, b: np.ndarray) -> float:
    x = a.astype(np.float64).ravel() - a.mean()
    y = b.astype(np.float64).ravel() - b.mean()
    d = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / d) if d > 0 else 0.0


SIMILARITIES = {"ssim": grey_ssim, "colour_hist": colour_hist_similarity, "centred_cosine": centred_cosine}


def _load_png(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.open(path).convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def _pipelines(zoo: Path, gt: dict, loras: list[str]):
    """The zoo's base pipeline with every LoRA loaded as an adapter, and its ControlNet pipeline."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(zoo / "base"), local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    for name in loras:
        pipe.load_lora_weights(str(zoo / gt["components"]["loras"][name]["file"]), adapter_name=name)
    cn = ControlNetModel.from_pretrained(str(zoo / "controlnet-depth"), local_files_only=True)
    cpipe = StableDiffusionControlNetPipeline(**pipe.components, controlnet=cn)
    cpipe.set_progress_bar_config(disable=True)
    return pipe, cpipe


def _generate(pipe, cpipe, coal, prompt, cond, seeds, steps, guidance, res, conditioning_scale):
    """One image per seed from the pipeline assembled from coalition ``coal``."""
    import torch

    active = [p for p in coal if p != "controlnet-depth"]
    if active:
        pipe.enable_lora()
        pipe.set_adapters(active, adapter_weights=[1.0] * len(active))
    else:
        pipe.disable_lora()
    gens = [torch.Generator().manual_seed(s) for s in range(seeds)]
    kw = dict(num_inference_steps=steps, guidance_scale=guidance, height=res, width=res, generator=gens,
              output_type="np", num_images_per_prompt=1)
    if "controlnet-depth" in coal:
        return cpipe([prompt] * seeds, image=cond, controlnet_conditioning_scale=conditioning_scale, **kw).images
    return pipe([prompt] * seeds, **kw).images


GRID_SOFTWARE = "copyscope demo check"


def check_grid_target(path: Path) -> None:
    """--grid writes a new file, or replaces a grid `demo check` wrote; never another file."""
    from PIL import Image

    from ..common.errors import CopyscopeError
    from ..common.inputs import file_kind

    kind = file_kind(Path(path))
    if kind == "not found":
        if not Path(path).parent.is_dir():
            raise CopyscopeError("its folder does not exist; expected a PNG file to write", where=f"--grid {path}")
        return
    if kind is not None:
        raise CopyscopeError(f"is {kind}; expected a PNG file to write", where=f"--grid {path}")
    try:
        with Image.open(path) as im:
            ours = im.format == "PNG" and im.info.get("Software") == GRID_SOFTWARE
    except Exception:  # noqa: BLE001 - not an image at all
        ours = False
    if not ours:
        raise CopyscopeError("exists and was not written by `copyscope demo check`; move it away or choose another "
                             "--grid file", where=f"--grid {path}")


def shapley_check(
    zoo_dir: Path | str,
    *,
    seeds: int = 8,
    steps: int = 20,
    guidance: float = 5.0,
    work: str | None = None,
    conditioning_scale: float = 1.0,
    grid_path: Path | str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Exact Shapley over {controlnet-depth, every LoRA} for one reference work; returns a JSON-able dict."""
    from PIL import Image

    log = log or (lambda s: None)
    zoo = Path(zoo_dir)
    gt = json.loads((zoo / "ground_truth.json").read_text())
    res = gt["resolution"]
    prompt = gt["prompt"]
    work = work or next(iter(gt["references"]))
    ref = _load_png(zoo / gt["references"][work]["paths"][0], res)
    cond = Image.open(zoo / gt["components"]["controlnet-depth"]["control_images"][work]).convert("RGB")
    loras = list(gt["components"]["loras"])

    t0 = time.time()
    pipe, cpipe = _pipelines(zoo, gt, loras)
    players = ["controlnet-depth"] + loras
    worth: dict[str, dict[frozenset, float]] = {m: {} for m in SIMILARITIES}
    grid_rows = []
    for k in range(len(players) + 1):
        for coal in itertools.combinations(players, k):
            imgs = _generate(pipe, cpipe, coal, prompt, cond, seeds, steps, guidance, res, conditioning_scale)
            for m, f in SIMILARITIES.items():
                worth[m][frozenset(coal)] = float(np.mean([f(im, ref) for im in imgs]))
            grid_rows.append(np.concatenate(list(imgs), axis=1))
            log(f"  check {'+'.join(coal) or '(empty)':<50} ssim {worth['ssim'][frozenset(coal)]:.3f}")
    pipe.disable_lora()
    shap = {m: brute_force_shapley(players, w.__getitem__) for m, w in worth.items()}
    if grid_path is not None:
        from PIL.PngImagePlugin import PngInfo

        from ..common.files import atomic_write_bytes

        grid = np.concatenate(grid_rows, axis=0)
        info = PngInfo()
        info.add_text("Software", GRID_SOFTWARE)  # marks the file as ours: a later --grid may replace it
        buf = __import__("io").BytesIO()
        Image.fromarray(to_uint8(grid)).save(buf, format="PNG", pnginfo=info)
        atomic_write_bytes(Path(grid_path), buf.getvalue())

    def key(s: frozenset) -> str:
        return "+".join(p for p in players if p in s) or "(empty)"

    out = {
        "work": work,
        "prompt": prompt,
        "players": players,
        "settings": {"seeds": seeds, "steps": steps, "guidance": guidance, "scheduler": "ddim",
                     "conditioning": f"pseudo_depth of {work}", "conditioning_scale": conditioning_scale,
                     "resolution": res},
        "worth": {m: {key(s): round(v, 4) for s, v in w.items()} for m, w in worth.items()},
        "shapley": {m: {p: round(v, 4) for p, v in s.items()} for m, s in shap.items()},
        "seconds": round(time.time() - t0, 1),
    }
    for m in SIMILARITIES:
        log(f"  shapley[{m}]: " + ", ".join(f"{p} {v:+.3f}" for p, v in out["shapley"][m].items()))
    return out
