"""The adaptive round loop (copyscope/estimate/adaptive.py) with a stand-in for the fixed-seed audit: each
round gets the first m seeds of the plan, the looks use the headline's per-seed values, and the
loop goes on until the verdict is decided or max is reached."""

from __future__ import annotations

import numpy as np
import pytest

from copyscope.estimate.adaptive import run_adaptive as _run_adaptive
from copyscope.audit import prepare_audit
from copyscope.results import AuditReport

from helpers.zoo import make_zoo_file

PLAYERS = ["lora0", "lora1"]


def run_adaptive(prep, run_games):
    """The round loop on fake fixed-seed audits written as report.json dicts; its result as report.json's dict."""
    return _run_adaptive(prep, lambda p: AuditReport.from_json(run_games(p))).to_json()


def _prep(tmp_path, tiny_models, seeds):
    zoo = make_zoo_file(tmp_path, tiny_models, loras=2, controlnet=False, metrics=["ssim"],
                        generation={"resolution": 32, "steps": 2, "seeds": seeds})
    return prepare_audit(zoo)


def _section(x: np.ndarray) -> dict:
    """A headline section of per-seed Shapley values ``x`` (players x seeds): the fields the loop reads."""
    return {"coalitions": {"": 0.2, "lora0": 0.5},
            "shapley": {p: {"value": float(x[i].mean()), "ci95": [0, 0], "p_value": 0.5, "p_holm": 0.5, "se": 0.1}
                        for i, p in enumerate(PLAYERS)},
            "per_seed": {p: [float(v) for v in x[i]] for i, p in enumerate(PLAYERS)}}


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
            "metrics": {"ssim": _section(x)},
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


def _fake_two_work_audit(per_work: dict[str, np.ndarray], calls: list):
    """A fixed-seed audit with two works: each work's game from ``per_work[w]`` ``(2, max)``, the
    averaged game their mean (the report shape the loop reads)."""

    def run_games(prep):
        m = len(prep.plan.seeds)
        calls.append(m)
        works = {w: x[:, :m] for w, x in per_work.items()}
        game = {"base": "tiny-sd", "players": PLAYERS, "headline": "ssim",
                "images": {c: [f"{c}-{s}" for s in range(m)] for c in ("", "lora0", "lora1", "lora0+lora1")},
                "metrics": {"ssim": _section(np.mean(list(works.values()), axis=0))},
                "per_work": {w: {"ssim": _section(x)} for w, x in works.items()}}
        return {"games": [game], "generation": {"generated": 4, "cached": 0}, "settings": {"test": "fixed"}}

    return run_games


def test_two_works_each_copied_by_its_own_lora_stop_when_every_work_is_decided(tmp_path, tiny_models):
    """lora0 copies work A, lora1 copies work B, equally: in the averaged game they tie, so its
    leader never separates; each work's game is decided, and the audit stops there. The averaged
    game and the two works share each look's level (6 tests), and the per-work entries carry the
    sequential marks."""
    from copyscope.estimate.shapley.sequential import look_levels

    prep = _prep(tmp_path, tiny_models, {"min": 4, "max": 64})
    rng = np.random.default_rng(8)
    strong, null = 0.5 + 0.1 * rng.standard_normal((2, 64)), 0.1 * rng.standard_normal((2, 64))
    per_work = {"A": np.stack([strong[0], null[0]]), "B": np.stack([null[1], strong[1]])}
    calls: list[int] = []
    rep = run_adaptive(prep, _fake_two_work_audit(per_work, calls))
    a = rep["adaptive"]
    assert a["reason"] == "decided for every work" and a["stopped_after"] < 64
    last = a["looks"][-1]["games"]["tiny-sd"]
    assert {w: g["leader"] for w, g in last["works"].items()} == {"A": "lora0", "B": "lora1"}
    assert all(g["reason"] == "decided" for g in last["works"].values())
    k = len(calls) - 1
    level = look_levels(a["planned_rounds"], 0.05, 1.0, 2 * 3)[k, 1]
    assert last["test_level"] == pytest.approx(level) and last["works"]["A"]["test_level"] == pytest.approx(level)
    game = rep["games"][0]
    for w, lora in (("A", "lora0"), ("B", "lora1")):
        e = game["per_work"][w]["ssim"]["shapley"][lora]
        assert e["sequential"] and e["p_holm"] < 0.05 and e["ci95"][0] > 0
        other = game["per_work"][w]["ssim"]["shapley"]["lora1" if lora == "lora0" else "lora0"]
        assert other["sequential"] and other["p_holm"] >= 0.05


