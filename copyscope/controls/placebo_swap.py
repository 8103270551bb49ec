"""The cheaper placebo design (``controls: {placebo: swap}``): each LoRA against its own placebo, in its place.

The placebo player (``placebo: true``, copyscope.controls.placebo) joins the game, so exact Shapley evaluates twice
the coalitions. This design adds one coalition's images per LoRA instead: the game's full pipeline N (every player)
with LoRA L's file replaced by L's own spectrum-matched placebo (:func:`copyscope.controls.placebo.write_placebo`:
L's layers, each layer's singular values, random directions; L's weight). Both pipelines differ only in what L's
layers carry, so the paired per-seed difference ``w(N) - w(N with L's placebo)`` measures what L's *content* adds
beyond a content-free change of the same strength, where L actually sits: beside every other component. It is tested
``> 0`` with the audit's significance rule (the t test on the seeds' values and, where the metric's range bounds
them, the distribution-free betting test), Holm-corrected across the LoRAs; a LoRA is claimed as copying only if it
also beats its own placebo (``beats_placebo`` on its Shapley entry, copyscope.report.headline.significant).

Cost: one coalition's images per LoRA, and one more load of the pipeline per LoRA (the swapped pipeline is built
after the game's own is released; with adaptive seeds both are held at once). The fusion has no swap comparison:
its worth is a z-score across the game's own coalitions.
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
    from .placebo import _summary, placebo_file

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
        loras[lora.name] = _summary(stats, dst)
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


def run_swap_placebos(zoo, game, cache, scorer, items, n_seeds: int, boot: np.ndarray, stats, *, resampling: str,
                      allow_pickle: bool, conditioning, on_event: Callable[[str], None],
                      on_generate: Callable[[int, int], None] | None = None) -> dict:
    """Generate (cache first) and score, for every LoRA player of ``game``, the full coalition with that LoRA's
    placebo in its place. Returns {lora: {"images": [cache keys], "worths": {metric: worth row}}}."""
    from ..game.evaluator import CoalitionEvaluator
    from ..generate import CoalitionEngine

    full = tuple(True for _ in game.players)
    out = {}
    for player in game.players:
        if player.kind != "lora":
            continue
        on_event(f"placebo swap: the full pipeline with {player.name}'s placebo in its place")
        engine = CoalitionEngine(swapped_zoo(zoo, player.name), game, allow_pickle=allow_pickle, on_event=on_event,
                                 conditioning=conditioning)
        try:
            ev = CoalitionEvaluator(game, engine, cache, scorer, items, n_seeds, boot, stats, on_generate,
                                    resampling=resampling)
            ev.prefetch([full])
            out[player.name] = {"images": list(ev.image_keys[full]), "worths": dict(ev.worths[full])}
        finally:
            engine.release()
    return out


def against_own_placebos(section_worths: dict, swap: dict, metric: str, full_key: str, without: dict,
                         bound: float | None, level: float, rule: str) -> dict | None:
    """Every LoRA against its own placebo under one metric.

    ``section_worths``: {coalition key: worth row (all seeds, then the leave-one-seed-out columns)} of the game;
    ``swap``: :func:`run_swap_placebos`'s result; ``full_key``: the full coalition's key; ``without``: {lora: the key
    of the full coalition without it}; ``bound``: the per-seed bound of one worth difference (the metric's range
    width; None: no distribution-free test). Returns {lora: {value, full, swapped, lora_effect, placebo_effect, ci95,
    p_value, p_holm, beats, t: {p_value, p_holm}, per_seed}}, or None without jackknife columns (bootstrap intervals) or for a metric the
    swap did not score (the fusion)."""
    from ..estimate.shapley.bounded import bounded_seed_inference, claim
    from ..estimate.shapley.inference import jackknife_pseudo_values, seed_inference
    from ..estimate.shapley.pvalues_shares import adjust_p_values

    full = section_worths.get(full_key)
    names = [n for n in swap if metric in swap[n]["worths"]]
    if full is None or not names or len(full) < 3:
        return None
    rows = [np.asarray(swap[n]["worths"][metric], dtype=float) for n in names]
    if any(r.shape != np.shape(full) for r in rows):
        return None
    full = np.asarray(full, dtype=float)
    diffs = np.stack([full - r for r in rows])  # (loras, 1 + seeds)
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
        alone = section_worths.get(without.get(n))
        out[n] = {
            "value": float(values[i]),  # w(N) - w(N with the placebo in the LoRA's place)
            "full": float(full[0]),
            "swapped": float(rows[i][0]),
            "lora_effect": float(full[0] - alone[0]) if alone is not None else None,  # w(N) - w(N without it)
            "placebo_effect": float(rows[i][0] - alone[0]) if alone is not None else None,
            "ci95": [float(ci[i, 0]), float(ci[i, 1])],
            "p_value": float(p[i]),
            "p_holm": float(adj[i]),
            "beats": bool(adj[i] < alpha and values[i] > 0),
            "t": {"p_value": float(t[1][i]), "p_holm": float(adj_t[i])},
            "per_seed": [float(x) for x in pseudo[i]],
        }
    return out


def annotate_swap(metrics: dict, worths_by_metric: dict, swap: dict | None, names: list[str], full_key: str,
                  without: dict, bounds: dict, level: float, rule: str) -> None:
    """Add ``vs_own_placebo`` to every metric section and ``beats_placebo`` to each LoRA's Shapley entry (the
    other players have no placebo of their own and keep their claims as they are)."""
    if not swap:
        return
    for metric, section in metrics.items():
        vs = against_own_placebos(worths_by_metric.get(metric, {}), swap, metric, full_key, without,
                                  bounds.get(metric), level, rule)
        section["vs_own_placebo"] = vs
        for n, row in (vs or {}).items():
            if n in section["shapley"] and n in names:
                section["shapley"][n]["beats_placebo"] = row["beats"]
