"""The validity benchmark's verdicts and tables, free of models and files: :func:`judge` reads one scenario's
report into per-metric verdicts (plant first, plant and decoy significant under the claim's rule and under each
test alone, placebo, own work, interval coverage; the list in :mod:`copyscope.demo.bench`'s docstring),
:func:`summarise` and :func:`headline_bar` count them over scenarios, and ``format_table``,
``format_worth_table`` and ``format_kind_table`` (with :func:`kind_table_metrics`) write those counts as the
Markdown tables ``copyscope demo bench`` writes and shows. :mod:`copyscope.demo.bench` runs the audits and calls
these; the scripts of ``bench/`` call them to judge saved reports again.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .scenarios import Scenario

ALPHA = 0.05


def judge(s: Scenario, report: dict, truth: dict | None) -> dict[str, dict]:
    """Per metric: the verdicts of one scenario's report (see :mod:`copyscope.demo.bench`'s docstring)."""
    game = report["games"][0]
    plants = set(s.plants)
    decoys = set(s.decoys)
    out = {}
    for metric, sec in game["metrics"].items():
        sh = sec["shapley"]
        vals = {p: v["value"] for p, v in sh.items()}
        if any(v is None for v in vals.values()):
            continue
        others = [p for p in vals if p not in plants]
        first = all(vals[p] > max((vals[o] for o in others), default=-np.inf) for p in plants)
        # the ControlNet is fed the work's own depth map, a copier by construction: "first" against the decoys
        # alone is the bar's corrected reading (bench/world_mate_16seeds.md); the ControlNet is judged apart
        first_vs_decoys = all(vals[p] > max((vals[d] for d in decoys), default=-np.inf) for p in plants)

        def sig(p, test=None):
            e = sh[p] if test is None else sh[p].get(test) or {}  # noqa: B023 - called only in this iteration (rows below)
            return e.get("p_holm") is not None and e["p_holm"] < ALPHA

        row = {
            "values": vals,
            "planted_first": bool(first),
            "planted_first_vs_decoys": bool(first_vs_decoys),
            "plant_significant": all(sig(p) for p in plants),
            "decoy_significant": any(sig(d) for d in decoys),
        }
        # each test on its own (the claim needs both by default): the trade docs/validity.md's table shows
        for test in ("t", "bounded"):
            if all(test in sh[p] for p in sh):
                row[f"plant_significant_{test}"] = all(sig(p, test) for p in plants)
                row[f"decoy_significant_{test}"] = any(sig(d, test) for d in decoys)
        if "placebo" in sh:  # controls.placebo: do plants and decoys beat a content-free LoRA of the same strength?
            row["plant_beats_placebo"] = all(bool(sh[p].get("beats_placebo")) for p in plants)
            row["decoy_beats_placebo"] = any(bool(sh[d].get("beats_placebo")) for d in decoys)
            row["placebo_significant_t"] = sig("placebo", "t") if "t" in sh["placebo"] else sig("placebo")
        own = sec.get("vs_own_placebo")
        if own:  # controls.placebo: swap: does each LoRA beat its own placebo put in its place?
            row["plant_beats_placebo"] = all(_beats_own(own, p) for p in plants)
            row["decoy_beats_placebo"] = any(_beats_own(own, d) for d in decoys)
            row["plant_beats_placebo_t"] = all(_beats_own(own, p, "t") for p in plants)
            row["decoy_beats_placebo_t"] = any(_beats_own(own, d, "t") for d in decoys)
        per_work = game.get("per_work") or {}
        if len(s.works) > 1 and per_work:
            ok = True
            for p, w in s.plants.items():
                wsh = ((per_work.get(w) or {}).get(metric) or {}).get("shapley")
                if not wsh:
                    ok = None
                    break
                ok = ok and all(wsh[p]["value"] > wsh[o]["value"] for o in wsh if o != p)
            row["own_work"] = ok
        if truth is not None and metric in truth:
            hits = [sh[p]["ci95"][0] <= truth[metric][p] <= sh[p]["ci95"][1] for p in sh if sh[p]["ci95"]]
            row["covered"], row["intervals"] = int(sum(hits)), len(hits)
        out[metric] = row
    return out


def _beats_own(own: dict, lora: str, test: str | None = None) -> bool:
    """A LoRA above its own placebo (controls.placebo: swap): under the claim's rule, or the test ``test`` alone."""
    e = own.get(lora) or {}
    p = (e if test is None else e.get(test) or {}).get("p_holm")
    return p is not None and p < ALPHA and (e.get("value") or 0) > 0


# A scenario's verdicts under the bar's definitions. Runs judged before a verdict existed count the older one for it
# (the claim's verdicts were the t test's then, and "first" was against every player).
def first_vs_decoys(v: dict) -> bool:
    return v.get("planted_first_vs_decoys", v["planted_first"])


def plant_t(v: dict) -> bool:
    return v.get("plant_significant_t", v["plant_significant"])


def decoy_t(v: dict) -> bool:
    return v.get("decoy_significant_t", v["decoy_significant"])


def headline_bar(results: list[dict]) -> dict:
    """How the audits' own headline choices fare: in how many scenarios the chosen metric puts the plant first,
    finds it significant (the claim's rule; and the t test alone) and calls no decoy significant."""
    rows = [(r, r["verdicts"].get(r.get("headline"))) for r in results if r.get("headline")]
    rows = [(r, v) for r, v in rows if v is not None]

    def count(ok) -> list[int]:
        return [int(sum(bool(ok(v)) for _, v in rows)), len(rows)]

    return {"chosen": dict(sorted(Counter(r["headline"] for r, _ in rows).items())),
            "meets_bar": count(lambda v: v["planted_first"] and v["plant_significant"] and not v["decoy_significant"]),
            "meets_bar_t": count(lambda v: v["planted_first"] and plant_t(v) and not decoy_t(v)),
            "meets_bar_t_vs_decoys": count(lambda v: first_vs_decoys(v) and plant_t(v) and not decoy_t(v)),
            "planted_first": count(lambda v: v["planted_first"]),
            "planted_first_vs_decoys": count(first_vs_decoys),
            "plant_significant_t": count(plant_t),
            "decoy_significant_t": count(decoy_t)}


