"""The Chroma and Sana families end to end: a tiny random-weight Chroma pipeline (two LoRAs) and Sana pipeline (a
LoRA and a ControlNet), audited through the CLI (no hub, 32 px, 2 steps, 2 seeds); what each family refuses
before anything loads (a ControlNet on Chroma, two ControlNets or positive controls on Sana, a size Sana cannot
make), which LoRAs of the neighbouring families fit (a Flux.1 LoRA of the blocks' attention on Chroma: diffusers
attaches every layer; one with Flux.1's modulation layers: diffusers drops them, copyscope refuses it), and the
shipped real-model zoos, which validate and plan offline."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from copyscope.cli import app

from helpers.families import assert_rerun_generates_nothing, assert_sound_family_audit, audit_two_players
from helpers.families import edit_zoo, family_zoo_file, one_error_line
from helpers.paths import REPO

runner = CliRunner()
GENERATION = {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 2, "batch_size": 2,
              "chroma": {"max_sequence_length": 16},
              # the binning off: on, a 32-px image is made at 1024 px; the pipeline's instruction prefix on (its default)
              "sana": {"max_sequence_length": 16, "use_resolution_binning": False, "complex_human_instruction": True}}


@pytest.fixture(scope="module")
def zoos(tmp_path_factory) -> dict:
    from copyscope.demo.tiny_families import save_tiny_family_zoo

    root = tmp_path_factory.mktemp("chroma_sana_models")
    return {"chroma": save_tiny_family_zoo(root / "chroma", "chroma", seed=0, n_loras=2),
            "sana": save_tiny_family_zoo(root / "sana", "sana", seed=0, n_loras=1)}


def zoo_file(tmp: Path, models: dict, *, loras: list | None = None, controlnets: list | None = None, **top) -> Path:
    if controlnets is None:  # the tiny zoo's folder holds the ControlNet in controlnet/, as a pipeline repo does
        controlnets = [{"name": "control", "model": str(models["controlnet"].parent), "subfolder": "controlnet",
                        "conditioning": {"image": str(models["control"])}}] if models["controlnet"] else []
    # the family's img2img (Chroma) kept small
    top = {"controls": {"strengths": [0.5], "seeds": 1, "negatives": 1}, **top}
    return family_zoo_file(tmp, models, GENERATION, loras=loras, controlnets=controlnets, negative="blurry", **top)


# -- audits through the CLI ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family, players", [("chroma", ["style", "style2"]), ("sana", ["control", "style"])])
def test_family_audit_through_the_cli(family, players, zoos, tmp_path, one_torch_thread):
    zoo = zoo_file(tmp_path, zoos[family])
    output, report, game, cache = audit_two_players(zoo, players)

    # its name and settings in every image key (Sana's binning off), every player changing every image, efficiency
    assert_sound_family_audit(game, cache, family, GENERATION[family], (32, 32, 3))

    if family == "chroma":  # the positive controls ran through ChromaImg2ImgPipeline, at the generation size
        ctl = game["controls"]
        (copy,) = ctl["images"]["work"]["work"]["0.5"]
        (non,) = next(v for k, v in ctl["images"]["work"].items() if k != "work")["0.5"]
        assert cache.load(copy).shape == (32, 32, 3)
        assert np.abs(cache.load(copy) - cache.load(non)).max() > 1 / 255
    else:  # diffusers has no Sana img2img pipeline: no positive controls, said so
        assert "controls" not in game
        assert "positive controls: none (Sana has no img2img pipeline in diffusers)" in output

    # a rerun generates nothing and gives the same values
    assert_rerun_generates_nothing(zoo, tmp_path / "out", game, images=8)


# -- refused before anything loads: one line, exit 2 -----------------------------------------------------


@pytest.mark.slow
def test_chroma_refuses_a_controlnet(zoos, tmp_path):
    cn = [{"name": "control", "model": str(zoos["sana"]["controlnet"]), "conditioning": {"image": str(zoos["sana"]["control"])}}]
    zoo = zoo_file(tmp_path, zoos["chroma"], controlnets=cn)
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "controlnets[0]" in line
    assert "base 'tiny-chroma' is Chroma, for which diffusers has no ControlNet pipeline; expected no controlnets" in line


@pytest.mark.slow
def test_sana_refusals(zoos, tmp_path):
    models = zoos["sana"]
    cn = {"model": str(models["controlnet"]), "conditioning": {"image": str(models["control"])}}
    two = zoo_file(tmp_path / "two", models, controlnets=[{"name": "a", **cn}, {"name": "b", **cn}])
    line = one_error_line(runner.invoke(app, ["validate", str(two)]))
    assert "controlnets[1]" in line
    assert "whose diffusers ControlNet pipeline takes at most 1 ControlNet(s) at once, but the zoo lists 2" in line

    asked = zoo_file(tmp_path / "asked", models, controls={"positive": True})
    line = one_error_line(runner.invoke(app, ["validate", str(asked)]))
    assert "controls.positive" in line and "Sana, for which diffusers has no img2img pipeline" in line

    odd = edit_zoo(zoo_file(tmp_path / "odd", models), lambda d: d["generation"].update(resolution=40))
    line = one_error_line(runner.invoke(app, ["validate", str(odd)]))
    assert "generation.resolution" in line and "Sana generates sizes divisible by 32" in line
    # with the binning on (diffusers' default) any size is made (at the nearest bin, then resized)
    binned = edit_zoo(odd, lambda d: d["generation"]["sana"].update(use_resolution_binning=True))
    assert runner.invoke(app, ["validate", str(binned)]).exit_code == 0


@pytest.mark.slow
def test_a_flux_lora_is_refused_on_sana(zoos, tmp_path):
    from copyscope.demo.tiny_families import tiny_family_lora, tiny_family_pipeline

    flux_lora = tiny_family_lora("flux", tiny_family_pipeline("flux", 0), tmp_path / "flux" / "lora.safetensors", 1)
    zoo = zoo_file(tmp_path, zoos["sana"], loras=[{"name": "flux-style", "model": str(flux_lora)}])
    line = one_error_line(runner.invoke(app, ["validate", str(zoo)]))
    assert "loras[0].model" in line and "'flux-style' is a Chroma or Flux.1 LoRA but base 'tiny-sana' is Sana" in line


# -- Flux.1 LoRAs on a Chroma base: copyscope agrees with what diffusers does ----------------------------


def _diffusers_load(base: Path, lora: Path) -> tuple[int, list[str]]:
    """(adapter layers diffusers attached, its warnings) for a LoRA file loaded into the base by path."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as dlogging

    pipe = DiffusionPipeline.from_pretrained(str(base))
    level = dlogging.get_verbosity()
    dlogging.set_verbosity_warning()  # an audit run before may have quieted diffusers
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    for name in ("diffusers", "peft"):
        logging.getLogger(name).addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="x")
    finally:
        dlogging.set_verbosity(level)
        for name in ("diffusers", "peft"):
            logging.getLogger(name).removeHandler(handler)
    records += [str(w.message) for w in caught]
    attached = sum(1 for m in pipe.transformer.modules() if "x" in (getattr(m, "lora_A", None) or {}))
    return attached, [r for r in records if re.search(r"unexpected keys|missing", r)]


