"""Stage 6 — estimate: the estimators on one game's worths, per metric, fused, and per work.

The estimator pulls worths from the game (``CoalitionEvaluator.values``), which generates and scores
the coalitions it is asked for on demand; a metric whose worths are not finite is skipped, not the
audit. The result is a :class:`GameResult`: plain data, with the evaluator's tables copied out, so
the report (copyscope.report.build_report, which types it as a copyscope.results.GameReport) needs no
live object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..game.evaluator import CoalitionEvaluator
from ..plan.games import GamePlan
from .shapley import Estimate, Game

if TYPE_CHECKING:
    from ..config import Zoo
    from ..score.metrics.base import Metric, SetResult
    from ..score.scorer import ReferenceSet
    from .shapley.base import Estimator
    from .shapley.interactions import InteractionResult

Coalition = tuple[bool, ...]


class EstimateInputs(Protocol):
    """What :func:`estimate_game` reads of the prepared audit (a copyscope.audit.prepare.PreparedAudit, which sits
    above this stage: named here, not imported)."""

    zoo: Zoo  # its estimator settings (budget, seed)
    estimator: Estimator | None
    metrics: list[Metric]
    refs: ReferenceSet  # the works, for the per-work games


@dataclass
class MetricEstimate:
    """The estimates of one metric's game (or of the fusion, or of one work's game)."""

    estimate: Estimate  # Shapley values, replicates, intervals
    game: Game  # the game it was computed on (its worth table)
    efficiency_gap: float
    loo: Estimate | None = None  # leave-one-out, where the estimator's coalitions cover it
    banzhaf: Estimate | None = None  # Banzhaf, where every coalition was evaluated
    # pairwise Shapley interaction indices with intervals over seeds, where every coalition was evaluated and the
    # replicate columns are leave-one-seed-out (a sampled design does not identify them)
    interactions: InteractionResult | None = None


@dataclass
class GameResult:
    """One game's estimates, and the evaluated coalitions' data the report shows."""

    game: GamePlan
    results: dict[str, MetricEstimate]  # metric (and "fusion") -> its estimates
    skipped: dict[str, str]  # metric -> why it attributes nothing
    per_work: dict[str, dict[str, MetricEstimate]]  # work -> metric -> its estimates (several works only)
    worths: dict[Coalition, dict[str, np.ndarray]]  # coalition -> metric -> worth row (1 + replicates,)
    set_results: dict[Coalition, dict[str, SetResult]]  # coalition -> set metric -> its result
    flags: dict[Coalition, dict[str, list[str]]]  # coalition -> image key -> generation flags
    image_keys: dict[Coalition, list[str]]  # coalition -> its images' cache keys, in work-item order
    weights: dict = field(default_factory=dict)  # the engine's model identities (hashes), for provenance
    controls: dict | None = None  # the game's positive controls (copyscope.controls.positive), when run
    per_prompt: dict[str, dict[str, MetricEstimate]] = field(default_factory=dict)  # prompt -> metric -> (several prompts)
    placebo_swap: dict | None = None  # controls.placebo: swap: lora -> its swapped pipeline's images and worths

    def table(self, metric: str) -> dict[Coalition, np.ndarray]:
        return {c: w[metric] for c, w in self.worths.items() if metric in w}


class _NotFinite(Exception):
    """A metric's worth is NaN/inf for some coalition: that metric is skipped, not the audit."""


