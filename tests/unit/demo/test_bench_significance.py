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


def test_windows_keep_scenario_rows_for_the_metrics_asked(tmp_path):
    """rejudge_windows reads a bench output folder: counts per window and metric, and each scenario's row (values,
    verdicts, which decoys were significant) for the metrics named in rows_for."""
    import json

    from copyscope.demo.bench import _folder_name, variant_folder

    bench = load_bench("bench_significance")
    rng = np.random.default_rng(3)
    names = ["plant", "quiet", "loud"]
    per_seed = {"phash": _game(rng, [0.1, -0.03, -0.02]), "phash_soft": _game(rng, [0.1, -0.03, 0.08])}
    scenario = "plain:work:quiet+loud:nocn"
    (tmp_path / "results.json").write_text(json.dumps({"results": [
        {"scenario": scenario, "plants": {"plant": "work"}, "decoys": ["quiet", "loud"]}]}))
    folder = tmp_path / "scenarios" / variant_folder("raw", False) / _folder_name(scenario)
    folder.mkdir(parents=True)
    metrics = {m: {"seed_bound": 1.0, "per_seed": {n: list(x[i]) for i, n in enumerate(names)}}
               for m, x in per_seed.items()}
    (folder / "report.json").write_text(json.dumps({"games": [{"players": {n: {} for n in names}, "metrics": metrics}]}))

    doc = bench.rejudge_windows(tmp_path, [(0, 8), (0, 16)], rows_for=("phash", "phash_soft"))
    assert doc["windows"]["0:16"]["phash"]["bar"] == 1 and doc["windows"]["0:16"]["phash_soft"]["bar"] == 0
    assert doc["windows"]["0:16"]["phash_soft"]["decoy_significant"] == 1
    (row,) = doc["phash_soft_scenarios"]["0:16"]
    assert row["decoys_significant"] == ["loud"] and row["values"]["loud"] == round(float(per_seed["phash_soft"][2].mean()), 4)
    assert doc["phash_scenarios"]["0:8"][0]["decoys_significant"] == []
