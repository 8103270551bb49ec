"""The Controls section of the HTML view and its sentences (terminal, summary): whether the headline metric was
shown to detect copying in this audit's own pipeline, the positive controls' dose-response, the headline rule's
choice, each component against the placebo, and the equivalent img2img strengths."""

from __future__ import annotations

from pathlib import Path

from . import plots
from .htmlkit import _img, _table, cached_image, esc, fmt_p, num, player_label, td


def controls_section(controls: dict, metrics: dict, names: list[str], rule: str) -> dict:
    """The game's positive controls with the headline rule's choice (copyscope.controls.headline) and, for the
    chosen metric, each player's Shapley value as an img2img strength (copyscope.controls.sensitivity)."""
    from ..controls.headline import choose_headline
    from ..controls.sensitivity import equivalent_strength
    from ..common.finite import is_finite
    from .headline import HEADLINE_PREFERENCE, headline_metric

    computed = [m for m, sec in metrics.items() if all(is_finite(e.get("value")) for e in sec["shapley"].values())]
    if rule == "auto":
        choice = choose_headline(controls["metrics"], computed, HEADLINE_PREFERENCE)
    else:
        m = headline_metric(metrics)
        choice = {"metric": m, "rule": "fixed", "why": f"{m}: the global preference (controls.headline: fixed)",
                  "candidates": {}}
    head = choice["metric"]
    equivalent = None
    if head in controls["metrics"]:
        dose = controls["metrics"][head]["dose_response"]
        equivalent = {p: equivalent_strength(metrics[head]["shapley"][p]["value"], dose) for p in names}
    return {**controls, "headline": choice, "equivalent_strength": equivalent}


def controls_sentence(game: dict) -> str | None:
    """In words: was the headline metric shown to detect copying here? (None: the audit ran no controls)."""
    c = game.get("controls")
    if not c:
        return None
    head = game.get("headline")
    s = (c.get("metrics") or {}).get(head)
    strengths = ", ".join(f"{x:g}" for x in c.get("strengths") or [])
    if s is None:
        return (f"The headline metric {head} has no per-image controls (a set metric): whether it detects copying in "
                "this setting is not shown by this audit.")
    auc, ci = s.get("auc"), s.get("auc_ci") or [None, None]
    nums = f"AUC {num(auc, '.2f')}, {num(ci[0], '.2f')} to {num(ci[1], '.2f')}"
    if s.get("blind"):
        return (f"The headline metric {head} was NOT shown to detect copying in this setting: it does not separate "
                f"img2img copies of the work (strengths {strengths}) from the same img2img of generic images ({nums}).")
    return (f"The headline metric {head} was shown to detect copying in this setting: it separates img2img copies of "
            f"the work made by this base (strengths {strengths}) from the same img2img of generic images ({nums}).")


def equivalent_phrase(eq: dict | None) -> str:
    if not eq or eq.get("strength") is None:
        return "-"
    s = f"{eq['strength']:.2g}"
    return {"at most": f"≤ {s} (beyond the strongest control)", "at least": f"≥ {s} (below the weakest control)"}.get(
        eq.get("bound"), s)


def _placebo_table(game: dict, alpha: float) -> str:
    head = game.get("headline")
    section = (game.get("metrics") or {}).get(head) or {}
    if section.get("vs_own_placebo"):
        return _swap_table(game, head, section["vs_own_placebo"], alpha)
    vs = section.get("vs_placebo")
    if not vs:
        return ""
    rows = [[td(player_label(game, p)), td(num(e["value"]), True),
             td(f"[{num(e['ci95'][0])}, {num(e['ci95'][1])}]", True), td(fmt_p(e["p_holm"]), True),
             td("yes" if e["beats"] else "no")] for p, e in vs.items()]
    return ("<p>Every component against the <b>placebo</b> LoRA (as strong as a real LoRA, with no content): "
            "a component is claimed as copying only if it also beats the placebo.</p>"
            + _table(["component", f"value − placebo ({head})", "interval", "p (Holm)", "beats the placebo"], rows))


def _swap_table(game: dict, head: str, vs: dict, alpha: float) -> str:
    """controls.placebo: swap: each LoRA against its own placebo put in its place, alone and in the full pipeline."""
    change = game.get("placebo_swap_change") or {}
    rows = []
    for p, e in vs.items():
        ctx = e.get("contexts") or {}
        cells = [td(num((ctx.get(c) or {}).get(k)), True) for c in ("alone", "full") for k in ("lora_effect", "placebo_effect")]
        pixels = (change.get(p) or {}).get("alone") or {}
        rows.append([td(player_label(game, p)), *cells, td(num(e["value"]), True),
                     td(f"[{num(e['ci95'][0])}, {num(e['ci95'][1])}]", True), td(fmt_p(e["p_holm"]), True),
                     td(_beats_word(e, alpha)), td(f"{num(pixels.get('lora'), '.2f')} / {num(pixels.get('placebo'), '.2f')}")])
    return ("<p>Each LoRA against its own <b>placebo</b> (a LoRA with its layers and strengths and no content), put "
            "in its place alone on the base and in the full pipeline: a LoRA is claimed as copying only if, averaged "
            "over the two, its images are closer to the work than its placebo's. Effect: what the LoRA adds to the "
            f"coalition without it; the placebo's: what its placebo adds in the same place ({esc(head)}). Pixels "
            "changed: the mean absolute change of the images, alone, by the LoRA and by its placebo; a placebo that "
            "changes them much less than its LoRA is a weak control. \"t test only\": the t test alone finds it, the "
            "claim's rule does not (yet: more seeds).</p>"
            + _table(["LoRA", "alone: effect", "alone: placebo's", "full: effect", "full: placebo's",
                      "LoRA − placebo", "interval", "p (Holm)", "beats its placebo", "pixels changed: LoRA / placebo"],
                     rows))


