"""The cheaper placebo design (``controls: {placebo: swap}``): each LoRA against its own placebo, in its place.

The placebo player (``placebo: true``, copyscope.controls.placebo) joins the game, so exact Shapley evaluates twice
the coalitions. This design adds two coalitions' images per LoRA instead. LoRA L's own spectrum-matched placebo P
(:func:`copyscope.controls.placebo.write_placebo`: L's layers, each layer's singular values, random directions; L's
weight) takes L's place in the two coalitions that carry the largest Shapley weights (1/n each): L alone on the base
(``alone``) and the full pipeline (``full``, every player). Each pair of pipelines differs only in what L's layers
carry, so the per-seed difference

    d = ( [v(L) - v(P)] + [v(N) - v(N - L + P)] ) / 2

measures what L's *content* adds beyond a content-free change of the same strength, where it matters most. With
two players it is exactly L's Shapley value minus that of its placebo put in its place; with more, the two largest
terms of that difference. It is tested ``> 0`` with the audit's significance rule (the t test on the seeds' values
and, where the metric's range bounds them, the distribution-free betting test), Holm-corrected across the LoRAs; a
LoRA is claimed as copying only if it also beats its own placebo (``beats_placebo`` on its Shapley entry,
copyscope.report.headline.significant). The two contexts are reported apart as well.

Cost: two coalitions' images per LoRA (plus the unswapped ``alone`` and ``full`` coalitions if the estimator did not
evaluate them), and one more load of the pipeline per LoRA (after the game's own pipeline is released; with adaptive
seeds both are held at once). The fusion has no swap comparison: its worth is a z-score across the game's coalitions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np

SWAP = "swap"


def uses_swap(zoo) -> bool:
    return zoo.spec.controls.placebo == SWAP


def prepare_swap_placebos(zoo, cache_root: Path) -> None:
    """With ``controls.placebo: swap``: write (or reuse) every LoRA's placebo in the cache's ``placebo/`` folder and
    set ``zoo.placebo`` to what report.json records ({"design": "swap", "loras": {name: file summary}}). A LoRA that
    cannot have one (not a plain down/up LoRA, not a local .safetensors file) is a one-line error naming it."""
    from .placebo import placebo_summary, placebo_file

    if not uses_swap(zoo):
        return
    if zoo.spec.controls.placebo_from is not None:
        raise zoo.fail("placebo_from picks the placebo player's source (placebo: true); with placebo: swap every LoRA "
                       "has its own placebo: remove placebo_from", "controls", "placebo_from")
    if not zoo.spec.loras:
        raise zoo.fail("placebo: swap puts each LoRA's placebo in its place, and the zoo lists no LoRA; list one under "
                       "loras: or set controls.placebo: false", "controls", "placebo")
    loras = {}
    for i, lora in enumerate(zoo.spec.loras):
        dst, stats = placebo_file(zoo, i, cache_root, ("loras", i, "model"))
        loras[lora.name] = placebo_summary(stats, dst)
    zoo.placebo = {"design": SWAP, "loras": loras}


def swapped_zoo(zoo, name: str):
    """A copy of ``zoo`` whose LoRA ``name`` loads its placebo file (same name, same weight): its pipeline is the
    game's with that LoRA's content replaced."""
    loras = zoo.spec.loras
    index = [lo.name for lo in loras].index(name)
    swapped = copy.copy(zoo)
    swapped.spec = zoo.spec.model_copy(deep=True)
    placebo = zoo.placebo["loras"][name]["file"]
    swapped.spec.loras[index] = loras[index].model_copy(update={"model": placebo, "weight_name": None, "revision": None})
    return swapped


CONTEXTS = ("alone", "full")


def swap_contexts(game, lora: str) -> dict[str, tuple[bool, ...]]:
    """The coalitions where ``lora``'s placebo takes its place: alone on the base (with the base when it is a player)
    and the full pipeline."""
    alone = tuple(p.name == lora or p.kind == "base" for p in game.players)
    return {"alone": alone, "full": tuple(True for _ in game.players)}


def unswapped_coalitions(game) -> list[tuple[bool, ...]]:
    """Every coalition the comparison needs without a placebo: each LoRA's contexts and the coalitions without the
    LoRA (for the effects shown beside the test)."""
    out = []
    for p in game.players:
        if p.kind == "lora":
            for members in swap_contexts(game, p.name).values():
                out += [members, without(game, members, p.name)]
    return list(dict.fromkeys(out))


def run_swap_placebos(zoo, game, cache, scorer, items, n_seeds: int, boot: np.ndarray, stats, *, resampling: str,
                      allow_pickle: bool, conditioning, on_event: Callable[[str], None], image_keys: dict,
                      on_generate: Callable[[int, int], None] | None = None) -> dict:
    """Generate (cache first) and score, for every LoRA player of ``game``, its two contexts with its placebo in
    its place. ``image_keys``: the game's coalitions' images (the contexts without a placebo among them). Returns
    {lora: {"images": {context: [cache keys]}, "worths": {context: {metric: worth row}}, "image_change": {context:
    {"lora": x, "placebo": y}}}}: how much the LoRA and its placebo each change the images of the coalition without
    them (:func:`image_change`)."""
    from ..game.evaluator import CoalitionEvaluator
    from ..generate import CoalitionEngine

    out = {}
    for player in game.players:
        if player.kind != "lora":
            continue
        on_event(f"placebo swap: {player.name}'s placebo in its place, alone and in the full pipeline")
        contexts = swap_contexts(game, player.name)
        engine = CoalitionEngine(swapped_zoo(zoo, player.name), game, allow_pickle=allow_pickle, on_event=on_event,
                                 conditioning=conditioning)
        try:
            ev = CoalitionEvaluator(game, engine, cache, scorer, items, n_seeds, boot, stats, on_generate,
                                    resampling=resampling)
            ev.prefetch(list(contexts.values()))
            out[player.name] = {"images": {c: list(ev.image_keys[m]) for c, m in contexts.items()},
                                "worths": {c: dict(ev.worths[m]) for c, m in contexts.items()}}
            out[player.name]["image_change"] = {
                c: image_change(cache, image_keys.get(m), ev.image_keys[m], image_keys.get(without(game, m, player.name)))
                for c, m in contexts.items()}
        finally:
            engine.release()
    return out


def without(game, members: tuple[bool, ...], lora: str) -> tuple[bool, ...]:
    return tuple(m and p.name != lora for m, p in zip(members, game.players))


def image_change(cache, with_keys, swapped_keys, without_keys) -> dict | None:
    """How much a LoRA and its placebo each change the images: the mean absolute pixel difference (0 to 1) of the
    images with each from the same seeds' images without either. A placebo that changes the images much less than
    its LoRA is a weak control (docs/metrics.md)."""
    if not with_keys or not without_keys:
        return None

    def change(keys) -> float:
        return float(np.mean([np.abs(cache.load(a).astype(np.float64) - cache.load(b)).mean()
                              for a, b in zip(keys, without_keys)]))

    return {"lora": change(with_keys), "placebo": change(swapped_keys)}


def against_own_placebos(section_worths: dict, swap: dict, metric: str, keys: dict, bound: float | None, level: float,
                         rule: str) -> dict | None:
    """Every LoRA against its own placebo under one metric.

    ``section_worths``: {coalition key: worth row (all seeds, then the leave-one-seed-out columns)} of the game;
    ``swap``: :func:`run_swap_placebos`'s result; ``keys``: {lora: {context: (key with it, key without it)}};
    ``bound``: the per-seed bound of one worth difference (the metric's range width; None: no distribution-free
    test). Returns {lora: {value, contexts: {context: {value, with, swapped, lora_effect, placebo_effect}}, ci95,
    p_value, p_holm, beats, t: {p_value, p_holm}, per_seed}}, or None without leave-one-seed-out columns (bootstrap
    intervals) or for a metric the swap did not score (the fusion)."""
    from ..estimate.shapley.bounded import bounded_seed_inference, claim
    from ..estimate.shapley.inference import jackknife_pseudo_values, seed_inference
    from ..estimate.shapley.pvalues_shares import adjust_p_values

    names, diffs, parts = [], [], []
    for n, res in swap.items():
        rows = {}
        for c in CONTEXTS:
            with_key, without_key = keys[n][c]
            mine, swapped = section_worths.get(with_key), (res["worths"].get(c) or {}).get(metric)
            if mine is None or swapped is None or len(mine) < 3 or np.shape(mine) != np.shape(swapped):
                return None
            without = section_worths.get(without_key)
            rows[c] = (np.asarray(mine, dtype=float), np.asarray(swapped, dtype=float),
                       None if without is None else np.asarray(without, dtype=float))
        names.append(n)
        parts.append(rows)
        diffs.append(np.mean([mine - swapped for mine, swapped, _ in rows.values()], axis=0))
    if not names:
        return None
    diffs = np.stack(diffs)  # (loras, 1 + seeds): the mean of the two contexts' differences
    if not np.isfinite(diffs).all():
        return None
    values = diffs[:, 0]
    pseudo = np.stack([jackknife_pseudo_values(d[0], d[1:]) for d in diffs])  # per seed: that seed's own difference
    t = seed_inference(values, pseudo, None, level)
    ci, p, _ = claim(rule, t, bounded_seed_inference(pseudo, bound, level))
    adj = adjust_p_values(p, "holm")
    adj_t = adjust_p_values(t[1], "holm")  # the t test alone, as Shapley entries keep it (the benchmark's split)
    alpha = 1.0 - level
    out = {}
    for i, n in enumerate(names):
        contexts = {}
        for c, (mine, swapped, without) in parts[i].items():
            contexts[c] = {"value": float(mine[0] - swapped[0]), "with": float(mine[0]), "swapped": float(swapped[0]),
                           "lora_effect": None if without is None else float(mine[0] - without[0]),
                           "placebo_effect": None if without is None else float(swapped[0] - without[0])}
        out[n] = {
            "value": float(values[i]),
            "contexts": contexts,
            "ci95": [float(ci[i, 0]), float(ci[i, 1])],
            "p_value": float(p[i]),
            "p_holm": float(adj[i]),
            "beats": bool(adj[i] < alpha and values[i] > 0),
            "t": {"p_value": float(t[1][i]), "p_holm": float(adj_t[i])},
            "per_seed": [float(x) for x in pseudo[i]],
        }
    return out


def annotate_swap(metrics: dict, worths_by_metric: dict, swap: dict | None, names: list[str], keys: dict,
                  bounds: dict, level: float, rule: str) -> None:
    """Add ``vs_own_placebo`` to every metric section and ``beats_placebo`` to each LoRA's Shapley entry (the
    other players have no placebo of their own and keep their claims as they are)."""
    if not swap:
        return
    for metric, section in metrics.items():
        vs = against_own_placebos(worths_by_metric.get(metric, {}), swap, metric, keys, bounds.get(metric), level, rule)
        section["vs_own_placebo"] = vs
        for n, row in (vs or {}).items():
            if n in section["shapley"] and n in names:
                section["shapley"][n]["beats_placebo"] = row["beats"]
