"""The audit: config -> plan -> generate (cached) -> score -> game -> estimate -> report.

``run_audit`` wires the stages together; each stage lives in its own module and writes its output
under the audit's output folder (``plan.json``, ``cache/``, ``scores.json``, ``report.json``).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .cache import ImageCache, atomic_write_text
from .conditioning import attach as attach_conditioning, maps_for
from .config import Zoo, load_zoo
from .engine import CoalitionEngine, GenerationStats, model_source, resolve_device
from .errors import CopyscopeError
from .inputs import check_image_file
from .game import CoalitionEvaluator, seed_resamples
from .outdir import OutputFolder, os_error_message
from .plan import Plan, make_plan
from .report import VIEW_FILES
from .score import ReferenceSet, Scorer


@dataclass
class AuditHooks:
    """Callbacks the CLI uses for progress bars; all optional."""

    on_event: Callable[[str], None] = lambda msg: None
    on_generate: Callable[[int, int], None] | None = None  # (advance, add_total)
    on_score: Callable[[int, int], None] | None = None  # (advance, add_total)
    on_features: Callable[[int, int], None] | None = None  # (advance, add_total) images embedded by learned backbones


@dataclass
class PreparedAudit:
    zoo: Zoo
    plan: Plan
    out_dir: Path
    cache: ImageCache
    metrics: list
    unavailable: dict[str, str]
    refs: ReferenceSet
    estimator: object = None
    info: dict = field(default_factory=dict)


def select_metrics(zoo: Zoo, allow_pickle: bool = False) -> tuple[list, dict[str, str]]:
    """Build the metrics of a zoo; drop unavailable defaults with their reason, but fail on an
    unavailable metric the user named explicitly."""
    from .metrics import DEFAULT_METRICS, build_metrics

    explicit = zoo.spec.metrics is not None
    if explicit and not zoo.spec.metrics:
        raise zoo.fail("lists no metric; name at least one (`copyscope metrics` lists them) or remove the key for the defaults",
                       "metrics")
    specs = zoo.spec.metrics if explicit else list(DEFAULT_METRICS)
    try:
        metrics = build_metrics(specs, zoo.spec.backbones, device=resolve_device(zoo.spec.generation.device), allow_pickle=allow_pickle)
    except CopyscopeError as exc:
        m = re.match(r"metrics\[(\d+)\]: (.*)", str(exc))  # "metrics[1]: unknown metric ..."
        if m and explicit:
            raise zoo.fail(m.group(2), "metrics", int(m.group(1))) from None
        raise CopyscopeError(str(exc), where=zoo.where("metrics")) from None
    ok, unavailable = [], {}
    for i, m in enumerate(metrics):
        available, reason = m.availability()
        if available:
            ok.append(m)
        elif explicit:
            raise zoo.fail(f"metric {m.name!r} is unavailable: {reason}", "metrics", i)
        else:
            unavailable[m.name] = reason
    if not ok:
        raise zoo.fail("no metric is available on this machine", "metrics")
    return ok, unavailable


def prepare_audit(
    zoo_path: str | Path, out: str | Path | None = None, allow_pickle: bool = False, strict_files: bool = True
) -> PreparedAudit:
    """Everything that can fail on bad input, done before anything is written.

    With ``strict_files=False`` (``validate`` and ``plan``), missing reference and conditioning
    images are collected in ``info["missing_files"]`` instead of failing, so a zoo file for hub
    models can be checked before its protected works are put in place.
    """
    from .engine import check_lora_fits
    from .file_checks import check_real_files
    from .shapley import get_estimator

    zoo = load_zoo(zoo_path)
    out_dir = Path(out) if out else zoo.output_dir
    if out_dir.exists() and not out_dir.is_dir():
        where = f"--out {out_dir}" if out else f"{zoo.where('output')}: {out_dir}"
        raise CopyscopeError("exists and is not a folder; expected an output folder", where=where)
    cache = ImageCache(zoo.cache_dir)
    if cache.root.exists() and not cache.root.is_dir():
        where = f"{zoo.where('cache')}: {cache.root}" if zoo.spec.cache else str(cache.root)
        raise CopyscopeError("exists and is not a folder; expected a cache folder", where=where)
    _check_generation_and_estimator(zoo)
    plan = make_plan(zoo)
    # model paths and pickle policy are checked now, not after an hour of generation
    check_model_sources(zoo, allow_pickle)
    offline_problems = check_real_files(zoo)  # single-file configs, variants, files in the wrong section
    check_lora_fits(zoo)
    missing: list[str] = []
    for problem in _uncached_hub_models(zoo) + offline_problems:
        if strict_files:
            raise problem
        missing.append(str(problem))
    for i, cn in enumerate(zoo.spec.controlnets):
        for path in _conditioning_files(zoo, cn):
            # a regular image file within the pixel limit: a bomb fails here, not after the models load
            what = check_image_file(zoo.resolve_path(path))
            if what is not None:
                problem = zoo.fail(f"conditioning image {path!r} {'' if what == 'not found' else 'is '}{what}", "controlnets", i, "conditioning")
                if strict_files or what != "not found":
                    raise problem
                missing.append(str(problem))
    try:  # computed conditioning maps: sources, detector weights, extras (copyscope.conditioning)
        attach_conditioning(zoo, out_dir, allow_pickle, resolve_device(zoo.spec.generation.device)).check()
    except CopyscopeError as problem:
        if strict_files or not re.search(r"not found|holds no images|not in the local Hugging Face cache", str(problem)):
            raise
        missing.append(str(problem))
    metrics, unavailable = select_metrics(zoo, allow_pickle)
    try:
        refs = ReferenceSet.from_zoo(zoo)
    except CopyscopeError as problem:
        if strict_files or not re.search(r"' (not found|holds no images)", str(problem)):
            raise
        missing.append(str(problem))
        refs = ReferenceSet([], [], [], [])
    est = zoo.spec.estimator
    if max(g.n_players for g in plan.games) == 0:
        raise zoo.fail("no players: list at least one LoRA, ControlNet or prompt player (or set estimator.base: player)",
                       "estimator")
    try:
        estimator = get_estimator(est.method, max(g.n_players for g in plan.games), est.budget)
    except CopyscopeError as exc:
        raise CopyscopeError(str(exc), where=zoo.where("estimator")) from None
    if not strict_files:  # validate / plan: say now what `audit` would refuse about its output folder
        try:
            OutputFolder(out_dir, where=f"{zoo.where('output')}: {out_dir}").claim(AUDIT_FILES)
        except CopyscopeError as problem:
            missing.append(str(problem))
    return PreparedAudit(zoo, plan, out_dir, cache, metrics, unavailable, refs, estimator, {"missing_files": missing})


MAX_IMAGES_PER_COALITION = 1_000_000
MAX_BOOTSTRAP_DRAWS = 50_000_000  # the (resamples, seeds) index table: 400 MB of int64


def _check_generation_and_estimator(zoo: Zoo) -> None:
    """Settings that would otherwise fail only after the models are loaded, or run for days."""
    from .engine import SCHEDULERS
    from .shapley.registry import AUTO_EXACT_MAX_PLAYERS

    s = zoo.spec
    if s.generation.scheduler is not None and s.generation.scheduler not in SCHEDULERS:
        raise zoo.fail(
            f"unknown scheduler {s.generation.scheduler!r}; expected one of {', '.join(sorted(SCHEDULERS))}",
            "generation", "scheduler",
        )
    n_seeds = len(s.generation.seed_list) if isinstance(s.generation.seeds, list) else s.generation.seeds
    if len(s.prompts) * n_seeds > MAX_IMAGES_PER_COALITION:
        raise zoo.fail(
            f"{len(s.prompts)} prompt(s) x {n_seeds} seed(s) = {len(s.prompts) * n_seeds} images per coalition; "
            f"expected at most {MAX_IMAGES_PER_COALITION}", "generation", "seeds",
        )
    if s.estimator.bootstrap * n_seeds > MAX_BOOTSTRAP_DRAWS:
        raise zoo.fail(
            f"{s.estimator.bootstrap} resamples x {n_seeds} seeds = {s.estimator.bootstrap * n_seeds} draws; expected at "
            f"most {MAX_BOOTSTRAP_DRAWS} (lower estimator.bootstrap)", "estimator", "bootstrap",
        )
    for i, base in enumerate(s.bases):
        limit = _train_timesteps(zoo, base.model)
        if s.generation.steps > limit:
            raise zoo.fail(
                f"{s.generation.steps} steps, but the scheduler of base {base.name!r} has {limit} timesteps; "
                f"expected at most {limit}", "generation", "steps",
            )
    from .players import KINDS

    # every registered player kind (ControlNets, LoRAs, prompt fragments, IP-Adapters, ...), plus the base
    n = sum(len(cls.specs(zoo)) for cls in KINDS.values()) + (1 if s.estimator.base == "player" else 0)
    if s.estimator.method == "exact" and s.estimator.budget is None and n > AUTO_EXACT_MAX_PLAYERS:
        raise zoo.fail(
            f"exact estimation of {n} players evaluates 2**{n} = {2**n} coalitions; set estimator.budget "
            f"(>= {2**n} to confirm exact, or smaller with method auto/kernelshap/permutation)",
            "estimator", "method",
        )


def _train_timesteps(zoo: Zoo, model: str) -> int:
    """num_train_timesteps of a local diffusers folder's scheduler config; 1000 (every Stable
    Diffusion scheduler's) where the config cannot be read without loading anything."""
    from .inputs import read_bounded

    folder = zoo.resolve_path(model)
    try:
        config = json.loads(read_bounded(folder / "scheduler" / "scheduler_config.json", 1 << 20, "scheduler config"))
        value = config.get("num_train_timesteps", 1000)
        return value if isinstance(value, int) and value > 0 else 1000
    except (CopyscopeError, ValueError, AttributeError):
        return 1000


