"""copyscope.demo.tiny: random-weight tiny SD-shaped components, saved and reloaded offline."""

from __future__ import annotations

import numpy as np
import pytest

import torch

from copyscope.demo import tiny  # noqa: E402

PROMPT = "a painting of an astronaut"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("tinyzoo")
    return tiny.save_tiny_zoo(out, seed=0, n_loras=2, controlnet=True)


@pytest.fixture(scope="module")
def pipe(zoo):
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(str(zoo["base"]), local_files_only=True, safety_checker=None,
                                                requires_safety_checker=False)
    p.set_progress_bar_config(disable=True)
    p.load_lora_weights(str(zoo["loras"][0]), adapter_name="l0")
    p.load_lora_weights(str(zoo["loras"][1]), adapter_name="l1")
    return p


def _gen(p, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    out = p(PROMPT, num_inference_steps=3, guidance_scale=5.0, height=32, width=32, generator=g,
            output_type="np", **kw)
    return out.images[0]


def test_tokenizer_covers_any_prompt(tmp_path):
    tok = tiny.tiny_tokenizer(tmp_path / "tok")
    ids = tok("A Painting of an astronaut, xyzzy 42!").input_ids
    toks = tok.convert_ids_to_tokens(ids)
    assert toks[0] == "<|startoftext|>" and toks[-1] == "<|endoftext|>"
    assert "painting</w>" in toks and "astronaut</w>" in toks
    assert tok.unk_token_id not in ids[1:-1]
    assert (tmp_path / "tok" / "vocab.json").exists() and (tmp_path / "tok" / "merges.txt").exists()


def test_deterministic_from_seed():
    a, b, c = tiny.tiny_pipeline(3), tiny.tiny_pipeline(3), tiny.tiny_pipeline(4)
    ka = next(iter(a.unet.state_dict()))
    assert torch.equal(a.unet.state_dict()[ka], b.unet.state_dict()[ka])
    assert not torch.equal(a.unet.state_dict()[ka], c.unet.state_dict()[ka])


def test_zoo_layout(zoo):
    assert (zoo["base"] / "model_index.json").exists()
    assert (zoo["base"] / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert (zoo["controlnet"] / "diffusion_pytorch_model.safetensors").exists()
    assert all(p.suffix == ".safetensors" and p.exists() for p in zoo["loras"])
    assert zoo["control"].exists()


def test_reload_bit_identical(zoo):
    from diffusers import StableDiffusionPipeline

    ref = tiny.tiny_pipeline(0)
    p = StableDiffusionPipeline.from_pretrained(str(zoo["base"]), local_files_only=True)
    for k, v in ref.unet.state_dict().items():
        assert torch.equal(v, p.unet.state_dict()[k]), k


def test_loras_change_and_disable_restores(pipe):
    pipe.disable_lora()
    base = _gen(pipe)
    pipe.enable_lora()
    pipe.set_adapters(["l0"], adapter_weights=[1.0])
    with0 = _gen(pipe)
    pipe.set_adapters(["l1"], adapter_weights=[1.0])
    with1 = _gen(pipe)
    pipe.set_adapters(["l0", "l1"], adapter_weights=[1.0, 1.0])
    both = _gen(pipe)
    assert np.abs(with0 - base).mean() > 1e-3
    assert np.abs(with1 - base).mean() > 1e-3
    assert np.abs(with0 - with1).mean() > 1e-3
    assert np.abs(both - with0).mean() > 1e-3
    pipe.set_adapters(["l0"], adapter_weights=[1.0])
    assert np.array_equal(_gen(pipe), with0)  # switching back is exact
    pipe.disable_lora()
    assert np.array_equal(_gen(pipe), base)  # disable_lora restores the base exactly
    pipe.enable_lora()
    pipe.set_adapters(["l0", "l1"], adapter_weights=[0.0, 0.0])
    assert np.abs(_gen(pipe) - base).max() < 1e-5
    pipe.disable_lora()


def test_controlnet_changes_images(zoo, pipe):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    pipe.disable_lora()
    base = _gen(pipe)
    cn = ControlNetModel.from_pretrained(str(zoo["controlnet"]), local_files_only=True)
    cp = StableDiffusionControlNetPipeline(**pipe.components, controlnet=cn)
    cp.set_progress_bar_config(disable=True)
    img = Image.open(zoo["control"]).convert("RGB")
    with_cn = _gen(cp, image=img, controlnet_conditioning_scale=1.0)
    assert np.abs(with_cn - base).mean() > 1e-3
    off = _gen(cp, image=img, controlnet_conditioning_scale=0.0)
    assert np.abs(off - base).max() < 1e-4


def test_untrained_controlnet_is_noop():
    p = tiny.tiny_pipeline(1)
    cn = tiny.tiny_controlnet(p.unet, randomize=False)
    assert float(cn.controlnet_mid_block.weight.detach().abs().sum()) == 0.0
    cn2 = tiny.tiny_controlnet(p.unet, randomize=True)
    assert float(cn2.controlnet_mid_block.weight.detach().abs().sum()) > 0.0


def test_tiny_lora_leaves_pipe_unchanged(tmp_path):
    p = tiny.tiny_pipeline(2)
    before = {k: v.clone() for k, v in p.unet.state_dict().items()}
    f = tiny.tiny_lora(p, tmp_path / "x.safetensors", seed=5, text_encoder=True)
    assert f.exists()
    after = p.unet.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    from safetensors.torch import load_file

    keys = list(load_file(str(f)))
    assert any(k.startswith("unet.") for k in keys) and any(k.startswith("text_encoder.") for k in keys)
    p.load_lora_weights(str(f), adapter_name="x")  # text-encoder LoRA loads too


@pytest.mark.parametrize("wide", [False, True])
def test_lora_file_reproduces_trained_adapter(tmp_path, wide):
    """A saved LoRA (attention-only or attention+conv) loads back exactly as the in-memory adapter."""
    from diffusers import StableDiffusionPipeline

    p = tiny.tiny_pipeline(0)
    p.set_progress_bar_config(disable=True)
    targets = tiny.UNET_LORA_TARGETS_WIDE if wide else None
    u, te = tiny.lora_copies(p, "lora", rank=4, text_encoder=True, targets=targets)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in (u, te):
            for n, q in m.named_parameters():
                if "lora_B" in n:
                    q.copy_(torch.randn(q.shape, generator=g) * 0.1)
    f = tiny.save_lora_file(tmp_path / "x.safetensors", u, te)
    base = _gen(p)
    q = StableDiffusionPipeline(**{**p.components, "unet": u.eval(), "text_encoder": te.eval()})
    q.set_progress_bar_config(disable=True)
    want = _gen(q)
    p.load_lora_weights(str(f), adapter_name="x")
    got = _gen(p)
    assert np.abs(want - base).mean() > 1e-3
    assert np.abs(got - want).max() < 1e-5
