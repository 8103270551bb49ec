"""Lumina-Image 2.0 as a registered family: its LoRA names beside Z-Image's (whose transformer derives from it), its
single files, aliases, settings and call arguments (the audit through the CLI: tests/e2e/test_families_lumina2.py)."""

from __future__ import annotations

import pytest


def test_lumina2_lora_names_are_told_from_z_image_ones():
    from copyscope.families import lora_families

    # diffusers' names: Lumina 2's blocks hold attn / feed_forward.linear_<n> / norm1, Z-Image's attention / w<n> /
    # adaLN_modulation.0 (diffusers raises on either family's file loaded into the other's pipeline)
    for key in ("transformer.layers.0.attn.to_q.lora_A.weight", "transformer.noise_refiner.0.norm1.linear.lora_B.weight",
                "transformer.context_refiner.1.feed_forward.linear_3.lora_A.weight", "lora_unet_layers_1_attn_to_out_0.lora_down.weight",
                "transformer.time_caption_embed.caption_embedder.1.lora_A.weight"):
        assert lora_families([key]) == {"lumina2"}, key
    assert lora_families(["transformer.layers.0.attention.to_q.lora_A.weight"]) == {"zimage"}
    # the original names its loader converts from diffusion_model. files: whole blocks (the fused attention, split at
    # the real checkpoint's sizes, its output, the three feed-forward layers, the modulation), as its trainers write
    block = {}
    for module, (out_f, in_f) in {"attention.qkv": (3840, 2304), "attention.out": (2304, 2304), "feed_forward.w1": (9216, 2304),
                                  "feed_forward.w2": (2304, 9216), "feed_forward.w3": (9216, 2304),
                                  "adaLN_modulation.1": (9216, 256)}.items():
        block[f"diffusion_model.layers.0.{module}.lora_A.weight"] = {"dtype": "F32", "shape": [4, in_f]}
        block[f"diffusion_model.layers.0.{module}.lora_B.weight"] = {"dtype": "F32", "shape": [out_f, 4]}
    assert lora_families(block) == {"lumina2"}
    # a part of a block its converter stops on (diffusers raises a KeyError loading it): no family's
    assert lora_families({k: v for k, v in block.items() if "attention.qkv" in k}) is None
    # x_embedder / norm_out alone fit the families that have them; a block narrows them
    assert "lumina2" in lora_families(["transformer.x_embedder.lora_A.weight"])
    assert lora_families(["transformer.x_embedder.lora_A.weight", "transformer.layers.0.attn.to_k.lora_A.weight"]) == {"lumina2"}
    # the joint attention of the other families' transformer_blocks is not Lumina 2's
    assert "lumina2" not in lora_families(["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"])
    assert lora_families(["transformer.transformer_blocks.0.norm1.linear.lora_A.weight"]) == {"sd3", "flux"}


def test_single_files_are_told_and_refused_as_lumina2(tmp_path):
    from copyscope.families import family_from_single_file_keys

    lumina = ["model.diffusion_model.cap_embedder.0.weight", "model.diffusion_model.layers.0.attention.qkv.weight",
              "model.diffusion_model.layers.0.adaLN_modulation.1.weight"]
    assert family_from_single_file_keys(lumina) == "lumina2"
    assert family_from_single_file_keys(["layers.0.adaLN_modulation.0.weight", "layers.0.attention.qkv.weight"]) == "zimage"


def test_aliases_settings_and_call_arguments():
    from pydantic import ValidationError

    from copyscope.config.generation import GenerationSpec
    from copyscope.families import FAMILIES, canonical_family

    fam = FAMILIES["lumina2"]
    assert canonical_family("Lumina-Image-2.0") == "lumina2" and canonical_family("lumina") == "lumina2"
    assert fam.controlnet_pipeline is None and fam.img2img is None and fam.size_multiple == 16 and fam.flow_matching
    assert fam.call_kwargs(GenerationSpec()) == {"max_sequence_length": 256, "cfg_normalization": True, "cfg_trunc_ratio": 1.0}
    gen = GenerationSpec.model_validate({"lumina2": {"system_prompt": "", "cfg_trunc_ratio": 0.5, "cfg_normalization": False}})
    assert fam.call_kwargs(gen) == {"max_sequence_length": 256, "cfg_normalization": False, "cfg_trunc_ratio": 0.5,
                                    "system_prompt": ""}
    for bad in ({"cfg_trunc_ratio": 1.5}, {"max_sequence_length": 0}, {"cfg_normalization": "yes"}, {"steps": 3}):
        with pytest.raises(ValidationError):
            GenerationSpec.model_validate({"lumina2": bad})
    assert fam.generation_problem(GenerationSpec.model_validate({"resolution": 40})) is not None


def test_the_tiny_pipeline_is_deterministic_makes_32_px_and_its_lora_matters(tmp_path, one_torch_thread):
    """Two builds from one seed give the same pixels (no parameter left at torch.empty), at 32 px although the pipeline
    fixes vae_scale_factor at 8, and the tiny LoRA changes them."""
    import numpy as np
    import torch

    from copyscope.demo.tiny_families import tiny_family_lora, tiny_family_pipeline

    def run(pipe):
        return pipe(prompt="a painting of a cat", num_inference_steps=2, guidance_scale=4.0, height=32, width=32,
                    max_sequence_length=64, output_type="np", generator=torch.Generator().manual_seed(0)).images[0]

    pipe = tiny_family_pipeline("lumina2", 0, tmp_path / "a")
    first = run(pipe)
    assert first.shape == (32, 32, 3)
    assert np.array_equal(first, run(tiny_family_pipeline("lumina2", 0, tmp_path / "b")))
    pipe.load_lora_weights(str(tiny_family_lora("lumina2", pipe, tmp_path / "lora.safetensors", 1)))
    assert np.abs(run(pipe) - first).max() > 8 / 255
