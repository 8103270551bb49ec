"""Adaptive seeds in the audit: seeds in rounds, a sequential look after each round.

``generation.seeds: {min, max, target, rho, levels}`` (copyscope.config.AdaptiveSeeds). The seeds are
0, 1, 2, ...; round ``k`` audits the first ``m_k`` of them (``seed_rounds``: 4, 6, 8, 12, 16, ...
up to ``max``), every coalition on the same seeds (common random numbers). A round is an ordinary
audit of ``m_k`` seeds: the images of the earlier rounds come from the image cache and their
scores from the feature cache, so each round generates only its new seeds, and a later run with
a larger ``max`` (or a fixed ``seeds: m``) reuses every image.

After each round the headline metric's per-seed pseudo-values go through
:func:`copyscope.estimate.shapley.sequential.look` (:func:`game_look`): by default (``estimator.significance``
both or distribution_free, a headline with a declared range) every look tests at the whole level with the
anytime-valid betting test (copyscope.estimate.shapley.bounded), nothing spent across looks; with
``significance: t`` at the level the round spends (alpha spending, ``alpha = 1 - estimator.confidence``).
The audit stops when every game's look
stops: the verdict is decided (the leader is above zero and above every other player; with
several works, either in the averaged game or in every work's game, the families sharing the
round's level), every headline interval is narrower than ``target``, or the round reached ``max``.

The report is the last round's audit (a :class:`copyscope.results.AuditReport`), with three changes:

* ``report.adaptive``: the settings, the planned rounds, every look (seeds, images so far,
  images generated in the round, the spent level, the per-player intervals, p-values and the
  leader's paired tests) and why it stopped, with the one-line summary the terminal and the HTML
  show ("adaptive seeds: stopped after 8 seeds (round 3 of 5): decided");
* the headline metric's Shapley entries (the averaged game's and, with several works, each
  work's) carry the sequential intervals and tests of the stopping look: ``ci95`` is the look's
  simultaneous interval (all players, works and looks: coverage >= ``confidence``), ``p_value``
  the look's one-sided test (the claim's: see ``claim``), and ``p_holm`` the sequentially adjusted p-value
  ``min(1, p * alpha / a_k)`` (``a_k``: the level of the look's tests), below ``alpha`` exactly
  when the look calls the player significant (so every view marks significance by the sequential
  rule); ``sequential: true`` marks them;
* ``generation``: ``generated`` sums the rounds; ``cached`` is the rest of the images the last
  round used.

The other metrics and the share intervals keep the fixed-design numbers of the last round's seeds:
they claim no significance (sensitivity analysis) but are not corrected for the stopping either
(said in the report's ``adaptive.note``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Protocol, TypeVar

import numpy as np

from ..common.errors import CopyscopeError
from ..results import MISSING, AuditReport, GameReport, MetricResult, WorkMetricResult

if TYPE_CHECKING:
    from ..config import Zoo
    from ..config.generation import AdaptiveSeeds
    from ..plan.games import Plan
    from .shapley.base import Estimator
    from .shapley.sequential import Look

__all__ = ["adaptive_spec", "check_adaptive", "run_adaptive", "game_look", "adaptive_line"]


class Rounds(Protocol):
    """What the round loop reads of a prepared audit (copyscope.audit.prepare.PreparedAudit, a dataclass: each round
    is a copy on a prefix of the seeds). prepare imports this module's checks, so it is named, not imported."""

    zoo: Zoo
    plan: Plan


P = TypeVar("P", bound=Rounds)


def adaptive_spec(zoo: Zoo) -> AdaptiveSeeds | None:
    """The zoo's AdaptiveSeeds, or None for a fixed seed count or list."""
    from ..config.generation import AdaptiveSeeds

    seeds = zoo.spec.generation.seeds
    return seeds if isinstance(seeds, AdaptiveSeeds) else None


def check_adaptive(zoo: Zoo, estimator: Estimator) -> None:
    """Refuse the combinations the round loop does not support, before anything is generated."""
    if adaptive_spec(zoo) is None:
        return
    if getattr(estimator, "method", None) != "exact":
        raise zoo.fail(
            f"adaptive seeds (generation.seeds: {{min, max, ...}}) need exact Shapley, but the estimator is "
            f"{getattr(estimator, 'method', estimator)!r}; set estimator.method: exact or give a fixed number of seeds",
            "estimator", "method",
        )
    if zoo.spec.estimator.intervals != "jackknife":
        raise zoo.fail(
            "adaptive seeds need per-seed values: set estimator.intervals: jackknife (the default) or give a fixed "
            "number of seeds", "estimator", "intervals",
        )


