"""Do a world's LoRAs keep their content when stacked? LoRA recipes compared on one demo zoo.

    python bench/bench_stacking.py OUT [--zoo demo_zoo] [--recipes wide,attention,cross-kv] [--steps 1600] [--jobs 2]

In the benchmark worlds the full pipeline (three LoRAs at full weight) draws mostly texture: each LoRA memorised
its work with the same caption, on every module of the UNet, so their summed updates leave the images the base
can draw. Real LoRAs usually combine. This script trains one LoRA per work for the zoo world's first three works
with each recipe (same caption, rank, steps, learning rate and crops as `demo build`; only the adapted modules
differ), audits every coalition of the three (phash, 8 seeds, one audit per work: the images are shared through the
cache), and reports per recipe:

* each LoRA's effect alone: phash similarity to its own work minus the base's (does the recipe still copy?);
* its retention when stacked: (similarity to its work with the others - the base's) / (alone - the base's), for
  each pair and for the three together (1: its content survives; 0: it is lost);
* the Shapley values of every work's game and the pairwise interactions of the first work's game, from the
  audits' reports.

Recipes (the modules a LoRA adapts): ``wide``, the demo's (attention, transformer projections, feed-forward,
resnet convolutions; for works the zoo ships a LoRA for, the zoo's own file); ``attention``, the attention
projections only (to_q, to_k, to_v, to_out.0 of self- and cross-attention); ``cross-kv``, the keys and values
of cross-attention only (what the text conditioning becomes); ``stack-aware`` and ``joint`` (below, at
RECIPES); ``low-rank``, the wide modules at rank LOW_RANK (4) instead of the zoo's; ``trigger``, the way real
LoRAs are trained to stay out of each other's way: each learns its work under a caption with a trigger word of its
own (TRIGGERS) and, at every step, to leave the plain prompt's predictions as the base makes them (DreamBooth's
prior preservation, here a distillation loss against the base UNet, weight PRIOR_WEIGHT); each work is audited with
its own trigger in the prompt, so the other LoRAs' triggers are absent; ``trigger-all``, the same files audited with
all three triggers in the prompt (every LoRA is asked to draw its work at once); ``trigger-joint``, the three
trained together as in ``joint`` but each under its own trigger caption, and every LoRA switched on in a step learns
from it (so each also learns the others' works under their triggers, and can help draw them); audited like
``trigger``; ``trigger-leave-alone``, as ``trigger-joint`` except that each LoRA learns its work alone and the
partners switched on in its step learn only that the stack's prediction equal the step's LoRA's alone (they never
take the other works' pictures as a target: the recipe of the benchmark's trigger world, copyscope.demo.pool).
Writes OUT/stacking.json and OUT/stacking.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from copyscope.demo.scenarios import TRIGGER_WORDS, trigger_caption  # noqa: E402 (after the sys.path line)

RECIPES = {
    "wide": None,  # HYPER["lora_targets"]
    "attention": ["to_q", "to_k", "to_v", "to_out.0"],
    "cross-kv": r".*attn2\.(to_k|to_v)",
    "stack-aware": None,  # wide, trained half of its steps with the other works' wide LoRAs merged into the base
    "joint": None,  # wide, the three trained together: each step one LoRA learns its work with a random subset of the others on
    "low-rank": None,  # wide at rank LOW_RANK: smaller updates, which may interfere less when summed
    "trigger": None,  # wide, own trigger word in the caption, prior preservation of the plain prompt
    "trigger-all": None,  # the trigger recipe's files, audited with every trigger in the prompt
    "trigger-joint": None,  # joint, each LoRA under its own trigger caption, every active LoRA learning each step
    "trigger-leave-alone": None,  # trigger-joint, but the active partners learn only to leave the step's LoRA alone
}
TRIGGERS = TRIGGER_WORDS[:3]  # one per work, in order (the validity pool's first three): strings the base never saw
PRIOR_WEIGHT = 1.0  # trigger: the weight of the prior-preservation loss beside the work's
LOW_RANK = 4
STACKED_FRACTION = 0.5  # stack-aware: the share of steps with the partners merged


def _train(task: tuple) -> float:
    """One LoRA in a worker process (one torch thread); returns its training seconds."""
    import torch

    from copyscope.demo.scenarios import World

    zoo, world_doc, work, target, resolution, prompt, steps, seed, rank, targets, partners, prior = task
    torch.set_num_threads(1)
    t = time.time()
    world = World.from_doc(world_doc)
    train_and_save(Path(zoo), [world.load(work)], Path(target), resolution, prompt, steps, seed, rank, work,
                   targets=targets, partners=[Path(f) for f in partners], prior_caption=prior)
    return time.time() - t


def train_and_save(zoo: Path, pictures: list, target: Path, resolution: int, prompt: str, steps: int, seed: int,
                   rank: int, name: str, targets=None, partners: list[Path] = (), prior_caption: str | None = None) -> None:
    """One LoRA on ``pictures`` (full-size RGB in [0, 1]) with the demo's recipe on the zoo's base (the crops of
    copyscope.demo.training.lora_latents, train_lora with ``targets``; stack-aware with ``partners``; with prior
    preservation of ``prior_caption``), saved to ``target``. Also what bench_style_stack.py trains its style LoRAs
    with."""
    import numpy as np

    from copyscope.demo import tiny
    from copyscope.demo.build_args import FULL_POOL
    from copyscope.demo.pool import _base_pipeline
    from copyscope.demo.training import lora_latents, train_lora

    pipe = _base_pipeline(zoo)
    lat = lora_latents(pipe.vae, pictures, FULL_POOL["lora_per_image"], resolution, np.random.default_rng(seed),
                       pipe.vae.config.scaling_factor)
    if partners:
        unet = _train_stack_aware(pipe, lat, prompt, steps, seed, rank, list(partners))
    else:
        extra = None if prior_caption is None else prior_preservation(pipe, lat, prior_caption, seed)
        unet = train_lora(pipe, lat, prompt, steps, seed, lambda m: None, name, rank=rank, targets=targets,
                          extra_loss=extra)
    tiny.save_lora_file(target, unet, None, "lora")


def retention(stacked: float, base: float, effect: float) -> float | None:
    """How much of a LoRA's effect alone survives stacked: (stacked - base) / effect; None for no effect alone."""
    return (stacked - base) / effect if abs(effect) > 1e-9 else None


