"""The Lumina-Image 2.0 family end to end: a tiny random-weight Lumina2 pipeline (two LoRAs saved by Lumina2Pipeline's
own ``save_lora_weights``) audited through the CLI (no hub, 32 px, 2 steps, 2 seeds); what it refuses before anything
loads (a ControlNet: diffusers has no Lumina2 ControlNet pipeline; positive controls: no img2img pipeline; a Z-Image
LoRA, whose transformer has Lumina 2's block names but not its modules, and a Lumina 2 LoRA on Z-Image: diffusers
raises on both; a size its pipeline rejects; a single-file base; settings out of range), and the shipped real-model
zoo, which validates and plans offline."""

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
    fam = models["family"]
    if loras is None:
        loras = [{"name": "style" if i == 0 else f"style{i + 1}", "model": str(p)} for i, p in enumerate(models["loras"])]
    data = {
        "name": f"tiny-{fam}",
        "output": str(tmp / "out"),
        "bases": [{"name": f"tiny-{fam}", "model": str(models["base"])}],
        **({"controlnets": controlnets} if controlnets else {}),
        "loras": loras,
        "references": [{"name": "work", "paths": [str(write_reference_images(tmp / "refs"))]}],
        "prompts": [{"name": "p", "text": "a painting of a cat", "negative": "blurry"}],
        "generation": json.loads(json.dumps(GENERATION)),
        "metrics": ["ssim", "dhash"],
        "estimator": {"method": "exact", "bootstrap": 0},
        **top,
    }
    path = tmp / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _edit(path: Path, change) -> Path:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_lumina2_audit_through_the_cli(zoos, tmp_path, one_torch_thread):
    zoo = zoo_file(tmp_path, zoos["lumina2"])
    first = runner.invoke(app, ["audit", str(zoo)])
    assert first.exit_code == 0, first.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (game,) = report["games"]
    players = ["style", "style2"]
    assert game["players"] == players
    assert report["generation"]["generated"] == 4 * 2
    cache = ImageCache(report["cache_dir"])

    # the family and its settings are in every image key (the sidecar JSON of the cache)
    full = "+".join(players)
    entry = json.loads(cache.path(game["images"][full][0]).with_suffix(".json").read_text())
    fields = entry.get("fields", entry)
    assert fields["family"] == "lumina2" and fields["family_settings"] == GENERATION["lumina2"], fields

    # coalitions differ where players differ: adding either LoRA changes every image
    images = {k: [cache.load(key) for key in ks] for k, ks in game["images"].items()}
    a, b = players
    for without, with_ in (("", a), ("", b), (b, full), (a, full)):
        for x, y in zip(images[without], images[with_]):
            assert x.shape == (32, 32, 3)
            assert np.abs(x - y).max() > 1 / 255, f"{without!r} -> {with_!r} changed nothing"

    # Shapley efficiency: the values sum to v(all) - v(empty)
    for name, m in game["metrics"].items():
        total = sum(v["value"] for v in m["shapley"].values())
        assert total == pytest.approx(m["coalitions"][full] - m["coalitions"][""], abs=1e-9), name

    # diffusers has no Lumina2 img2img pipeline: no positive controls, said so
    assert "controls" not in game
    assert "positive controls: none (Lumina-Image 2.0 has no img2img pipeline in diffusers)" in first.output

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

    odd = _edit(zoo_file(tmp_path / "odd", zoos["lumina2"]), lambda d: d["generation"].update(resolution=40))
    line = one_error_line(runner.invoke(app, ["validate", str(odd)]))
    assert "Lumina-Image 2.0 takes sides that are multiples of 16" in line, line
    bad = _edit(zoo_file(tmp_path / "bad", zoos["lumina2"]), lambda d: d["generation"]["lumina2"].update(cfg_trunc_ratio=1.5))
    line = one_error_line(runner.invoke(app, ["validate", str(bad)]))
    assert "generation.lumina2.cfg_trunc_ratio" in line, line
    # a ComfyUI-style single file of Lumina 2's original names: told from Z-Image's, refused (no from_single_file)
    single = tmp_path / "lumina2.safetensors"
    save_file({"model.diffusion_model.cap_embedder.0.weight": torch.zeros(2),
               "model.diffusion_model.layers.0.adaLN_modulation.1.weight": torch.zeros(2, 2)}, str(single))
    sf = _edit(zoo_file(tmp_path / "sf", zoos["lumina2"]), lambda d: d["bases"][0].update(model=str(single)))
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