def _restrict(prep: P, m: int) -> P:
    """The prepared audit on the first ``m`` seeds of its plan."""
    plan = prep.plan
    keep = set(plan.seeds[:m])
    sub_plan = dataclasses.replace(plan, items=[it for it in plan.items if it.seed in keep], seeds=list(plan.seeds[:m]))
    return dataclasses.replace(prep, plan=sub_plan)


def _section_arrays(sec: MetricResult | WorkMetricResult, names: list[str], seeds: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(values, per-seed pseudo-values) of one headline section (checked by ``has_per_seed``), on its
    first ``seeds`` seeds when given (a replay: for a per-image metric the first m seeds' pseudo-values are
    their per-seed values)."""
    pseudo = sec.per_seed_matrix(names)
    if seeds is not None:
        pseudo = pseudo[:, :seeds]
        return pseudo.mean(axis=1), pseudo
    return sec.values(names), pseudo


def game_look(game: GameReport | dict, rounds: list[int], k: int, alpha: float, rho: float = 1.0, target: float | None = None,
              seeds: int | None = None, paired: bool = True, exact: bool = True, rule: str = "t") -> dict:
    """The sequential look at one game of a fixed-seed report after round ``k`` of ``rounds``.

    One work: :func:`copyscope.estimate.shapley.sequential.look` on the headline metric, its ``n`` tests
    sharing the round's spent level ``alpha_k`` (exact group-sequential levels, or the union bound
    over looks with ``exact=False``: :func:`copyscope.estimate.shapley.sequential.look_levels`). Several
    works: the averaged game and each work's game (report ``per_work``) are ``W + 1`` families of
    tests that share it (``n (W + 1)`` tests, so a false claim in any of them has probability at
    most ``alpha`` over all looks). The game stops when the averaged verdict is decided, or when
    every work's verdict is (each work's leader above zero and above every other player: "which
    component copies which work"), or at the target width of the averaged intervals, or
    at ``max``. Why: two components that each copy a different work tie in the average by design,
    so the averaged leader may never separate, while each work's game is decided early
    (bench/adaptive_results.md, two-works scenarios). A work whose headline has no finite per-seed
    values (e.g. a set metric undefined for it) gets no look, and then "every work" cannot be
    decided: only the averaged game can stop the audit early.

    ``game``: a report's game (a report.json's game dict is read into one). Returns
    ``{"look": Look, "names": [...], "metric": head, "works": {work: Look}}``; ``seeds``
    replays the look on the first ``seeds`` seeds of a larger report, ``paired=False`` with the older
    separation rule (both for bench/bench_adaptive.py).

    ``rule`` (``estimator.significance``) ``both`` or ``distribution_free`` with a bounded headline (its
    ``seed_bound``): the tests go through the anytime-valid betting test (copyscope.estimate.shapley.bounded), so
    every look tests at the whole level ``alpha / (n (W + 1))``: nothing is spent across looks and no
    simulated levels are needed; the stopping rule cannot inflate the error whatever the seed noise."""
    from dataclasses import replace

    from .shapley.inference import worths_zero_tol
    from .shapley.sequential import look, look_levels

    if isinstance(game, dict):
        game = GameReport.from_json(game)
    head = game.headline or None
    names = list(game.players)
    sec = game.metrics.get(head) if head is not None else None
    if sec is None or not sec.has_per_seed(names):
        raise CopyscopeError(f"adaptive seeds: the headline metric {head!r} of base {game.base!r} has no finite "
                             "per-seed values; give a fixed number of seeds")
    worths = [abs(v) for v in sec.coalitions.values() if v is not None]
    zero_tol = worths_zero_tol(max(worths, default=0.0))
    all_works = game.per_work or {}
    works = {w: m[head] for w, m in all_works.items() if head in m and m[head].has_per_seed(names)}
    families = 1 + len(works)
    bound = sec.seed_bound if rule != "t" and sec.seed_bound is not MISSING else None
    if bound is not None:  # anytime-valid: every look at the whole level
        spent = alpha
        test_level = alpha / (len(names) * families)
        side_level = test_level / 2.0
    else:
        spent, test_level, side_level = look_levels(rounds, alpha, rho, len(names) * families, exact)[k]
    last = k == len(rounds) - 1
    kw = dict(zero_tol=zero_tol, paired=paired, levels=(test_level, side_level), bound=bound, rule=rule)
    values, pseudo = _section_arrays(sec, names, seeds)
    averaged = look(values, pseudo, spent / families, last, target, **kw)
    work_looks = {}
    for w, sec_w in works.items():
        values_w, pseudo_w = _section_arrays(sec_w, names, seeds)
        work_looks[w] = look(values_w, pseudo_w, spent / families, last, None, **kw)
    if (averaged.reason != "decided" and work_looks and len(work_looks) == len(all_works)
            and all(lk.reason == "decided" for lk in work_looks.values())):
        averaged = replace(averaged, stop=True, reason="decided for every work")
    return {"look": averaged, "names": names, "metric": head, "works": work_looks, "anytime": bound is not None}


def run_adaptive(prep: P, run_games: Callable[[P], AuditReport],
                 on_event: Callable[[str], None] = lambda msg: None) -> AuditReport:
    """Audit ``prep`` in rounds of seeds; ``run_games(prepared)`` is one fixed-seed audit returning
    its result (copyscope.audit._run_games). Returns the last round's result with the sequential
    headline (module docstring)."""
    from .shapley.sequential import seed_rounds, spending

    spec = adaptive_spec(prep.zoo)
    confidence = prep.zoo.spec.estimator.confidence
    alpha = 1.0 - confidence
    rule = prep.zoo.spec.estimator.significance
    rounds = seed_rounds(spec.min, spec.max)
    levels = spending(rounds, alpha, spec.rho)
    looks, generated, report = [], 0, None
    for k, m in enumerate(rounds):
        on_event(f"adaptive seeds: round {k + 1} of {len(rounds)}, {m} seeds")
        report = run_games(_restrict(prep, m))
        generated += int(report.generation.generated)
        games, stops, anytime = {}, [], True
        for g in report.games:
            gl = game_look(g, rounds, k, alpha, spec.rho, spec.target, exact=spec.levels == "exact", rule=rule)
            lk, names = gl["look"], gl["names"]
            games[g.base] = {"metric": gl["metric"], **lk.to_dict(names), "_look": gl,
                                **({"works": {w: wl.to_dict(names) for w, wl in gl["works"].items()}}
                                   if gl["works"] else {})}
            stops.append(lk.stop)
            anytime = anytime and gl["anytime"]
        images = sum(g.image_count() for g in report.games)
        looks.append({"round": k + 1, "seeds": m, "images": images,
                      "generated": int(report.generation.generated), "alpha": alpha if anytime else float(levels[k]), "games": games})
        if all(stops):
            break
    final = looks[-1]
    reasons = {base: g["reason"] or "max seeds" for base, g in final["games"].items()}
    reason = next(iter(reasons.values())) if len(set(reasons.values())) == 1 else \
        "; ".join(f"base {b}: {r}" for b, r in reasons.items())
    for g in report.games:
        gl = final["games"][g.base].pop("_look")
        head = gl["metric"]
        label = _sequential_label(rule if gl["anytime"] else "t")
        _sequential_headline(g.metrics[head], gl["look"], gl["names"], alpha, label)
        for w, wl in gl["works"].items():
            _sequential_headline(g.per_work[w][head], wl, gl["names"], alpha, label)
    for lk in looks[:-1]:
        for entry in lk["games"].values():
            entry.pop("_look")
    report.generation.generated = generated
    report.generation.cached = max(final["images"] - generated, 0)
    report.adaptive = {
        "min": spec.min, "max": spec.max, "target": spec.target, "rho": spec.rho, "levels": spec.levels, "alpha": alpha,
        "planned_rounds": rounds, "spending": None if anytime else [float(x) for x in levels],
        "stopped_after": final["seeds"], "round": final["round"], "rounds_planned": len(rounds), "reason": reason,
        "images": final["images"], "looks": looks, "anytime_valid": anytime,
        **(_ANYTIME_TEXT if anytime else _SPENDING_TEXT),
    }
    report.adaptive["line"] = adaptive_line(report)
    report.settings.test = ("headline: sequential (adaptive seeds): " + report.adaptive["rule"]
                            + "; other metrics: " + report.settings.test)
    return report


_ANYTIME_TEXT = {
    "rule": ("anytime-valid: every look tests at the whole level alpha / (n (W + 1)) (n players; W works when there "
             "are several, else W = 0) with the distribution-free betting test of the per-seed contributions, bounded "
             "by the headline metric's declared range (and, with significance: both, also the t test at that level); "
             "no level is spent across looks, since the betting p-values are valid at any stopping time; decided "
             "when the leader's test of > 0 and its tests against every other player (per-seed differences, same "
             "bound) all reject, in the averaged game or in every work's game; intervals: confidence sequences, "
             "each side at half a test's level, simultaneous over players, works and looks "
             "(copyscope/estimate/adaptive.py game_look, copyscope/estimate/shapley/sequential.py, copyscope/estimate/shapley/bounded.py)"),
    "note": ("the headline metric's intervals and tests (averaged and per work) are the anytime-valid ones of the "
             "stopping look: valid whenever the audit stops and whatever the shape of the seed noise; the other "
             "metrics and share intervals are fixed-design numbers on the stopped seeds, not corrected for the "
             "stopping (docs/estimation.md, Adaptive seeds)"),
}

_SPENDING_TEXT = {
    "rule": ("alpha spending alpha_k = alpha * ((m_k / max)**rho - (m_{k-1} / max)**rho); each test of a look "
             "spends alpha_k / (n (W + 1)) (n players; W works when there are several, else W = 0), at the exact "
             "group-sequential level for nested seed prefixes (levels: exact) or at that level itself (levels: "
             "union, the union bound over looks), test_level of each look; decided when the "
             "leader's one-sided t test of > 0 and its paired t tests against every other player (per-seed "
             "differences) all reject, in the averaged game or in every work's game; intervals two-sided, each "
             "side spending half of a test's share: simultaneous over players, works and looks "
             "(copyscope/estimate/adaptive.py game_look, copyscope/estimate/shapley/sequential.py)"),
    "note": ("the headline metric's intervals and tests (averaged and per work) are the sequential ones of the "
             "stopping look (valid whenever the audit stops); the other metrics and share intervals are "
             "fixed-design numbers on the stopped seeds, not corrected for the stopping; the sequential t tests "
             "assume roughly symmetric per-seed contributions: with strongly left-skewed seed noise (skewness -2) "
             "simulated all-null audits called some player significant far more often than alpha "
             "(docs/estimation.md, Adaptive seeds)"),
}


def _sequential_label(rule: str) -> str:
    return {"both": "sequential: t and distribution-free (anytime-valid)",
            "distribution_free": "sequential: distribution-free (anytime-valid)"}.get(rule, "sequential: t (alpha spending)")


def _sequential_headline(sec: MetricResult | WorkMetricResult, lk: Look, names: list[str], alpha: float,
                         label: str) -> None:
    """Replace a headline section's intervals and tests (the averaged game's, or one work's) by those of
    the stopping look. ``lk.test_level`` is the level of that look's tests, so ``p_holm < alpha``
    exactly when the look calls the player significant. The fixed-design tests of the last round's seeds
    (``t``, ``bounded``) are dropped: they are not the ones the stopping rule was run on."""
    for i, name in enumerate(names):
        e = sec.shapley[name]
        e.t = e.bounded = MISSING
        e.claim = label
        p = float(lk.p_values[i])
        e.ci95 = [float(lk.ci[i, 0]), float(lk.ci[i, 1])]
        e.p_value = p
        e.p_holm = min(1.0, p * alpha / lk.test_level) if lk.test_level > 0 else 1.0
        e.sequential = True
    sec.inference = "sequential (adaptive seeds): see report['adaptive']"


def adaptive_line(report: AuditReport | dict) -> str | None:
    """'adaptive seeds: stopped after 8 seeds (round 3 of 5): decided' (None without adaptive seeds)."""
    a = report.adaptive if isinstance(report, AuditReport) else report.get("adaptive")
    if not isinstance(a, dict):
        return None
    return (f"adaptive seeds: stopped after {a.get('stopped_after')} seeds (round {a.get('round')} of "
            f"{a.get('rounds_planned')}): {a.get('reason')}")
