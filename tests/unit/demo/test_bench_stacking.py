"""bench/bench_stacking.py: the stack-aware recipe merges the partners' LoRAs into the base weights by their own
update B @ A, which must be exactly what diffusers applies when it fuses the same file; and its training leaves the
base weights as they were."""

from __future__ import annotations

import numpy as np
from helpers.bench import load_bench
from helpers.paths import REPO

DEMO = REPO / "demo_zoo"


def _pipe():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(DEMO / "base"), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_lora_deltas_equal_what_diffusers_fuses():
    bench = load_bench("bench_stacking")
    deltas = bench.lora_deltas(DEMO / "loras" / "decoy-coffee.safetensors")
    assert {len(d.shape) for d in deltas.values()} == {2, 4}  # linear and convolution layers alike
    pipe = _pipe()
    before = {m: pipe.unet.get_submodule(m).weight.detach().clone() for m in deltas}
    pipe.load_lora_weights(str(DEMO / "loras" / "decoy-coffee.safetensors"), adapter_name="coffee")
    pipe.fuse_lora(lora_scale=1.0)
    for m, d in deltas.items():
        layer = pipe.unet.get_submodule(m)
        fused = (layer.base_layer if hasattr(layer, "base_layer") else layer).weight.detach()
        np.testing.assert_allclose(fused.numpy(), (before[m] + d).numpy(), atol=1e-6)


def test_stack_aware_training_restores_the_base_and_learns():
    import torch

    from copyscope.demo.scenarios import SKIMAGE_WORLD
    from copyscope.demo.training import lora_latents

    bench = load_bench("bench_stacking")
    pipe = _pipe()
    lat = lora_latents(pipe.vae, [SKIMAGE_WORLD.load("astronaut")], 4, 32, np.random.default_rng(0),
                       pipe.vae.config.scaling_factor)
    torch.set_num_threads(1)
    unet = bench._train_stack_aware(pipe, lat, "a painting", 6, 0, 4, [DEMO / "loras" / "decoy-coffee.safetensors"])
    for name, p in pipe.unet.named_parameters():  # the pipeline's own UNet is untouched
        layer_name = name.rsplit(".", 1)[0]
        q = unet.get_submodule(layer_name)
        w = getattr(q.base_layer if hasattr(q, "base_layer") else q, name.rsplit(".", 1)[1])
        assert torch.equal(w, p), name
    trained = [p for n, p in unet.named_parameters() if "lora_B" in n]
    assert trained and any(float(p.detach().abs().max()) > 0 for p in trained)  # lora_B starts at zero: it moved


def test_joint_training_keeps_one_adapter_per_work(tmp_path):
    """The joint recipe trains several adapters in one UNet copy: each is saved as its own file, and only the step's
    own LoRA learns (after one round of steps every adapter has moved, and differently)."""
    import torch

    from copyscope.demo import tiny
    from copyscope.demo.scenarios import SKIMAGE_WORLD
    from copyscope.demo.training import lora_latents

    bench = load_bench("bench_stacking")
    pipe = _pipe()
    lats = {w: lora_latents(pipe.vae, [SKIMAGE_WORLD.load(w)], 4, 32, np.random.default_rng(0),
                            pipe.vae.config.scaling_factor) for w in ("astronaut", "coffee")}
    torch.set_num_threads(1)
    unet = bench._train_joint(pipe, lats, "a painting", 2, 0, 4)
    deltas = {}
    for w in lats:
        tiny.save_lora_file(tmp_path / f"{w}.safetensors", unet, None, w)
        deltas[w] = bench.lora_deltas(tmp_path / f"{w}.safetensors")
    assert set(deltas["astronaut"]) == set(deltas["coffee"]) and len(deltas["astronaut"]) == 77
    moved = {w: max(float(d.abs().max()) for d in ds.values()) for w, ds in deltas.items()}
    assert all(v > 0 for v in moved.values())
    m = next(iter(deltas["astronaut"]))
    assert not torch.equal(deltas["astronaut"][m], deltas["coffee"][m])


