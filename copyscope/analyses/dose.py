"""``copyscope dose``: how a component's copying grows with its strength (dose-response).

For one player of the zoo (a LoRA's ``weight``, a ControlNet's ``conditioning_scale``, an IP-Adapter's
``scale``: the kind's ``strength_field``) and a list of strengths, each base's pipeline generates the zoo's
prompts and seeds with the player at each strength, in two settings:

* alone: the base with only this player (the curve starts at the bare base);
* with the rest: every other player of the game on at its zoo strength (the full pipeline).

The worth is the audit's, under one per-image metric (default: the first per-image metric of the headline
preference, phash): each image's score as the audit's scorer makes it (the zoo's ``aggregate:`` over references
and works, its ``worth:`` variant), averaged over prompts, one value per seed. The contribution at strength w is paired per
seed against the same setting without the player (copyscope.analyses.dose_stats). The result names the smallest
strength whose contribution is significant (one-sided t test, Holm across the strengths, at the zoo's
``estimator.confidence``), a provider could cap the component below it. Images are cached like any other
(the strength is part of the image key), so an audit of the same zoo reuses the strength-1 images.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..common.errors import CopyscopeError
from .dose_stats import contribution_curve
from .harness import open_analysis

MAX_WEIGHTS = 64


def parse_weights(text: str) -> list[float]:
    """``"0,0.25,0.5"`` -> [0.0, 0.25, 0.5]: finite, distinct, at most MAX_WEIGHTS; one line on anything else."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        raise CopyscopeError(f"{text!r} is not a comma-separated list of numbers; expected e.g. 0,0.5,1",
                             where="--weights") from None
    if not weights or len(weights) > MAX_WEIGHTS or not all(np.isfinite(weights)) or len(set(weights)) != len(weights):
        raise CopyscopeError(f"{text!r}: expected 1 to {MAX_WEIGHTS} distinct finite strengths, e.g. 0,0.5,1",
                             where="--weights")
    return sorted(weights)


def _default_metric(zoo) -> str:
    from ..report.headline import HEADLINE_PREFERENCE
    from ..score.metrics.registry import REGISTRY

    return next(m for m in HEADLINE_PREFERENCE if m in REGISTRY and REGISTRY[m].kind == "per_image")


def _per_seed_worths(scorer, metric, keys: list[str], n_prompts: int, n_seeds: int) -> np.ndarray:
    """One worth per seed: the audit's per-image score (``Scorer.per_image_scores``: the zoo's aggregation over
    references and works, and its worth variant), averaged over prompts."""
    return np.asarray(scorer.per_image_scores(metric, keys)).reshape(n_prompts, n_seeds).mean(axis=0)


def _dose_game(ctx, game, player: str, weights: Sequence[float], plan, scorer, metric, stats) -> dict:
    from ..generate import CoalitionEngine, ensure_images

    idx = game.names.index(player)
    n_seeds = len(plan.seeds)
    n_prompts = len(plan.items) // n_seeds
    base_player = [p.kind == "base" for p in game.players]
    alone_off = tuple(base_player)  # the bare base (its player on when the base is a player)
    alone_on = tuple(b or i == idx for i, b in enumerate(base_player))
    full_on = tuple(True for _ in game.players)
    full_off = tuple(i != idx for i in range(game.n_players))
    engine = CoalitionEngine(ctx.zoo, game, allow_pickle=ctx.allow_pickle, on_event=ctx.on_event)
    field = type(engine.player(player)).strength_field
    configured = getattr(engine.player(player).spec, field)
    ctx.on_event(f"dose: base {game.base.name}, {player} at {len(weights)} strength(s) x {len(plan.items)} image(s) x 2")
    try:
        keys = ensure_images(engine, ctx.cache, [alone_off, full_off], plan.items, stats)
        images: dict[str, dict[float, list[str]]] = {"alone": {}, "with_rest": {}}
        for w in weights:
            engine.set_strength(player, w)
            got = ensure_images(engine, ctx.cache, [alone_on, full_on], plan.items, stats)
            images["alone"][w], images["with_rest"][w] = got[alone_on], got[full_on]
    finally:
        stats.switches += engine.switches
        engine.release()

    def curve(setting: str, without_keys: list[str]) -> dict:
        without = _per_seed_worths(scorer, metric, without_keys, n_prompts, n_seeds)
        with_w = [_per_seed_worths(scorer, metric, images[setting][w], n_prompts, n_seeds) for w in weights]
        out = contribution_curve(weights, with_w, without, ctx.zoo.spec.estimator.confidence)
        out["without"] = {"worth": float(without.mean()), "images": without_keys}
        for pt, w in zip(out["points"], weights):
            pt["images"] = images[setting][w]
        return out

    return {
        "base": game.base.name,
        "players": game.names,
        "strength_field": field,
        "configured_strength": configured,
        "alone": curve("alone", keys[alone_off]),
        "with_rest": curve("with_rest", keys[full_off]),
    }


