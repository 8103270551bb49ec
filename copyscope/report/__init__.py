"""Stage 7 — report: report.json (the source of truth), the CSV files, the HTML view and the printed table.

:func:`build_report` turns the estimate stage's results into the typed :class:`~copyscope.results.AuditReport`;
report.json is its ``to_json()``. Every other view (table, CSV, HTML) is rendered from that JSON form alone, so
``copyscope report DIR`` can rebuild them from ``report.json`` (read into an AuditReport) without the models.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..common.files import atomic_write_text
from ..results import AuditReport
from .build import (  # noqa: F401  (the report's API: ablate and the audit use them)
    ReportInputs,
    build_report,
    estimate_section,
    intervals_text,
    seed_bound,
    significance_rule,
    significance_text,
)
from .headline import claim_rule, headline_metric, significant, t_only


def write_outputs(report: AuditReport, out_dir: Path, view_root: Path | None = None) -> None:
    """report.json plus the views derived from it. ``view_root``: the folder the files will end
    up in when ``out_dir`` is a staging folder (the HTML view finds the cache from it)."""
    import json

    out_dir = Path(out_dir)
    doc = report.to_json()
    atomic_write_text(out_dir / "report.json", json.dumps(doc, indent=2))
    write_views(doc, out_dir, view_root)


VIEW_FILES = ["coalitions.csv", "attribution.csv", "per_seed.csv", "report.html"]


def write_views(report: AuditReport | dict, out_dir: Path, view_root: Path | None = None) -> None:
    """The views (CSV files, HTML), rendered from the report's JSON form."""
    report = report.to_json() if isinstance(report, AuditReport) else report
    atomic_write_text(out_dir / "coalitions.csv", coalitions_csv(report))
    atomic_write_text(out_dir / "attribution.csv", attribution_csv(report))
    atomic_write_text(out_dir / "per_seed.csv", per_seed_csv(report))
    from .html import render_html

    atomic_write_text(out_dir / "report.html", render_html(report, Path(view_root or out_dir)))


def coalitions_csv(report: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["base", "metric", "coalition", "worth"])
    for g in report["games"]:
        for metric, sec in g["metrics"].items():
            for key, value in sec["coalitions"].items():
                w.writerow([g["base"], metric, key, value])
    return buf.getvalue()


def per_seed_csv(report: dict) -> str:
    """Every per-seed pseudo-value (players) and pseudo-worth (coalitions), long format: enough to
    recheck each interval (mean, sd / sqrt(m), t quantile) and each coalition's worth."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["base", "metric", "what", "name", "seed", "value"])
    seeds = (report.get("settings") or {}).get("seeds") or []
    for g in report["games"]:
        for metric, sec in g["metrics"].items():
            for what, rows in (("player", sec.get("per_seed")), ("coalition", sec.get("seed_worths"))):
                for name, values in (rows or {}).items():
                    for s, v in enumerate(values):
                        w.writerow([g["base"], metric, what, name, seeds[s] if s < len(seeds) else s, v])
    return buf.getvalue()


def seed_warning(report: dict) -> str | None:
    """The report's seed-count warning (None for reports of older versions or enough seeds)."""
    return (report.get("settings") or {}).get("seed_warning")


def attribution_csv(report: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["base", "metric", "player", "shapley", "ci_low", "ci_high", "p_value", "p_holm", "share_percent", "loo", "banzhaf",
                "share_low", "share_high"])
    for g in report["games"]:
        for metric, sec in g["metrics"].items():
            for player, v in sec["shapley"].items():
                ci = v["ci95"] or [None, None]
                share = (sec.get("split_percent") or {}).get(player, {}) or {}
                w.writerow(
                    [g["base"], metric, player, v["value"], ci[0], ci[1], v["p_value"], v["p_holm"], share.get("share"),
                     (sec["loo"] or {}).get(player), (sec["banzhaf"] or {}).get(player), share.get("low"), share.get("high")]
                )
    return buf.getvalue()


def attribution_tables(report: dict):
    """Rich Tables per game: 'value' over its 95% interval in each cell; the attribution, then (with
    several works) the per-work attribution under the headline metric.

    Only the headline metric's cells carry the significance mark '*'; the other metrics are labelled
    sensitivity analysis. The seed-count warning is the report's, not a table's: the CLI prints it once,
    after the tables. The longer of (players, metrics) runs down the rows so the table fits a
    terminal; cells fold rather than being cut with an ellipsis.
    """
    from rich.table import Table

    from ..common.termtext import term  # names, reasons and warnings come from report.json: untrusted
    from .controls import controls_sentence

    level = (report.get("settings") or {}).get("confidence", 0.95)
    alpha = 1.0 - level

    def cell(v: dict, mark: bool) -> str:
        text = f"{v['value']:+.3g}" if v["value"] is not None else "n/a"
        if mark and significant(v, alpha):
            text += " *"
        elif mark and t_only(v, alpha):
            text += " (t)"
        if v["ci95"]:  # '[nan, 0.1]' would be read as a markup tag and vanish
            text += "\n" + term(f"[{v['ci95'][0]:.2g}, {v['ci95'][1]:.2g}]")
        return text

    tables = []
    for g in report["games"]:
        head = g.get("headline") or headline_metric(g["metrics"])
        t = Table(
            title=f"Shapley attribution — base {term(g['base'])} (higher = more copying caused)",
            caption=(f"value, then its {level:.0%} interval; headline metric: {term(head)}, * = above zero after Holm "
                     f"correction across players (p < {alpha:.2g}) under the claim's test ({claim_rule(report)}); "
                     "the other metrics are sensitivity analysis (no significance claimed)")
                    + (f"\n{term(note)}" if (note := (report.get("settings") or {}).get("power_note")) else "")
                    + (f"\ncontrols: {term(said)}" if (said := controls_sentence(g)) else "")
                    # adaptive seeds: the headline's intervals and * are the sequential ones
                    + ("\nadaptive seeds: the headline's intervals and * are the sequential ones of the stopping look "
                       "(simultaneous over players and looks), not Holm" if isinstance(report.get("adaptive"), dict) else ""),
        )
        metrics = [head] + [m for m in g["metrics"] if m != head] if head in g["metrics"] else list(g["metrics"])
        players = list(g["players"])
        label = {m: (f"{term(m)} (headline)" if m == head else f"{term(m)} (sensitivity)") for m in metrics}
        metrics_down = len(players) <= len(metrics)
        rows, cols = (metrics, players) if metrics_down else (players, metrics)
        t.add_column("metric" if metrics_down else "player", overflow="fold")
        for c in cols:
            t.add_column(label[c] if not metrics_down else term(c), justify="right", overflow="fold")
        for r in rows:
            t.add_row(label[r] if metrics_down else term(r),
                      *(cell(g["metrics"][r]["shapley"][c], r == head) if metrics_down
                        else cell(g["metrics"][c]["shapley"][r], c == head) for c in cols))
        tables.append(t)
        for part, what, caption in (("per_work", "work", "each work's own game: its prompts against its references"),
                                    ("per_prompt", "prompt", "each prompt's own game: its images against the works")):
            parts = g.get(part) or {}
            if not parts:
                continue
            pw = Table(title=f"Per-{what} attribution under {term(head)} — base {term(g['base'])}", caption=caption + "; * as above")
            pw.add_column("player", overflow="fold")
            for w in parts:
                pw.add_column(f"{what} {term(w)}", justify="right", overflow="fold")
            for p in players:
                pw.add_row(term(p), *(cell(parts[w][head]["shapley"][p], True) if head in parts[w] else "n/a" for w in parts))
            tables.append(pw)
    return tables