def test_one_work_decided_alone_does_not_stop_a_two_work_audit(tmp_path, tiny_models):
    """Work A is clearly copied by lora0 (decided at every look); work B's copier lora1 is lost in
    seed noise, so B is never decided, and in the averaged game lora0 and lora1 tie. The audit must
    not stop on work A alone: it runs to max."""
    prep = _prep(tmp_path, tiny_models, {"min": 4, "max": 16})
    rng = np.random.default_rng(9)
    per_work = {"A": np.stack([0.5 + 0.02 * rng.standard_normal(16), 0.02 * rng.standard_normal(16)]),
                "B": np.stack([0.02 * rng.standard_normal(16), 0.5 + 3.0 * rng.standard_normal(16)])}
    calls: list[int] = []
    rep = run_adaptive(prep, _fake_two_work_audit(per_work, calls))
    a = rep["adaptive"]
    assert calls == [4, 6, 8, 12, 16] and a["reason"] == "max seeds"
    for lk in a["looks"]:
        g = lk["games"]["tiny-sd"]
        assert g["works"]["A"]["reason"] == "decided"
        assert g["works"]["B"]["reason"] != "decided" and g["reason"] in (None, "max seeds")


@pytest.mark.parametrize("levels", ["exact", "union"])
def test_each_look_tests_at_the_level_of_its_rule(tmp_path, tiny_models, levels):
    """levels: exact (default) tests at the group-sequential levels, union at alpha_k / n; the report
    records the rule and each look's level, and p_holm is scaled by the stopping look's level."""
    from copyscope.estimate.shapley.sequential import look_levels

    prep = _prep(tmp_path, tiny_models, {"min": 4, "max": 16, "levels": levels})
    rng = np.random.default_rng(4)
    calls: list[int] = []
    rep = run_adaptive(prep, _fake_audit(0.3 * rng.standard_normal((2, 16)), calls))
    a = rep["adaptive"]
    assert a["levels"] == levels and calls == [4, 6, 8, 12, 16]
    want = look_levels([4, 6, 8, 12, 16], 0.05, 1.0, 2, exact=levels == "exact")[:, 1]
    np.testing.assert_allclose([lk["games"]["tiny-sd"]["test_level"] for lk in a["looks"]], want)
    p = rep["games"][0]["metrics"]["ssim"]["shapley"]["lora0"]
    assert p["p_holm"] == pytest.approx(min(1.0, p["p_value"] * 0.05 / want[-1]))


def test_a_work_without_a_headline_game_gets_no_look_and_cannot_be_decided(tmp_path, tiny_models):
    """A work whose headline metric attributes nothing (e.g. a set metric undefined for it: no
    section in per_work) does not stop the audit with an error; "every work" is then never decided,
    so only the averaged game can stop it early."""
    prep = _prep(tmp_path, tiny_models, {"min": 4, "max": 16})
    rng = np.random.default_rng(8)
    strong, null = 0.5 + 0.1 * rng.standard_normal((2, 16)), 0.1 * rng.standard_normal((2, 16))
    per_work = {"A": np.stack([strong[0], null[0]]), "B": np.stack([null[1], strong[1]])}
    inner = _fake_two_work_audit(per_work, [])

    def run_games(p):
        rep = inner(p)
        del rep["games"][0]["per_work"]["B"]["ssim"]
        return rep

    rep = run_adaptive(prep, run_games)
    a = rep["adaptive"]
    assert a["reason"] == "max seeds"  # lora0 and lora1 tie in the average; B has no look
    assert set(a["looks"][-1]["games"]["tiny-sd"]["works"]) == {"A"}
    assert rep["games"][0]["per_work"]["A"]["ssim"]["shapley"]["lora0"]["sequential"]