def _uncached_hub_models(zoo: Zoo) -> list[CopyscopeError]:
    """With HF_HUB_OFFLINE set, hub ids missing from the local cache (checked before loading anything)."""
    import os

    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() not in {"1", "ON", "YES", "TRUE"}:
        try:
            from huggingface_hub import constants

            if not constants.HF_HUB_OFFLINE:
                return []
        except ImportError:
            return []
    from huggingface_hub import snapshot_download

    problems = []
    for section, i, spec in _zoo_models(zoo):
        if zoo.is_local(spec.model):
            continue
        try:
            snapshot_download(spec.model, revision=spec.revision, local_files_only=True)
        except Exception:  # LocalEntryNotFoundError, invalid repo id, ...
            problems.append(zoo.fail(
                f"hub model {spec.model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                f"download it first (huggingface-cli download {spec.model}) or point 'model' at a local copy",
                section, i, "model",
            ))
    return problems


def check_model_sources(zoo: Zoo, allow_pickle: bool) -> None:
    """Every model of the zoo resolves (local path or hub id) and obeys the pickle policy."""
    for section, i, spec in _zoo_models(zoo):
        model_source(zoo, spec.model, spec.revision, (section, i), allow_pickle)


def _zoo_models(zoo: Zoo):
    """(section, index, spec) of every model of a zoo: bases, then LoRAs, then ControlNets, then the
    other player kinds with model files (copyscope.players)."""
    from .players import KINDS

    sections = ["bases", "loras", "controlnets"]
    sections += [k.section for k in KINDS.values() if k.has_model and k.section not in sections]
    for section in sections:
        for i, spec in enumerate(getattr(zoo.spec, section)):
            yield section, i, spec


