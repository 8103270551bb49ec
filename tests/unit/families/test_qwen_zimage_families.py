"""Qwen-Image and Z-Image as registered families: their LoRA / ControlNet / single-file names, aliases, settings and
call arguments (the audits through the CLI: tests/e2e/test_families_qwen_zimage.py)."""

from __future__ import annotations


def test_lora_controlnet_and_single_file_detection():
    from copyscope.families import controlnet_family, family_from_single_file_keys, lora_families

    qwen, z = "transformer_blocks.0.img_mlp.net.0.proj", "layers.0.attention.to_q"
    attn = "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"
    # attention-only diffusers names: every family with these layers, Chroma's too (the layer check tells them apart)
    assert lora_families([attn]) == {"sd3", "flux", "chroma", "qwenimage", "flux2"}
    assert lora_families(["lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight"]) == {"sd3", "flux", "chroma", "qwenimage", "flux2"}
    for spelled in (f"transformer.{qwen}.lora_A.weight", f"lora_unet_{qwen.replace('.', '_')}.lora_down.weight"):
        assert lora_families([attn, spelled]) == {"qwenimage"}, spelled
    assert lora_families([f"diffusion_model.{qwen}.lora_A.weight"]) == {"qwenimage"}
    # Qwen-Image's converter prefixes every name of a file with diffusion_model. names by transformer., those already
    # under it too (transformer.transformer.*, which it would not load): the mixed file is no family's
    assert lora_families([attn, f"diffusion_model.{qwen}.lora_A.weight"]) is None
    # ai-toolkit's prefix before diffusers' names: the loaders that convert it claim the file (Flux.2's reads even the
    # names already under transformer., which Qwen-Image's would prefix a second time)
    assert lora_families(["diffusion_model.transformer_blocks.1.attn.to_q.lora_A.weight"]) == {"qwenimage", "flux2"}
    assert lora_families([attn, "diffusion_model.transformer_blocks.1.attn.to_q.lora_A.weight"]) == {"flux2"}
    for spelled in (f"transformer.{z}.lora_A.weight", f"diffusion_model.{z}.lora_A.weight",
                    f"lora_unet_{z.replace('.', '_')}.lora_down.weight", "transformer.noise_refiner.0.attention.to_k.lora_B.weight",
                    "diffusion_model.layers.3.attention.to_q.lora_A.weight", "lora_unet_context_refiner_0_feed_forward_w1.lora_up.weight"):
        assert lora_families([spelled]) == {"zimage"}, spelled
    # an original fused qkv: Z-Image's converter does not split it (diffusers raises on it for Z-Image)
    assert "zimage" not in (lora_families(["diffusion_model.layers.3.attention.qkv.lora_A.weight"]) or ())
    # the text encoders' layers are not Z-Image's
    assert lora_families(["text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"]) != {"zimage"}
    assert lora_families(["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"]) != {"zimage"}
    assert controlnet_family({"_class_name": "QwenImageControlNetModel"}) == "qwenimage"
    assert controlnet_family({"_class_name": "ZImageControlNetModel"}) == "zimage"
    assert controlnet_family({"_class_name": "FluxControlNetModel"}) == "flux"
    assert family_from_single_file_keys([f"model.diffusion_model.{qwen}.weight"]) == "qwenimage"
    assert family_from_single_file_keys(["model.diffusion_model.noise_refiner.0.attention.qkv.weight"]) == "zimage"
    assert family_from_single_file_keys(["model.diffusion_model.input_blocks.0.0.weight"]) == "sd"


def test_aliases_and_settings_are_registered():
    from copyscope.config.generation import GenerationSpec
    from copyscope.families import FAMILIES as REGISTRY, canonical_family

    assert canonical_family("Qwen-Image") == "qwenimage" and canonical_family("z-image") == "zimage"
    gen = GenerationSpec.model_validate({"qwenimage": {"true_cfg_scale": 1.0}})
    assert REGISTRY["qwenimage"].call_kwargs(gen) == {"max_sequence_length": 512, "true_cfg_scale": 1.0}
    assert not REGISTRY["qwenimage"].takes_negative_prompt(gen)  # no CFG: no negative prompt
    assert REGISTRY["qwenimage"].takes_negative_prompt(GenerationSpec())  # true_cfg_scale 4 by default, as diffusers'
    assert REGISTRY["zimage"].call_kwargs(GenerationSpec()) == {"max_sequence_length": 512, "cfg_normalization": False,
                                                                "cfg_truncation": 1.0}
