"""The verdict that leads the HTML report (its first screen): per game, one sentence per work under the headline
metric, the images that show it and the headline's attribution chart; the details follow it.

The sentence names the component that copies the work: the significant one with the largest Shapley value or,
when none is significant, the top-attributed one, said not to be shown to copy. Its numbers are report.json's
(the share of the increase in similarity, ``split_percent``, and the Holm-corrected p-value). The images are one
prompt and seed of the work: the reference, the bare base, that component alone on the base and the full pipeline,
read from the image cache. The seed-count warning and the power note are report-wide: they are shown here, once.
"""

from __future__ import annotations

from pathlib import Path

from ..plan.coalitions import coalition_key
from . import plots
from .controls import controls_sentence
from .headline import headline_metric, ranked, t_only
from .htmlkit import (REF_THUMB, _finite, _img, _item_labels, _pct, cached_image, esc, fmt_p, image_thumb,
                      images_per_prompt, metric_label, player_label)
from .summary import _p_text, _works_phrase

TILE = 4  # images per key coalition: the first seeds of the work's first prompt, 2 x 2

CSS = """
.verdict{border:1px solid #ddd;border-left:6px solid #c0392b;background:#fcfcfc;padding:.3em 1em .8em;margin:1em 0 1.5em}
.verdict p.lead{font-size:1.2em;margin:.4em 0}.verdict h2{margin-top:.6em}
.keyrow{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start;margin-top:.6em}
.strip{display:flex;flex-wrap:wrap;gap:.8em}.strip figure{margin:0;width:160px;font-size:.8em}.strip figcaption{overflow-wrap:anywhere}
.strip img{width:160px;height:160px;object-fit:contain;image-rendering:pixelated;display:block;background:#eee}
.strip .tile{display:grid;grid-template-columns:80px 80px;width:160px;height:160px;background:#eee}
.strip .tile img{width:80px;height:80px}
.keyimgs{max-width:700px}.chart img{width:440px;max-width:100%;display:block}
"""


def _verdict(game: dict, phrase: str, metric: str, sec: dict, alpha: float) -> tuple[str | None, str]:
    """(the component the images show, the sentence) for one work's game under the headline metric."""
    shapley = {p: e for p, e in (sec.get("shapley") or {}).items() if not e.get("placebo")}  # the placebo is no culprit
    order, sig = ranked(shapley, alpha)
    under = f"under {metric_label(metric)}"
    if not order:
        return None, f"No component has a value {under} for {phrase}."
    shares = sec.get("split_percent") or {}

    def share(p: str) -> str:
        return _pct((shares.get(p) or {}).get("share"))

    if sig:
        top = sig[0]
        also = "; also significant: " + ", ".join(f"{player_label(game, p)} ({share(p)})" for p in sig[1:]) if sig[1:] else ""
        return top, (f"{player_label(game, top)} copies {phrase}: {share(top)} of the copying {under}, significant "
                     f"(p {_p_text(shapley[top]['p_holm'])} after Holm correction){also}.")
    top = order[0]
    e = shapley[top]
    if e["value"] <= 0:
        return top, f"No component raises similarity to {phrase} {under}."
    if e.get("beats_placebo") is False:
        why = "does not beat the placebo"
    elif t_only(e, alpha):
        why = "is significant under the t test alone, not confirmed by the distribution-free test"
    elif not _finite(e.get("p_holm")):
        why = "was not tested for significance (no replicates over seeds)"
    else:
        why = f"is not significant (p = {fmt_p(e['p_holm'])} after Holm correction)"
    return top, (f"No component is shown to copy {phrase} {under}: the largest contribution, "
                 f"{player_label(game, top)} ({share(top)} of the copying), {why}.")


def work_verdicts(report: dict, game: dict) -> list[dict]:
    """Per work ``{"works", "culprit", "sentence"}``: from each work's own game (``per_work``) or, without one,
    from the game itself for its works together."""
    alpha = 1.0 - (report.get("settings") or {}).get("confidence", 0.95)
    per_work = game.get("per_work") or {}
    if per_work:
        games = [([w], f"work {w}", metrics) for w, metrics in per_work.items()]
    else:
        games = [(list(report.get("works") or {}), _works_phrase(report), game["metrics"])]
    out = []
    for works, phrase, metrics in games:
        m = game.get("headline") or headline_metric(metrics)
        if m in metrics:
            culprit, sentence = _verdict(game, phrase, m, metrics[m], alpha)
            out.append({"works": works, "culprit": culprit, "sentence": sentence})
    return out


def key_coalitions(game: dict, culprit: str | None) -> list[tuple[str, str]]:
    """(caption, coalition key) of the bare base, the culprit alone on the base and the full pipeline, without repeats
    (with the base as a player, the base's coalition stands for the bare base)."""
    players = list(game["players"])
    kinds = game.get("player_kinds") or {}
    base = [bool(game.get("base_as_player")) and kinds.get(p) == "base" for p in players]
    rows = [(f"base {game.get('base')} alone", coalition_key(players, base))]
    if culprit in players:
        rows.append((f"base + {player_label(game, culprit)}", coalition_key(players, [b or p == culprit for b, p in zip(base, players)])))
    rows.append((f"full pipeline: all {len(players)} components", coalition_key(players, [True] * len(players))))
    out: dict[str, str] = {}
    for caption, key in rows:
        out.setdefault(key, caption)
    return [(caption, key) for key, caption in out.items()]


