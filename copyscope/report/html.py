"""The HTML view of a report: one self-contained file (no network, no scripts, no external CSS,
fonts or images; images are base64 ``data:`` URIs, plots are deterministic matplotlib SVG).

Rendered from report.json alone plus the files it names (reference works, the image cache,
``ablation.json`` in the output folder), so ``copyscope report DIR`` reproduces the same bytes.
Every string that comes from the user (names, prompts, paths, zoo text, flags, reasons) goes through
:func:`esc` (``html.escape(..., quote=True)``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

from ..cache import ImageCache
from . import plots
from .headline import headline_metric, per_work_sentences, significant

MAX_COALITION_ROWS = 64  # rows of the generated-image grid
MAX_ITEM_COLUMNS = 12  # columns (prompt x seed) of the grid
GEN_THUMB = 96  # px, longest side of a generated-image thumbnail
REF_THUMB = 160
_KEY_RE = re.compile(r"^[0-9a-fA-F]{16,128}$")
KIND_LABEL = {"lora": "LoRA", "controlnet": "ControlNet", "base": "base model", "prompt": "prompt fragment",
              "ip_adapter": "IP-Adapter", "textual_inversion": "textual inversion"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#777}.warn{color:#a04000}.bad{color:#b03a2e}.ok{color:#1e8449}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.5em 0}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
.grid td{text-align:center;padding:2px}.grid img{width:64px;height:64px;image-rendering:pixelated;display:block}
.grid th{font-weight:normal;font-size:.8em}
img.flag{outline:3px solid #c0392b}.refs{display:flex;flex-wrap:wrap;gap:1em}.refs figure{margin:0;max-width:180px;font-size:.8em}.refs figcaption{overflow-wrap:anywhere}
.refs img{max-width:160px;max-height:160px;display:block}
ul.summary li{margin-bottom:.35em}code{background:#f3f3f3;padding:0 .2em}
nav ul{columns:2}
"""


def esc(x: object) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x, spec: str = ".3g") -> str:
    return format(x, spec) if _finite(x) else "n/a"


def fmt_p(p) -> str:
    if not _finite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def _pct(x) -> str:
    return f"{x:.0f}%" if _finite(x) else "n/a"


# ------------------------------------------------------------------------------------------- images


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _encode_thumb(arr_u8, max_side: int) -> bytes:
    from PIL import Image

    im = Image.fromarray(arr_u8, mode="RGB")
    if max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def image_thumb(path: Path, max_side: int) -> tuple[str | None, str | None]:
    """(data URI, None) or (None, why not)."""
    from ..cache import to_uint8
    from ..score import load_image_rgb

    path = Path(path)
    if not path.is_file():
        return None, "file not found on this machine"
    try:
        return _png_uri(_encode_thumb(to_uint8(load_image_rgb(path)), max_side)), None
    except Exception as exc:  # unreadable image: say so, keep rendering
        return None, f"unreadable ({exc.__class__.__name__})"


def cache_root(report: dict, out_dir: Path) -> Path:
    """report["cache_dir"] when it exists on this machine, else out_dir/cache."""
    c = report.get("cache_dir")
    if isinstance(c, str) and c and Path(c).is_dir():
        return Path(c)
    return Path(out_dir) / "cache"


def cached_image(root: Path, key: object) -> tuple[str | None, str | None]:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        return None, "not a cache key"
    path = ImageCache(root).path(key)
    if not path.is_file():
        return None, "not in the image cache"
    return image_thumb(path, GEN_THUMB)


def _img(uri: str | None, why: str | None, alt: str, cls: str = "", title: str = "") -> str:
    if uri is None:
        return f'<span class="warn">{esc(why)}</span>'
    c = f' class="{cls}"' if cls else ""
    t = f' title="{esc(title)}"' if title else ""
    return f'<img src="{uri}" alt="{esc(alt)}"{c}{t}>'


# ------------------------------------------------------------------------------------------- text


def _works_phrase(report: dict) -> str:
    works = list(report.get("works") or {})
    if len(works) == 1:
        return f"work {works[0]}"
    if not works:
        return "the reference works"
    agg = (report.get("settings") or {}).get("aggregate", "")
    return f"works {', '.join(works)} (combined: {agg})"


def player_label(game: dict, player: str) -> str:
    kind = (game.get("player_kinds") or {}).get(player)
    return f"{KIND_LABEL.get(kind, kind or 'player')} {player}"


