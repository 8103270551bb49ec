"""Stage 0 — prepare: everything that can fail on bad input, done before anything is written.

:func:`prepare_audit` loads the zoo, resolves once what every later stage uses (the output folder,
the image cache, the device, the metrics, the reference works, the estimator) and checks model
paths, pickle policy, files, settings; the result is a :class:`PreparedAudit`, the input of
:func:`copyscope.audit.run_audit` and of the analyses (copyscope.analyses).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..generate.cache import ImageCache
from ..conditioning import ConditioningMaps
from ..config import Zoo, load_zoo
from ..common.errors import CopyscopeError
from ..generate import resolve_device
from ..modelfiles.sources import model_source
from ..common.inputs import check_image_file
from ..common.outdir import OutputFolder, resolve_output
from ..plan.games import GamePlan, Plan, make_plan, planned_coalitions
from ..report import VIEW_FILES
from ..score.scorer import ReferenceSet

if TYPE_CHECKING:
    from ..controls.background import BackgroundSet
    from ..score.metrics.base import Metric
    from ..estimate.shapley.base import Estimator

AUDIT_FILES = ["report.json", *VIEW_FILES, "plan.json", "zoo.resolved.json"]


@dataclass
class PreparedAudit:
    """A checked audit, with everything the stages share resolved once."""

    zoo: Zoo
    plan: Plan
    out_dir: Path
    cache: ImageCache
    metrics: list[Metric]
    unavailable: dict[str, str]  # default metrics this machine lacks: name -> why
    refs: ReferenceSet
    estimator: Estimator | None = None  # None only for a PreparedAudit built by hand
    device: str = "cpu"  # resolve_device(generation.device)
    allow_pickle: bool = False
    out_where: str = ""  # how errors name the output folder: "--out DIR" or "zoo.yaml:3: output: DIR"
    missing_files: list[str] = field(default_factory=list)  # validate / plan only (strict_files=False)
    background: BackgroundSet | None = None  # the background set (specific worth, positive controls)
    conditioning: ConditioningMaps | None = None  # the computed ControlNet maps, in <output>/conditioning

    def coalitions(self, game: GamePlan) -> list[tuple[bool, ...]]:
        """The coalitions the audit evaluates for ``game``, in generation order (plan.json lists them)."""
        est = self.zoo.spec.estimator
        return planned_coalitions(game.n_players, self.estimator, est.budget, est.seed)


def open_cache(zoo: Zoo) -> ImageCache:
    """The zoo's image cache (its ``cache:``, else the shared one), refused if a file stands there."""
    cache = ImageCache(zoo.cache_dir)
    if cache.root.exists() and not cache.root.is_dir():
        where = f"{zoo.where('cache')}: {cache.root}" if zoo.spec.cache else str(cache.root)
        raise CopyscopeError("exists and is not a folder; expected a cache folder", where=where)
    return cache


