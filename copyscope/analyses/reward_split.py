"""Glinsky & Sokolsky (2024): split the reward for generated images between artists and the model.

Each generated image is a coalition of *content* (the zoo's prompt template, which the model renders
on its own) and *styles* (the zoo's ``prompt_players``: one fragment per artist, e.g. "by Ada
Painter"). For a coalition S of artists, the pipeline generates x_S from the template with the
fragments of S (``render_prompt``), for every (prompt, seed) work item; all coalitions share the
seeds (common random numbers). The pipeline is the zoo's base with every add-on switched on (the
"model" being rewarded is the whole configured pipeline).

Worth (``copyscope reward-split``, configured by the zoo's optional ``reward_split:`` section):

    s_i(x)  = similarity of image x to artist i's work (the reference named like the prompt player,
              or ``reward_split.works``): any per-image metric, CLIP image cosine by default; max over
              the work's reference images (mean with ``aggregate: mean_mean``)
    v(S)    = mean over kept work items of  mean_i s_i(x_S)      (i over all artists of the game)

so v(N) is how strongly the full-prompt image resembles the artists' works, v(empty) how strongly
the content-only image (no artist named) already does. Shapley values phi_i of the artists split
v(N) - v(empty). Our reading of the paper's model share: the model earns what no artist explains,
v(empty) (``model: empty_coalition``, the default); so the split of v(N) is

    model: v(empty) / v(N),    artist i: phi_i / v(N)          (in percent; sums to 100)

Recipients with a negative contribution get 0 and the others are renormalised (a reward is never
negative). ``model: veto_player`` instead makes the model a player without which nothing is
generated (worth 0): it then also shares in every artist's marginal gain.

Recognisability filter: an image whose artists nobody can recognise should not pay them. The
full-prompt image of each work item is tested (CLIP zero-shot: most probable label among the
artists' labels and the default labels is an artist, or an artist's probability >= threshold; or
the metric's similarity to some artist's work >= threshold); items that fail are dropped from every
coalition (so all coalitions still share the same items). Intervals: percentile bootstrap over
seeds (the resampled seed indices of copyscope.game.evaluator.bootstrap_indices, shared by all coalitions).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..plan.coalitions import coalition_key, report_order
from ..common.errors import CopyscopeError
from ..score.scorer import within_rule, within_work_scores
from .harness import embed_cached, finite_or_none as _f, open_analysis, refuse_videos
from .reward_split_stats import (  # noqa: F401  (the statistics, re-exported)
    MODEL, coalition_worths, masked_bootstrap_means, percent_split, recognisable_by_similarity,
    recognisable_by_zero_shot, split_reward,
)

__all__ = [
    "within_work_scores",
    "masked_bootstrap_means",
    "coalition_worths",
    "recognisable_by_similarity",
    "recognisable_by_zero_shot",
    "percent_split",
    "split_reward",
    "run_reward_split",
    "reward_split_tables",
]


# ---------------------------------------------------------------------------------------------------
# the analysis on a zoo
# ---------------------------------------------------------------------------------------------------
def _artists(zoo, rs) -> tuple[list[str], dict[str, str]]:
    """The artists (prompt players) and each one's reference work, checked against the zoo."""
    s = zoo.spec
    players = s.prompt_players
    if not players:
        raise zoo.fail(
            "reward-split needs prompt_players: one fragment per artist (e.g. {name: ada, text: \"by Ada Painter\"}) "
            "and a reference work per artist",
            "prompt_players",
        )
    names = [p.name for p in players]
    if MODEL in names:
        raise zoo.fail(f"the name {MODEL!r} is reserved for the model in a reward split", "prompt_players", names.index(MODEL), "name")
    works = {r.name for r in s.references}
    for section, mapping in (("works", rs.works), ("labels", rs.labels)):
        for key in mapping:
            if key not in names:
                raise zoo.fail(f"{key!r} is not a prompt player; prompt_players are {names}", "reward_split", section, key)
    work_of = {}
    for i, p in enumerate(players):
        w = rs.works.get(p.name, p.name)
        if w not in works:
            loc = ("reward_split", "works", p.name) if p.name in rs.works else ("prompt_players", i, "name")
            raise zoo.fail(
                f"no reference work {w!r} for artist {p.name!r}: add a reference named {p.name!r} or map it in "
                f"reward_split.works; references are {sorted(works)}",
                *loc,
            )
        work_of[p.name] = w
    return names, work_of


