"""The Lumina-Image 2.0 family end to end: a tiny random-weight Lumina2 pipeline (two LoRAs saved by Lumina2Pipeline's
own ``save_lora_weights``) audited through the CLI (no hub, 32 px, 2 steps, 2 seeds); what it refuses before anything
loads (a ControlNet: diffusers has no Lumina2 ControlNet pipeline; positive controls: no img2img pipeline; a Z-Image
LoRA, whose transformer has Lumina 2's block names but not its modules, and a Lumina 2 LoRA on Z-Image: diffusers
raises on both; a size its pipeline rejects; a single-file base; settings out of range), and the shipped real-model
zoo, which validates and plans offline."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from copyscope.cli import app

from helpers.families import assert_rerun_generates_nothing, assert_sound_family_audit, audit_two_players
from helpers.families import edit_zoo, family_zoo_file, one_error_line
from helpers.paths import REPO

runner = CliRunner()
# the prompt follows the pipeline's system prompt (about 30 tokens of the tiny tokenizer): 64 keeps the prompt
GENERATION = {"resolution": 32, "steps": 2, "guidance": 4.0, "seeds": 2, "batch_size": 2,
              "lumina2": {"max_sequence_length": 64, "cfg_normalization": True, "cfg_trunc_ratio": 1.0, "system_prompt": None}}


@pytest.fixture(scope="module")
def zoos(tmp_path_factory) -> dict:
    from copyscope.demo.tiny_families import save_tiny_family_zoo

    root = tmp_path_factory.mktemp("lumina2_models")
    return {"lumina2": save_tiny_family_zoo(root / "lumina2", "lumina2", seed=0, n_loras=2),
            "zimage": save_tiny_family_zoo(root / "zimage", "zimage", seed=0, n_loras=1)}


def zoo_file(tmp: Path, models: dict, *, loras: list | None = None, controlnets: list | None = None, **top) -> Path:
    return family_zoo_file(tmp, models, GENERATION, loras=loras, controlnets=controlnets, negative='blurry', **top)


@pytest.mark.slow
def test_lumina2_audit_through_the_cli(zoos, tmp_path, one_torch_thread):
    zoo = zoo_file(tmp_path, zoos["lumina2"])
    output, report, game, cache = audit_two_players(zoo, ["style", "style2"])

    # its name and settings in every image key, every player changing every image, Shapley efficiency
    assert_sound_family_audit(game, cache, "lumina2", GENERATION["lumina2"], (32, 32, 3))

    # diffusers has no Lumina2 img2img pipeline: no positive controls, said so
    assert "controls" not in game
    assert "positive controls: none (Lumina-Image 2.0 has no img2img pipeline in diffusers)" in output

    # a rerun generates nothing and gives the same values
    assert_rerun_generates_nothing(zoo, tmp_path / "out", game, images=8)


@pytest.mark.slow
def test_lumina2_refuses_a_controlnet_and_positive_controls(zoos, tmp_path):
    z = zoos["zimage"]
    cn = [{"name": "control", "model": str(z["controlnet"]), "conditioning": {"image": str(z["control"])}}]
    line = one_error_line(runner.invoke(app, ["validate", str(zoo_file(tmp_path / "cn", zoos["lumina2"], controlnets=cn))]))
    assert "controlnets[0]" in line
    assert "base 'tiny-lumina2' is Lumina-Image 2.0, for which diffusers has no ControlNet pipeline; expected no controlnets" in line
    asked = zoo_file(tmp_path / "asked", zoos["lumina2"], controls={"positive": True})
    line = one_error_line(runner.invoke(app, ["validate", str(asked)]))
    assert "controls.positive" in line and "Lumina-Image 2.0, for which diffusers has no img2img pipeline" in line


@pytest.mark.slow
def test_z_image_and_lumina2_loras_are_refused_on_each_other(zoos, tmp_path):
    """Z-Image's transformer has Lumina 2's block names (layers.N, noise_refiner, context_refiner) but other modules in
    them: diffusers raises on either file in the other's pipeline (no target module found); copyscope refuses both."""
    zoo = zoo_file(tmp_path / "z", zoos["lumina2"], loras=[{"name": "style", "model": str(zoos["zimage"]["loras"][0])}])
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "loras[0].model" in line and "'style' is a Z-Image LoRA but base 'tiny-lumina2' is Lumina-Image 2.0" in line, line
    zoo = zoo_file(tmp_path / "l", zoos["zimage"], loras=[{"name": "style", "model": str(zoos["lumina2"]["loras"][0])}])
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "loras[0].model" in line and "'style' is a Lumina-Image 2.0 LoRA but base 'tiny-zimage' is Z-Image" in line, line


@pytest.mark.slow
def test_lumina2_refuses_sizes_settings_and_single_files(zoos, tmp_path):
    from safetensors.torch import save_file
    import torch

    odd = edit_zoo(zoo_file(tmp_path / "odd", zoos["lumina2"]), lambda d: d["generation"].update(resolution=40))
    line = one_error_line(runner.invoke(app, ["validate", str(odd)]))
    assert "Lumina-Image 2.0 takes sides that are multiples of 16" in line, line
    bad = edit_zoo(zoo_file(tmp_path / "bad", zoos["lumina2"]), lambda d: d["generation"]["lumina2"].update(cfg_trunc_ratio=1.5))
    line = one_error_line(runner.invoke(app, ["validate", str(bad)]))
    assert "generation.lumina2.cfg_trunc_ratio" in line, line
    # a ComfyUI-style single file of Lumina 2's original names: told from Z-Image's, refused (no from_single_file)
    single = tmp_path / "lumina2.safetensors"
    save_file({"model.diffusion_model.cap_embedder.0.weight": torch.zeros(2),
               "model.diffusion_model.layers.0.adaLN_modulation.1.weight": torch.zeros(2, 2)}, str(single))
    sf = edit_zoo(zoo_file(tmp_path / "sf", zoos["lumina2"]), lambda d: d["bases"][0].update(model=str(single)))
    line = one_error_line(runner.invoke(app, ["validate", str(sf)]))
    assert "bases[0].model" in line and "Lumina2Pipeline (Lumina-Image 2.0) cannot load single files" in line, line


def test_shipped_lumina2_audit_validates_and_plans_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo = REPO / "audits" / "lumina2-style-audit.yaml"
    validated = runner.invoke(app, ["validate", str(zoo)])
    assert validated.exit_code == 0, validated.output
    assert "needed before `audit`" in validated.output  # the hub model and the work are not here
    planned = runner.invoke(app, ["plan", str(zoo)])
    assert planned.exit_code == 0, planned.output
    assert "family lumina2" in planned.output
    from copyscope.config import load_zoo
    from copyscope.plan.games import make_plan

    (game,) = make_plan(load_zoo(zoo)).games
    assert game.family == "lumina2"