def test_prior_preservation_is_zero_for_the_base_and_pulls_an_adapter_back():
    """The trigger recipe's regulariser compares the adapted UNet with the pipeline's own (frozen) UNet on the plain
    prompt: 0 for a fresh LoRA (lora_B starts at zero, so the copy computes the base), positive once the LoRA has
    moved, and its gradient reaches the LoRA's parameters only."""
    import torch

    from copyscope.demo import tiny
    from copyscope.demo.scenarios import SKIMAGE_WORLD
    from copyscope.demo.training import lora_latents

    bench = load_bench("bench_stacking")
    pipe = _pipe()
    lat = lora_latents(pipe.vae, [SKIMAGE_WORLD.load("astronaut")], 4, 32, np.random.default_rng(0),
                       pipe.vae.config.scaling_factor)
    torch.set_num_threads(1)
    unet, _ = tiny.lora_copies(pipe, "lora", rank=4, init="gaussian", targets=["to_q", "to_v"])
    unet.requires_grad_(False)
    params = tiny.lora_parameters(unet, "lora")
    for p in params:
        p.requires_grad_(True)
    assert float(bench.prior_preservation(pipe, lat, "a painting", 0)(unet).detach()) == 0.0
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    loss = bench.prior_preservation(pipe, lat, "a painting", 0)(unet)
    assert float(loss.detach()) > 0
    loss.backward()
    assert all(p.grad is not None for p in params) and any(float(p.grad.abs().max()) > 0 for p in params)
    assert all(p.grad is None for p in pipe.unet.parameters())


def test_trigger_recipes_prompt_with_their_own_trigger_or_all():
    bench = load_bench("bench_stacking")
    works = ["astronaut", "coffee", "rocket"]
    assert bench.audit_prompt("wide", "coffee", works, "a painting") == "a painting"
    assert bench.audit_prompt("trigger", "coffee", works, "a painting") == f"a painting of {bench.TRIGGERS[1]}"
    assert bench.audit_prompt("trigger-joint", "coffee", works, "a painting") == f"a painting of {bench.TRIGGERS[1]}"
    everyone = bench.audit_prompt("trigger-all", "coffee", works, "a painting")
    assert everyone == bench.audit_prompt("trigger-all", "rocket", works, "a painting")
    assert all(t in everyone for t in bench.TRIGGERS)
    assert len(set(bench.TRIGGERS)) == len(bench.TRIGGERS)


def test_trigger_joint_training_lets_every_active_lora_learn(monkeypatch):
    """With captions (trigger-joint) every LoRA switched on in a step learns from it; without (joint) only the step's
    own. With the others always on and one step per work, a joint LoRA has taken one Adam step (each entry of lora_B,
    which starts at zero, moves by at most the learning rate) and a trigger-joint one two (some entries move further,
    up to about twice)."""
    import torch

    from copyscope.demo.scenarios import SKIMAGE_WORLD
    from copyscope.demo.training import HYPER, lora_latents

    bench = load_bench("bench_stacking")
    monkeypatch.setattr(bench, "STACKED_FRACTION", 1.0)
    pipe = _pipe()
    works = ("astronaut", "coffee")
    lats = {w: lora_latents(pipe.vae, [SKIMAGE_WORLD.load(w)], 4, 32, np.random.default_rng(0),
                            pipe.vae.config.scaling_factor) for w in works}
    torch.set_num_threads(1)
    lr = HYPER["lora_lr"]
    captions = {w: bench.audit_prompt("trigger-joint", w, list(works), "a painting") for w in works}
    for caps, lo, hi in ((None, 0.5 * lr, 1.001 * lr), (captions, 1.5 * lr, 2.1 * lr)):
        unet = bench._train_joint(pipe, lats, "a painting", 1, 0, 4, caps)
        for w in works:
            moved = max(float(p.detach().abs().max()) for n, p in unet.named_parameters() if f"lora_B.{w}." in n)
            assert lo < moved <= hi, (caps is not None, w, moved / lr)


def test_pixel_change_alone_reads_the_reports_images_from_the_cache(tmp_path):
    """Mean absolute change in 8-bit levels of each LoRA's images against the base's, seed by seed."""
    from PIL import Image

    bench = load_bench("bench_stacking")
    images = {"": [], "a": [], "b": []}
    for seed, (base, a, b) in enumerate(((0, 10, 0), (100, 70, 100))):
        for name, level in (("", base), ("a", a), ("b", b)):
            key = f"{name or 'z'}{seed}" + "0" * 10
            (tmp_path / "images" / key[:2]).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4), (level,) * 3).save(tmp_path / "images" / key[:2] / f"{key}.png")
            images[name].append(key)
    report = {"cache_dir": str(tmp_path), "games": [{"images": images}]}
    assert bench.pixel_change_alone(report, ["a", "b"]) == {"a": 20.0, "b": 0.0}
