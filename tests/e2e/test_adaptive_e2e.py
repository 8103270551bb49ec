"""Adaptive seeds (issue 16) through the CLI audit, on tiny SD-shaped models.

A planted player: the references are the images the coalition {lora0} generates for seeds
0..15 (made with a zoo of their own, in a cache of their own), so for every seed lora0 turns the
base's image into one that matches a reference exactly (SSIM 1 under max-over-references), and
lora0's Shapley value is large on every seed. The adaptive audit must then stop before ``max``
with the verdict decided; a rerun generates nothing; a run with a larger ``max`` reuses the first
run's images. Bad adaptive settings fail with one line and exit 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.cli import app

from helpers.paths import REPO
from helpers.zoo import make_zoo_file

runner = CliRunner()
COALITIONS = 4  # two LoRAs, no ControlNet


def _png(cache: ImageCache, key: str, path: Path) -> None:
    a = cache.load(key)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(path)


@pytest.fixture(scope="module")
def planted(tiny_models, tmp_path_factory, one_torch_thread):
    tmp = tmp_path_factory.mktemp("adaptive")
    # 1. the references: lora0's images for seeds 0..15, generated in a cache the audits below do not see
    src = tmp / "src"
    src.mkdir()
    zoo0 = make_zoo_file(src, tiny_models, loras=1, controlnet=False, metrics=["ssim"], cache=str(tmp / "cache-refs"),
                         generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 16, "batch_size": 8,
                                     "scheduler": "ddim"})
    r = runner.invoke(app, ["audit", str(zoo0)])
    assert r.exit_code == 0, r.output
    rep0 = json.loads((src / "out" / "report.json").read_text())
    refs = tmp / "refs"
    refs.mkdir()
    cache0 = ImageCache(Path(rep0["cache_dir"]))
    for i, key in enumerate(rep0["games"][0]["images"]["lora0"]):
        _png(cache0, key, refs / f"lora0_{i:02d}.png")
    html0 = (src / "out" / "report.html").read_text()
    return {"tmp": tmp, "refs": refs, "tiny": tiny_models, "fixed_report": rep0, "fixed_html": html0,
            "fixed_output": r.output}


# The alpha-spending design of the t test (estimator.significance: t): these tests check its machinery. The
# default, anytime-valid design (significance: both) has its own run below (test_anytime_*).
SPENDING = {"bootstrap": 50, "significance": "t"}


def _adaptive_zoo(planted, folder: str, seeds, cache: str = "cache", **extra) -> Path:
    d = planted["tmp"] / folder
    d.mkdir(exist_ok=True)
    extra.setdefault("estimator", SPENDING)
    path = make_zoo_file(d, planted["tiny"], loras=2, controlnet=False, metrics=["ssim"],
                         cache=str(planted["tmp"] / cache),
                         references=[{"name": "work", "paths": [str(planted["refs"])]}],
                         generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": seeds, "batch_size": 8,
                                     "scheduler": "ddim"}, **extra)
    return path


@pytest.fixture(scope="module")
def runs(planted):
    zoo = _adaptive_zoo(planted, "a", {"min": 4, "max": 16})
    first = runner.invoke(app, ["audit", str(zoo)])
    assert first.exit_code == 0, first.output
    out = planted["tmp"] / "a" / "out"
    report = json.loads((out / "report.json").read_text())
    html = (out / "report.html").read_text()
    second = runner.invoke(app, ["audit", str(zoo)])
    assert second.exit_code == 0, second.output
    rerun = json.loads((out / "report.json").read_text())
    bigger = _adaptive_zoo(planted, "b", {"min": 4, "max": 64})
    third = runner.invoke(app, ["audit", str(bigger)])
    assert third.exit_code == 0, third.output
    larger = json.loads((planted["tmp"] / "b" / "out" / "report.json").read_text())
    # a run cut at 3 seeds, then one that goes on to 4 or more: the 3 seeds' images come from the cache
    cut = runner.invoke(app, ["audit", str(_adaptive_zoo(planted, "c", {"min": 3, "max": 3}, cache="cache2"))])
    assert cut.exit_code == 0, cut.output
    cut_rep = json.loads((planted["tmp"] / "c" / "out" / "report.json").read_text())
    more = runner.invoke(app, ["audit", str(_adaptive_zoo(planted, "d", {"min": 4, "max": 16}, cache="cache2"))])
    assert more.exit_code == 0, more.output
    more_rep = json.loads((planted["tmp"] / "d" / "out" / "report.json").read_text())
    # the default design: anytime-valid betting tests (and the t test) at every look, up to 64 seeds
    anytime = runner.invoke(app, ["audit", str(_adaptive_zoo(planted, "e", {"min": 4, "max": 64},
                                                             estimator={"bootstrap": 50}))])
    assert anytime.exit_code == 0, anytime.output
    anytime_rep = json.loads((planted["tmp"] / "e" / "out" / "report.json").read_text())
    return {"report": report, "output": first.output, "html": html, "rerun": rerun, "larger": larger,
            "cut": cut_rep, "more": more_rep, "out": out, "anytime": anytime_rep}


def test_anytime_design_tests_every_look_at_the_whole_level_and_decides_by_the_betting_test(runs):
    """significance: both (the default): no spending; each look's tests at alpha / n; the stopping look's
    headline numbers are recomputed here from the per-seed values of the stopped seeds."""
    from copyscope.estimate.shapley.bounded import betting_p_values

    rep = runs["anytime"]
    a = rep["adaptive"]
    assert a["anytime_valid"] is True and a["spending"] is None and "anytime-valid" in a["rule"]
    assert all(lk["alpha"] == a["alpha"] for lk in a["looks"])
    assert all(lk["games"]["tiny-sd"]["test_level"] == pytest.approx(a["alpha"] / 2) for lk in a["looks"])
    game = rep["games"][0]
    sec = game["metrics"][game["headline"]]
    assert sec["seed_bound"] == 2.0  # ssim lies in [-1, 1]
    per_seed = np.array([sec["per_seed"][p] for p in ("lora0", "lora1")])
    assert per_seed.shape[1] == a["stopped_after"]
    p_b = betting_p_values(per_seed, 2.0)
    look = a["looks"][-1]["games"]["tiny-sd"]
    for i, p in enumerate(("lora0", "lora1")):
        e = sec["shapley"][p]
        assert e["claim"].startswith("sequential: t and distribution-free") and "t" not in e and "bounded" not in e
        assert look["p_values"][p] >= p_b[i] - 1e-12  # the claim's p is the larger of t and betting
    # it stops only once the betting test agrees: decided means lora0's betting p-value is below alpha / 2
    if a["reason"] == "decided":
        assert p_b[0] < a["alpha"] / 2 and look["leader"] == "lora0"
    else:
        assert a["reason"] == "max seeds" and a["stopped_after"] == 64
    # the betting test needs more seeds than the t test with spending on the same images
    assert a["stopped_after"] >= runs["larger"]["adaptive"]["stopped_after"]


def test_stops_before_max_when_decided_and_records_the_rounds(runs):
    a = runs["report"]["adaptive"]
    assert a["reason"] == "decided" and a["stopped_after"] < a["max"] == 16
    assert a["planned_rounds"] == [4, 6, 8, 12, 16]
    seeds = [lk["seeds"] for lk in a["looks"]]
    assert seeds == a["planned_rounds"][: len(seeds)] and seeds[-1] == a["stopped_after"]
    assert a["round"] == len(seeds) and a["rounds_planned"] == 5
    assert [lk["images"] for lk in a["looks"]] == [COALITIONS * m for m in seeds]
    assert sum(lk["generated"] for lk in a["looks"]) == COALITIONS * a["stopped_after"]
    last = a["looks"][-1]["games"]["tiny-sd"]
    assert last["leader"] == "lora0" and last["stop"] and set(last["intervals"]) == {"lora0", "lora1"}
    assert all(not lk["games"]["tiny-sd"]["stop"] for lk in a["looks"][:-1])
    assert sum(a["spending"]) == pytest.approx(a["alpha"])
    # the images of exactly the stopped seeds, each generated once
    rep = runs["report"]
    assert rep["settings"]["seeds"] == list(range(a["stopped_after"]))
    assert rep["generation"]["generated"] == COALITIONS * a["stopped_after"] and rep["generation"]["cached"] == 0
    line = f"adaptive seeds: stopped after {a['stopped_after']} seeds (round {a['round']} of 5): decided"
    assert a["line"] == line
    assert line in " ".join(runs["output"].split()) and line in runs["html"]


def test_headline_carries_the_sequential_intervals_and_tests(runs):
    a = runs["report"]["adaptive"]
    game = runs["report"]["games"][0]
    sh = game["metrics"][game["headline"]]["shapley"]
    look = a["looks"][-1]["games"]["tiny-sd"]
    for p in ("lora0", "lora1"):
        assert sh[p]["sequential"] is True
        assert sh[p]["ci95"] == look["intervals"][p]
        assert sh[p]["p_holm"] == pytest.approx(min(1.0, look["p_values"][p] * 2 * a["alpha"] / look["alpha"]))
    assert sh["lora0"]["p_holm"] < 0.05 and sh["lora0"]["ci95"][0] > 0
    # the sequential interval is wider than the fixed-design t interval of the same seeds
    from scipy import stats

    m = a["stopped_after"]
    half_fixed = stats.t.ppf(0.975, m - 1) * sh["lora0"]["se"]
    assert (sh["lora0"]["ci95"][1] - sh["lora0"]["ci95"][0]) / 2 > half_fixed
    assert "sequential" in runs["report"]["settings"]["test"]


def test_rerun_generates_nothing(runs):
    assert runs["rerun"]["generation"]["generated"] == 0
    assert runs["rerun"]["adaptive"]["stopped_after"] == runs["report"]["adaptive"]["stopped_after"]
    g0, g1 = runs["report"]["games"][0], runs["rerun"]["games"][0]
    assert g1["metrics"]["ssim"]["shapley"] == g0["metrics"]["ssim"]["shapley"]


def test_larger_max_reuses_the_earlier_seeds(runs):
    first, larger = runs["report"]["adaptive"], runs["larger"]["adaptive"]
    assert larger["planned_rounds"] == [4, 6, 8, 12, 16, 24, 32, 48, 64]
    # less alpha per early look with max 64: it stops no earlier; only the seeds beyond the first run are new
    assert larger["stopped_after"] >= first["stopped_after"]
    new = COALITIONS * (larger["stopped_after"] - first["stopped_after"])
    assert runs["larger"]["generation"]["generated"] == new
    assert runs["larger"]["generation"]["cached"] == COALITIONS * first["stopped_after"]


def test_a_run_cut_short_is_continued_from_the_cache(runs):
    cut, more = runs["cut"], runs["more"]
    assert cut["adaptive"]["stopped_after"] == 3 and cut["adaptive"]["planned_rounds"] == [3]
    assert cut["generation"]["generated"] == COALITIONS * 3
    m = more["adaptive"]["stopped_after"]
    assert m >= 4
    assert more["generation"]["generated"] == COALITIONS * (m - 3)
    assert more["generation"]["cached"] == COALITIONS * 3


@pytest.mark.parametrize("seeds, estimator, pattern", [
    ({"min": 2, "max": 8}, None, r"generation\.seeds: min: .*greater than or equal to 3"),
    ({"min": 8, "max": 4}, None, r"generation\.seeds: max \(4\) must be at least min \(8\)"),
    ({"min": 4, "max": 8, "target": 0}, None, r"generation\.seeds: target: .*greater than 0"),
    ({"min": 4, "max": 8, "every": 2}, None, r"generation\.seeds: every: unknown key"),
    ({"min": 4, "max": 8, "levels": "bonferroni"}, None, r"generation\.seeds: levels: .*'exact' or 'union'"),
    ({"min": 4, "max": 8}, {"method": "permutation", "budget": 4}, r"estimator\.method: adaptive seeds .* need exact Shapley"),
    ({"min": 4, "max": 8}, {"intervals": "bootstrap"}, r"estimator\.intervals: adaptive seeds need per-seed values"),
])
def test_bad_adaptive_settings_fail_with_one_line(planted, tmp_path, seeds, estimator, pattern):
    extra = {"estimator": estimator} if estimator else {}
    zoo = make_zoo_file(tmp_path, planted["tiny"], loras=2, controlnet=False, metrics=["ssim"],
                        generation={"resolution": 32, "steps": 2, "seeds": seeds}, **extra)
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.output
    assert str(zoo) in lines[0] and re.search(pattern, lines[0]), lines[0]
    if estimator is None:  # the line of the seeds key
        line_no = next(i for i, t in enumerate(zoo.read_text().splitlines(), 1) if t.strip().startswith("seeds:"))
        assert f"{zoo}:{line_no}:" in lines[0]


def test_a_fixed_seed_audit_has_no_adaptive_section(planted):
    assert "adaptive" not in planted["fixed_report"]
    assert "adaptive seeds" not in planted["fixed_html"] and "adaptive seeds" not in planted["fixed_output"]
    sh = planted["fixed_report"]["games"][0]["metrics"]["ssim"]["shapley"]
    assert all("sequential" not in e for e in sh.values())


def test_fixed_seed_zoos_are_unchanged(tiny_models, tmp_path):
    """An int or a list of seeds: no adaptive section, seeds as before."""
    from copyscope.config import load_zoo

    for seeds, expect in ((3, [0, 1, 2]), ([5, 9], [5, 9])):
        zoo = load_zoo(make_zoo_file(tmp_path, tiny_models, generation={"resolution": 32, "steps": 2, "seeds": seeds}))
        assert zoo.spec.generation.seeds == seeds and zoo.spec.generation.seed_list == expect
    zoo = load_zoo(make_zoo_file(tmp_path, tiny_models, generation={"resolution": 32, "steps": 2,
                                                                     "seeds": {"min": 4, "max": 10}}))
    assert zoo.spec.generation.seed_list == list(range(10))
    assert zoo.spec.model_dump()["generation"]["seeds"] == {"min": 4, "max": 10, "target": None, "rho": 1.0,
                                                           "levels": "exact"}


def test_report_command_rerenders_the_line_and_says_the_marks_are_sequential(runs):
    r = runner.invoke(app, ["report", str(runs["out"])])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert runs["rerun"]["adaptive"]["line"] in text
    assert "sequential ones of the stopping look" in text


def test_the_rounds_share_one_engine_per_game(planted, monkeypatch):
    """Each round is an audit of more seeds, but the models load once: the engine (its pipeline, the
    players' weights and hashes) is kept across the rounds and released once at the end."""
    import copyscope.audit as audit_mod
    from copyscope.generate import CoalitionEngine

    made, loads, released = [], [], []

    class CountingEngine(CoalitionEngine):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self)

        def load(self):
            if self.pipe is None:  # a real load, not the no-op of a loaded engine
                loads.append(self)
            return super().load()

        def release(self):
            released.append(self)
            return super().release()

    monkeypatch.setattr(audit_mod, "CoalitionEngine", CountingEngine)
    # noise references (nothing is decided: every round runs) and a cache of its own (every round generates)
    d = planted["tmp"] / "e"
    (d / "noise").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "noise" / f"{i}.png")
    zoo = make_zoo_file(d, planted["tiny"], loras=2, controlnet=False, metrics=["ssim"], cache=str(d / "cache"),
                        references=[{"name": "work", "paths": [str(d / "noise")]}],
                        generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": {"min": 3, "max": 6},
                                    "batch_size": 8, "scheduler": "ddim"})
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    a = json.loads((d / "out" / "report.json").read_text())["adaptive"]
    assert [lk["seeds"] for lk in a["looks"]] == [3, 4, 6] and all(lk["generated"] > 0 for lk in a["looks"])
    assert len(made) == 1 and loads == made and released == made


