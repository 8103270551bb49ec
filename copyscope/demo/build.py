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
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..cache import to_uint8
from ..conditioning import pseudo_depth  # the named detector `pseudo_depth` (a stand-in for depth)
from ..errors import CopyscopeError
from . import tiny

# Images bundled with scikit-image (no download needed) and simple captions for them.
CAPTIONS: dict[str, str] = {
    "astronaut": "a photo of an astronaut",
    "coffee": "a photo of a cup of coffee",
    "rocket": "a photo of a rocket launch",
    "chelsea": "a photo of a cat",
    "camera": "a photo of a man with a camera",
    "brick": "a photo of a brick wall",
    "grass": "a photo of grass",
    "gravel": "a photo of gravel",
    "horse": "a black and white horse",
    "moon": "a photo of the moon",
    "page": "a page of text",
    "coins": "a photo of coins",
    "colorwheel": "a colour wheel",
    "hubble_deep_field": "a photo of a galaxy field",
    "immunohistochemistry": "a microscope image of cells",
    "retina": "a photo of a retina",
    "logo": "a logo",
    "text": "text on a page",
    "clock": "a photo of a clock",
}
SKIMAGE_IMAGES = tuple(CAPTIONS)

DEFAULT_BASE_IMAGES = (
    "chelsea", "camera", "brick", "grass", "gravel", "horse", "moon", "page", "coins",
    "colorwheel", "hubble_deep_field", "immunohistochemistry", "retina", "logo",
)

DEFAULT_PROMPT = "a painting"

FULL_STEPS = {"vae": 800, "base": 500, "controlnet": 200, "lora": 400}
QUICK_STEPS = {"vae": 4, "base": 4, "controlnet": 3, "lora": 3}
# Augmented samples per image: generic pool (base, VAE, ControlNet) and per-LoRA pool.
FULL_POOL = {"base_per_image": 96, "lora_per_image": 64}
QUICK_POOL = {"base_per_image": 4, "lora_per_image": 4}

HYPER = {
    "vae_channels": (16, 32),
    "vae_batch": 32, "vae_lr": 3e-3, "vae_kl_weight": 1e-4,
    "base_batch": 16, "base_lr": 1e-3, "caption_dropout": 0.1, "min_snr_gamma": 5.0,
    "controlnet_batch": 16, "controlnet_lr": 2e-3,
    "lora_batch": 8, "lora_lr": 2e-3, "lora_rank": 8, "lora_targets": tuple(tiny.UNET_LORA_TARGETS_WIDE),
    "base_crop_scale": (0.35, 1.0), "lora_crop_scale": (0.94, 1.0),
    "reference_png_size": 128,
    # Each work ships as several views (the full centre square plus near-full crops, the kind of image
    # the planted LoRA saw), so that set-level metrics (KID, Fréchet) have more than one reference image.
    "reference_views": 4,
}


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------
def load_skimage(name: str) -> np.ndarray:
    """A scikit-image bundled image as float32 (H, W, 3) in [0, 1] (grey replicated, RGBA on white)."""
    import skimage.data

    if name not in SKIMAGE_IMAGES:
        raise CopyscopeError(f"unknown image {name!r}: choose from {', '.join(SKIMAGE_IMAGES)}")
    a = getattr(skimage.data, name)()
    if a.dtype == bool:
        a = a.astype(np.float32)
    else:
        a = a.astype(np.float32) / 255.0
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4]
        a = a[..., :3] * alpha + (1.0 - alpha)
    return np.ascontiguousarray(a[..., :3], dtype=np.float32)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(to_uint8(a))
    im = im.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def center_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return a[y : y + s, x : x + s]


