"""Audit wall time over the time bare diffusers takes to generate the same images.

    python bench/bench_audit_overhead.py [ZOO] [--repeats 2] [--threads 1]

ZOO defaults to ``model_zoo.yaml`` at the repository root (the demo zoo). If that file does not
exist, a zoo over tiny random-weight models (copyscope.demo.tiny: 1 ControlNet + 2 LoRAs, 32 px,
20 steps, 2 prompts x 4 seeds, batch 4) is written to a temporary folder and used instead.

* **audit**: ``copyscope.audit.audit_zoo`` on a cold cache (a fresh output folder, the zoo's
  ``cache:`` removed): model loading, identity hashing, generation, PNG writes, scoring with the
  zoo's metrics, estimation, report files. Everything ``copyscope audit`` does but the CLI.
* **bare**: a plain diffusers loop: load the pipeline, the LoRAs (``load_lora_weights`` with
  adapter names) and the ControlNets once; for every coalition the audit evaluates,
  ``set_adapters`` / ``disable_lora`` and generate the same prompts x seeds in the same batches
  (ControlNet pipeline only for coalitions with a ControlNet); no cache, no scoring.

Both run in this process, alternating (bare, audit, bare, audit, ...) after a warm-up generation,
so imports and first-call costs are paid by neither. Printed: each pair's ratio audit / bare and
the ratio of the totals, in wall time, in CPU time of the main thread (the critical path: with
one torch thread, generation runs there; the audit's background thread, PNG writes and scoring,
does not), and in CPU time of the whole process (everything, background included). On a shared
CPU machine the wall time also measures the neighbours' load, CPU times do not; with a free core
(or a GPU generating) the wall ratio tends to the main-thread ratio. Also printed: whether bare
produced the very pixels the audit cached (PNG round trip), so the two do the same work.
Target: ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ------------------------------------------------------------------------------ shared helpers
def machine() -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s) visible, "
            f"torch {torch.__version__} with {torch.get_num_threads()} thread(s), {dev}, Python {platform.python_version()}")


def tiny_zoo(folder: Path, *, loras: int = 2, controlnet: bool = True, resolution: int = 32, steps: int = 20,
             seeds: int = 4, batch_size: int = 4, prompts: int = 2, metrics=None) -> Path:
    """A zoo over tiny random-weight models (built here, no download)."""
    import yaml

    sys.path.insert(0, str(REPO / "tests"))
    from copyscope.demo.tiny import save_tiny_zoo
    from helpers.zoo import write_reference_images

    models = save_tiny_zoo(folder / "models", seed=0, n_loras=loras, controlnet=controlnet, sample_size=resolution)
    refs = write_reference_images(folder / "refs", n=2, size=resolution)
    words = ["a painting of a cat", "a photo of a dog", "a drawing of a house", "a picture of a tree"]
    data = {
        "name": "bench-tiny",
        "output": str(folder / "out"),
        "bases": [{"name": "tiny-sd", "model": str(models["base"])}],
        "controlnets": ([{"name": "depth", "model": str(models["controlnet"]), "conditioning_scale": 1.0,
                          "conditioning": {"image": str(models["control"])}}] if controlnet else []),
        "loras": [{"name": f"lora{i}", "model": str(p), "weight": 1.0} for i, p in enumerate(models["loras"])],
        "references": [{"name": "work", "paths": [str(refs)]}],
        "prompts": [{"name": f"p{i}", "text": words[i % len(words)]} for i in range(prompts)],
        "generation": {"resolution": resolution, "steps": steps, "guidance": 5.0, "seeds": seeds,
                       "batch_size": batch_size, "scheduler": "ddim", "dtype": "float32"},
        "metrics": metrics or ["ssim", "rgb_ssim", "dhash", "histogram", "cosine"],
        "estimator": {"bootstrap": 200},
    }
    path = folder / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def resolve_zoo(arg: str | None, scratch: Path, **tiny_kwargs) -> tuple[Path, str]:
    path = Path(arg) if arg else REPO / "model_zoo.yaml"
    if path.is_file():
        return path, str(path)
    if arg:
        raise SystemExit(f"zoo file not found: {arg}")
    return tiny_zoo(scratch / "tiny", **tiny_kwargs), "tiny random-weight zoo (model_zoo.yaml not found)"


def cold_copy(zoo_path: Path, out_dir: Path) -> Path:
    """A copy of the zoo file beside it (relative paths keep working) with its output and its own
    cache in ``out_dir`` (not the shared user cache): the audit starts from a cold cache."""
    import yaml

    data = yaml.safe_load(zoo_path.read_text())
    data["cache"] = str(out_dir.resolve() / "cache")
    data["output"] = str(out_dir.resolve())
    copy = zoo_path.parent / f".bench-{uuid.uuid4().hex[:8]}.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def zoo_variant(zoo_path: Path, **generation) -> Path:
    """A copy of the zoo file beside it with some ``generation`` keys replaced."""
    import yaml

    data = yaml.safe_load(zoo_path.read_text())
    data.setdefault("generation", {}).update(generation)
    copy = zoo_path.parent / f".bench-{uuid.uuid4().hex[:8]}.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def planned(zoo_path: Path) -> tuple[object, list[tuple[object, list[tuple[bool, ...]]]]]:
    """The prepared audit and, per game, the coalitions the audit will evaluate."""
    from copyscope.audit import prepare_audit
    from copyscope.audit.distributed import planned_coalitions

    prep = prepare_audit(zoo_path)
    return prep, [(g, planned_coalitions(prep, g)) for g in prep.plan.games]


class BarePipelines:
    """Plain diffusers: one pipeline per base, LoRAs as named adapters, ControlNets loaded once."""

    def __init__(self, prep, game, only=None):
        """``only``: load just these LoRA / ControlNet names (default: every one of the zoo).
        The pipeline classes are those of the base's family (copyscope.families)."""
        import diffusers
        import torch
        from safetensors.torch import load_file

        from copyscope.config import SCHEDULERS
        from copyscope.generate import resolve_device, resolve_dtype
        from copyscope.families import FAMILIES

        zoo, self.game, self.gen = prep.zoo, game, prep.zoo.spec.generation
        self.zoo = zoo
        self.family = FAMILIES[getattr(game, "family", "sd")]
        self.device = resolve_device(self.gen.device)
        self.dtype = resolve_dtype(self.gen.dtype, self.device, self.family.cuda_dtype)
        self.pipe = getattr(diffusers, self.family.pipeline).from_pretrained(
            str(zoo.resolve_path(game.base.model)), torch_dtype=self.dtype, **self.family.load_kwargs)
        if self.gen.scheduler:
            self.pipe.scheduler = getattr(diffusers, SCHEDULERS[self.gen.scheduler]).from_config(self.pipe.scheduler.config)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.loras = {lo.name: lo for lo in zoo.spec.loras if only is None or lo.name in only}
        for lo in self.loras.values():
            self.pipe.load_lora_weights(load_file(str(zoo.resolve_path(lo.model))), adapter_name=lo.name)
        self.cns = {cn.name: cn for cn in zoo.spec.controlnets if only is None or cn.name in only}
        cn_cls = getattr(diffusers, self.family.controlnet_model)
        self.cn_models = {n: cn_cls.from_pretrained(str(zoo.resolve_path(cn.model)), torch_dtype=self.dtype).to(self.device)
                          for n, cn in self.cns.items()}
        self.cn_pipes: dict = {}
        self.switch_seconds = 0.0
        self.switches = 0
        if getattr(self.gen, "compile", False):  # as CoalitionEngine._compile_unet does
            dyn = torch._dynamo.config
            for name in ("cache_size_limit", "recompile_limit"):
                if hasattr(dyn, name):
                    setattr(dyn, name, max(getattr(dyn, name), 2 ** (len(self.loras) + len(self.cns)) + 8))
            getattr(self.pipe, self.family.denoiser).compile(fullgraph=False, dynamic=False)

    def pipeline_for(self, members):
        import inspect

        import diffusers

        active = self.game.active_by_kind(members)
        cns, loras = set(active.get("controlnet", [])), set(active.get("lora", []))
        t = time.perf_counter()
        if self.loras:
            if loras:
                names = [n for n in self.loras if n in loras]
                self.pipe.enable_lora()
                self.pipe.set_adapters(names, [self.loras[n].weight for n in names])
            else:
                self.pipe.disable_lora()
        self.switch_seconds += time.perf_counter() - t
        self.switches += 1
        if not cns:
            return self.pipe, []
        key = tuple(n for n in self.cns if n in cns)
        if key not in self.cn_pipes:
            models = [self.cn_models[n] for n in key]
            cls = getattr(diffusers, self.family.controlnet_pipeline)
            accepted = inspect.signature(cls.__init__).parameters
            extra = {k: v for k, v in self.family.load_kwargs.items() if k in accepted and k != "safety_checker"}
            p = cls(**{k: v for k, v in self.pipe.components.items() if k in accepted and k != "controlnet"}, **extra,
                    controlnet=models[0] if len(models) == 1 else models)
            p.set_progress_bar_config(disable=True)
            self.cn_pipes[key] = p
        return self.cn_pipes[key], list(key)

    def generate(self, members, items):
        import numpy as np
        import torch
        from PIL import Image

        pipe, cn_names = self.pipeline_for(members)
        h, w = self.gen.size
        from copyscope.families import family_call_kwargs

        kwargs = dict(prompt=[self.game.prompt_text(members, i) for i in items],
                      num_inference_steps=self.gen.steps, guidance_scale=self.gen.guidance, height=h, width=w,
                      generator=[torch.Generator("cpu").manual_seed(i.seed) for i in items], output_type="np",
                      **family_call_kwargs(self.family, self.gen))
        if self.family.negative_prompt:
            kwargs["negative_prompt"] = [i.negative for i in items] if any(i.negative for i in items) else None
        if cn_names:
            imgs = []
            for n in cn_names:
                c = self.cns[n].conditioning
                paths = [c.image if c.image is not None else (c.per_prompt[i.prompt] if c.per_prompt else c.per_work[i.work])
                         for i in items]
                imgs.append([Image.open(self.zoo.resolve_path(p)).convert("RGB").resize((w, h), Image.BICUBIC) for p in paths])
            scales = [self.cns[n].conditioning_scale for n in cn_names]
            kwargs[self.family.control_arg] = imgs[0] if len(imgs) == 1 else imgs
            kwargs["controlnet_conditioning_scale"] = scales[0] if len(scales) == 1 else scales
        with torch.inference_mode():
            return [np.asarray(x, dtype=np.float32) for x in pipe(**kwargs).images]