def _planned(zoo, rs, n: int):
    """(estimator, the artist coalitions to generate in Gray-code order): the estimator's own plan
    plus the empty and full coalitions (the veto-player rule plans over the model too)."""
    from ..plan.coalitions import gray_rank
    from ..plan.games import planned_coalitions
    from ..estimate.shapley import get_estimator

    est_spec = zoo.spec.estimator
    n_est = n + (rs.model == "veto_player")  # the veto-player rule adds the model as a player
    try:
        estimator = get_estimator(est_spec.method, n_est, est_spec.budget)
        planned = planned_coalitions(n_est, estimator, est_spec.budget, est_spec.seed)  # the audit's rule
    except CopyscopeError as exc:
        raise CopyscopeError(str(exc), where=zoo.where("estimator")) from None
    if rs.model == "veto_player":
        planned = [c[1:] for c in planned]
    needed = set(planned) | {(False,) * n, (True,) * n}
    return estimator, sorted(needed, key=gray_rank)


def _recognisability(rec, m, names: list[str], labels: list[str], items, full_scores: np.ndarray, probs) -> dict:
    """Which work items count (``keep``, a bool per item) and the filter's report section."""
    n = len(names)
    detail: list[dict] = []
    if rec.method == "zero_shot":
        keep = recognisable_by_zero_shot(probs, range(n), rec.threshold)
        for j, it in enumerate(items):
            top = int(probs[j].argmax())
            detail.append({"prompt": it.prompt, "seed": it.seed, "kept": bool(keep[j]), "top_label": labels[top],
                           "top_probability": _f(probs[j, top]), "best_artist_probability": _f(probs[j, :n].max())})
    elif rec.method == "similarity":
        keep = recognisable_by_similarity(full_scores, rec.threshold)
        for j, it in enumerate(items):
            detail.append({"prompt": it.prompt, "seed": it.seed, "kept": bool(keep[j]),
                           "best_artist": names[int(full_scores[j].argmax())], "best_similarity": _f(full_scores[j].max())})
    else:
        keep = np.ones(len(items), bool)
        detail = [{"prompt": it.prompt, "seed": it.seed, "kept": True} for it in items]
    n_kept = int(keep.sum())
    return {
        "keep": keep,
        "method": rec.method,
        "threshold": rec.threshold,
        "rule": {
            "zero_shot": "kept if the most probable CLIP zero-shot label is an artist's" if rec.threshold is None
            else f"kept if some artist's CLIP zero-shot probability >= {rec.threshold}",
            "similarity": f"kept if the full-prompt image's {m.name} similarity to some artist's work >= {rec.threshold}",
            "none": "every image kept",
        }[rec.method],
        "labels": labels if rec.method == "zero_shot" else None,
        "tested": "the full-prompt image (all artists) of each work item",
        "n_images": len(items),
        "n_kept": n_kept,
        "n_dropped": len(items) - n_kept,
        "items": detail,
    }


def _per_image_split(items, keep, item_scores: dict, coalitions, names: list[str], n_seeds: int, model: str, level: float) -> list[dict]:
    """The exact split of every kept image alone (its worth table over the coalitions)."""
    out = []
    for j, it in enumerate(items):
        if not keep[j]:
            continue
        p_i, s_i = divmod(j, n_seeds)
        one = split_reward({c: item_scores[c][p_i, s_i] for c in coalitions}, names, model=model, level=level)
        out.append({"prompt": it.prompt, "seed": it.seed, "model": one["model"]["share"],
                    "artists": {nm: one["artists"][nm]["share"] for nm in names}})
    return out


