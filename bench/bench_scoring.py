"""Scoring cost against generation cost, on the demo zoo (issue 4: scoring <= 10% of generation).

Runs the audit of a zoo cold into a fresh temporary output folder (generation + scoring), then deletes
the per-image score/feature store and reruns: every image is cached, no model is loaded, so the second
run's wall time is scoring + estimation + report for all default metrics. Prints the ratio against the
first run's generation seconds, both measured in this process.

    python bench/bench_scoring.py [model_zoo.yaml]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from copyscope.audit import run_audit  # noqa: E402


def main(zoo: str = "model_zoo.yaml") -> None:
    out = Path(tempfile.mkdtemp(prefix="bench_scoring_"))
    try:
        t0 = time.perf_counter()
        cold = run_audit(zoo, out)
        cold_wall = time.perf_counter() - t0
        gen_seconds = cold["generation"]["seconds"]
        shutil.rmtree(out / "cache" / "features")
        t0 = time.perf_counter()
        warm = run_audit(zoo, out)
        score_wall = time.perf_counter() - t0
        assert warm["generation"]["generated"] == 0
        metrics = list(warm["games"][0]["metrics"])
        print(f"zoo: {zoo}; images: {cold['generation']['generated']}; metrics: {', '.join(metrics)}")
        print(f"cold audit wall time          {cold_wall:8.2f} s")
        print(f"  of which generation         {gen_seconds:8.2f} s")
        print(f"re-score + estimate + report  {score_wall:8.2f} s  (all images cached, score store deleted)")
        print(f"scoring / generation ratio    {score_wall / gen_seconds:8.3f}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