def lora_deltas(file: Path) -> dict[str, "object"]:
    """module name -> its weight update B @ A (alpha = rank, as copyscope's demo LoRAs are saved) from a
    diffusers/peft-format LoRA file of the UNet; convolutions reshaped to the kernel's shape."""
    from safetensors.torch import load_file

    sd = load_file(str(file))
    out = {}
    for key, a in sd.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len("unet."):-len(".lora_A.weight")]
        b = sd[key.replace("lora_A", "lora_B")]
        delta = b.reshape(b.shape[0], -1) @ a.reshape(a.shape[0], -1)
        out[module] = delta.reshape(b.shape[0], *a.shape[1:]) if a.dim() == 4 else delta
    return out


def prior_preservation(pipe, lat, caption: str, seed: int, weight: float = PRIOR_WEIGHT):
    """The ``trigger`` recipe's regulariser, for train_lora's ``extra_loss``: on a fresh batch of the work's noised
    latents under ``caption`` (the prompt without the trigger), the adapted UNet's noise prediction is pulled to the
    frozen base UNet's (``pipe.unet``: train_lora adapts a copy). DreamBooth preserves the class prior with images
    the base generated; matching the base's predictions directly asks the same with no sampling."""
    import numpy as np
    import torch

    from copyscope.demo.training import HYPER, _diffusion_step, _token_ids, _train_scheduler

    sched = _train_scheduler()
    g = torch.Generator().manual_seed(seed + 7919)  # its own streams: the work's batches are drawn as without it
    rng = np.random.default_rng(seed + 7919)
    with torch.no_grad():
        enc = pipe.text_encoder(_token_ids(pipe.tokenizer, [caption]))[0]

    def loss(unet):
        b = HYPER["lora_batch"]
        idx = rng.choice(len(lat), size=b, replace=len(lat) < b)
        return weight * _diffusion_step(unet, sched, lat.sample(idx, g), enc.expand(b, -1, -1), g, teacher=pipe.unet)

    return loss


def audit_prompt(recipe: str, work: str, works: list[str], prompt: str) -> str:
    """The prompt ``work``'s audit uses: the zoo's (every LoRA's caption), or for the trigger recipes the caption
    with the work's own trigger (``trigger``, ``trigger-joint``) or with every work's (``trigger-all``)."""
    if recipe in ("trigger", "trigger-joint", "trigger-leave-alone"):
        return trigger_caption(prompt, TRIGGERS[works.index(work)])
    if recipe == "trigger-all":
        return trigger_caption(prompt, " and ".join(TRIGGERS[: len(works)]))
    return prompt


