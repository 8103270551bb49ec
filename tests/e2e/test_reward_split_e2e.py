"""`copyscope reward-split` end to end through the CLI: tiny SD pipeline, tiny random-weight CLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.cli import app
from helpers.zoo import make_zoo_file, write_reference_images

runner = CliRunner()


def split_zoo(tmp, tiny_models, tiny_clip, **overrides):
    write_reference_images(tmp / "ada", n=2, seed=1)
    write_reference_images(tmp / "bo", n=1, seed=2)
    data = dict(
        loras=1,
        controlnet=False,
        prompt_players=[{"name": "ada", "text": "by Ada Painter"}, {"name": "bo", "text": "by Bo Sketcher"}],
        references=[{"name": "ada", "paths": [str(tmp / "ada")]}, {"name": "bo", "paths": [str(tmp / "bo")]}],
        prompts=[{"name": "p", "text": "a painting of a cat"}],
        # one step without classifier-free guidance: the cheapest generation that still follows the prompt
        generation={"resolution": 32, "steps": 1, "guidance": 1.0, "seeds": 3, "batch_size": 4, "scheduler": "ddim"},
        backbones={"clip": str(tiny_clip)},
        estimator={"bootstrap": 40},
        reward_split={"recognisability": {"method": "zero_shot", "threshold": 0.0}},
        cache=str(tmp / "cache"),  # one cache for every run of the module
    )
    data.update(overrides)
    return make_zoo_file(tmp, tiny_models, **data)


@pytest.fixture(scope="module")
def split_run(tiny_models, tiny_clip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("split")
    zoo = split_zoo(tmp, tiny_models, tiny_clip)
    r = runner.invoke(app, ["reward-split", str(zoo)])
    assert r.exit_code == 0, r.output
    path = tmp / "out" / "reward-split" / "reward_split.json"
    return {"tmp": tmp, "zoo": zoo, "output": r.output, "result": json.loads(path.read_text())}


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_output_structure_and_consistency(split_run):
    res = split_run["result"]
    assert res["analysis"] == "reward_split" and res["metric"]["name"] == "clip"
    assert res["seeds"] == [0, 1, 2] and res["model_rule"] == "empty_coalition"
    (g,) = res["games"]
    assert g["artists"] == ["ada", "bo"] and g["works"] == {"ada": "ada", "bo": "bo"}
    assert set(g["coalitions"]) == {"", "ada", "bo", "ada+bo"}
    sp = g["split"]
    rows = [sp["model"], *sp["artists"].values()]
    assert sum(r["share"] for r in rows) == pytest.approx(100.0)
    assert sp["sum_percent"] == pytest.approx(100.0)
    for r in rows:
        assert 0.0 <= r["share"] <= 100.0
        assert r["low"] <= r["share"] + 1e-9 and r["share"] <= r["high"] + 1e-9
    # the model earns v(empty); Shapley values of the artists split v(N) - v(empty)
    assert sp["model"]["value"] == pytest.approx(g["coalitions"][""])
    assert sp["v_full"] == pytest.approx(g["coalitions"]["ada+bo"])
    phi = sum(a["value"] for a in sp["artists"].values())
    assert phi == pytest.approx(g["coalitions"]["ada+bo"] - g["coalitions"][""], abs=1e-9)
    assert g["bootstrap_used"] == sp["n_replicates"] == 40
    rec = g["recognisability"]
    assert rec["n_images"] == 3 and rec["n_kept"] + rec["n_dropped"] == 3 and rec["n_kept"] == 3
    assert rec["labels"][:2] == ["by Ada Painter", "by Bo Sketcher"] and len(rec["labels"]) == 5
    for item in g["per_image"]:
        assert item["model"] + sum(item["artists"].values()) == pytest.approx(100.0)
    assert "reward split" in split_run["output"] and "model" in split_run["output"]


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_coalitions_are_prompts_with_the_model_fully_on(split_run):
    (g,) = split_run["result"]["games"]
    cache = ImageCache(split_run["tmp"] / "cache")
    prompts = {}
    for key, image_keys in g["images"].items():
        assert len(image_keys) == 3
        fields = cache.sidecar(image_keys[0])["fields"]
        assert len(fields["loras"]) == 1  # the model (base + LoRA) is the same in every coalition
        prompts[key] = fields["prompt"]
    assert prompts == {
        "": "a painting of a cat",
        "ada": "a painting of a cat, by Ada Painter",
        "bo": "a painting of a cat, by Bo Sketcher",
        "ada+bo": "a painting of a cat, by Ada Painter, by Bo Sketcher",
    }


def full_prompt_similarities(tmp, tiny_clip, image_keys):
    """max over artists (max over each work's images) of the clip similarity, recomputed here."""
    from copyscope.score.metrics import build_metrics
    from copyscope.common.inputs import load_image_rgb

    m = build_metrics(["clip"], {"clip": str(tiny_clip)})[0]
    cache = ImageCache(tmp / "cache")
    gen = m.features([cache.load(k) for k in image_keys])
    refs = m.features([load_image_rgb(p) for w in ("ada", "bo") for p in sorted((tmp / w).iterdir())])
    s = m.similarity(gen, refs)
    return np.maximum(s[:, :2].max(axis=1), s[:, 2])


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_rerun_uses_the_cache_metric_override_and_similarity_filter(split_run, tiny_models, tiny_clip):
    tmp = split_run["tmp"]
    (g0,) = split_run["result"]["games"]
    zoo = split_zoo(tmp, tiny_models, tiny_clip, reward_split={"recognisability": {"method": "none"}})
    r = runner.invoke(app, ["reward-split", str(zoo), "--metric", "ssim", "--out", str(tmp / "ssim")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp / "ssim" / "reward_split.json").read_text())
    assert res["metric"]["name"] == "ssim"
    assert res["generation"]["generated"] == 0 and res["generation"]["cached"] == 12  # one shared cache
    (g,) = res["games"]
    assert g["recognisability"]["n_dropped"] == 0 and g["images"] == g0["images"]
    assert sum(x["share"] for x in [g["split"]["model"], *g["split"]["artists"].values()]) == pytest.approx(100.0)

    sims = full_prompt_similarities(tmp, tiny_clip, g0["images"]["ada+bo"])
    threshold = float(np.sort(sims)[1])  # keeps the two most similar of the three images
    zoo = split_zoo(tmp, tiny_models, tiny_clip, reward_split={"recognisability": {"method": "similarity", "threshold": threshold}})
    r = runner.invoke(app, ["reward-split", str(zoo), "--out", str(tmp / "sim")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp / "sim" / "reward_split.json").read_text())
    (g,) = res["games"]
    rec = g["recognisability"]
    assert rec["n_kept"] == int((sims >= threshold).sum()) == 2 and rec["n_dropped"] == 1
    assert [i["kept"] for i in rec["items"]] == (sims >= threshold).tolist()
    assert "dropped" in r.output
    assert len(g["per_image"]) == 2
    assert sum(x["share"] for x in [g["split"]["model"], *g["split"]["artists"].values()]) == pytest.approx(100.0)


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_everything_dropped_is_a_clear_error(split_run, tiny_models, tiny_clip):
    tmp = split_run["tmp"]
    zoo = split_zoo(tmp, tiny_models, tiny_clip, reward_split={"recognisability": {"method": "similarity", "threshold": 2.0}})
    r = runner.invoke(app, ["reward-split", str(zoo), "--out", str(tmp / "all")])
    assert r.exit_code == 2
    assert "no image has a recognisable artist" in r.output and "reward_split.recognisability" in r.output


def test_user_errors(tiny_models, tiny_clip, tmp_path):
    # no CLIP available: one line naming the key to set and what to download
    zoo = split_zoo(tmp_path, tiny_models, tiny_clip, backbones={"clip": str(tmp_path / "no-clip")})
    r = runner.invoke(app, ["reward-split", str(zoo)])
    assert r.exit_code == 2 and "backbones.clip" in r.output and "Traceback" not in r.output
    assert len([line for line in r.output.splitlines() if line.startswith("error")]) == 1
    zoo = split_zoo(tmp_path, tiny_models, tiny_clip, prompt_players=[])
    r = runner.invoke(app, ["reward-split", str(zoo)])
    assert r.exit_code == 2 and "prompt_players" in r.output
    zoo = split_zoo(tmp_path, tiny_models, tiny_clip, reward_split={"works": {"ada": "nowhere"}})
    r = runner.invoke(app, ["reward-split", str(zoo)])
    assert r.exit_code == 2 and "reward_split.works.ada" in r.output and "nowhere" in r.output
    zoo = split_zoo(tmp_path, tiny_models, tiny_clip, reward_split={"metric": "fd_pixels"})
    r = runner.invoke(app, ["reward-split", str(zoo)])
    assert r.exit_code == 2 and "per-image metric" in r.output