def _conditioning_files(zoo: Zoo, cn) -> list[str]:
    c = cn.conditioning
    if c.detector is not None:  # computed from a work or image: checked by ConditioningMaps.check
        return []
    return [c.image] if c.image is not None else list((c.per_prompt or c.per_work).values())


def run_audit(
    zoo_path: str | Path,
    out: str | Path | None = None,
    *,
    allow_pickle: bool = False,
    hooks: AuditHooks | None = None,
    generation_adjust: Callable[[dict], dict] | None = None,
    prep: PreparedAudit | None = None,
) -> dict:
    """Run a whole audit and write report.json; return the report.

    ``generation_adjust`` rewrites the report's ``generation`` counts (a distributed run adds the
    images the other processes generated: copyscope.distributed). ``prep``: the caller's own
    ``prepare_audit`` of the same arguments, so that it is not done twice."""
    from .report import write_outputs

    hooks = hooks or AuditHooks()
    t_start = time.perf_counter()
    if prep is None:
        prep = prepare_audit(zoo_path, out, allow_pickle)
    folder = OutputFolder(prep.out_dir, where=f"--out {prep.out_dir}" if out else f"{prep.zoo.where('output')}: {prep.out_dir}")
    try:
        # the run's files are staged and moved in together at the end: an interrupted or failed
        # run leaves the previous report, its views and its plan.json as they were
        with folder.run(AUDIT_FILES, "audit") as stage:
            report = _run_games(prep, hooks, generation_adjust, t_start, allow_pickle)
            write_outputs(report, stage, view_root=prep.out_dir)
            atomic_write_text(stage / "plan.json", json.dumps(prep.plan.to_dict(), indent=2))
            atomic_write_text(stage / "zoo.resolved.json", json.dumps(prep.zoo.spec.model_dump(), indent=2))
    except OSError as exc:
        if _is_under(exc.filename, prep.out_dir, prep.cache.root):
            raise os_error_message(exc, "cache folder" if _is_under(exc.filename, prep.cache.root) else "output folder") from None
        raise
    return report


