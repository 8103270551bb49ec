"""Train (once, cached on disk) the validity benchmark's LoRA pool on the demo zoo's base.

Layout under ``<out>/pool``: ``loras/<name>.safetensors``, ``references/<work>/*.png`` (as
``demo build`` writes them), ``control/<work>_depth.png`` (pseudo-depth), ``pool.json`` (what each
LoRA was trained on, its seed, steps and rank, and the hash of the base it was trained on; a LoRA whose
entry matches is not trained again, so rebuilding the demo zoo in place retrains the pool).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..common.files import atomic_write_text, file_sha256, tree_sha256
from ..common.errors import CopyscopeError
from .scenarios import POOL_RECIPES, TRIGGER_WORDS, PoolLora, World, transformed_pixels, trigger_caption, world_of

POOL_FORMAT = "copyscope-validity-pool/1"
BASE_FILE_SUFFIXES = (".safetensors", ".json", ".txt")  # weights, configs, tokenizer: what a LoRA was trained against


def _entry(p: PoolLora, seed: int, steps: int, prompt: str, demo_zoo: Path, rank: int, world: World | None = None) -> dict:
    e = {"images": list(p.images), "copies": p.copies, "transform": p.transform}
    if world is not None and world.library:  # a world of image files: a changed file retrains its LoRAs
        from ..common.inputs import image_sha256

        names = [*p.images, *([p.transform.split(":", 1)[1]] if p.transform.startswith("palette_of:") else [])]
        e["image_sha256"] = {n: image_sha256(world.library[n]) for n in names if n in world.library}
    if p.shipped:
        e["shipped"] = p.shipped
        e["sha256"] = file_sha256(demo_zoo / "loras" / p.shipped)
    else:
        e.update(seed=seed + 201 + p.seed_offset, steps=steps, prompt=prompt, rank=rank,
                 base_sha256=tree_sha256(demo_zoo / "base", BASE_FILE_SUFFIXES))
    return e


def _read_pool_manifest(path: Path) -> dict:
    """pool.json of an earlier run; an unreadable one is as none (its LoRAs are trained again)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict) or not isinstance(old.get("loras", {}), dict):
        return {}
    return {**old, "loras": {k: v for k, v in old.get("loras", {}).items() if isinstance(v, dict)}}


def train_pool(out: Path, demo_zoo: Path, *, seed: int = 0, steps: int | None = None, only=None,
               log: Callable[[str], None] = print, jobs: int = 1, recipe: str = "demo") -> Path:
    """Write the pool under ``out/pool`` (LoRAs with a matching ``pool.json`` entry are kept); returns it.

    ``only``: the names of the LoRAs needed (default: the whole pool). ``jobs`` > 1 trains them in that many
    worker processes (spawned, one torch thread each; the same files as one process with one thread).
    ``recipe`` (scenarios.POOL_RECIPES): ``trigger-leave-alone`` trains the works' four LoRAs together in this
    process (``jobs`` torch threads), all four again if any one's entry does not match."""
    if recipe not in POOL_RECIPES:
        raise CopyscopeError(f"unknown pool recipe {recipe!r}; expected one of {', '.join(POOL_RECIPES)}")
    demo_zoo = Path(demo_zoo)
    gt_file = demo_zoo / "ground_truth.json"
    if not gt_file.is_file():
        raise CopyscopeError(f"{demo_zoo}: no ground_truth.json; pass --zoo a folder written by `copyscope demo build`")
    gt = json.loads(gt_file.read_text(encoding="utf-8"))
    resolution, prompt = int(gt["resolution"]), gt["prompt"]
    steps = int(steps or gt["steps"]["lora"])
    rank = lora_rank_of(gt)
    world = world_of(gt)
    pool_dir = Path(out) / "pool"
    manifest_file = pool_dir / "pool.json"
    old = _read_pool_manifest(manifest_file)
    manifest = {"format": POOL_FORMAT, "demo_zoo": str(demo_zoo.resolve()), "resolution": resolution,
                "prompt": prompt, "loras": dict(old.get("loras", {}))}
    _write_pool_references(pool_dir, resolution, seed, world)

    def lora_file(p: PoolLora) -> Path:
        return pool_dir / "loras" / f"{p.name}.safetensors"

    def record(p: PoolLora, entry: dict) -> None:
        manifest["loras"][p.name] = {"spec": entry, "sha256": file_sha256(lora_file(p))}
        atomic_write_text(manifest_file, json.dumps(manifest, indent=2) + "\n")

    if recipe != "demo":
        _train_trigger_pool(pool_dir, demo_zoo, world, manifest, old, recipe=recipe, seed=seed, steps=steps,
                            prompt=prompt, resolution=resolution, rank=rank, threads=int(jobs), log=log)
        return pool_dir

    to_train = []
    for p in world.pool:
        target = lora_file(p)
        if only is not None and p.name not in only:
            continue
        entry = _entry(p, seed, steps, prompt, demo_zoo, rank, world)
        if target.is_file() and old.get("loras", {}).get(p.name, {}).get("spec") == entry:
            continue
        if p.shipped:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(demo_zoo / "loras" / p.shipped, target)
            record(p, entry)
        else:
            to_train.append((p, entry))

    def trained(p: PoolLora, entry: dict, seconds: float) -> None:
        log(f"pool: lora {p.name} on {', '.join(p.images)} ({p.transform}): {steps} steps, {seconds:.0f}s")
        record(p, entry)

    if int(jobs) > 1 and len(to_train) > 1:
        tasks = [(str(demo_zoo), world.to_doc(), p.name, str(lora_file(p)), resolution, prompt, steps,
                  entry["seed"], rank) for p, entry in to_train]
        with spawned_workers(min(int(jobs), len(tasks))) as ex:
            for (p, entry), seconds in zip(to_train, ex.map(_train_in_worker, tasks)):
                trained(p, entry, seconds)
    else:
        pipe = _base_pipeline(demo_zoo) if to_train else None
        for p, entry in to_train:
            t = time.time()
            _train_pool_lora(pipe, world, p, lora_file(p), resolution, prompt, steps, entry["seed"], log, rank)
            trained(p, entry, time.time() - t)
    atomic_write_text(manifest_file, json.dumps(manifest, indent=2) + "\n")
    return pool_dir


