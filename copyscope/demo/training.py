"""Training the demo zoo's components on CPU: the VAE, the base UNet and text encoder, the ControlNet and
the LoRAs (epsilon loss, min-SNR weighting), with the hyperparameters ground_truth.json records."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from . import tiny

HYPER = {
    "vae_channels": (16, 32),
    "vae_batch": 32, "vae_lr": 3e-3, "vae_kl_weight": 1e-4,
    "base_batch": 16, "base_lr": 1e-3, "caption_dropout": 0.1, "min_snr_gamma": 5.0,
    "controlnet_batch": 16, "controlnet_lr": 2e-3,
    "lora_batch": 8, "lora_lr": 2e-3, "lora_rank": 16, "lora_targets": tuple(tiny.UNET_LORA_TARGETS_WIDE),
    "base_crop_scale": (0.35, 1.0), "lora_crop_scale": (0.94, 1.0),
    "reference_png_size": 128,
    # Each work ships as several views (the full centre square plus near-full crops, the kind of image
    # the planted LoRA saw), so that set-level metrics (KID, Fréchet) have more than one reference image.
    "reference_views": 4,
}


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


def lora_latents(vae, works: Sequence[np.ndarray], per_image: int, resolution: int, rng: np.random.Generator,
                 scaling: float) -> Latents:
    """What a LoRA trains on: ``per_image`` near-full crops of each work's centre square (no flips, so a
    memorised work keeps its handedness), encoded by the zoo's VAE. ``works``: full-size pixels in [0, 1]."""
    from .images import center_square, random_crops

    pix = np.concatenate([
        random_crops(center_square(w), per_image, resolution, rng, scale=HYPER["lora_crop_scale"], flip=False)
        for w in works
    ])
    m, s = encode_latents(vae, pix)
    return Latents(m, s, scaling)


def _train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", prediction_type="epsilon", clip_sample=False)


def _diffusion_step(unet, sched, latents, enc, g, *, controlnet=None, cond=None, min_snr_gamma=None, teacher=None):
    """The epsilon loss of one batch: ``latents`` noised at random timesteps, ``unet``'s prediction against the
    noise, or with ``teacher`` (a frozen UNet) against the teacher's own prediction (distillation: the prior
    preservation of bench/bench_stacking.py)."""
    import torch

    noisy, noise, t = _noised(sched, latents, g)
    extra = {}
    if controlnet is not None:
        down, mid = controlnet(noisy, t, encoder_hidden_states=enc, controlnet_cond=cond, return_dict=False)
        extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
    pred = unet(noisy, t, encoder_hidden_states=enc, **extra).sample
    if teacher is not None:
        with torch.no_grad():
            noise = teacher(noisy, t, encoder_hidden_states=enc, **extra).sample
    err = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
    if min_snr_gamma:
        ac = sched.alphas_cumprod[t]
        snr = ac / (1 - ac)
        w = torch.clamp(snr, max=min_snr_gamma) / snr
        return (err * w).mean()
    return err.mean()


def _noised(sched, latents, g):
    """(noisy latents, the noise, the timesteps): ``latents`` noised at random timesteps drawn from ``g``."""
    import torch

    noise = torch.randn(latents.shape, generator=g)
    t = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=g)
    return sched.add_noise(latents, noise, t), noise, t


class Latents:
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


