"""Deterministic matplotlib plots for the HTML report and the ablation, as SVG.

Every plot is drawn on a bare ``matplotlib.figure.Figure`` (no pyplot, no global backend switch, so
nothing here touches the caller's matplotlib state) and saved as SVG with a fixed ``svg.hashsalt``
and no date, text drawn as paths (no fonts needed to view it) and mathtext parsing off (a ``$`` in a
player name is text, not a formula). The same data gives the same bytes, so ``copyscope report``
re-renders an identical HTML file.

``*_svg`` functions return SVG text; :func:`data_uri` wraps it as a base64 ``data:`` URI for an
``<img>`` tag. Embedding SVG through ``<img>`` (rather than inline) keeps user strings that
matplotlib writes into the SVG out of the HTML document, and keeps the element ids of several plots
apart.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Mapping, Sequence

from ..common.finite import is_finite

RC = {
    "svg.hashsalt": "copyscope",
    "svg.fonttype": "path",
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "figure.dpi": 72,
}
POS = "#c0392b"  # raises similarity to the works (copying)
NEG = "#2e86c1"  # lowers it
GREY = "#7f8c8d"
LABEL_MAX = 32


def short(label: object, n: int = LABEL_MAX) -> str:
    from ..common.termtext import plain  # control characters of a tampered report.json's names: shown escaped

    s = plain(str(label).replace("\n", " ").replace("\r", " "))
    return s if len(s) <= n else s[: n - 1] + "…"


_finite = is_finite


def _save(fig) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    return buf.getvalue()


def _figure(w: float, h: float):
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        return Figure(figsize=(w, h), dpi=72, layout="constrained")


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def shapley_bars_svg(players: Sequence[str], metrics: Mapping[str, Mapping[str, dict]], confidence: float = 0.95,
                     title: str | None = None) -> str:
    """One panel per metric: a horizontal bar per player (the Shapley value), error bars = interval.

    ``metrics[name][player]`` is the report's ``{"value", "ci95", ...}`` entry.
    """
    import matplotlib

    names = list(metrics)
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    h_panel = 0.45 + 0.32 * len(players)
    with matplotlib.rc_context(RC):
        fig = _figure(3.8 * cols, (h_panel + 0.9) * rows + 0.3)
        axes = fig.subplots(rows, cols, squeeze=False)
        for idx, ax in enumerate(axes.flat):
            if idx >= len(names):
                ax.set_axis_off()
                continue
            m = names[idx]
            ys, vals, lo, hi, colors = [], [], [], [], []
            for j, p in enumerate(players):
                e = metrics[m].get(p) or {}
                v = e.get("value")
                ys.append(len(players) - 1 - j)
                vals.append(v if _finite(v) else 0.0)
                ci = e.get("ci95")
                if ci and _finite(ci[0]) and _finite(ci[1]) and _finite(v):
                    lo.append(max(v - ci[0], 0.0))
                    hi.append(max(ci[1] - v, 0.0))
                else:
                    lo.append(0.0)
                    hi.append(0.0)
                colors.append(GREY if not _finite(v) else (POS if v > 0 else NEG))
            ax.barh(ys, vals, color=colors, height=0.6)
            ax.errorbar(vals, ys, xerr=[lo, hi], fmt="none", ecolor="black", capsize=3, lw=1)
            ax.axvline(0, color="black", lw=0.8)
            ax.set_yticks(ys)
            ax.set_yticklabels([short(p) for p in players])
            ax.set_title(short(m))
            ax.tick_params(axis="x", labelsize=7)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
        fig.suptitle(title or f"Shapley value per metric (bars) with {round(confidence * 100)}% interval (whiskers)",
                     fontsize=10)
        return _save(fig)


def heatmap_svg(labels: Sequence[str], matrix: Sequence[Sequence[float | None]], title: str, vmax: float = 1.0,
                fmt: str = ".2f") -> str:
    """A labelled matrix in [-vmax, vmax] (rank correlations: 1; interactions: their largest size); None cells are blank."""
    import matplotlib
    import numpy as np

    n = len(labels)
    a = np.array([[np.nan if not _finite(x) else x for x in row] for row in matrix], dtype=float).reshape(n, n)
    with matplotlib.rc_context(RC):
        fig = _figure(1.6 + 0.55 * n, 1.2 + 0.5 * n)
        ax = fig.subplots()
        im = ax.imshow(np.ma.masked_invalid(a), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels([short(x, 16) for x in labels], rotation=45, ha="right")
        ax.set_yticklabels([short(x, 16) for x in labels])
        for i in range(n):
            for j in range(n):
                txt = "n/a" if np.isnan(a[i, j]) else format(a[i, j], fmt)
                ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                        color="white" if not np.isnan(a[i, j]) and abs(a[i, j]) > 0.6 * vmax else "black")
        ax.set_title(short(title, 60))
        fig.colorbar(im, ax=ax, shrink=0.8)
        return _save(fig)


def seed_curves_svg(series: Mapping[str, Sequence[tuple[int, float | None]]], title: str, ylabel: str) -> str:
    """One line per metric: y against the number of seeds k (points with None are left out)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _figure(5.2, 3.2)
        ax = fig.subplots()
        markers = "osD^v<>ph*"
        drawn = 0
        for i, (name, pts) in enumerate(series.items()):
            xs = [k for k, y in pts if _finite(y)]
            ys = [y for k, y in pts if _finite(y)]
            if xs:
                ax.plot(xs, ys, marker=markers[i % len(markers)], ms=4, lw=1.2, label=short(name, 20))
                drawn += 1
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("seeds used (first k)")
        ax.set_ylabel(ylabel)
        ax.set_title(short(title, 70))
        ax.grid(True, lw=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no interval at any k", ha="center", va="center", transform=ax.transAxes)
        return _save(fig)


def margin_bars_svg(margins: Mapping[str, float | None], title: str) -> str:
    """Bars of a per-metric number (the planted component's relative margin), positive = recovered."""
    import matplotlib

    names = list(margins)
    with matplotlib.rc_context(RC):
        fig = _figure(5.0, 0.6 + 0.3 * max(1, len(names)))
        ax = fig.subplots()
        ys = list(range(len(names)))[::-1]
        vals = [margins[n] if _finite(margins[n]) else 0.0 for n in names]
        ax.barh(ys, vals, color=[POS if _finite(margins[n]) and margins[n] > 0 else (GREY if not _finite(margins[n]) else NEG)
                                 for n in names], height=0.6)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(ys)
        ax.set_yticklabels([short(n, 20) for n in names])
        ax.set_title(short(title, 70))
        return _save(fig)


def dose_response_svg(curves: Mapping[str, Sequence[tuple[float, float | None]]], title: str) -> str:
    """One line per metric: the controls' gap (copies minus non-copies) against img2img strength."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _figure(5.2, 3.2)
        ax = fig.subplots()
        markers = "osD^v<>ph*"
        for i, (name, pts) in enumerate(curves.items()):
            xs = [x for x, y in pts if _finite(y)]
            ys = [y for x, y in pts if _finite(y)]
            if xs:
                ax.plot(xs, ys, marker=markers[i % len(markers)], ms=4, lw=1.2, label=short(name, 20))
        ax.axhline(0.0, color=GREY, lw=0.6)
        ax.set_xlabel("img2img strength (0 = the work, 1 = nothing of it)")
        ax.set_ylabel("copies − non-copies")
        ax.set_title(short(title, 70))
        ax.grid(True, lw=0.3)
        ax.legend(fontsize=7, loc="best")
        return _save(fig)


def strength_curves_svg(curves: Mapping[str, Sequence[tuple[float, float | None, Sequence[float | None]]]], title: str,
                        ylabel: str) -> str:
    """One line per curve: a component's contribution (with its interval as an error bar) against its strength."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _figure(5.2, 3.2)
        ax = fig.subplots()
        markers = "osD^v<>ph*"
        for i, (name, pts) in enumerate(curves.items()):
            kept = [(x, y, ci) for x, y, ci in pts if _finite(y)]
            if not kept:
                continue
            xs, ys = [x for x, _, _ in kept], [y for _, y, _ in kept]
            low = [y - ci[0] if ci and _finite(ci[0]) else 0.0 for _, y, ci in kept]
            high = [ci[1] - y if ci and _finite(ci[1]) else 0.0 for _, y, ci in kept]
            ax.errorbar(xs, ys, yerr=[low, high], marker=markers[i % len(markers)], ms=4, lw=1.2, capsize=2,
                        label=short(name, 30))
        ax.axhline(0.0, color=GREY, lw=0.6)
        ax.set_xlabel("strength")
        ax.set_ylabel(short(ylabel, 40))
        ax.set_title(short(title, 70))
        ax.grid(True, lw=0.3)
        ax.legend(fontsize=7, loc="best")
        return _save(fig)


def background_strip_svg(rows: Mapping[str, Mapping[str, object]], title: str) -> str:
    """Per coalition (x): its images' mean similarity to each background image (grey dots, the background's
    distribution) and to the work (red diamond). A coalition copies when its diamond leaves the grey cloud."""
    import matplotlib

    with matplotlib.rc_context(RC):
        names = list(rows)
        fig = _figure(max(4.0, 0.45 * len(names) + 1.5), 3.2)
        ax = fig.subplots()
        for i, k in enumerate(names):
            bg = [y for y in rows[k].get("background") or [] if _finite(y)]
            ax.plot([i] * len(bg), bg, "o", ms=3, color=GREY, alpha=0.6, label="background images" if i == 0 else None)
            w = rows[k].get("work")
            if _finite(w):
                ax.plot([i], [w], "D", ms=5, color=POS, label="the work" if i == 0 else None)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([short(n or "(empty)", 18) for n in names], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("mean similarity of the coalition's images")
        ax.set_title(short(title, 70))
        ax.grid(True, axis="y", lw=0.3)
        ax.legend(fontsize=7, loc="best")
        return _save(fig)
