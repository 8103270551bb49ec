"""The audit end to end through the CLI, on tiny SD-shaped models built from configs."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.generate.cache import ImageCache

from helpers.zoo import brute_force_shapley, make_zoo_file

runner = CliRunner()


@pytest.fixture(scope="module")
def audited(tiny_models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    zoo = make_zoo_file(tmp, tiny_models)
    first = runner.invoke(app, ["audit", str(zoo)])
    assert first.exit_code == 0, first.output
    report = json.loads((tmp / "out" / "report.json").read_text())
    second = runner.invoke(app, ["audit", str(zoo)])
    assert second.exit_code == 0, second.output
    rerun = json.loads((tmp / "out" / "report.json").read_text())
    return {"tmp": tmp, "zoo": zoo, "report": report, "rerun": rerun, "output": first.output}


def test_report_shape(audited):
    r = audited["report"]
    assert isinstance(r["copyscope_version"], str) and len(r["config_sha256"]) == 64
    assert set(r["generation"]) >= {"generated", "cached", "seconds"}
    (game,) = r["games"]
    assert game["base"] == "tiny-sd" and game["players"] == ["depth", "lora0", "lora1"]
    for name in ["ssim", "rgb_ssim", "dhash", "histogram", "cosine"]:
        m = game["metrics"][name]
        assert m["orientation"] == "higher_is_closer"
        assert len(m["coalitions"]) == 8 and "" in m["coalitions"] and "depth+lora0+lora1" in m["coalitions"]
        for p in game["players"]:
            v = m["shapley"][p]
            assert isinstance(v["value"], float)
            assert v["ci95"] is None or (len(v["ci95"]) == 2 and v["ci95"][0] <= v["ci95"][1])
    assert "fusion" in game["metrics"]
    assert "Shapley attribution" in audited["output"]


def test_first_run_generates_every_image_once(audited):
    gen = audited["report"]["generation"]
    assert gen["generated"] == 8 * 2 and gen["cached"] == 0


def test_rerun_generates_nothing_and_gives_identical_values(audited):
    assert audited["rerun"]["generation"]["generated"] == 0
    assert audited["rerun"]["generation"]["cached"] == 16
    for name, m in audited["report"]["games"][0]["metrics"].items():
        assert audited["rerun"]["games"][0]["metrics"][name]["coalitions"] == m["coalitions"]
        assert audited["rerun"]["games"][0]["metrics"][name]["shapley"] == m["shapley"]


def test_images_differ_where_players_differ(audited):
    game = audited["report"]["games"][0]
    cache = ImageCache(Path(audited["report"]["cache_dir"]))
    images = {k: [cache.load(key) for key in keys] for k, keys in game["images"].items()}
    players = game["players"]
    for members in itertools.product([False, True], repeat=len(players)):
        for i, p in enumerate(players):
            if members[i]:
                continue
            a = "+".join(q for q, m in zip(players, members) if m)
            with_p = tuple(m or j == i for j, m in enumerate(members))
            b = "+".join(q for q, m in zip(players, with_p) if m)
            for x, y in zip(images[a], images[b]):
                assert np.abs(x - y).max() > 1 / 255, f"adding {p} to {a!r} changed nothing"
    # seeds differ too
    assert np.abs(images[""][0] - images[""][1]).max() > 1 / 255


def test_shapley_matches_brute_force_and_efficiency(audited):
    game = audited["report"]["games"][0]
    for name, m in game["metrics"].items():
        expected = brute_force_shapley(game["players"], m["coalitions"])
        for p, v in expected.items():
            assert math.isclose(m["shapley"][p]["value"], v, abs_tol=1e-9), (name, p)
        total = sum(m["shapley"][p]["value"] for p in game["players"])
        full = "+".join(game["players"])
        assert abs(total - (m["coalitions"][full] - m["coalitions"][""])) <= 1e-9
        assert abs(m["efficiency_gap"]) <= 1e-9


def test_adding_a_player_generates_only_new_coalitions(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))  # a cold cache of its own
    zoo = make_zoo_file(tmp_path, tiny_models, loras=1)
    r1 = runner.invoke(app, ["audit", str(zoo)])
    assert r1.exit_code == 0, r1.output
    first = json.loads((tmp_path / "out" / "report.json").read_text())
    assert first["generation"]["generated"] == 4 * 2
    zoo = make_zoo_file(tmp_path, tiny_models, loras=2)
    r2 = runner.invoke(app, ["audit", str(zoo)])
    assert r2.exit_code == 0, r2.output
    second = json.loads((tmp_path / "out" / "report.json").read_text())
    assert second["generation"]["generated"] == 4 * 2  # the 4 coalitions with lora1
    assert second["generation"]["cached"] == 4 * 2


def test_validate_and_plan_commands(tiny_models, tmp_path):
    zoo = make_zoo_file(tmp_path, tiny_models)
    r = runner.invoke(app, ["validate", str(zoo)])
    assert r.exit_code == 0 and "ok" in r.output
    r = runner.invoke(app, ["plan", str(zoo)])
    assert r.exit_code == 0, r.output
    assert "8 coalition(s) x 2 image(s)" in r.output


def test_bad_input_exits_2_with_one_line(tiny_models, tmp_path):
    zoo = make_zoo_file(tmp_path, tiny_models, loras=1)
    text = zoo.read_text().replace("weight: 1.0", "weight: lots")
    zoo.write_text(text)
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 2
    assert "loras[0].weight" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_base_as_player_uses_the_null_generator(tiny_models, tmp_path):
    zoo = make_zoo_file(tmp_path, tiny_models, loras=1, controlnet=False, estimator={"base": "player", "bootstrap": 20})
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    game = report["games"][0]
    assert game["players"] == ["tiny-sd", "lora0"] and game["base_as_player"]
    cache = ImageCache(Path(report["cache_dir"]))
    for coalition in ["", "lora0"]:  # no base: the null generator's mid-grey images
        for key in game["images"][coalition]:
            assert np.allclose(cache.load(key), 128 / 255)
    assert np.abs(cache.load(game["images"]["tiny-sd"][0]) - 128 / 255).max() > 0.05
    ssim = game["metrics"]["ssim"]
    assert ssim["coalitions"][""] == ssim["coalitions"]["lora0"]
    assert abs(ssim["efficiency_gap"]) <= 1e-9


def test_sampled_estimator_respects_budget_and_reuses_generation(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))  # a cold cache of its own
    zoo = make_zoo_file(tmp_path, tiny_models, estimator={"method": "permutation", "budget": 6, "bootstrap": 20})
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    game = report["games"][0]
    n_coalitions = len(game["images"])
    assert n_coalitions <= 6
    assert report["generation"]["generated"] == n_coalitions * 2  # every metric reused the same images
    for m in game["metrics"].values():
        assert m["estimator"]["coalitions_evaluated"] <= 6
        assert abs(m["efficiency_gap"]) <= 1e-9 or m["estimator"]["method"] != "exact"


def test_undefined_metric_is_skipped_with_its_reason_not_the_audit(tiny_models, tmp_path):
    # one reference image: KID's unbiased estimator is undefined (needs >= 2 on each side), so
    # kid_pixels is NaN for every coalition; the audit must go on with the other metrics
    zoo = make_zoo_file(tmp_path, tiny_models, loras=1, controlnet=False,
                        metrics=["kid_pixels", "ssim", "cosine"])
    data = yaml.safe_load(zoo.read_text())
    ref_dir = Path(data["references"][0]["paths"][0])
    for extra in sorted(ref_dir.glob("*.png"))[1:]:
        extra.unlink()
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    (game,) = json.loads((tmp_path / "out" / "report.json").read_text())["games"]
    assert set(game["metrics"]) == {"ssim", "cosine", "fusion"}
    assert "kid_pixels" in game["skipped_metrics"] and "fewer than 2" in game["skipped_metrics"]["kid_pixels"]
    for sec in game["metrics"].values():
        assert all(math.isfinite(e["value"]) for e in sec["shapley"].values())
