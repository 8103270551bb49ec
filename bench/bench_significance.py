"""The validity benchmark's verdicts under each significance test, recomputed from its per-seed values.

    copyscope demo bench --seeds 16 --out DIR        # once (docs/validity.md)
    python bench/bench_significance.py DIR [--seeds 8 16]
    python bench/bench_significance.py DIR --windows 0:8 8:16 0:16 [--json FILE] [--scenario-rows phash ...]  # seed windows
    python bench/bench_significance.py DIR --rewrite-results FILE [--zoo ZOO]   # results.json judged again by the current judge

For every scenario report under ``DIR/scenarios`` and every per-image metric with a declared range, the
per-seed Shapley values of the first ``m`` seeds (for a per-image metric exactly what an audit of ``m``
seeds computes) go through the three tests of ``estimator.significance``: the skew-corrected t test
(``t``), the distribution-free betting test (``betting``) and their conjunction (``both``, the default),
each Holm-corrected across the scenario's players at alpha 0.05. Per metric and seed count: in how many
scenarios every plant is significant, and in how many some decoy is. Set metrics (KID, Fréchet) and the
fusion have no per-seed bound (``seed_bound`` null in the report: their claims stay t tests) and are left out.

``--windows A:B ...`` judges seeds A..B-1 instead (8:16 of a 16-seed run is an independent 8-seed audit on
images the first eight seeds never showed) and adds the headline's bar under the t test (docs/validity.md):
the plant first, counted two ways, against every decoy (the corrected definition: the benchmark's ControlNet is
fed the work's own depth map, a copier by construction) and against every other player, ControlNet included (the
original); every plant significant; no decoy significant; and in how many scenarios with a ControlNet it is
significant itself. For a per-image metric with exact Shapley values the value of a window is the mean of its
per-seed values, as an audit of those seeds computes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from copyscope.demo.bench import _folder_name, variant_folder  # noqa: E402
from copyscope.estimate.shapley import adjust_p_values  # noqa: E402
from copyscope.estimate.shapley.bounded import betting_p_values  # noqa: E402
from copyscope.estimate.shapley.inference import seed_inference  # noqa: E402

ALPHA = 0.05
TESTS = ("t", "betting", "both")


def significant(per_seed: np.ndarray, bound: float) -> dict[str, np.ndarray]:
    """Per test: which players are significant (positive, Holm across the players at ALPHA)."""
    values = per_seed.mean(axis=1)
    _, p_t = seed_inference(values, per_seed, None, 1.0 - ALPHA)
    p_b = betting_p_values(per_seed, bound)
    return {test: (adjust_p_values(p, "holm") < ALPHA) & (values > 0)
            for test, p in (("t", p_t), ("betting", p_b), ("both", np.fmax(p_t, p_b)))}


def verdicts(per_seed: np.ndarray, bound: float, plants: list[int], decoys: list[int]) -> dict[str, tuple[bool, bool]]:
    """(every plant significant, some decoy significant) under each test, Holm across the players."""
    return {test: (bool(all(sig[i] for i in plants)), bool(any(sig[i] for i in decoys)))
            for test, sig in significant(per_seed, bound).items()}


def bar_verdicts(per_seed: np.ndarray, bound: float, plants: list[int], decoys: list[int]) -> dict[str, bool | None]:
    """The headline's bar on one window of seeds (t test): the plant first against the decoys (``first``) and
    against every other player (``first_all``), every plant and some decoy significant, the bar met under each
    definition of first, and whether the players that are neither plant nor decoy (the ControlNet; in a run with
    the placebo player, the placebo too) are all significant (None if there are none)."""
    return _bar(per_seed.mean(axis=1), significant(per_seed, bound)["t"], plants, decoys)


def _bar(values: np.ndarray, sig: np.ndarray, plants: list[int], decoys: list[int]) -> dict[str, bool | None]:
    """:func:`bar_verdicts` from the window's mean values and t-test significance (computed once by the caller)."""
    others = [i for i in range(len(values)) if i not in plants and i not in decoys]
    rest = [i for i in range(len(values)) if i not in plants]
    first = all(values[p] > max((values[d] for d in decoys), default=-np.inf) for p in plants)
    first_all = all(values[p] > max((values[o] for o in rest), default=-np.inf) for p in plants)
    plant, decoy = all(sig[i] for i in plants), any(sig[i] for i in decoys)
    return {"first": first, "first_all": first_all, "plant_significant": plant, "decoy_significant": decoy,
            "bar": first and plant and not decoy, "bar_all": first_all and plant and not decoy,
            "controlnet_significant": all(sig[i] for i in others) if others else None}


