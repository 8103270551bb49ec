"""Raw against specific worth on the validity benchmark, and how each audit's own headline choice fares.

    copyscope demo bench --no-truth --worth raw,minus_mean,minus_hard,percentile,zscore --out DIR   # once
    python bench/bench_worth.py DIR [--write bench/worth_results.md] [--json bench/validity_worth_results.json]

Reads ``DIR/results.json`` (its ``by_worth``) and each scenario's report (``DIR/scenarios/[<worth>/]<name>``) for
the headline the audit chose from its positive controls (copyscope.controls.headline). Prints, per worth: the
per-metric table (planted first / plant significant under the claim's rule / decoy significant under the t
test) and the chosen headlines' record (copyscope.demo.bench_verdicts.headline_bar: plant first, plant significant and
no decoy significant, in how many scenarios; "first" also counted against the decoys alone, the ControlNet, fed the
work's own depth map, judged apart).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from copyscope.demo.bench import _folder_name, variant_folder  # noqa: E402
from copyscope.demo.bench_verdicts import _rate, format_worth_table, headline_bar  # noqa: E402


def with_headlines(out: Path, by_worth: dict, placebo: bool | str = False) -> dict:
    """Each scenario row of each worth with the headline the current rule chooses from its report's stored control
    scores (copyscope.controls.headline.choose_headline: the same choice an audit makes now, whatever the code
    that ran the benchmark chose)."""
    from copyscope.report.controls import controls_section

    for worth, doc in by_worth.items():
        sub = variant_folder(worth, placebo)
        for row in doc["results"]:
            rep = out / "scenarios" / sub / _folder_name(row["scenario"]) / "report.json"
            game = json.loads(rep.read_text())["games"][0]
            controls = game.get("controls") or {}
            if controls.get("metrics"):
                choice = controls_section(controls, game["metrics"], game["players"], "auto")["headline"]
                row["headline"], row["headline_rule"] = choice["metric"], choice["rule"]
            else:
                row["headline"], row["headline_rule"] = game.get("headline"), None
        doc["headline_rule"] = headline_bar(doc["results"])
    return by_worth


def markdown(by_worth: dict, doc: dict) -> str:
    kinds = f" (kinds {', '.join(doc['kinds'])})" if doc.get("kinds") else ""
    lines = [f"Validity benchmark, {doc.get('subset', 'full')} set{kinds}, {doc.get('audit_seeds')} seeds, "
             f"{doc.get('scenarios')} scenarios ({doc.get('wall_seconds', 0) / 60:.0f} min with --jobs {doc.get('jobs')}).",
             "",
             format_worth_table(by_worth), "",
             "The audits' own headline (chosen from their positive controls), per worth: the metrics chosen; scenarios "
             "where it puts the plant first, finds it significant (claim's rule / t test alone) and calls no decoy "
             "significant:", "",
             "| worth | chosen | first | first (vs decoys) | plant significant (t) | meets the bar (claim) "
             "| meets the bar (t) | meets the bar (t, first vs decoys) | decoy significant (t) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for w, d in by_worth.items():
        h = d["headline_rule"]
        chosen = ", ".join(f"{m} {n}" for m, n in h["chosen"].items())
        sig_t = _rate(h["plant_significant_t"]) if "plant_significant_t" in h else "n/a"
        lines.append(f"| {w} | {chosen} | {_rate(h['planted_first'])} | {_rate(h['planted_first_vs_decoys'])} "
                     f"| {sig_t} | {_rate(h['meets_bar'])} | {_rate(h['meets_bar_t'])} "
                     f"| {_rate(h['meets_bar_t_vs_decoys'])} | {_rate(h['decoy_significant_t'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--write", type=Path, help="write the Markdown tables here")
    ap.add_argument("--json", type=Path, help="write the per-worth summaries and headline records here")
    a = ap.parse_args()
    doc = json.loads((a.out / "results.json").read_text())
    by_worth = with_headlines(a.out, doc.get("by_worth") or {doc.get("worth", "raw"): doc}, doc.get("placebo") or False)
    text = markdown(by_worth, doc)
    print(text)
    if a.write:
        a.write.write_text(text)
    if a.json:
        slim = {w: {"summary": d["summary"], "headline_rule": d["headline_rule"],
                    "headlines": {r["scenario"]: r.get("headline") for r in d["results"]}} for w, d in by_worth.items()}
        meta = {k: doc.get(k) for k in ("subset", "audit_seeds", "scenarios", "jobs", "wall_seconds", "alpha", "metrics")}
        a.json.write_text(json.dumps({"format": "copyscope-validity-worth/1", **meta, "by_worth": slim}, indent=1) + "\n")


if __name__ == "__main__":
    main()
