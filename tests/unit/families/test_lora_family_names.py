"""LoRA family detection (copyscope.families.lora_families) against the module names of every transformer family's
own diffusers model: a LoRA on any of its layers, in diffusers' and kohya's spellings, fits its family, and one on
all of its layers fits that family alone (the tiny pipelines' transformers have every kind of layer of the real ones)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def transformer_layers(tmp_path_factory):
    import torch

    from copyscope.demo.tiny_families import tiny_family_pipeline
    from copyscope.families import FAMILIES

    out = {}
    for name, fam in FAMILIES.items():
        if fam.denoiser == "transformer":
            pipe = tiny_family_pipeline(name, 0, tmp_path_factory.mktemp(name))
            out[name] = [n for n, m in pipe.transformer.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    return out


def test_every_transformer_family_is_covered(transformer_layers):
    from copyscope.families import FAMILIES

    assert set(transformer_layers) == {n for n, f in FAMILIES.items() if f.denoiser == "transformer"}


def test_a_lora_of_any_layer_fits_its_family_and_one_of_every_layer_fits_it_alone(transformer_layers):
    from copyscope.families import lora_families

    for family, layers in transformer_layers.items():
        for layer in layers:
            kohya = f"lora_unet_{layer.replace('.', '_')}.lora_down.weight"
            for key in [f"transformer.{layer}.lora_A.weight", kohya]:
                fits = lora_families([key])
                assert fits is not None and family in fits, (family, key, fits)
        assert lora_families([f"transformer.{layer}.lora_A.weight" for layer in layers]) == {family}, family
        assert lora_families([f"lora_unet_{layer.replace('.', '_')}.lora_down.weight" for layer in layers]) == {family}, family


def test_a_file_of_several_families_is_named_by_all_of_them_in_one_readable_line():
    from copyscope.families import lora_families
    from copyscope.players.lora import LoraPlayer

    class Spec:
        name = "style"

    attention = lora_families(["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"])
    message = LoraPlayer.family_mismatch(Spec, "tiny-sana", "sana", attention)[0]
    assert message.startswith("LoRA 'style' is a Chroma, Flux.1, Flux.2, Qwen-Image or Stable Diffusion 3.x LoRA but base "
                              "'tiny-sana' is Sana (family sana)")
    assert "is a Chroma or Flux.1 LoRA" in LoraPlayer.family_mismatch(Spec, "b", "sdxl", frozenset({"flux", "chroma"}))[0]


def test_a_family_registered_in_a_test_is_told_from_its_pipeline_alone(monkeypatch):
    """Adding a family adds no LoRA names anywhere: a toy family registered here with Sana's pipeline class (and no
    other LoRA field) claims exactly the files Sana does, from diffusers' conversion and its denoiser's layers."""
    from copyscope.families import FAMILIES, lora_families
    from copyscope.families.base import Family

    toy = Family("toysana", "Toy Sana", "SanaPipeline", None, None, "transformer", ("ToySanaPipeline",))
    monkeypatch.setitem(FAMILIES, "toysana", toy)
    assert lora_families(["transformer.transformer_blocks.0.attn1.to_q.lora_A.weight"]) == {"sana", "toysana"}
    assert lora_families(["transformer.transformer_blocks.0.ff.conv_inverted.lora_A.weight"]) == {"sana", "toysana"}
    assert "toysana" not in lora_families(["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"])
