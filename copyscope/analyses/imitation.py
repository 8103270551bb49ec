"""Casper et al. (2023): does a base model have the *capacity* to imitate an artist?

Protocol (``copyscope imitation ZOO``, configured by the zoo's ``imitation:`` section):

1. For each artist, generate ``n_images`` images from ``template`` with the artist's name ("Artwork
   from <name>"), seeds ``first_seed .. first_seed + n - 1``, with the plain base (no add-ons unless
   ``imitation.addons`` names some). Generation goes through the audit's CoalitionEngine and image
   cache, so images are shared with other runs over the same cache.
2. Identification: CLIP zero-shot classification of every imitation among the labels
   ``template(name)`` of all artists plus the default labels ("Artwork", "Digital Artwork",
   "Artwork from the public domain"). Accuracy = share of an artist's imitations whose most probable
   label is that artist's; reported per artist and averaged over artists, beside
   * the random-name baseline: the same procedure with ``random_names`` as prompts and labels
     (names the model never learnt an artist for), and
   * chance: 1 / number of labels.
3. Matching: for each artist with a reference ``work``, the CLIP image similarity (cosine) of the
   work to each imitation; a one-sided Mann-Whitney U rank-sum test of "imitations of this artist
   are closer to the work than imitations of the other artists", Bonferroni-corrected over the
   artists tested (p_adj = min(1, m p)); the count of artists with p_adj < alpha. A control re-runs
   the test with works assigned to artists at random (the paper's control).

The statistics are pure numpy/scipy functions in :mod:`.imitation_stats`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..score.scorer import within_rule, within_work_scores
from .harness import embed_cached, open_analysis, refuse_videos
from .harness import finite_or_none as _f
from ..common.errors import CopyscopeError
from .imitation_stats import (  # noqa: F401  (the statistics, re-exported)
    accuracy_per_class, chance_accuracy, matching_control, matching_test, rank_sum_test, zero_shot_accuracy,
)

__all__ = [
    "accuracy_per_class",
    "chance_accuracy",
    "zero_shot_accuracy",
    "rank_sum_test",
    "matching_test",
    "matching_control",
    "run_imitation",
    "imitation_tables",
]


# ---------------------------------------------------------------------------------------------------
# the protocol on a zoo
# ---------------------------------------------------------------------------------------------------
def work_similarity(zs, refs, work: str, imitation_emb: np.ndarray, aggregate: str) -> np.ndarray:
    """(n_imitations,) cosine of each imitation to a work, over the work's images as the audit
    aggregates them (``aggregate``: the zoo's setting, or "max" / "mean")."""
    from .clip_zero_shot import normalise

    imgs = [im for im, w in zip(refs.images, refs.work_of) if w == work]
    ref = normalise(zs.embed(imgs))
    s = normalise(imitation_emb) @ ref.T
    return within_work_scores(s, [work] * len(imgs), [work], aggregate)[:, 0]


def _engine_for(zoo, base_name: str | None, addons: list[str], loc: tuple, allow_pickle: bool, on_event):
    """A CoalitionEngine over a one-coalition game: the base with ``addons`` switched on."""
    from ..generate import CoalitionEngine
    from ..plan.games import GamePlan, Player

    s = zoo.spec
    if base_name is None:
        base = s.bases[0]
    else:
        found = [b for b in s.bases if b.name == base_name]
        if not found:
            raise zoo.fail(f"unknown base {base_name!r}; bases are {[b.name for b in s.bases]}", *loc, "base")
        base = found[0]
    kinds = {c.name: "controlnet" for c in s.controlnets} | {lo.name: "lora" for lo in s.loras}
    players = []
    for i, name in enumerate(addons):
        if name not in kinds:
            raise zoo.fail(f"unknown add-on {name!r}; LoRAs and ControlNets are {sorted(kinds)}", *loc, "addons", i)
        if kinds[name] == "controlnet":
            cn = next(c for c in s.controlnets if c.name == name)
            if cn.conditioning.image is None:
                raise zoo.fail(f"ControlNet {name!r} needs a single 'conditioning.image' to be used here "
                               "(per-prompt/per-work conditioning has no prompt or work to follow)", *loc, "addons", i)
        players.append(Player(name, kinds[name]))
    game = GamePlan(base=base, players=players)
    return CoalitionEngine(zoo, game, allow_pickle=allow_pickle, on_event=on_event), tuple(True for _ in players)


def generate_named(engine, members, cache, template: str, names: list[str], seeds: list[int], stats) -> dict[str, list[str]]:
    """Images of ``template`` with each name, one per seed (counted in ``stats``); returns their
    cache keys per name."""
    from ..generate import ensure_images
    from ..plan.games import WorkItem

    items = [
        WorkItem(f"imitation{i}", template.replace("{name}", name), "", None, seed)
        for i, name in enumerate(names)
        for seed in seeds
    ]
    keys = ensure_images(engine, cache, [members], items, stats)[members]
    n = len(seeds)
    return {name: keys[i * n : (i + 1) * n] for i, name in enumerate(names)}


def _identify(zs, cache, template: str, names: list[str], default_labels: list[str], keys: dict[str, list[str]], n: int):
    """CLIP zero-shot identification of each name's ``n`` images among the names' labels and the
    default labels: (labels, owner per image, image embeddings, probabilities, zero_shot_accuracy)."""
    labels = [template.replace("{name}", x) for x in names] + list(default_labels)
    owner = np.repeat(np.arange(len(names)), n)
    emb = embed_cached(zs, cache, [k for x in names for k in keys[x]])
    probs = zs.probabilities(emb, labels)
    return labels, owner, emb, probs, zero_shot_accuracy(probs, owner, len(names))


def run_imitation(
    zoo_path: str | Path,
    out: str | Path | None = None,
    *,
    n_images: int | None = None,
    allow_pickle: bool = False,
    on_event: Callable[[str], None] | None = None,
) -> dict:
    """Run Casper et al.'s protocol on a zoo's ``imitation:`` section; write imitation.json; return it."""
    from ..config import load_zoo
    from ..generate import GenerationStats
    from .clip_zero_shot import load_zero_shot

    t0 = time.perf_counter()
    zoo = load_zoo(zoo_path)
    spec = zoo.spec.imitation
    if spec is None:
        raise CopyscopeError(
            "no 'imitation:' section; add e.g. imitation: {artists: [{name: \"Ada Painter\", work: ada}], "
            "random_names: [\"Jo Smith\"], n_images: 10} (see docs/analyses.md)",
            where=str(zoo.path),
        )
    if n_images is not None and n_images < 1:
        raise CopyscopeError(f"--n-images must be at least 1, got {n_images}")
    n = n_images or spec.n_images
    seeds = list(range(spec.first_seed, spec.first_seed + n))
    works = {r.name for r in zoo.spec.references}
    for i, a in enumerate(spec.artists):
        if a.work is not None and a.work not in works:
            raise zoo.fail(f"unknown work {a.work!r}; references are {sorted(works)}", "imitation", "artists", i, "work")
    refuse_videos(zoo, "copyscope imitation")
    ctx = open_analysis(zoo, out, "imitation", allow_pickle=allow_pickle, on_event=on_event, t0=t0)
    on_event, cache = ctx.on_event, ctx.cache
    engine, members = _engine_for(zoo, spec.base, spec.addons, ("imitation",), allow_pickle, on_event)
    # everything that can fail on input is checked before the first image is generated
    refs = ctx.refs if any(a.work for a in spec.artists) else None
    zs = load_zero_shot(zoo.spec.backbones, device=ctx.device, allow_pickle=allow_pickle, where=zoo.where("backbones"))

    artists = [a.name for a in spec.artists]
    stats = GenerationStats()
    on_event(f"generating {len(artists) * n} imitation image(s) ({len(artists)} artist(s) x {n} seed(s))")
    gen = generate_named(engine, members, cache, spec.template, artists, seeds, stats)
    random_gen = None
    if spec.random_names:
        on_event(f"generating {len(spec.random_names) * n} baseline image(s) ({len(spec.random_names)} random name(s))")
        random_gen = generate_named(engine, members, cache, spec.template, list(spec.random_names), seeds, stats)
    engine.release()

    on_event("classifying with CLIP")
    labels, owner, emb, probs, acc = _identify(zs, cache, spec.template, artists, spec.default_labels, gen, n)

    artist_rows = []
    for i, a in enumerate(spec.artists):
        mine = np.flatnonzero(owner == i)
        counts: dict[str, int] = {}
        for j in mine:
            lab = labels[int(acc["predicted"][j])]
            counts[lab] = counts.get(lab, 0) + 1
        artist_rows.append(
            {
                "name": a.name,
                "work": a.work,
                "label": labels[i],
                "accuracy": _f(acc["per_class"][i]),
                "mean_probability_correct": _f(acc["confidence"][i]),
                "predicted_counts": counts,
                "images": [
                    {
                        "seed": seeds[k],
                        "key": gen[a.name][k],
                        "predicted": labels[int(acc["predicted"][j])],
                        "probability_correct": _f(probs[j, i]),
                        "correct": bool(acc["correct"][j]),
                    }
                    for k, j in enumerate(mine)
                ],
            }
        )

    baseline = None
    if random_gen is not None:
        names = list(spec.random_names)
        r_labels, _, _, _, r_acc = _identify(zs, cache, spec.template, names, spec.default_labels, random_gen, n)
        baseline = {
            "names": names,
            "labels": r_labels,
            "accuracy_per_name": {x: _f(r_acc["per_class"][i]) for i, x in enumerate(names)},
            "average_accuracy": _f(r_acc["mean"]),
            "chance": r_acc["chance"],
            "images": {x: random_gen[x] for x in names},
        }

    matching = None
    tested = [(i, a) for i, a in enumerate(spec.artists) if a.work is not None]
    within = within_rule(zoo.spec.aggregate)
    if tested:
        sim = np.stack([work_similarity(zs, refs, a.work, emb, zoo.spec.aggregate) for _, a in tested])
        rows = [i for i, _ in tested]
        mt = matching_test(sim, owner, rows, spec.alpha)
        control = matching_control(sim, owner, rows, spec.alpha, n_perm=100, seed=0)
        matching = {
            "test": "one-sided Mann-Whitney U (scipy.stats.mannwhitneyu, alternative='greater'): CLIP cosine of the "
            "artist's work to imitations of the artist vs to imitations of the other artists",
            "similarity": f"cosine of CLIP image embeddings; {within} over the work's reference images",
            "correction": "bonferroni",
            "alpha": spec.alpha,
            "m": mt["m"],
            "artists": [
                {
                    "name": a.name,
                    "work": a.work,
                    "U": _f(mt["U"][r]),
                    "p": _f(mt["p"][r]),
                    "p_bonferroni": _f(mt["p_bonferroni"][r]),
                    "significant": bool(mt["significant"][r]),
                    "mean_similarity_own": _f(sim[r, owner == i].mean()),
                    "mean_similarity_other": _f(sim[r, owner != i].mean()) if (owner != i).any() else None,
                    "n_own": int((owner == i).sum()),
                    "n_other": int((owner != i).sum()),
                }
                for r, (i, a) in enumerate(tested)
            ],
            "n_significant": mt["n_significant"],
            "control_random_assignment": control,
        }
        if len(artists) < 2:
            matching["note"] = "the matching test needs at least two artists (imitations of others to compare with)"

    result = {
        "analysis": "imitation",
        "method": "Casper et al. 2023, Measuring the Success of Diffusion Models at Imitating Human Artists",
        "zoo": zoo.spec.name,
        "config_sha256": zoo.sha256,
        "base": engine.game.base.name,
        "addons": list(spec.addons),
        "template": spec.template,
        "n_images": n,
        "seeds": seeds,
        "labels": labels,
        "default_labels": list(spec.default_labels),
        "clip": {"source": zs.source, "weights": zs.fingerprint().get("weights"), "logit_scale": zs.logit_scale},
        "identification": {
            "artists": artist_rows,
            "average_accuracy": _f(acc["mean"]),
            "chance": acc["chance"],
            "random_name_baseline": baseline,
        },
        "matching": matching,
        "generation": {"generated": stats.generated, "cached": stats.cached, "seconds": round(stats.seconds, 3)},
    }
    return ctx.write(result, "imitation.json")


def imitation_tables(result: dict) -> list:
    """Rich tables: identification accuracy per artist (with baselines) and the matching test."""
    from rich.table import Table

    ident = result["identification"]
    match = {r["name"]: r for r in (result["matching"] or {}).get("artists", [])}
    t = Table(title=f"imitation (Casper et al.) — base {result['base']}, {result['n_images']} image(s) per artist")
    for col in ("artist", "accuracy", "p(correct)", "work", "p rank-sum", "p Bonferroni", ""):
        t.add_column(col, justify="left" if col in ("artist", "work") else "right")
    fmt = lambda x, spec=".2f": "n/a" if x is None else format(x, spec)  # noqa: E731
    for row in ident["artists"]:
        m = match.get(row["name"])
        t.add_row(
            row["name"], fmt(row["accuracy"]), fmt(row["mean_probability_correct"]), row["work"] or "",
            fmt(m["p"], ".3g") if m else "", fmt(m["p_bonferroni"], ".3g") if m else "",
            "*" if m and m["significant"] else "",
        )
    t.add_section()
    t.add_row("average", fmt(ident["average_accuracy"]), "", "", "", "", "")
    base = ident["random_name_baseline"]
    if base:
        t.add_row("random-name baseline", fmt(base["average_accuracy"]), "", "", "", "", "")
    t.add_row(f"chance (1/{len(result['labels'])})", fmt(ident["chance"], ".3f"), "", "", "", "", "")
    tables = [t]
    if result["matching"]:
        mt = result["matching"]
        ctrl = mt["control_random_assignment"]
        extra = "" if ctrl.get("mean_significant") is None else f"; random-assignment control: {ctrl['mean_significant']:.2f} on average"
        t.caption = (
            f"* = work matched to its artist's imitations (Bonferroni p < {mt['alpha']}): "
            f"{mt['n_significant']} of {mt['m']} artist(s){extra}"
        )
    return tables