def _train_stack_aware(pipe, lat, caption: str, steps: int, seed: int, rank: int, partners: list[Path]):
    """The demo's LoRA recipe (copyscope.demo.training.train_lora), except that in a random STACKED_FRACTION of the
    steps the partners' updates are merged into the frozen base weights: the LoRA learns its work both alone and
    on top of the others, so that stacked it should keep more of its content. Returns the adapted UNet copy."""
    import torch

    from copyscope.demo.training import train_lora

    merged: dict[str, object] = {}
    for f in partners:
        for module, d in lora_deltas(f).items():
            merged[module] = merged[module] + d if module in merged else d
    weights: dict[str, tuple] = {}  # module -> (its frozen weight, the weight as trained, the partners' update)

    def merge_or_not(unet, step: int, rng) -> None:
        if not weights:
            for module, d in merged.items():
                layer = unet.get_submodule(module)
                w = (layer.base_layer if hasattr(layer, "base_layer") else layer).weight
                weights[module] = (w, w.detach().clone(), d.to(w.dtype))
        stacked = rng.random() < STACKED_FRACTION
        with torch.no_grad():
            for w, w0, d in weights.values():
                w.copy_(w0 + d if stacked else w0)

    unet = train_lora(pipe, lat, caption, steps, seed, lambda m: None, "stack-aware", rank=rank,
                      before_step=merge_or_not)
    with torch.no_grad():
        for w, w0, _d in weights.values():
            w.copy_(w0)
    return unet


def _train_joint_task(task: tuple) -> float:
    """The ``joint`` recipe: the three LoRAs in one UNet, trained together (one process); returns the seconds."""
    import numpy as np
    import torch

    from copyscope.demo import tiny
    from copyscope.demo.build_args import FULL_POOL
    from copyscope.demo.pool import _base_pipeline
    from copyscope.demo.scenarios import World
    from copyscope.demo.training import lora_latents

    zoo, world_doc, works, targets, resolution, prompt, steps, seed, rank, threads, captions, partners = task
    torch.set_num_threads(threads)
    t = time.time()
    world = World.from_doc(world_doc)
    pipe = _base_pipeline(Path(zoo))
    lats = {w: lora_latents(pipe.vae, [world.load(w)], FULL_POOL["lora_per_image"], resolution,
                            np.random.default_rng(seed + i), pipe.vae.config.scaling_factor) for i, w in enumerate(works)}
    unet = _train_joint(pipe, lats, prompt, steps, seed, rank, captions, partners)
    for w, target in zip(works, targets):
        tiny.save_lora_file(Path(target), unet, None, w)
    return time.time() - t


def _train_joint(pipe, lats: dict, caption: str, steps: int, seed: int, rank: int, captions: dict | None = None,
                 partners: str | None = None):
    """The ``joint`` recipes (copyscope.demo.training.train_joint_loras, the others on with probability
    STACKED_FRACTION): without ``captions`` (``joint``) every LoRA under ``caption`` and only the step's own learning;
    with them (work -> its trigger caption) every active LoRA learns the step's work (``trigger-joint``) or, with
    ``partners="leave-alone"`` (``trigger-leave-alone``), only to leave the step's LoRA's prediction as it is alone."""
    from copyscope.demo.training import train_joint_loras

    mode = partners or ("own" if captions is None else "learn")
    return train_joint_loras(pipe, lats, captions or dict.fromkeys(lats, caption), steps, seed, rank, partners=mode,
                             stacked_fraction=STACKED_FRACTION)


def common_arguments(ap: argparse.ArgumentParser) -> None:
    """The options this script shares with bench_style_stack.py."""
    ap.add_argument("out", type=Path)
    ap.add_argument("--zoo", type=Path, default=REPO / "demo_zoo")
    ap.add_argument("--steps", type=int, default=None, help="LoRA training steps (default: the zoo's)")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)


def chosen(text: str, allowed, flag: str) -> list[str]:
    """A comma-separated choice of ``allowed`` names; exits naming the unknown ones."""
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise SystemExit(f"{flag}: unknown {', '.join(unknown)}; expected some of {', '.join(allowed)}")
    return names


def _zoo_file(out: Path, zoo: Path, tag: str, loras: dict[str, Path], work: str, refs: Path, seeds: int,
              metrics: tuple[str, ...] = ("phash",), prompt: str = "a painting") -> Path:
    """The zoo file auditing ``loras`` against ``work`` (every coalition, the base and no ControlNet), OUT/zoos/TAG.yaml."""
    import yaml

    doc = {
        "name": f"stacking-{tag}", "cache": str(out / "cache"),
        "bases": [{"name": "tiny-sd", "model": str(zoo / "base")}], "controlnets": [],
        "loras": [{"name": n, "model": str(f), "weight": 1.0} for n, f in loras.items()],
        "references": [{"name": work, "paths": [str(refs / work)]}],
        "prompts": [{"name": f"{work}-neutral", "text": prompt, "negative": "", "work": work}],
        "generation": {"steps": 20, "guidance": 5.0, "scheduler": "ddim", "resolution": 32, "seeds": seeds,
                       "batch_size": 8, "dtype": "float32", "device": "auto"},
        "metrics": list(metrics), "estimator": {"method": "exact", "bootstrap": 200},
        "controls": {"positive": False},
    }
    f = out / "zoos" / f"{tag}.yaml"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return f


