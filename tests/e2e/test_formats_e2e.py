"""Real files end to end: a tiny SD 1.x base converted to one A1111-layout .safetensors (with a local
``config:`` folder), its ControlNet to one file, a LoRA with text-encoder weights to the kohya layout;
audited through the CLI with HF_HUB_OFFLINE=1 (set by conftest), they give the same pixels as the
diffusers-format originals. Plus fp16 variants, the text-encoder LoRA / embedding-cache rule, and the
bad-input cases of these files (one line, exit 2, before anything loads)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from copyscope.modelfiles import formats
from copyscope.generate.cache import ImageCache
from copyscope.cli import app

from helpers.zoo import write_reference_images

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tiny_models, tmp_path_factory) -> dict:
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file, save_file

    from copyscope.demo.tiny import tiny_lora

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    root = tmp_path_factory.mktemp("real_files")
    f = dict(tiny_models)
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_models["base"]), safety_checker=None, requires_safety_checker=False)
    f["te_lora"] = tiny_lora(pipe, root / "te_lora.safetensors", seed=11, text_encoder=True)
    del pipe
    f["single"] = formats.pipeline_to_single_file(tiny_models["base"], root / "single" / "tiny-sd.safetensors")
    f["single_fp16"] = formats.pipeline_to_single_file(tiny_models["base"], root / "single" / "tiny-sd.fp16.safetensors", torch.float16)
    f["config"] = formats.config_folder(tiny_models["base"], root / "single" / "tiny-sd-config")
    f["cn_single"] = formats.controlnet_to_single_file(tiny_models["controlnet"], root / "single" / "depth.safetensors")
    f["cn_config"] = formats.config_folder(tiny_models["controlnet"], root / "single" / "depth-config")
    # rank 4, alpha 2: kohya scales by 1/2 and the converter doubled lora_up, so the LoRA means the same
    f["kohya"] = formats.lora_to_kohya(f["te_lora"], root / "kohya" / "style.safetensors", alpha=2)
    te_only = {k: v for k, v in load_file(str(f["kohya"])).items() if k.startswith("lora_te_")}
    save_file(te_only, str(root / "kohya" / "te_only.safetensors"))
    f["te_only"] = root / "kohya" / "te_only.safetensors"
    # an fp16 variant next to the fp32 weights, as hub repos ship them (x.fp16.safetensors)
    f["base_variants"] = root / "base-variants"
    shutil.copytree(tiny_models["base"], f["base_variants"])
    for w in list(f["base_variants"].rglob("*.safetensors")):
        half = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(w)).items()}
        save_file(half, str(w.with_name(w.stem + ".fp16.safetensors")))
    f["refs"] = write_reference_images(root / "refs")
    f["root"] = root
    return f


def _zoo(tmp: Path, f: dict, base: dict, *, lora=None, controlnet=None, name="zoo") -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    data = {
        "name": name,
        "output": str(tmp / "out"),
        "bases": [{"name": "tiny-sd", **base}],
        "loras": [{"name": "style", "model": str(lora)}] if lora else [],
        "controlnets": [{"name": "depth", **controlnet, "conditioning": {"image": str(f["control"])}}] if controlnet else [],
        "references": [{"name": "work", "paths": [str(f["refs"])]}],
        "prompts": [{"name": "p", "text": "a painting of a cat"}],
        "generation": {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 1, "batch_size": 1, "scheduler": "ddim",
                       "dtype": "float32", "device": "cpu"},
        "metrics": ["ssim"],
        "estimator": {"bootstrap": 0},
        "controls": {"positive": False},  # tests/unit/controls/test_controls_positive.py tests the controls
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _audit(zoo: Path) -> dict:
    result = runner.invoke(app, ["audit", str(zoo)])
    assert result.exit_code == 0, result.output
    report = json.loads((zoo.parent / "out" / "report.json").read_text())
    cache = ImageCache(report["cache_dir"])
    (game,) = report["games"]
    images = {c: np.stack([cache.load(k) for k in keys]) for c, keys in game["images"].items()}
    return {"report": report, "images": images, "keys": game["images"]}


@pytest.fixture(scope="module")
def audits(files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real_audits")
    original = _zoo(tmp / "diffusers", files, {"model": str(files["base"])}, lora=files["te_lora"],
                    controlnet={"model": str(files["controlnet"])})
    single = _zoo(tmp / "single", files, {"model": str(files["single"]), "config": str(files["config"])},
                  lora=files["kohya"], controlnet={"model": str(files["cn_single"]), "config": str(files["cn_config"])})
    out = {"diffusers": _audit(original), "single": _audit(single)}
    out["rerun"] = _audit(single)
    return out


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_single_file_and_kohya_give_the_pixels_of_the_diffusers_originals(audits):
    a, b = audits["diffusers"], audits["single"]
    assert sorted(a["images"]) == sorted(b["images"]) == ["", "depth", "depth+style", "style"]
    for coalition, img in a["images"].items():
        assert np.array_equal(img, b["images"][coalition]), coalition
    # different files, different identities: the two audits share no cache key
    assert not set(sum(a["keys"].values(), [])) & set(sum(b["keys"].values(), []))


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_players_change_images_and_rerun_generates_nothing(audits):
    imgs = audits["single"]["images"]
    for without, with_ in [("", "style"), ("", "depth"), ("style", "depth+style"), ("depth", "depth+style")]:
        assert np.abs(imgs[without] - imgs[with_]).max() > 1 / 255, (without, with_)
    gen = audits["rerun"]["report"]["generation"]
    assert gen["generated"] == 0 and gen["cached"] == 4
    assert audits["rerun"]["keys"] == audits["single"]["keys"]


def test_fp16_variant_folder_and_fp16_single_file_agree(files, tmp_path):
    variant = _audit(_zoo(tmp_path / "variant", files, {"model": str(files["base_variants"]), "variant": "fp16"},
                          lora=files["loras"][0]))
    single = _audit(_zoo(tmp_path / "single16", files, {"model": str(files["single_fp16"]), "config": str(files["config"])},
                         lora=files["loras"][0]))
    for coalition, img in variant["images"].items():
        assert np.array_equal(img, single["images"][coalition]), coalition
    # the variant is part of the image key: the same folder without it (fp32 weights) has other keys
    from copyscope.audit import prepare_audit
    from copyscope.generate import CoalitionEngine

    def base_identity(zoo):
        prep = prepare_audit(zoo)
        return CoalitionEngine(prep.zoo, prep.plan.games[0]).identities()["base"]

    fp32 = base_identity(_zoo(tmp_path / "fp32", files, {"model": str(files["base_variants"])}, lora=files["loras"][0]))
    fp16 = base_identity(tmp_path / "variant" / "zoo.yaml")
    assert fp16 == {**fp32, "variant": "fp16"}


def test_text_encoder_only_kohya_lora_bypasses_the_embedding_cache(files, tmp_path):
    from copyscope.audit import prepare_audit
    from copyscope.generate import CoalitionEngine

    prep = prepare_audit(_zoo(tmp_path, files, {"model": str(files["single"]), "config": str(files["config"])},
                              lora=files["te_only"]))
    engine = CoalitionEngine(prep.zoo, prep.plan.games[0])
    off = engine.generate((False,), prep.plan.items)
    on = engine.generate((True,), prep.plan.items)
    assert {p.name for p in engine.players["lora"] if p.text_encoder_weights} == {"style"}
    # the UNet is untouched by this LoRA: had its coalition reused the cached (base) embeddings, the
    # image would equal the base's. It differs, and no cached embedding was used for it.
    assert engine.embedding_hits == 0
    assert np.abs(np.stack(off) - np.stack(on)).max() > 1 / 255
    assert np.array_equal(np.stack(engine.generate((False,), prep.plan.items)), np.stack(off))
    assert engine.embedding_hits == 1


# -- bad input -------------------------------------------------------------------------------------
def _one_line_error(result, pattern: str) -> str:
    out = result.output
    assert result.exit_code == 2 and "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert re.search(pattern, errors[0]), f"{pattern!r} not in {errors[0]!r}"
    return errors[0]


def _kohya_misfit(path: Path) -> Path:
    from safetensors.torch import save_file

    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k"
    save_file({f"{name}.lora_down.weight": torch.zeros(4, 64), f"{name}.lora_up.weight": torch.zeros(32, 4),
               f"{name}.alpha": torch.tensor(4.0)}, str(path))
    return path


def _only_fp16(f: dict, tmp: Path) -> Path:
    folder = tmp / "only16"
    shutil.copytree(f["base_variants"], folder)
    for w in folder.rglob("*.safetensors"):
        if ".fp16." not in w.name:
            w.unlink()
    return folder


BAD = [
    ("single-file base without config, offline",
     lambda f, t: {"base": {"model": str(f["single"])}},
     r"zoo\.yaml:\d+: bases\[0\]\.config: single-file checkpoint tiny-sd\.safetensors has no 'config:' and HF_HUB_OFFLINE "
     r"is set, so diffusers cannot fetch the configs of stable-diffusion-v1-5/stable-diffusion-v1-5 from the hub; set "
     r"'config:' to a local diffusers folder"),
    ("single-file ControlNet without config, offline",
     lambda f, t: {"base": {"model": str(f["base"])}, "controlnet": {"model": str(f["cn_single"])}},
     r"controlnets\[0\]\.config: single-file checkpoint depth\.safetensors has no 'config:' .*lllyasviel/control_v11p_sd15_canny"),
    ("config folder missing",
     lambda f, t: {"base": {"model": str(f["single"]), "config": "no/such/config"}},
     r"bases\[0\]\.config: config folder 'no/such/config' not found \(looked at .*\); expected a diffusers folder with model_index\.json"),
    ("config folder of another kind",
     lambda f, t: {"base": {"model": str(f["single"]), "config": str(f["cn_config"])}},
     r"bases\[0\]\.config: config folder '.*depth-config' has no model_index\.json"),
    ("config with a diffusers folder",
     lambda f, t: {"base": {"model": str(f["base"]), "config": str(f["config"])}},
     r"bases\[0\]\.config: 'config' applies to a single-file checkpoint; '.*' is a diffusers folder"),
    ("variant with no such weights",
     lambda f, t: {"base": {"model": str(f["base"]), "variant": "fp16"}},
     r"bases\[0\]\.variant: no 'fp16' weights in '.*' \(expected files such as diffusion_pytorch_model\.fp16\.safetensors\)"),
    ("fp16-only folder without variant",
     lambda f, t: {"base": {"model": str(_only_fp16(f, t))}},
     r"bases\[0\]\.model: '.*only16' holds only 'fp16' variant weights \(in text_encoder, unet, vae\); set variant: fp16"),
    ("variant with a single file",
     lambda f, t: {"base": {"model": str(f["single"]), "config": str(f["config"]), "variant": "fp16"}},
     r"bases\[0\]\.variant: 'variant' selects weight files in a diffusers folder; tiny-sd\.safetensors is a single file"),
    ("LoRA file as a base",
     lambda f, t: {"base": {"model": str(f["kohya"])}},
     r"bases\[0\]\.model: style\.safetensors is a LoRA file \(kohya layout\), not a base checkpoint; list it under 'loras:'"),
    ("base checkpoint as a LoRA",
     lambda f, t: {"base": {"model": str(f["base"])}, "lora": f["single"]},
     r"loras\[0\]\.model: tiny-sd\.safetensors is a base checkpoint \(A1111 layout\), not a LoRA; list it under 'bases:'"),
    ("kohya LoRA does not fit a single-file base",
     lambda f, t: {"base": {"model": str(f["single"]), "config": str(f["config"])}, "lora": _kohya_misfit(t / "misfit.safetensors")},
     r"loras\[0\]\.model: LoRA 'style' does not fit base 'tiny-sd': "
     r"layer down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_k "
     r"maps 32 -> 32 features in the base, but the LoRA's lora_down weight has shape \[4, 64\]"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_real_files_are_one_line_errors(files, tmp_path, case):
    _, make, pattern = case
    spec = make(files, tmp_path)
    zoo = _zoo(tmp_path, files, spec["base"], lora=spec.get("lora"), controlnet=spec.get("controlnet"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("previous\n")
    _one_line_error(runner.invoke(app, ["audit", str(zoo)]), pattern)
    assert [p.name for p in out.iterdir()] == ["report.json"] and (out / "report.json").read_text() == "previous\n"
