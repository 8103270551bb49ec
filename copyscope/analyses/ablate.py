"""``copyscope ablate``: compare metric choices on the same cached generations.

Three questions, answered per game (base checkpoint) from one audit's images:

1. **Agreement between metrics** — do the metrics order the players alike? Pairwise Kendall tau
   and Spearman rho between the metrics' Shapley values (over players).
2. **Seeds needed** — recompute every metric's Shapley values from the first k seeds, k = 1..n
   (same images, same estimator, same interval method), and report the interval width against k and
   the smallest k from which the players' ranking equals the all-seed ranking.
3. **Ground truth** — where the zoo carries a ``ground_truth.json`` (the demo zoo does), which
   metrics rank the planted component first, and by what margin.

Method for (2). The audit's own code computes the worths: ``CoalitionEvaluator.from_cached`` builds
an evaluator over the first k seeds of every prompt (its image keys are the audit's keys, filtered;
its seed resamples are ``seed_resamples(k, ...)`` of the audit's interval method) from the cached
per-image scores / features, and :func:`copyscope.estimate.per_game.estimate_game` runs the audit's
estimators on it (fusion included). Nothing is generated: that evaluator has no engine. At k = n
this is exactly the audit's computation, so the k = n row reproduces report.json.

The audit itself is run first through :func:`copyscope.audit.run_audit_report`, which reuses the image
cache (an audit already run generates nothing; one not yet run is run now); its typed result
(copyscope.results.AuditReport) gives the audit's values and image keys.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..common.files import atomic_write_text
from ..plan.coalitions import members_of
from ..common.errors import CopyscopeError
from ..common.finite import is_finite as _finite
from ..report import significance_rule
from .ground_truth import GROUND_TRUTH_FILE, find_ground_truth, planted_players, read_ground_truth  # noqa: F401  (API)
from ..report.ablation import ablation_plots, ablation_tables, seeds_csv, summary_csv, summary_rows  # noqa: F401  (views: API)
from ..report.agreement import _corr, rank_agreement, ranking, shapley_values  # noqa: F401
from ..results import GameReport

if TYPE_CHECKING:
    from ..estimate.per_game import GameResult
    from ..score.metrics.base import Metric
    from ..plan.games import GamePlan
    from ..audit.prepare import PreparedAudit
    from ..score.scorer import Scorer

FORMAT = "copyscope-ablation/1"
SKIPPED = "__skipped__"  # key of a per-k estimate dict: {metric: why it was left out at that k}


def planted_recovery(values: Mapping[str, float | None], players: Sequence[str], planted: Sequence[str],
                     replicates: Mapping[str, Sequence[float]] | None = None) -> dict:
    """How well one metric recovers the planted component(s).

    ``margin`` = best planted value - best other value (> 0: a planted player ranks first);
    ``relative_margin`` = margin / max |value| over players (scale-free, comparable across metrics);
    ``p_first`` = share of ``replicates`` (per-seed values, or bootstrap replicates) in which a
    planted player has the top value.
    """
    rank = ranking(values, players)
    others = [p for p in players if p not in planted]
    best_planted = max((p for p in planted if _finite(values.get(p))), key=lambda p: values[p], default=None)
    best_other = max((p for p in others if _finite(values.get(p))), key=lambda p: values[p], default=None)
    out = {
        "planted": list(planted),
        "planted_rank": min((rank.index(p) + 1 for p in planted), default=None),
        "planted_first": bool(rank and rank[0] in planted and _finite(values.get(rank[0]))),
        "planted_value": values[best_planted] if best_planted else None,
        "best_other": best_other,
        "best_other_value": values[best_other] if best_other else None,
        "margin": None,
        "relative_margin": None,
        "p_first": None,
    }
    if best_planted and best_other:
        out["margin"] = values[best_planted] - values[best_other]
        scale = max(abs(values[p]) for p in players if _finite(values.get(p)))
        out["relative_margin"] = out["margin"] / scale if scale > 0 else None
    elif best_planted:
        out["planted_first"] = True
    if replicates and planted and all(p in replicates for p in players):
        rep = np.array([replicates[p] for p in players], dtype=float)
        if rep.ndim == 2 and rep.shape[1] > 0:
            top = np.argmax(np.where(np.isfinite(rep), rep, -np.inf), axis=0)
            idx = [players.index(p) for p in planted]
            out["p_first"] = float(np.isin(top, idx).mean())
    return out


# ---------------------------------------------------------------------------------------------------
# seed subsets


def _subset_estimates(prep: PreparedAudit, game: GamePlan, game_report: GameReport, scorer: Scorer, k: int) -> GameResult:
    """estimate_game over the first k seeds of every prompt, from cached scores only (a GameResult)."""
    from ..estimate.per_game import estimate_game
    from ..game.evaluator import CoalitionEvaluator, seed_resamples

    est = prep.zoo.spec.estimator
    n_seeds = len(prep.plan.seeds)
    n_prompts = len(prep.plan.items) // n_seeds
    sel = [p * n_seeds + s for p in range(n_prompts) for s in range(k)]
    items = [prep.plan.items[i] for i in sel]
    boot = seed_resamples(k, est.intervals, est.bootstrap, est.seed)  # the audit's own interval method
    image_keys = {}
    for key, keys in (game_report.images or {}).items():  # the audit's evaluation order (fusion sums in it)
        if len(keys) != len(prep.plan.items):
            raise CopyscopeError(f"report.json lists {len(keys)} images for coalition {key!r}, the plan {len(prep.plan.items)}")
        image_keys[members_of(key, game.names)] = [keys[i] for i in sel]  # unknown names: a report.json of another zoo
    # a set metric undefined on this few images gets NaN worths, and is skipped like a non-finite one
    ev = CoalitionEvaluator.from_cached(game, prep.cache, scorer, items, k, boot, image_keys,
                                        resampling=est.intervals, undefined_as_nan=True)
    # a metric not finite on k seeds (e.g. a set distance from too few images) is left out at this k,
    # as the audit leaves out a metric that is not finite
    finite = [m for m in prep.metrics if all(np.isfinite(w[m.name]).all() for w in ev.worths.values())]
    result = estimate_game(replace(prep, metrics=finite), game, ev)
    result.skipped = {**result.skipped, **{m.name: f"not finite with {k} seed(s)" for m in prep.metrics if m not in finite}}
    return result


def _estimate_rows(result: GameResult, names: Sequence[str], level: float, metrics: dict[str, Metric], rule: str,
                   worth: str = "raw") -> dict:
    """Per metric: the report's Shapley section (under the audit's significance ``rule``; ``metrics``:
    name -> metric, for the per-seed bound) and the per-seed values or replicates."""
    from ..report import estimate_section, seed_bound

    out = {}
    for metric, r in result.results.items():
        est = r.estimate
        sec = estimate_section(est, level, list(names), seed_bound(metrics.get(metric), est, worth), rule)
        # p_first: over the per-seed values (jackknife) or the bootstrap replicates
        draws = est.per_seed() if est.jackknife else est.replicates
        reps = None if draws is None else {p: draws[i].tolist() for i, p in enumerate(names)}
        out[metric] = {"shapley": sec, "replicates": reps}
    out[SKIPPED] = dict(result.skipped)
    return out


def seed_stability(per_k: dict[int, dict], players: Sequence[str], metrics: Sequence[str]) -> dict:
    """Per metric: one row per k (values, intervals, widths, ranking vs the all-seed ranking), the
    smallest k from which the ranking stays the all-seed ranking (``k_stable``), and the same for
    the top player alone (``k_top_stable``)."""
    n = max(per_k)
    out = {}
    for m in metrics:
        full = per_k[n].get(m)
        if full is None:
            continue
        full_vals = {p: full["shapley"][p]["value"] for p in players}
        full_rank = ranking(full_vals, players)
        scale = max((abs(v) for v in full_vals.values() if _finite(v)), default=0.0)
        rows = []
        for k in sorted(per_k):
            e = per_k[k].get(m)
            skipped = per_k[k].get(SKIPPED) or {}
            if e is None:
                rows.append({"k": k, "available": False, "note": skipped.get(m, "not computed")})
                continue
            vals = {p: e["shapley"][p]["value"] for p in players}
            ci = {p: (e["shapley"][p]["ci95"] if k > 1 else None) for p in players}
            width = {p: (ci[p][1] - ci[p][0]) if ci[p] else None for p in players}
            ws = [w for w in width.values() if _finite(w)]
            mean_w = float(np.mean(ws)) if ws else None
            rank = ranking(vals, players)
            ps = [p for p in players if _finite(vals[p]) and _finite(full_vals[p])]
            rows.append({
                "k": k,
                "available": True,
                "values": vals,
                "ci95": ci,
                "ci_width": width,
                "mean_ci_width": mean_w,
                "relative_ci_width": (mean_w / scale) if mean_w is not None and scale > 0 else None,
                "ranking": rank,
                "top": rank[0] if rank else None,
                "same_ranking": rank == full_rank,
                "same_top": bool(rank and full_rank and rank[0] == full_rank[0]),
                "kendall_vs_full": _corr("kendall", [vals[p] for p in ps], [full_vals[p] for p in ps]),
            })
            if m == "fusion" and skipped:
                rows[-1]["note"] = "fuses without " + ", ".join(sorted(skipped)) + " (not finite here)"

        def first_stable(flag: str) -> int:
            k_ok = n
            for row in sorted(rows, key=lambda r: -r["k"]):  # noqa: B023 - called only in this iteration (out[m] below)
                if row.get("available") and row[flag]:
                    k_ok = row["k"]
                else:
                    break
            return k_ok

        out[m] = {
            "n_seeds": n,
            "full_ranking": full_rank,
            "k_stable": first_stable("same_ranking"),
            "k_top_stable": first_stable("same_top"),
            "rows": rows,
        }
    return out


# ---------------------------------------------------------------------------------------------------
# the command


def run_ablation(
    zoo_path: str | Path,
    out: str | Path | None = None,
    *,
    allow_pickle: bool = False,
    ground_truth: str | Path | None = None,
    hooks=None,
) -> dict:
    """Run (or reuse) the audit, then the three comparisons; write ablation.json / .csv / plots and
    re-render the report views (the HTML gains an Ablation section). Returns the ablation dict."""
    from ..audit import prepare_audit, run_audit_report
    from ..report import write_views
    from ..score.scorer import Scorer
    from ..score.frames import video_frame_width

    if ground_truth is not None:  # before an audit that may take hours
        read_ground_truth(Path(ground_truth))
    prep = prepare_audit(zoo_path, out, allow_pickle)
    zoo = prep.zoo
    gt_path = find_ground_truth(zoo, ground_truth)
    gt = read_ground_truth(gt_path) if gt_path is not None else None  # checked before the audit runs
    report = run_audit_report(prep, hooks=hooks)
    level = zoo.spec.estimator.confidence
    rule = significance_rule(zoo.spec.estimator)
    out_dir = prep.out_dir

    seeds = list(prep.plan.seeds)
    scorer = Scorer(prep.metrics, prep.cache, prep.refs, zoo.spec.aggregate, background=prep.background,
                    worth=zoo.spec.worth, frame_width=video_frame_width(zoo))
    games_out = []
    for game, g in zip(prep.plan.games, report.games):
        if game.base.name != g.base or game.names != g.players:
            raise CopyscopeError("report.json does not match the zoo file's plan; rerun `copyscope audit`")
        players = list(g.players)
        metrics = list(g.metrics)
        audit_values = {m: g.metrics[m].value_map() for m in metrics}
        # (1) agreement, on the audit's own values
        agreement = rank_agreement(audit_values, players)
        base_metrics = [m for m in metrics if m != "fusion"]
        mean_tau = {}
        for m in metrics:
            xs = [agreement["kendall"][m][o] for o in base_metrics if o != m and agreement["kendall"][m][o] is not None]
            mean_tau[m] = float(np.mean(xs)) if xs else None
        # (2) seeds
        per_k = {}
        for k in range(1, len(seeds) + 1):
            if hooks is not None:
                hooks.on_event(f"ablation: base {game.base.name}, first {k} of {len(seeds)} seed(s)")
            per_k[k] = _estimate_rows(_subset_estimates(prep, game, g, scorer, k), players, level,
                                      {m.name: m for m in prep.metrics}, rule, scorer.worth)
        stability = seed_stability(per_k, players, metrics)
        for m in metrics:  # the k = n recomputation must be the audit's: say so if it is not
            if m in stability:
                stability[m]["matches_report"] = all(
                    _close(per_k[len(seeds)][m]["shapley"][p]["value"], audit_values[m][p]) for p in players
                )
        # (3) ground truth
        gt_out = None
        if gt is not None:
            planted, notes = planted_players(gt, gt_path, zoo, players)
            gt_out = {"planted": planted, "notes": notes, "metrics": {}}
            if planted:
                for m in metrics:
                    reps = (per_k[len(seeds)].get(m) or {}).get("replicates")
                    gt_out["metrics"][m] = planted_recovery(audit_values[m], players, planted, reps)
        games_out.append({
            "base": g.base,
            "players": players,
            "metrics": metrics,
            "agreement": {**agreement, "mean_kendall_with_other_metrics": mean_tau},
            "seed_stability": stability,
            "ground_truth": gt_out,
        })
    ablation = {
        "format": FORMAT,
        "zoo_name": report.zoo_name,
        "config_sha256": report.config_sha256,
        "audit_time_utc": report.provenance.get("time_utc"),
        "audit_generation": report.generation.to_json(),
        "seeds": seeds,
        "confidence": level,
        "bootstrap": zoo.spec.estimator.bootstrap if zoo.spec.estimator.intervals == "bootstrap" else None,
        "intervals": zoo.spec.estimator.intervals,
        "estimator": zoo.spec.estimator.method,
        "ground_truth_file": str(gt_path) if gt_path else None,
        "method": {
            "agreement": "Kendall tau and Spearman rho between two metrics' Shapley values over the players "
                         "(the audit's values, all seeds)",
            "seeds": "Shapley values recomputed by the audit's estimator from the first k seeds of every prompt (cached scores; "
                     "intervals over those k seeds by the audit's method); k_stable = smallest k from which the "
                     "ranking equals the all-seed ranking; no interval at k = 1 (one seed has no spread)",
            "ground_truth": "margin = best planted value - best other value; relative_margin = margin / max |value|; "
                            "p_first = share of the seeds (per-seed values; bootstrap replicates with intervals: bootstrap) "
                            "in which a planted player ranks first",
        },
        "games": games_out,
        "output_dir": str(out_dir),
    }
    write_ablation(ablation, out_dir)
    write_views(report, out_dir)
    return ablation


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# ---------------------------------------------------------------------------------------------------
# outputs


def write_ablation(ablation: dict, out_dir: Path) -> None:
    """The ablation's files, staged and swapped in through the output folder's manifest like the
    audit's (copyscope.common.outdir): never over a file copyscope did not write."""
    from ..common.outdir import OutputFolder, os_error_message

    files = {"ablation.json": json.dumps(ablation, indent=2), "ablation.csv": summary_csv(ablation),
             "ablation_seeds.csv": seeds_csv(ablation), **ablation_plots(ablation)}
    try:
        with OutputFolder(Path(out_dir)).run(list(files), "ablate") as stage:
            for name, text in files.items():
                atomic_write_text(stage / name, text)
    except OSError as exc:
        raise os_error_message(exc) from None
