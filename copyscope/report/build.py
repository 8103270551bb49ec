"""report.json's content from the estimate stage's results: :func:`build_report` (an AuditReport) and the pieces
it is made of, also used by ``copyscope ablate`` (``estimate_section``, ``seed_bound``, ``significance_rule``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .. import __version__
from ..plan.coalitions import report_order
from ..common.finite import finite_or_none as _f
from ..results import SCHEMA_VERSION, AuditReport
from .headline import HEADLINE_NOTE, headline_metric

if TYPE_CHECKING:
    from ..config import Zoo
    from ..controls.background import BackgroundSet
    from ..estimate.per_game import GameResult
    from ..score.metrics.base import Metric
    from ..plan.games import Plan
    from ..score.scorer import ReferenceSet


class ReportInputs(Protocol):
    """What :func:`build_report` reads of the prepared audit (a copyscope.audit.prepare.PreparedAudit, which imports
    the report's file list, so the report names the fields it uses instead of importing it)."""

    zoo: Zoo
    plan: Plan
    metrics: list[Metric]
    refs: ReferenceSet
    background: BackgroundSet | None
    unavailable: dict[str, str]




def _interval(ci_row) -> list[float] | None:
    if ci_row is None:
        return None
    lo, hi = (_f(v) for v in ci_row)
    return None if lo is None or hi is None else [lo, hi]


def estimate_section(est, level: float, names: list[str], bound: float | None = None, rule: str = "t") -> dict:
    """Per player: value, interval (``ci95`` is at the report's confidence level, 95 % by default),
    one-sided p-value and its Holm correction, those of the significance ``rule`` (``estimator.significance``:
    copyscope.estimate.shapley.bounded.claim); for jackknife estimates also the standard error and the degrees of
    freedom of the t quantile, so the interval can be rechecked from per_seed.csv. ``bound``: every per-seed
    contribution lies in ``[-bound, bound]`` (None: unknown), which allows the distribution-free test; each
    test's own interval and p-values are kept under ``t`` and ``bounded``, and ``claim`` says which carried it."""
    from ..estimate.shapley import adjust_p_values
    from ..estimate.shapley.bounded import bounded_seed_inference, claim

    t = (est.ci(level), est.p_values())
    per_seed = est.per_seed() if hasattr(est, "per_seed") else None
    bounded = bounded_seed_inference(per_seed, bound, level)
    ci, p, carried = claim(rule, t, bounded)
    carried = carried if est.jackknife else "bootstrap"
    p_adj = adjust_p_values(p, "holm")  # not est.p_adjusted(), which recomputes the p-values
    tests = {"t": (t[0], t[1], adjust_p_values(t[1], "holm"))}
    if bounded is not None:
        tests["bounded"] = (bounded[0], bounded[1], adjust_p_values(bounded[1], "holm"))
    se = est.standard_error() if hasattr(est, "standard_error") else None
    out = {}
    for i, name in enumerate(names):
        out[name] = {
            "value": _f(est.values[i]),
            "ci95": _interval(ci[i]) if ci is not None else None,
            "p_value": _f(p[i]),
            "p_holm": _f(p_adj[i]),
            "claim": carried,
        }
        if se is not None:
            out[name]["se"] = _f(se[i])
            out[name]["df"] = est.df
        if rule != "t" or bounded is not None:
            for key, (ci_k, p_k, adj_k) in tests.items():
                out[name][key] = {"ci95": _interval(ci_k[i]) if ci_k is not None else None,
                                  "p_value": _f(p_k[i]), "p_holm": _f(adj_k[i])}
    return out


def seed_bound(metric, est, worth: str = "raw") -> float | None:
    """The a-priori bound on one seed's Shapley contribution (copyscope.estimate.shapley.bounded.shapley_seed_bound)
    of a per-image metric with a declared range under exact Shapley with per-seed values; None otherwise
    (set metrics and the fusion have no range; a sampled estimator's per-seed values are not convex
    combinations of marginal contributions)."""
    from ..controls.worth import specific_range
    from ..estimate.shapley.bounded import shapley_seed_bound

    rng = getattr(metric, "value_range", None) if metric is not None and metric.kind == "per_image" else None
    rng = specific_range(rng, worth) if rng is not None else None  # a specific worth's own range
    if rng is None or est.method != "exact" or est.index != "shapley" or not est.jackknife:
        return None
    return shapley_seed_bound(rng)


def _annotate_swap(metrics: dict, g, metric_info: dict, worth: str, level: float, rule: str) -> None:
    """``vs_own_placebo`` on every metric section (copyscope.controls.placebo_swap), from the game's worth rows."""
    from ..controls.placebo_swap import annotate_swap, swap_contexts
    from ..controls.worth import specific_range

    game = g.game
    keys = {}
    for lora in g.placebo_swap:
        keys[lora] = {c: (game.coalition_key(m), game.coalition_key(tuple(x and p.name != lora for x, p in zip(m, game.players))))
                      for c, m in swap_contexts(game, lora).items()}
    worths = {m: {game.coalition_key(c): row for c, row in g.table(m).items()} for m in metrics}
    bounds = {}
    for m in metrics:
        info = metric_info.get(m)
        rng = getattr(info, "value_range", None) if info is not None and info.kind == "per_image" else None
        rng = specific_range(rng, worth) if rng is not None else None
        bounds[m] = float(rng[1] - rng[0]) if rng is not None else None  # one seed's worth difference lies within
    annotate_swap(metrics, worths, g.placebo_swap, game.names, keys, bounds, level, rule)


def _per_seed_section(est, names: list[str]) -> dict | None:
    """{player: [pseudo-value per seed]} of a jackknife estimate (None otherwise)."""
    per_seed = est.per_seed() if hasattr(est, "per_seed") else None
    if per_seed is None:
        return None
    return {name: [_f(x) for x in per_seed[i]] for i, name in enumerate(names)}


def _seed_worths(table: dict, keys: dict) -> dict | None:
    """{coalition: [per-seed pseudo-worth]} from leave-one-seed-out worth columns: for a per-image
    metric the coalition's worth on each seed alone."""
    from ..estimate.shapley.inference import jackknife_pseudo_values

    rows = {keys[c]: v for c, v in table.items()}
    if not rows or len(next(iter(rows.values()))) < 3:
        return None
    return {k: [_f(x) for x in jackknife_pseudo_values(v[0], v[1:])] for k, v in rows.items()}


def intervals_text(intervals: str) -> str:
    if intervals == "jackknife":
        return ("leave-one-seed-out jackknife: Student-t interval value +- t(m-1) * se; one-sided t test of value > 0, "
                "Holm-corrected across players")
    return "percentile bootstrap over seeds; one-sided bootstrap test of value > 0, Holm-corrected across players"


def significance_rule(estimator) -> str:
    """The zoo's ``estimator.significance``; bootstrap intervals have no per-seed values, so only their own test."""
    return estimator.significance if estimator.intervals == "jackknife" else "t"


def significance_text(rule: str) -> str:
    if rule == "both":
        return ("a significance claim needs the t test AND the distribution-free betting test (anytime-valid, for "
                "per-seed contributions bounded by the metric's declared range: valid whatever the shape of the seed "
                "noise); its p-value is the larger of the two and its interval the hull of both")
    if rule == "distribution_free":
        return ("a significance claim needs the distribution-free betting test (anytime-valid, for per-seed "
                "contributions bounded by the metric's declared range: valid whatever the shape of the seed noise)")
    return "a significance claim needs the t test alone (calibrated for roughly symmetric seed noise)"


def build_report(prep: ReportInputs, games: list[GameResult], generation: dict, provenance: dict,
                 conditioning: list | None = None) -> AuditReport:
    """The audit's result from the prepared audit (zoo, plan, metrics, references), the games' results
    (copyscope.estimate.per_game.GameResult: plain data), the generation counts, the provenance and the
    computed conditioning maps. The sections are computed in their JSON form, the one the pure helpers
    they go through share with the views and the bench scripts (the placebo comparison, the controls
    section, the headline rule), and typed once by ``AuditReport.from_json``."""
    from ..estimate.shapley.inference import MIN_SEEDS, power_note, seed_count_warning

    level = prep.zoo.spec.estimator.confidence
    intervals = prep.zoo.spec.estimator.intervals
    rule = significance_rule(prep.zoo.spec.estimator)
    n_seeds = len(prep.plan.seeds)
    worth = prep.zoo.spec.worth if prep.background is not None else "raw"
    metric_info = {m.name: m for m in prep.metrics}
    report_games = []
    for g in games:
        game, results = g.game, g.results
        names = game.names
        metrics = {}
        for metric_name, r in results.items():
            est = r.estimate
            m = metric_info.get(metric_name)
            table = g.table(metric_name)
            bound = seed_bound(m, est, worth)
            coalitions = {game.coalition_key(c): _f(v[0]) for c, v in sorted(table.items(), key=lambda kv: report_order(kv[0]))}
            section = {
                "orientation": "higher_is_closer",
                "kind": m.kind if m else "fusion",
                "raw_orientation": m.orientation if m else "higher_is_closer",
                "description": m.description if m else "mean over metrics of per-metric z-scores of the worth across coalitions",
                "coalitions": coalitions,
                "shapley": estimate_section(est, level, names, bound, rule),
                "seed_bound": bound,
                "efficiency_gap": _f(r.efficiency_gap),
                "estimator": {"method": est.method, "coalitions_evaluated": int(est.n_evaluated), "budget": est.budget},
                "split_percent": est.shares(level),
                "per_seed": _per_seed_section(est, names),
                "seed_worths": _seed_worths(table, {c: game.coalition_key(c) for c in table}) if est.jackknife else None,
                "loo": {n: _f(v) for n, v in zip(names, r.loo.values)} if r.loo is not None else None,
                "banzhaf": {n: _f(v) for n, v in zip(names, r.banzhaf.values)} if r.banzhaf is not None else None,
                "interactions": r.interactions.to_json() if r.interactions is not None else None,
            }
            if m is not None and m.kind == "set":
                section["sample_size"] = {}
                for c, res in g.set_results.items():
                    if metric_name in res:
                        sr = res[metric_name]
                        section["sample_size"][game.coalition_key(c)] = {
                            "n_generated": sr.n_gen,
                            "n_reference": sr.n_ref,
                            "feature_dim": sr.feature_dim,
                            "warning": sr.warning,
                        }
                if worth == "raw":  # the distances themselves (a specific worth is a difference of two)
                    section["raw_values"] = {k: (None if v is None else -v) for k, v in coalitions.items()}
            metrics[metric_name] = section
        from ..controls.against_placebo import annotate_placebo

        annotate_placebo(metrics, names, level, rule)  # controls.placebo: every component against the placebo
        if g.placebo_swap:  # controls.placebo: swap: every LoRA against its own placebo in its place
            _annotate_swap(metrics, g, metric_info, worth, level, rule)
        flags = {game.coalition_key(c): f for c, f in g.flags.items() if f}
        def part_sections(parts: dict, names: list[str] = names) -> dict:
            return {
                part: {m: {"shapley": estimate_section(r.estimate, level, names, seed_bound(metric_info.get(m), r.estimate, worth), rule),
                           "split_percent": r.estimate.shares(level),
                           "per_seed": _per_seed_section(r.estimate, names)}  # adaptive seeds look at each work's game
                       for m, r in res.items()}
                for part, res in (parts or {}).items()
            }

        per_work, per_prompt = part_sections(g.per_work), part_sections(g.per_prompt)
        entry = {
            "base": game.base.name,
            "players": names,
            "player_kinds": {p.name: p.kind for p in game.players},
            "base_as_player": game.base_as_player,
            "weights": g.weights,
            "images": {game.coalition_key(c): keys for c, keys in g.image_keys.items()},
            "flagged_images": flags,
            "skipped_metrics": g.skipped,
            "metrics": metrics,
            # significance is claimed for this metric only; the others are sensitivity analysis
            "headline": headline_metric(metrics),
            **({"per_work": per_work} if per_work else {}),
            **({"per_prompt": per_prompt} if per_prompt else {}),
            **({"placebo_swap_images": {n: r["images"] for n, r in g.placebo_swap.items()},
                # how much each LoRA and its placebo change the images (mean absolute pixel difference), per context
                "placebo_swap_change": {n: r.get("image_change") for n, r in g.placebo_swap.items()}}
               if g.placebo_swap else {}),
        }
        if g.controls is not None:  # the positive controls, and the headline chosen from them
            from .controls import controls_section

            entry["controls"] = controls_section(g.controls, metrics, names, prep.zoo.spec.controls.headline)
            entry["headline"] = entry["controls"]["headline"]["metric"]
        report_games.append(entry)
    zoo = prep.zoo
    # the guarantee of the claims is the headline's: distribution-free where its per-seed values are bounded
    heads = [g["metrics"].get(g["headline"]) or {} for g in report_games]
    bounds = [h.get("seed_bound") for h in heads]
    head_bound = bounds[0] if bounds and all(b is not None for b in bounds) else None
    head_players = max((len(g["players"]) for g in report_games), default=1)
    return AuditReport.from_json({
        "schema_version": SCHEMA_VERSION,
        "copyscope_version": __version__,
        "config_sha256": zoo.sha256,
        "zoo_name": zoo.spec.name,
        "generation": generation,
        "settings": {
            "prompts": [p.model_dump() for p in zoo.spec.prompts],
            "seeds": prep.plan.seeds,
            "steps": zoo.spec.generation.steps,
            "guidance": zoo.spec.generation.guidance,
            "resolution": list(zoo.spec.generation.size),
            "aggregate": zoo.spec.aggregate,
            "worth": worth,
            "background": prep.background.summary() if prep.background is not None else None,
            "placebo": getattr(zoo, "placebo", None),  # the placebo LoRA player (copyscope.controls.placebo)
            "bootstrap": zoo.spec.estimator.bootstrap if intervals == "bootstrap" else None,
            "confidence": level,
            "intervals": intervals,
            "test": intervals_text(intervals) + "; " + significance_text(rule) + "; " + HEADLINE_NOTE,
            "significance": rule,
            "n_seeds": n_seeds,
            "min_seeds": MIN_SEEDS,
            "seed_warning": seed_count_warning(n_seeds, rule, head_bound),
            "power_note": power_note(n_seeds, head_bound, 1.0 - level, head_players) if rule != "t" else None,
        },
        "works": {w: [str(f) for f, ww in zip(prep.refs.files, prep.refs.work_of) if ww == w] for w in prep.refs.works},
        "conditioning": conditioning or [],  # computed ControlNet maps (copyscope.conditioning)
        "unavailable_metrics": prep.unavailable,
        "games": report_games,
        "provenance": provenance,
    })