def estimate_game(prep: EstimateInputs, game: GamePlan, evaluator: CoalitionEvaluator, per_work: bool = False,
                  per_prompt: bool = False) -> GameResult:
    """Run the estimators on every metric of one game (the estimator pulls the worths it needs from
    ``evaluator``, which generates and scores them on demand); return the game's results.

    ``per_work`` / ``per_prompt``: with several works (prompts), also one game per work (prompt) on the same
    coalitions (``run_audit`` asks for both; the ablation does not need them: they evaluate no other coalitions)."""
    from ..score.metrics import fusion
    from .shapley import ExactBanzhaf, LeaveOneOut, efficiency_gap
    from .shapley.inference import worths_zero_tol
    from .shapley.interactions import interaction_inference, worth_table

    est = prep.zoo.spec.estimator
    estimator = prep.estimator
    n = game.n_players
    results: dict[str, MetricEstimate] = {}
    names = [m.name for m in prep.metrics]

    resampling = getattr(evaluator, "resampling", "bootstrap")

    def inference_settings(estimate, g: Game):
        """What the replicate columns are, and what counts as zero at the worths' scale."""
        estimate.resampling = resampling
        worths = np.stack(list(g.values_table().values()))
        estimate.zero_tol = worths_zero_tol(np.abs(worths).max())
        return estimate

    def run(value_function) -> MetricEstimate:
        g = Game(n, value_function, player_names=game.names)
        estimate = inference_settings(estimator.estimate(g, budget=est.budget, seed=est.seed), g)
        out = MetricEstimate(estimate, g, efficiency_gap=0.0)
        # LOO and Banzhaf are reported beside Shapley only from coalitions already evaluated:
        # they must not spend generation beyond the estimator's budget.
        known = set(g.values_table())
        loo_needs = {tuple([True] * n)} | {tuple(j != i for j in range(n)) for i in range(n)}
        if loo_needs <= known:
            out.loo = inference_settings(LeaveOneOut().estimate(g, seed=est.seed), g)
        if g.n_evaluated >= 2**n:
            out.banzhaf = inference_settings(ExactBanzhaf().estimate(g, seed=est.seed), g)
            if n >= 2 and resampling == "jackknife":
                out.interactions = interaction_inference(worth_table(g.values_table(), n, game.names), game.names,
                                                         level=est.confidence)
        out.efficiency_gap = efficiency_gap(estimate, g)
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

    # Per-work and per-prompt attribution: with several works (prompts), one game per work (prompt), so that
    # "which component copies which work" and "which prompts drive the copying" are not lost in the averages.
    def sub_games(parts: list[str], values_of, worths_of) -> dict[str, dict[str, MetricEstimate]]:
        out: dict[str, dict[str, MetricEstimate]] = {}
        for part in parts:
            res: dict[str, MetricEstimate] = {}
            for name in names:
                def part_values(C, name=name, part=part):
                    values = values_of(C, name, part)
                    if not np.isfinite(values).all():
                        raise _NotFinite
                    return values

                try:
                    res[name] = run(part_values)
                except _NotFinite:
                    continue
            used = [n for n in names if n in res]
            if len(coalitions) > 1 and len(used) > 1:
                rows = {c: {m: worths_of(c, m, part) for m in used} for c in coalitions}
                res["fusion"] = run(_table_values(_fused_table(fusion, rows, fusion_members(used))))
            out[part] = res
        return out

    works = prep.refs.works
    work_results = (sub_games(works, evaluator.work_values, lambda c, m, w: evaluator.work_worths[c][(m, w)])
                    if per_work and len(works) > 1 else {})
    prompts = list(dict.fromkeys(it.prompt for it in evaluator.items)) if per_prompt else []
    prompt_results = (sub_games(prompts, evaluator.prompt_values, lambda c, m, p: evaluator.prompt_worths[c][(m, p)])
                      if len(prompts) > 1 else {})
    return GameResult(game, results, skipped, work_results, worths=dict(evaluator.worths), set_results=dict(evaluator.set_results),
                      flags=dict(evaluator.flags), image_keys=dict(evaluator.image_keys), per_prompt=prompt_results)


def fusion_members(names: list[str]) -> list[str]:
    """The metrics the fusion fuses: those of ``names`` the validity benchmark found sound
    (``FUSION_METRICS``), or every one of ``names`` when fewer than two of those were computed."""
    from ..score.metrics.registry import FUSION_METRICS

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
    if fused.ndim == 1:  # every metric without replicates (one seed): one column, as every other worth row has
        fused = fused[:, None]
    return {c: fused[i] for i, c in enumerate(coalitions)}


def _table_values(table: dict):
    """A value function reading a fixed coalition -> worth table (fusion needs every metric evaluated first)."""

    def values(C):
        rows = [tuple(bool(x) for x in r) for r in np.asarray(C, dtype=bool)]
        if any(r not in table for r in rows):
            raise RuntimeError("fusion asked for a coalition no metric evaluated")  # estimators are seeded alike
        return np.stack([table[r] for r in rows])

    return values