@pytest.mark.slow
def test_flux_loras_on_a_chroma_base(zoos, tmp_path, one_torch_thread):
    import copy

    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file

    from copyscope.demo.tiny_families import tiny_family_lora, tiny_family_pipeline

    base = zoos["chroma"]["base"]
    flux = tiny_family_pipeline("flux", 0)
    # a Flux.1 LoRA of the blocks' attention (the layers Chroma kept, of the same widths here as in the real models):
    # diffusers attaches every layer, and copyscope accepts it (its names fit both families, its layers fit the base)
    attention = tiny_family_lora("flux", flux, tmp_path / "attention" / "lora.safetensors", 1)
    n_layers = len({k.rsplit(".lora_", 1)[0] for k in load_file(str(attention))})
    attached, warned = _diffusers_load(base, attention)
    assert attached == n_layers and not warned
    ok = zoo_file(tmp_path / "ok", zoos["chroma"], loras=[{"name": "flux-style", "model": str(attention)}])
    assert runner.invoke(app, ["validate", str(ok)]).exit_code == 0

    # a Flux.1 LoRA on every Linear, Flux.1's modulation layers too: diffusers attaches what Chroma has and warns
    # that the rest are unexpected (the LoRA would apply in part); copyscope refuses it before anything loads
    den = copy.deepcopy(flux.transformer)
    den.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                               target_modules=[n for n, m in den.named_modules() if isinstance(m, torch.nn.Linear)]))
    (tmp_path / "every").mkdir()
    type(flux).save_lora_weights(str(tmp_path / "every"), transformer_lora_layers=get_peft_model_state_dict(den),
                                 weight_name="lora.safetensors")
    every = tmp_path / "every" / "lora.safetensors"
    n_layers = len({k.rsplit(".lora_", 1)[0] for k in load_file(str(every))})
    attached, warned = _diffusers_load(base, every)
    assert attached < n_layers and warned and "norm1.linear" in warned[0]
    refused = zoo_file(tmp_path / "refused", zoos["chroma"], loras=[{"name": "flux-every", "model": str(every)}])
    line = one_error_line(runner.invoke(app, ["validate", str(refused)]))
    assert "loras[0].model" in line and "'flux-every' is a Flux.1 LoRA but base 'tiny-chroma' is Chroma" in line
    # the layer check alone says the same of it (a file whose names said nothing would be judged by it)
    from copyscope.modelfiles.lora_fit import lora_misfit

    why = lora_misfit(base, every)
    assert why is not None and "name no layer of the base" in why, why
    assert lora_misfit(base, attention) is None and lora_misfit(base, zoos["chroma"]["loras"][0]) is None


