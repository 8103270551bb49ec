"""Scoring cost against generation cost, on the demo zoo (issue 4: scoring <= 10% of generation).

1. Runs the audit of a zoo cold into a fresh temporary output folder, with scoring in the audit's own thread
   (``COPYSCOPE_BACKGROUND=0``) so that no scoring thread competes with the pipelines; its report gives the
   seconds spent inside the diffusers pipelines (``generation.seconds``).
2. Deletes the per-image score/feature store, prepares the audit again (fresh metric objects: learned
   backbones start with empty memos and load their weights), then times the scoring stage alone, in this
   process: every metric's reference features and per-image rows (PNG decode, features, similarity to every
   reference image) for every cached image, in batches of 32 images with a progress bar, exactly as the
   audit's ``Scorer`` stores them (one row per image in the feature cache). Metrics sharing a backbone
   (effnet, fd_effnet, kid_effnet) embed each image once: the first of them carries the embedding cost
   (and the weight loading), the others reuse its rows.
3. Deletes the store again and times a whole warm rerun (nothing generated: scoring + bootstrap
   estimation + report.json/HTML/CSV), for the end-to-end picture.

Prints both as ratios to the generation seconds of step 1, with the learned-feature metrics (those with a
learned backbone) split from the others.

    python bench/bench_scoring.py [model_zoo.yaml] [--no-progress]

``--scoring-only DIR`` skips steps 1 and 3: it times step 2 on the images an earlier audit of the zoo cached
in DIR (its output folder; DIR/cache/features is deleted first) and prints the learned metrics' scoring time
as a ratio to the other metrics' (both measured in this process), for machines too loaded to run the whole
benchmark.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from copyscope.audit import audit_zoo, prepare_audit  # noqa: E402
from copyscope.score.scorer import Scorer  # noqa: E402

BATCH = 32


def _learned(metric) -> bool:
    bb = getattr(metric, "backbone", None)
    return bb is not None and bb.key != "pixels"


def _score_all(prep, keys: list[str], show_progress: bool) -> dict[str, float]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    scorer = Scorer(prep.metrics, prep.cache, prep.refs, prep.zoo.spec.aggregate)
    per_metric: dict[str, float] = {}
    columns = (TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not show_progress, transient=True) as progress:
        for metric in prep.metrics:
            task = progress.add_task(metric.name, total=len(keys))
            t = time.perf_counter()
            if metric.kind == "per_image":
                scorer.reference_features(metric)
            for start in range(0, len(keys), BATCH):
                chunk = keys[start : start + BATCH]
                scorer.rows(metric, chunk)
                progress.advance(task, len(chunk))
            per_metric[metric.name] = time.perf_counter() - t
    return per_metric


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo", nargs="?", default="model_zoo.yaml")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar while scoring")
    ap.add_argument("--scoring-only", type=Path, metavar="DIR", help="only step 2, on an earlier audit's output folder")
    args = ap.parse_args(argv)
    if args.scoring_only:
        return scoring_only(args)
    out = Path(tempfile.mkdtemp(prefix="bench_scoring_"))
    os.environ["COPYSCOPE_CACHE"] = str(out / "cache")  # cold: not the shared user cache
    try:
        os.environ["COPYSCOPE_BACKGROUND"] = "0"
        t0 = time.perf_counter()
        cold = audit_zoo(args.zoo, out)
        cold_wall = time.perf_counter() - t0
        del os.environ["COPYSCOPE_BACKGROUND"]
        gen_seconds = cold["generation"]["seconds"]

        prep = prepare_audit(args.zoo, out)
        shutil.rmtree(prep.cache.features)
        keys = sorted(p.stem for p in (prep.cache.images).glob("*/*.png"))
        per_metric = _score_all(prep, keys, show_progress=not args.no_progress and sys.stderr.isatty())
        score_seconds = sum(per_metric.values())
        learned = {m.name for m in prep.metrics if _learned(m)}
        learned_seconds = sum(s for n, s in per_metric.items() if n in learned)

        shutil.rmtree(out / "cache" / "features")
        t0 = time.perf_counter()
        warm = audit_zoo(args.zoo, out)
        warm_wall = time.perf_counter() - t0
        assert warm["generation"]["generated"] == 0

        import torch

        print(f"zoo: {args.zoo}; images: {len(keys)}; references: {len(prep.refs.images)}; "
              f"torch threads: {torch.get_num_threads()}; metrics: {', '.join(per_metric)}")
        print(f"unavailable here: {', '.join(prep.unavailable) or '-'}")
        print(f"cold audit wall time (scoring in the audit thread) {cold_wall:8.2f} s")
        print(f"  of which inside the pipelines                    {gen_seconds:8.2f} s  (generation)")
        print(f"scoring alone (all metrics, all images)            {score_seconds:8.2f} s")
        for name, s in per_metric.items():
            print(f"    {name:<12}{' (learned)' if name in learned else '          '}                        {s:8.3f} s")
        print(f"warm rerun: score + estimate + report              {warm_wall:8.2f} s")
        print(f"scoring / generation                               {score_seconds / gen_seconds:8.3f}  (target <= 0.10)")
        print(f"  without the learned metrics                      {(score_seconds - learned_seconds) / gen_seconds:8.3f}")
        print(f"  the learned metrics alone                        {learned_seconds / gen_seconds:8.3f}")
        print(f"warm rerun / generation                            {warm_wall / gen_seconds:8.3f}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def scoring_only(args) -> None:
    out = args.scoring_only
    prep = prepare_audit(args.zoo, out)
    shutil.rmtree(prep.cache.features, ignore_errors=True)  # that audit's image cache: features recomputed
    keys = sorted(p.stem for p in (prep.cache.images).glob("*/*.png"))
    per_metric = _score_all(prep, keys, show_progress=not args.no_progress and sys.stderr.isatty())
    learned = {m.name for m in prep.metrics if _learned(m)}
    learned_seconds = sum(s for n, s in per_metric.items() if n in learned)
    other_seconds = sum(s for n, s in per_metric.items() if n not in learned)
    import torch

    print(f"zoo: {args.zoo}; images: {len(keys)}; references: {len(prep.refs.images)}; "
          f"torch threads: {torch.get_num_threads()}")
    for name, s in per_metric.items():
        print(f"    {name:<12}{' (learned)' if name in learned else '          '}  {s:8.3f} s")
    print(f"scoring, learned metrics       {learned_seconds:8.2f} s")
    print(f"scoring, the other metrics     {other_seconds:8.2f} s")
    print(f"learned / other                {learned_seconds / other_seconds:8.2f}")


if __name__ == "__main__":
    main()
