"""How an audit's cost grows with the number of players: exact vs sampled estimators.

    python bench/bench_players.py [--max-players 5] [--threads 1]

Two parts, one run:

1. **measured**: real audits (``audit_zoo``, cold cache, scoring included) over tiny
   random-weight models with 1 ControlNet + k LoRAs (players = k + 1, up to ``--max-players``),
   32 px, 10 steps, 1 prompt x 2 seeds: distinct coalitions, images, wall seconds, seconds per
   coalition; for the largest game also KernelSHAP and permutation sampling with a budget.
2. **counted**: distinct coalitions the audit evaluates for n = 2 ... 20 players (found by
   the estimator's own plan: ``copyscope.plan.games.planned_coalitions``; no images), exact vs KernelSHAP and permutation sampling at fixed
   budgets, with images (x 32 per coalition: 8 prompts x 4 seeds) and hours projected from the
   seconds per coalition measured in part 1 (scaled to 32 images).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit_overhead import machine, tiny_zoo  # noqa: E402


def count(n: int, method: str, budget: int | None, seed: int = 0) -> int:
    """Distinct coalitions an audit evaluates for a synthetic n-player game (no images): the
    estimator's own plan, as plan.json lists it (copyscope.plan.games.planned_coalitions)."""
    from copyscope.plan.games import planned_coalitions
    from copyscope.estimate.shapley import get_estimator

    return len(planned_coalitions(n, get_estimator(method, n, budget), budget, seed))


def measured(max_players: int, scratch: Path) -> list[dict]:
    import yaml

    from copyscope.audit import audit_zoo

    rows = []
    n_loras = max_players - 1
    base = tiny_zoo(scratch / "models", loras=n_loras, resolution=32, steps=10, seeds=2, batch_size=2, prompts=1,
                    metrics=["ssim", "dhash", "histogram"])
    data = yaml.safe_load(base.read_text())
    configs = [(k + 1, "exact", None) for k in range(n_loras + 1)]
    configs += [(max_players, "kernelshap", 2 * max_players + 2), (max_players, "permutation", 2 * max_players + 2)]
    for i, (n, method, budget) in enumerate(configs):
        d = dict(data)
        d["loras"] = data["loras"][: n - 1]
        d["estimator"] = {"method": method, "budget": budget, "bootstrap": 50}
        d["output"] = str(scratch / f"out{i}")
        d["cache"] = str(scratch / f"out{i}" / "cache")  # cold: not the shared user cache
        path = scratch / f"zoo{i}.yaml"
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        t0 = time.perf_counter()
        report = audit_zoo(path)
        wall = time.perf_counter() - t0
        coal = len(report["games"][0]["images"])
        images = report["generation"]["generated"]
        rows.append({"n": n, "method": method, "budget": budget, "coalitions": coal, "images": images, "seconds": wall,
                     "per_coalition": wall / coal, "per_image": wall / images})
        print(f"  n={n:2d} {method:11s} budget={str(budget):4s} coalitions={coal:3d} images={images:4d} "
              f"wall={wall:7.2f} s  {wall / coal:.2f} s/coalition  {wall / images:.3f} s/image", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-players", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budgets", type=int, nargs="+", default=[64, 256, 1024])
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from copyscope.common.errors import CopyscopeError
    from copyscope.generate.engine import _quiet_diffusers

    _quiet_diffusers()
    print(f"machine: {machine()}")
    scratch = Path(tempfile.mkdtemp(prefix="bench-players-"))
    try:
        print("measured (tiny models, 32 px, 10 steps, 2 images per coalition, 3 metrics):")
        rows = measured(args.max_players, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    exact = [r for r in rows if r["method"] == "exact"]
    per_image = sorted(r["per_image"] for r in exact)[len(exact) // 2]
    print(f"median {per_image:.3f} s per image (audit wall / images) on this machine")

    images_per_coalition = 32
    print(f"\ncounted (no images): distinct coalitions; images at {images_per_coalition} per coalition; "
          f"hours at {per_image:.3f} s/image")
    header = f"{'n':>3} | {'exact':>9}" + "".join(f" | {'kernelshap ' + str(b):>15} | {'permutation ' + str(b):>16}" for b in args.budgets)
    print(header)
    print("-" * len(header))
    for n in [2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 20]:
        cells = [f"{n:>3}", f"{count(n, 'exact', None) if n <= 16 else 2 ** n:>9}"]
        for b in args.budgets:
            for method, width in (("kernelshap", 15), ("permutation", 16)):
                try:
                    c = count(n, method, b)
                    cells.append(f"{c:>{width}}")
                except CopyscopeError:  # budget too small for n
                    cells.append(f"{'(too small)':>{width}}")
        print(" | ".join(cells), flush=True)
    print("\nprojected cost (coalitions x images x s/image):")
    for n in [4, 8, 12, 16, 20]:
        ex = 2**n
        parts = [f"n={n:2d}: exact {ex:>8} coalitions = {ex * images_per_coalition:>9} images ~ "
                 f"{ex * images_per_coalition * per_image / 3600:8.1f} h"]
        for b in args.budgets:
            try:
                c = count(n, "kernelshap", b)
                parts.append(f"kernelshap {b}: {c} coalitions ~ {c * images_per_coalition * per_image / 3600:.1f} h")
            except CopyscopeError:  # budget too small for n
                pass
        print("; ".join(parts))


if __name__ == "__main__":
    main()