def bare_run(prep, games) -> tuple[float, dict]:
    """Time the plain loop over every planned coalition; returns (seconds, images per coalition key)."""
    t0 = time.perf_counter()
    out = {}
    info = {"switch_seconds": 0.0, "switches": 0}
    bs = prep.zoo.spec.generation.batch_size
    items = prep.plan.items
    for game, coalitions in games:
        bare = BarePipelines(prep, game)
        for c in coalitions:
            images = []
            for start in range(0, len(items), bs):
                images += bare.generate(c, items[start:start + bs])
            out[(game.base.name, c)] = images
        info["switch_seconds"] += bare.switch_seconds
        info["switches"] += bare.switches
        del bare
    return time.perf_counter() - t0, {"images": out, **info}


def same_pixels(report: dict, cache_root: Path, bare_images: dict, games) -> bool:
    """Do the bare images equal the audit's cached PNGs (after the same uint8 rounding)?"""
    import numpy as np

    from copyscope.generate.cache import ImageCache
    from copyscope.common.files import to_uint8

    cache = ImageCache(cache_root)
    for g_report, (game, coalitions) in zip(report["games"], games):
        for c in coalitions:
            keys = g_report["images"][game.coalition_key(c)]
            for key, img in zip(keys, bare_images[(game.base.name, c)]):
                if not np.array_equal(np.asarray(cache.load(key) * 255 + 0.5, dtype=np.uint8), to_uint8(img)):
                    return False
    return True


