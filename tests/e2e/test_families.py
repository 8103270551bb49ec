"""Pipeline families end to end: a tiny random-weight SD1.x, SDXL, SD3 and Flux.1 pipeline, each with a
LoRA and a ControlNet of its family, audited through the CLI (no hub, 32 px, 2 steps, 2 seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.cli import app

from helpers.families import assert_rerun_generates_nothing, one_error_line
from helpers.zoo import write_reference_images
from helpers.paths import REPO

runner = CliRunner()
FAMILIES = ("sd", "sdxl", "sd3", "flux")


@pytest.fixture(scope="session")
def family_zoos(tmp_path_factory) -> dict:
    from copyscope.demo.tiny_families import save_tiny_family_zoo

    root = tmp_path_factory.mktemp("family_models")
    return {fam: save_tiny_family_zoo(root / fam, fam, seed=0) for fam in FAMILIES}


def family_zoo_file(tmp: Path, models: dict, *, lora: dict | None = None, **base_extra) -> Path:
    fam = models["family"]
    refs = write_reference_images(tmp / "refs")
    data = {
        "name": f"tiny-{fam}",
        "output": str(tmp / "out"),
        "bases": [{"name": f"tiny-{fam}", "model": str(models["base"]), **base_extra}],
        "controlnets": [{"name": "control", "model": str(models["controlnet"]), "conditioning": {"image": str(models["control"])}}],
        "loras": [lora or {"name": "style", "model": str(models["loras"][0])}],
        "references": [{"name": "work", "paths": [str(refs)]}],
        "prompts": [{"name": "p", "text": "a painting of a cat", "negative": "blurry"}],
        "generation": {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 2, "batch_size": 2,
                       "scheduler": "ddim" if fam == "sd" else None,
                       "sd3": {"max_sequence_length": 16}, "flux": {"max_sequence_length": 16}},
        "metrics": ["ssim", "dhash"],
        "estimator": {"method": "exact", "bootstrap": 0},
        # the family's own img2img pipeline (positive controls), kept to two images
        "controls": {"strengths": [0.5], "seeds": 1, "negatives": 1},
    }
    path = tmp / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
@pytest.mark.parametrize("family", FAMILIES)
def test_family_audit_through_the_cli(family, family_zoos, tmp_path, one_torch_thread):
    zoo = family_zoo_file(tmp_path, family_zoos[family])
    first = runner.invoke(app, ["audit", str(zoo)])
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (game,) = report["games"]
    assert game["players"] == ["control", "style"]
    assert report["generation"]["generated"] == 4 * 2

    # the positive controls ran through the family's own img2img pipeline: the copy and the non-copy differ,
    # and the copy at strength 0.5 is closer to the work than the non-copy
    cache = ImageCache(report["cache_dir"])
    ctl = game["controls"]
    (copy,) = ctl["images"]["work"]["work"]["0.5"]
    (non,) = next(v for k, v in ctl["images"]["work"].items() if k != "work")["0.5"]
    assert np.abs(cache.load(copy) - cache.load(non)).max() > 1 / 255, family
    assert set(ctl["metrics"]) == {"ssim", "dhash"} and ctl["headline"]["metric"] in game["metrics"]

    # every image key carries the family (SD1.x keys stay as they were before families existed)
    keys = game["images"]
    entry = json.loads(cache.path(keys["control+style"][0]).with_suffix(".json").read_text())
    fields = entry.get("fields", entry)
    if family == "sd":
        assert "family" not in fields
    else:
        assert fields["family"] == family and isinstance(fields["family_settings"], dict)

    # coalitions differ where players differ: adding either player changes every image
    images = {k: [cache.load(key) for key in ks] for k, ks in keys.items()}
    for without, with_ in (("", "control"), ("", "style"), ("style", "control+style"), ("control", "control+style")):
        for x, y in zip(images[without], images[with_]):
            assert np.abs(x - y).max() > 1 / 255, f"{family}: {without!r} -> {with_!r} changed nothing"

    # Shapley efficiency: the values sum to v(all) - v(empty)
    for name, m in game["metrics"].items():
        if name == "fusion":
            continue
        total = sum(v["value"] for v in m["shapley"].values())
        assert total == pytest.approx(m["coalitions"]["control+style"] - m["coalitions"][""], abs=1e-9), name

    # a rerun generates nothing and gives the same values
    assert_rerun_generates_nothing(zoo, tmp_path / "out", game, images=8)


# -- bad input: one line, exit 2, before anything loads ----------------------------------------------


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_lora_of_another_family_is_refused(family_zoos, tmp_path):
    flux_lora = {"name": "flux-style", "model": str(family_zoos["flux"]["loras"][0])}
    zoo = family_zoo_file(tmp_path, family_zoos["sdxl"], lora=flux_lora)
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "zoo.yaml:" in line and "loras[0].model" in line
    # its names (the blocks' attention) fit Chroma too, which kept Flux.1's blocks
    assert "'flux-style' is a Chroma or Flux.1 LoRA but base 'tiny-sdxl' is Stable Diffusion XL (family sdxl)" in line
    # the same through `audit`, which writes nothing
    assert one_error_line(runner.invoke(app, ["audit", str(zoo)])) == line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_controlnet_of_another_family_is_refused(family_zoos, tmp_path):
    zoo = family_zoo_file(tmp_path, family_zoos["sd3"])
    data = yaml.safe_load(zoo.read_text())
    data["controlnets"][0]["model"] = str(family_zoos["sdxl"]["controlnet"])
    zoo.write_text(yaml.safe_dump(data, sort_keys=False))
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "controlnets[0].model" in line and "is a Stable Diffusion XL ControlNet but base 'tiny-sd3' is" in line


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_unknown_family_is_refused(family_zoos, tmp_path):
    zoo = family_zoo_file(tmp_path, family_zoos["sd"], family="sd4")
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "bases[0].family" in line and "unknown family 'sd4'; expected one of sd, sdxl, sd3, flux" in line


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_declared_family_contradicting_the_model_is_refused(family_zoos, tmp_path):
    zoo = family_zoo_file(tmp_path, family_zoos["flux"], family="sdxl")
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "bases[0].family" in line and "declared family 'sdxl' but the model is Flux.1 (FluxPipeline: family flux)" in line


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_pipeline_of_no_known_family_is_refused(family_zoos, tmp_path):
    import shutil

    base = tmp_path / "odd_base"
    shutil.copytree(family_zoos["sd"]["base"], base)
    index = json.loads((base / "model_index.json").read_text())
    index["_class_name"] = "KandinskyPipeline"
    (base / "model_index.json").write_text(json.dumps(index))
    zoo = family_zoo_file(tmp_path, {**family_zoos["sd"], "base": base})
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "bases[0].model" in line and "unknown family: model_index.json names KandinskyPipeline" in line


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_flow_matching_family_refuses_an_sd_scheduler(family_zoos, tmp_path):
    zoo = family_zoo_file(tmp_path, family_zoos["flux"])
    data = yaml.safe_load(zoo.read_text())
    data["generation"]["scheduler"] = "ddim"
    zoo.write_text(yaml.safe_dump(data, sort_keys=False))
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "generation.scheduler" in line and "does not apply to Flux.1" in line


def test_family_detection_from_names():
    from copyscope.families import family_from_single_file_keys, lora_families

    # Flux.1's block names fit Chroma too (it kept the blocks) and Flux.2 (its loader converts kohya's names of the
    # original double blocks too); its modulation layers are Flux.1's alone
    assert lora_families(["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"]) == {"flux", "chroma", "flux2"}
    assert lora_families(["lora_unet_double_blocks_0_img_mod_lin.lora_down.weight"]) == {"flux"}
    assert lora_families(["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"]) == {"sdxl"}
    assert lora_families(["lora_unet_input_blocks_1_1_proj_in.lora_down.weight"]) == {"sd"}
    assert lora_families(["lora_unet_input_blocks_4_1_proj_in.lora_down.weight"]) == {"sdxl"}
    assert lora_families(["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"]) == {"sd"}
    # attention-only names of transformer_blocks fit every family whose transformer has that joint attention: SD3,
    # Flux.1, Chroma, Qwen-Image and Flux.2 (the layer check tells them apart)
    assert lora_families(["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"]) == {"sd3", "flux", "chroma", "qwenimage", "flux2"}
    # kohya names of diffusers' own transformer modules (lycoris-lora wrapping it): not SDXL's transformer_blocks_1; the
    # same families by their names (the layout check then says which loaders read kohya names: Qwen-Image's)
    assert lora_families(["lora_unet_transformer_blocks_1_attn_to_q.lora_down.weight", "lora_te2_x.lora_down.weight"]) == {
        "sd3", "flux", "chroma", "qwenimage", "flux2"}
    # Flux.1's single blocks: Chroma kept them
    assert lora_families(["lora_unet_single_transformer_blocks_0_attn_to_q.lora_down.weight"]) == {"flux", "chroma"}
    # the lora_transformer_ spelling: only Flux's loader converts it (Flux.1, Chroma)
    assert lora_families(["lora_transformer_transformer_blocks_0_attn_to_q.lora_down.weight"]) == {"flux", "chroma"}
    assert lora_families(["lora_unet_down_blocks_1_attentions_0_transformer_blocks_1_attn1_to_q.lora_down.weight"]) == {"sdxl"}
    assert lora_families(["something.else"]) is None
    assert family_from_single_file_keys(["model.diffusion_model.input_blocks.0.0.weight"]) == "sd"
    assert family_from_single_file_keys(["conditioner.embedders.1.model.ln_final.weight",
                                         "model.diffusion_model.input_blocks.0.0.weight"]) == "sdxl"
    assert family_from_single_file_keys(["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"]) == "sd3"
    assert family_from_single_file_keys(["double_blocks.0.img_attn.qkv.weight"]) == "flux"


# -- the shipped real-model audits validate and plan offline ------------------------------------------

AUDITS = REPO / "audits"


@pytest.mark.parametrize("name, family, players", [
    ("sdxl-style-audit", "sdxl", ["depth", "pixel-art", "toy-face", "ip-work"]),
    ("flux-style-audit", "flux", ["depth", "realism", "anime"]),
])
def test_shipped_real_audits_validate_and_plan_offline(name, family, players, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo = AUDITS / f"{name}.yaml"
    validated = runner.invoke(app, ["validate", str(zoo)])
    assert validated.exit_code == 0, validated.output
    assert "needed before `audit`" in validated.output  # hub models and the works are not here
    planned = runner.invoke(app, ["plan", str(zoo)])
    assert planned.exit_code == 0, planned.output
    assert f"family {family}" in planned.output
    from copyscope.config import load_zoo
    from copyscope.plan.games import make_plan

    (game,) = make_plan(load_zoo(zoo)).games
    assert game.family == family and game.names == players
    assert f"{2 ** len(players)} coalition(s)" in planned.output
