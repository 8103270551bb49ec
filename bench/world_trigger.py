"""Judge a validity run of the trigger world (bench/world_trigger.md): do its LoRAs combine, and does the headline's bar
hold there?

    copyscope demo bench --out OUT --pool-recipe trigger-leave-alone --jobs 2 --seeds 8 --no-truth
    python bench/world_trigger.py OUT [--json bench/validity_world_trigger.json] [--baseline bench/validity_results_full_8seeds.json]

Reads OUT/results.json and every plain scenario without the ControlNet (its audit's coalitions.csv and report.json)
and reports, under ``--metric`` (phash):

* per work: its LoRA's effect alone (similarity to the work over the base's, on the work's own trigger prompt);
* per plain scenario without the ControlNet: the plant's retention with both decoys on at full weight, and the
  plant x decoy Shapley interactions (value, Holm-adjusted p);
* per (LoRA, other work): how far that LoRA alone moves the other work's similarity;
* per metric over all scenarios: plant first (against the decoys), plant significant, decoy significant (t test,
  Holm), beside the same scenarios of ``--baseline`` (a run with the demo pool);
* the two-works scenarios' own-work verdicts.

Writes the document to ``--json`` (when given) and prints its tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

ALPHA = 0.05


def verdict_counts(results: list[dict], metric: str) -> dict | None:
    """[k, n] per verdict (the corrected "first", and the t test's significance where the run judged it), or None
    when the run has no verdicts for ``metric``."""
    from copyscope.demo.bench_verdicts import decoy_t, first_vs_decoys, plant_t

    vs = [r["verdicts"].get(metric) for r in results]
    if not vs or any(v is None for v in vs):
        return None

    def count(ok) -> list[int]:
        return [int(sum(bool(ok(v)) for v in vs)), len(vs)]

    return {"first_vs_decoys": count(first_vs_decoys), "plant_significant_t": count(plant_t),
            "decoy_significant_t": count(decoy_t)}


def scenario_folder(out: Path, name: str) -> Path:
    from copyscope.demo.bench import _folder_name

    return out / "scenarios" / _folder_name(name)


def stacking_rows(out: Path, results: list[dict], metric: str) -> dict:
    """Effects alone, retentions, partners alone and interactions from the plain scenarios without the ControlNet."""
    from bench_stacking import _coalition, _worths, retention

    plain = [r for r in results if r["kind"] == "plain" and not r["controlnet"]]
    alone, partners, scenarios = {}, {}, {}
    for r in plain:
        work, (plant,), decoys = r["works"][0], list(r["plants"]), r["decoys"]
        folder = scenario_folder(out, r["scenario"])
        w = _worths(folder, metric)
        base, own = _coalition(w, ()), _coalition(w, (plant,))
        alone[work] = own - base
        for d in decoys:
            partners[f"{d} on {work}"] = _coalition(w, (d,)) - base
        game = json.loads((folder / "report.json").read_text())["games"][0]["metrics"][metric]
        inter = game.get("interactions") or {}
        players = inter.get("players") or []
        pairs = []
        for (i, j), value, p in zip(inter.get("pairs") or [], inter.get("values") or [], inter.get("p_adjusted") or []):
            if plant in (players[i], players[j]):
                pairs.append({"pair": f"{players[i]} x {players[j]}", "value": value, "p_adjusted": p})
        scenarios[r["scenario"]] = {
            "work": work, "effect_alone": own - base,
            "retention_both_decoys": retention(_coalition(w, (plant, *decoys)), base, own - base),
            "retention_each_decoy": {d: retention(_coalition(w, (plant, d)), base, own - base) for d in decoys},
            "plant_decoy_interactions": pairs}
    return {"effect_alone": alone, "partner_alone": partners, "plain_no_controlnet": scenarios}


def judge_run(out: Path, baseline: dict | None, metric: str = "phash") -> dict:
    doc = json.loads((out / "results.json").read_text())
    results = doc["results"]
    names = {r["scenario"] for r in results}
    base_results = [r for r in (baseline or {}).get("results", []) if r["scenario"] in names]
    counts = {m: verdict_counts(results, m) for m in doc["metrics"]}
    base_counts = {m: verdict_counts(base_results, m) for m in doc["metrics"]} if base_results else {}
    rows = stacking_rows(out, results, metric)
    inter = [p for s in rows["plain_no_controlnet"].values() for p in s["plant_decoy_interactions"]]
    two = [r for r in results if r["kind"] == "two-works"]
    return {"run": {k: doc.get(k) for k in ("pool_recipe", "subset", "audit_seeds", "worth", "scenarios", "wall_seconds")},
            "metric": metric, **rows,
            "interactions_significant": [int(sum(p["p_adjusted"] < ALPHA for p in inter)), len(inter)],
            "two_works_own_work": [int(sum(bool(r["verdicts"][metric].get("own_work")) for r in two)), len(two)],
            "counts": counts, "baseline_counts": base_counts,
            "baseline_scenarios": len(base_results)}


def _k(c) -> str:
    return "n/a" if not c else f"{c[0]}/{c[1]}"


def tables(j: dict) -> str:
    m = j["metric"]
    lines = [f"Per work ({m}): the LoRA alone on its own trigger prompt, and with both decoys (retention)\n",
             "| scenario | effect alone | retention, both decoys | retention with each decoy | plant x decoy "
             "interactions (value, Holm p) |", "|---|---|---|---|---|"]
    for name, s in j["plain_no_controlnet"].items():
        each = ", ".join(f"{v:.2f} ({d})" if v is not None else f"n/a ({d})" for d, v in s["retention_each_decoy"].items())
        ret = s["retention_both_decoys"]
        pairs = ", ".join(f"{p['pair']} {p['value']:+.3f} (p {p['p_adjusted']:.2f})" for p in s["plant_decoy_interactions"])
        lines.append(f"| {name} | {s['effect_alone']:+.3f} | {'n/a' if ret is None else f'{ret:.2f}'} | {each} | {pairs} |")
    lines += ["", f"A LoRA alone on another work's trigger prompt: change of that work's {m} similarity over the base\n",
              "| LoRA on work | change |", "|---|---|"]
    lines += [f"| {k} | {v:+.3f} |" for k, v in sorted(j["partner_alone"].items())]
    lines += ["", "Per metric, all scenarios (t test, Holm; \"first\" against the decoys); the demo pool's run of the same "
              "scenarios beside it\n",
              "| metric | first | plant significant | decoy significant | demo pool: first / plant sig. / decoy sig. |",
              "|---|---|---|---|---|"]
    for metric, c in j["counts"].items():
        if c is None:
            continue
        b = j["baseline_counts"].get(metric)
        base = "n/a" if not b else " / ".join(_k(b[k]) for k in ("first_vs_decoys", "plant_significant_t", "decoy_significant_t"))
        lines.append(f"| {metric} | {_k(c['first_vs_decoys'])} | {_k(c['plant_significant_t'])} | "
                     f"{_k(c['decoy_significant_t'])} | {base} |")
    lines += ["", f"plant x decoy interactions significant: {_k(j['interactions_significant'])}; two works, own work "
              f"first: {_k(j['two_works_own_work'])}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--baseline", type=Path, default=REPO / "bench" / "validity_results_full_8seeds.json")
    ap.add_argument("--metric", default="phash")
    args = ap.parse_args()
    baseline = json.loads(args.baseline.read_text()) if args.baseline and args.baseline.is_file() else None
    j = judge_run(args.out.resolve(), baseline, args.metric)
    if args.json:
        args.json.write_text(json.dumps(j, indent=1) + "\n")
    print(tables(j))


if __name__ == "__main__":
    main()
