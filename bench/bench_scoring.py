"""Scoring cost against generation cost, on the demo zoo (issue 4: scoring <= 10% of generation).

1. Runs the audit of a zoo cold into a fresh temporary output folder; its report gives the seconds
   spent inside the diffusers pipelines (``generation.seconds``).
2. Deletes the per-image score/feature store, then times the scoring stage alone, in this process:
   every default metric's reference features and per-image rows (PNG decode, features, similarity
   to every reference image) for every cached image, exactly as the audit's ``Scorer`` does.
3. Deletes the store again and times a whole warm rerun (nothing generated: scoring + bootstrap
   estimation + report.json/HTML/CSV), for the end-to-end picture.

Prints both as ratios to the generation seconds of step 1.

    python bench/bench_scoring.py [model_zoo.yaml]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from copyscope.audit import prepare_audit, run_audit  # noqa: E402
from copyscope.score import Scorer  # noqa: E402


def main(zoo: str = "model_zoo.yaml") -> None:
    out = Path(tempfile.mkdtemp(prefix="bench_scoring_"))
    os.environ["COPYSCOPE_CACHE"] = str(out / "cache")  # cold: not the shared user cache
    try:
        t0 = time.perf_counter()
        cold = run_audit(zoo, out)
        cold_wall = time.perf_counter() - t0
        gen_seconds = cold["generation"]["seconds"]

        shutil.rmtree(out / "cache" / "features")
        prep = prepare_audit(zoo, out)
        keys = sorted(p.stem for p in (prep.cache.images).glob("*/*.png"))
        scorer = Scorer(prep.metrics, prep.cache, prep.refs, prep.zoo.spec.aggregate)
        per_metric = {}
        t0 = time.perf_counter()
        for metric in prep.metrics:
            t = time.perf_counter()
            if metric.kind == "per_image":
                scorer.reference_features(metric)
            scorer.rows(metric, keys)
            per_metric[metric.name] = time.perf_counter() - t
        score_seconds = time.perf_counter() - t0

        shutil.rmtree(out / "cache" / "features")
        t0 = time.perf_counter()
        warm = run_audit(zoo, out)
        warm_wall = time.perf_counter() - t0
        assert warm["generation"]["generated"] == 0

        print(f"zoo: {zoo}; images: {len(keys)}; metrics: {', '.join(per_metric)}")
        print(f"cold audit wall time                    {cold_wall:8.2f} s")
        print(f"  of which inside the pipelines         {gen_seconds:8.2f} s  (generation)")
        print(f"scoring alone (all metrics, all images) {score_seconds:8.2f} s")
        for name, s in per_metric.items():
            print(f"    {name:<34}  {s:8.3f} s")
        print(f"warm rerun: score + estimate + report   {warm_wall:8.2f} s")
        print(f"scoring / generation                    {score_seconds / gen_seconds:8.3f}  (target <= 0.10)")
        print(f"warm rerun / generation                 {warm_wall / gen_seconds:8.3f}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
