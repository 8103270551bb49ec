"""Do the significance claims hold whatever the shape of the seed noise? Simulated per-seed contributions.

    python bench/bench_bounded.py [--audits 20000] [--seeds 4 8 16 32 64]   # false positives, coverage, power
    python bench/bench_bounded.py --adaptive [--audits 5000]                   # any stopping rule, up to 64 seeds
    python bench/bench_bounded.py --design [--audits 4000]                     # the betting test's parameters

Every row draws ``--audits`` audits of one player whose per-seed contributions follow a law on [-0.7, 0.7]
with mean exactly 0 (copyscope/estimate/shapley/null_shapes.py: Gaussian, lognormal and rare-spike laws with a
left or a right tail, two modes, two points), shifted by the true value. Methods: ``t``, the skew-corrected
t test of copyscope/estimate/shapley/inference.py (today's fixed-design test); ``betting``, the distribution-free
betting test of copyscope/estimate/shapley/bounded.py, told the bound [-1, 1]; ``both``, a claim that needs both
(the audit's default, ``estimator.significance: both``). Columns: FP, the share of one-sided 5 % tests that
call a true value of 0 significant (promise: <= 0.05); cover, the share of 95 % intervals holding it
(promise: >= 0.95); power at a true value of 0.1 and 0.3 (a tenth and three tenths of the bound).

``--adaptive``: all-null audits of 4 players, the betting test at every seed count from 1 to 8, 16, 32 or 64
at alpha / 4 each: the share of audits in which any player is ever called significant, an upper bound on the
false-positive rate of every stopping rule (promise: <= 0.05); and the audit's own adaptive looks (rounds
4..64, stop when decided) under significance both and under the t design with alpha spending: the share of
audits in which some player is significant at the stopping look.

``--design``: power of the betting test's parameter choices (the largest stake BET_CAP, the prior variance
and mean shift of its running estimates) on consistent alternatives (a plant's per-seed contributions are
small against the bound and vary little), at alpha / 4 (Holm's first step with 4 players).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from copyscope.estimate.shapley import bounded  # noqa: E402
from copyscope.estimate.shapley.null_shapes import SHAPES, anytime_null, fixed_design  # noqa: E402

METHODS = ("t", "betting", "both")


def fixed_table(audits: int, seeds: list[int], seed: int) -> str:
    rng = np.random.default_rng(seed)
    head = "| null shape | seeds | " + " | ".join(f"{m}: FP / cover / power 0.1 / power 0.3" for m in METHODS) + " |"
    lines = [head, "|" + "---|" * (2 + len(METHODS))]
    for shape in SHAPES:
        for m in seeds:
            null = fixed_design(shape, m, audits, rng)
            p1 = fixed_design(shape, m, audits, rng, delta=0.1)
            p3 = fixed_design(shape, m, audits, rng, delta=0.3)
            cells = [f"{null[k]['reject']:.3f} / {null[k]['cover']:.3f} / {p1[k]['reject']:.2f} / {p3[k]['reject']:.2f}"
                     for k in METHODS]
            lines.append(f"| {shape} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def adaptive_table(audits: int, seed: int, looked: int = 500) -> str:
    """Per shape: the betting test's worst case over every stopping rule up to 8, 16, 32 and 64 seeds, and
    the audit's own adaptive design replayed (copyscope.estimate.shapley.sequential.run_sequential, rounds 4..64,
    decided = stop) on ``looked`` all-null audits, under significance both and under the t design."""
    from copyscope.estimate.shapley.null_shapes import draw
    from copyscope.estimate.shapley.sequential import run_sequential, seed_rounds

    rng = np.random.default_rng(seed)
    rounds = seed_rounds(4, 64)
    lines = ["| null shape | ever significant, 1..8 / 16 / 32 / 64 seeds | audit's looks 4..64, both | "
             "audit's looks 4..64, t (spending) |", "|---|---|---|---|"]
    for shape in SHAPES:
        worst = " / ".join(f"{anytime_null(shape, m, audits, rng):.4f}" for m in (8, 16, 32, 64))
        hits = {"both": 0, "t": 0}
        for _ in range(looked):
            x = draw(shape, rng, (4, 64))
            for rule in hits:
                looks = run_sequential(x, rounds, bound=1.0 if rule == "both" else None, rule=rule)
                hits[rule] += bool(looks[-1].significant.any())
        lines.append(f"| {shape} | {worst} | {hits['both'] / looked:.3f} | {hits['t'] / looked:.3f} |")
    return "\n".join(lines)


def design_table(audits: int, seed: int) -> str:
    alternatives = {"plant-like 0.19 +- 0.03": (0.19, 0.03), "0.1 +- 0.05": (0.1, 0.05), "0.3 +- 0.15": (0.3, 0.15)}
    choices = [(cap, var, shift) for cap in (0.5, 0.75, 0.95, 0.99) for var, shift in ((0.25, 0.0), (0.01, 0.05))]
    keep = (bounded.BET_CAP, bounded.PRIOR_VAR, bounded.PRIOR_SHIFT)
    lines = ["| alternative | seeds | " + " | ".join(f"cap {c}, var {v}, shift {s}" for c, v, s in choices) + " |",
             "|" + "---|" * (2 + len(choices))]
    try:
        for name, (mu, sd) in alternatives.items():
            for m in (16, 24, 32, 48):
                rng = np.random.default_rng(seed)
                x = np.clip(rng.normal(mu, sd, (audits, m)), -1.0, 1.0)
                cells = []
                for cap, var, shift in choices:
                    bounded.BET_CAP, bounded.PRIOR_VAR, bounded.PRIOR_SHIFT = cap, var, shift
                    cells.append(f"{(bounded.betting_p_values(x, 1.0) < 0.05 / 4).mean():.2f}")
                lines.append(f"| {name} | {m} | " + " | ".join(cells) + " |")
    finally:
        bounded.BET_CAP, bounded.PRIOR_VAR, bounded.PRIOR_SHIFT = keep
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audits", type=int, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--adaptive", action="store_true")
    ap.add_argument("--design", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    if args.design:
        print(design_table(args.audits or 4000, args.seed))
    elif args.adaptive:
        print(adaptive_table(args.audits or 5000, args.seed))
    else:
        print(fixed_table(args.audits or 20000, args.seeds, args.seed))
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