AUDIT_FILES = ["report.json", *VIEW_FILES, "plan.json", "zoo.resolved.json"]


def _is_under(filename, *roots: Path) -> bool:
    if not filename:
        return False
    f = Path(str(filename)).absolute()
    return any(f == Path(r).absolute() or Path(r).absolute() in f.parents for r in roots)


def _run_games(prep: PreparedAudit, hooks: AuditHooks, generation_adjust, t_start: float, allow_pickle: bool) -> dict:
    from .report import build_report

    zoo, plan = prep.zoo, prep.plan
    prep.info["conditioning"] = maps_for(zoo).compute_all(hooks.on_event)  # before any generation
    est = zoo.spec.estimator
    boot = seed_resamples(len(plan.seeds), est.intervals, est.bootstrap, est.seed)
    stats = GenerationStats()
    scorer = Scorer(prep.metrics, prep.cache, prep.refs, zoo.spec.aggregate, on_features=hooks.on_features)
    games = []
    for game in plan.games:
        hooks.on_event(f"game: base {game.base.name} with {game.n_players} players")
        engine = CoalitionEngine(zoo, game, allow_pickle=allow_pickle, on_event=hooks.on_event)
        evaluator = CoalitionEvaluator(
            game, engine, prep.cache, scorer, plan.items, len(plan.seeds), boot, stats, hooks.on_generate, hooks.on_score,
            resampling=est.intervals,
        )
        engine.background = background_queue(scorer)
        try:
            games.append(estimate_game(prep, game, evaluator, per_work=True))
        finally:
            if engine.background is not None:
                engine.background.close(cancel=True)
        stats.switches += engine.switches
        engine.release()
    report = build_report(
        prep,
        games,
        generation=(generation_adjust or (lambda g: g))({
            "generated": stats.generated,
            "cached": stats.cached,
            "seconds": round(stats.seconds, 3),
            "adapter_switches": stats.switches,
        }),
        provenance=provenance(prep, time.perf_counter() - t_start),
    )
    report["output_dir"] = str(prep.out_dir)
    report["cache_dir"] = str(prep.cache.root.resolve())  # the HTML view reads generated images from here
    return report


def background_queue(scorer: Scorer) -> "BackgroundQueue | None":
    """The engine's background thread for an audit: PNG writes, then each finished coalition's
    scores into the feature cache, while the next coalition generates. The evaluator then reads
    those scores instead of computing them (same values: same function, same inputs; never
    concurrent with the evaluator's own scoring, since ``ensure_images`` waits for the thread
    before it returns). ``COPYSCOPE_BACKGROUND=0`` runs everything in the audit's thread."""
    import os

    from .engine import BackgroundQueue

    if os.environ.get("COPYSCOPE_BACKGROUND", "1") == "0":
        return None

    def score(keys: list[str]) -> None:
        for metric in scorer.metrics.values():
            scorer.rows(metric, keys)

    return BackgroundQueue(on_coalition=score)


class _NotFinite(Exception):
    """A metric's worth is NaN/inf for some coalition: that metric is skipped, not the audit."""