def scenario_games(out: Path):
    """(results row, player names, plant indices, decoy indices, game) of each scenario of a bench output."""
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    sub = variant_folder(doc.get("worth") or "raw", doc.get("placebo") or False)  # the first worth's reports
    for r in doc["results"]:
        rep_path = out / "scenarios" / sub / _folder_name(r["scenario"]) / "report.json"
        game = json.loads(rep_path.read_text(encoding="utf-8"))["games"][0]
        names = list(game["players"])
        yield r, names, [names.index(p) for p in r["plants"]], [names.index(d) for d in r["decoys"]], game


def per_seed_metrics(game: dict, names: list[str]):
    """(metric, per-seed values (players x seeds), seed bound) of each per-image metric with a declared range."""
    for metric, sec in game["metrics"].items():
        bound = sec.get("seed_bound")  # the audit's: per-image metrics with a declared range, exact Shapley
        if bound is None or not sec.get("per_seed"):
            continue
        yield metric, np.array([sec["per_seed"][n] for n in names], dtype=float), bound


def rejudge_windows(out: Path, windows: list[tuple[int, int]], rows_for: tuple[str, ...] = ("phash",)) -> dict:
    """Per window ("A:B") and metric: counts of :func:`bar_verdicts` over the scenarios, and each scenario's row
    (verdicts, values) for the metrics ``rows_for`` (as "<metric>_scenarios")."""
    table: dict = {}
    rows: dict = {m: {} for m in rows_for}
    for r, names, plants, decoys, game in scenario_games(out):
        for metric, x, bound in per_seed_metrics(game, names):
            for a, b in windows:
                if b > x.shape[1]:
                    continue
                key = f"{a}:{b}"
                values, sig = x[:, a:b].mean(axis=1), significant(x[:, a:b], bound)["t"]
                v = _bar(values, sig, plants, decoys)
                row = table.setdefault(key, {}).setdefault(metric, {"n": 0, "n_controlnet": 0})
                row["n"] += 1
                row["n_controlnet"] += v["controlnet_significant"] is not None  # scenarios with a ControlNet
                for k, flag in v.items():
                    if flag is not None:
                        row[k] = row.get(k, 0) + bool(flag)
                if metric in rows:
                    rows[metric].setdefault(key, []).append({
                        "scenario": r["scenario"], **v,
                        "values": {n: round(float(values[i]), 4) for i, n in enumerate(names)},
                        "decoys_significant": [names[d] for d in decoys if sig[d]]})
    return {"windows": table, **{f"{m}_scenarios": per_window for m, per_window in rows.items()}}


