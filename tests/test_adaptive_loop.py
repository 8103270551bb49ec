"""The adaptive round loop (copyscope/adaptive.py) with a stand-in for the fixed-seed audit: each
round gets the first m seeds of the plan, the looks use the headline's per-seed values, and the
loop goes on until the verdict is decided or max is reached."""

from __future__ import annotations

import numpy as np

from copyscope.adaptive import run_adaptive
from copyscope.audit import prepare_audit

from helpers.zoo import make_zoo_file

PLAYERS = ["lora0", "lora1"]


def _prep(tmp_path, tiny_models, seeds):
    zoo = make_zoo_file(tmp_path, tiny_models, loras=2, controlnet=False, metrics=["ssim"],
                        generation={"resolution": 32, "steps": 2, "seeds": seeds})
    return prepare_audit(zoo)


def _fake_audit(per_seed: np.ndarray, calls: list):
    """A fixed-seed audit of per-seed Shapley values ``(2, max)``: the report shape the loop reads."""

    def run_games(prep):
        m = len(prep.plan.seeds)
        assert prep.plan.seeds == list(range(m))
        assert sorted({it.seed for it in prep.plan.items}) == list(range(m))
        calls.append(m)
        x = per_seed[:, :m]
        done = calls[-2] if len(calls) > 1 else 0
        game = {
            "base": "tiny-sd", "players": PLAYERS, "headline": "ssim",
            "images": {c: [f"{c}-{s}" for s in range(m)] for c in ("", "lora0", "lora1", "lora0+lora1")},
            "metrics": {"ssim": {
                "coalitions": {"": 0.2, "lora0": 0.5},
                "shapley": {p: {"value": float(x[i].mean()), "ci95": [0, 0], "p_value": 0.5, "p_holm": 0.5, "se": 0.1}
                            for i, p in enumerate(PLAYERS)},
                "per_seed": {p: [float(v) for v in x[i]] for i, p in enumerate(PLAYERS)},
            }},
        }
        return {"games": [game], "generation": {"generated": 4 * (m - done), "cached": 4 * done},
                "settings": {"test": "fixed"}}

    return run_games


def test_rounds_until_decided(tmp_path, tiny_models):
    prep = _prep(tmp_path, tiny_models, {"min": 4, "max": 64})
    rng = np.random.default_rng(3)
    per_seed = np.stack([0.25 + 0.3 * rng.standard_normal(64), 0.3 * rng.standard_normal(64)])
    calls: list[int] = []
    rep = run_adaptive(prep, _fake_audit(per_seed, calls))
    a = rep["adaptive"]
    assert len(calls) > 1 and calls == a["planned_rounds"][: len(calls)]  # several rounds, each a prefix of the seeds
    assert a["reason"] == "decided" and a["stopped_after"] == calls[-1] < 64
    assert [lk["seeds"] for lk in a["looks"]] == calls
    assert rep["generation"]["generated"] == 4 * calls[-1] and rep["generation"]["cached"] == 0
    # the looks before the last did not stop; the last decided for lora0
    assert all(not lk["games"]["tiny-sd"]["stop"] for lk in a["looks"][:-1])
    assert a["looks"][-1]["games"]["tiny-sd"]["leader"] == "lora0"
    sh = rep["games"][0]["metrics"]["ssim"]["shapley"]
    assert sh["lora0"]["sequential"] and sh["lora0"]["p_holm"] < 0.05 and sh["lora0"]["ci95"][0] > 0


def test_null_game_runs_to_max_and_calls_nothing_significant(tmp_path, tiny_models):
    prep = _prep(tmp_path, tiny_models, {"min": 4, "max": 16})
    rng = np.random.default_rng(4)
    calls: list[int] = []
    rep = run_adaptive(prep, _fake_audit(0.3 * rng.standard_normal((2, 16)), calls))
    a = rep["adaptive"]
    assert calls == [4, 6, 8, 12, 16] and a["reason"] == "max seeds"
    assert a["line"] == "adaptive seeds: stopped after 16 seeds (round 5 of 5): max seeds"
    assert all(e["p_holm"] >= 0.05 for e in rep["games"][0]["metrics"]["ssim"]["shapley"].values())


def test_target_width_stops(tmp_path, tiny_models):
    prep = _prep(tmp_path, tiny_models, {"min": 4, "max": 16, "target": 100.0})
    calls: list[int] = []
    rep = run_adaptive(prep, _fake_audit(np.random.default_rng(5).standard_normal((2, 16)) * 0.01, calls))
    assert calls == [4] and rep["adaptive"]["reason"] == "target width"