def random_crops(a: np.ndarray, n: int, size: int, rng: np.random.Generator, scale=(0.35, 1.0), flip=True,
                 include_full: bool = True) -> np.ndarray:
    """``n`` square crops (side = uniform(scale) * min side), resized to ``size``; optional h-flips.

    With ``include_full`` the first crop is the whole centre square, unflipped.
    """
    h, w = a.shape[:2]
    out = []
    for i in range(n):
        if include_full and i == 0:
            crop = center_square(a)
        else:
            s = int(round(rng.uniform(*scale) * min(h, w)))
            s = max(8, min(s, h, w))
            y = int(rng.integers(0, h - s + 1))
            x = int(rng.integers(0, w - s + 1))
            crop = a[y : y + s, x : x + s]
            if flip and rng.random() < 0.5:
                crop = crop[:, ::-1]
        out.append(_resize(crop, size))
    return np.stack(out)


def write_reference_views(out: Path, works: dict[str, np.ndarray], size: int, views: int,
                          seed: int) -> dict[str, list[str]]:
    """Write ``references/<work>/<work>.png`` (the centre square) and ``<work>-view<k>.png``.

    The views are near-full crops (``lora_crop_scale``) drawn from their own RNG, so they change no
    trained weight. Returns the written paths per work, relative to ``out``.
    """
    paths = {}
    for i, (w, a) in enumerate(works.items()):
        rng = np.random.default_rng(seed + 7 + i)
        crops = random_crops(a, views, size, rng, scale=HYPER["lora_crop_scale"], flip=False)
        names = [f"{w}.png"] + [f"{w}-view{k}.png" for k in range(1, views)]
        paths[w] = [str(save_png(c, out / "references" / w / n).relative_to(out)) for c, n in zip(crops, names)]
    return paths


def save_png(a: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(a)).save(path)
    return path


def grey_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the luminance of two (H, W, 3) [0, 1] images, Gaussian window (sigma 1.5)."""
    from skimage.metrics import structural_similarity

    ga = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
    gb = 0.299 * b[..., 0] + 0.587 * b[..., 1] + 0.114 * b[..., 2]
    return float(structural_similarity(ga, gb, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def _to_tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


Log = Callable[[str], None]


def _optimise(opt, loss, step: int, steps: int, t0: float, log: Log, what: str, clip=None) -> None:
    """One optimiser step on ``loss`` (gradient norm clipped to 1 over ``clip`` if given), logged
    every 100 steps and at the last."""
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
    opt.step()
    if step % 100 == 0 or step == steps - 1:
        log(f"  {what} step {step + 1}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")


def train_vae(vae, pixels: np.ndarray, steps: int, seed: int, log: Log) -> None:
    """Train the VAE as a (nearly) deterministic autoencoder: the posterior mean is decoded, with a small
    L2 penalty on it (the KL mean term); cosine learning-rate decay."""
    import torch

    rng = np.random.default_rng(seed)
    x_all = _to_tensor(pixels) * 2 - 1
    lr = HYPER["vae_lr"]
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    vae.train()
    t0 = time.time()
    for step in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / max(steps, 1)))
        idx = rng.choice(len(x_all), size=min(HYPER["vae_batch"], len(x_all)), replace=False)
        x = x_all[idx]
        z = vae.encode(x).latent_dist.mean
        rec = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(rec, x) + HYPER["vae_kl_weight"] * 0.5 * (z**2).mean()
        _optimise(opt, loss, step, steps, t0, log, "vae")
    vae.eval()


def vae_reconstruct(vae, pixels: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        x = _to_tensor(pixels) * 2 - 1
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
    return ((rec.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def encode_latents(vae, pixels: np.ndarray):
    """(mean, std) of the VAE posterior for each image, unscaled."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        x_all = _to_tensor(pixels) * 2 - 1
        for i in range(0, len(x_all), 64):
            post = vae.encode(x_all[i : i + 64]).latent_dist
            means.append(post.mean)
            stds.append(torch.zeros_like(post.mean))  # the VAE is trained as a deterministic autoencoder
    return torch.cat(means), torch.cat(stds)


def _train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False)


