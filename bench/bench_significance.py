"""The validity benchmark's verdicts under each significance test, recomputed from its per-seed values.

    copyscope demo bench --seeds 16 --out DIR        # once (docs/validity.md)
    python bench/bench_significance.py DIR [--seeds 8 16]
    python bench/bench_significance.py DIR --rewrite-results FILE   # results.json judged again by the current judge

For every scenario report under ``DIR/scenarios`` and every per-image metric with a declared range, the
per-seed Shapley values of the first ``m`` seeds (for a per-image metric exactly what an audit of ``m``
seeds computes) go through the three tests of ``estimator.significance``: the skew-corrected t test
(``t``), the distribution-free betting test (``betting``) and their conjunction (``both``, the default),
each Holm-corrected across the scenario's players at alpha 0.05. Per metric and seed count: in how many
scenarios every plant is significant, and in how many some decoy is. Set metrics (KID, Fréchet) and the
fusion have no per-seed bound (``seed_bound`` null in the report: their claims stay t tests) and are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from copyscope.demo.bench import _folder_name  # noqa: E402
from copyscope.estimate.shapley import adjust_p_values  # noqa: E402
from copyscope.estimate.shapley.bounded import betting_p_values  # noqa: E402
from copyscope.estimate.shapley.inference import seed_inference  # noqa: E402

ALPHA = 0.05
TESTS = ("t", "betting", "both")


def verdicts(per_seed: np.ndarray, bound: float, plants: list[int], decoys: list[int]) -> dict[str, tuple[bool, bool]]:
    """(every plant significant, some decoy significant) under each test, Holm across the players."""
    values = per_seed.mean(axis=1)
    _, p_t = seed_inference(values, per_seed, None, 1.0 - ALPHA)
    p_b = betting_p_values(per_seed, bound)
    out = {}
    for test, p in (("t", p_t), ("betting", p_b), ("both", np.fmax(p_t, p_b))):
        sig = (adjust_p_values(p, "holm") < ALPHA) & (values > 0)
        out[test] = (bool(all(sig[i] for i in plants)), bool(any(sig[i] for i in decoys)))
    return out


def rejudge(out: Path, seeds: list[int]) -> dict:
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    table: dict = {}
    for r in doc["results"]:
        rep_path = out / "scenarios" / _folder_name(r["scenario"]) / "report.json"
        game = json.loads(rep_path.read_text(encoding="utf-8"))["games"][0]
        names = list(game["players"])
        plants = [names.index(p) for p in r["plants"]]  # plant LoRA -> the work it copies
        decoys = [names.index(d) for d in r["decoys"]]
        for metric, sec in game["metrics"].items():
            bound = sec.get("seed_bound")  # the audit's: per-image metrics with a declared range, exact Shapley
            if bound is None or not sec.get("per_seed"):
                continue
            x = np.array([sec["per_seed"][n] for n in names], dtype=float)
            for m in seeds:
                if m > x.shape[1]:
                    continue
                row = table.setdefault(metric, {}).setdefault(m, {t: [0, 0, 0] for t in TESTS})
                for test, (plant, decoy) in verdicts(x[:, :m], bound, plants, decoys).items():
                    row[test][0] += plant
                    row[test][1] += decoy
                    row[test][2] += 1
    return table


def markdown(table: dict) -> str:
    lines = ["| metric | seeds | plant significant: t / betting / both | decoy significant: t / betting / both |",
             "|---|---|---|---|"]
    for metric in sorted(table):
        for m, row in sorted(table[metric].items()):
            n = row["t"][2]
            plant = " / ".join(f"{row[t][0]}/{n}" for t in TESTS)
            decoy = " / ".join(f"{row[t][1]}/{n}" for t in TESTS)
            lines.append(f"| {metric} | {m} | {plant} | {decoy} |")
    return "\n".join(lines)


def rewrite_results(out: Path, dest: Path) -> dict:
    """``results.json`` of a bench output judged again from its scenario (and truth) reports with the current
    ``copyscope.demo.bench_verdicts.judge`` (e.g. after the judge learnt to keep each test's verdicts), written to
    ``dest``; nothing is audited again."""
    from copyscope.demo.bench_verdicts import format_table, judge, summarise
    from copyscope.demo.scenarios import scenarios

    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    by_name = {s.name: s for s in scenarios(doc["subset"])}
    results = []
    for r in doc["results"]:
        rep = json.loads((out / "scenarios" / _folder_name(r["scenario"]) / "report.json").read_text(encoding="utf-8"))
        truth_file = out / "truth" / _folder_name(r["scenario"]) / "report.json"
        truth = None
        if truth_file.is_file():
            t = json.loads(truth_file.read_text(encoding="utf-8"))["games"][0]["metrics"]
            truth = {m: {p: v["value"] for p, v in sec["shapley"].items()} for m, sec in t.items()}
        results.append({**r, "verdicts": judge(by_name[r["scenario"]], rep, truth)})
    doc = {**doc, "results": results, "summary": summarise(results)}
    dest.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(format_table(doc["summary"]))
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a `copyscope demo bench` output folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--rewrite-results", type=Path, default=None, metavar="FILE",
                    help="instead: judge the run's reports again with the current judge and write its results.json to FILE")
    args = ap.parse_args()
    if args.rewrite_results is not None:
        rewrite_results(args.out, args.rewrite_results)
        return
    print(markdown(rejudge(args.out, args.seeds)))


if __name__ == "__main__":
    main()
