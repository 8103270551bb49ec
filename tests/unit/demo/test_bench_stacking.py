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
