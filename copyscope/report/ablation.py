"""The ablation's views, rendered from ablation.json's data alone: the summary rows (printed table and
ablation.csv), the per-seed CSV, the SVG plots and the HTML section. ``copyscope ablate``
(copyscope.analyses.ablate) computes the data; nothing here imports it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from . import plots
from .htmlkit import _table, esc, num, td


def summary_rows(ablation: dict) -> list[dict]:
    """One row per (game, metric): the ablation.csv table and the printed table."""
    rows = []
    for g in ablation["games"]:
        for m in g["metrics"]:
            st = g["seed_stability"].get(m) or {}
            full = next((r for r in st.get("rows", []) if r.get("k") == st.get("n_seeds")), {}) if st else {}
            gt = ((g.get("ground_truth") or {}).get("metrics") or {}).get(m) or {}
            rows.append({
                "base": g["base"],
                "metric": m,
                "ranking": " > ".join(st.get("full_ranking", [])),
                "mean_kendall_with_other_metrics": g["agreement"]["mean_kendall_with_other_metrics"].get(m),
                "n_seeds": st.get("n_seeds"),
                "k_stable": st.get("k_stable"),
                "k_top_stable": st.get("k_top_stable"),
                "mean_ci_width": full.get("mean_ci_width"),
                "relative_ci_width": full.get("relative_ci_width"),
                "planted": "+".join(gt.get("planted", [])) or None,
                "planted_rank": gt.get("planted_rank"),
                "planted_first": gt.get("planted_first"),
                "margin": gt.get("margin"),
                "relative_margin": gt.get("relative_margin"),
                "p_first": gt.get("p_first"),
            })
    return rows


SUMMARY_COLUMNS = ["base", "metric", "ranking", "mean_kendall_with_other_metrics", "n_seeds", "k_stable", "k_top_stable",
                   "mean_ci_width", "relative_ci_width", "planted", "planted_rank", "planted_first", "margin",
                   "relative_margin", "p_first"]
SEED_COLUMNS = ["base", "metric", "k", "player", "value", "ci_low", "ci_high", "ci_width", "rank", "same_ranking",
                "kendall_vs_full"]


def summary_csv(ablation: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(SUMMARY_COLUMNS)
    for r in summary_rows(ablation):
        w.writerow([r[c] for c in SUMMARY_COLUMNS])
    return buf.getvalue()


def seeds_csv(ablation: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(SEED_COLUMNS)
    for g in ablation["games"]:
        for m, st in g["seed_stability"].items():
            for row in st["rows"]:
                if not row.get("available"):
                    continue
                for p in g["players"]:
                    ci = row["ci95"][p] or [None, None]
                    w.writerow([g["base"], m, row["k"], p, row["values"][p], ci[0], ci[1], row["ci_width"][p],
                                row["ranking"].index(p) + 1, row["same_ranking"], row["kendall_vs_full"]])
    return buf.getvalue()


def ablation_plots(ablation: dict) -> dict[str, str]:
    """{file name: SVG text}: per game, interval width against seeds, the agreement matrix, and the
    planted component's relative margin (with ground truth)."""
    out = {}
    for i, g in enumerate(ablation["games"]):
        series = {m: [(r["k"], r.get("relative_ci_width")) for r in st["rows"]] for m, st in g["seed_stability"].items()}
        out[f"ablation_{i}_seeds.svg"] = plots.seed_curves_svg(
            series, f"base {g['base']}: interval width vs seeds", "mean 95% interval width / max |value|")
        ag = g["agreement"]
        out[f"ablation_{i}_agreement.svg"] = plots.heatmap_svg(
            ag["metrics"], [[ag["kendall"][a][b] for b in ag["metrics"]] for a in ag["metrics"]],
            f"base {g['base']}: Kendall tau between metrics")
        gt = g.get("ground_truth") or {}
        if gt.get("metrics"):
            out[f"ablation_{i}_planted.svg"] = plots.margin_bars_svg(
                {m: r["relative_margin"] for m, r in gt["metrics"].items()},
                f"base {g['base']}: planted value - best other, / max |value|")
    return out


def _fmt(x, spec: str = ".3g") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return format(x, spec) if math.isfinite(x) else "n/a"
    return str(x)


def ablation_tables(ablation: dict):
    """One rich Table per game."""
    from ..common.termtext import term as escape  # control characters and markup of report names
    from rich.table import Table

    rows = summary_rows(ablation)
    tables = []
    for g in ablation["games"]:
        has_gt = bool((g.get("ground_truth") or {}).get("metrics"))
        planted = "+".join((g.get("ground_truth") or {}).get("planted", []))
        game_rows = [r for r in rows if r["base"] == g["base"]]
        t = Table(
            title=escape(f"Metric ablation — base {g['base']} ({len(ablation['seeds'])} seed(s))"),
            caption=escape("tau: mean Kendall tau with the other metrics; k stable: fewest seeds from which the "
                           "ranking equals the all-seed ranking; width: mean 95% interval width / max |value|"
                           + (f"; rank, margin (value - best other's, / max |value|) and P(1st) (share of "
                              f"seeds ranking it first) of the planted component ({planted})"
                              if has_gt else "")),
            caption_justify="left",
        )
        t.add_column("metric", no_wrap=True, min_width=max((len(m) for m in g["metrics"]), default=6))
        # numbers never wrap; the ranking (last) takes the remaining width and wraps between players
        for col in ["tau", "k stable", "width"] + (["rank", "margin", "P(1st)"] if has_gt else []):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("ranking", min_width=10, overflow="fold")
        for r in game_rows:
            cells = [r["metric"], _fmt(r["mean_kendall_with_other_metrics"], "+.2f"),
                     f"{_fmt(r['k_stable'])}/{_fmt(r['n_seeds'])}", _fmt(r["relative_ci_width"], ".2f")]
            if has_gt:
                cells += [_fmt(r["planted_rank"]), _fmt(r["relative_margin"], "+.2f"), _fmt(r["p_first"], ".2f")]
            t.add_row(*[escape(c) for c in cells + [r["ranking"]]])
        tables.append(t)
    return tables


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