def select_metrics(zoo: Zoo, allow_pickle: bool = False, device: str | None = None) -> tuple[list[Metric], dict[str, str]]:
    """Build the metrics of a zoo; drop unavailable defaults with their reason, but fail on an
    unavailable metric the user named explicitly."""
    from ..score.frames import video_frame_width
    from ..score.metrics import DEFAULT_METRICS, build_metrics

    explicit = zoo.spec.metrics is not None
    if explicit and not zoo.spec.metrics:
        raise zoo.fail("lists no metric; name at least one (`copyscope metrics` lists them) or remove the key for the defaults",
                       "metrics")
    specs = zoo.spec.metrics if explicit else list(DEFAULT_METRICS)
    try:
        metrics = build_metrics(specs, zoo.spec.backbones, device=device or resolve_device(zoo.spec.generation.device),
                                allow_pickle=allow_pickle)
    except CopyscopeError as exc:
        m = re.match(r"metrics\[(\d+)\]: (.*)", str(exc))  # "metrics[1]: unknown metric ..."
        if m and explicit:
            raise zoo.fail(m.group(2), "metrics", int(m.group(1))) from None
        raise CopyscopeError(str(exc), where=zoo.where("metrics")) from None
    ok, unavailable = [], {}
    video = not explicit and video_frame_width(zoo) is not None
    for i, m in enumerate(metrics):
        if video and m.kind != "per_image":  # named explicitly, refused (players.check_player_families)
            unavailable[m.name] = "a set metric, not defined for videos yet (docs/metrics.md \"Videos\")"
            continue
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
    images are collected in ``missing_files`` instead of failing, so a zoo file for hub
    models can be checked before its protected works are put in place.
    """
    from ..players import check_lora_fits
    from ..modelfiles.file_checks import check_real_files
    from ..estimate.shapley import get_estimator

    zoo = load_zoo(zoo_path)
    out_dir, out_where = resolve_output(zoo, out)
    cache = open_cache(zoo)
    device = resolve_device(zoo.spec.generation.device)
    missing: list[str] = []
    _add_placebo(zoo, cache, strict_files, missing)
    _check_generation_and_estimator(zoo)
    plan = make_plan(zoo)
    # model paths and pickle policy are checked now, not after an hour of generation
    check_model_sources(zoo, allow_pickle)
    offline_problems = check_real_files(zoo)  # single-file configs, variants, files in the wrong section
    check_lora_fits(zoo)
    from ..generate.memory import memory_problems

    # the memory plan against this machine: validate / plan note it (the audit may run on another machine)
    for problem in memory_problems(zoo.spec.generation.memory, device, zoo.where):
        if strict_files:
            raise problem
        missing.append(str(problem))
    for problem in _uncached_hub_models(zoo) + offline_problems:
        if strict_files:
            raise problem
        missing.append(str(problem))
    for i, cn in enumerate(zoo.spec.controlnets):
        for path in _conditioning_files(zoo, cn):
            # a regular image file within the pixel limit: a bomb fails here, not after the models load
            what = check_image_file(zoo.resolve_path(path))
            if what is not None:
                problem = zoo.fail(f"conditioning image {path!r} {'' if what == 'not found' else 'is '}{what}",
                                   "controlnets", i, "conditioning")
                if strict_files or what != "not found":
                    raise problem
                missing.append(str(problem))
    conditioning = ConditioningMaps(zoo, out_dir / "conditioning", allow_pickle, device)
    try:  # computed conditioning maps: sources, detector weights, extras (copyscope.conditioning)
        conditioning.check()
    except CopyscopeError as problem:
        if strict_files or not re.search(r"not found|holds no images|not in the local Hugging Face cache", str(problem)):
            raise
        missing.append(str(problem))
    if strict_files and device.startswith("cuda"):  # the memory estimate against the free memory, before any load
        _check_gpu_memory(zoo, plan, device)
    metrics, unavailable = select_metrics(zoo, allow_pickle, device)
    try:
        refs = ReferenceSet.from_zoo(zoo)
    except CopyscopeError as problem:
        if strict_files or not re.search(r"' (not found|holds no images)", str(problem)):
            raise
        missing.append(str(problem))
        refs = ReferenceSet([], [], [], [])
    background = None
    if (zoo.spec.worth != "raw" or zoo.spec.controls.positive) and refs.images:
        from ..controls.background import background_from_zoo

        background = background_from_zoo(zoo, refs.images)
    est = zoo.spec.estimator
    if plan.n_players == 0:
        raise zoo.fail("no players: list at least one LoRA, ControlNet or prompt player (or set estimator.base: player)",
                       "estimator")
    try:
        estimator = get_estimator(est.method, plan.n_players, est.budget)
    except CopyscopeError as exc:
        raise CopyscopeError(str(exc), where=zoo.where("estimator")) from None
    from ..estimate.adaptive import (
        check_adaptive,  # adaptive seeds: refuse unsupported combinations now
    )

    check_adaptive(zoo, estimator)
    if not strict_files:  # validate / plan: say now what `audit` would refuse about its output folder
        try:
            OutputFolder(out_dir, where=out_where).claim(AUDIT_FILES)
        except CopyscopeError as problem:
            missing.append(str(problem))
    return PreparedAudit(zoo, plan, out_dir, cache, metrics, unavailable, refs, estimator, device=device,
                         allow_pickle=allow_pickle, out_where=out_where, missing_files=missing, background=background,
                         conditioning=conditioning)


def _check_gpu_memory(zoo: Zoo, plan: Plan, device: str) -> None:
    import torch

    from ..plan.memory import check_fits

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    for game in plan.games:
        check_fits(zoo, game, float(free), device)


def _add_placebo(zoo: Zoo, cache: ImageCache, strict_files: bool, missing: list[str]) -> None:
    """``controls.placebo``: the placebo LoRA player (copyscope.controls.placebo) or every LoRA's own placebo
    (``swap``: copyscope.controls.placebo_swap), before the plan is built. For
    validate / plan, a source file not here yet is noted (a local one is then refused as any missing model is)."""
    from ..controls.placebo import add_placebo_player
    from ..controls.placebo_swap import prepare_swap_placebos

    try:
        add_placebo_player(zoo, cache.root)
        prepare_swap_placebos(zoo, cache.root)  # controls.placebo: swap: every LoRA's own placebo
    except CopyscopeError as problem:
        if strict_files or not re.search(r"not found|not in the local Hugging Face cache", str(problem)):
            raise
        missing.append(str(problem))


MAX_IMAGES_PER_COALITION = 1_000_000
MAX_BOOTSTRAP_DRAWS = 50_000_000  # the (resamples, seeds) index table: 400 MB of int64


def check_generation(zoo: Zoo) -> None:
    """Generation settings that would otherwise fail only after the models are loaded (the audit's
    and every analysis's): steps within every base's scheduler (the scheduler's name is checked by the
    schema, config.GenerationSpec)."""
    s = zoo.spec
    for base in s.bases:
        limit = _train_timesteps(zoo, base.model)
        if s.generation.steps > limit:
            raise zoo.fail(
                f"{s.generation.steps} steps, but the scheduler of base {base.name!r} has {limit} timesteps; "
                f"expected at most {limit}", "generation", "steps",
            )


def _check_generation_and_estimator(zoo: Zoo) -> None:
    """Settings that would otherwise fail only after the models are loaded, or run for days."""
    from ..estimate.shapley.registry import AUTO_EXACT_MAX_PLAYERS

    check_generation(zoo)
    s = zoo.spec
    n_seeds = len(s.generation.seed_list)  # adaptive seeds: their max
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
    from ..plan.games import player_count

    n = player_count(zoo)  # every registered player kind (ControlNets, LoRAs, prompt fragments, ...), plus the base
    if s.estimator.method == "exact" and s.estimator.budget is None and n > AUTO_EXACT_MAX_PLAYERS:
        raise zoo.fail(
            f"exact estimation of {n} players evaluates 2**{n} = {2**n} coalitions; set estimator.budget "
            f"(>= {2**n} to confirm exact, or smaller with method auto/kernelshap/permutation)",
            "estimator", "method",
        )


def _train_timesteps(zoo: Zoo, model: str) -> int:
    """num_train_timesteps of a local diffusers folder's scheduler config; 1000 (every Stable
    Diffusion scheduler's) where the config cannot be read without loading anything."""
    from ..common.inputs import read_bounded

    folder = zoo.resolve_path(model)
    try:
        config = json.loads(read_bounded(folder / "scheduler" / "scheduler_config.json", 1 << 20, "scheduler config"))
        value = config.get("num_train_timesteps", 1000)
        return value if isinstance(value, int) and value > 0 else 1000
    except (CopyscopeError, ValueError, AttributeError):
        return 1000


def _uncached_hub_models(zoo: Zoo) -> list[CopyscopeError]:
    """With HF_HUB_OFFLINE set, hub ids missing from the local cache (checked before loading anything)."""
    from ..modelfiles.sources import cached_snapshot, hub_offline

    if not hub_offline():
        return []
    problems = []
    for section, i, spec in _zoo_models(zoo):
        if zoo.is_local(spec.model):
            continue
        if cached_snapshot(spec.model, spec.revision) is None:
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
    from ..players import KINDS

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


def write_maps(zoo_path, out: Path | None = None, allow_pickle: bool = False,
               on_event: Callable[[str], None] = lambda msg: None) -> list[dict]:
    """``copyscope conditioning ZOO``: check the zoo as an audit would, then compute every map into
    ``<output>/conditioning``: the output folder must be one the audit may write (new, empty or
    copyscope's: copyscope.common.outdir), and its ``conditioning/`` a real folder."""
    from ..common.outdir import os_error_message

    prep = prepare_audit(zoo_path, out, allow_pickle)
    OutputFolder(prep.out_dir, where=prep.out_where).claim([])
    try:
        return prep.conditioning.compute_all(on_event)
    except OSError as exc:
        raise os_error_message(exc) from None
