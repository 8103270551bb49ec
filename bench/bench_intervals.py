"""Do the intervals and tests keep their promise at the seed counts people use? Simulated audits.

    python bench/bench_intervals.py [--games 2000] [--seeds 4 8 16 32 64] [--boot 200]

Every row draws ``--games`` independent 4-player audits (copyscope/estimate/shapley/seed_games.py: a
strong, a moderate, a negative and a null player; per-seed noise shared by every coalition, as
with common random numbers) and runs the interval method on each. Columns:

  * cover: share of audits whose 95 % interval holds the true Shapley value (mean over the 4
    players; min over players in brackets). Promise: >= 0.95, test threshold 0.93.
  * FP: share of audits in which the null player (true value 0) gets a one-sided p < 0.05
    (uncorrected). Promise: <= 0.05, test threshold 0.06.
  * power: the same share for the moderate player (true value 0.55 per image; 1.47 for KID).

Scenarios: per-image metrics with Gaussian seed noise, with right-skewed and with left-skewed
seed noise (centred exponential player-by-seed effects, skewness +-2: a component that copies, or
breaks the image, on a few seeds only), and a set-level metric (unbiased MMD^2 with KID's kernel,
one image per seed and coalition, against 4 fixed references).

Methods: ``jackknife`` (the audit's default: leave-one-seed-out, skew-corrected t),
``jackknife-t`` (the same without the skew correction), ``bootstrap`` (the older percentile
bootstrap over seeds with ``--boot`` resamples and the bootstrap-count test).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from copyscope.estimate.shapley.seed_games import calibration, kid_audits, per_image_audits, seed_columns  # noqa: E402

SCENARIOS = ("per-image gaussian", "per-image skew+", "per-image skew-", "set-level KID")
METHODS = ("jackknife", "jackknife-t", "bootstrap")


def run(scenario: str, method: str, games: int, m: int, n_boot: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    resampling = "bootstrap" if method == "bootstrap" else "jackknife"
    if scenario.startswith("per-image"):
        skew = {"gaussian": 0.0, "skew+": 1.0, "skew-": -1.0}[scenario.split()[1]]
        per_seed, truth = per_image_audits(games, m, rng, skew=skew)
        cols = seed_columns(per_seed, resampling, n_boot, rng)
    else:
        if m < 3:
            return {}
        cols, truth = kid_audits(games, m, rng, resampling, n_boot)
    return calibration(cols, truth, resampling, skew_correction=(method != "jackknife-t"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"{args.games} simulated audits per row; cover = 95% interval coverage, mean [min] over players; "
          "FP = null player's one-sided p < 0.05; power = moderate player's")
    print()
    print("| scenario | seeds | method | cover | FP | power |")
    print("|---|---:|---|---:|---:|---:|")
    for scenario in SCENARIOS:
        for m in args.seeds:
            for i, method in enumerate(args.methods):
                games = args.games if method != "bootstrap" or scenario.startswith("per-image") else min(args.games, 500)
                r = run(scenario, method, games, m, args.boot, seed=1000 * m + 7 * i + SCENARIOS.index(scenario))
                if not r:
                    continue
                cov = r["coverage"]
                print(f"| {scenario} | {m} | {method}{'' if games == args.games else f' ({games} audits)'} | "
                      f"{cov.mean():.3f} [{cov.min():.3f}] | {r['reject'][3]:.3f} | {r['reject'][1]:.3f} |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