def _alpha(report: dict) -> float:
    return 1.0 - (report.get("settings") or {}).get("confidence", 0.95)


def _beats_word(e: dict, alpha: float) -> str:
    if e.get("beats"):
        return "yes"
    t = e.get("t") or {}
    return "t test only" if (t.get("p_holm") is not None and t["p_holm"] < alpha and e.get("value", 0) > 0) else "no"


def section_controls(report: dict, game: dict, root: Path) -> str:
    c = game.get("controls")
    if not c:
        return ("<p class=\"muted\">No controls ran in this audit (controls.positive: false, or the base's family has no "
                "img2img pipeline in diffusers).</p>" + _placebo_table(game, _alpha(report)))
    parts = [f"<p><b>{esc(controls_sentence(game))}</b></p>"]
    choice = c.get("headline") or {}
    parts.append(f"<p>Headline metric: {esc(choice.get('why', ''))}.</p>")
    rows = []
    strengths = c.get("strengths") or []
    for m, s in (c.get("metrics") or {}).items():
        gaps = {f"{d['strength']:g}": d["gap"] for d in s.get("dose_response") or []}
        ci = s.get("auc_ci") or [None, None]
        rows.append([td(m + (" (headline)" if m == game.get("headline") else "")), td(num(s.get("auc"), ".2f"), True),
                     td(f"[{num(ci[0], '.2f')}, {num(ci[1], '.2f')}]", True), td("blind" if s.get("blind") else "responds")]
                    + [td(num(gaps.get(f"{x:g}")), True) for x in strengths])
    parts.append("<p>Positive controls: the work through this base's img2img at each strength, against the same img2img "
                 f"of {len(c.get('non_copy_sources') or [])} generic image(s), {len(c.get('seeds') or [])} seed(s). AUC: "
                 "how often a copy scores above a non-copy (0.5 = chance; below 0.7, or an interval reaching 0.5: blind). "
                 "Gap: the copies' mean score minus the non-copies' at that strength.</p>")
    parts.append(_table(["metric", "AUC", "interval", "verdict"] + [f"gap at {x:g}" for x in strengths], rows))
    curves = {m: [(d["strength"], d["gap"]) for d in s.get("dose_response") or []] for m, s in (c.get("metrics") or {}).items()}
    if curves:
        svg = plots.dose_response_svg(curves, "copies minus non-copies, by img2img strength")
        parts.append(f'<img src="{plots.data_uri(svg)}" alt="dose-response of each metric">')
    view = ((c.get("background_view") or {}).get("metrics") or {}).get(game.get("headline"))
    if view:
        from ..plan.coalitions import sorted_keys

        ordered = {k: view[k] for k in sorted_keys(list(view), game["players"]) if k in view}
        svg = plots.background_strip_svg(ordered, f"{game.get('headline')}: each coalition against the background")
        parts.append("<p>The background: each coalition's images against every generic image (grey) and against the "
                     "work (red). Copying shows as a red mark above the grey cloud; a change that moves both is "
                     f"generic.</p><img src=\"{plots.data_uri(svg)}\" alt=\"coalitions against the background\">")
    eq = c.get("equivalent_strength")
    if eq:
        parts.append("<p>Each component's contribution under the headline, as the img2img strength whose copies gain as "
                     "much (lower strength = closer copy):</p>"
                     + _table(["component", "equivalent img2img strength"],
                              [[td(player_label(game, p)), td(equivalent_phrase(e))] for p, e in eq.items()]))
    parts.append(_control_images(c, root))
    parts.append(_placebo_table(game, _alpha(report)))
    return "".join(parts)


def _control_images(c: dict, root: Path) -> str:
    """The first seed's control images: one row per source (the work, then the generic images), one column per strength."""
    rows = []
    for work, by_source in (c.get("images") or {}).items():
        for source, by_strength in by_source.items():
            cells = [td(f"{work}: copy" if source == "work" else f"non-copy: {source.removeprefix('builtin:')}")]
            for s in c.get("strengths") or []:
                keys = by_strength.get(f"{s:g}") or [None]
                uri, why = cached_image(root, keys[0])
                cells.append(f"<td>{_img(uri, why, f'{source} at {s:g}')}</td>")
            rows.append(cells)
    return _table(["source"] + [f"strength {s:g}" for s in c.get("strengths") or []], rows) if rows else ""
