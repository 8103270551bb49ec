"""The memory plan: the pre-flight estimate against the real parameter counts of tiny pipelines, the plans' order,
the refusal naming a plan that fits, the settings in the image key, and one-line errors for what a machine lacks."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.common.errors import CopyscopeError
from copyscope.config import load_zoo
from copyscope.config.generation import QuantizeSettings
from copyscope.plan.games import make_plan
from copyscope.plan.memory import GIB, check_fits, game_sizes, parse_size, plan_bytes, plans_that_fit
from helpers.cli_errors import assert_one_line_error
from helpers.zoo import make_zoo_file

runner = CliRunner()


def _zoo(tmp_path, tiny_models, **generation):
    gen = {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 2, "batch_size": 2, "scheduler": "ddim", **generation}
    return make_zoo_file(tmp_path, tiny_models, loras=2, controlnet=True, generation=gen, metrics=["phash"])


def test_the_estimate_counts_every_parameter_of_the_tiny_models(tiny_models, tmp_path):
    from diffusers import ControlNetModel, StableDiffusionPipeline
    from safetensors import safe_open

    zoo = load_zoo(_zoo(tmp_path, tiny_models))
    (game,) = make_plan(zoo).games
    sizes = game_sizes(zoo, game)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_models["base"]), safety_checker=None)
    real = {"denoiser": pipe.unet, "text_encoder": pipe.text_encoder, "vae": pipe.vae}
    for comp, module in real.items():  # from headers alone, the same count as the loaded modules (within 10%)
        n = sum(p.numel() for p in module.parameters())
        assert sizes.base[comp] == pytest.approx(n, rel=0.10), comp
    cn = ControlNetModel.from_pretrained(str(tiny_models["controlnet"]))
    assert sizes.controlnets["depth"] == pytest.approx(sum(p.numel() for p in cn.parameters()), rel=0.10)
    for i, path in enumerate(tiny_models["loras"][:2]):
        with safe_open(str(path), "pt") as f:
            assert sizes.loras[f"lora{i}"] == sum(f.get_tensor(k).numel() for k in f.keys())
    assert not sizes.not_counted and sizes.nominal is None


def test_plans_order_and_quantisation_shrinks_the_denoiser(tiny_models, tmp_path):
    zoo = load_zoo(_zoo(tmp_path, tiny_models))
    (game,) = make_plan(zoo).games
    sizes = game_sizes(zoo, game)
    none_q = QuantizeSettings()
    peaks = [plan_bytes(sizes, p, "float16", none_q) for p in ("none", "model", "sequential")]
    assert peaks[0] > peaks[1] > peaks[2]
    assert plan_bytes(sizes, "none", "float16", QuantizeSettings(denoiser="nf4")) < peaks[0]
    assert plan_bytes(sizes, "none", "float32", none_q) > peaks[0]
    weights = (sum(sizes.base.values()) + sum(sizes.controlnets.values()) + sum(sizes.loras.values())) * 2
    assert peaks[0] > weights  # the weights and a margin


def test_a_hub_base_not_here_is_counted_with_its_familys_published_sizes(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _zoo(tmp_path, tiny_models)
    data = yaml.safe_load(path.read_text())
    data["bases"][0] = {"name": "flux-dev", "model": "black-forest-labs/FLUX.1-dev", "family": "flux"}
    data["controlnets"], data["generation"]["scheduler"] = [], None
    data["loras"] = [{"name": "style", "model": "XLabs-AI/flux-RealismLora", "weight_name": "lora.safetensors"}]
    path.write_text(yaml.safe_dump(data))
    zoo = load_zoo(path)
    (game,) = make_plan(zoo).games
    sizes = game_sizes(zoo, game)
    assert sizes.nominal == "FLUX.1-dev" and sizes.not_counted == ["style"]
    rows = {(r["offload"], r["quantize"]): r for r in plans_that_fit(zoo, game, 24 * GIB)}
    assert not rows[("none", "as configured")]["fits"] and rows[("none", "denoiser nf4")]["fits"]
    assert all(r["lower_bound"] for r in rows.values())  # a LoRA not counted: every estimate is a lower bound
    assert rows[("none", "as configured")]["gib"] > 11.9e9 * 2 / GIB  # at least the transformer in bf16


def test_a_hub_base_of_a_family_without_published_sizes_is_not_counted(tiny_models, tmp_path, monkeypatch):
    import dataclasses

    from copyscope.families import FAMILIES

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(FAMILIES, "sana", dataclasses.replace(FAMILIES["sana"], nominal=None))
    path = _zoo(tmp_path, tiny_models)
    data = yaml.safe_load(path.read_text())
    data["bases"][0] = {"name": "sana", "model": "Efficient-Large-Model/Sana_1600M_1024px_diffusers", "family": "sana"}
    data["controlnets"], data["loras"], data["generation"]["scheduler"] = [], [], None
    path.write_text(yaml.safe_dump(data))
    zoo = load_zoo(path)
    (game,) = make_plan(zoo).games
    sizes = game_sizes(zoo, game)
    assert sizes.nominal is None and sizes.not_counted == ["sana"] and not sizes.base
    assert all(r["lower_bound"] for r in plans_that_fit(zoo, game, 24 * GIB))


def test_a_plan_that_does_not_fit_is_refused_with_one_that_does(tiny_models, tmp_path):
    zoo = load_zoo(_zoo(tmp_path, tiny_models))
    (game,) = make_plan(zoo).games
    rows = {r["offload"]: r["gib"] for r in plans_that_fit(zoo, game, 1e12) if r["quantize"] == "as configured"}
    free = (rows["model"] + rows["none"]) / 2 * GIB  # room for model offload, not for everything at once
    with pytest.raises(CopyscopeError, match=r"generation\.memory: base 'tiny-sd' needs about .* GiB of GPU memory "
                                             r"with offload: none but cuda has .* GiB free; expected generation\.memory "
                                             r"with offload: model"):
        check_fits(zoo, game, free, "cuda")
    check_fits(zoo, game, rows["none"] * GIB + 1, "cuda")  # fits: no error


@pytest.mark.parametrize("text, value", [("24GB", 24 * GIB), ("80 GiB", 80 * GIB), ("512mb", 512 * 1024**2), ("1.5", 1.5 * GIB)])
def test_sizes_parse(text, value):
    assert parse_size(text) == value


def test_the_plan_command_prints_what_fits_and_refuses_a_bad_size(tiny_models, tmp_path):
    zoo = _zoo(tmp_path, tiny_models)
    r = runner.invoke(app, ["plan", str(zoo), "--gpu-memory", "24GB", "--images-per-second", "2"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "GPU memory, base tiny-sd, on a 24 GiB card" in said and "sequential" in said and "GPU-hour(s)" in said
    assert_one_line_error(runner.invoke(app, ["plan", str(zoo), "--gpu-memory", "lots"]),
                          r"--gpu-memory: 'lots' is not a memory size; expected e\.g\. 24GB")


def test_memory_settings_that_change_pixels_are_in_the_image_key_only_when_set(tiny_models, tmp_path):
    from copyscope.generate import CoalitionEngine

    keys = {}
    for name, memory in (("default", {}), ("tiled", {"vae_tiling": True}), ("offload", {"offload": "model"})):
        sub = tmp_path / name
        sub.mkdir()
        zoo = load_zoo(_zoo(sub, tiny_models, memory=memory))
        plan = make_plan(zoo)
        keys[name] = CoalitionEngine(zoo, plan.games[0]).image_fields((False, True, False), plan.items[0])
    assert "memory" not in keys["default"] and "memory" not in keys["offload"]  # offloading keeps the arithmetic
    assert keys["tiled"]["memory"] == {"vae_tiling": True}
    assert {k: v for k, v in keys["tiled"].items() if k != "memory"} == keys["default"]


def test_unknown_values_and_missing_backends_are_one_line(tiny_models, tmp_path):
    bad = _zoo(tmp_path, tiny_models, memory={"offload": "disk"})
    assert_one_line_error(runner.invoke(app, ["validate", str(bad)]), r"generation\.memory\.offload: .*'none', 'model' or 'sequential'")
    quant = _zoo(tmp_path, tiny_models, memory={"quantize": {"denoiser": "nf4"}})
    r = runner.invoke(app, ["validate", str(quant)])  # validate notes it: the audit may run on another machine
    said = " ".join(r.output.split())  # the console wraps long lines
    assert r.exit_code == 0 and "nf4 quantisation needs the bitsandbytes package: pip install 'copyscope[quantize]'" in said
    assert_one_line_error(runner.invoke(app, ["audit", str(quant)]),
                          r"generation\.memory\.quantize\.denoiser: nf4 quantisation needs the bitsandbytes package")
    off = _zoo(tmp_path, tiny_models, memory={"offload": "model"}, device="cpu")
    assert_one_line_error(runner.invoke(app, ["audit", str(off)]),
                          r"generation\.memory\.offload: offload: model moves weights between CPU and a CUDA device; "
                          r"this audit runs on cpu; expected offload: none")


@pytest.mark.slow
def test_an_audit_with_vae_tiling_and_slicing_runs_and_keys_its_images(tiny_models, tmp_path):
    import json

    from copyscope.generate.cache import ImageCache

    zoo = _zoo(tmp_path, tiny_models, memory={"vae_tiling": True, "vae_slicing": True})
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    key = report["games"][0]["images"][""][0]
    sidecar = json.loads(ImageCache(report["cache_dir"]).path(key).with_suffix(".json").read_text())
    assert sidecar["fields"]["memory"] == {"vae_tiling": True, "vae_slicing": True}