def metric_label(metric: str) -> str:
    return "fusion (mean z-score over the metrics)" if metric == "fusion" else metric


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
                        f"{under} ({sv}), p {fmt_p(ph) if ph < 0.001 else '= ' + fmt_p(ph)} after Holm correction.")
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


# ------------------------------------------------------------------------------------------- sections


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """``headers`` are escaped here; row cells must already be HTML (escaped by the caller)."""
    c = f' class="{cls}"' if cls else ""
    h = "".join(f"<th>{esc(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table{c}><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def td(text: object, numeric: bool = False, title: str = "") -> str:
    t = f' title="{esc(title)}"' if title else ""
    return f'<td class="num"{t}>{esc(text)}</td>' if numeric else f"<td{t}>{esc(text)}</td>"


def _corr_cell(x) -> str:
    if not _finite(x):
        return '<td class="num muted">n/a</td>'
    a = min(1.0, abs(x))
    color = f"rgba(192,57,43,{a * 0.6:.2f})" if x > 0 else f"rgba(46,134,193,{a * 0.6:.2f})"
    return f'<td class="num" style="background:{color}">{x:+.2f}</td>'


def _coalition_order(keys: Iterable[str], players: Sequence[str]) -> list[str]:
    def k(key: str):
        parts = key.split("+") if key else []
        return (len(parts), [players.index(p) if p in players else len(players) for p in parts])

    return sorted(keys, key=k)


def section_works(report: dict) -> str:
    parts = ["<h2 id=\"works\">Reference works</h2>"]
    works = report.get("works") or {}
    maps = [m for m in report.get("conditioning") or [] if isinstance(m, dict)]
    if not works:
        return parts[0] + "<p class=\"muted\">No reference works listed.</p>"
    for w, files in works.items():
        figs = []
        for f in files:
            uri, why = image_thumb(Path(f), REF_THUMB)
            figs.append(f"<figure>{_img(uri, why, f'reference of work {w}')}"
                        f"<figcaption title=\"{esc(f)}\">{esc(Path(f).name)}</figcaption></figure>")
        figs += [_map_figure(m) for m in maps if m.get("work") == w]
        parts.append(f"<h3>Work {esc(w)}</h3><div class=\"refs\">{''.join(figs)}</div>")
    other = [_map_figure(m) for m in maps if m.get("work") not in works]
    if other:
        parts.append(f"<h3>Conditioning maps from images</h3><div class=\"refs\">{''.join(other)}</div>")
    return "".join(parts)


def _map_figure(m: dict) -> str:
    """A computed ControlNet conditioning map, captioned with its detector, ControlNet and source."""
    uri, why = image_thumb(Path(str(m.get("map"))), REF_THUMB)
    label = f"{m.get('detector')} map for ControlNet {m.get('controlnet')}"
    return (f"<figure>{_img(uri, why, label)}<figcaption title=\"{esc(m.get('map'))} (key {esc(m.get('key'))})\">"
            f"{esc(m.get('detector'))} of {esc(Path(str(m.get('source'))).name)} &rarr; ControlNet "
            f"{esc(m.get('controlnet'))}</figcaption></figure>")


def section_summary(report: dict, game: dict) -> str:
    level = (report.get("settings") or {}).get("confidence", 0.95)
    alpha = 1.0 - level
    metrics = list(game["metrics"])
    head_metric = game.get("headline") or headline_metric(metrics)
    # significance is claimed under the headline metric only; every other metric is sensitivity analysis
    sec = game["metrics"].get(head_metric) or {}
    sig = [p for p, e in (sec.get("shapley") or {}).items() if significant(e, alpha)]
    head = (
        f"<p><b>Raises similarity significantly</b> under the headline metric {esc(metric_label(head_metric or ''))} "
        "(Holm-corrected across components, p &lt; " + esc(f"{alpha:.2g}") + "): "
        + (", ".join(esc(player_label(game, p)) for p in sig) or "no component")
        + ". <span class=\"muted\">The other metrics are sensitivity analysis: they are shown, without significance "
        "claims.</span></p>"
    )
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
    return _seed_warning_html(report) + head + f"<ul class=\"summary\">{''.join(items)}</ul>" + explain


def _interval_note(report: dict) -> str:
    if (report.get("settings") or {}).get("intervals") == "jackknife":
        return ("brackets are Student-t intervals over seeds (leave-one-seed-out jackknife; per_seed.csv holds the per-seed "
                "values). p: one-sided t test of a value above 0, Holm-corrected across components")
    return ("brackets are bootstrap intervals over seeds. p: one-sided bootstrap test of a value above 0, Holm-corrected "
            "across components")


def _seed_warning_html(report: dict) -> str:
    warn = (report.get("settings") or {}).get("seed_warning")
    return f'<p class="warn"><b>Warning:</b> {esc(warn)}</p>' if warn else ""


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
    mrows = []
    for m, sec in game["metrics"].items():
        est = sec.get("estimator") or {}
        warn = "; ".join(sorted({str(s.get("warning")) for s in (sec.get("sample_size") or {}).values() if s.get("warning")}))
        mrows.append([td(m), td(sec.get("kind")), td(sec.get("raw_orientation")), td(sec.get("description")),
                      td(f"{est.get('method', '')}, {est.get('coalitions_evaluated', '')} coalitions"),
                      td(num(sec.get("efficiency_gap"), ".2g"), True), td(warn)])
    out.append("<h4>Metrics</h4>" + _table(["metric", "kind", "raw orientation", "definition", "estimator",
                                            "efficiency gap", "sample-size warning"], mrows))
    return "".join(out)


def section_coalitions(game: dict) -> str:
    metrics = list(game["metrics"])
    keys: list[str] = []
    for sec in game["metrics"].values():
        keys += [k for k in sec["coalitions"] if k not in keys]
    rows = []
    for k in _coalition_order(keys, game["players"]):
        rows.append([td(k or "(empty: base alone)")] + [td(num(game["metrics"][m]["coalitions"].get(k), ".5g"), True) for m in metrics])
    return ("<p class=\"muted\">Worth of each coalition (higher = closer to the works; for distance metrics, minus the "
            "distance), mean over prompts and seeds.</p>" + _table(["coalition"] + metrics, rows))


def section_agreement(game: dict) -> str:
    from ..ablate import rank_agreement, shapley_values

    metrics = list(game["metrics"])
    if len(game["players"]) < 2:
        return "<p class=\"muted\">Rank agreement needs at least two players.</p>"
    ag = rank_agreement({m: shapley_values(game, m) for m in metrics}, game["players"])
    out = ["<p class=\"muted\">Rank correlation of the players' Shapley values between two metrics (1: same order, "
           "-1: reversed; n/a: undefined, e.g. a metric that gives every player the same value).</p>"]
    for kind, title in (("kendall", "Kendall tau"), ("spearman", "Spearman rho")):
        rows = [[td(a)] + [_corr_cell(ag[kind][a][b]) for b in metrics] for a in metrics]
        out.append(f"<h4>{title}</h4>" + _table([""] + metrics, rows))
    return "".join(out)


def _item_labels(report: dict, n: int) -> list[str]:
    s = report.get("settings") or {}
    prompts = s.get("prompts") or []
    seeds = s.get("seeds") or []
    if prompts and seeds and n and n % (len(prompts) * len(seeds)) == 0:
        maps = n // (len(prompts) * len(seeds))  # > 1 with `reference: each`: prompts x maps x seeds
        per_prompt = maps * len(seeds)
        return [f"{(prompts[i // per_prompt] or {}).get('name', '')} / "
                + (f"map {(i % per_prompt) // len(seeds)} / " if maps > 1 else "") + f"seed {seeds[i % len(seeds)]}"
                for i in range(n)]
    return [f"image {i + 1}" for i in range(n)]


def section_images(report: dict, game: dict, root: Path) -> str:
    images = game.get("images") or {}
    if not images:
        return "<p class=\"muted\">No generated images listed.</p>"
    flagged = {k for f in (game.get("flagged_images") or {}).values() for k in (f or {})}
    keys = _coalition_order(images, game["players"])
    n_items = max(len(v) for v in images.values())
    labels = _item_labels(report, n_items)
    cols = min(n_items, MAX_ITEM_COLUMNS)
    rows = []
    for ck in keys[:MAX_COALITION_ROWS]:
        cells = [td(ck or "(empty)")]
        for j, key in enumerate(images[ck][:cols]):
            uri, why = cached_image(root, key)
            cls = "flag" if key in flagged else ""
            cells.append("<td>" + _img(uri, why, f"{ck or 'empty'}: {labels[j]}", cls, f"{ck or 'empty'} | {labels[j]} | {key}") + "</td>")
        rows.append(cells)
    notes = []
    if len(keys) > MAX_COALITION_ROWS:
        notes.append(f"{len(keys) - MAX_COALITION_ROWS} more coalition(s) not shown")
    if n_items > cols:
        notes.append(f"{n_items - cols} more image(s) per coalition not shown")
    note = f"<p class=\"muted\">{esc('; '.join(notes))}.</p>" if notes else ""
    return (f"<p class=\"muted\">Rows: coalitions; columns: prompt / seed (every coalition uses the same prompts and seeds). "
            f"Images from the cache at <code>{esc(root)}</code>; a red outline marks a flagged image.</p>"
            + _table(["coalition"] + labels[:cols], rows, "grid") + note)


def section_flagged(game: dict, root: Path) -> str:
    flagged = game.get("flagged_images") or {}
    rows = []
    for ck, imgs in flagged.items():
        for key, flags in (imgs or {}).items():
            uri, why = cached_image(root, key)
            f = ", ".join(map(str, flags)) if isinstance(flags, (list, tuple)) else str(flags)
            rows.append([td(ck or "(empty)"), "<td>" + _img(uri, why, f"flagged image {key}", "flag") + "</td>", td(f), td(key)])
    if not rows:
        return "<p>No generated image was flagged.</p>"
    return ("<p class=\"warn\">These images were flagged at generation (e.g. blank or saturated output); their scores "
            "still count.</p>" + _table(["coalition", "image", "flags", "cache key"], rows, "grid"))


def _flatten(d, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(d, dict):
        out = []
        for k, v in d.items():
            out += _flatten(v, f"{prefix} / {k}" if prefix else str(k))
        return out
    return [(prefix, d)]


def section_unavailable(report: dict) -> str:
    rows = [[td(k), td(v), td("not available on the machine that ran the audit")] for k, v in (report.get("unavailable_metrics") or {}).items()]
    for g in report.get("games", []):
        rows += [[td(k), td(v), td(f"skipped for base {g.get('base')}")] for k, v in (g.get("skipped_metrics") or {}).items()]
    if not rows:
        return "<p>Every requested metric was available and finite.</p>"
    return _table(["metric", "reason", "where"], rows)


def section_provenance(report: dict) -> str:
    prov = report.get("provenance") or {}
    s = report.get("settings") or {}
    gen = report.get("generation") or {}
    facts = [
        ("copyscope version", report.get("copyscope_version")),
        ("zoo name", report.get("zoo_name")),
        ("zoo file", prov.get("zoo_file")),
        ("zoo file SHA-256", report.get("config_sha256")),
        ("audit time (UTC)", prov.get("time_utc")),
        ("audit wall time (s)", prov.get("wall_seconds")),
        ("device", prov.get("device")),
        ("platform", prov.get("platform")),
        ("python", prov.get("python")),
        ("seeds", ", ".join(map(str, prov.get("seeds") or s.get("seeds") or []))),
        ("steps / guidance / resolution", f"{s.get('steps')} / {s.get('guidance')} / {'x'.join(map(str, s.get('resolution') or []))}"),
        ("aggregation over references", s.get("aggregate")),
        ("intervals / confidence", f"{s.get('intervals') or 'bootstrap'}"
                                   + (f" ({s.get('bootstrap')} replicates)" if s.get("bootstrap") else "") + f" / {s.get('confidence')}"),
        ("seed-count warning", s.get("seed_warning") or "none"),
        ("test", s.get("test")),
        ("images generated / from cache", f"{gen.get('generated')} / {gen.get('cached')}"),
        ("generation time (s)", gen.get("seconds")),
        ("output folder", report.get("output_dir")),
        ("image cache", report.get("cache_dir")),
    ]
    out = [_table(["", ""], [[td(k), td(v)] for k, v in facts])]
    libs = prov.get("libraries") or {}
    out.append("<h3>Libraries</h3>" + _table(["package", "version"], [[td(k), td(v if v is not None else "not installed")] for k, v in libs.items()]))
    prompts = s.get("prompts") or []
    if prompts:
        out.append("<h3>Prompts</h3>" + _table(["name", "text", "negative", "work"],
                                               [[td(p.get("name")), td(p.get("text")), td(p.get("negative")), td(p.get("work"))] for p in prompts]))
    refs = prov.get("references") or []
    if refs:
        out.append("<h3>Reference files</h3>" + _table(["work", "file", "SHA-256"], [[td(r.get("work")), td(r.get("file")), td(r.get("sha256"))] for r in refs]))
    for g in report.get("games", []):
        rows = [[td(k), td(v)] for k, v in _flatten(g.get("weights") or {})]
        out.append(f"<h3>Model weights — base {esc(g.get('base'))}</h3>" + _table(["component", "identity / hash"], rows))
    out.append("<h3>Zoo file</h3><pre>" + esc(prov.get("zoo_text", "")) + "</pre>")
    return "".join(out)


# ------------------------------------------------------------------------------------------- ablation


def section_ablation(report: dict, out_dir: Path) -> str:
    path = Path(out_dir) / "ablation.json"
    if not path.is_file():
        return ""
    head = "<h2 id=\"ablation\">Ablation: metric choices on the same generations</h2>"
    try:
        ab = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(ab, dict) or "games" not in ab:
            raise ValueError("not an ablation")
    except (ValueError, UnicodeDecodeError) as exc:
        return head + f"<p class=\"warn\">ablation.json is unreadable ({esc(exc.__class__.__name__)}).</p>"
    from ..ablate import ablation_plots, summary_rows

    out = [head]
    if ab.get("config_sha256") != report.get("config_sha256"):
        out.append("<p class=\"note\">This ablation was computed for a different zoo file (its SHA-256 differs from this "
                   "report's); rerun <code>copyscope ablate</code>.</p>")
    out.append(
        "<p>Each metric's Shapley values recomputed on the audit's cached images (nothing regenerated): agreement between "
        "metrics, interval width and ranking against the number of seeds used (first k of "
        + esc(len(ab.get("seeds") or [])) + "), and, with ground truth, whether the planted component ranks first. "
        "Ground truth file: <code>" + esc(ab.get("ground_truth_file") or "none found") + "</code>. See docs/report.md for the method.</p>")
    try:
        svgs = ablation_plots(ab)
        rows_all = summary_rows(ab)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return "".join(out) + f"<p class=\"warn\">ablation.json has an unexpected shape ({esc(exc.__class__.__name__)}).</p>"
    for i, g in enumerate(ab["games"]):
        out.append(f"<h3>Base {esc(g['base'])}</h3>")
        has_gt = bool((g.get("ground_truth") or {}).get("metrics"))
        headers = ["metric", "ranking (all seeds)", "mean Kendall tau with other metrics", "stable from k seeds",
                   "mean interval width", "width / max |value|"]
        if has_gt:
            headers += ["planted", "planted rank", "margin", "margin / max |value|", "P(planted first)"]
        rows = []
        for r in rows_all:
            if r["base"] != g["base"]:
                continue
            cells = [td(r["metric"]), td(r["ranking"]), td(num(r["mean_kendall_with_other_metrics"], "+.2f"), True),
                     td(f"{r['k_stable']} / {r['n_seeds']}", True), td(num(r["mean_ci_width"]), True),
                     td(num(r["relative_ci_width"], ".2f"), True)]
            if has_gt:
                cells += [td(r["planted"]), td(r["planted_rank"], True), td(num(r["margin"], "+.3g"), True),
                          td(num(r["relative_margin"], "+.2f"), True), td(num(r["p_first"], ".2f"), True)]
            rows.append(cells)
        out.append(_table(headers, rows))
        for note in (g.get("ground_truth") or {}).get("notes") or []:
            out.append(f"<p class=\"warn\">{esc(note)}</p>")
        # seeds table: relative width and ranking match per k
        st = g.get("seed_stability") or {}
        ks = sorted({r["k"] for s in st.values() for r in s.get("rows", [])})
        srows = []
        for m, s in st.items():
            by_k = {r["k"]: r for r in s.get("rows", [])}
            cells = [td(m)]
            for k in ks:
                r = by_k.get(k) or {}
                if not r.get("available"):
                    cells.append(f'<td class="num muted" title="{esc(r.get("note", ""))}">n/a</td>')
                    continue
                mark = "✓" if r.get("same_ranking") else "✗"
                cells.append(td(f"{num(r.get('relative_ci_width'), '.2f')} {mark}" + (" *" if r.get("note") else ""), True,
                                title=r.get("note", "")))
            srows.append(cells)
        out.append("<h4>Interval width / max |value| by seeds used (✓: ranking equals the all-seed ranking; n/a at k=1: "
                   "no interval from one seed; *: see the cell's tooltip)</h4>"
                   + _table(["metric"] + [f"k={k}" for k in ks], srows))
        for name, alt in ((f"ablation_{i}_seeds.svg", "interval width against seeds"),
                          (f"ablation_{i}_agreement.svg", "Kendall tau between metrics"),
                          (f"ablation_{i}_planted.svg", "planted component margin per metric")):
            if name in svgs:
                out.append(f'<p><img src="{plots.data_uri(svgs[name])}" alt="{esc(alt)}"></p>')
    return "".join(out)


# ------------------------------------------------------------------------------------------- page


def _adaptive_html(report: dict) -> str:
    """Adaptive seeds (issue 16): the one-line summary and a table of the looks."""
    from ..adaptive import adaptive_line

    line = adaptive_line(report)
    if not line:
        return ""
    a = report["adaptive"]
    rows = [[td(lk.get("round")), td(lk.get("seeds")), td(lk.get("images")), td(lk.get("generated")), td(f"{lk.get('alpha', 0):.3g}"),
             td("; ".join(f"{b}: leader {g.get('leader')}, {g.get('reason') or 'go on'}" for b, g in (lk.get("games") or {}).items()))]
            for lk in a.get("looks") or []]
    return (f"<p><b>{esc(line)}</b>. <span class=\"muted\">The headline metric's intervals and significance marks are "
            f"the sequential ones of the stopping look (valid whenever the audit stops); {esc(a.get('note', ''))}.</span></p>"
            + _table(["round", "seeds", "images so far", "generated", "level spent", "look"], rows))


def render_html(report: dict, out_dir: Path) -> str:
    out_dir = Path(out_dir)
    root = cache_root(report, out_dir)
    title = f"copyscope report — {report.get('zoo_name', '')}"
    games = report.get("games") or []
    nav = ['<li><a href="#works">Reference works</a></li>']
    body = [section_works(report)]
    for i, g in enumerate(games):
        gid = f"game-{i}"
        nav.append(f'<li><a href="#{gid}">Base {esc(g.get("base"))}</a></li>')
        body.append(f'<h2 id="{gid}">Base {esc(g.get("base"))}: {esc(len(g["players"]))} player(s): '
                    f'{esc(", ".join(player_label(g, p) for p in g["players"]))}</h2>')
        body.append('<h3 id="' + gid + '-summary">Summary</h3>' + section_summary(report, g))
        body.append('<h3 id="' + gid + '-shapley">Shapley values</h3>' + section_attribution(report, g))
        body.append('<h3 id="' + gid + '-coalitions">Coalition values</h3>' + section_coalitions(g))
        body.append('<h3 id="' + gid + '-agreement">Agreement between metrics</h3>' + section_agreement(g))
        body.append('<h3 id="' + gid + '-images">Generated images</h3>' + section_images(report, g, root))
        body.append('<h3 id="' + gid + '-flagged">Flagged images</h3>' + section_flagged(g, root))
    body.append('<h2 id="unavailable">Unavailable metrics</h2>' + section_unavailable(report))
    abl = section_ablation(report, out_dir)
    if abl:
        nav.append('<li><a href="#ablation">Ablation</a></li>')
        body.append(abl)
    nav.append('<li><a href="#provenance">Provenance</a></li>')
    body.append('<h2 id="provenance">Provenance</h2>' + section_provenance(report))
    prov = report.get("provenance") or {}
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f"<p class=\"muted\">Audit of {esc(prov.get('time_utc', 'unknown time'))} on {esc(prov.get('device', 'unknown device'))}; "
        f"copyscope {esc(report.get('copyscope_version'))}; zoo file SHA-256 <code>{esc(report.get('config_sha256'))}</code>. "
        "Attribution: Shapley values of the pipeline's components in the game whose worth is the similarity of the "
        "generated images to the reference works.</p>"
        f"<nav><ul>{''.join(nav)}</ul></nav>"
        + _adaptive_html(report)  # adaptive seeds (issue 16): rounds and why they stopped
        + "".join(body)
        + "</body></html>\n"
    )
