"""Adaptive seeds in the audit (issue 16): seeds in rounds, a sequential look after each round.

``generation.seeds: {min, max, target, rho}`` (copyscope.config.AdaptiveSeeds). The seeds are
0, 1, 2, ...; round ``k`` audits the first ``m_k`` of them (``seed_rounds``: 4, 6, 8, 12, 16, ...
up to ``max``), every coalition on the same seeds (common random numbers). A round is an ordinary
audit of ``m_k`` seeds: the images of the earlier rounds come from the image cache and their
scores from the feature cache, so each round generates only its new seeds, and a later run with
a larger ``max`` (or a fixed ``seeds: m``) reuses every image.

After each round the headline metric's per-seed pseudo-values go through
:func:`copyscope.shapley.sequential.look` at the level the round spends (alpha spending,
``alpha = 1 - estimator.confidence``). The audit stops when every game's look stops: the verdict
is decided (the leader is above zero and above every other player), every headline interval is
narrower than ``target``, or the round reached ``max``.

The report is the last round's audit, with three changes:

* ``report["adaptive"]``: the settings, the planned rounds, every look (seeds, images so far,
  images generated in the round, the spent level, the per-player intervals, p-values and the
  leader's paired tests) and why it stopped, with the one-line summary the terminal and the HTML
  show ("adaptive seeds: stopped after 8 seeds (round 3 of 5): decided");
* the headline metric's Shapley entries carry the sequential intervals and tests of the stopping
  look: ``ci95`` is the look's simultaneous interval (all players, all looks: coverage >=
  ``confidence``), ``p_value`` the look's one-sided t test, and ``p_holm`` the sequentially
  adjusted p-value ``min(1, p * n * alpha / alpha_k)``, below ``alpha`` exactly when the look
  calls the player significant (so every view marks significance by the sequential rule);
  ``sequential: true`` marks them;
* ``generation``: ``generated`` sums the rounds; ``cached`` is the rest of the images the last
  round used.

The other metrics, the per-work games and the share intervals keep the fixed-design numbers of
the last round's seeds: they claim no significance (sensitivity analysis) but are not corrected
for the stopping either (said in the report's ``adaptive.note``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from .errors import CopyscopeError

__all__ = ["adaptive_spec", "check_adaptive", "run_adaptive", "adaptive_line"]


def adaptive_spec(zoo):
    """The zoo's AdaptiveSeeds, or None for a fixed seed count or list."""
    from .config.generation import AdaptiveSeeds

    seeds = zoo.spec.generation.seeds
    return seeds if isinstance(seeds, AdaptiveSeeds) else None


def check_adaptive(zoo, estimator) -> None:
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


def _restrict(prep, m: int):
    """The prepared audit on the first ``m`` seeds of its plan."""
    plan = prep.plan
    keep = set(plan.seeds[:m])
    sub_plan = dataclasses.replace(plan, items=[it for it in plan.items if it.seed in keep], seeds=list(plan.seeds[:m]))
    return dataclasses.replace(prep, plan=sub_plan)


def _headline_look(game: dict, alpha_k: float, last: bool, target: float | None):
    from .shapley.inference import worths_zero_tol
    from .shapley.sequential import look

    head = game.get("headline")
    sec = (game.get("metrics") or {}).get(head)
    names = list(game["players"])
    per_seed = (sec or {}).get("per_seed")
    if sec is None or per_seed is None or any(v is None for n in names for v in per_seed.get(n, [None])):
        raise CopyscopeError(f"adaptive seeds: the headline metric {head!r} of base {game['base']!r} has no finite "
                             "per-seed values; give a fixed number of seeds")
    values = np.array([sec["shapley"][n]["value"] for n in names], dtype=float)
    pseudo = np.array([per_seed[n] for n in names], dtype=float)
    worths = [abs(v) for v in (sec.get("coalitions") or {}).values() if v is not None]
    return look(values, pseudo, alpha_k, last, target, worths_zero_tol(max(worths, default=0.0))), names, head