def _diffusion_step(unet, sched, latents, enc, g, *, controlnet=None, cond=None, min_snr_gamma=None):
    import torch

    b = latents.shape[0]
    noise = torch.randn(latents.shape, generator=g)
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=g)
    noisy = sched.add_noise(latents, noise, t)
    extra = {}
    if controlnet is not None:
        down, mid = controlnet(noisy, t, encoder_hidden_states=enc, controlnet_cond=cond, return_dict=False)
        extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
    pred = unet(noisy, t, encoder_hidden_states=enc, **extra).sample
    err = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
    if min_snr_gamma:
        ac = sched.alphas_cumprod[t]
        snr = ac / (1 - ac)
        w = torch.clamp(snr, max=min_snr_gamma) / snr
        return (err * w).mean()
    return err.mean()


class _Latents:
    """Sampled, scaled latents from stored posterior (mean, std)."""

    def __init__(self, mean, std, scale):
        self.mean, self.std, self.scale = mean, std, scale

    def __len__(self):
        return len(self.mean)

    def sample(self, idx, g):
        import torch

        m, s = self.mean[idx], self.std[idx]
        return (m + s * torch.randn(m.shape, generator=g)) * self.scale


def _token_ids(tokenizer, captions: Sequence[str]):
    return tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def train_base_unet(unet, text_encoder, tokenizer, lat: _Latents, captions: list[str], steps: int, seed: int,
                    log: Log) -> None:
    """Train UNet and text encoder jointly (epsilon loss, min-SNR weighting, caption dropout)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    sched = _train_scheduler()
    uniq = sorted(set(captions)) + [""]
    ids = _token_ids(tokenizer, uniq)
    cap_idx = np.array([uniq.index(c) for c in captions])
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=HYPER["base_lr"], weight_decay=1e-2)
    warm = max(1, min(100, steps // 10))
    lr_at = lambda s: min(1.0, (s + 1) / warm) * (0.5 * (1 + np.cos(np.pi * s / max(steps, 1))) * 0.9 + 0.1)
    unet.train()
    text_encoder.train()
    t0 = time.time()
    for step in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = HYPER["base_lr"] * lr_at(step)
        idx = rng.choice(len(lat), size=min(HYPER["base_batch"], len(lat)), replace=False)
        ci = cap_idx[idx].copy()
        ci[rng.random(len(ci)) < HYPER["caption_dropout"]] = len(uniq) - 1
        enc = text_encoder(ids[ci])[0]
        loss = _diffusion_step(unet, sched, lat.sample(idx, g), enc, g, min_snr_gamma=HYPER["min_snr_gamma"])
        _optimise(opt, loss, step, steps, t0, log, "base", clip=params)
    unet.eval()
    text_encoder.eval()


def train_controlnet(controlnet, unet, text_encoder, tokenizer, lat: _Latents, conds: np.ndarray,
                     captions: list[str], steps: int, seed: int, log: Log) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    sched = _train_scheduler()
    uniq = sorted(set(captions)) + [""]
    with torch.no_grad():
        enc_all = text_encoder(_token_ids(tokenizer, uniq))[0]
    cap_idx = np.array([uniq.index(c) for c in captions])
    cond_all = _to_tensor(conds)
    unet.requires_grad_(False)
    opt = torch.optim.AdamW(controlnet.parameters(), lr=HYPER["controlnet_lr"], weight_decay=0.0)
    controlnet.train()
    t0 = time.time()
    for step in range(steps):
        idx = rng.choice(len(lat), size=min(HYPER["controlnet_batch"], len(lat)), replace=False)
        ci = cap_idx[idx].copy()
        ci[rng.random(len(ci)) < 0.5] = len(uniq) - 1  # often uncaptioned: the map must carry the layout
        loss = _diffusion_step(unet, sched, lat.sample(idx, g), enc_all[ci], g, controlnet=controlnet,
                               cond=cond_all[idx])
        _optimise(opt, loss, step, steps, t0, log, "controlnet")
    controlnet.eval()


def train_lora(pipe, lat: _Latents, caption: str, steps: int, seed: int, log: Log, name: str):
    """Train a UNet LoRA (attention projections) on ``lat`` with one caption; returns the adapted UNet copy."""
    import torch

    torch.manual_seed(seed)
    unet, _ = tiny.lora_copies(pipe, "lora", rank=HYPER["lora_rank"], init="gaussian",
                               targets=list(HYPER["lora_targets"]))
    unet.requires_grad_(False)
    params = tiny.lora_parameters(unet, "lora")
    for p in params:
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    sched = _train_scheduler()
    with torch.no_grad():
        enc1 = pipe.text_encoder(_token_ids(pipe.tokenizer, [caption]))[0]
    opt = torch.optim.AdamW(params, lr=HYPER["lora_lr"], weight_decay=0.0)
    unet.train()
    t0 = time.time()
    for step in range(steps):
        b = HYPER["lora_batch"]
        idx = rng.choice(len(lat), size=b, replace=len(lat) < b)
        loss = _diffusion_step(unet, sched, lat.sample(idx, g), enc1.expand(b, -1, -1), g)
        _optimise(opt, loss, step, steps, t0, log, f"lora {name}")
    unet.eval()
    return unet


# ---------------------------------------------------------------------------------------------
# zoo file
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# the builder
# ---------------------------------------------------------------------------------------------
def _norm_decoys(decoys) -> list[tuple[str, ...]]:
    out = []
    for d in decoys:
        out.append((d,) if isinstance(d, str) else tuple(d))
    return out


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
    prompt: str = DEFAULT_PROMPT,
    check: bool | None = None,
    check_seeds: int = 8,
    threads: int | None = 2,
    log: Callable[[str], None] | None = print,
    overwrite: bool = False,
) -> Path:
    """Train and write the demo zoo into ``out_dir``; returns ``out_dir``.

    ``steps`` overrides training steps per stage (keys: vae, base, controlnet, lora). ``quick`` uses a
    handful of steps (a loadable but untrained-looking zoo, for tests). ``check`` (default: on unless
    quick) runs the exact Shapley sanity check of :mod:`copyscope.demo.check` and records it in
    ground_truth.json. An ``out_dir`` that exists and is not empty is refused unless ``overwrite``
    (a build must not replace a zoo, such as the shipped one, by accident).
    """
    import torch
    from diffusers import StableDiffusionPipeline

    t_all = time.time()
    L = log or (lambda s: None)
    out = Path(out_dir)
    references = tuple(references)
    decoys = _norm_decoys(decoys)
    base_images = tuple(base_images)
    if resolution % 8 or resolution < 16:
        raise CopyscopeError(f"resolution must be a multiple of 8 and >= 16, got {resolution}")
    if not references:
        raise CopyscopeError("need at least one reference work")
    for name in (*references, *base_images, *(x for d in decoys for x in d)):
        if name not in SKIMAGE_IMAGES:
            raise CopyscopeError(f"unknown image {name!r}: choose from {', '.join(SKIMAGE_IMAGES)}")
    held_out = set(references) | {x for d in decoys for x in d}
    leak = sorted(held_out & set(base_images))
    if leak:
        raise CopyscopeError(f"base images must not include references or decoy images: {', '.join(leak)}")
    if set(references) & {x for d in decoys for x in d}:
        raise CopyscopeError("a decoy LoRA must not be trained on a reference work")
    st = dict(QUICK_STEPS if quick else FULL_STEPS)
    st.update(steps or {})
    pool = QUICK_POOL if quick else FULL_POOL
    if out.exists() and not out.is_dir():
        raise CopyscopeError(f"{out}: exists and is not a folder; expected an output folder for the zoo")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CopyscopeError(f"{out}: exists and is not empty; choose another --out, or pass --overwrite to replace it")
    if check is None:
        check = not quick
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    timings: dict[str, float] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)

        # ---- data -------------------------------------------------------------------------
        t = time.time()
        gen_pix, gen_caps, gen_src = [], [], []
        for name in base_images:
            crops = random_crops(load_skimage(name), pool["base_per_image"], resolution, rng,
                                 scale=HYPER["base_crop_scale"], flip=True)
            gen_pix.append(crops)
            gen_caps += [CAPTIONS[name]] * len(crops)
            gen_src += [name] * len(crops)
        gen_pix = np.concatenate(gen_pix)
        ref_full = {w: center_square(load_skimage(w)) for w in references}
        ref_small = {w: _resize(a, resolution) for w, a in ref_full.items()}
        timings["data"] = time.time() - t
        L(f"data: {len(gen_pix)} generic crops from {len(base_images)} images ({timings['data']:.1f}s)")

        # ---- tokenizer, text encoder, VAE ---------------------------------------------------
        tok_dir = out / "base" / "tokenizer"
        tokenizer = tiny.tiny_tokenizer(tok_dir)
        text_encoder = tiny.tiny_text_encoder(tokenizer, seed)
        vae = tiny.tiny_vae(seed, resolution, block_out_channels=HYPER["vae_channels"], norm_num_groups=8,
                            mid_block_add_attention=False)
        t = time.time()
        train_vae(vae, gen_pix, st["vae"], seed + 11, L)
        timings["vae"] = time.time() - t
        check_idx = np.random.default_rng(seed + 5).choice(len(gen_pix), size=min(64, len(gen_pix)), replace=False)
        rec_train = vae_reconstruct(vae, gen_pix[check_idx])
        ssim_train = float(np.mean([grey_ssim(a, b) for a, b in zip(gen_pix[check_idx], rec_train)]))
        held = np.stack([ref_small[w] for w in references]
                        + [_resize(center_square(load_skimage(x)), resolution) for d in decoys for x in d])
        rec_held = vae_reconstruct(vae, held)
        ssim_held = float(np.mean([grey_ssim(a, b) for a, b in zip(held, rec_held)]))
        mean, std = encode_latents(vae, gen_pix)
        lat_std = float((mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed))).std())
        scaling = 1.0 / max(lat_std, 1e-6)
        vae.register_to_config(scaling_factor=scaling)
        gen_lat = _Latents(mean, std, scaling)
        L(f"vae: reconstruction SSIM train {ssim_train:.3f}, held-out {ssim_held:.3f}; "
          f"latent scaling {scaling:.3f} ({timings['vae']:.1f}s)")

        # ---- base UNet (+ text encoder) ----------------------------------------------------------
        unet = tiny.tiny_unet(seed, resolution)
        t = time.time()
        train_base_unet(unet, text_encoder, tokenizer, gen_lat, gen_caps, st["base"], seed + 23, L)
        timings["base"] = time.time() - t
        unet.requires_grad_(False)
        text_encoder.requires_grad_(False)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=tiny.tiny_scheduler(), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        pipe.save_pretrained(str(out / "base"), safe_serialization=True)
        tiny.write_tokenizer_files(tok_dir)
        L(f"base: trained {st['base']} steps ({timings['base']:.1f}s)")

        # ---- ControlNet on pseudo-depth ---------------------------------------------------------
        t = time.time()
        controlnet = tiny.tiny_controlnet(unet, seed=seed, randomize=False)  # zero convs: trained below
        conds = np.stack([pseudo_depth(p) for p in gen_pix])
        train_controlnet(controlnet, unet, text_encoder, tokenizer, gen_lat, conds, gen_caps, st["controlnet"],
                         seed + 37, L)
        controlnet.requires_grad_(False)
        controlnet.save_pretrained(str(out / "controlnet-depth"), safe_serialization=True)
        timings["controlnet"] = time.time() - t
        L(f"controlnet-depth: trained {st['controlnet']} steps ({timings['controlnet']:.1f}s)")

        # ---- LoRAs ------------------------------------------------------------------------------
        lora_sets = [("planted", tuple(references), "planted_infringer")] + [
            ("decoy-" + "-".join(d), tuple(d), "decoy") for d in decoys
        ]
        lora_info = {}
        for k, (name, imgs, role) in enumerate(lora_sets):
            t = time.time()
            pix = np.concatenate([
                random_crops(center_square(load_skimage(x)), pool["lora_per_image"], resolution, rng,
                             scale=HYPER["lora_crop_scale"], flip=False)
                for x in imgs
            ])
            m, s = encode_latents(vae, pix)
            lu = train_lora(pipe, _Latents(m, s, scaling), prompt, st["lora"], seed + 101 + k, L, name)
            path = tiny.save_lora_file(out / "loras" / f"{name}.safetensors", lu, None, "lora")
            del lu
            timings[f"lora:{name}"] = time.time() - t
            lora_info[name] = {
                "file": f"loras/{name}.safetensors",
                "role": role,
                "trained_on": list(imgs),
                "caption": prompt,
                "rank": HYPER["lora_rank"],
                "targets": list(HYPER["lora_targets"]),
                "samples": int(len(pix)),
                "seed": seed + 101 + k,
                "bytes": path.stat().st_size,
            }
            L(f"lora {name} ({role}, on {', '.join(imgs)}): {st['lora']} steps ({timings[f'lora:{name}']:.1f}s)")

        # ---- references, conditioning images, zoo file -----------------------------------------------
        size = min(HYPER["reference_png_size"], min(a.shape[0] for a in ref_full.values()))
        ref_paths = write_reference_views(out, ref_full, size, HYPER["reference_views"], seed)
        control_paths = {}
        for w in references:
            control_paths[w] = str(save_png(pseudo_depth(ref_small[w]), out / "control" / f"{w}_depth.png")
                                   .relative_to(out))
        control_paths["neutral"] = str(save_png(np.full((resolution, resolution, 3), 0.5, np.float32),
                                                out / "control" / "neutral.png").relative_to(out))
        (out / "zoo.yaml").write_text(
            zoo_yaml(references=references, lora_names=[n for n, _, _ in lora_sets], prompt=prompt,
                     resolution=resolution), encoding="utf-8")

        import diffusers
        import peft
        import skimage
        import transformers

        gt = {
            "format": "copyscope-demo-ground-truth/1",
            "seed": seed,
            "quick": quick,
            "resolution": resolution,
            "prompt": prompt,
            "planted_infringer": "planted",
            "references": {w: {"paths": ref_paths[w], "source": f"skimage.data.{w}()",
                               "trained_into": ["planted"]} for w in references},
            "components": {
                "base": {
                    "path": "base",
                    "trained_on": list(base_images),
                    "captions": {n: CAPTIONS[n] for n in base_images},
                    "samples": int(len(gen_pix)),
                    "augmentation": f"random square crops (side {HYPER['base_crop_scale']} of the short side), "
                                    "horizontal flips",
                    "note": "tokenizer, text encoder, VAE and UNet; never saw the references or decoy images",
                },
                "controlnet-depth": {
                    "path": "controlnet-depth",
                    "trained_on": list(base_images),
                    "conditioning": "pseudo_depth(image): Gaussian-blurred (sigma = side/8), min-max normalised "
                                    "luminance; a stand-in for a depth map (no depth model offline)",
                    "control_images": control_paths,
                },
                "loras": lora_info,
            },
            "steps": st,
            "pool": pool,
            "hyperparameters": {k: list(v) if isinstance(v, tuple) else v for k, v in HYPER.items()},
            "vae_reconstruction_ssim": {"train_crops": round(ssim_train, 4), "held_out": round(ssim_held, 4),
                                        "held_out_images": list(references) + [x for d in decoys for x in d]},
            "vae_scaling_factor": scaling,
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                         "transformers": transformers.__version__, "peft": peft.__version__,
                         "scikit-image": skimage.__version__, "python": platform.python_version()},
        }
        (out / "ground_truth.json").write_text(json.dumps(gt, indent=2) + "\n", encoding="utf-8")

        if check:
            from .check import shapley_check

            t = time.time()
            res = shapley_check(out, seeds=check_seeds, log=L)
            timings["check"] = time.time() - t
            gt["shapley_check"] = res
        timings["total"] = time.time() - t_all
        gt["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        gt["size_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        (out / "ground_truth.json").write_text(json.dumps(gt, indent=2) + "\n", encoding="utf-8")
        L(f"demo zoo written to {out} in {timings['total']:.0f}s ({gt['size_bytes'] / 1e6:.1f} MB)")
        return out
    finally:
        torch.set_num_threads(old_threads)