def _split_game(ctx, game, run) -> dict:
    """Generate (cache first) and score one base's coalitions of artists, filter, split; its section."""
    from ..generate import CoalitionEngine, ensure_images

    zoo, rs, names, needed, plan = ctx.zoo, run["rs"], run["names"], run["needed"], run["plan"]
    est_spec = zoo.spec.estimator
    n_seeds = len(plan.seeds)
    n_prompts = len(plan.items) // n_seeds
    prompt_idx = [i for i, p in enumerate(game.players) if p.kind == "prompt"]

    def members(c: tuple[bool, ...]) -> tuple[bool, ...]:
        full = [True] * game.n_players  # the model: base and every add-on
        for i, on in zip(prompt_idx, c):
            full[i] = on
        return tuple(full)

    ctx.on_event(f"reward split: base {game.base.name}, {len(needed)} coalition(s) x {len(plan.items)} image(s)")
    engine = CoalitionEngine(zoo, game, allow_pickle=ctx.allow_pickle, on_event=ctx.on_event)
    keys = ensure_images(engine, ctx.cache, [members(c) for c in needed], plan.items, run["stats"])
    run["stats"].switches += engine.switches
    engine.release()
    item_scores: dict[tuple[bool, ...], np.ndarray] = {}
    artist_scores: dict[tuple[bool, ...], np.ndarray] = {}
    for c in needed:
        rows = run["scorer"].rows(run["metric"], keys[members(c)])
        per_artist = within_work_scores(rows, ctx.refs.work_of, run["artist_works"], zoo.spec.aggregate)  # (items, n)
        artist_scores[c] = per_artist
        item_scores[c] = per_artist.mean(axis=1).reshape(n_prompts, n_seeds)

    full_c = (True,) * len(names)
    rec = rs.recognisability
    probs = None
    if rec.method == "zero_shot":
        probs = run["zero_shot"].probabilities(embed_cached(run["zero_shot"], ctx.cache, keys[members(full_c)]), run["labels"])
    recognisability = _recognisability(rec, run["metric"], names, run["labels"], plan.items, artist_scores[full_c], probs)
    keep = recognisability.pop("keep")
    if recognisability["n_kept"] == 0:
        raise zoo.fail(
            f"no image has a recognisable artist: all {len(plan.items)} full-prompt image(s) were dropped by the "
            f"{rec.method} filter; lower reward_split.recognisability.threshold or set method: none",
            "reward_split", "recognisability",
        )
    table, used = coalition_worths(item_scores, keep.reshape(n_prompts, n_seeds), run["boot"])
    split = split_reward(table, names, model=rs.model, estimator=run["estimator"], budget=est_spec.budget,
                         seed=est_spec.seed, level=est_spec.confidence)
    per_image = None
    if run["estimator"].method == "exact":
        per_image = _per_image_split(plan.items, keep, item_scores, needed, names, n_seeds, rs.model, est_spec.confidence)
    return {
        "base": game.base.name,
        "artists": names,
        "works": run["work_of"],
        "fragments": {p.name: p.text for p in zoo.spec.prompt_players},
        "coalitions": {coalition_key(names, c): _f(v[0]) for c, v in sorted(table.items(), key=lambda kv: report_order(kv[0]))},
        "images": {coalition_key(names, c): keys[members(c)] for c in needed},
        "recognisability": recognisability,
        "bootstrap_used": int(used.sum()),
        "split": split,
        "per_image": per_image,
    }