def windows_markdown(doc: dict) -> str:
    lines = ["| seeds | metric | first (vs decoys) | first (vs all, ControlNet included) | plant significant | "
             "decoy significant | bar (vs decoys) | bar (vs all) | ControlNet significant |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, metrics in doc["windows"].items():
        a, b = (int(v) for v in key.split(":"))
        for metric in sorted(metrics):
            e = metrics[metric]
            n = e["n"]
            cells = [f"{e.get(k, 0)}/{n}" for k in ("first", "first_all", "plant_significant", "decoy_significant",
                                                     "bar", "bar_all")]
            lines.append(f"| {a}-{b - 1} | {metric} | " + " | ".join(cells)
                         + f" | {e.get('controlnet_significant', 0)}/{e['n_controlnet']} |")
    return "\n".join(lines)


def rejudge(out: Path, seeds: list[int]) -> dict:
    table: dict = {}
    for _, names, plants, decoys, game in scenario_games(out):
        for metric, x, bound in per_seed_metrics(game, names):
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


def rewrite_results(out: Path, dest: Path, zoo: Path | None = None) -> dict:
    """``results.json`` of a bench output judged again from its scenario (and truth) reports with the current
    ``copyscope.demo.bench_verdicts.judge`` (e.g. after the judge learnt to keep each test's verdicts), written to
    ``dest``; nothing is audited again. ``zoo``: the demo zoo the run benchmarked (its world names the scenarios;
    default: scikit-image's world)."""
    from copyscope.demo.bench_verdicts import format_table, judge, summarise
    from copyscope.demo.scenarios import SKIMAGE_WORLD, scenarios, world_of

    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    world = world_of(json.loads((zoo / "ground_truth.json").read_text(encoding="utf-8"))) if zoo else SKIMAGE_WORLD
    by_name = {s.name: s for s in scenarios(doc["subset"], world, doc.get("pool_recipe") or "demo")}

    def rejudged(rows: list[dict], sub: str) -> list[dict]:
        results = []
        for r in rows:
            folder = Path(sub) / _folder_name(r["scenario"])
            rep = json.loads((out / "scenarios" / folder / "report.json").read_text(encoding="utf-8"))
            truth_file = out / "truth" / folder / "report.json"
            truth = None
            if truth_file.is_file():
                t = json.loads(truth_file.read_text(encoding="utf-8"))["games"][0]["metrics"]
                truth = {m: {p: v["value"] for p, v in sec["shapley"].items()} for m, sec in t.items()}
            results.append({**r, "verdicts": judge(by_name[r["scenario"]], rep, truth)})
        return results

    placebo = doc.get("placebo") or False
    results = rejudged(doc["results"], variant_folder(doc.get("worth") or "raw", placebo))  # the first worth's
    doc = {**doc, "results": results, "summary": summarise(results)}
    if doc.get("by_worth"):  # runs with worths keep each worth's rows too: judge them all again
        doc["by_worth"] = {w: {**d, "results": (rs := rejudged(d["results"], variant_folder(w, placebo))),
                               "summary": summarise(rs)} for w, d in doc["by_worth"].items()}
    dest.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(format_table(doc["summary"]))
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a `copyscope demo bench` output folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--rewrite-results", type=Path, default=None, metavar="FILE",
                    help="instead: judge the run's reports again with the current judge and write its results.json to FILE")
    ap.add_argument("--zoo", type=Path, default=None,
                    help="with --rewrite-results: the demo zoo the run benchmarked (default: the scikit-image world's)")
    ap.add_argument("--windows", nargs="+", default=None, metavar="A:B",
                    help="instead: judge seeds A..B-1 of each scenario, with the headline's bar (e.g. 0:8 8:16 0:16)")
    ap.add_argument("--json", type=Path, default=None, help="with --windows: also write the counts to this file")
    ap.add_argument("--scenario-rows", nargs="+", default=["phash"], metavar="METRIC",
                    help="with --windows: keep each scenario's verdicts and values for these metrics (default: phash)")
    args = ap.parse_args()
    if args.rewrite_results is not None:
        rewrite_results(args.out, args.rewrite_results, args.zoo)
        return
    if args.windows:
        try:
            windows = [(int(a), int(b)) for a, b in (w.split(":") for w in args.windows)]
        except ValueError:
            windows = []
        if not windows or any(not 0 <= a < b for a, b in windows):
            raise SystemExit(f"--windows: expected A:B pairs of seed indices with A < B, got {' '.join(args.windows)}")
        doc = {"out": str(args.out), **rejudge_windows(args.out, windows, tuple(args.scenario_rows))}
        if args.json is not None:
            args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(windows_markdown(doc))
        return
    print(markdown(rejudge(args.out, args.seeds)))


if __name__ == "__main__":
    main()
