"""The validity benchmark's --quick subset (issue 15): planted scenarios on the shipped demo zoo's LoRAs.

Runs `copyscope demo bench --quick` through the CLI (6 scenarios: the astronaut's plant at weight 1 and 0.5,
with and without the ControlNet, and the coffee and rocket LoRAs as plants of their own works; 24 distinct
coalitions x 8 seeds) and checks that the headline metric
recovers the plant in every scenario and never calls a decoy significant.
"""

from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner  # noqa: E402

from copyscope.cli import app  # noqa: E402
from copyscope.demo.scenarios import POOL, WORKS, scenarios, transformed_pixels  # noqa: E402
from copyscope.report.headline import headline_metric  # noqa: E402
from helpers.paths import REPO

ROOT = REPO


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("bench") / "validity"
    res = CliRunner().invoke(app, ["demo", "bench", "--quick", "--out", str(out), "--zoo", str(ROOT / "demo_zoo")])
    assert res.exit_code == 0, res.output
    return json.loads((out / "results.json").read_text()), res.output, out


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_headline_recovers_the_plant(quick_bench):
    doc, output, _ = quick_bench
    assert doc["scenarios"] == len(scenarios("quick")) == 6
    head = headline_metric(doc["metrics"])
    s = doc["summary"][head]
    n = s["scenarios"]
    assert n == 6
    assert s["decoy_significant"] == [0, n], s
    # The plant ranks first in at least 5 of the 6 (docs/validity.md "The quick set": 6 of 6 under the headline phash
    # on the shipped zoo; under the old zoo and headline the ControlNet, fed the work's depth map, was above the
    # half-weight plant); wherever it is not first, the player above it is the ControlNet, never a decoy, and the
    # plant is still significant.
    assert s["planted_first"][0] >= n - 1, s
    for r in doc["results"]:
        v = r["verdicts"][head]
        if not v["planted_first"]:
            plant = next(iter(r["plants"]))
            above = [p for p, x in v["values"].items() if x > v["values"][plant]]
            assert r["controlnet"] and set(above) <= {"depth"}, (r["scenario"], v["values"])
            assert v["plant_significant_t"], r["scenario"]
    # under the t test alone the plant is significant in at least 5 of the 6 (issue 15's 90% bar; 6/6 measured).
    # The claim (significance: both) also needs the distribution-free test, which cannot confirm a contribution
    # of this size from 8 seeds (docs/estimation.md "Which test carries a claim"): the claim is the conjunction, and no
    # test calls a decoy significant.
    assert s["plant_significant_t"][0] >= n - 1, s
    assert s["decoy_significant_t"] == s["decoy_significant_bounded"] == [0, n], s
    for r in doc["results"]:
        v = r["verdicts"][head]
        assert v["plant_significant"] == (v["plant_significant_t"] and v["plant_significant_bounded"]), r["scenario"]
    # the printed table has a row per metric judged
    for m in doc["summary"]:
        assert f"| {m} |" in output


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_scenarios_share_cached_images(quick_bench):
    doc, _, out = quick_bench
    gen = {r["scenario"]: r["generated"] for r in doc["results"]}
    # without the ControlNet every coalition is one the ControlNet scenario already generated
    assert gen["plain:astronaut:coffee+rocket:nocn"] == 0
    assert gen["half-weight:astronaut:coffee+rocket:nocn"] == 0
    # other works audited on the same LoRAs: their images were generated for the astronaut's scenarios
    assert gen["plain:coffee:astronaut+rocket:nocn"] == gen["plain:rocket:astronaut+coffee:nocn"] == 0
    assert gen["plain:astronaut:coffee+rocket:cn"] == 16 * 8
    assert gen["half-weight:astronaut:coffee+rocket:cn"] == 8 * 8  # only coalitions with the half-weight plant
    assert (out / "table.md").read_text().startswith("| metric |")
    by_kind = (out / "table_by_kind.md").read_text()
    head = headline_metric(doc["metrics"])
    assert by_kind.startswith(f"| scenarios | n | {head}: first / plant sig. / decoy sig. |")
    # one row per kind and ControlNet setting of the quick set, with its scenario count
    assert "| plain (cn) | 1 |" in by_kind and "| plain (no cn) | 3 |" in by_kind and "| half-weight (cn) | 1 |" in by_kind


