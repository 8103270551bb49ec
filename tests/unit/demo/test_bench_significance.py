"""bench/bench_significance.py's seed windows: the headline's bar on per-seed Shapley values, with "the plant first"
counted against the decoys (the ControlNet, fed the work's own depth map, judged apart) and against every player."""

from __future__ import annotations

import numpy as np
from helpers.bench import load_bench


def _game(rng, means, n=16, sd=0.02):
    return np.array([m + sd * rng.standard_normal(n) for m in means])


def test_plant_behind_the_controlnet_is_first_among_the_decoys_only():
    bench = load_bench("bench_significance")
    x = _game(np.random.default_rng(0), [0.09, 0.04, -0.03, -0.05])  # ControlNet, weak plant, two decoys
    v = bench.bar_verdicts(x, 1.0, plants=[1], decoys=[2, 3])
    assert v["first"] and not v["first_all"]
    assert v["plant_significant"] and not v["decoy_significant"]
    assert v["bar"] and not v["bar_all"]
    assert v["controlnet_significant"] is True


def test_a_significant_decoy_fails_the_bar_and_no_controlnet_is_none():
    bench = load_bench("bench_significance")
    x = _game(np.random.default_rng(1), [0.12, 0.05, -0.02])  # plant, a decoy that moves the metric, a decoy
    v = bench.bar_verdicts(x, 1.0, plants=[0], decoys=[1, 2])
    assert v["first"] and v["first_all"] and v["plant_significant"]
    assert v["decoy_significant"] and not v["bar"] and not v["bar_all"]
    assert v["controlnet_significant"] is None


def test_a_window_is_judged_on_its_own_seeds():
    bench = load_bench("bench_significance")
    rng = np.random.default_rng(2)
    # the plant copies only in seeds 8-15: the first window finds nothing, the second finds it
    x = np.concatenate([_game(rng, [0.0, 0.0], n=8), _game(rng, [0.1, 0.0], n=8)], axis=1)
    assert not bench.bar_verdicts(x[:, 0:8], 1.0, plants=[0], decoys=[1])["plant_significant"]
    assert bench.bar_verdicts(x[:, 8:16], 1.0, plants=[0], decoys=[1])["plant_significant"]