def _item_of(report: dict, n: int, work: str | None) -> int:
    """The first image of the work's first prompt among a coalition's ``n`` (a prompt tied to no work serves any)."""
    per_prompt = images_per_prompt(report, n)
    if per_prompt is None:
        return 0
    prompts = report["settings"]["prompts"]
    for want in (work, None):
        for i, p in enumerate(prompts):
            if (p or {}).get("work") == want:
                return i * per_prompt
    return 0


def _figure(img: str, caption: str) -> str:
    return f"<figure>{img}<figcaption>{esc(caption)}</figcaption></figure>"


def _strip(report: dict, game: dict, work: str | None, culprit: str | None, root: Path) -> str:
    """The work's reference, then per key coalition a tile of its first images of the work's first prompt."""
    images = game.get("images") or {}
    n = max((len(v) for v in images.values()), default=0)
    j = _item_of(report, n, work)
    labels = _item_labels(report, n)
    items = range(j, min(j + TILE, n, j + (images_per_prompt(report, n) or 1)))
    figs = []
    files = ((report.get("works") or {}).get(work) or []) if work is not None else []
    if files:
        uri, why = image_thumb(Path(files[0]), REF_THUMB)
        figs.append(_figure(_img(uri, why, f"reference of work {work}", title=files[0]), f"work {work}"))
    for caption, key in key_coalitions(game, culprit):
        keys = images.get(key) or []
        tiles = []
        for i in items:
            uri, why = cached_image(root, keys[i], REF_THUMB) if i < len(keys) else (None, "not generated")
            tiles.append(_img(uri, why, f"{caption}: {labels[i]}", title=f"{key or '(empty)'} | {labels[i]}"))
        figs.append(_figure(f'<div class="tile">{"".join(tiles)}</div>', caption))
    said = _common_label([labels[i] for i in items])
    return (f'<div class="strip">{"".join(figs)}</div>'
            + (f'<p class="muted">Each tile: {esc(said)}, the same in every tile.</p>' if said else ""))


def _common_label(labels: list[str]) -> str:
    """'p / seed 0', 'p / seed 1' -> 'p / seed 0, seed 1' (the parts every label shares, said once)."""
    parts = [x.split(" / ") for x in labels]
    common = 0
    while parts and common < min(map(len, parts)) - 1 and len({x[common] for x in parts}) == 1:
        common += 1
    head = " / ".join(parts[0][:common]) + " / " if parts and common else ""
    return head + ", ".join(" / ".join(x[common:]) for x in parts)


def _chart(report: dict, game: dict, gid: str) -> str:
    head = game.get("headline") or headline_metric(game["metrics"])
    sec = game["metrics"].get(head)
    if not sec or not game["players"]:
        return ""
    level = (report.get("settings") or {}).get("confidence", 0.95)
    # the whiskers are the claim's interval (report/build.py); say whose, so they are not read as the t test's
    carried = next((e["claim"] for e in sec["shapley"].values() if e.get("claim")), None)
    title = (f"Shapley value under the headline metric (bars),\n{round(level * 100)}% interval"
             + (f" of the claim ({carried})" if carried else ""))
    svg = plots.shapley_bars_svg(game["players"], {head: sec["shapley"]}, level, title=title)
    return (f'<div id="{gid}-chart" class="chart"><img src="{plots.data_uri(svg)}" '
            f'alt="Shapley value of each component under the headline metric {esc(head)}"></div>')


def seed_warning_html(report: dict) -> str:
    settings = report.get("settings") or {}
    warn, note = settings.get("seed_warning"), settings.get("power_note")
    return ((f'<p class="warn"><b>Warning:</b> {esc(warn)}</p>' if warn else "")
            + (f'<p class="muted"><b>Seeds and power:</b> {esc(note)}</p>' if note else ""))


def section_verdict(report: dict, root: Path) -> str:
    """The block that leads the page: per game its sentences, the controls' sentence, the key images and the chart."""
    games = report.get("games") or []
    parts = []
    for i, g in enumerate(games):
        gid = f"game-{i}"
        verdicts = work_verdicts(report, g)
        if len(games) > 1:
            parts.append(f"<h2>Base {esc(g.get('base'))}</h2>")
        parts.append(f'<div id="{gid}-verdict">'
                     + ("".join(f'<p class="lead">{esc(v["sentence"])}</p>' for v in verdicts)
                        or '<p class="lead">No verdict: the headline metric has no values.</p>') + "</div>")
        said = controls_sentence(g)
        if said:
            parts.append(f'<p class="muted">{esc(said)}</p>')
        strips = [_strip(report, g, w, v["culprit"], root) for v in verdicts for w in (v["works"] or [None])]
        parts.append(f'<div class="keyrow"><div id="{gid}-key-images" class="keyimgs">{"".join(strips)}</div>'
                     f'{_chart(report, g, gid)}</div>')
    return f'<div id="verdict" class="verdict">{"".join(parts)}{seed_warning_html(report)}</div>'
