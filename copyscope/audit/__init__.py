"""The audit: prepare -> plan -> generate (cached) -> score -> game -> estimate -> report.

:func:`run_audit` wires the stages for a :class:`~copyscope.audit.prepare.PreparedAudit`; each stage lives
in its own module. The call chain per game (``_run_games``): a ``CoalitionEngine`` and a
``CoalitionEvaluator`` are built, then :func:`copyscope.estimate.per_game.estimate_game` runs the estimator,
which asks the evaluator for the worths of the coalitions of its design; the evaluator generates
the missing images (cache first), scores them and returns worth rows. The results, plain data
(``GameResult``), go to :func:`copyscope.report.build_report`, which returns the typed audit result
(:class:`copyscope.results.AuditReport`, :func:`run_audit_report`). Written under the output folder:
``plan.json``, ``zoo.resolved.json``, ``report.json`` and its views; images and scores go to the
image cache (``cache/images``, ``cache/features``).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..common.files import atomic_write_text
from ..generate import CoalitionEngine, GenerationStats
from ..estimate.per_game import GameResult, estimate_game, fusion_members  # noqa: F401  (re-exported)
from ..game.evaluator import CoalitionEvaluator, seed_resamples
from ..common.outdir import OutputFolder, os_error_message
from .prepare import AUDIT_FILES, PreparedAudit, check_model_sources, prepare_audit, select_metrics  # noqa: F401
from ..results import AuditReport
from ..score.scorer import Scorer
from ..score.frames import video_frame_width
from ..controls.placebo_swap import run_swap_placebos, unswapped_coalitions, uses_swap

if TYPE_CHECKING:
    from ..generate import BackgroundQueue


@dataclass
class AuditHooks:
    """Callbacks the CLI uses for progress bars; all optional."""

    on_event: Callable[[str], None] = lambda msg: None
    on_generate: Callable[[int, int], None] | None = None  # (advance, add_total)
    on_score: Callable[[int, int], None] | None = None  # (advance, add_total)
    on_features: Callable[[int, int], None] | None = None  # (advance, add_total) images embedded by learned backbones


def audit_zoo(zoo_path: str | Path, out: str | Path | None = None, *, allow_pickle: bool = False,
              hooks: AuditHooks | None = None) -> dict:
    """``copyscope audit``: prepare (every check before anything is written), then run."""
    return run_audit(prepare_audit(zoo_path, out, allow_pickle), hooks=hooks)


def run_audit(
    prep: PreparedAudit,
    *,
    hooks: AuditHooks | None = None,
    generation_adjust: Callable[[dict], dict] | None = None,
) -> dict:
    """Run a prepared audit and write report.json and its views; return the report (report.json's content).

    ``generation_adjust`` rewrites the report's ``generation`` counts (a distributed run adds the
    images the other processes generated: copyscope.audit.distributed)."""
    return run_audit_report(prep, hooks=hooks, generation_adjust=generation_adjust).to_json()


def run_audit_report(
    prep: PreparedAudit,
    *,
    hooks: AuditHooks | None = None,
    generation_adjust: Callable[[dict], dict] | None = None,
) -> AuditReport:
    """:func:`run_audit`, returning the typed result (report.json is its ``to_json()``)."""
    from ..report import write_outputs

    if not isinstance(prep, PreparedAudit):  # the pre-0.2 signature run_audit(zoo_path, out)
        raise TypeError("run_audit takes a PreparedAudit (prepare_audit(zoo, out)); audit_zoo(zoo, out) prepares and runs")
    hooks = hooks or AuditHooks()
    t_start = time.perf_counter()
    folder = OutputFolder(prep.out_dir, where=prep.out_where)
    try:
        # the run's files are staged and moved in together at the end: an interrupted or failed
        # run leaves the previous report, its views and its plan.json as they were
        with folder.run(AUDIT_FILES, "audit") as stage:
            # --- adaptive seeds hook: rounds of seeds, each an ordinary _run_games ---
            from ..estimate.adaptive import adaptive_spec, run_adaptive

            if adaptive_spec(prep.zoo) is not None:
                # one engine per game for all the rounds: models load (and weights are hashed) once
                engines: dict[str, CoalitionEngine] = {}
                try:
                    report = run_adaptive(prep, lambda p: _run_games(p, hooks, generation_adjust, t_start, engines),
                                          hooks.on_event)
                finally:
                    for engine in engines.values():
                        engine.release()
            else:
                report = _run_games(prep, hooks, generation_adjust, t_start)
            write_outputs(report, stage, view_root=prep.out_dir)
            planned = [prep.coalitions(g) for g in prep.plan.games]
            atomic_write_text(stage / "plan.json", json.dumps(prep.plan.to_dict(planned), indent=2))
            atomic_write_text(stage / "zoo.resolved.json", json.dumps(prep.zoo.spec.model_dump(), indent=2))
    except OSError as exc:
        if _is_under(exc.filename, prep.out_dir, prep.cache.root):
            raise os_error_message(exc, "cache folder" if _is_under(exc.filename, prep.cache.root) else "output folder") from None
        raise
    return report


def _is_under(filename, *roots: Path) -> bool:
    if not filename:
        return False
    f = Path(str(filename)).absolute()
    return any(f == Path(r).absolute() or Path(r).absolute() in f.parents for r in roots)


def _run_games(prep: PreparedAudit, hooks: AuditHooks, generation_adjust: Callable[[dict], dict] | None, t_start: float,
               engines: dict[str, CoalitionEngine] | None = None) -> AuditReport:
    """One fixed-seed audit of ``prep``. ``engines`` (base name -> engine), when given, keeps each
    game's engine for the caller's next call (adaptive rounds) instead of releasing it here."""
    from ..report import build_report

    zoo, plan = prep.zoo, prep.plan
    conditioning = prep.conditioning.compute_all(hooks.on_event)  # before any generation
    est = zoo.spec.estimator
    # the replicate columns (leave-one-seed-out or bootstrap), shared by every coalition and game
    boot = seed_resamples(len(plan.seeds), est.intervals, est.bootstrap, est.seed)
    stats = GenerationStats()
    scorer = Scorer(prep.metrics, prep.cache, prep.refs, zoo.spec.aggregate, on_features=hooks.on_features,
                    background=prep.background, worth=zoo.spec.worth, frame_width=video_frame_width(zoo))
    games: list[GameResult] = []
    for game in plan.games:
        hooks.on_event(f"game: base {game.base.name} with {game.n_players} players")
        engine = (engines or {}).get(game.base.name)
        if engine is None:
            engine = CoalitionEngine(zoo, game, allow_pickle=prep.allow_pickle, on_event=hooks.on_event,
                                     conditioning=prep.conditioning)
            if engines is not None:
                engines[game.base.name] = engine
        switches_before = engine.switches
        queue = background_queue(scorer)
        evaluator = CoalitionEvaluator(
            game, engine, prep.cache, scorer, plan.items, len(plan.seeds), boot, stats, hooks.on_generate, hooks.on_score,
            resampling=est.intervals, queue=queue,
        )
        try:
            result = estimate_game(prep, game, evaluator, per_work=True, per_prompt=True)
            if uses_swap(zoo):  # controls.placebo: swap needs each LoRA's contexts without a placebo too
                add_coalitions(result, evaluator, unswapped_coalitions(game))
        finally:
            if queue is not None:
                queue.close(cancel=True)
        result.weights = engine.identities()
        if zoo.spec.controls.positive and prep.background is not None and engine.family.img2img is None:
            hooks.on_event(f"positive controls: none ({engine.family.title} has no img2img pipeline in diffusers)")
        elif zoo.spec.controls.positive and prep.background is not None:
            from ..controls.positive import background_view, run_positive_controls

            result.controls = run_positive_controls(engine, prep.cache, scorer, prep.refs, prep.background, zoo.spec.controls,
                                                    plan.items, est.confidence, hooks.on_event)
            # the view only: every coalition against the background (the headline rule never reads it)
            result.controls["background_view"] = background_view(scorer, result.image_keys, game.coalition_key)
        games.append(result)
        stats.switches += engine.switches - switches_before
        if engines is None:
            engine.release()
        if uses_swap(zoo):  # controls.placebo: swap (after the game's pipeline is released: one pipeline at a time)
            result.placebo_swap = run_swap_placebos(
                zoo, game, prep.cache, scorer, plan.items, len(plan.seeds), boot, stats, resampling=est.intervals,
                allow_pickle=prep.allow_pickle, conditioning=prep.conditioning, on_event=hooks.on_event,
                image_keys=result.image_keys, on_generate=hooks.on_generate)
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
        conditioning=conditioning,
    )
    report.output_dir = str(prep.out_dir)
    report.cache_dir = str(prep.cache.root.resolve())  # the HTML view reads generated images from here
    return report


def add_coalitions(result: GameResult, evaluator: CoalitionEvaluator, coalitions: list) -> None:
    """Evaluate ``coalitions`` the estimate did not ask for (generate, score) and add them to the game's result: the
    report lists them among the evaluated coalitions, and verify recomputes them from their images."""
    evaluator.prefetch(coalitions)
    for c in coalitions:
        for table, source in ((result.worths, evaluator.worths), (result.image_keys, evaluator.image_keys),
                              (result.flags, evaluator.flags), (result.set_results, evaluator.set_results)):
            if c not in table and c in source:
                table[c] = source[c]


def background_queue(scorer: Scorer) -> "BackgroundQueue | None":
    """The engine's background thread for an audit: PNG writes, then each finished coalition's
    scores into the feature cache, while the next coalition generates. The evaluator then reads
    those scores instead of computing them (same values: same function, same inputs; never
    concurrent with the evaluator's own scoring, since ``ensure_images`` waits for the thread
    before it returns). ``COPYSCOPE_BACKGROUND=0`` runs everything in the audit's thread."""
    import os

    from ..generate import BackgroundQueue

    if os.environ.get("COPYSCOPE_BACKGROUND", "1") == "0":
        return None

    def score(keys: list[str]) -> None:
        for metric in scorer.metrics.values():
            scorer.rows(metric, keys)

    return BackgroundQueue(on_coalition=score)


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
        "device": prep.device,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "seeds": prep.plan.seeds,
        "references": [
            {"work": w, "file": str(f), "sha256": s} for w, f, s in zip(prep.refs.work_of, prep.refs.files, prep.refs.sha256)
        ],
    }
