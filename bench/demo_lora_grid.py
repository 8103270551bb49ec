"""Is a demo LoRA's copy recognisable? Train one planted LoRA on a demo zoo's base and save a grid.

Row: the work at the zoo's resolution, its VAE reconstruction (the best any generation can be), then
six seeds of the base with the new LoRA (20 DDIM steps, guidance 5, the zoo's prompt). The LoRA is
trained as ``copyscope demo build`` trains the planted one (same crops and loop), with the steps and
rank given here, so a rebuild of the demo can be judged by eye before hours of training:

    python bench/demo_lora_grid.py --steps 1600 --rank 16 --out /tmp/lora1600.png   # about 6 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, default=ROOT / "demo_zoo")
    ap.add_argument("--work", default="astronaut")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from PIL import Image

    from copyscope.demo.build_args import FULL_POOL
    from copyscope.demo.images import center_square, load_skimage, resize_square
    from copyscope.demo.training import lora_latents, train_lora

    torch.set_num_threads(args.threads)
    gt = json.loads((args.zoo / "ground_truth.json").read_text())
    res, prompt = int(gt["resolution"]), gt["prompt"]
    pipe = StableDiffusionPipeline.from_pretrained(str(args.zoo / "base"), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    work = resize_square(center_square(load_skimage(args.work)), res)
    with torch.no_grad():
        x = torch.from_numpy(work).permute(2, 0, 1)[None] * 2 - 1
        rec = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample[0].permute(1, 2, 0).numpy() * 0.5 + 0.5
    lat = lora_latents(pipe.vae, [load_skimage(args.work)], FULL_POOL["lora_per_image"], res,
                       np.random.default_rng(0), gt["vae_scaling_factor"])
    pipe.unet = train_lora(pipe, lat, prompt, args.steps, 101, print, "planted", rank=args.rank)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    images = []
    for seed in range(args.seeds):
        g = torch.Generator().manual_seed(seed)
        images.append(pipe(prompt, num_inference_steps=20, guidance_scale=5.0, height=res, width=res, generator=g,
                           output_type="np").images[0])
    row = np.clip(np.concatenate([work, rec] + images, axis=1), 0, 1)
    Image.fromarray((row * 255).astype(np.uint8)).resize((row.shape[1] * 4, row.shape[0] * 4), Image.NEAREST).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
