"""The validity benchmark's --quick subset (issue 15): planted scenarios on the shipped demo zoo's LoRAs.

Runs `copyscope demo bench --quick` through the CLI (4 scenarios: the plant at weight 1 and 0.5, with
and without the ControlNet; 24 distinct coalitions x 8 seeds) and checks that the headline metric
recovers the plant in every scenario and never calls a decoy significant.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from typer.testing import CliRunner  # noqa: E402

from copyscope.cli import app  # noqa: E402
from copyscope.demo.scenarios import POOL, WORKS, scenarios, transformed_pixels  # noqa: E402
from copyscope.report.headline import headline_metric  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("bench") / "validity"
    res = CliRunner().invoke(app, ["demo", "bench", "--quick", "--out", str(out), "--zoo", str(ROOT / "demo_zoo")])
    assert res.exit_code == 0, res.output
    return json.loads((out / "results.json").read_text()), res.output, out


def test_headline_recovers_the_plant(quick_bench):
    doc, output, _ = quick_bench
    assert doc["scenarios"] == len(scenarios(quick=True)) == 4
    head = headline_metric(doc["metrics"])
    s = doc["summary"][head]
    n = s["scenarios"]
    assert n == 4
    assert s["planted_first"] == [n, n], s
    assert s["plant_significant"] == [n, n], s
    assert s["decoy_significant"] == [0, n], s
    # the printed table has a row per metric judged
    for m in doc["summary"]:
        assert f"| {m} |" in output


def test_scenarios_share_cached_images(quick_bench):
    doc, _, out = quick_bench
    gen = {r["scenario"]: r["generated"] for r in doc["results"]}
    # without the ControlNet every coalition is one the ControlNet scenario already generated
    assert gen["plain:astronaut:coffee+rocket:nocn"] == 0
    assert gen["half-weight:astronaut:coffee+rocket:nocn"] == 0
    assert gen["plain:astronaut:coffee+rocket:cn"] == 16 * 8
    assert gen["half-weight:astronaut:coffee+rocket:cn"] == 8 * 8  # only coalitions with the half-weight plant
    assert (out / "table.md").read_text().startswith("| metric |")


def test_bench_refuses_a_folder_that_is_not_a_demo_zoo(tmp_path):
    res = CliRunner().invoke(app, ["demo", "bench", "--quick", "--out", str(tmp_path / "o"), "--zoo", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a demo zoo" in res.output


def test_full_scenario_set_is_what_the_issue_asks():
    full = scenarios()
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

    from copyscope.demo.build import center_square, load_skimage

    a = center_square(load_skimage("astronaut"))
    t = transformed_pixels(a, "flip_crop_colour")
    assert t.shape[0] < a.shape[0] and t.dtype == np.float32 and 0 <= t.min() and t.max() <= 1
    cat = load_skimage("chelsea")
    pal = transformed_pixels(cat, "palette_of:astronaut")
    # the cat's per-channel means move to the astronaut's
    assert np.abs(pal.mean((0, 1)) - a.mean((0, 1))).max() < np.abs(cat.mean((0, 1)) - a.mean((0, 1))).max() / 3