@pytest.fixture(scope="module")
def two_works(tiny_models, tmp_path_factory, one_torch_thread):
    """Two works, each planted for one LoRA: work a's references are lora0's images for prompt a, work
    b's are lora1's for prompt b (made in a cache the audit does not see). Averaged over the works the
    two LoRAs tie by design; each work's own game has one clear copier."""
    tmp = tmp_path_factory.mktemp("adaptive-two-works")
    texts = {"a": "a painting of a cat", "b": "a photo of a red boat"}
    refs = {}
    for w, lora in (("a", "lora0"), ("b", "lora1")):
        src = tmp / f"src-{w}"
        src.mkdir()
        zoo = make_zoo_file(src, tiny_models, loras=2, controlnet=False, metrics=["ssim"], cache=str(tmp / "cache-refs"),
                            prompts=[{"name": f"p-{w}", "text": texts[w]}],
                            generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 16, "batch_size": 8,
                                        "scheduler": "ddim"})
        r = runner.invoke(app, ["audit", str(zoo)])
        assert r.exit_code == 0, r.output
        rep = json.loads((src / "out" / "report.json").read_text())
        refs[w] = tmp / f"refs-{w}"
        refs[w].mkdir()
        cache = ImageCache(Path(rep["cache_dir"]))
        for i, key in enumerate(rep["games"][0]["images"][lora]):
            _png(cache, key, refs[w] / f"{lora}_{i:02d}.png")
    d = tmp / "audit"
    d.mkdir()
    zoo = make_zoo_file(d, tiny_models, loras=2, controlnet=False, metrics=["ssim"], cache=str(tmp / "cache"),
                        references=[{"name": w, "paths": [str(refs[w])]} for w in ("a", "b")],
                        prompts=[{"name": f"p-{w}", "text": texts[w], "work": w} for w in ("a", "b")],
                        generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": {"min": 4, "max": 16},
                                    "batch_size": 8, "scheduler": "ddim"}, estimator=SPENDING)
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    adaptive = json.loads((d / "out" / "report.json").read_text())
    # the same zoo with 16 fixed seeds (the first 4 from the cache), for bench/bench_adaptive.py's replay
    fixed = d / "fixed"
    fixed.mkdir()
    data = yaml.safe_load(zoo.read_text())
    data["generation"]["seeds"], data["output"] = 16, str(fixed / "out")
    (fixed / "zoo.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    r16 = runner.invoke(app, ["audit", str(fixed / "zoo.yaml")])
    assert r16.exit_code == 0, r16.output
    return adaptive, r.output, json.loads((fixed / "out" / "report.json").read_text())


@pytest.mark.slow  # a shared module fixture runs audits (pyproject: markers)
def test_two_works_stop_when_each_work_is_decided_and_say_who_copies_which(two_works):
    report, output, _ = two_works
    a = report["adaptive"]
    assert a["reason"] == "decided for every work" and a["stopped_after"] < 16, a["line"]
    assert "decided for every work" in output
    game = report["games"][0]
    last = a["looks"][-1]["games"]["tiny-sd"]
    assert {w: g["leader"] for w, g in last["works"].items()} == {"a": "lora0", "b": "lora1"}
    for w, lora, other in (("a", "lora0", "lora1"), ("b", "lora1", "lora0")):
        sh = game["per_work"][w]["ssim"]["shapley"]
        assert sh[lora]["sequential"] and sh[lora]["p_holm"] < 0.05 and sh[lora]["ci95"][0] > 0
        assert sh[other]["p_holm"] >= 0.05
    # each look's tests share the level among the averaged game and the two works: 2 players x 3
    from copyscope.estimate.shapley.sequential import look_levels

    want = look_levels(a["planned_rounds"], a["alpha"], 1.0, 2 * 3)[len(a["looks"]) - 1, 1]
    assert last["test_level"] == pytest.approx(want)


@pytest.mark.slow  # a shared module fixture runs audits (pyproject: markers)
def test_the_benchmark_replay_of_a_fixed_run_is_the_real_adaptive_audit(two_works):
    """bench/bench_adaptive.py replays the adaptive design on the seed prefixes of a fixed 16-seed report
    (its quick subset here): on the two-work zoo it must stop where the real adaptive audit stopped, with
    the same per-work verdicts, which are also the fixed design's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_adaptive", REPO / "bench" / "bench_adaptive.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    adaptive, _, fixed = two_works
    r = bench.replay(fixed)
    assert r["seeds"] == adaptive["adaptive"]["stopped_after"] and r["reason"] == adaptive["adaptive"]["reason"]
    assert r["adaptive"] == bench.headline_verdict(adaptive) == (("a", "lora0", True), ("b", "lora1", True))
    assert r["fixed"] == r["adaptive"] and r["same"]
    assert r["images_adaptive"] * 16 == r["images_fixed"] * r["seeds"]