def test_bench_refuses_a_folder_that_is_not_a_demo_zoo(tmp_path):
    res = CliRunner().invoke(app, ["demo", "bench", "--quick", "--out", str(tmp_path / "o"), "--zoo", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a demo zoo" in res.output


def test_full_scenario_set_is_what_the_issue_asks():
    full = scenarios("full")
    assert scenarios("no-controlnet") == [s for s in full if not s.controlnet]
    assert len(full) >= 24
    kinds = {s.kind for s in full}
    assert {"plain", "half-weight", "transformed", "plus-three", "two-copiers", "palette-decoy", "two-works"} <= kinds
    for s in full:
        assert 2 <= len(s.decoys) <= 3 and s.plants
        assert not set(s.plants) & set(s.decoys)
        for d in s.decoys:  # a decoy never memorised an audited work
            assert not {x for x in next(p for p in POOL if p.name == d).images} & set(s.works)
        assert set(s.works) <= set(WORKS)
    assert {s.controlnet for s in full} == {True, False}
    two = [s for s in full if s.kind == "two-works"]
    assert two and all(len(set(s.plants.values())) == 2 for s in two)


def test_transforms_change_the_image_but_keep_the_palette():
    import numpy as np

    from copyscope.demo.images import center_square, load_skimage

    a = center_square(load_skimage("astronaut"))
    t = transformed_pixels(a, "flip_crop_colour")
    assert t.shape[0] < a.shape[0] and t.dtype == np.float32 and 0 <= t.min() and t.max() <= 1
    cat = load_skimage("chelsea")
    pal = transformed_pixels(cat, "palette_of:astronaut")
    # the cat's per-channel means move to the astronaut's
    assert np.abs(pal.mean((0, 1)) - a.mean((0, 1))).max() < np.abs(cat.mean((0, 1)) - a.mean((0, 1))).max() / 3


def test_judge_and_summary_count_what_they_claim():
    """The verdicts on a hand-made report: plant first and significant, a decoy falsely significant under
    one metric, own-work attribution, and interval coverage against known true values."""
    from copyscope.demo.bench_verdicts import format_table, judge, summarise
    from copyscope.demo.scenarios import Scenario

    def e(v, p, lo, hi):
        return {"value": v, "p_holm": p, "ci95": [lo, hi]}

    s = Scenario("two", ("a", "b"), {"pa": "a", "pb": "b"}, ("d1", "d2"), True)
    report = {"games": [{
        "metrics": {
            "good": {"shapley": {"depth": e(0.1, 0.01, 0.05, 0.15), "pa": e(0.5, 0.001, 0.4, 0.6),
                                 "pb": e(0.4, 0.002, 0.3, 0.5), "d1": e(0.0, 0.5, -0.1, 0.1),
                                 "d2": e(-0.1, 0.9, -0.2, 0.0)}},
            "bad": {"shapley": {"depth": e(0.6, 0.001, 0.5, 0.7), "pa": e(0.5, 0.001, 0.4, 0.6),
                                "pb": e(0.1, 0.2, -0.1, 0.3), "d1": e(0.2, 0.01, 0.1, 0.3),
                                "d2": e(-0.1, 0.9, -0.2, 0.0)}},
            # the ControlNet (fed the work's depth map) above both plants, the plants above every decoy
            "cn_ahead": {"shapley": {"depth": e(0.6, 0.001, 0.5, 0.7), "pa": e(0.5, 0.001, 0.4, 0.6),
                                     "pb": e(0.4, 0.002, 0.3, 0.5), "d1": e(0.0, 0.5, -0.1, 0.1),
                                     "d2": e(0.39, 0.3, -0.2, 0.9)}},
        },
        "per_work": {
            "a": {"good": {"shapley": {"depth": e(0, 1, 0, 0), "pa": e(0.9, 0, 0, 1), "pb": e(0.1, 1, 0, 1),
                                       "d1": e(0, 1, 0, 0), "d2": e(0, 1, 0, 0)}}},
            "b": {"good": {"shapley": {"depth": e(0, 1, 0, 0), "pa": e(0.9, 0, 0, 1), "pb": e(0.2, 1, 0, 1),
                                       "d1": e(0, 1, 0, 0), "d2": e(0, 1, 0, 0)}}},
        },
    }]}
    truth = {"good": {"depth": 0.1, "pa": 0.45, "pb": 0.9, "d1": 0.0, "d2": -0.1}}
    v = judge(s, report, truth)
    assert v["good"]["planted_first"] and v["good"]["plant_significant"] and not v["good"]["decoy_significant"]
    assert v["good"]["own_work"] is False  # work b's own attribution puts pa first
    assert (v["good"]["covered"], v["good"]["intervals"]) == (4, 5)  # pb's interval misses 0.9
    assert not v["bad"]["planted_first"] and not v["bad"]["plant_significant"] and v["bad"]["decoy_significant"]
    assert v["bad"]["own_work"] is None and "intervals" not in v["bad"]  # no per-work or truth for it
    assert v["good"]["planted_first_vs_decoys"] and not v["bad"]["planted_first_vs_decoys"]  # bad: pb below d1
    assert not v["cn_ahead"]["planted_first"] and v["cn_ahead"]["planted_first_vs_decoys"]
    summary = summarise([{"verdicts": v}, {"verdicts": v}])
    assert summary["good"]["planted_first"] == [2, 2] and summary["bad"]["decoy_significant"] == [2, 2]
    assert summary["cn_ahead"]["planted_first"] == [0, 2] and summary["cn_ahead"]["planted_first_vs_decoys"] == [2, 2]
    assert summary["good"]["coverage"] == [8, 10] and summary["bad"]["coverage"] == [0, 0]
    table = format_table(summary)
    assert table.index("| good |") < table.index("| bad |") and "n/a" in table


def test_scenarios_sample_as_the_demo_zoo_does(tmp_path):
    """A rebuilt demo zoo with other sampling settings is benchmarked with them, not with fixed ones."""
    import shutil

    from copyscope.demo.bench import scenario_zoo

    demo = tmp_path / "demo"
    demo.mkdir()
    text = (ROOT / "demo_zoo" / "zoo.yaml").read_text().replace("steps: 20", "steps: 7").replace("guidance: 5.0", "guidance: 3.5")
    (demo / "zoo.yaml").write_text(text)
    shutil.copy(ROOT / "demo_zoo" / "ground_truth.json", demo / "ground_truth.json")
    s = scenarios("quick")[0]
    gen = scenario_zoo(s, tmp_path / "pool", demo, tmp_path / "cache", ["ssim"], seeds=4,
                       gt={"resolution": 48, "prompt": "p"})["generation"]
    assert (gen["steps"], gen["guidance"], gen["scheduler"], gen["resolution"], gen["seeds"]) == (7, 3.5, "ddim", 48, 4)
    shipped = scenario_zoo(s, tmp_path / "pool", ROOT / "demo_zoo", tmp_path / "cache", ["ssim"], seeds=4,
                           gt={"resolution": 32, "prompt": "p"})["generation"]
    assert (shipped["steps"], shipped["guidance"]) == (20, 5.0)


def test_a_pool_lora_is_retrained_when_the_base_changes(tmp_path):
    # pool.json's entry for a trained LoRA names the base's hash: rebuilding the demo zoo in the same
    # place must not reuse LoRAs trained on the old base (steps, rank and prompt alone would match)
    from copyscope.demo.pool import _entry
    from copyscope.demo.scenarios import POOL_BY_NAME

    weights = tmp_path / "zoo" / "base" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"old base")
    clock = POOL_BY_NAME["clock"]
    before = _entry(clock, 0, 1600, "a painting", tmp_path / "zoo", 16)
    assert before == _entry(clock, 0, 1600, "a painting", tmp_path / "zoo", 16)
    weights.write_bytes(b"a new base, another size")
    assert _entry(clock, 0, 1600, "a painting", tmp_path / "zoo", 16) != before


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_parallel_audits_give_the_serial_verdicts(quick_bench):
    """`--jobs 2` audits the scenarios in two worker processes sharing the image cache: every verdict and value is
    the serial run's (the images come from the cache the serial run filled, so this is quick)."""
    doc, _, out = quick_bench
    out2 = out.parent / "validity-jobs2"
    res = CliRunner().invoke(app, ["demo", "bench", "--quick", "--out", str(out2), "--cache", str(out / "cache"),
                                   "--zoo", str(ROOT / "demo_zoo"), "--jobs", "2"])
    assert res.exit_code == 0, res.output
    par = json.loads((out2 / "results.json").read_text())
    assert par["jobs"] == 2 and par["summary"] == doc["summary"]
    assert [r["scenario"] for r in par["results"]] == [r["scenario"] for r in doc["results"]]
    for a, b in zip(par["results"], doc["results"]):
        for m, v in b["verdicts"].items():
            assert a["verdicts"][m]["values"] == pytest.approx(v["values"], rel=1e-6, abs=1e-9), (a["scenario"], m)


@pytest.mark.slow  # trains LoRAs (a few steps) in worker processes
def test_pool_trained_in_worker_processes_is_the_one_process_pool(tmp_path, one_torch_thread):
    """`train_pool(jobs=2)` writes byte-identical LoRA files to a one-process run with one torch thread."""
    from copyscope.demo.build import build_demo_zoo
    from copyscope.demo.pool import train_pool

    zoo = build_demo_zoo(tmp_path / "zoo", quick=True, log=None, threads=1)
    only = {"clock", "astronaut-twin", "palette-decoy"}
    one = json.loads((train_pool(tmp_path / "one", zoo, steps=2, only=only, log=lambda m: None) / "pool.json").read_text())
    two = json.loads((train_pool(tmp_path / "two", zoo, steps=2, only=only, log=lambda m: None, jobs=2)
                      / "pool.json").read_text())
    assert set(one["loras"]) == set(two["loras"]) == only
    for name in only:
        assert two["loras"][name] == one["loras"][name], name  # same spec, same file hash
