"""Qwen-Image and Z-Image end to end: a tiny random-weight pipeline of each (copyscope/demo/tiny_qwenimage.py,
tiny_zimage.py), with a LoRA saved by the family pipeline's own ``save_lora_weights`` and a ControlNet of the family,
audited through the CLI (no hub, 32 px, 2 steps, 2 seeds); the family checks before anything loads; the shipped
real-model audits of both families validate and plan offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.generate.cache import ImageCache

from helpers.families import assert_rerun_generates_nothing, one_error_line
from helpers.paths import REPO
from helpers.zoo import write_reference_images

runner = CliRunner()
FAMILIES = ("qwenimage", "zimage")
# each family's own settings, as the zoo gives them and as the image key must hold them
SETTINGS = {
    "qwenimage": {"max_sequence_length": 16, "true_cfg_scale": 2.0},
    "zimage": {"max_sequence_length": 16, "cfg_normalization": False, "cfg_truncation": 1.0},
}


@pytest.fixture(scope="module")
def zoos(tmp_path_factory) -> dict:
    from copyscope.demo.tiny_families import save_tiny_family_zoo

    root = tmp_path_factory.mktemp("qwen_zimage_models")
    return {fam: save_tiny_family_zoo(root / fam, fam, seed=0) for fam in FAMILIES}


def zoo_file(tmp: Path, models: dict, *, controlnets: int = 1, lora: dict | None = None, **generation) -> Path:
    fam = models["family"]
    refs = write_reference_images(tmp / "refs")
    data = {
        "name": f"tiny-{fam}",
        "output": str(tmp / "out"),
        "bases": [{"name": f"tiny-{fam}", "model": str(models["base"])}],
        "controlnets": [{"name": "control" if i == 0 else f"control{i}", "model": str(models["controlnet"]),
                         "conditioning": {"image": str(models["control"])}, **({"conditioning_scale": 0.5} if i else {})}
                        for i in range(controlnets)],
        "loras": [lora or {"name": "style", "model": str(models["loras"][0])}],
        "references": [{"name": "work", "paths": [str(refs)]}],
        "prompts": [{"name": "p", "text": "a painting of a cat", "negative": "blurry"}],
        "generation": {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 2, "batch_size": 2, **SETTINGS, **generation},
        "metrics": ["ssim", "dhash"],
        "estimator": {"method": "exact", "bootstrap": 0},
        "controls": {"strengths": [0.5], "seeds": 1, "negatives": 1},  # the family's own img2img pipeline, two images
    }
    path = tmp / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _differ(images: dict, pairs) -> None:
    for without, with_ in pairs:
        for x, y in zip(images[without], images[with_]):
            assert np.abs(x - y).max() > 1 / 255, f"{without!r} -> {with_!r} changed nothing"


@pytest.mark.slow  # a shared module fixture builds two tiny pipelines and audits (pyproject: markers)
@pytest.mark.parametrize("family", FAMILIES)
def test_family_audit_through_the_cli(family, zoos, tmp_path, one_torch_thread):
    zoo = zoo_file(tmp_path, zoos[family])
    first = runner.invoke(app, ["audit", str(zoo)])
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (game,) = report["games"]
    assert game["players"] == ["control", "style"]
    assert report["generation"]["generated"] == 4 * 2
    assert set(game["metrics"]) >= {"ssim", "dhash"}

    # every image key carries the family and its settings (the zoo's generation.<family>)
    cache = ImageCache(report["cache_dir"])
    keys = game["images"]
    for coalition in ("", "control+style"):
        entry = json.loads(cache.path(keys[coalition][0]).with_suffix(".json").read_text())
        fields = entry.get("fields", entry)
        assert fields["family"] == family and fields["family_settings"] == SETTINGS[family], fields

    # coalitions differ where players differ: adding either player changes every image
    images = {k: [cache.load(key) for key in ks] for k, ks in keys.items()}
    assert set(images) == {"", "control", "style", "control+style"}
    _differ(images, (("", "control"), ("", "style"), ("style", "control+style"), ("control", "control+style")))
    for x, y in zip(*images[""]):  # and the seeds differ
        assert np.abs(x - y).max() > 1 / 255

    # the positive controls ran through the family's own img2img pipeline
    ctl = game["controls"]
    (copy,) = ctl["images"]["work"]["work"]["0.5"]
    (non,) = next(v for k, v in ctl["images"]["work"].items() if k != "work")["0.5"]
    assert np.abs(cache.load(copy) - cache.load(non)).max() > 1 / 255

    # Shapley efficiency
    for name, m in game["metrics"].items():
        if name != "fusion":
            total = sum(v["value"] for v in m["shapley"].values())
            assert total == pytest.approx(m["coalitions"]["control+style"] - m["coalitions"][""], abs=1e-9), name

    # a rerun generates nothing and gives the same values
    assert_rerun_generates_nothing(zoo, tmp_path / "out", game, images=8)


# -- checks before anything loads: one line, exit 2 ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_second_controlnet_is_refused(family, zoos, tmp_path):
    """diffusers' Qwen-Image and Z-Image ControlNet pipelines run one ControlNet (Qwen-Image's multi-ControlNet model
    holds a single union ControlNet and raises on two; Z-Image has none): the coalition of two could never run."""
    from copyscope.families import FAMILIES as REGISTRY

    zoo = zoo_file(tmp_path, zoos[family], controlnets=2)
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "controlnets[1]" in line
    assert f"is {REGISTRY[family].title}, whose diffusers ControlNet pipeline takes at most 1 ControlNet" in line


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_a_resolution_the_family_pipeline_cannot_take_is_refused(family, zoos, tmp_path):
    zoo = zoo_file(tmp_path, zoos[family], resolution=40)
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "generation.resolution" in line and "multiples of 16" in line


@pytest.mark.slow
@pytest.mark.parametrize("lora_of, base", [("zimage", "qwenimage"), ("qwenimage", "zimage")])
def test_a_lora_of_the_other_family_is_refused(zoos, tmp_path, lora_of, base):
    from copyscope.families import FAMILIES as REGISTRY

    zoo = zoo_file(tmp_path, zoos[base], lora={"name": "other", "model": str(zoos[lora_of]["loras"][0])})
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "loras[0].model" in line and f"but base 'tiny-{base}' is {REGISTRY[base].title} (family {base})" in line


@pytest.mark.slow
def test_a_qwenimage_lora_on_a_flux_base_is_refused_by_its_layers(zoos, tmp_path_factory, tmp_path):
    """A diffusers LoRA on the attention of `transformer_blocks.<n>` fits SD3, Flux.1, Chroma and Qwen-Image by its names; the
    layer check (lora_misfit) then compares it with the base: the tiny Qwen-Image LoRA has a second double-stream
    block, which the tiny Flux.1 transformer lacks."""
    from copyscope.demo.tiny_families import save_tiny_family_zoo

    flux = save_tiny_family_zoo(tmp_path_factory.mktemp("flux_base"), "flux", seed=0, n_loras=0, controlnet=False)
    zoo = zoo_file(tmp_path, {**zoos["qwenimage"], "family": "flux", "base": flux["base"]})
    data = yaml.safe_load(zoo.read_text())
    data["controlnets"] = []
    data["generation"]["flux"] = {"max_sequence_length": 16}
    zoo.write_text(yaml.safe_dump(data, sort_keys=False))
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "LoRA 'style' does not fit base 'tiny-flux'" in line and "name no layer of the base" in line


def test_a_single_file_qwenimage_base_is_refused(tmp_path):
    """QwenImagePipeline has no from_single_file in diffusers 0.42.1: a single-file Qwen-Image base (detected from its
    tensor names, or declared) is refused before anything loads."""
    import torch
    from safetensors.torch import save_file

    ckpt = tmp_path / "qwen_image.safetensors"
    save_file({"model.diffusion_model.transformer_blocks.0.img_mlp.net.0.proj.weight": torch.zeros(2, 2)}, str(ckpt))
    for declared in ({}, {"family": "qwen-image"}):
        zoo = tmp_path / "zoo.yaml"
        zoo.write_text(yaml.safe_dump({
            "name": "single", "output": str(tmp_path / "out"), "bases": [{"name": "q", "model": str(ckpt), **declared}],
            "prompt_players": [{"name": "oil", "text": "oil painting"}],
            "references": [{"name": "work", "paths": [str(write_reference_images(tmp_path / "refs"))]}],
            "prompts": [{"name": "p", "text": "a cat"}], "generation": {"resolution": 32, "steps": 2, "seeds": 2},
        }))
        line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
        assert "bases[0].model" in line and "QwenImagePipeline (Qwen-Image) cannot load single files" in line, line


# -- the shipped real-model audits validate and plan offline ---------------------------------------------


@pytest.mark.parametrize("name, family, players", [
    ("qwenimage-style-audit", "qwenimage", ["canny", "realism"]),
    ("zimage-style-audit", "zimage", ["dedistill", "style"]),
])
def test_shipped_real_audits_validate_and_plan_offline(name, family, players, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo = REPO / "audits" / f"{name}.yaml"
    validated = runner.invoke(app, ["validate", str(zoo)])
    assert validated.exit_code == 0, validated.output
    assert "needed before `audit`" in validated.output  # hub models and the works are not here
    planned = runner.invoke(app, ["plan", str(zoo)])
    assert planned.exit_code == 0, planned.output
    assert f"family {family}" in " ".join(planned.output.split())  # rich wraps the game's title
    from copyscope.config import load_zoo
    from copyscope.plan.games import make_plan

    (game,) = make_plan(load_zoo(zoo)).games
    assert game.family == family and game.names == players
    assert f"{2 ** len(players)} coalition(s)" in planned.output
