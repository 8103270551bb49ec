"""The HTML view of a report: one self-contained file (no network, no scripts, no external CSS,
fonts or images; images are base64 ``data:`` URIs, plots are deterministic matplotlib SVG).

Rendered from report.json alone plus the files it names (reference works, the image cache,
``ablation.json`` in the output folder), so ``copyscope report DIR`` reproduces the same bytes.
The page is assembled here; :mod:`.htmlkit` holds the escaping and table helpers, :mod:`.summary`
the summary and attribution sections, :mod:`.ablation` the ablation section.
"""

from __future__ import annotations

from pathlib import Path

from ..plan.coalitions import sorted_keys
from .ablation import section_ablation
from .controls import section_controls
from .interactions import section_interactions
from .agreement import rank_agreement, shapley_values
from .htmlkit import (GEN_THUMB, MAX_COALITION_ROWS, MAX_ITEM_COLUMNS, REF_THUMB, _corr_cell, _img, _item_labels,  # noqa: F401
                      _table, cache_root, cached_image, esc, image_thumb, num, player_label, td)
from .summary import section_attribution, section_summary, summary_sentences  # noqa: F401  (summary_sentences: API)
from .verdict import CSS as VERDICT_CSS, section_verdict

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;\
color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.muted{color:#777}.warn{color:#a04000}.bad{color:#b03a2e}.ok{color:#1e8449}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.5em 0}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
.grid td{text-align:center;padding:2px}.grid img{height:64px;width:auto;min-width:64px;max-width:384px;object-fit:contain;\
image-rendering:pixelated;display:block}
.grid th{font-weight:normal;font-size:.8em}
img.flag{outline:3px solid #c0392b}.refs{display:flex;flex-wrap:wrap;gap:1em}.refs figure{margin:0;max-width:180px;font-size:.8em}\
.refs figcaption{overflow-wrap:anywhere}
.refs img{max-width:160px;max-height:160px;display:block}
ul.summary li{margin-bottom:.35em}code{background:#f3f3f3;padding:0 .2em}
nav ul{columns:2}
"""


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


def section_coalitions(game: dict) -> str:
    metrics = list(game["metrics"])
    keys: list[str] = []
    for sec in game["metrics"].values():
        keys += [k for k in sec["coalitions"] if k not in keys]
    rows = []
    for k in sorted_keys(keys, game["players"]):
        rows.append([td(k or "(empty: base alone)")] + [td(num(game["metrics"][m]["coalitions"].get(k), ".5g"), True) for m in metrics])
    return ("<p class=\"muted\">Worth of each coalition (higher = closer to the works; for distance metrics, minus the "
            "distance), mean over prompts and seeds.</p>" + _table(["coalition"] + metrics, rows))


def section_agreement(game: dict) -> str:
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


def section_images(report: dict, game: dict, root: Path) -> str:
    images = game.get("images") or {}
    if not images:
        return "<p class=\"muted\">No generated images listed.</p>"
    flagged = {k for f in (game.get("flagged_images") or {}).values() for k in (f or {})}
    keys = sorted_keys(images, game["players"])
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
    rows = [[td(k), td(v), td("not available on the machine that ran the audit")]
            for k, v in (report.get("unavailable_metrics") or {}).items()]
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
    out.append("<h3>Libraries</h3>" + _table(["package", "version"],
                                             [[td(k), td(v if v is not None else "not installed")] for k, v in libs.items()]))
    prompts = s.get("prompts") or []
    if prompts:
        out.append("<h3>Prompts</h3>" + _table(["name", "text", "negative", "work"],
                                               [[td(p.get("name")), td(p.get("text")), td(p.get("negative")), td(p.get("work"))]
                                                for p in prompts]))
    refs = prov.get("references") or []
    if refs:
        out.append("<h3>Reference files</h3>" + _table(["work", "file", "SHA-256"],
                                                       [[td(r.get("work")), td(r.get("file")), td(r.get("sha256"))] for r in refs]))
    for g in report.get("games", []):
        rows = [[td(k), td(v)] for k, v in _flatten(g.get("weights") or {})]
        out.append(f"<h3>Model weights — base {esc(g.get('base'))}</h3>" + _table(["component", "identity / hash"], rows))
    out.append("<h3>Zoo file</h3><pre>" + esc(prov.get("zoo_text", "")) + "</pre>")
    return "".join(out)


# ------------------------------------------------------------------------------------------- page


def _adaptive_html(report: dict) -> str:
    """Adaptive seeds: the one-line summary and a table of the looks."""
    from ..estimate.adaptive import adaptive_line

    line = adaptive_line(report)
    if not line:
        return ""
    a = report["adaptive"]
    def game_cell(base: str, g: dict) -> str:
        works = "".join(f"; work {w}: leader {wg.get('leader')}, {wg.get('reason') or 'go on'}"
                        for w, wg in (g.get("works") or {}).items())  # several works: each work's own look
        return f"{base}: leader {g.get('leader')}, {g.get('reason') or 'go on'}{works}"

    rows = [[td(lk.get("round")), td(lk.get("seeds")), td(lk.get("images")), td(lk.get("generated")), td(f"{lk.get('alpha', 0):.3g}"),
             td(" | ".join(game_cell(b, g) for b, g in (lk.get("games") or {}).items()))]
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
        body.append('<h3 id="' + gid + '-interactions">Interactions</h3>' + section_interactions(report, g))
        head = g.get("metrics", {}).get(g.get("headline"), {})
        if g.get("controls") or head.get("vs_placebo") or head.get("vs_own_placebo"):
            body.append('<h3 id="' + gid + '-controls">Controls</h3>' + section_controls(report, g, root))
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
        f"<title>{esc(title)}</title><style>{CSS}{VERDICT_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f"<p class=\"muted\">Audit of {esc(prov.get('time_utc', 'unknown time'))} on {esc(prov.get('device', 'unknown device'))}; "
        f"copyscope {esc(report.get('copyscope_version'))}; zoo file SHA-256 <code>{esc(report.get('config_sha256'))}</code>.</p>"
        + section_verdict(report, root)  # the finding first: sentences, key images, the headline's chart
        + "<h2 id=\"details\">Details</h2><p class=\"muted\">Attribution: Shapley values of the pipeline's components in "
        "the game whose worth is the similarity of the generated images to the reference works.</p>"
        f"<nav><ul>{''.join(nav)}</ul></nav>"
        + _adaptive_html(report)  # adaptive seeds: rounds and why they stopped
        + "".join(body)
        + "</body></html>\n"
    )
