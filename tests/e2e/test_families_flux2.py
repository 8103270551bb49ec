"""The Flux.2 family end to end: a tiny random-weight Flux.2 pipeline (two LoRAs saved by Flux2Pipeline's own
``save_lora_weights``) audited through the CLI (no hub, 32 px, 2 steps, 2 seeds); what it refuses before anything
loads (a ControlNet: diffusers has no Flux.2 ControlNet pipeline; a Flux.1 LoRA naming Flux.1's single blocks; a size
its pipeline would resize), and the shipped real-model zoo, which validates and plans offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from copyscope.cli import app

from helpers.families import assert_rerun_generates_nothing, assert_sound_family_audit, audit_two_players, family_zoo_file, one_error_line
from helpers.paths import REPO

runner = CliRunner()
# Flux.2's prompt follows its system message (about 30 tokens of the tiny tokenizer): 64 keeps the prompt
GENERATION = {"resolution": 32, "steps": 2, "guidance": 4.0, "seeds": 2, "batch_size": 2, "flux2": {"max_sequence_length": 64}}


@pytest.fixture(scope="module")
def zoos(tmp_path_factory) -> dict:
    from copyscope.demo.tiny_families import save_tiny_family_zoo

    root = tmp_path_factory.mktemp("flux2_models")
    return {"flux2": save_tiny_family_zoo(root / "flux2", "flux2", seed=0, n_loras=2),
            "flux": save_tiny_family_zoo(root / "flux", "flux", seed=0, n_loras=1)}


def zoo_file(tmp: Path, models: dict, *, loras: list | None = None, controlnets: list | None = None, **top) -> Path:
    return family_zoo_file(tmp, models, GENERATION, loras=loras, controlnets=controlnets, **top)


@pytest.mark.slow
def test_flux2_audit_through_the_cli(zoos, tmp_path, one_torch_thread):
    zoo = zoo_file(tmp_path, zoos["flux2"])
    output, report, game, cache = audit_two_players(zoo, ["style", "style2"])

    # its name and settings in every image key, every player changing every image, Shapley efficiency
    assert_sound_family_audit(game, cache, "flux2", GENERATION["flux2"], (32, 32, 3))

    # diffusers has no Flux.2 img2img pipeline: no positive controls, said so
    assert "controls" not in game
    assert "positive controls: none (Flux.2 has no img2img pipeline in diffusers)" in output

    # a rerun generates nothing and gives the same values
    assert_rerun_generates_nothing(zoo, tmp_path / "out", game, images=8)


@pytest.mark.slow
def test_flux2_refuses_a_controlnet(zoos, tmp_path):
    cn = [{"name": "control", "model": str(zoos["flux"]["controlnet"]), "conditioning": {"image": str(zoos["flux"]["control"])}}]
    zoo = zoo_file(tmp_path, zoos["flux2"], controlnets=cn)
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "controlnets[0]" in line
    assert "base 'tiny-flux2' is Flux.2, for which diffusers has no ControlNet pipeline; expected no controlnets" in line


@pytest.mark.slow
def test_flux2_refuses_a_flux1_lora_and_a_size_it_would_resize(zoos, tmp_path):
    # the tiny Flux.1 LoRA names Flux.1's single blocks' to_q / to_k / to_v, which Flux.2 fuses
    zoo = zoo_file(tmp_path, zoos["flux2"], loras=[{"name": "style", "model": str(zoos["flux"]["loras"][0])}])
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "loras[0]" in line and "base 'tiny-flux2' is Flux.2" in line, line
    odd = zoo_file(tmp_path, zoos["flux2"])
    data = yaml.safe_load(odd.read_text())
    data["generation"]["resolution"] = 40
    odd.write_text(yaml.safe_dump(data, sort_keys=False))
    line = one_error_line(runner.invoke(app, ["validate", str(odd)]))
    assert "Flux.2 takes sides that are multiples of 16" in line, line


def test_flux2_lora_names():
    from copyscope.families import lora_families

    # Flux.2's own modules: its single blocks' fused projection, its shared modulations, its feed-forwards
    for module in ("single_transformer_blocks.0.attn.to_qkv_mlp_proj", "double_stream_modulation_img.linear",
                   "single_stream_modulation.linear", "transformer_blocks.0.ff.linear_in",
                   "time_guidance_embed.guidance_embedder.linear_1"):
        assert lora_families([f"transformer.{module}.lora_A.weight"]) == {"flux2"}, module
    # the joint attention of its double blocks: every family that has it (the layer check tells them apart)
    assert "flux2" in lora_families(["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"])
    # Flux.1's single blocks' separate projections and its feed-forwards' net: not Flux.2's
    for module in ("single_transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.proj_mlp",
                   "single_transformer_blocks.0.proj_out", "transformer_blocks.0.ff.net.0.proj"):
        assert "flux2" not in lora_families([f"transformer.{module}.lora_A.weight"]), module


def test_flux2_settings_and_call_arguments():
    from copyscope.config.generation import GenerationSpec
    from copyscope.families import FAMILIES, canonical_family

    assert canonical_family("Flux.2") == "flux2" and canonical_family("FLUX-2") == "flux2"
    fam = FAMILIES["flux2"]
    gen = GenerationSpec.model_validate({"flux2": {"max_sequence_length": 256}})
    assert fam.call_kwargs(gen) == {"max_sequence_length": 256}
    assert not fam.takes_negative_prompt(gen) and not fam.controlnet and fam.img2img is None


def test_shipped_flux2_audit_validates_and_plans_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo = REPO / "audits" / "flux2-style-audit.yaml"
    validated = runner.invoke(app, ["validate", str(zoo)])
    assert validated.exit_code == 0, validated.output
    assert "needed before `audit`" in validated.output  # the hub model and the work are not here
    planned = runner.invoke(app, ["plan", str(zoo)])
    assert planned.exit_code == 0, planned.output
    assert "family flux2" in planned.output
    from copyscope.config import load_zoo
    from copyscope.plan.games import make_plan

    (game,) = make_plan(load_zoo(zoo)).games
    assert game.family == "flux2" and game.names == ["oil", "ukiyo-e", "pixel"]
    assert "8 coalition(s)" in planned.output