def train_base_unet(unet, text_encoder, tokenizer, lat: Latents, captions: list[str], steps: int, seed: int,
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

    def lr_at(s):
        return min(1.0, (s + 1) / warm) * (0.5 * (1 + np.cos(np.pi * s / max(steps, 1))) * 0.9 + 0.1)

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


def train_controlnet(controlnet, unet, text_encoder, tokenizer, lat: Latents, conds: np.ndarray,
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


def train_lora(pipe, lat: Latents, caption: str, steps: int, seed: int, log: Log, name: str, rank: int | None = None,
               targets: list[str] | str | None = None, before_step: Callable | None = None,
               extra_loss: Callable | None = None):
    """Train a UNet LoRA (attention projections) on ``lat`` with one caption; returns the adapted UNet copy.
    ``rank``: the LoRA rank (default ``HYPER["lora_rank"]``); ``targets``: the modules it adapts (peft's
    ``target_modules``: names, or one regular expression; default ``HYPER["lora_targets"]``); ``before_step``:
    called as ``before_step(unet, step, rng)`` before each step draws its batch from ``rng`` (a recipe that changes
    the frozen weights per step, bench/bench_stacking.py); ``extra_loss``: called as ``extra_loss(unet)`` each step,
    its value added to the step's loss (a regulariser: bench_stacking.py's prior preservation)."""
    import torch

    torch.manual_seed(seed)
    unet, _ = tiny.lora_copies(pipe, "lora", rank=int(rank or HYPER["lora_rank"]), init="gaussian",
                               targets=targets if targets is not None else list(HYPER["lora_targets"]))
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
        if before_step is not None:
            before_step(unet, step, rng)
        b = HYPER["lora_batch"]
        idx = rng.choice(len(lat), size=b, replace=len(lat) < b)
        loss = _diffusion_step(unet, sched, lat.sample(idx, g), enc1.expand(b, -1, -1), g)
        if extra_loss is not None:
            loss = loss + extra_loss(unet)
        _optimise(opt, loss, step, steps, t0, log, f"lora {name}")
    unet.eval()
    return unet


JOINT_PARTNERS = ("own", "learn", "leave-alone")


def train_joint_loras(pipe, lats: dict, captions: dict, steps: int, seed: int, rank: int, *, partners: str = "own",
                      stacked_fraction: float = 0.5):
    """Several LoRAs trained together in one UNet copy, one adapter per key of ``lats`` (named after it): step k is on
    LoRA k mod n's work (its latents, under ``captions[k]``), with each other LoRA switched on with probability
    ``stacked_fraction``. Each LoRA gets ``steps`` steps of its own work. ``partners`` says what the others switched on
    in step k learn:

    * ``own``: nothing (frozen for the step); LoRA k learns its work with them on (bench_stacking's ``joint``);
    * ``learn``: they learn work k too, under k's caption (``trigger-joint``): a partner learns to help draw k, so it
      has seen k's pictures;
    * ``leave-alone``: LoRA k learns its work alone, and the partners learn only that the stack's prediction under k's
      caption be LoRA k's alone (a distillation target, no picture of k as target): switched on beside k they should
      change nothing, so a LoRA keeps its content when stacked and a partner carries none of k's.

    Returns the UNet (eval mode) with the adapters."""
    import copy

    import torch
    from peft import LoraConfig

    if partners not in JOINT_PARTNERS:
        raise ValueError(f"partners={partners!r}; expected one of {', '.join(JOINT_PARTNERS)}")
    torch.manual_seed(seed)
    names = list(lats)
    unet = copy.deepcopy(pipe.unet)
    for name in names:
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                    target_modules=list(HYPER["lora_targets"])), adapter_name=name)
    unet.requires_grad_(False)
    if partners == "own":
        opts = {name: torch.optim.AdamW(tiny.lora_parameters(unet, name), lr=HYPER["lora_lr"], weight_decay=0.0)
                for name in names}
    else:  # one optimiser: AdamW skips an adapter that has no gradient in a step
        shared = torch.optim.AdamW([p for n in names for p in tiny.lora_parameters(unet, n)], lr=HYPER["lora_lr"],
                                   weight_decay=0.0)
        opts = dict.fromkeys(names, shared)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    sched = _train_scheduler()
    with torch.no_grad():
        encs = {n: pipe.text_encoder(_token_ids(pipe.tokenizer, [captions[n]]))[0] for n in names}

    def learning(active: list[str], learners: list[str]) -> None:
        unet.set_adapters(active, [1.0] * len(active))
        for o in names:  # set_adapters marks every active adapter trainable: only the learners are
            for p in tiny.lora_parameters(unet, o):
                p.requires_grad_(o in learners)

    unet.train()
    t0 = time.time()
    total = steps * len(names)
    b = HYPER["lora_batch"]
    for step in range(total):
        name = names[step % len(names)]
        others = [o for o in names if o != name and rng.random() < stacked_fraction]
        lat = lats[name]
        idx = rng.choice(len(lat), size=b, replace=len(lat) < b)
        enc = encs[name].expand(b, -1, -1)
        if partners == "leave-alone":
            _leave_alone_step(unet, opts[name], learning, sched, lat.sample(idx, g), enc, g, name, others)
            continue
        learning([name, *others], [name, *others] if partners == "learn" else [name])
        loss = _diffusion_step(unet, sched, lat.sample(idx, g), enc, g)
        _optimise(opts[name], loss, step, total, t0, lambda m: None, "lora joint")
    unet.eval()
    return unet


def _leave_alone_step(unet, opt, learning, sched, latents, enc, g, name: str, others: list[str]) -> None:
    """One ``leave-alone`` step: LoRA ``name`` alone against the noise, then the stack with ``others`` against
    ``name``'s own prediction, gradients to ``others`` only. Each loss is backpropagated while its learners are the
    trainable ones: autograd does not fill the gradient of a parameter whose requires_grad was switched off after the
    forward pass, so one summed backward would leave ``name`` unlearned whenever partners are on."""
    opt.zero_grad(set_to_none=True)
    noisy, noise, t = _noised(sched, latents, g)
    learning([name], [name])
    own = unet(noisy, t, encoder_hidden_states=enc).sample
    ((own - noise) ** 2).mean().backward()
    if others:
        learning([name, *others], others)
        stacked = unet(noisy, t, encoder_hidden_states=enc).sample
        ((stacked - own.detach()) ** 2).mean().backward()
    opt.step()