# -- names: which families a LoRA / a checkpoint belongs to -------------------------------------------------


def test_family_detection_from_names():
    from copyscope.families import controlnet_family, family_from_single_file_keys, lora_families

    # Chroma keeps Flux.1's blocks: their names fit both; Flux.1's modulation layers fit Flux.1 only
    assert lora_families(["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"]) == {"flux", "chroma"}
    # the blocks' joint attention: Qwen-Image's transformer has it too
    assert lora_families(["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"]) == {"sd3", "flux", "chroma", "qwenimage", "flux2"}
    assert lora_families(["transformer.transformer_blocks.0.attn.to_q.lora_A.weight",
                          "transformer.transformer_blocks.0.norm1.linear.lora_A.weight"]) == {"sd3", "flux"}
    assert lora_families(["transformer.single_transformer_blocks.0.norm.linear.lora_A.weight"]) == {"flux"}
    assert lora_families(["transformer.distilled_guidance_layer.in_proj.lora_A.weight"]) == {"chroma"}
    assert lora_families(["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"]) == {"flux", "chroma", "flux2"}
    assert lora_families(["lora_unet_double_blocks_0_img_mod_lin.lora_down.weight"]) == {"flux"}
    # the original names in peft's spelling (ai-toolkit's): only Flux.2's loader converts them; Flux's (Flux.1, Chroma)
    # leaves them as they are and attaches none (tests/e2e/test_lora_producers_flux2_original.py)
    assert lora_families(["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight"]) == {"flux2"}
    assert lora_families(["diffusion_model.distilled_guidance_layer.in_proj.lora_A.weight",
                          "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight"]) is None
    assert lora_families(["lora_transformer_single_transformer_blocks_0_attn_to_q.lora_down.weight"]) == {"flux", "chroma"}
    # Sana's blocks: self- and cross-attention (attn1 / attn2), a convolutional feed-forward
    assert lora_families(["transformer.transformer_blocks.0.attn1.to_q.lora_A.weight"]) == {"sana"}
    assert lora_families(["transformer.transformer_blocks.0.ff.conv_inverted.lora_A.weight"]) == {"sana"}
    assert lora_families(["transformer.transformer_blocks.0.attn2.to_q.lora_A.weight"]) == {"sd3", "sana"}
    # a top-level proj_out: every transformer family's but Z-Image's (whose final layer is all_final_layer)
    assert lora_families(["transformer.proj_out.lora_A.weight"]) == {"sd3", "flux", "chroma", "qwenimage", "sana", "flux2", "wan"}
    assert lora_families(["transformer.transformer_blocks.0.attn1.to_q.lora_A.weight",
                          "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"]) is None  # no family's
    assert family_from_single_file_keys(["distilled_guidance_layer.in_proj.weight", "double_blocks.0.img_attn.qkv.weight"]) == "chroma"
    assert controlnet_family({"_class_name": "SanaControlNetModel"}) == "sana"


def test_lora_layouts_of_the_new_families():
    from copyscope.modelfiles.lora_layouts import lora_unsupported

    peft_sana = {"transformer.transformer_blocks.0.attn1.to_q.lora_A.weight": {"shape": [4, 8]},
                 "transformer.transformer_blocks.0.attn1.to_q.lora_B.weight": {"shape": [8, 4]}}
    assert lora_unsupported(peft_sana, "sana") is None
    kohya = {"lora_unet_transformer_blocks_0_attn1_to_q.lora_down.weight": {"shape": [4, 8]},
             "lora_unet_transformer_blocks_0_attn1_to_q.lora_up.weight": {"shape": [8, 4]}}
    assert "Sana loaders have no kohya converter" in lora_unsupported(kohya, "sana")
    bfl = {"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": {"shape": [4, 32]},
           "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": {"shape": [96, 4]}}
    # the original names in peft's spelling: Flux.2's loader converts them, Flux's (Chroma's) attaches none of them
    assert lora_unsupported(bfl, "flux2") is None and "not supported" in lora_unsupported(bfl, "sana")
    assert "Chroma's leave them as they are" in lora_unsupported(bfl, "chroma")
    te = {**peft_sana, "text_encoder.layers.0.self_attn.q_proj.lora_A.weight": {"shape": [4, 8]},
          "text_encoder.layers.0.self_attn.q_proj.lora_B.weight": {"shape": [8, 4]}}
    assert "its sana loader loads transformer only" in lora_unsupported(te, "sana")


# -- the shipped real-model audits validate and plan offline ----------------------------------------------


@pytest.mark.parametrize("name, family, players", [
    ("chroma-style-audit", "chroma", ["pixel-art", "oil", "ukiyo-e"]),
    ("sana-style-audit", "sana", ["hed", "oil", "ukiyo-e"]),
])
def test_shipped_real_audits_validate_and_plan_offline(name, family, players, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo = REPO / "audits" / f"{name}.yaml"
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
