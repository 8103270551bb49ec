"""The Interactions section of the HTML view and its sentences: does a component copy more (or less) together with
another than the two do apart? Rendered from report.json's ``interactions`` of the headline metric (pairwise
Shapley interaction indices with t intervals over seeds and Holm-adjusted two-sided p-values across the pairs,
copyscope.estimate.shapley.interactions)."""

from __future__ import annotations

from .headline import headline_metric
from .htmlkit import _finite, _table, esc, fmt_p, metric_label, num, player_label, td
from .plots import data_uri, heatmap_svg


def _headline(game: dict) -> tuple[str | None, dict | None]:
    metric = game.get("headline") or headline_metric(list(game.get("metrics") or {}))
    sec = (game.get("metrics") or {}).get(metric) or {}
    return metric, sec.get("interactions")


def interaction_pairs(game: dict) -> list[dict]:
    """The headline metric's pairs: players, value, interval, Holm p (empty without interactions)."""
    _, inter = _headline(game)
    if not inter:
        return []
    names = inter["players"]
    return [{"a": names[i], "b": names[j], "value": v, "ci": ci, "p_holm": p}
            for (i, j), v, ci, p in zip(inter["pairs"], inter["values"], inter["ci"], inter["p_adjusted"])]


def interaction_sentences(report: dict, game: dict) -> list[str]:
    """One sentence per pair whose interaction is significant under the headline's t test (Holm p < 1 - confidence).
    The distribution-free test that claims about components rest on is not applied to interactions: the sentences
    say how components combine, they are not claims."""
    alpha = 1.0 - (report.get("settings") or {}).get("confidence", 0.95)
    metric, _ = _headline(game)
    out = []
    for r in interaction_pairs(game):
        if not (_finite(r["p_holm"]) and r["p_holm"] < alpha and _finite(r["value"])):
            continue
        a, b = player_label(game, r["a"]), player_label(game, r["b"])
        ci = r["ci"] or [None, None]
        how = ("together they raise similarity more than the sum of what each does alone" if r["value"] > 0 else
               "together they raise similarity less than the sum of what each does alone (one cancels or overrides "
               "the other)")
        out.append(f"{a} and {b} interact under {metric_label(metric or '')}: {num(r['value'], '+.3g')} "
                   f"[{num(ci[0])}, {num(ci[1])}], t test Holm p {fmt_p(r['p_holm'])}: {how}.")
    return out


def section_interactions(report: dict, game: dict) -> str:
    metric, inter = _headline(game)
    if not inter:
        return ("<p class=\"muted\">Not computed: pairwise interactions need every coalition (the exact estimator) "
                "and leave-one-seed-out intervals (<code>estimator.intervals: jackknife</code>).</p>")
    level = inter.get("level", 0.95)
    rows = [[td(player_label(game, r["a"])), td(player_label(game, r["b"])), td(num(r["value"], "+.3g"), True),
             td(f"[{num((r['ci'] or [None])[0])}, {num((r['ci'] or [None, None])[1])}]", True), td(fmt_p(r["p_holm"]), True)]
            for r in interaction_pairs(game)]
    table = _table(["component", "with", "interaction", f"{round(level * 100)}% interval", "Holm p (two-sided)"], rows)
    names = inter["players"]
    matrix = [[None] * len(names) for _ in names]
    for (i, j), v in zip(inter["pairs"], inter["values"]):
        matrix[i][j] = matrix[j][i] = v
    scale = max([abs(v) for v in inter["values"] if _finite(v)] or [1.0]) or 1.0
    svg = heatmap_svg([player_label(game, p) for p in names], matrix,
                      f"pairwise interactions ({metric_label(metric or '')})", vmax=scale, fmt="+.3f")
    said = interaction_sentences(report, game)
    lead = ("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in said) + "</ul>") if said else (
        "<p>No pair interacts significantly under the headline metric (t test, Holm-corrected across pairs).</p>")
    return (lead + table + f"<p><img class=\"plot\" alt=\"interaction heat map\" src=\"{data_uri(svg)}\"></p>"
            "<p class=\"muted\">Interaction of two components: the average, over the coalitions of the others, of how "
            "much more the two raise similarity together than the sum of what each raises alone (the Shapley "
            "interaction index of Grabisch and Roubens); positive: they copy more together, negative: one cancels or "
            "overrides the other. Intervals and p-values over seeds (leave-one-seed-out t), Holm-corrected across "
            f"the {len(inter['pairs'])} pairs, under the headline metric {esc(metric_label(metric or ''))}. The "
            "distribution-free test that claims about components also need is not applied to interactions: they "
            "describe how the components combine, they are not claims.</p>")