def run_reward_split(
    zoo_path: str | Path,
    out: str | Path | None = None,
    *,
    metric: str | None = None,
    allow_pickle: bool = False,
    on_event: Callable[[str], None] | None = None,
) -> dict:
    """Run the reward split on every base of a zoo; write reward_split.json; return it."""
    from ..config import load_zoo
    from ..generate import GenerationStats
    from ..game.evaluator import bootstrap_indices
    from ..plan.games import make_plan
    from ..score.scorer import Scorer
    from ..score.frames import video_frame_width
    from .specs import RewardSplitSpec

    t0 = time.perf_counter()
    zoo = load_zoo(zoo_path)
    s = zoo.spec
    rs = s.reward_split or RewardSplitSpec()
    names, work_of = _artists(zoo, rs)
    ctx = open_analysis(zoo, out, "reward-split", allow_pickle=allow_pickle, on_event=on_event, t0=t0)
    m = ctx.per_image_metric(metric if metric is not None else rs.metric, "reward_split", "metric", purpose="the reward split")
    ctx.check_models()
    ctx.refs  # noqa: B018  (load and check the references before any model)
    zero_shot = None
    if rs.recognisability.method == "zero_shot":
        from .clip_zero_shot import load_zero_shot

        refuse_videos(zoo, "reward_split.recognisability.method zero_shot")

        zero_shot = load_zero_shot(s.backbones, device=ctx.device, allow_pickle=allow_pickle, where=zoo.where("backbones"))

    plan = make_plan(zoo)
    est_spec = s.estimator
    estimator, needed = _planned(zoo, rs, len(names))
    run = {
        "rs": rs, "names": names, "work_of": work_of, "artist_works": [work_of[nm] for nm in names], "plan": plan,
        "needed": needed, "estimator": estimator, "metric": m, "zero_shot": zero_shot,
        "labels": [rs.labels.get(p.name, p.text) for p in s.prompt_players] + list(rs.default_labels),
        # intervals: percentile bootstrap over seeds, the same resampled seeds for every coalition
        "boot": bootstrap_indices(len(plan.seeds), est_spec.bootstrap, est_spec.seed),
        "scorer": Scorer([m], ctx.cache, ctx.refs, s.aggregate, frame_width=video_frame_width(ctx.zoo)), "stats": GenerationStats(),
    }
    games = [_split_game(ctx, game, run) for game in plan.games]
    stats = run["stats"]
    result = {
        "analysis": "reward_split",
        "method": "Glinsky & Sokolsky 2024, Shapley Values-Powered Framework for Fair Reward Split in Content Produced by GenAI",
        "zoo": s.name,
        "config_sha256": zoo.sha256,
        "metric": {"name": m.name, "description": m.description, "config": json.loads(m.config_id())},
        "worth": "v(S) = mean over kept (prompt, seed) items of the mean over artists of the similarity of the image "
        "generated with the fragments of S to the artist's work",
        "model_rule": rs.model,
        "aggregate_within_work": within_rule(s.aggregate),
        "prompts": [p.model_dump() for p in s.prompts],
        "seeds": plan.seeds,
        "level": est_spec.confidence,
        "bootstrap_requested": est_spec.bootstrap,
        "games": games,
        "generation": {"generated": stats.generated, "cached": stats.cached, "seconds": round(stats.seconds, 3)},
    }
    return ctx.write(result, "reward_split.json")


def reward_split_tables(result: dict) -> list:
    """One rich table per base: recipient, share % with its interval, contribution."""
    from rich.table import Table

    tables = []
    level = int(round(100 * result["level"]))
    for g in result["games"]:
        sp = g["split"]
        rec = g["recognisability"]
        t = Table(
            title=f"reward split (Glinsky & Sokolsky) — base {g['base']}, metric {result['metric']['name']}",
            caption=(
                f"{rec['n_kept']} of {rec['n_images']} image(s) kept by the {rec['method']} recognisability filter "
                f"({rec['n_dropped']} dropped); {level}% bootstrap intervals over seeds ({g['bootstrap_used']} resamples); "
                f"model rule: {sp['model_rule']}"
            ),
        )
        for col in ("recipient", "share %", f"{level}% interval", "contribution"):
            t.add_column(col, justify="left" if col == "recipient" else "right")

        def row(label: str, r: dict) -> None:
            iv = "" if r["low"] is None else f"[{r['low']:.1f}, {r['high']:.1f}]"
            t.add_row(label, "n/a" if r["share"] is None else f"{r['share']:.1f}", iv,  # noqa: B023 - called only in this iteration
                      "n/a" if r["value"] is None else f"{r['value']:+.4f}")

        row("model (" + ("v(empty)" if sp["model_rule"] == "empty_coalition" else "veto player") + ")", sp["model"])
        for name, r in sp["artists"].items():
            row(f"{name} ({g['works'][name]})", r)
        tables.append(t)
    return tables