def warm_up(prep, games) -> None:
    """Imports, kernels, allocator: one generation nobody is timed on."""
    game, coalitions = games[0]
    BarePipelines(prep, game).generate(coalitions[-1], prep.plan.items[:1])


# ------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("zoo", nargs="?", default=None, help="zoo file (default: model_zoo.yaml at the repo root)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: stable timings on a shared CPU; 0: torch's default)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from copyscope.audit import audit_zoo
    from copyscope.generate.engine import _quiet_diffusers

    _quiet_diffusers()
    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        zoo_path, zoo_desc = resolve_zoo(args.zoo, scratch)
        prep, games = planned(zoo_path)
        n_images = sum(len(c) for _, c in games) * len(prep.plan.items)
        print(f"zoo: {zoo_desc}")
        print(f"machine: {machine()}")
        g = prep.zoo.spec.generation
        print(f"{sum(len(c) for _, c in games)} coalition(s) x {len(prep.plan.items)} image(s) = {n_images} images; "
              f"{g.size[0]}x{g.size[1]}, {g.steps} steps, batch {g.batch_size}, metrics: {', '.join(m.name for m in prep.metrics)}")
        warm_up(prep, games)
        rows = []
        for r in range(args.repeats):
            c0, m0 = time.process_time(), time.thread_time()
            t_bare, bare = bare_run(prep, games)
            c_bare, m_bare = time.process_time() - c0, time.thread_time() - m0
            out_dir = scratch / f"audit{r}"
            copy = cold_copy(zoo_path, out_dir)
            try:
                t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
                report = audit_zoo(copy, out_dir)
                t_audit, c_audit, m_audit = time.perf_counter() - t0, time.process_time() - c0, time.thread_time() - m0
            finally:
                copy.unlink(missing_ok=True)
            gen = report["generation"]
            assert gen["cached"] == 0, "the audit's cache was not cold"
            same = same_pixels(report, Path(report.get("cache_dir") or out_dir / "cache"), bare["images"], games)
            rows.append((t_bare, t_audit, c_bare, c_audit, m_bare, m_audit, same, bare["switch_seconds"] / max(bare["switches"], 1)))
            print(f"repeat {r + 1}: wall: bare {t_bare:6.2f} s, audit {t_audit:6.2f} s (in generate() {gen['seconds']:.2f} s), "
                  f"ratio {t_audit / t_bare:.3f} | main-thread CPU: bare {m_bare:6.2f} s, audit {m_audit:6.2f} s, "
                  f"ratio {m_audit / m_bare:.3f} | process CPU: bare {c_bare:6.2f} s, audit {c_audit:6.2f} s, "
                  f"ratio {c_audit / c_bare:.3f} | same pixels: {same}", flush=True)
            shutil.rmtree(out_dir, ignore_errors=True)
        tb, ta, cb, ca, mb, ma = (sum(r[i] for r in rows) for i in range(6))
        print(f"audit / bare over {len(rows)} repeats (target <= 1.10): wall {ta / tb:.3f}, "
              f"main-thread CPU {ma / mb:.3f}, process CPU {ca / cb:.3f}; "
              f"{n_images / (ta / len(rows)):.2f} images/s audit, {n_images / (tb / len(rows)):.2f} images/s bare (wall); "
              f"LoRA switch {1000 * rows[-1][7]:.2f} ms")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
