"""ControlNet conditioning computed from the protected work (copyscope.conditioning): detectors, the
map cache, map keys inside image keys, errors, and a whole audit with a tiny random-weight DPT."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.conditioning import ConditioningMaps, pseudo_depth
from copyscope.config import load_zoo

from helpers.zoo import make_zoo_file, write_reference_images
from helpers.paths import REPO

ROOT = REPO


def save_tiny_dpt(folder: Path, seed: int = 0) -> Path:
    """A random-weight DPT depth-estimation model (about 70k parameters) and its image processor,
    saved as safetensors: the offline stand-in for DPT / Depth Anything weights."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    cfg = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
                    patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 16, 16],
                    fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5], initializer_range=0.5)
    torch.manual_seed(seed)
    DPTForDepthEstimation(cfg).eval().save_pretrained(folder, safe_serialization=True)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory):
    return save_tiny_dpt(tmp_path_factory.mktemp("dpt") / "dpt")


def _zoo(tmp_path: Path, tiny_models: dict, conditioning: dict, **overrides) -> Path:
    controlnets = [{"name": "depth", "model": str(tiny_models["controlnet"]), "conditioning": conditioning}]
    return make_zoo_file(tmp_path, tiny_models, controlnets=controlnets, **overrides)


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def _resized(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


def _map(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


# ---------------------------------------------------------------------------------------- detectors

def test_canny_map_matches_a_direct_skimage_call(tmp_path, tiny_models):
    from skimage.feature import canny

    params = {"sigma": 1.5, "low_threshold": 0.05, "high_threshold": 0.15}
    zoo = load_zoo(_zoo(tmp_path, tiny_models, {"from_work": "work", "detector": "canny", "params": params}))
    maps = ConditioningMaps(zoo, tmp_path / "maps")
    entry = maps.entry(0)
    src = _resized(tmp_path / "refs" / "ref0.png", 32)  # default: the work's first reference image
    grey = 0.299 * src[..., 0] + 0.587 * src[..., 1] + 0.114 * src[..., 2]
    expected = canny(grey.astype(np.float64), **params)
    got = _map(entry.path)
    assert entry.source.name == "ref0.png" and got.shape == (32, 32, 3)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(got[..., 0] > 0.5, expected)
    assert (got[..., 0] == got[..., 2]).all()


def test_pseudo_depth_detector_reproduces_the_demo_map_within_one_level():
    """The demo's control/astronaut_depth.png is pseudo_depth of the 32 px centre crop of the full
    image; the detector reads the 128 px reference file instead, so its map may differ by 1/255."""
    zoo = load_zoo(ROOT / "model_zoo.yaml")
    zoo.spec.controlnets[0].conditioning = type(zoo.spec.controlnets[0].conditioning)(
        from_work="astronaut", reference="astronaut.png", detector="pseudo_depth")
    maps = ConditioningMaps(zoo, Path("/nonexistent"))
    img = _resized(ROOT / "demo_zoo/references/astronaut/astronaut.png", 32)
    mine = np.round(pseudo_depth(img) * 255)
    shipped = np.round(_map(ROOT / "demo_zoo/control/astronaut_depth.png") * 255)
    assert np.abs(mine - shipped).max() <= 1
    assert maps.sources(0)[0][0].name == "astronaut.png"


def test_depth_detector_runs_a_tiny_dpt(tmp_path, tiny_models, tiny_dpt):
    zoo = load_zoo(_zoo(tmp_path, tiny_models, {"from_image": str(tiny_models["control"]), "detector": "depth",
                                                "model": str(tiny_dpt)}))
    maps = ConditioningMaps(zoo, tmp_path / "maps")
    maps.check()
    got = _map(maps.entry(0).path)
    assert got.shape == (32, 32, 3)
    assert got.min() == 0.0 and got.max() == 1.0  # min-max normalised relative depth
    # the map is the model's prediction: a different random DPT gives a different map
    other = save_tiny_dpt(tmp_path / "dpt2", seed=1)
    zoo.spec.controlnets[0].conditioning.model = str(other)
    maps2 = ConditioningMaps(zoo, tmp_path / "maps")
    assert maps2.entry(0).key != maps.entry(0).key
    assert not np.array_equal(_map(maps2.entry(0).path), got)


# ---------------------------------------------------------------------------------------- cache and keys

def test_unchanged_maps_are_reused_and_a_changed_parameter_changes_the_image_keys(tmp_path, tiny_models):
    from copyscope.generate import CoalitionEngine
    from copyscope.plan.games import make_plan

    def keys_of(sigma: float, out: Path):
        path = _zoo(tmp_path, tiny_models, {"from_work": "work", "detector": "pseudo_depth", "params": {"sigma": sigma}},
                    loras=1)
        zoo = load_zoo(path)
        maps = ConditioningMaps(zoo, out)
        plan = make_plan(zoo)
        game = plan.games[0]
        engine = CoalitionEngine(zoo, game, conditioning=maps)
        with_cn = tuple(p.kind == "controlnet" for p in game.players)
        without = tuple(False for _ in game.players)
        from copyscope.common.files import key_of

        return ([key_of(engine.image_fields(with_cn, it)) for it in plan.items],
                [key_of(engine.image_fields(without, it)) for it in plan.items], maps)

    k1, plain1, m1 = keys_of(2.0, tmp_path / "maps")
    assert m1.computed == 1
    k2, plain2, m2 = keys_of(2.0, tmp_path / "maps")
    assert m2.computed == 0, "an unchanged map must be read from the cache, not recomputed"
    assert k2 == k1 and plain2 == plain1
    k3, plain3, m3 = keys_of(3.0, tmp_path / "maps")
    assert m3.computed == 1
    assert not set(k3) & set(k1), "a changed detector parameter must change every ControlNet image key"
    assert plain3 == plain1, "coalitions without the ControlNet do not depend on its map"
    assert len(list((tmp_path / "maps").glob("pseudo_depth-*.png"))) == 2


def test_conditioning_command_writes_maps_then_reuses_them(tmp_path, tiny_models):
    path = _zoo(tmp_path, tiny_models, {"from_work": "work", "detector": "canny", "reference": "each"})
    out = tmp_path / "o"
    first = _run("conditioning", path, "--out", out)
    assert first.exit_code == 0, first.output
    maps = sorted((out / "conditioning").glob("canny-*.png"))
    assert len(maps) == 2  # one per reference image of the work
    sidecar = json.loads(maps[0].with_suffix(".json").read_text())
    assert sidecar["fields"]["detector"] == "canny" and sidecar["work"] == "work"
    mtimes = [m.stat().st_mtime_ns for m in maps]
    second = _run("conditioning", path, "--out", out)
    assert second.exit_code == 0 and "(cached)" in second.output, second.output
    assert [m.stat().st_mtime_ns for m in maps] == mtimes
    assert not (out / "cache").exists() and not (out / "report.json").exists()  # nothing generated


def test_reference_each_generates_every_prompt_seed_per_map(tmp_path, tiny_models):
    from copyscope.plan.games import make_plan

    path = _zoo(tmp_path, tiny_models, {"from_work": "work", "detector": "canny", "reference": "each"})
    plan = make_plan(load_zoo(path))
    assert [(i.control, i.seed) for i in plan.items] == [(0, 0), (0, 1), (1, 0), (1, 1)]


# ---------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("conditioning, message", [
    ({"from_work": "work", "detector": "sobel"}, "unknown detector 'sobel'"),
    ({"from_work": "work", "detector": "canny", "params": {"thresh": 1}}, "unknown parameter 'thresh'"),
    ({"from_work": "work", "detector": "depth"}, "needs 'model'"),
    ({"from_work": "nowork", "detector": "canny"}, "unknown work 'nowork'"),
    ({"from_work": "work"}, "needs a 'detector'"),
    ({"image": "x.png", "detector": "canny"}, "'detector' only goes with"),
    ({"from_work": "work", "detector": "canny", "reference": 5}, "index 5 is out of range"),
    ({"from_work": "work", "detector": "canny", "reference": "nope.png"}, "no reference image named 'nope.png'"),
    ({"from_image": "missing.png", "detector": "canny"}, "conditioning source 'missing.png' not found"),
])
def test_bad_conditioning_is_one_line_exit_2(tmp_path, tiny_models, conditioning, message):
    path = _zoo(tmp_path, tiny_models, conditioning)
    line = _one_line_error(_run("conditioning", path))
    assert message in line and "controlnets[0].conditioning" in line and "zoo.yaml:" in line, line


