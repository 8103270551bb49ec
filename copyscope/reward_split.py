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
seeds (the resampled seed indices of copyscope.game.bootstrap_indices, shared by all coalitions).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .coalitions import coalition_key, report_order
from .errors import CopyscopeError
from .analysis_io import finite_or_none as _f

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

MODEL = "model"


# ---------------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------------
def within_work_scores(sims: np.ndarray, work_of_ref: Sequence[str], works: Sequence[str], within: str = "max") -> np.ndarray:
    """(n_images, len(works)) similarity of each image to each work: max (or mean) over the work's
    reference columns of an (n_images, n_refs) similarity matrix."""
    s = np.asarray(sims, dtype=float)
    work_of_ref = list(work_of_ref)
    if s.ndim != 2 or s.shape[1] != len(work_of_ref):
        raise CopyscopeError(f"similarity rows have {s.shape[-1]} columns for {len(work_of_ref)} reference images")
    cols = []
    for w in works:
        mask = np.asarray([x == w for x in work_of_ref])
        if not mask.any():
            raise CopyscopeError(f"work {w!r} has no reference image")
        cols.append(s[:, mask].max(axis=1) if within == "max" else s[:, mask].mean(axis=1))
    return np.stack(cols, axis=1)


def masked_bootstrap_means(scores: np.ndarray, keep: np.ndarray, boot: np.ndarray) -> np.ndarray:
    """(1 + B,) mean of ``scores`` (n_prompts, n_seeds) over kept items: column 0 on all seeds,
    column b on the resampled seed indices ``boot[b - 1]`` (a seed drawn twice counts twice). A
    replicate in which no kept item was drawn is NaN."""
    scores = np.asarray(scores, dtype=float)
    keep = np.asarray(keep, dtype=bool)
    if scores.shape != keep.shape or scores.ndim != 2:
        raise CopyscopeError(f"scores {scores.shape} and keep {keep.shape} must both be (n_prompts, n_seeds)")
    w = keep.astype(float)
    out = [np.sum(w * scores) / w.sum() if w.sum() > 0 else np.nan]
    if len(boot):
        boot = np.asarray(boot, dtype=int).reshape(-1, scores.shape[1])
        ws = w[:, boot]  # (P, B, S)
        num = (ws * scores[:, boot]).sum(axis=(0, 2))
        den = ws.sum(axis=(0, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out.extend(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
    return np.asarray(out, dtype=float)


def coalition_worths(
    scores: Mapping[tuple[bool, ...], np.ndarray], keep: np.ndarray, boot: np.ndarray
) -> tuple[dict[tuple[bool, ...], np.ndarray], np.ndarray]:
    """Worth rows (1 + B',) per coalition from per-item scores (n_prompts, n_seeds), using only kept
    items. Replicates without any kept item are dropped from every coalition; returns the table and
    the boolean mask of the B replicates kept."""
    rows = {c: masked_bootstrap_means(s, keep, boot) for c, s in scores.items()}
    if not rows:
        raise CopyscopeError("no coalition scores")
    ok = np.all(np.stack([np.isfinite(r[1:]) for r in rows.values()]), axis=0) if len(boot) else np.zeros(0, bool)
    if not all(np.isfinite(r[0]) for r in rows.values()):
        raise CopyscopeError("no work item is kept: every image was dropped by the recognisability filter")
    return {c: np.concatenate([[r[0]], r[1:][ok]]) for c, r in rows.items()}, ok


def recognisable_by_similarity(artist_sims: np.ndarray, threshold: float) -> np.ndarray:
    """Images (rows) whose similarity to some artist's work (columns) is >= threshold."""
    s = np.asarray(artist_sims, dtype=float)
    return (s >= float(threshold)).any(axis=1)


def recognisable_by_zero_shot(probs: np.ndarray, artist_cols: Sequence[int], threshold: float | None = None) -> np.ndarray:
    """Images whose artist CLIP recognises among all labels (artists' and default labels).

    ``threshold=None``: the most probable label is one of ``artist_cols``; a number: the
    probability of some artist's label is >= threshold."""
    p = np.asarray(probs, dtype=float)
    cols = np.asarray(list(artist_cols), dtype=int)
    if threshold is None:
        return np.isin(p.argmax(axis=1), cols)
    return (p[:, cols] >= float(threshold)).any(axis=1)


def percent_split(contributions: np.ndarray) -> np.ndarray:
    """Column-wise ``100 * max(x, 0) / sum(max(x, 0))`` over recipients (rows); NaN in a column
    where no recipient contributes positively."""
    x = np.asarray(contributions, dtype=float)
    pos = np.maximum(x, 0.0)
    tot = pos.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 * pos / tot
    return np.where(tot > 0, out, np.nan)


def _interval(rep: np.ndarray, point: float, level: float) -> tuple[float | None, float | None]:
    rep = rep[np.isfinite(rep)]
    if rep.size == 0 or not np.isfinite(point):
        return None, None
    a = 1.0 - level
    lo, hi = np.quantile(rep, [a / 2, 1 - a / 2])
    return float(min(lo, point)), float(max(hi, point))


def split_reward(
    table: Mapping[tuple[bool, ...], object],
    artist_names: Sequence[str],
    *,
    model: str = "empty_coalition",
    estimator=None,
    budget: int | None = None,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """The reward split from a worth table: coalition of artists (tuple of bools) -> worth, a scalar
    or (1 + B,) with bootstrap replicate columns. The table must hold the empty and the full
    coalition and every coalition ``estimator`` asks for (default: exact Shapley, all 2**n).

    Returns ``{"model": {...}, "artists": {name: {...}}, ...}`` where each recipient has its
    contribution ``value`` (the model: v(empty) or its veto-player Shapley value; an artist: its
    Shapley value phi_i), ``share`` in percent with a bootstrap ``low``/``high``, and the artists
    their value's ``ci``. Shares sum to 100 (see the module docstring for the rule).
    """
    from .shapley import ExactShapley, Game

    names = list(artist_names)
    n = len(names)
    if n < 1:
        raise CopyscopeError("a reward split needs at least one artist")
    if MODEL in names:
        raise CopyscopeError(f"{MODEL!r} is reserved for the model; rename that prompt player")
    rows = {tuple(bool(x) for x in k): np.atleast_1d(np.asarray(v, dtype=float)) for k, v in table.items()}
    empty, full = (False,) * n, (True,) * n
    for c, what in ((empty, "empty"), (full, "full")):
        if c not in rows:
            raise CopyscopeError(f"the worth table has no {what} coalition")
    estimator = estimator or ExactShapley()
    if model == "empty_coalition":
        game = Game.from_table(rows, names, n_players=n)
    elif model == "veto_player":
        width = len(rows[empty])
        vt = {}
        for c, v in rows.items():
            vt[(True,) + c] = v
            vt[(False,) + c] = np.zeros(width)
        game = Game.from_table(vt, [MODEL] + names, n_players=n + 1)
    else:
        raise CopyscopeError(f"unknown model rule {model!r}: use empty_coalition or veto_player")
    est = estimator.estimate(game, budget=budget, seed=seed)
    contrib = np.column_stack([est.values, est.replicates]) if est.replicates is not None else est.values[:, None]
    if model == "empty_coalition":  # the model's row: v(empty)
        contrib = np.vstack([rows[empty][None, : contrib.shape[1]], contrib])
    pct = percent_split(contrib)
    ci = est.ci(level)
    offset = 0 if model == "empty_coalition" else 1

    def recipient(k: int) -> dict:
        lo, hi = _interval(pct[k, 1:], pct[k, 0], level)
        vlo, vhi = _interval(contrib[k, 1:], contrib[k, 0], level)
        return {"value": _f(contrib[k, 0]), "value_ci": None if vlo is None else [vlo, vhi], "share": _f(pct[k, 0]), "low": lo, "high": hi}

    artists = {}
    for i, name in enumerate(names):
        r = recipient(i + 1)
        if ci is not None:
            r["value_ci"] = [_f(ci[i + offset, 0]), _f(ci[i + offset, 1])]
        artists[name] = r
    shares = pct[:, 0]
    return {
        "model_rule": model,
        "estimator": {"method": est.method, "coalitions_evaluated": int(est.n_evaluated)},
        "v_empty": _f(rows[empty][0]),
        "v_full": _f(rows[full][0]),
        "efficiency_gap": _f(contrib[:, 0].sum() - rows[full][0]),
        "model": recipient(0),
        "artists": artists,
        "sum_percent": _f(np.nansum(shares)) if np.isfinite(shares).any() else None,
        "n_replicates": int(contrib.shape[1] - 1),
        "level": level,
    }


# ---------------------------------------------------------------------------------------------------
# the analysis on a zoo
# ---------------------------------------------------------------------------------------------------
def run_reward_split(
    zoo_path: str | Path,
    out: str | Path | None = None,
    *,
    metric: str | None = None,
    allow_pickle: bool = False,
    on_event: Callable[[str], None] | None = None,
) -> dict:
    """Run the reward split on every base of a zoo; write reward_split.json; return it."""
    from .analysis_specs import RewardSplitSpec
    from .config import load_zoo
    from .audit import check_model_sources
    from .engine import CoalitionEngine, GenerationStats, ensure_images, resolve_device
    from .game import bootstrap_indices, gray_rank
    from .analysis_io import analysis_dirs, embed_cached, write_analysis
    from .metrics import build_metrics
    from .plan import make_plan
    from .score import ReferenceSet, Scorer
    from .shapley import get_estimator

    on_event = on_event or (lambda msg: None)
    t0 = time.perf_counter()
    zoo = load_zoo(zoo_path)
    s = zoo.spec
    rs = s.reward_split or RewardSplitSpec()
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

    out_dir, cache = analysis_dirs(zoo, out, "reward-split")
    device = resolve_device(s.generation.device)
    spec_metric = metric if metric is not None else rs.metric
    try:
        (m,) = build_metrics([spec_metric], s.backbones, device=device, allow_pickle=allow_pickle)
    except CopyscopeError as exc:
        raise CopyscopeError(str(exc), where=zoo.where("reward_split", "metric")) from None
    if m.kind != "per_image":
        raise zoo.fail(f"metric {m.name!r} compares sets of images; the reward split needs a per-image metric (e.g. clip, dinov2, ssim)", "reward_split", "metric")
    ok, why = m.availability()
    if not ok:
        raise zoo.fail(f"metric {m.name!r} is unavailable: {why}", "reward_split", "metric")
    check_model_sources(zoo, allow_pickle)
    refs = ReferenceSet.from_zoo(zoo)
    rec = rs.recognisability
    labels = [rs.labels.get(p.name, p.text) for p in players] + list(rs.default_labels)
    zs = None
    if rec.method == "zero_shot":
        from .clip_zero_shot import load_zero_shot

        zs = load_zero_shot(s.backbones, device=device, allow_pickle=allow_pickle, where=zoo.where("backbones"))

    plan = make_plan(zoo)
    est_spec = s.estimator
    n = len(players)
    n_seeds = len(plan.seeds)
    n_prompts = len(plan.items) // n_seeds
    boot = bootstrap_indices(n_seeds, est_spec.bootstrap, est_spec.seed)
    within = "mean" if s.aggregate == "mean_mean" else "max"
    artist_works = [work_of[nm] for nm in names]
    n_est = n + (rs.model == "veto_player")  # the veto-player rule adds the model as a player
    try:
        estimator = get_estimator(est_spec.method, n_est, est_spec.budget)
        planned = estimator.plan(n_est, est_spec.budget, est_spec.seed)
    except CopyscopeError as exc:
        raise CopyscopeError(str(exc), where=zoo.where("estimator")) from None
    if rs.model == "veto_player":
        planned = planned[:, 1:]
    needed = {tuple(bool(x) for x in row) for row in planned} | {(False,) * n, (True,) * n}
    needed_sorted = sorted(needed, key=gray_rank)
    exact = estimator.method == "exact"

    scorer = Scorer([m], cache, refs, s.aggregate)
    stats = GenerationStats()
    games = []
    for game in plan.games:
        prompt_idx = [i for i, p in enumerate(game.players) if p.kind == "prompt"]

        def members(c: tuple[bool, ...]) -> tuple[bool, ...]:
            full = [True] * game.n_players  # the model: base and every add-on
            for i, on in zip(prompt_idx, c):
                full[i] = on
            return tuple(full)

        on_event(f"reward split: base {game.base.name}, {len(needed_sorted)} coalition(s) x {len(plan.items)} image(s)")
        engine = CoalitionEngine(zoo, game, allow_pickle=allow_pickle, on_event=on_event)
        keys = ensure_images(engine, cache, [members(c) for c in needed_sorted], plan.items, stats)
        stats.switches += engine.switches
        engine.release()
        item_scores: dict[tuple[bool, ...], np.ndarray] = {}
        artist_scores: dict[tuple[bool, ...], np.ndarray] = {}
        for c in needed_sorted:
            rows = scorer.rows(m, keys[members(c)])
            per_artist = within_work_scores(rows, refs.work_of, artist_works, within)  # (items, n)
            artist_scores[c] = per_artist
            item_scores[c] = per_artist.mean(axis=1).reshape(n_prompts, n_seeds)

        full_c = (True,) * n
        full_keys = keys[members(full_c)]
        detail: list[dict] = []
        if rec.method == "zero_shot":
            probs = zs.probabilities(embed_cached(zs, cache, full_keys), labels)
            keep = recognisable_by_zero_shot(probs, range(n), rec.threshold)
            for j, it in enumerate(plan.items):
                top = int(probs[j].argmax())
                detail.append({"prompt": it.prompt, "seed": it.seed, "kept": bool(keep[j]), "top_label": labels[top],
                               "top_probability": _f(probs[j, top]), "best_artist_probability": _f(probs[j, :n].max())})
        elif rec.method == "similarity":
            sims = artist_scores[full_c]
            keep = recognisable_by_similarity(sims, rec.threshold)
            for j, it in enumerate(plan.items):
                detail.append({"prompt": it.prompt, "seed": it.seed, "kept": bool(keep[j]),
                               "best_artist": names[int(sims[j].argmax())], "best_similarity": _f(sims[j].max())})
        else:
            keep = np.ones(len(plan.items), bool)
            detail = [{"prompt": it.prompt, "seed": it.seed, "kept": True} for it in plan.items]
        n_kept = int(keep.sum())
        recognisability = {
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
            "n_images": len(plan.items),
            "n_kept": n_kept,
            "n_dropped": len(plan.items) - n_kept,
            "items": detail,
        }
        if n_kept == 0:
            raise zoo.fail(
                f"no image has a recognisable artist: all {len(plan.items)} full-prompt image(s) were dropped by the "
                f"{rec.method} filter; lower reward_split.recognisability.threshold or set method: none",
                "reward_split", "recognisability",
            )
        keep2 = keep.reshape(n_prompts, n_seeds)
        table, used = coalition_worths(item_scores, keep2, boot)
        split = split_reward(table, names, model=rs.model, estimator=estimator, budget=est_spec.budget,
                             seed=est_spec.seed, level=est_spec.confidence)
        per_image = None
        if exact:
            per_image = []
            for j, it in enumerate(plan.items):
                if not keep[j]:
                    continue
                p_i, s_i = divmod(j, n_seeds)
                t = {c: item_scores[c][p_i, s_i] for c in needed_sorted}
                one = split_reward(t, names, model=rs.model, level=est_spec.confidence)
                per_image.append({
                    "prompt": it.prompt, "seed": it.seed,
                    "model": one["model"]["share"],
                    "artists": {nm: one["artists"][nm]["share"] for nm in names},
                })
        games.append({
            "base": game.base.name,
            "artists": names,
            "works": work_of,
            "fragments": {p.name: p.text for p in players},
            "coalitions": {coalition_key(names, c): _f(v[0]) for c, v in sorted(table.items(), key=lambda kv: report_order(kv[0]))},
            "images": {coalition_key(names, c): keys[members(c)] for c in needed_sorted},
            "recognisability": recognisability,
            "bootstrap_used": int(used.sum()),
            "split": split,
            "per_image": per_image,
        })

    result = {
        "analysis": "reward_split",
        "method": "Glinsky & Sokolsky 2024, Shapley Values-Powered Framework for Fair Reward Split in Content Produced by GenAI",
        "zoo": s.name,
        "config_sha256": zoo.sha256,
        "metric": {"name": m.name, "description": m.description, "config": json.loads(m.config_id())},
        "worth": "v(S) = mean over kept (prompt, seed) items of the mean over artists of the similarity of the image "
        "generated with the fragments of S to the artist's work",
        "model_rule": rs.model,
        "aggregate_within_work": within,
        "prompts": [p.model_dump() for p in s.prompts],
        "seeds": plan.seeds,
        "level": est_spec.confidence,
        "bootstrap_requested": est_spec.bootstrap,
        "games": games,
        "generation": {"generated": stats.generated, "cached": stats.cached, "seconds": round(stats.seconds, 3)},
    }
    return write_analysis(result, out_dir, "reward_split.json", t0)


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
            t.add_row(label, "n/a" if r["share"] is None else f"{r['share']:.1f}", iv,
                      "n/a" if r["value"] is None else f"{r['value']:+.4f}")

        row("model (" + ("v(empty)" if sp["model_rule"] == "empty_coalition" else "veto player") + ")", sp["model"])
        for name, r in sp["artists"].items():
            row(f"{name} ({g['works'][name]})", r)
        tables.append(t)
    return tables