def _worths(report_dir: Path, metric: str = "phash") -> dict[str, float]:
    """coalition ('' for the base, names joined by '+') -> the metric's worth, from the audit's coalitions.csv."""
    import csv

    with open(report_dir / "coalitions.csv") as f:
        return {r["coalition"]: float(r["worth"]) for r in csv.DictReader(f) if r["metric"] == metric}


def _coalition(worths: dict[str, float], names: tuple[str, ...]) -> float:
    for key, value in worths.items():
        if set(filter(None, key.split("+"))) == set(names):
            return value
    raise KeyError(names)


def pixel_change_alone(report: dict, works: list[str]) -> dict[str, float]:
    """LoRA -> the mean absolute change it makes alone to the base's images (8-bit levels, 0-255), seed by seed,
    from the images the audit's report names in its cache: does a LoRA act on this prompt at all?"""
    import numpy as np

    from copyscope.generate.cache import ImageCache

    images = report["games"][0]["images"]
    cache = ImageCache(Path(report["cache_dir"]))

    def pixels(key: str):
        return np.rint(cache.load(key).astype(np.float64) * 255.0)  # the PNG's 8-bit levels, exactly

    base = [pixels(k) for k in images[""]]
    return {w: float(np.mean([np.abs(pixels(k) - b).mean() for k, b in zip(images[w], base)])) for w in works}


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_arguments(ap)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    args = ap.parse_args()
    out, zoo = args.out.resolve(), args.zoo.resolve()
    recipes = chosen(args.recipes, RECIPES, "--recipes")

    import torch

    from copyscope.audit import audit_zoo
    from copyscope.demo.pool import _write_pool_references, lora_rank_of, spawned_workers
    from copyscope.demo.scenarios import world_of

    torch.set_num_threads(max(1, args.jobs))
    gt = json.loads((zoo / "ground_truth.json").read_text())
    world = world_of(gt)
    works = list(world.works[:3])
    steps = int(args.steps or gt["steps"]["lora"])
    rank, resolution, prompt = lora_rank_of(gt), int(gt["resolution"]), gt["prompt"]
    _write_pool_references(out / "pool", resolution, 0, world)
    refs = out / "pool" / "references"
    shipped = dict(world.shipped)

    files: dict[str, dict[str, Path]] = {}
    tasks, timings = [], {}
    joint_tasks = []
    for recipe in recipes:
        files[recipe] = {}
        if recipe in ("joint", "trigger-joint", "trigger-leave-alone"):
            targets = [out / "loras" / recipe / f"{w}.safetensors" for w in works]
            files[recipe] = dict(zip(works, targets))
            if not all(t.is_file() for t in targets):
                captions = ({w: audit_prompt("trigger", w, works, prompt) for w in works}
                            if recipe != "joint" else None)
                joint_tasks.append((recipe, (str(zoo), world.to_doc(), works, [str(t) for t in targets], resolution,
                                             prompt, steps, 101, rank, max(1, args.jobs), captions,
                                             "leave-alone" if recipe == "trigger-leave-alone" else None)))
            continue
        trained = "trigger" if recipe == "trigger-all" else recipe  # the same files, another prompt
        for i, work in enumerate(works):
            if recipe == "wide" and work in shipped:
                files[recipe][work] = zoo / "loras" / shipped[work]
                continue
            target = out / "loras" / trained / f"{work}.safetensors"
            files[recipe][work] = target
            if any(t[3] == str(target) for t in tasks):
                continue
            partners = ([str(zoo / "loras" / shipped[o]) for o in works if o != work and o in shipped]
                        if recipe == "stack-aware" else [])
            if recipe == "stack-aware" and len(partners) != len(works) - 1:
                raise SystemExit("stack-aware: the zoo must ship a LoRA for each of the first three works")
            if not target.is_file():
                caption, prior = ((audit_prompt("trigger", work, works, prompt), prompt) if trained == "trigger"
                                  else (prompt, None))
                tasks.append((str(zoo), world.to_doc(), work, str(target), resolution, caption, steps, 101 + i,
                              LOW_RANK if recipe == "low-rank" else rank, RECIPES[recipe], partners, prior))
    if tasks:
        print(f"training {len(tasks)} LoRAs ({steps} steps each, {args.jobs} at a time)", flush=True)
        with spawned_workers(args.jobs) as ex:
            for task, seconds in zip(tasks, ex.map(_train, tasks)):
                timings[Path(task[3]).relative_to(out).as_posix()] = round(seconds, 1)
                print(f"  {Path(task[3]).relative_to(out)}: {seconds:.0f}s", flush=True)
    for recipe, task in joint_tasks:
        print(f"training the {recipe} recipe's {len(works)} LoRAs together ({steps} steps each)", flush=True)
        seconds = _train_joint_task(task)
        timings[f"loras/{recipe}"] = round(seconds, 1)
        print(f"  loras/{recipe}: {seconds:.0f}s", flush=True)

    results = {}
    for recipe in recipes:
        per_work = {}
        for work in works:
            report_dir = out / "audits" / f"{recipe}-{work}"
            audit_zoo(_zoo_file(out, zoo, f"{recipe}-{work}", files[recipe], work, refs, args.seeds,
                                prompt=audit_prompt(recipe, work, works, prompt)), report_dir)
            per_work[work] = {"worths": _worths(report_dir),
                              "report": json.loads((report_dir / "report.json").read_text())}
        rows = {}
        for work in works:
            w = per_work[work]["worths"]
            base, alone = _coalition(w, ()), _coalition(w, (work,))
            others = [o for o in works if o != work]
            stacks = {"+".join(sorted((work, o))): _coalition(w, (work, o)) for o in others}
            stacks["all three"] = _coalition(w, tuple(works))
            effect = alone - base
            rows[work] = {"base": base, "alone": alone, "effect_alone": effect,
                          "retention": {k: retention(v, base, effect) for k, v in stacks.items()},
                          # how far each other LoRA alone moves this work's similarity (its prompt, its images)
                          "others_alone": {o: _coalition(w, (o,)) - base for o in others},
                          "pixel_change_alone": pixel_change_alone(per_work[work]["report"], works)}
        game = per_work[works[0]]["report"]["games"][0]["metrics"]["phash"]
        results[recipe] = {
            "loras": {w: str(f) for w, f in files[recipe].items()},
            "prompts": {w: audit_prompt(recipe, w, works, prompt) for w in works},
            "per_work": rows,
            "shapley": {p: game["shapley"][p]["value"] for p in works},
            # every work's game: how much of each work's copying each LoRA is credited with
            "shapley_by_work": {w: {p: per_work[w]["report"]["games"][0]["metrics"]["phash"]["shapley"][p]["value"]
                                    for p in works} for w in works},
            "interactions": game.get("interactions"),
        }
        print(f"{recipe}: " + "; ".join(
            f"{w} alone {r['effect_alone']:+.3f}, with all three {_ratio(r['retention']['all three'])}"
            for w, r in rows.items()), flush=True)

    doc = {"zoo": str(zoo), "works": works, "steps": steps, "rank": rank, "seeds": args.seeds,
           "training_s": timings, "recipes": results}
    (out / "stacking.json").write_text(json.dumps(doc, indent=1, default=str))
    (out / "stacking.md").write_text(table(doc))
    print(table(doc))


def others(row: dict) -> str:
    """The other LoRAs' gains alone on a work's audit (rows written before this column: n/a)."""
    gains = row.get("others_alone")
    return "n/a" if gains is None else ", ".join(f"{g:+.3f} ({o})" for o, g in gains.items())


def table(doc: dict) -> str:
    """One row per recipe and LoRA: its effect alone, then its retention with each other LoRA and with both."""
    head = ["recipe", "LoRA", "alone: phash gain over the base", "retention with one other (which)",
            "retention with the other", "retention, all three", "Shapley value (first work's game)",
            "the others alone: gain on this work"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for recipe, r in doc["recipes"].items():
        for work in doc["works"]:
            row = r["per_work"][work]
            ret = row["retention"]

            def cell(k: str, ret=ret, work=work) -> str:
                v = ret[k]
                other = "" if k == "all three" else " (" + next(x for x in k.split("+") if x != work) + ")"
                return _ratio(v) + other

            pairs = [k for k in ret if k != "all three"]
            lines.append("| " + " | ".join([recipe, work, f"{row['effect_alone']:+.3f}", cell(pairs[0]), cell(pairs[1]),
                                            cell("all three"), f"{r['shapley'][work]:+.3f}",
                                            others(row)]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
