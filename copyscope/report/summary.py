"""The Summary and Shapley-values sections of the HTML view: plain-language sentences per player
(significance claimed under the headline metric only) and the attribution tables."""

from __future__ import annotations

from typing import Iterable

from . import plots
from .headline import headline_metric, per_prompt_sentences, per_work_sentences, significant, t_only
from .htmlkit import _finite, _pct, _table, collapse_warnings, esc, fmt_p, metric_label, num, player_label, td

def _works_phrase(report: dict) -> str:
    works = list(report.get("works") or {})
    if len(works) == 1:
        return f"work {works[0]}"
    if not works:
        return "the reference works"
    agg = (report.get("settings") or {}).get("aggregate", "")
    return f"works {', '.join(works)} (combined: {agg})"


def summary_sentences(report: dict, game: dict, tested: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Plain-language sentences (unescaped text) per player, one per metric. ``tested``: the metrics
    whose significance may be claimed (default: all); the others' sentences state no test result."""
    settings = report.get("settings") or {}
    level = settings.get("confidence", 0.95)
    alpha = 1.0 - level
    lvl = f"{round(level * 100)}%"
    works = _works_phrase(report)
    out: dict[str, list[str]] = {}
    for p in game["players"]:
        who = player_label(game, p)
        sentences = []
        for m, sec in game["metrics"].items():
            e = sec["shapley"].get(p) or {}
            v, ci, ph = e.get("value"), e.get("ci95"), e.get("p_holm")
            share = (sec.get("split_percent") or {}).get(p) or {}
            under = f"under {metric_label(m)}"
            ci_txt = f"{lvl} interval [{num(ci[0])}, {num(ci[1])}]" if ci and _finite(ci[0]) and _finite(ci[1]) else "no interval"
            if not _finite(v):
                sentences.append(f"{who}: no value {under} (the estimate is undefined).")
                continue
            sv = f"Shapley value {num(v, '+.3g')}, {ci_txt}"
            if v > 0:
                s_txt = _pct(share.get("share"))
                if _finite(share.get("low")) and _finite(share.get("high")):
                    s_txt += f" [{share['low']:.0f}–{share['high']:.0f}%]"
                if tested is not None and m not in tested:
                    sentences.append(
                        f"{who} raises similarity to {works} {under} ({sv}; {s_txt} of the increase); sensitivity "
                        "analysis: no significance is claimed under this metric.")
                elif ph is None:
                    sentences.append(
                        f"{who} accounts for {s_txt} of the increase in similarity to {works} that the components cause "
                        f"{under} ({sv}); not tested for significance (no replicates over seeds).")
                elif ph < alpha:
                    sentences.append(
                        f"{who} accounts for {s_txt} of the increase in similarity to {works} that the components cause "
                        f"{under} ({sv}), p {_p_text(ph)} after Holm correction.")
                elif t_only(e, alpha):
                    sentences.append(
                        f"{who} raises similarity to {works} {under} ({sv}; {s_txt} of the increase). The t test alone "
                        f"finds it significant (p {_p_text(e['t']['p_holm'])} after Holm correction), but the "
                        f"distribution-free test does not confirm it from {settings.get('n_seeds')} seeds "
                        f"(p = {fmt_p(ph)}), so no significance is claimed: "
                        + _seeds_to_confirm(sec, v, alpha, len(game["players"])))
                else:
                    sentences.append(
                        f"{who} raises similarity to {works} {under} ({sv}; {s_txt} of the increase), but not significantly "
                        f"(p = {fmt_p(ph)} after Holm correction): these seeds do not show that it increases copying.")
            elif v == 0:
                sentences.append(f"{who} does not change similarity to {works} {under} (Shapley value 0); "
                                 "no share of the copying is attributed to it.")
            else:
                tail = ""
                if ci and _finite(ci[1]) and ci[1] >= 0:
                    tail = " The interval includes 0, so the decrease is not certain either."
                sentences.append(
                    f"{who} lowers similarity to {works} {under} ({sv}): on average it moves generations away from the "
                    f"work, so no share of the copying is attributed to it.{tail}")
        out[p] = sentences
    return out


def _p_text(p: float) -> str:
    """'< 0.001' or '= 0.024' (fmt_p writes the comparison for tiny p-values itself)."""
    return fmt_p(p) if p < 0.001 else "= " + fmt_p(p)


def _seeds_to_confirm(sec: dict, value: float, alpha: float, players: int) -> str:
    """How many seeds the distribution-free test would need at the very least (every seed contributing the
    value), copyscope.estimate.shapley.bounded.seeds_needed."""
    from ..estimate.shapley.bounded import seeds_needed

    bound = sec.get("seed_bound")
    need = seeds_needed(value, bound, alpha / max(players, 1)) if bound else None
    return (f"confirming a contribution of this size takes at least {need} seeds." if need
            else "more seeds could confirm it.")


def section_summary(report: dict, game: dict) -> str:
    level = (report.get("settings") or {}).get("confidence", 0.95)
    alpha = 1.0 - level
    metrics = list(game["metrics"])
    head_metric = game.get("headline") or headline_metric(metrics)
    # significance is claimed under the headline metric only; every other metric is sensitivity analysis
    sec = game["metrics"].get(head_metric) or {}
    sig = [p for p, e in (sec.get("shapley") or {}).items() if significant(e, alpha)]
    t_alone = [p for p, e in (sec.get("shapley") or {}).items() if t_only(e, alpha)]
    head = (
        f"<p><b>Raises similarity significantly</b> under the headline metric {esc(metric_label(head_metric or ''))} "
        "(Holm-corrected across components, p &lt; " + esc(f"{alpha:.2g}") + "): "
        + (", ".join(esc(player_label(game, p)) for p in sig) or "no component")
        + (". Significant under the t test alone, not confirmed by the distribution-free test: "
           + ", ".join(esc(player_label(game, p)) for p in t_alone) if t_alone else "")
        + ". <span class=\"muted\">The other metrics are sensitivity analysis: they are shown, without significance "
        "claims.</span></p>"
    )
    from .controls import controls_sentence

    said = controls_sentence(game)
    if said:  # in words: was the headline shown to detect copying in this setting (the Controls section has the numbers)
        head += f"<p>{esc(said)}</p>"
    items = []
    headline = metrics.index(head_metric) if head_metric in metrics else 0
    for p, sentences in summary_sentences(report, game, tested={head_metric}).items():
        tally = _metric_tally(game, p, head_metric)
        details = ""
        if len(sentences) > 1:
            others = [x for i, x in enumerate(sentences) if i != headline]
            details = (f"<details><summary>sensitivity analysis: the other metrics ({len(others)}), "
                       "no significance claimed</summary><ul>"
                       + "".join(f"<li>{esc(x)}</li>" for x in others) + "</ul></details>")
        label, text = player_label(game, p), sentences[headline]
        lead = (f"<b>{esc(label)}</b>{esc(text[len(label):])}" if text.startswith(label)
                else f"<b>{esc(label)}</b>: {esc(text)}")
        items.append(f"<li>{lead}"
                     + (f" <span class=\"muted\">{esc(tally)}</span>" if tally else "") + details + "</li>")
    from .interactions import interaction_sentences

    together = interaction_sentences(report, game)
    if together:
        items.append("<li><b>Interactions</b> (under the headline's t test, Holm-corrected across pairs; how components "
                     "combine, not claims):<ul>"
                     + "".join(f"<li>{esc(x)}</li>" for x in together) + "</ul></li>")
    per_prompt = per_prompt_sentences(report, game)
    if per_prompt:
        items.append(f"<li><b>Per prompt</b>: {esc(per_prompt[0])} Each prompt's own attribution:<ul>"
                     + "".join(f"<li>{esc(x)}</li>" for x in per_prompt[1:]) + "</ul></li>")
    per_work = per_work_sentences(report, game)
    if per_work:
        items.append("<li><b>Per work</b> (each work's own attribution, beside the combined one above):<ul>"
                     + "".join(f"<li>{esc(x)}</li>" for x in per_work) + "</ul></li>")
    explain = (
        "<p class=\"muted\">Shapley value: the average change in similarity to the works when the component joins the "
        "pipeline, over all orders in which components can be added (higher = more copying caused). Share: the component's "
        "part of the total increase caused by the components that raise similarity (components that lower it get 0%); "
        + _interval_note(report) + _min_p_note(report) + ".</p>"
    )
    return head + f"<ul class=\"summary\">{''.join(items)}</ul>" + explain


def _interval_note(report: dict) -> str:
    settings = report.get("settings") or {}
    if settings.get("intervals") == "jackknife" and settings.get("significance") in ("both", "distribution_free"):
        both = settings["significance"] == "both"
        return ("brackets are the intervals of the claim's test over seeds: " + (
            "the hull of the skew-corrected Student-t interval and the distribution-free betting interval, p the larger "
            "of the two tests' p-values" if both else "the distribution-free betting interval, p its test's p-value")
            + " (one-sided, of a value above 0, Holm-corrected across components; the distribution-free test holds "
            "whatever the shape of the seed noise, for per-image metrics with a declared range; per_seed.csv holds the "
            "per-seed values, report.json each test's own numbers under t and bounded)")
    if settings.get("intervals") == "jackknife":
        return ("brackets are Student-t intervals over seeds (leave-one-seed-out jackknife; per_seed.csv holds the per-seed "
                "values). p: one-sided t test of a value above 0, Holm-corrected across components")
    return ("brackets are bootstrap intervals over seeds. p: one-sided bootstrap test of a value above 0, Holm-corrected "
            "across components")


def _metric_tally(game: dict, player: str, head_metric: str | None) -> str:
    """'Sensitivity analysis, the 7 other metrics: raises similarity under 6, lowers it under 1.'"""
    vals = [(sec["shapley"].get(player) or {}) for m, sec in game["metrics"].items() if m not in ("fusion", head_metric)]
    vals = [e for e in vals if _finite(e.get("value"))]
    if len(vals) < 2:
        return ""
    up = [e for e in vals if e["value"] > 0]
    down = [e for e in vals if e["value"] < 0]
    return f"Sensitivity analysis, the {len(vals)} other metrics: raises similarity under {len(up)}, lowers it under {len(down)}."


def _min_p_note(report: dict) -> str:
    s = report.get("settings") or {}
    b = s.get("bootstrap")
    if s.get("intervals") == "jackknife" or not isinstance(b, int) or b <= 0:
        return ""
    return f"; with {b} bootstrap replicates the smallest possible p before correction is 1/{b + 1} = {1 / (b + 1):.2g}"


def section_attribution(report: dict, game: dict) -> str:
    level = (report.get("settings") or {}).get("confidence", 0.95)
    players = game["players"]
    metrics = {m: sec["shapley"] for m, sec in game["metrics"].items()}
    out = []
    if metrics and players:
        svg = plots.shapley_bars_svg(players, metrics, level)
        out.append(f'<p><img src="{plots.data_uri(svg)}" alt="Shapley values per metric"></p>')
    head = game.get("headline") or headline_metric(game["metrics"])
    rows = []
    for m, sec in game["metrics"].items():
        role = "headline" if m == head else "sensitivity"
        for p in players:
            e = sec["shapley"].get(p) or {}
            ci = e.get("ci95") or [None, None]
            sh = (sec.get("split_percent") or {}).get(p) or {}
            share = _pct(sh.get("share"))
            if _finite(sh.get("low")) and _finite(sh.get("high")):
                share += f" [{sh['low']:.0f}–{sh['high']:.0f}]"
            rows.append([td(m), td(role), td(p), td(num(e.get("value"), "+.4g"), True), td(f"[{num(ci[0])}, {num(ci[1])}]", True),
                         td(fmt_p(e.get("p_value")), True), td(fmt_p(e.get("p_holm")), True), td(share, True),
                         td(num((sec.get("loo") or {}).get(p), "+.3g"), True),
                         td(num((sec.get("banzhaf") or {}).get(p), "+.3g"), True)])
    out.append(f"<p class=\"muted\">Significance is claimed for the headline metric ({esc(head)}) only; the rows of "
               "the other metrics are sensitivity analysis (their p-values are not corrected across metrics).</p>")
    out.append(_table(["metric", "role", "player", "Shapley", f"{round(level * 100)}% interval", "p", "p (Holm)", "share %",
                       "leave-one-out", "Banzhaf"], rows))
    per_work = game.get("per_work") or {}
    if per_work:
        alpha = 1.0 - level
        prow = []
        for p in players:
            cells = [td(p)]
            for w in per_work:
                e = ((per_work[w].get(head) or {}).get("shapley") or {}).get(p) or {}
                ci = e.get("ci95") or [None, None]
                mark = " *" if significant(e, alpha) else ""
                cells.append(td(f"{num(e.get('value'), '+.4g')}{mark} [{num(ci[0])}, {num(ci[1])}]", True))
            prow.append(cells)
        out.append(f"<h4>Per-work attribution ({esc(head)})</h4><p class=\"muted\">Each work's own game: the images "
                   "of its prompts against its references only. * = above zero, Holm-corrected across players.</p>"
                   + _table(["player"] + [f"work {w}" for w in per_work], prow))
    mrows, warnings = [], []
    for m, sec in game["metrics"].items():
        est = sec.get("estimator") or {}
        mrows.append([td(m), td(sec.get("kind")), td(sec.get("raw_orientation")), td(sec.get("description")),
                      td(f"{est.get('method', '')}, {est.get('coalitions_evaluated', '')} coalitions"),
                      td(num(sec.get("efficiency_gap"), ".2g"), True)])
        # a set metric warns per coalition, in words that differ only in their numbers: one line per metric
        warned = [s.get("warning") for s in (sec.get("sample_size") or {}).values() if s.get("warning")]
        warnings += [f"{m}: {text} ({n} coalition{'s' if n > 1 else ''})" for text, n in collapse_warnings(warned)]
    out.append("<h4>Metrics</h4>" + _table(["metric", "kind", "raw orientation", "definition", "estimator",
                                            "efficiency gap"], mrows))
    if warnings:
        out.append("<p class=\"warn\">Sample-size warnings of the set metrics:</p><ul class=\"warn\">"
                   + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>")
    return "".join(out)