def run_dose(zoo_path: str | Path, player: str, weights: Sequence[float], out: str | Path | None = None, *,
             metric: str | None = None, allow_pickle: bool = False,
             on_event: Callable[[str], None] | None = None) -> dict:
    """The dose-response of ``player`` on every base of a zoo; writes dose.json and dose.svg; returns the result."""
    from ..config import load_zoo
    from ..generate import GenerationStats
    from ..plan.games import make_plan
    from ..players import KINDS
    from ..score.scorer import Scorer
    from ..score.frames import video_frame_width

    t0 = time.perf_counter()
    zoo = load_zoo(zoo_path)
    plan = make_plan(zoo)
    names = sorted({p.name: p.kind for g in plan.games for p in g.players}.items())
    kinds = dict(names)
    if player not in kinds:
        raise CopyscopeError(f"no player {player!r} in {zoo.path}; players are {', '.join(n for n, _ in names)}",
                             where="--player")
    kind = KINDS.get(kinds[player])
    if kind is None or kind.strength_field is None:
        strong = sorted(k for k, c in KINDS.items() if c.strength_field)
        raise CopyscopeError(f"player {player!r} is a {kinds[player]}, which has no strength to vary; expected a "
                             f"player of kind {', '.join(strong)}", where="--player")
    ctx = open_analysis(zoo, out, "dose", allow_pickle=allow_pickle, on_event=on_event, t0=t0)
    m = ctx.per_image_metric(metric if metric is not None else _default_metric(zoo), "metrics",
                             purpose="the dose-response")
    ctx.check_models()
    ctx.refs  # noqa: B018  (load and check the references before any model)
    stats = GenerationStats()
    background = None
    if zoo.spec.worth != "raw":  # a specific worth, as the audit scores it: against the zoo's background
        from ..controls.background import background_from_zoo

        background = background_from_zoo(zoo, ctx.refs.images)
    scorer = Scorer([m], ctx.cache, ctx.refs, zoo.spec.aggregate, background=background, worth=zoo.spec.worth,
                    frame_width=video_frame_width(zoo))
    games = [_dose_game(ctx, g, player, list(weights), plan, scorer, m, stats) for g in plan.games if player in g.names]
    result = {
        "analysis": "dose",
        "zoo": zoo.spec.name,
        "config_sha256": zoo.sha256,
        "player": player,
        "kind": kinds[player],
        "weights": list(weights),
        "metric": {"name": m.name, "description": m.description, "config": json.loads(m.config_id())},
        "worth": "per seed: the audit's per-image score (the similarity of each image to the protected works, "
                 f"aggregated as aggregate: {zoo.spec.aggregate} says; worth: {zoo.spec.worth}), averaged over prompts",
        "contribution": "per seed: worth with the player at the strength minus worth without it, same prompts and seeds",
        "level": zoo.spec.estimator.confidence,
        "test": "one-sided t test of a positive contribution over seeds, Holm-adjusted across the strengths above 0",
        "seeds": plan.seeds,
        "games": games,
        "generation": {"generated": stats.generated, "cached": stats.cached, "seconds": round(stats.seconds, 3)},
    }
    return ctx.write(result, "dose.json", extra={"dose.svg": _plot(result)})


def _plot(result: dict) -> str:
    from ..report.plots import strength_curves_svg

    return strength_curves_svg(
        {f"{g['base']}: {setting.replace('_', ' ')}": [(pt["weight"], pt["contribution"]["mean"], pt["contribution"]["ci"])
                                                      for pt in g[setting]["points"]]
         for g in result["games"] for setting in ("alone", "with_rest")},
        f"{result['player']}: contribution against {result['games'][0]['strength_field'] if result['games'] else 'strength'}",
        ylabel=f"contribution ({result['metric']['name']})")


def dose_tables(result: dict) -> list:
    """One rich table per base: strength, contribution with its interval, Holm p, alone and with the rest."""
    from rich.table import Table

    tables = []
    level = int(round(100 * result["level"]))
    for g in result["games"]:
        t = Table(title=f"dose-response of {result['player']} ({g['strength_field']}) — base {g['base']}, "
                        f"metric {result['metric']['name']}",
                  caption="contribution = worth with the player at the strength minus without it, paired per seed; "
                          f"* Holm p < {1 - result['level']:.2g}. Smallest significant strength: alone "
                          f"{g['alone']['smallest_significant_weight']}, with the rest "
                          f"{g['with_rest']['smallest_significant_weight']}")
        for col in ("strength", "alone", f"{level}% interval", "with the rest", f"{level}% interval "):
            t.add_column(col, justify="right")
        for a, r in zip(g["alone"]["points"], g["with_rest"]["points"]):
            alpha = 1 - result["level"]
            t.add_row(f"{a['weight']:g}", _cell(a, alpha), _interval(a), _cell(r, alpha), _interval(r))
        tables.append(t)
    return tables


def _cell(pt: dict, alpha: float) -> str:
    m = pt["contribution"]["mean"]
    star = "*" if pt.get("p_holm") is not None and pt["p_holm"] < alpha else ""
    return "n/a" if m is None else f"{m:+.4f}{star}"


def _interval(pt: dict) -> str:
    low, high = pt["contribution"]["ci"]
    return "" if low is None or high is None else f"[{low:+.4f}, {high:+.4f}]"
