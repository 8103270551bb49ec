"""`copyscope imitation` end to end through the CLI: tiny SD pipeline, tiny random-weight CLIP."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.cli import app
from helpers.zoo import make_zoo_file, write_reference_images

runner = CliRunner()

ARTISTS = [{"name": "Ada Painter", "work": "ada"}, {"name": "Bo Sketcher", "work": "bo"}, "Cy Nowork"]


def imitation_zoo(tmp, tiny_models, tiny_clip, **overrides):
    write_reference_images(tmp / "ada", n=2, seed=1)
    write_reference_images(tmp / "bo", n=1, seed=2)
    data = dict(
        loras=1,  # in the zoo, but the imitation uses the plain base unless imitation.addons says otherwise
        controlnet=False,
        references=[{"name": "ada", "paths": [str(tmp / "ada")]}, {"name": "bo", "paths": [str(tmp / "bo")]}],
        generation={"resolution": 32, "steps": 1, "guidance": 1.0, "seeds": 2, "batch_size": 8, "scheduler": "ddim"},
        backbones={"clip": str(tiny_clip)},
        imitation={"artists": ARTISTS, "random_names": ["Jo Smith", "Al Brown"], "n_images": 5},
    )
    data.update(overrides)
    return make_zoo_file(tmp, tiny_models, **data)


@pytest.fixture(scope="module")
def imitation_run(tiny_models, tiny_clip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imitation")
    zoo = imitation_zoo(tmp, tiny_models, tiny_clip)
    r = runner.invoke(app, ["imitation", str(zoo), "--n-images", "3"])
    assert r.exit_code == 0, r.output
    path = tmp / "out" / "imitation" / "imitation.json"
    return {"tmp": tmp, "zoo": zoo, "output": r.output, "result": json.loads(path.read_text()),
            "cache": Path(os.environ["COPYSCOPE_CACHE"])}  # the shared cache the audit used


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_identification_structure_and_consistency(imitation_run):
    res = imitation_run["result"]
    assert res["analysis"] == "imitation" and res["base"] == "tiny-sd" and res["addons"] == []
    assert res["n_images"] == 3 and res["seeds"] == [0, 1, 2]  # --n-images overrides imitation.n_images
    names = ["Ada Painter", "Bo Sketcher", "Cy Nowork"]
    assert res["labels"] == [f"Artwork from {n}" for n in names] + ["Artwork", "Digital Artwork", "Artwork from the public domain"]
    ident = res["identification"]
    assert ident["chance"] == pytest.approx(1 / 6)
    accs = []
    for row, name in zip(ident["artists"], names):
        assert row["name"] == name and len(row["images"]) == 3
        assert [im["seed"] for im in row["images"]] == [0, 1, 2]
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["mean_probability_correct"] <= 1.0
        assert row["accuracy"] == pytest.approx(np.mean([im["correct"] for im in row["images"]]))
        assert all(im["correct"] == (im["predicted"] == row["label"]) for im in row["images"])
        assert sum(row["predicted_counts"].values()) == 3
        accs.append(row["accuracy"])
    assert ident["average_accuracy"] == pytest.approx(np.mean(accs))
    base = ident["random_name_baseline"]
    assert base["names"] == ["Jo Smith", "Al Brown"] and base["chance"] == pytest.approx(1 / 5)
    assert 0.0 <= base["average_accuracy"] <= 1.0
    assert base["average_accuracy"] == pytest.approx(np.mean(list(base["accuracy_per_name"].values())))
    assert res["generation"]["generated"] + res["generation"]["cached"] == 15
    out = imitation_run["output"]
    assert "imitation" in out and "chance" in out and "random-name" in out


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_images_are_the_plain_base_with_the_template_and_recorded_seeds(imitation_run):
    res = imitation_run["result"]
    cache = ImageCache(imitation_run["cache"])  # the audit's cache folder
    for row in res["identification"]["artists"]:
        for im in row["images"]:
            fields = cache.sidecar(im["key"])["fields"]
            assert fields["prompt"] == f"Artwork from {row['name']}"
            assert fields["seed"] == im["seed"] and fields["loras"] == [] and fields["controlnets"] == []
    keys = res["identification"]["random_name_baseline"]["images"]["Jo Smith"]
    assert cache.sidecar(keys[0])["fields"]["prompt"] == "Artwork from Jo Smith"


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_matching_test_consistency(imitation_run):
    m = imitation_run["result"]["matching"]
    assert m["correction"] == "bonferroni" and m["alpha"] == 0.05
    assert m["m"] == 2 and [a["name"] for a in m["artists"]] == ["Ada Painter", "Bo Sketcher"]
    for a in m["artists"]:
        assert 0.0 <= a["p"] <= 1.0
        assert a["p_bonferroni"] == pytest.approx(min(1.0, a["p"] * m["m"]))
        assert a["significant"] == (a["p_bonferroni"] < 0.05)
        assert a["n_own"] == 3 and a["n_other"] == 6  # the other artists include the one without a work
        assert 0 <= a["U"] <= a["n_own"] * a["n_other"]
    assert m["n_significant"] == sum(a["significant"] for a in m["artists"])
    ctrl = m["control_random_assignment"]
    assert ctrl["n_permutations"] == 100 and 0.0 <= ctrl["mean_share"] <= 1.0


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_rerun_with_addons_and_other_output(imitation_run, tiny_models, tiny_clip):
    tmp = imitation_run["tmp"]
    zoo = imitation_zoo(tmp, tiny_models, tiny_clip, cache=str(imitation_run["cache"]),
                        imitation={"artists": ARTISTS[:2], "n_images": 2, "addons": ["lora0"], "template": "{name} style"})
    r = runner.invoke(app, ["imitation", str(zoo), "--out", str(tmp / "other")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp / "other" / "imitation.json").read_text())
    assert res["addons"] == ["lora0"] and res["identification"]["random_name_baseline"] is None
    assert res["labels"][:2] == ["Ada Painter style", "Bo Sketcher style"]
    cache = ImageCache(imitation_run["cache"])
    key = res["identification"]["artists"][0]["images"][0]["key"]
    assert len(cache.sidecar(key)["fields"]["loras"]) == 1


def test_user_errors(tiny_models, tiny_clip, tmp_path):
    zoo = imitation_zoo(tmp_path, tiny_models, tiny_clip, backbones={"clip": str(tmp_path / "no-clip")})
    r = runner.invoke(app, ["imitation", str(zoo)])
    assert r.exit_code == 2 and "backbones.clip" in r.output and "Traceback" not in r.output
    zoo = imitation_zoo(tmp_path, tiny_models, tiny_clip, imitation=None)
    r = runner.invoke(app, ["imitation", str(zoo)])
    assert r.exit_code == 2 and "imitation:" in r.output
    zoo = imitation_zoo(tmp_path, tiny_models, tiny_clip, imitation={"artists": [{"name": "Ada", "work": "nowhere"}]})
    r = runner.invoke(app, ["imitation", str(zoo)])
    assert r.exit_code == 2 and "imitation.artists[0].work" in r.output and "nowhere" in r.output
    zoo = imitation_zoo(tmp_path, tiny_models, tiny_clip, imitation={"artists": ["Ada"], "template": "Artwork"})
    r = runner.invoke(app, ["imitation", str(zoo)])
    assert r.exit_code == 2 and "{name}" in r.output
    zoo = imitation_zoo(tmp_path, tiny_models, tiny_clip, imitation={"artists": ["Ada"], "addons": ["nolora"]})
    r = runner.invoke(app, ["imitation", str(zoo)])
    assert r.exit_code == 2 and "nolora" in r.output
