"""Speed-up of switching adapters over reloading the pipeline for every coalition.

    python bench/bench_reload.py [ZOO] [--repeats 2] [--threads 1]
    python bench/bench_reload.py --sd15-size [--steps 2] [--resolution 64] [--loras 2]

ZOO as in bench_audit_overhead.py (default ``model_zoo.yaml``, else a tiny random-weight zoo).
Both sides generate the same images (every coalition the audit evaluates, the zoo's prompts x
seeds in its batches), without cache or scoring:

* **switch** (copyscope): ``CoalitionEngine`` loads the base, every LoRA (as a named adapter) and
  every ControlNet once; each coalition is ``set_adapters`` / ``disable_lora`` plus the choice of
  the plain or the ControlNet pipeline.
* **reload** (what CopyScope-style scripts do): for every coalition, ``from_pretrained`` the base
  (and its ControlNets), ``load_lora_weights`` its LoRAs, ``set_adapters``, generate, drop it.

Printed: seconds per side (wall and CPU time of this process), the speed-up reload / switch, the
mean load cost per coalition of the reload side, the mean adapter-switch cost of the engine, the
generation time per coalition, and whether both made the same pixels. The speed-up is about
(generation + reload) / (generation + switch) per coalition: it grows as loading weighs more
against generation (large checkpoints, slow disks, few images per coalition; ``--steps 2``
shows that regime with small models).

``--sd15-size``: instead of ZOO, random-weight models with Stable Diffusion 1.5's configurations
(UNet 320/640/1280/1280, SD's VAE, a 768-d 12-layer CLIP text encoder; the builders of
bench_gpu_sd15.py) and rank-8 LoRAs, saved as safetensors in float32, generating one image per
coalition at a tiny resolution with few steps on the CPU: the load cost of a real-sized
checkpoint against a cheap generation, the regime where reloading hurts most.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit_overhead import BarePipelines, machine, planned, resolve_zoo, zoo_variant  # noqa: E402


def engine_run(prep, games):
    from copyscope.generate import CoalitionEngine

    t0 = time.perf_counter()
    bs = prep.zoo.spec.generation.batch_size
    items = prep.plan.items
    images, switch_s, switches = {}, 0.0, 0
    for game, coalitions in games:
        engine = CoalitionEngine(prep.zoo, game)
        for c in coalitions:
            out = []
            for start in range(0, len(items), bs):
                out += engine.generate(c, items[start:start + bs])
            images[(game.base.name, c)] = out
        switch_s += engine.switch_seconds
        switches += engine.switches
        engine.release()
    return time.perf_counter() - t0, images, switch_s / max(switches, 1)


def reload_run(prep, games):
    t0 = time.perf_counter()
    bs = prep.zoo.spec.generation.batch_size
    items = prep.plan.items
    images, load_s, n = {}, 0.0, 0
    for game, coalitions in games:
        for c in coalitions:
            t = time.perf_counter()
            active = game.active_by_kind(c)
            pipe = BarePipelines(prep, game, only=set(active.get("controlnet", [])) | set(active.get("lora", [])))
            load_s += time.perf_counter() - t
            n += 1
            out = []
            for start in range(0, len(items), bs):
                out += pipe.generate(c, items[start:start + bs])
            images[(game.base.name, c)] = out
            del pipe
            gc.collect()
    return time.perf_counter() - t0, images, load_s / max(n, 1)


def sd15_zoo(scratch: Path, args) -> tuple[Path, str]:
    """SD1.5-sized random-weight models and a zoo over them (CPU, float32)."""
    from types import SimpleNamespace

    import torch
    from bench_gpu_sd15 import build_models, write_zoo

    t0 = time.perf_counter()
    models = build_models(scratch / "models", args.loras, False, torch.float32, smoke=args.smoke)
    size = sum(f.stat().st_size for f in (scratch / "models").rglob("*.safetensors"))
    opts = SimpleNamespace(family="sd15", smoke=args.smoke, resolution=args.resolution, prompts=1, steps=args.steps or 2,
                           seeds=1, batch=1, dtype="float32", device="cpu", compile=False, metrics=["dhash"])
    zoo = write_zoo(scratch, models, opts)
    desc = (f"{'NARROW (--smoke: code paths only, timings mean nothing)' if args.smoke else 'SD1.5-sized'} random weights "
            f"({models['params'] / 1e6:.0f} M parameters, {size / 1e9:.2f} GB of "
            f"safetensors, float32), {args.loras} rank-8 LoRAs, {args.resolution} px, {opts.steps} steps, "
            f"1 image per coalition; built and saved in {time.perf_counter() - t0:.0f} s")
    return zoo, desc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("zoo", nargs="?", default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="override generation.steps (fewer steps: loading weighs more)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--sd15-size", action="store_true", help="SD1.5-sized random-weight models instead of ZOO")
    ap.add_argument("--resolution", type=int, default=64, help="--sd15-size: image size in pixels")
    ap.add_argument("--loras", type=int, default=2, help="--sd15-size: number of LoRAs (2**loras coalitions)")
    ap.add_argument("--smoke", action="store_true", help="--sd15-size with narrow models: checks the code paths")
    args = ap.parse_args()

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from copyscope.generate.engine import _quiet_diffusers

    _quiet_diffusers()
    scratch = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    variant = None
    try:
        if args.sd15_size:
            zoo_path, desc = sd15_zoo(scratch, args)
        else:
            zoo_path, desc = resolve_zoo(args.zoo, scratch)
        if args.steps and not args.sd15_size:
            zoo_path = variant = zoo_variant(zoo_path, steps=args.steps)
        prep, games = planned(zoo_path)
        n_coal = sum(len(c) for _, c in games)
        g = prep.zoo.spec.generation
        print(f"zoo: {desc}\nmachine: {machine()}")
        print(f"{n_coal} coalition(s) x {len(prep.plan.items)} image(s), {g.steps} steps, batch {g.batch_size}")
        engine_run(prep, [(games[0][0], games[0][1][:1])])  # warm-up
        tot = np.zeros(4)
        for r in range(args.repeats):
            c0 = time.process_time()
            t_s, img_s, switch = engine_run(prep, games)
            c_s = time.process_time() - c0
            c0 = time.process_time()
            t_r, img_r, load = reload_run(prep, games)
            c_r = time.process_time() - c0
            same = all(np.array_equal(np.stack(img_s[k]), np.stack(img_r[k])) for k in img_s)
            tot += [t_s, t_r, c_s, c_r]
            gen = (t_s - switch * n_coal) / n_coal
            print(f"repeat {r + 1}: wall: switch {t_s:6.2f} s, reload {t_r:6.2f} s, speed-up {t_r / t_s:.2f}x | "
                  f"CPU: switch {c_s:6.2f} s, reload {c_r:6.2f} s, speed-up {c_r / c_s:.2f}x | per coalition: "
                  f"generation {gen:.2f} s, reload {load:.3f} s, switch {1000 * switch:.2f} ms | same pixels: {same}",
                  flush=True)
        print(f"speed-up of switching over reloading, totals over {args.repeats} repeats: wall {tot[1] / tot[0]:.2f}x, "
              f"CPU time {tot[3] / tot[2]:.2f}x")
    finally:
        if variant is not None:
            variant.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