def estimate_game(prep: PreparedAudit, game, evaluator: CoalitionEvaluator, per_work: bool = False) -> dict:
    """Run the estimators on every metric of one game; return the game's report section.

    ``per_work``: with several works, also one game per work (``run_audit`` asks for it; the
    coalition-planning and ablation callers do not need it: it evaluates no other coalitions)."""
    from .metrics import fusion
    from .shapley import ExactBanzhaf, Game, LeaveOneOut, efficiency_gap

    est = prep.zoo.spec.estimator
    estimator = prep.estimator
    n = game.n_players
    results: dict[str, dict] = {}
    names = [m.name for m in prep.metrics]

    resampling = getattr(evaluator, "resampling", "bootstrap")

    def inference_settings(estimate, g: Game):
        """What the replicate columns are, and what counts as zero at the worths' scale."""
        estimate.resampling = resampling
        worths = np.stack(list(g.values_table().values()))
        estimate.zero_tol = 1e-10 * max(float(np.abs(worths).max()), 1e-300)
        return estimate

    def run(value_function) -> dict:
        g = Game(n, value_function, player_names=game.names)
        estimate = inference_settings(estimator.estimate(g, budget=est.budget, seed=est.seed), g)
        out = {"estimate": estimate, "game": g}
        # LOO and Banzhaf are reported beside Shapley only from coalitions already evaluated:
        # they must not spend generation beyond the estimator's budget.
        known = set(g.values_table())
        loo_needs = {tuple([True] * n)} | {tuple(j != i for j in range(n)) for i in range(n)}
        if loo_needs <= known:
            out["loo"] = inference_settings(LeaveOneOut().estimate(g, seed=est.seed), g)
        if g.n_evaluated >= 2**n:
            out["banzhaf"] = inference_settings(ExactBanzhaf().estimate(g, seed=est.seed), g)
        out["efficiency_gap"] = efficiency_gap(estimate, g)
        return out

    def metric_values(C, name):
        values = evaluator.values(C, name)
        if not np.isfinite(values).all():
            raise _NotFinite  # checked here, before the Game sees it, so the audit goes on
        return values

    skipped: dict[str, str] = {}
    for name in names:
        try:
            results[name] = run(lambda C, name=name: metric_values(C, name))
        except _NotFinite:
            # e.g. KID with a single reference image: undefined, so it attributes nothing
            reasons = {r.warning for res in evaluator.set_results.values() if (r := res.get(name)) is not None and r.warning}
            skipped[name] = "not finite for this audit" + (f" ({'; '.join(sorted(reasons))})" if reasons else "")
    names = [n for n in names if n not in skipped]

    # Fusion: mean of per-metric z-scores across the evaluated coalitions (documented in metrics).
    coalitions = list(evaluator.worths)
    if len(coalitions) > 1 and len(names) > 1:
        table = _fused_table(fusion, {c: evaluator.worths[c] for c in coalitions}, fusion_members(names))
        results["fusion"] = run(_table_values(table))
        for c in coalitions:
            evaluator.worths[c]["fusion"] = table[c]

    # Per-work attribution: with several works, one game per work (its prompts against its references),
    # so that "which component copies which work" is not lost in the average over works.
    work_results: dict[str, dict] = {}
    works = prep.refs.works
    if per_work and len(works) > 1:
        for w in works:
            res_w: dict[str, dict] = {}
            for name in names:
                def work_values(C, name=name, w=w):
                    values = evaluator.work_values(C, name, w)
                    if not np.isfinite(values).all():
                        raise _NotFinite
                    return values

                try:
                    res_w[name] = run(work_values)
                except _NotFinite:
                    continue
            used = [n for n in names if n in res_w]
            if len(coalitions) > 1 and len(used) > 1:
                rows = {c: {m: evaluator.work_worths[c][(m, w)] for m in used} for c in coalitions}
                res_w["fusion"] = run(_table_values(_fused_table(fusion, rows, fusion_members(used))))
            work_results[w] = res_w
    return {"game": game, "evaluator": evaluator, "results": results, "skipped": skipped, "per_work": work_results}


def fusion_members(names: list[str]) -> list[str]:
    """The metrics the fusion fuses: those of ``names`` the validity benchmark found sound
    (``FUSION_METRICS``), or every one of ``names`` when fewer than two of those were computed."""
    from .metrics.registry import FUSION_METRICS

    sound = [n for n in names if n in FUSION_METRICS]
    return sound if len(sound) > 1 else list(names)


def _fused_table(fusion, worths: dict, names: list[str]) -> dict:
    """coalition -> fused worth row, from coalition -> {metric: worth row}."""
    coalitions = list(worths)

    def stacked(m: str) -> np.ndarray:
        w = np.stack([worths[c][m] for c in coalitions])
        # a metric without replicates (one column) enters every replicate column with its full-seed worth
        return w[:, 0] if w.shape[1] == 1 else w

    fused = fusion({m: stacked(m) for m in names})
    return {c: fused[i] for i, c in enumerate(coalitions)}


def _table_values(table: dict):
    """A value function reading a fixed coalition -> worth table (fusion needs every metric evaluated first)."""

    def values(C):
        rows = [tuple(bool(x) for x in r) for r in np.asarray(C, dtype=bool)]
        if any(r not in table for r in rows):
            raise RuntimeError("fusion asked for a coalition no metric evaluated")  # estimators are seeded alike
        return np.stack([table[r] for r in rows])

    return values


def provenance(prep: PreparedAudit, seconds: float) -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "diffusers", "transformers", "peft", "numpy", "scipy", "scikit-image", "accelerate"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "zoo_file": str(prep.zoo.path),
        "zoo_text": prep.zoo.text,
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(seconds, 3),
        "device": resolve_device(prep.zoo.spec.generation.device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "seeds": prep.plan.seeds,
        "references": [
            {"work": w, "file": str(f), "sha256": s} for w, f, s in zip(prep.refs.work_of, prep.refs.files, prep.refs.sha256)
        ],
    }
