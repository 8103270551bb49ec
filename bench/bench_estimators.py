"""Accuracy of the sampled Shapley estimators against shapiq's, at equal budgets.

    python bench/bench_estimators.py [--seeds 30] [--players 8 12 16] [--budgets 64 128 256 512 1024]

For each number of players and two synthetic games with exactly known Shapley values, every
estimator runs with the same budgets and seeds; the table shows the mean absolute error (over
players, then over seeds) and the ratios ours / shapiq (< 1: ours is more accurate).

Games (per n):
  * dividends: main effects N(0,1), n pair and n/2 triple Harsanyi dividends N(0, 0.5), n/4
    four-way dividends N(0, 0.5); Shapley in closed form (sum over T containing i of d_T / |T|).
  * tanh: v(S) = tanh(dividend game / 2), a saturating non-polynomial game; Shapley by exact
    enumeration of all 2**n coalitions (65536 for n = 16, cheap for a synthetic game).

Budget: ours count distinct coalitions (memoised game); shapiq's KernelSHAP counts distinct
coalitions too; shapiq's PermutationSamplingSV counts evaluations (it does not memoise, so its
distinct coalitions are <= the budget). Budgets >= 2**n are skipped (every estimator is exact).
shapiq's KernelSHAP runs with pairing_trick=True (its stronger setting).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from importlib.metadata import version

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from copyscope.shapley import ExactShapley, Game, KernelShap, PermutationShapley  # noqa: E402
from copyscope.shapley.synthetic import dividend_game, dividend_shapley  # noqa: E402


def make_games(n: int, seed: int) -> list[tuple[str, Game, np.ndarray]]:
    rng = np.random.default_rng(1000 + n + seed)
    div: dict[tuple[int, ...], float] = {(i,): float(rng.normal()) for i in range(n)}
    for size, count in ((2, n), (3, n // 2), (4, max(1, n // 4))):
        while sum(len(t) == size for t in div) < count:
            t = tuple(sorted(rng.choice(n, size=size, replace=False).tolist()))
            div.setdefault(t, float(rng.normal(scale=0.5)))
    base = dividend_game(n, div)
    games = [("dividends", base, dividend_shapley(n, div))]

    def tanh_v(z: np.ndarray) -> np.ndarray:
        return np.tanh(base.evaluate(z)[:, 0] / 2.0)

    truth = ExactShapley().estimate(Game(n, tanh_v)).values
    games.append(("tanh", Game(n, tanh_v), truth))
    return games


def plain(game: Game):
    """A fresh un-memoised callable (k, n) -> (k,), as shapiq expects."""
    vf = game.value_function  # the un-memoised worth function

    def f(z: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(np.asarray(z, dtype=bool))
        return np.asarray(vf(z), dtype=float).reshape(len(z), -1)[:, 0]

    return f


def run(players: list[int], budgets: list[int], seeds: int) -> None:
    try:
        import shapiq
    except ImportError:
        raise SystemExit("the benchmark compares against shapiq: pip install 'copyscope[shapiq]'")

    rows = []
    t0 = time.time()
    for n in players:
        for gname, game, truth in make_games(n, 0):
            f = plain(game)
            for budget in budgets:
                if budget >= 2**n:
                    continue
                err = {k: [] for k in ("perm", "kernel", "sq_kernel", "sq_perm")}
                for s in range(seeds):
                    e = PermutationShapley().estimate(Game(n, f), budget=budget, seed=s)
                    err["perm"].append(np.abs(e.values - truth).mean())
                    e = KernelShap(n_bootstrap=0).estimate(Game(n, f), budget=budget, seed=s)
                    err["kernel"].append(np.abs(e.values - truth).mean())
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        iv = shapiq.KernelSHAP(n, pairing_trick=True, random_state=s).approximate(
                            budget, f)
                        err["sq_kernel"].append(np.abs(_sv(iv, n) - truth).mean())
                        iv = shapiq.PermutationSamplingSV(n, random_state=s).approximate(budget, f)
                        err["sq_perm"].append(np.abs(_sv(iv, n) - truth).mean())
                m = {k: float(np.mean(v)) for k, v in err.items()}
                rows.append((n, gname, budget, m))
    elapsed = time.time() - t0

    head = (f"| n | game | budget | perm (ours) | shapiq perm | ratio | kernel (ours) | "
            f"shapiq kernel | ratio |")
    print(head)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, gname, budget, m in rows:
        print(f"| {n} | {gname} | {budget} | {m['perm']:.4f} | {m['sq_perm']:.4f} | "
              f"{m['perm'] / m['sq_perm']:.2f} | {m['kernel']:.4f} | {m['sq_kernel']:.4f} | "
              f"{m['kernel'] / m['sq_kernel']:.2f} |")
    print(f"\nmean absolute error over players, averaged over {seeds} seeds; "
          f"shapiq {version('shapiq')}; {elapsed:.0f} s")


def _sv(iv, n: int) -> np.ndarray:
    return np.array([iv[(i,)] for i in range(n)], dtype=float)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--players", type=int, nargs="+", default=[8, 12, 16])
    ap.add_argument("--budgets", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--seeds", type=int, default=30)
    args = ap.parse_args()
    run(args.players, args.budgets, args.seeds)


if __name__ == "__main__":
    main()
