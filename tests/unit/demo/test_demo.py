"""copyscope.demo.build: the demo zoo builder (quick mode) writes a loadable zoo with ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

import torch

from copyscope.conditioning import pseudo_depth
from copyscope.demo import build as demo_build
from copyscope.demo.images import load_skimage, resize_square
from copyscope.common.errors import CopyscopeError


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "zoo"
    demo_build.build_demo_zoo(out, quick=True, seed=0, log=None)
    return out


@pytest.fixture(scope="module")
def gt(zoo):
    return json.loads((zoo / "ground_truth.json").read_text())


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_layout(zoo):
    for rel in ("base/model_index.json", "base/unet/diffusion_pytorch_model.safetensors",
                "base/vae/diffusion_pytorch_model.safetensors", "base/text_encoder/model.safetensors",
                "base/tokenizer/vocab.json", "base/tokenizer/merges.txt",
                "controlnet-depth/diffusion_pytorch_model.safetensors", "controlnet-depth/config.json",
                "loras/planted.safetensors", "loras/decoy-coffee.safetensors", "loras/decoy-rocket.safetensors",
                "references/astronaut/astronaut.png", "control/astronaut_depth.png", "control/neutral.png",
                "ground_truth.json", "zoo.yaml"):
        assert (zoo / rel).is_file(), rel
    assert not [p for p in zoo.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_ground_truth(gt, zoo):
    assert gt["planted_infringer"] == "planted"
    loras = gt["components"]["loras"]
    assert loras["planted"]["role"] == "planted_infringer"
    assert loras["planted"]["trained_on"] == ["astronaut"]
    assert loras["decoy-coffee"]["trained_on"] == ["coffee"] and loras["decoy-coffee"]["role"] == "decoy"
    assert loras["decoy-rocket"]["trained_on"] == ["rocket"]
    assert all(v["caption"] == gt["prompt"] for v in loras.values())
    base = set(gt["components"]["base"]["trained_on"])
    assert not base & {"astronaut", "coffee", "rocket"}
    assert gt["components"]["controlnet-depth"]["trained_on"]
    assert gt["references"]["astronaut"]["trained_into"] == ["planted"]
    ref_paths = gt["references"]["astronaut"]["paths"]
    assert len(ref_paths) == demo_build.HYPER["reference_views"] >= 2  # set-level metrics need >= 2
    for p in ref_paths:
        assert (zoo / p).is_file()
    assert 0.0 <= gt["vae_reconstruction_ssim"]["held_out"] <= 1.0
    assert {"vae", "base", "controlnet", "lora"} <= set(gt["steps"])
    assert gt["seed"] == 0 and gt["resolution"] == 32
    assert "total" in gt["timings_s"]


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_models_load(zoo, gt):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline
    from PIL import Image

    pipe = StableDiffusionPipeline.from_pretrained(str(zoo / "base"), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    for name, info in gt["components"]["loras"].items():
        pipe.load_lora_weights(str(zoo / info["file"]), adapter_name=name)
    pipe.set_adapters(["planted", "decoy-coffee"], adapter_weights=[1.0, 1.0])
    cn = ControlNetModel.from_pretrained(str(zoo / "controlnet-depth"), local_files_only=True)
    assert float(cn.controlnet_mid_block.weight.detach().abs().sum()) > 0  # trained, not zero-initialised
    cp = StableDiffusionControlNetPipeline(**pipe.components, controlnet=cn)
    cp.set_progress_bar_config(disable=True)
    img = Image.open(zoo / "control" / "astronaut_depth.png").convert("RGB")
    out = cp("a painting", image=img, num_inference_steps=2, height=32, width=32, output_type="np",
             generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_zoo_yaml(zoo):
    import yaml

    data = yaml.safe_load((zoo / "zoo.yaml").read_text())
    assert data["bases"][0]["model"] == "./base"
    assert {lora["name"] for lora in data["loras"]} == {"planted", "decoy-coffee", "decoy-rocket"}
    for lora in data["loras"]:
        assert (zoo / lora["model"]).is_file()
    for p in data["controlnets"][0]["conditioning"]["per_work"].values():
        assert (zoo / p).is_file()
    assert data["references"][0]["name"] == "astronaut"
    assert data["prompts"][0]["work"] == "astronaut"
    # the default build writes the shipped template verbatim
    assert (zoo / "zoo.yaml").read_text() == demo_build.TEMPLATE_PATH.read_text()


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_zoo_yaml_validates_with_config(zoo):
    from copyscope import config

    z = config.load_zoo(zoo / "zoo.yaml")
    assert z.spec.loras[0].name == "planted"


def test_zoo_yaml_non_default():
    text = demo_build.zoo_yaml(references=("astronaut", "chelsea"), lora_names=["planted", "decoy-x"],
                               prompt="an image", resolution=48)
    import yaml

    data = yaml.safe_load(text)
    assert [r["name"] for r in data["references"]] == ["astronaut", "chelsea"]
    assert data["generation"]["resolution"] == 48
    assert all(p["text"] == "an image" for p in data["prompts"])
    assert set(data["controlnets"][0]["conditioning"]["per_work"]) == {"astronaut", "chelsea"}


def test_pseudo_depth_and_images():
    a = load_skimage("camera")
    assert a.shape[-1] == 3 and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    d = pseudo_depth(resize_square(a, 32))
    assert d.shape == (32, 32, 3) and np.allclose(d[..., 0], d[..., 1])
    assert d.min() == 0.0 and abs(d.max() - 1.0) < 1e-6
    assert load_skimage("logo").shape[-1] == 3 and load_skimage("horse").shape[-1] == 3


def test_rejects_leaks(tmp_path):
    with pytest.raises(CopyscopeError, match="base images must not include"):
        demo_build.build_demo_zoo(tmp_path, base_images=("camera", "astronaut"), quick=True, log=None)
    with pytest.raises(CopyscopeError, match="unknown image"):
        demo_build.build_demo_zoo(tmp_path, references=("mona",), quick=True, log=None)


def test_brute_force_shapley_of_the_check():
    from copyscope.estimate.shapley.synthetic import brute_force_shapley

    players = ["a", "b", "c"]
    import itertools

    w = {}
    for k in range(4):
        for s in itertools.combinations(players, k):
            s = frozenset(s)
            w[s] = 2.0 * ("a" in s) + 1.0 * ("b" in s) + (0.5 if {"b", "c"} <= s else 0.0)
    phi = brute_force_shapley(players, w.__getitem__)
    assert phi == pytest.approx({"a": 2.0, "b": 1.25, "c": 0.25})


def test_cli_registered():
    from typer.testing import CliRunner

    from copyscope.demo.cli import demo_app

    r = CliRunner().invoke(demo_app, ["build", "--help"])
    assert r.exit_code == 0 and "--quick" in r.output


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_refuses_to_overwrite_a_zoo(zoo, tmp_path):
    from typer.testing import CliRunner

    from copyscope.demo.cli import demo_app

    before = {p: p.stat().st_mtime_ns for p in zoo.rglob("*") if p.is_file()}
    r = CliRunner().invoke(demo_app, ["build", "--out", str(zoo), "--quick"])
    assert r.exit_code == 2 and "exists and is not empty" in r.output and "--overwrite" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert {p: p.stat().st_mtime_ns for p in zoo.rglob("*") if p.is_file()} == before  # nothing touched
    (tmp_path / "f").write_text("x")
    with pytest.raises(CopyscopeError, match="not a folder"):
        demo_build.build_demo_zoo(tmp_path / "f", quick=True, log=None)


def test_each_training_stage_takes_a_step(tmp_path):
    """One step of every training loop the build runs (the quick suite's cover of demo/training.py, whose
    full use is the slow quick-build above): each moves its own weights and logs a finite loss."""
    import math
    import re

    from diffusers import StableDiffusionPipeline

    from copyscope.demo import tiny, training

    logs: list[str] = []
    pix = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    caps = ["a photo of a cat", "a logo"] * 2

    def moved(module, step):
        before = [p.detach().clone() for p in module.parameters()]
        step()
        return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))

    tok = tiny.tiny_tokenizer(tmp_path / "tok")
    te = tiny.tiny_text_encoder(tok, 0)
    vae = tiny.tiny_vae(0, 32, block_out_channels=training.HYPER["vae_channels"], norm_num_groups=8,
                        mid_block_add_attention=False)
    assert moved(vae, lambda: training.train_vae(vae, pix, 1, 0, logs.append))
    mean, std = training.encode_latents(vae, pix)
    lat = training.Latents(mean, std, 1.0)
    unet = tiny.tiny_unet(0, 32)
    assert moved(unet, lambda: training.train_base_unet(unet, te, tok, lat, caps, 1, 0, logs.append))
    cn = tiny.tiny_controlnet(unet, seed=0, randomize=False)
    conds = np.stack([pseudo_depth(p) for p in pix])
    assert moved(cn, lambda: training.train_controlnet(cn, unet, te, tok, lat, conds, caps, 1, 0, logs.append))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=tiny.tiny_scheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    lora_unet = training.train_lora(pipe, lat, "a painting", 1, 0, logs.append, "x")
    assert tiny.lora_parameters(lora_unet, "lora")  # the adapter the step trained
    losses = [float(m.group(1)) for line in logs if (m := re.search(r"loss (\S+)", line))]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses), logs


@pytest.mark.slow  # a quick build (training loops of a few steps)
def test_lora_rank_option_reaches_the_files_the_ground_truth_and_the_pool(tmp_path):
    """`demo build --lora-rank N` trains every LoRA at rank N, records it, and the validity pool trains at it."""
    from safetensors import safe_open
    from typer.testing import CliRunner

    from copyscope.demo.cli import demo_app
    from copyscope.demo.pool import lora_rank_of

    out = tmp_path / "zoo"
    r = CliRunner().invoke(demo_app, ["build", "--out", str(out), "--quick", "--lora-rank", "4"])
    assert r.exit_code == 0, r.output
    gt = json.loads((out / "ground_truth.json").read_text())
    assert gt["hyperparameters"]["lora_rank"] == 4 and lora_rank_of(gt) == 4
    for name, info in gt["components"]["loras"].items():
        assert info["rank"] == 4, name
        with safe_open(str(out / info["file"]), "pt") as f:
            downs = [k for k in f.keys() if "lora_A" in k or "lora.down" in k]
            assert downs and all(f.get_slice(k).get_shape()[0] == 4 for k in downs), name
    # a ground truth without the rank is read as 8; a bad rank is one line, exit 2, nothing written
    assert lora_rank_of({"hyperparameters": {}}) == 8  # zoos from before the rank was recorded
    bad = CliRunner().invoke(demo_app, ["build", "--out", str(tmp_path / "bad"), "--quick", "--lora-rank", "0"])
    assert bad.exit_code == 2 and "lora rank" in bad.output and not (tmp_path / "bad").exists()