def run_adaptive(prep, run_games: Callable[[object], dict], on_event: Callable[[str], None] = lambda msg: None) -> dict:
    """Audit ``prep`` in rounds of seeds; ``run_games(prepared)`` is one fixed-seed audit returning
    its report (copyscope.audit._run_games). Returns the last round's report with the sequential
    headline (module docstring)."""
    from .shapley.sequential import seed_rounds, spending

    spec = adaptive_spec(prep.zoo)
    confidence = prep.zoo.spec.estimator.confidence
    alpha = 1.0 - confidence
    rounds = seed_rounds(spec.min, spec.max)
    levels = spending(rounds, alpha, spec.rho)
    looks, generated, report = [], 0, None
    for k, m in enumerate(rounds):
        on_event(f"adaptive seeds: round {k + 1} of {len(rounds)}, {m} seeds")
        report = run_games(_restrict(prep, m))
        generated += int(report["generation"]["generated"])
        last = k == len(rounds) - 1
        games, stops = {}, []
        for g in report["games"]:
            lk, names, head = _headline_look(g, float(levels[k]), last, spec.target)
            games[g["base"]] = {"metric": head, **lk.to_dict(names), "_look": lk, "_names": names}
            stops.append(lk.stop)
        images = sum(len(keys) for g in report["games"] for keys in (g.get("images") or {}).values())
        looks.append({"round": k + 1, "seeds": m, "images": images,
                      "generated": int(report["generation"]["generated"]), "alpha": float(levels[k]), "games": games})
        if all(stops):
            break
    final = looks[-1]
    reasons = {base: g["reason"] or "max seeds" for base, g in final["games"].items()}
    reason = next(iter(reasons.values())) if len(set(reasons.values())) == 1 else \
        "; ".join(f"base {b}: {r}" for b, r in reasons.items())
    for g in report["games"]:
        entry = final["games"][g["base"]]
        _sequential_headline(g, entry.pop("_look"), entry.pop("_names"), alpha)
    for lk in looks[:-1]:
        for entry in lk["games"].values():
            entry.pop("_look"), entry.pop("_names")
    report["generation"]["generated"] = generated
    report["generation"]["cached"] = max(final["images"] - generated, 0)
    report["adaptive"] = {
        "min": spec.min, "max": spec.max, "target": spec.target, "rho": spec.rho, "alpha": alpha,
        "planned_rounds": rounds, "spending": [float(x) for x in levels],
        "stopped_after": final["seeds"], "round": final["round"], "rounds_planned": len(rounds), "reason": reason,
        "images": final["images"], "looks": looks,
        "rule": ("alpha spending alpha_k = alpha * ((m_k / max)**rho - (m_{k-1} / max)**rho); each test of a look at "
                 "alpha_k / n (n players): decided when the leader's one-sided t test of > 0 and its paired t tests "
                 "against every other player (per-seed differences) all reject; intervals two-sided at 1 - alpha_k / n, "
                 "simultaneous over players and looks (copyscope/shapley/sequential.py)"),
        "note": ("the headline metric's intervals and tests are the sequential ones of the stopping look (valid whenever "
                 "the audit stops); the other metrics, per-work games and share intervals are fixed-design numbers on "
                 "the stopped seeds, not corrected for the stopping; the sequential t tests assume roughly symmetric "
                 "per-seed contributions: with strongly left-skewed seed noise (skewness -2) simulated all-null audits "
                 "called some player significant in about 1 in 3 (docs/estimation.md, Adaptive seeds)"),
    }
    report["adaptive"]["line"] = adaptive_line(report)
    report["settings"]["test"] = ("headline: sequential (adaptive seeds): " + report["adaptive"]["rule"]
                                  + "; other metrics: " + report["settings"]["test"])
    return report


def _sequential_headline(game: dict, lk, names: list[str], alpha: float) -> None:
    """Replace the headline metric's intervals and tests by those of the stopping look."""
    sec = game["metrics"][game["headline"]]
    n = len(names)
    for i, name in enumerate(names):
        e = sec["shapley"][name]
        p = float(lk.p_values[i])
        e["ci95"] = [float(lk.ci[i, 0]), float(lk.ci[i, 1])]
        e["p_value"] = p
        e["p_holm"] = min(1.0, p * n * alpha / lk.alpha) if lk.alpha > 0 else 1.0
        e["sequential"] = True
    sec["inference"] = "sequential (adaptive seeds): see report['adaptive']"


def adaptive_line(report: dict) -> str | None:
    """'adaptive seeds: stopped after 8 seeds (round 3 of 5): decided' (None without adaptive seeds)."""
    a = report.get("adaptive")
    if not isinstance(a, dict):
        return None
    return (f"adaptive seeds: stopped after {a.get('stopped_after')} seeds (round {a.get('round')} of "
            f"{a.get('rounds_planned')}): {a.get('reason')}")
