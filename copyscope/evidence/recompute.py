"""Recomputing an audit's numbers from its bundle alone: no model, no generation, no GPU.

The audit's own code runs on the bundled files, as ``copyscope ablate`` reruns it on cached images: the zoo file as
audited (``audit/zoo.yaml``, with the placebo player of ``audit/zoo.resolved.json``, and checked against that file)
with its reference (and background) paths pointed at the bundled copies; the plan from ``audit/plan.json`` (on the
report's seeds: adaptive seeds stop early); the metrics the report used that need no weights (pixel, hash and SSIM
metrics, ``kid_pixels``, ``fd_pixels``); an :class:`~copyscope.generate.cache.ImageCache` on the bundle's ``images/``
with no stored score, so every score is computed from the PNGs; per game
:meth:`~copyscope.game.evaluator.CoalitionEvaluator.from_cached` over report.json's image keys,
:func:`~copyscope.estimate.per_game.estimate_game` with the zoo's estimator and seed resamples, and
:func:`~copyscope.report.build.build_report`, whose games are then compared with report.json's
(copyscope.evidence.compare).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..common.errors import CopyscopeError
from ..results import AuditReport
from .audited import audited_zoo, listed_images, plan_from_json, resolved_differences
from .compare import Comparison, compare_games
from .manifest import AUDIT, ZOO_COPY

if TYPE_CHECKING:
    from ..config import Zoo
    from ..controls.background import BackgroundSet
    from ..estimate.shapley.base import Estimator
    from ..plan.games import Plan
    from ..score.metrics.base import Metric
    from ..score.scorer import ReferenceSet


@dataclass
class Inputs:
    """What estimate_game and build_report read of a prepared audit, rebuilt from a bundle."""

    zoo: Zoo
    plan: Plan
    metrics: list[Metric]
    refs: ReferenceSet
    background: BackgroundSet | None
    unavailable: dict[str, str]
    estimator: Estimator


@dataclass
class Recomputed:
    comparison: Comparison | None = None
    left_out: dict[str, str] = field(default_factory=dict)  # metric -> why it was not recomputed
    problems: list[str] = field(default_factory=list)  # mismatches found on the way (not value comparisons)
    metrics: list[str] = field(default_factory=list)
    games: int = 0
    coalitions: int = 0
    images: int = 0


def bundled_zoo(root: Path, manifest: dict) -> tuple[Zoo, list[str]]:
    """The audited zoo (the bundled zoo file, the placebo player of ``zoo.resolved.json``) with its reference works and
    background files read from the bundle; and the keys where it is not what ``zoo.resolved.json`` records."""
    text = (root / ZOO_COPY).read_bytes().decode("utf-8", errors="replace")
    zoo = audited_zoo(text, root / ZOO_COPY, root / AUDIT / "zoo.resolved.json")
    differ = resolved_differences(zoo, root / AUDIT / "zoo.resolved.json")
    files = manifest["files"]
    by_work: dict[str, list[str]] = {}
    for r in manifest.get("references", []):
        if not isinstance(r, dict) or r.get("file") not in files:
            raise CopyscopeError(f"manifest.json: reference entry {r!r} names no bundled file")
        by_work.setdefault(str(r.get("work")), []).append(str(root / r["file"]))
    references = []
    for ref in zoo.spec.references:
        if ref.name not in by_work:
            raise CopyscopeError(f"the bundle holds no reference file of work {ref.name!r}")
        references.append(ref.model_copy(update={"paths": by_work[ref.name]}))
    background = [str(root / b["file"]) for b in manifest.get("background", []) if isinstance(b, dict) and b.get("file") in files]
    spec = zoo.spec.model_copy(update={"references": references,
                                       "background": zoo.spec.background.model_copy(update={"paths": background})})
    zoo.spec = spec
    return zoo, differ


def weight_free_metrics(specs: Sequence, backbones: dict, reported: set[str]) -> tuple[list[Metric], dict[str, str]]:
    """The metrics of ``specs`` the report has a section (or a skip) for, built as the audit built them; those whose
    features come from a learned backbone are left out, with why (the bundle carries no weights)."""
    from ..score.metrics import build_metrics
    from ..score.scorer import learned_backbones

    metrics, left_out = [], {}
    for spec in specs:
        name = spec if isinstance(spec, str) else str(spec.get("name"))
        try:
            (m,) = build_metrics([spec], backbones, device="cpu")
        except CopyscopeError as exc:
            if name in reported:
                left_out[name] = f"cannot be built here ({exc})"
            continue
        if m.name not in reported:  # unavailable where the audit ran: the report has nothing of it
            continue
        learned = learned_backbones([m])
        if learned:
            left_out[m.name] = (f"its features come from the learned {getattr(learned[0], 'key', 'model')} backbone, whose "
                                "weights the bundle does not carry")
            continue
        ok, why = m.availability()
        if not ok:
            left_out[m.name] = f"unavailable here: {why}"
            continue
        metrics.append(m)
    return metrics, left_out


def recompute(root: Path, manifest: dict, report: AuditReport) -> Recomputed:
    """Recompute every game of ``report`` from the bundle extracted at ``root`` and compare."""
    out = Recomputed()
    try:
        _recompute(root, manifest, report, out)
    except CopyscopeError as exc:
        out.problems.append(f"recompute: {' '.join(str(exc).split())}")
    except Exception as exc:  # noqa: BLE001 - a damaged bundled image or file: named here, never a traceback
        out.problems.append(f"recompute: failed on the bundled files ({exc.__class__.__name__}: {' '.join(str(exc).split())[:200]})")
    return out


def _recompute(root: Path, manifest: dict, report: AuditReport, out: Recomputed) -> None:
    from ..controls.background import background_from_zoo
    from ..estimate.per_game import estimate_game, fusion_members
    from ..estimate.shapley import get_estimator
    from ..game.evaluator import CoalitionEvaluator, seed_resamples
    from ..generate.cache import ImageCache
    from ..plan.coalitions import members_of
    from ..report.build import build_report
    from ..score.metrics import DEFAULT_METRICS
    from ..score.scorer import ReferenceSet, Scorer
    from ..score.frames import video_frame_width

    listed_images(report)  # every key a cache key: a key names a file of the bundle, never one outside it
    zoo, differ = bundled_zoo(root, manifest)
    out.problems += [f"{AUDIT}/zoo.resolved.json: {key}: not what {ZOO_COPY} resolves to" for key in differ[:20]]
    seeds = list(report.settings.seeds) if report.settings and report.settings.seeds else None
    plan = plan_from_json(root / AUDIT / "plan.json", zoo, seeds)
    if len(plan.games) != len(report.games):
        raise CopyscopeError(f"plan.json has {len(plan.games)} game(s), report.json {len(report.games)}")
    refs = ReferenceSet.from_zoo(zoo)
    _check_references(refs, report, out)
    background = background_from_zoo(zoo, refs.images) if zoo.spec.worth != "raw" else None
    computed = {m for g in report.games for m in g.metrics if m != "fusion"}
    reported = computed | {m for g in report.games for m in (g.skipped_metrics or {})}
    specs = zoo.spec.metrics if zoo.spec.metrics is not None else list(DEFAULT_METRICS)
    metrics, out.left_out = weight_free_metrics(specs, zoo.spec.backbones, reported)
    missing = [m for m in fusion_members(sorted(computed)) if m in out.left_out]
    if missing and any("fusion" in g.metrics for g in report.games):
        out.left_out["fusion"] = f"it fuses {', '.join(missing)}, not recomputed"
    out.metrics = [m.name for m in metrics]
    est = zoo.spec.estimator
    cache = ImageCache(root)
    scorer = Scorer(metrics, cache, refs, zoo.spec.aggregate, background=background, worth=zoo.spec.worth,
                    frame_width=video_frame_width(zoo))
    boot = seed_resamples(len(plan.seeds), est.intervals, est.bootstrap, est.seed)
    inputs = Inputs(zoo, plan, metrics, refs, background, dict(report.unavailable_metrics or {}),
                    get_estimator(est.method, plan.n_players, est.budget))
    results = []
    for i, (game, g) in enumerate(zip(plan.games, report.games)):
        if game.base.name != g.base or game.names != list(g.players):
            raise CopyscopeError(f"games[{i}]: report.json's base and players ({g.base}: {', '.join(g.players)}) are not "
                                 f"plan.json's ({game.base.name}: {', '.join(game.names)})")
        image_keys = {members_of(key, game.names): list(keys) for key, keys in (g.images or {}).items()}
        out.problems += _check_fields(cache, plan, image_keys, game, i)
        ev = CoalitionEvaluator.from_cached(game, cache, scorer, plan.items, len(plan.seeds), boot, image_keys,
                                            resampling=est.intervals)
        result = estimate_game(inputs, game, ev, per_work=True, per_prompt=True)
        if g.placebo_swap_images:  # controls.placebo: swap: each LoRA's placebo in its place, scored the same way
            from ..controls.placebo_swap import swap_contexts

            result.placebo_swap = {}
            for lora, by in g.placebo_swap_images.items():
                contexts = swap_contexts(game, lora)
                listed = {contexts[c]: list(keys) for c, keys in by.items() if c in contexts}
                if len(listed) != len(contexts):
                    raise CopyscopeError(f"games[{i}].placebo_swap_images.{lora}: expected the contexts {', '.join(contexts)}")
                for c, keys in by.items():
                    out.problems += _check_fields(cache, plan, {contexts[c]: list(keys)}, game, i,
                                                  f"placebo_swap_images.{lora}.{c}")
                swapped = CoalitionEvaluator.from_cached(game, cache, scorer, plan.items, len(plan.seeds), boot, listed,
                                                         resampling=est.intervals)
                result.placebo_swap[lora] = {"images": dict(by),
                                             "worths": {c: dict(swapped.worths[m]) for c, m in contexts.items()}}
                # the pixel changes beside it are not compared: verify compares the metrics' sections
                out.images += sum(len(k) for k in by.values())
        results.append(result)
        out.coalitions += len(image_keys)
        out.images += sum(len(k) for k in image_keys.values())
    rebuilt = build_report(inputs, results, generation={}, provenance={}).to_json()
    out.games = len(results)
    out.comparison = compare_games(report.to_json(), rebuilt, out.left_out, [bool(g.controls) for g in report.games])


def _check_references(refs: ReferenceSet, report: AuditReport, out: Recomputed) -> None:
    """The bundled reference files are the ones the audit read (report provenance's identities, in its order)."""
    from .audited import reference_entries

    recorded = reference_entries(report)
    if len(recorded) != len(refs.files):
        out.problems.append(f"references: the bundle holds {len(refs.files)} reference file(s), report.json lists {len(recorded)}")
        return
    for i, (r, path, sha, work) in enumerate(zip(recorded, refs.files, refs.sha256, refs.work_of)):
        if r["sha256"] and (sha != r["sha256"] or work != r["work"]):
            out.problems.append(f"{Path(path).parent.name}/{Path(path).name}: work {work!r}, identity sha256 {sha}; report.json's "
                                f"provenance.references[{i}]: work {r['work']!r}, sha256 {r['sha256']}")


def _check_fields(cache, plan: Plan, image_keys: dict, game, i: int, field: str = "images") -> list[str]:
    """Each bundled image the report lists: its PNG decodes and is the one its sidecar names (``png_sha256``), the
    sidecar's fields hash to its key (the audit's cache key) and its seed is the seed of the work item report.json
    lists it for. Raises CopyscopeError, naming the file, when a PNG cannot be decoded (nothing can be scored)."""
    import json

    from ..common.files import decode_png, key_of, sha256_bytes

    problems = []
    for coalition, keys in image_keys.items():
        if len(keys) != len(plan.items):
            continue  # from_cached names it
        for j, key in enumerate(keys):
            png, meta = cache.path(key), cache.path(key).with_suffix(".json")
            name = f"images/{key[:2]}/{key}"
            listed = f"games[{i}].{field}, coalition {game.coalition_key(coalition)!r}"
            try:
                data, info = png.read_bytes(), json.loads(meta.read_bytes())
            except (OSError, ValueError) as exc:
                problems.append(f"{name}.png/.json: not in the bundle or unreadable ({exc.__class__.__name__}; {listed})")
                continue
            try:
                decode_png(data)
            except Exception as exc:  # noqa: BLE001 - PIL's errors for a damaged PNG are of many kinds
                raise CopyscopeError(f"{name}.png cannot be decoded ({exc.__class__.__name__}: {exc}); nothing is scored") from None
            fields = {k: v for k, v in (info.get("fields") or {}).items() if k != "coalition"} if isinstance(info, dict) else {}
            if not isinstance(info, dict) or info.get("png_sha256") != sha256_bytes(data):
                problems.append(f"{name}.png: its SHA-256 is not the png_sha256 its sidecar ({name}.json) records")
            elif info.get("key") != key or key_of(fields) != key:
                problems.append(f"{name}.json: its fields do not hash to its key (the image's identity)")
            elif fields.get("seed") != plan.items[j].seed:
                problems.append(f"{name}.json: seed {fields.get('seed')!r}, but report.json lists it for seed {plan.items[j].seed}")
    return problems