def _train_trigger_pool(pool_dir: Path, demo_zoo: Path, world: World, manifest: dict, old: dict, *, recipe: str,
                        seed: int, steps: int, prompt: str, resolution: int, rank: int, threads: int,
                        log: Callable[[str], None]) -> None:
    """The works' LoRAs of a trigger pool, trained together (copyscope.demo.training.train_joint_loras, partners
    ``leave-alone``), each under its trigger caption; pool.json records each one's caption and the joint seed."""
    import torch

    from . import tiny
    from .build_args import FULL_POOL
    from .training import lora_latents, train_joint_loras

    works = list(world.works)
    captions = {w: trigger_caption(prompt, word) for w, word in zip(works, TRIGGER_WORDS)}
    # the demo recipe's entry of a LoRA on the work alone (seed + 201, base and image hashes), plus what differs
    specs = {w: {**_entry(PoolLora(w, (w,), w), seed, steps, prompt, demo_zoo, rank, world), "recipe": recipe,
                 "caption": captions[w], "trained_with": works} for w in works}
    files = {w: pool_dir / "loras" / f"{w}.safetensors" for w in works}
    if all(files[w].is_file() and old.get("loras", {}).get(w, {}).get("spec") == specs[w] for w in works):
        return
    torch.set_num_threads(max(1, threads))
    joint_seed = specs[works[0]]["seed"]  # the same for every work
    pipe = _base_pipeline(demo_zoo)
    t = time.time()
    lats = {w: lora_latents(pipe.vae, [world.load(w)], FULL_POOL["lora_per_image"], resolution,
                            np.random.default_rng(joint_seed + i), pipe.vae.config.scaling_factor)
            for i, w in enumerate(works)}
    unet = train_joint_loras(pipe, lats, captions, steps, joint_seed, rank, partners="leave-alone")
    log(f"pool: {recipe} LoRAs {', '.join(works)} trained together: {steps} steps each, {time.time() - t:.0f}s")
    for w in works:
        files[w].parent.mkdir(parents=True, exist_ok=True)
        tiny.save_lora_file(files[w], unet, None, w)
        manifest["loras"][w] = {"spec": specs[w], "sha256": file_sha256(files[w])}
    atomic_write_text(pool_dir / "pool.json", json.dumps(manifest, indent=2) + "\n")


def spawned_workers(jobs: int):
    """A pool of ``jobs`` worker processes, spawned rather than forked (a fork copies torch's thread
    pools and locks mid-state); used by the pool's training and the benchmark's audits."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def _base_pipeline(demo_zoo: Path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(demo_zoo / "base"), safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _train_in_worker(task: tuple) -> float:
    """One pool LoRA in a worker process (one torch thread); returns its training seconds."""
    import torch

    demo_zoo, world_doc, name, target, resolution, prompt, steps, seed, rank = task
    torch.set_num_threads(1)
    t = time.time()
    world = World.from_doc(world_doc)
    _train_pool_lora(_base_pipeline(Path(demo_zoo)), world, world.lora(name), Path(target), resolution, prompt, steps,
                     seed, lambda msg: None, rank)
    return time.time() - t


def _write_pool_references(pool_dir: Path, resolution: int, seed: int, world: World) -> None:
    """References and conditioning images, exactly as `demo build` writes them for a reference work."""
    from ..conditioning import pseudo_depth
    from .images import center_square, resize_square, save_png, write_reference_views
    from .training import HYPER

    full = {w: center_square(world.load(w)) for w in world.works}
    size = min(HYPER["reference_png_size"], min(a.shape[0] for a in full.values()))
    write_reference_views(pool_dir, full, size, HYPER["reference_views"], seed, HYPER["lora_crop_scale"])
    for w, a in full.items():
        save_png(pseudo_depth(resize_square(a, resolution)), pool_dir / "control" / f"{w}_depth.png")


def lora_rank_of(gt: dict) -> int:
    """The rank the demo zoo's LoRAs were trained with (ground_truth.json), so the pool matches them.
    Zoos written before the rank was recorded used rank 8."""
    return int((gt.get("hyperparameters") or {}).get("lora_rank") or 8)


def _train_pool_lora(pipe, world: World, p: PoolLora, target: Path, resolution: int, prompt: str, steps: int, seed: int,
                     log: Callable[[str], None], rank: int) -> None:
    """Train one pool LoRA as `demo build` trains the shipped ones (same crops, pool size, steps, rank)."""
    from . import tiny
    from .build_args import FULL_POOL
    from .training import lora_latents, train_lora

    lat = lora_latents(pipe.vae, [transformed_pixels(world.load(x), p.transform, world) for x in p.images],
                       FULL_POOL["lora_per_image"], resolution, np.random.default_rng(seed),
                       pipe.vae.config.scaling_factor)
    unet = train_lora(pipe, lat, prompt, steps, seed, log, p.name, rank=rank)
    tiny.save_lora_file(target, unet, None, "lora")
    del unet