def test_depth_weights_missing_offline_is_one_line_exit_2(tmp_path, tiny_models, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = _zoo(tmp_path, tiny_models, {"from_work": "work", "detector": "depth", "model": "depth-org/no-such-dpt"})
    line = _one_line_error(_run("conditioning", hub))
    assert "not in the local Hugging Face cache" in line and "conditioning.model" in line, line
    empty = tmp_path / "empty-dpt"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    local = _zoo(tmp_path, tiny_models, {"from_work": "work", "detector": "depth", "model": str(empty)})
    line = _one_line_error(_run("audit", local))
    assert "holds no weights" in line, line
    assert not (tmp_path / "out").exists()  # failed before writing anything


def test_annotator_needs_the_extra_and_allow_pickle(tmp_path, tiny_models, monkeypatch):
    path = _zoo(tmp_path, tiny_models, {"from_work": "work", "detector": "lineart_realistic"})
    line = _one_line_error(_run("conditioning", path))
    assert "--allow-pickle" in line, line
    monkeypatch.setitem(sys.modules, "controlnet_aux", None)  # as on a machine without the extra
    line = _one_line_error(_run("conditioning", path, "--allow-pickle"))
    assert "controlnet-aux" in line and "copyscope[annotators]" in line, line


# ---------------------------------------------------------------------------------------- whole audit

def test_audit_with_a_depth_map_from_the_work(tmp_path, tiny_models, tiny_dpt, one_torch_thread):
    path = _zoo(tmp_path, tiny_models, {"from_work": "work", "detector": "depth", "model": str(tiny_dpt)}, loras=1,
                metrics=["ssim", "dhash"], estimator={"bootstrap": 20})
    out = tmp_path / "out"
    result = _run("audit", path)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    (row,) = report["conditioning"]
    assert row["detector"] == "depth" and row["work"] == "work" and Path(row["source"]).name == "ref0.png"
    assert Path(row["map"]).is_file() and Path(row["map"]).parent == out / "conditioning"
    game = report["games"][0]
    for coalition, keys in game["images"].items():
        for k in keys:
            fields = json.loads((Path(report["cache_dir"]) / "images" / k[:2] / f"{k}.json").read_text())["fields"]
            cns = fields["controlnets"]
            assert ([c["map_key"] for c in cns] == [row["key"]]) == ("depth" in coalition.split("+")), coalition
    html = (out / "report.html").read_text()
    assert "depth map for ControlNet depth" in html and "depth of ref0.png" in html
    # a rerun reuses the map and every image
    again = _run("audit", path)
    assert again.exit_code == 0, again.output
    rerun = json.loads((out / "report.json").read_text())
    assert rerun["conditioning"] == report["conditioning"]
    assert rerun["generation"]["generated"] == 0, rerun["generation"]


def test_from_work_placeholder_reads_each_prompts_own_work(tmp_path, tiny_models):
    from copyscope.common.files import key_of
    from copyscope.generate import CoalitionEngine
    from copyscope.plan.games import make_plan

    other = write_reference_images(tmp_path / "refs-b", n=1, seed=5)
    path = _zoo(tmp_path, tiny_models, {"from_work": "{work}", "detector": "pseudo_depth"}, loras=0,
                references=[{"name": "a", "paths": [str(tmp_path / "refs")]}, {"name": "b", "paths": [str(other)]}],
                prompts=[{"name": "pa", "text": "x", "work": "a"}, {"name": "pb", "text": "x", "work": "b"}])
    zoo = load_zoo(path)
    maps = ConditioningMaps(zoo, tmp_path / "maps")
    rows = maps.compute_all()
    assert [(r["work"], Path(r["source"]).name) for r in rows] == [("a", "ref0.png"), ("b", "ref0.png")]
    plan = make_plan(zoo)
    engine = CoalitionEngine(zoo, plan.games[0], conditioning=maps)
    fields = {it.prompt: engine.image_fields((True,), it) for it in plan.items if it.seed == 0}
    assert fields["pa"]["controlnets"][0]["map_key"] == rows[0]["key"]
    assert fields["pb"]["controlnets"][0]["map_key"] == rows[1]["key"]
    assert key_of(fields["pa"]) != key_of(fields["pb"])
    zoo_no_work = _zoo(tmp_path, tiny_models, {"from_work": "{work}", "detector": "canny"})
    line = _one_line_error(_run("validate", zoo_no_work))
    assert "needs every prompt to name its 'work'" in line, line


def test_validate_lists_a_missing_source_instead_of_failing(tmp_path, tiny_models):
    path = _zoo(tmp_path, tiny_models, {"from_image": "later.png", "detector": "canny"})
    result = _run("validate", path)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "needed before `audit`" in text and "conditioning source 'later.png' not found" in text, text


def test_html_works_section_shows_maps_next_to_their_work(tmp_path):
    from copyscope.report.html import section_works

    ref = tmp_path / "ref.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(ref)
    depth = tmp_path / "depth-0123.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(depth)
    rows = [{"controlnet": "cn", "detector": "depth", "index": 0, "work": "w", "source": str(ref), "map": str(depth), "key": "k1"},
            {"controlnet": "cn2", "detector": "canny", "index": 0, "work": None, "source": "/x/pose.jpg",
             "map": str(tmp_path / "gone.png"), "key": "k2"}]
    html = section_works({"works": {"w": [str(ref)]}, "conditioning": rows})
    work_block = html.split("<h3>Work w</h3>")[1].split("<h3>")[0]
    assert work_block.count("<img") == 2 and "depth of ref.png &rarr; ControlNet cn" in work_block
    other = html.split("Conditioning maps from images")[1]
    assert "canny of pose.jpg" in other and "file not found on this machine" in other


def test_image_labels_name_the_map_with_reference_each():
    from copyscope.report.html import _item_labels

    report = {"settings": {"prompts": [{"name": "a"}, {"name": "b"}], "seeds": [0, 1]}}
    assert _item_labels(report, 4)[2] == "b / seed 0"
    assert _item_labels(report, 8)[:3] == ["a / map 0 / seed 0", "a / map 0 / seed 1", "a / map 1 / seed 0"]


def test_depth_detector_runs_a_tiny_depth_anything(tmp_path):
    """The same detector serves Depth Anything (AutoModelForDepthEstimation picks the class)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    from copyscope.conditioning.detectors import DetectorSource, load_depth_model, run_depth

    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=28,
                            patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 16, 16],
                              fusion_hidden_size=16, head_hidden_size=8, patch_size=14)
    torch.manual_seed(0)
    folder = tmp_path / "depth-anything"
    DepthAnythingForDepthEstimation(cfg).eval().save_pretrained(folder, safe_serialization=True)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False).save_pretrained(folder)
    loaded = load_depth_model(DetectorSource(str(folder), folder, None), allow_pickle=False, device="cpu")
    assert type(loaded[1]).__name__ == "DepthAnythingForDepthEstimation"
    image = np.random.default_rng(0).random((32, 40, 3)).astype(np.float32)
    out = run_depth(loaded, image)
    assert out.shape == (32, 40, 3) and out.min() == 0.0 and out.max() == 1.0