def summarise(results: list[dict]) -> dict[str, dict]:
    """Per metric: counts over scenarios (k of n) for each verdict."""
    metrics = sorted({m for r in results for m in r["verdicts"]})
    table = {}
    for m in metrics:
        rows = [r["verdicts"][m] for r in results if m in r["verdicts"]]
        entry = {"scenarios": len(rows)}
        for key in ("planted_first", "planted_first_vs_decoys", "plant_significant", "decoy_significant", "own_work",
                    *SPLIT_KEYS):
            vals = [row[key] for row in rows if row.get(key) is not None]
            entry[key] = [int(sum(vals)), len(vals)]
        cov = [(row["covered"], row["intervals"]) for row in rows if "intervals" in row]
        entry["coverage"] = [int(sum(c for c, _ in cov)), int(sum(n for _, n in cov))]
        table[m] = entry
    return table


def format_kind_table(results: list[dict], metrics: list[str]) -> str:
    """Per scenario kind (with / without the ControlNet): plant first, plant significant and decoy
    significant counts for ``metrics``, as Markdown: where each metric fails."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(f"{r['kind']} ({'cn' if r['controlnet'] else 'no cn'})", []).append(r)
    head = "| scenarios | n | " + " | ".join(f"{m}: first / plant sig. / decoy sig." for m in metrics) + " |\n"
    head += "|---|---|" + "---|" * len(metrics) + "\n"
    rows = []
    for name, rs in groups.items():
        cells = []
        for m in metrics:
            vs = [r["verdicts"][m] for r in rs if m in r["verdicts"]]
            cells.append(" / ".join(str(sum(bool(v[k]) for v in vs)) for k in
                                    ("planted_first", "plant_significant", "decoy_significant")))
        rows.append(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |\n")
    return head + "".join(rows)


def _rate(kn) -> str:
    k, n = kn
    return "n/a" if n == 0 else f"{k}/{n} ({100.0 * k / n:.0f}%)"


SPLIT_KEYS = ("plant_significant_t", "decoy_significant_t", "plant_significant_bounded", "decoy_significant_bounded",
              "plant_beats_placebo", "decoy_beats_placebo", "placebo_significant_t", "plant_beats_placebo_t",
              "decoy_beats_placebo_t")


def format_table(summary: dict[str, dict]) -> str:
    """The per-metric table as Markdown (also what the terminal shows): the claim's verdicts (the
    significance rule's), then each test's own (t; distribution-free, for metrics with a bounded range). "First vs
    decoys": the plant above every decoy, the ControlNet (fed the work's own depth map) judged apart."""
    head = ("| metric | planted first | first vs decoys | plant significant | decoy significant (family-wise) "
            "| own work (two works) | 95% interval coverage | plant sig.: t / distribution-free "
            "| decoy sig.: t / distribution-free |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    order = sorted(summary, key=lambda m: (-_frac(summary[m]["planted_first"]), _frac(summary[m]["decoy_significant"]), m))
    return head + "".join(
        f"| {m} | {_rate(e['planted_first'])} | {_rate(e.get('planted_first_vs_decoys', e['planted_first']))} "
        f"| {_rate(e['plant_significant'])} | {_rate(e['decoy_significant'])} "
        f"| {_rate(e['own_work'])} | {_rate(e['coverage'])} | {_pair(e, 'plant')} | {_pair(e, 'decoy')} |\n"
        for m in order for e in [summary[m]])


def format_worth_table(by_worth: dict[str, dict]) -> str:
    """Raw against specific worth, per metric: decoys called significant by the t test (the test that
    flags generic changes), plants ranked first and found significant (the claim's rule)."""
    worths = list(by_worth)
    metrics = sorted({m for w in worths for m in by_worth[w]["summary"]})
    head = ("| metric | " + " | ".join(f"{w}: first / plant sig. / decoy sig. (t)" for w in worths) + " |\n"
            "|---|" + "---|" * len(worths) + "\n")
    rows = []
    for m in metrics:
        cells = []
        for w in worths:
            e = by_worth[w]["summary"].get(m)
            cells.append("-" if e is None else
                         f"{_rate(e['planted_first'])} / {_rate(e['plant_significant'])} / {_rate(e.get('decoy_significant_t', [0, 0]))}")
        rows.append(f"| {m} | " + " | ".join(cells) + " |\n")
    return "Per worth (`--worth`):\n\n" + head + "".join(rows)


def _pair(entry: dict, who: str) -> str:
    t, b = entry.get(f"{who}_significant_t", [0, 0]), entry.get(f"{who}_significant_bounded", [0, 0])
    return f"{_rate(t)} / {_rate(b)}"


def _frac(kn) -> float:
    return kn[0] / kn[1] if kn[1] else 0.0


def kind_table_metrics(metrics: list[str]) -> list[str]:
    """The metrics of the per-kind table: the headline, then the fusion's members that were judged."""
    from ..score.metrics.registry import FUSION_METRICS
    from ..report.headline import headline_metric

    head = headline_metric(metrics)
    return [head] + [m for m in FUSION_METRICS if m in metrics and m != head] + ["fusion"]
