"""Do style LoRAs combine with a copying LoRA? Style-only decoys stacked with the demo zoo's planted LoRA.

    python bench/bench_style_stack.py OUT [--zoo demo_zoo] [--styles sepia,poster] [--images 6] [--jobs 2]

bench_stacking.py found that the benchmark worlds' LoRAs, each memorising one picture, leave mostly texture when
stacked. Real pipelines more often stack a content LoRA with style LoRAs, which learn a treatment shared by many
pictures rather than any one picture. This script trains such style-only decoys on the zoo world's own base
pictures (the first ``--images`` the base was trained on, so that the LoRA has no new content to learn, in intent
only the treatment; at 32 px it still memorises those pictures, bench/README.md section 10), with the demo's
recipe otherwise (caption, rank, steps, modules), and audits the game of the zoo's planted LoRA with them
(``phash``, the headline, and ``ssim``, which takes generic changes for copying; 8 seeds).
Reported per LoRA: its effect alone (similarity to the work minus the base's); for the plant, its retention
stacked with each style and with all of them ((with - base) / (alone - base); bench_stacking.py's measure, where
the memorising decoys keep 0.00-0.33); every player's Shapley value and Holm p (t test). Writes OUT/style_stack.json
and OUT/style_stack.md.

Treatments (numpy, on RGB in [0, 1]): ``sepia`` (the usual sepia colour matrix), ``poster`` (three levels per
channel: flat regions and hard edges), ``grain`` (strong Gaussian grain, sigma 0.15, fixed per picture).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=np.float32)


def treat(img: np.ndarray, style: str, seed: int = 0) -> np.ndarray:
    """One picture (H, W, 3) in [0, 1] with a style's treatment, float32 in [0, 1]."""
    if style == "sepia":
        out = img @ SEPIA.T
    elif style == "poster":
        out = np.round(img * 2.0) / 2.0
    elif style == "grain":
        out = img + 0.15 * np.random.default_rng(seed).standard_normal(img.shape)
    else:
        raise ValueError(f"unknown style {style!r}; expected sepia, poster or grain")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


STYLES = ("sepia", "poster", "grain")


def _train(task: tuple) -> float:
    """One style LoRA in a worker process (one torch thread); returns its training seconds."""
    import torch
    from bench_stacking import train_and_save

    from copyscope.demo.images import load_named

    zoo, library, names, style, target, resolution, prompt, steps, seed, rank = task
    torch.set_num_threads(1)
    t = time.time()
    lib = {k: Path(v) for k, v in (library or {}).items()}
    pictures = [treat(load_named(n, lib), style, seed + i) for i, n in enumerate(names)]
    train_and_save(Path(zoo), pictures, Path(target), resolution, prompt, steps, seed, rank, f"style-{style}")
    return time.time() - t


def main() -> None:
    from bench_stacking import _coalition, _worths, _zoo_file, chosen, common_arguments, retention

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_arguments(ap)
    ap.add_argument("--styles", default="sepia,poster")
    ap.add_argument("--images", type=int, default=6, help="base pictures each style LoRA is trained on")
    args = ap.parse_args()
    out, zoo = args.out.resolve(), args.zoo.resolve()
    styles = chosen(args.styles, STYLES, "--styles")

    from copyscope.audit import audit_zoo
    from copyscope.demo.pool import _write_pool_references, lora_rank_of, spawned_workers
    from copyscope.demo.scenarios import world_of

    gt = json.loads((zoo / "ground_truth.json").read_text())
    world = world_of(gt)
    work = world.works[0]
    plant = dict(world.shipped)[work]
    names = list(gt["components"]["base"]["trained_on"][: args.images])
    steps = int(args.steps or gt["steps"]["lora"])
    rank, resolution, prompt = lora_rank_of(gt), int(gt["resolution"]), gt["prompt"]
    _write_pool_references(out / "pool", resolution, 0, world)
    library = {k: str(v) for k, v in world.library.items()}

    files = {"plant": zoo / "loras" / plant}
    tasks, timings = [], {}
    for i, style in enumerate(styles):
        target = out / "loras" / f"style-{style}.safetensors"
        files[f"style-{style}"] = target
        if not target.is_file():
            tasks.append((str(zoo), library, names, style, str(target), resolution, prompt, steps, 201 + i, rank))
    if tasks:
        print(f"training {len(tasks)} style LoRAs on {', '.join(names)} ({steps} steps, {args.jobs} at a time)", flush=True)
        with spawned_workers(args.jobs) as ex:
            for task, seconds in zip(tasks, ex.map(_train, tasks)):
                timings[Path(task[4]).name] = round(seconds, 1)
                print(f"  {Path(task[4]).name}: {seconds:.0f}s", flush=True)

    import torch

    torch.set_num_threads(max(1, args.jobs))
    report_dir = out / "audit"
    audit_zoo(_zoo_file(out, zoo, f"style-stack-{work}", files, work, out / "pool" / "references", args.seeds,
                        ("phash", "ssim")), report_dir)
    report = json.loads((report_dir / "report.json").read_text())
    results = {}
    for metric in ("phash", "ssim"):
        w = _worths(report_dir, metric)
        base = _coalition(w, ())
        alone = {p: _coalition(w, (p,)) - base for p in files}
        stacks = {s: _coalition(w, ("plant", s)) for s in files if s != "plant"}
        stacks["all"] = _coalition(w, tuple(files))
        sh = report["games"][0]["metrics"][metric]["shapley"]
        results[metric] = {
            "base": base, "effect_alone": alone,
            "plant_retention": {k: retention(v, base, alone["plant"]) for k, v in stacks.items()},
            "shapley": {p: {"value": sh[p]["value"], "p_holm_t": (sh[p].get("t") or {}).get("p_holm")} for p in files},
        }
    doc = {"zoo": str(zoo), "work": work, "styles": styles, "trained_on": names, "steps": steps, "rank": rank,
           "seeds": args.seeds, "training_s": timings, "metrics": results}
    (out / "style_stack.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "style_stack.md").write_text(table(doc))
    print(table(doc))


def table(doc: dict) -> str:
    """Per metric and LoRA: its effect alone, the plant's retention with it, its Shapley value and Holm p (t)."""
    lines = ["| metric | LoRA | alone: gain over the base | plant's retention with it | Shapley value | Holm p (t) |",
             "|---|---|---|---|---|---|"]
    for metric, r in doc["metrics"].items():
        for p, gain in r["effect_alone"].items():
            ret = r["plant_retention"].get(p)
            sh = r["shapley"][p]
            p_holm = sh["p_holm_t"]
            pv = "n/a" if p_holm is None else "< 0.001" if p_holm < 0.001 else f"{p_holm:.3f}"
            lines.append(f"| {metric} | {p} | {gain:+.3f} | {'-' if ret is None else f'{ret:.2f}'} | "
                         f"{sh['value']:+.3f} | {pv} |")
        lines.append(f"| {metric} | (plant with every style) | | {r['plant_retention']['all']:.2f} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
