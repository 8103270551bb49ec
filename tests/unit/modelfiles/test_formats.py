"""copyscope.modelfiles.formats: A1111 / kohya names against diffusers' own conversion code; copyscope.modelfiles.lora_layouts: the
header-only "LoRA does not fit its base" check for every layout. No pipeline runs here (models are built on the
meta device or written as small synthetic safetensors files)."""

from __future__ import annotations

import re

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from copyscope.modelfiles import formats, lora_fit, lora_layouts
from copyscope.modelfiles.file_checks import default_config_repo


Q = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"  # 768 -> 640 in SD 1.5
TE_Q = "encoder.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def sd15_meta():
    """SD 1.5-shaped UNet, VAE and ControlNet on the meta device (names and shapes, no memory)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
        )
        cn = ControlNetModel.from_unet(unet)
    return {"unet": unet, "vae": vae, "controlnet": cn}


def _ldm_unet(unet) -> dict:
    sd = unet.state_dict()
    layers, up_attn = formats.unet_layout(sd)
    return {formats.unet_name_to_ldm(k, layers, up_attn): v for k, v in sd.items()}


def test_unet_names_round_trip_through_diffusers_own_converter(sd15_meta):
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES, convert_ldm_unet_checkpoint

    unet = sd15_meta["unet"]
    sd = unet.state_dict()
    ldm = _ldm_unet(unet)
    assert None not in ldm and len(ldm) == len(sd)
    # the key diffusers uses to recognise an SD 1.x checkpoint is where the real files have it
    assert CHECKPOINT_KEY_NAMES["v1"] in {formats.UNET_PREFIX + k for k in ldm}
    back = convert_ldm_unet_checkpoint({formats.UNET_PREFIX + k: v for k, v in ldm.items()}, dict(unet.config))
    assert set(back) == set(sd)
    assert all(back[k] is v or back[k].shape == v.shape for k, v in sd.items())
    # and our own inverse (used on single-file bases' headers) agrees
    layers = formats.ldm_unet_layers(ldm)
    assert layers == 2
    assert {formats.unet_name_from_ldm(k, layers) for k in ldm} == set(sd)


def test_vae_and_controlnet_names_match_diffusers_converters(sd15_meta):
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint, convert_ldm_vae_checkpoint

    vae = sd15_meta["vae"].state_dict()
    ldm = {formats.VAE_PREFIX + formats.vae_name_to_ldm(k, 4): v for k, v in vae.items()}
    back = convert_ldm_vae_checkpoint(ldm, dict(sd15_meta["vae"].config))
    assert set(back) == set(vae)

    cn = sd15_meta["controlnet"].state_dict()
    ldm = {formats.CONTROLNET_PREFIX + formats.controlnet_name_to_ldm(k, 2): v for k, v in cn.items()}
    assert "control_model.input_hint_block.14.weight" in ldm and "control_model.zero_convs.11.0.weight" in ldm
    back = convert_controlnet_checkpoint(ldm, dict(sd15_meta["controlnet"].config))
    assert set(back) == set(cn)


def _write(path: Path, shapes: dict[str, tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(s) for k, s in shapes.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def bases(sd15_meta, tmp_path_factory):
    """An SD 1.5 base as a diffusers folder (unet + text encoder) and as an A1111 file: every SD 1.5 UNet
    name, with the real shape for the layers the LoRAs below target and a 1-element stand-in elsewhere
    (the check reads names and shapes only)."""
    root = tmp_path_factory.mktemp("bases")
    unet = {k: (1,) for k in sd15_meta["unet"].state_dict()}
    unet[Q + ".weight"] = (640, 768)
    unet["conv_in.weight"] = (320, 4, 3, 3)  # diffusers tells inpainting models by its input channels
    te = {"encoder.layers.0.self_attn.q_proj.weight": (768, 768), "encoder.layers.0.mlp.fc1.weight": (3072, 768)}
    folder = root / "sd15"
    _write(folder / "unet" / "diffusion_pytorch_model.safetensors", unet)
    _write(folder / "text_encoder" / "model.safetensors", te)
    layers, up_attn = formats.unet_layout(unet)
    single = {formats.UNET_PREFIX + formats.unet_name_to_ldm(k, layers, up_attn): s for k, s in unet.items()}
    single.update({formats.CLIP_PREFIX + "text_model." + k: s for k, s in te.items()})
    return {"folder": folder, "single": _write(root / "sd15.safetensors", single), "root": root}




def _lora(path, layout: str, in_features=768, te_in=768, te2=False) -> Path:
    if layout == "kohya":
        shapes = {f"lora_unet_{Q.replace('.', '_')}.lora_down.weight": (4, in_features),
                  f"lora_unet_{Q.replace('.', '_')}.lora_up.weight": (640, 4), f"lora_unet_{Q.replace('.', '_')}.alpha": (),
                  f"lora_{'te1' if te2 else 'te'}_text_model_{TE_Q.replace('.', '_')}.lora_down.weight": (4, te_in),
                  f"lora_{'te1' if te2 else 'te'}_text_model_{TE_Q.replace('.', '_')}.lora_up.weight": (768, 4)}
        if te2:
            shapes[f"lora_te2_text_model_{TE_Q.replace('.', '_')}.lora_down.weight"] = (4, 1280)
    elif layout == "kohya-sgm":  # LDM names, as kohya writes them for SDXL and some tools for SD 1.x
        name = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
        shapes = {f"{name}.lora_down.weight": (4, in_features), f"{name}.lora_up.weight": (640, 4), f"{name}.alpha": ()}
    else:
        shapes = {f"unet.{Q}.lora_A.weight": (4, in_features), f"unet.{Q}.lora_B.weight": (640, 4),
                  f"text_encoder.{TE_Q}.lora_A.weight": (4, te_in), f"text_encoder.{TE_Q}.lora_B.weight": (768, 4)}
    return _write(path, shapes)


@pytest.mark.parametrize("layout", ["diffusers", "kohya", "kohya-sgm"])
@pytest.mark.parametrize("base", ["folder", "single"])
def test_lora_fits_or_names_the_mismatched_layer(bases, layout, base):
    root = bases["root"] / f"{layout}-{base}"
    assert lora_fit.lora_misfit(bases[base], _lora(root / "ok.safetensors", layout)) is None
    why = lora_fit.lora_misfit(bases[base], _lora(root / "sdxl-width.safetensors", layout, in_features=2048))
    assert why == f"layer {Q} maps 768 -> 640 features in the base, but the LoRA's " + (
        "lora_A" if layout == "diffusers" else "lora_down") + " weight has shape [4, 2048]"


@pytest.mark.parametrize("layout", ["diffusers", "kohya"])
@pytest.mark.parametrize("base", ["folder", "single"])
def test_text_encoder_part_of_a_lora_is_checked_too(bases, layout, base):
    f = _lora(bases["root"] / f"te-{layout}-{base}.safetensors", layout, te_in=1024)
    why = lora_fit.lora_misfit(bases[base], f)
    assert why == f"layer {TE_Q} maps 768 -> 768 features in the base, but the LoRA's " + (
        "lora_A" if layout == "diffusers" else "lora_down") + " weight has shape [4, 1024]"


def test_two_text_encoder_lora_on_a_one_encoder_base(bases):
    f = _lora(bases["root"] / "sdxl.safetensors", "kohya", te2=True)
    why = lora_fit.lora_misfit(bases["folder"], f)
    assert why.startswith("it has second text-encoder tensors (lora_te2_text_model_encoder_layers_0_self_attn_q_proj")
    assert "SDXL has two" in why


def test_lora_naming_no_layer_of_the_base(bases):
    f = _write(bases["root"] / "other.safetensors", {
        "lora_unet_foo_blocks_0_to_q.lora_down.weight": (4, 8), "lora_unet_foo_blocks_0_to_q.lora_up.weight": (8, 4)})
    assert lora_fit.lora_misfit(bases["single"], f) == "none of its 2 UNet tensors name a layer of the base"
    assert lora_layouts.lora_layout(formats.header(f)) == "kohya"
    loha = _write(bases["root"] / "lycoris.safetensors", {"lora_unet_x.hada_w1_a": (4, 8)})
    assert lora_layouts.lora_layout(formats.header(loha)) == "loha"  # recognised, and refused by layout (not by fit)
    assert lora_layouts.lora_unsupported(formats.header(loha), "sd").startswith("LyCORIS LoHa is not supported by diffusers ")
    assert lora_fit.lora_misfit(bases["folder"], loha) is None


def test_default_config_repo_is_what_from_single_file_would_fetch(bases, sd15_meta):
    assert default_config_repo(formats.header(bases["single"])) == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    cn = {formats.CONTROLNET_PREFIX + formats.controlnet_name_to_ldm(k, 2): (1,) for k in list(sd15_meta["controlnet"].state_dict())[:4]}
    assert default_config_repo({k: {"shape": list(s)} for k, s in cn.items()}) == "lllyasviel/control_v11p_sd15_canny"


def test_kohya_conversion_keeps_the_product_and_writes_alpha(tmp_path):
    from safetensors.torch import load_file

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 32, generator=g), torch.randn(32, 4, generator=g)
    src = tmp_path / "d.safetensors"
    save_file({f"unet.{Q}.lora_A.weight": a, f"unet.{Q}.lora_B.weight": b,
               f"text_encoder.{TE_Q}.lora_A.weight": a.clone(), f"text_encoder.{TE_Q}.lora_B.weight": b.clone()}, str(src))
    out = load_file(str(formats.lora_to_kohya(src, tmp_path / "k.safetensors", alpha=2)))
    name = "lora_unet_" + Q.replace(".", "_")
    assert out[f"{name}.alpha"].item() == 2.0
    # kohya scales by alpha / rank = 1/2: the stored up weight is twice B, so the LoRA is unchanged
    assert torch.equal(out[f"{name}.lora_up.weight"] * 0.5, b) and torch.equal(out[f"{name}.lora_down.weight"], a)
    assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in out


K = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
LAYOUT_HEADERS = {  # layout -> a header of that layout (shapes only)
    "diffusers": {"unet.a.to_q.lora_A.weight": (4, 8), "unet.a.to_q.lora_B.weight": (8, 4)},
    "diffusers-legacy": {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight": (4, 8)},
    "kohya": {f"{K}.lora_down.weight": (4, 8), f"{K}.lora_up.weight": (8, 4), f"{K}.alpha": ()},
    "kohya-mixture": {"lora_transformer_transformer_blocks_0_attn_to_q.lora_down.weight": (4, 8),
                      "lora_transformer_transformer_blocks_0_attn_to_q.lora_up.weight": (8, 4),
                      "lora_transformer_transformer_blocks_0_attn_to_q.alpha": ()},
    "kohya-transformer": {"lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight": (4, 8),
                          "lora_unet_transformer_blocks_0_attn_to_q.lora_up.weight": (8, 4)},
    "dylora": {f"{K}.lora_down.weight": (4, 8, 1, 1), f"{K}.lora_up.weight": (8, 4), f"{K}.alpha": ()},
    "dora": {f"{K}.lora_down.weight": (4, 8), f"{K}.lora_up.weight": (8, 4), f"{K}.dora_scale": (1, 8)},
    "loha": {f"{K}.hada_w1_a": (8, 4), f"{K}.hada_w1_b": (4, 8), f"{K}.hada_w2_a": (8, 4), f"{K}.hada_w2_b": (4, 8)},
    "lokr": {f"{K}.lokr_w1": (2, 2), f"{K}.lokr_w2": (4, 4)},
    "full": {f"{K}.diff": (8, 8), f"{K}.diff_b": (8,)},
    "glora": {f"{K}.a1.weight": (4, 8), f"{K}.a2.weight": (8, 4), f"{K}.b1.weight": (4, 8), f"{K}.b2.weight": (8, 4)},
    "ia3": {f"{K}.weight": (8,), f"{K}.on_input": ()},
    "diag-oft": {f"{K}.oft_blocks": (2, 4, 4), f"{K}.alpha": ()},
    "boft": {f"{K}.oft_blocks": (2, 2, 4, 4), f"{K}.alpha": ()},
    "tucker": {f"{K}.lora_down.weight": (4, 8, 1, 1), f"{K}.lora_mid.weight": (4, 4, 3, 3), f"{K}.lora_up.weight": (8, 4, 1, 1)},
    "peft-oft": {"unet.a.to_q.oft_r": (2, 4, 4)},
    "xlabs": {"double_blocks.0.processor.proj_lora1.down.weight": (4, 8)},
    "bfl": {"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": (4, 8)},
    "empty": {},
    "not-lora": {"conv_in.weight": (32, 4, 3, 3)},
}


@pytest.mark.parametrize("layout", list(LAYOUT_HEADERS))
def test_every_layout_is_recognised_and_refused_where_diffusers_cannot_load_it(tmp_path, layout):
    head = formats.header(_write(tmp_path / "x.safetensors", LAYOUT_HEADERS[layout])) if LAYOUT_HEADERS[layout] else {}
    assert lora_layouts.lora_layout(head) == layout
    if layout not in lora_layouts.LORA_LAYOUTS:
        return
    title, families = lora_layouts.LORA_LAYOUTS[layout], lora_layouts.layout_families(layout)
    from copyscope.families import FAMILIES

    for fam in FAMILIES:
        why = lora_layouts.lora_unsupported(head, fam)
        if fam in families:
            assert why is None, (layout, fam)
        else:
            assert re.match(rf"{re.escape(title)} is not supported by diffusers \S+ for {fam}( \(|$)", why), (layout, fam, why)


def test_integer_alphas_mark_a_lycoris_dylora_of_linear_layers(tmp_path):
    """lycoris' DyLoRA stores its alphas as integers (and scales by alpha / (rank blocks + 1)); with linear layers only
    there is no 2-D up weight of a convolution to tell it by (measured on Qwen-Image / Z-Image / SD3 / Flux.1 files by
    tests/e2e/test_lora_producers_families.py)."""
    k = "lora_unet_layers_0_attention_to_q"
    tensors = {f"{k}.lora_down.weight": torch.zeros(4, 8), f"{k}.lora_up.weight": torch.zeros(8, 4)}
    for alpha, layout in ((torch.tensor(2), "dylora"), (torch.tensor(2.0), "kohya")):
        save_file({**tensors, f"{k}.alpha": alpha}, str(tmp_path / "x.safetensors"))
        assert lora_layouts.lora_layout(formats.header(tmp_path / "x.safetensors")) == layout, alpha.dtype


def test_rank_mismatch_and_missing_up_weights_are_named():
    head = {f"{K}.lora_down.weight": {"shape": [4, 8]}, f"{K}.lora_up.weight": {"shape": [8, 2]}}
    assert lora_layouts.lora_rank_mismatch(head) == f"layer {K} has rank 4 in lora_down.weight [4, 8] but 2 in lora_up.weight [8, 2]"
    lone = {"unet.a.lora_A.weight": {"shape": [4, 8]}}
    assert lora_layouts.lora_rank_mismatch(lone) == "layer unet.a has a lora_A.weight tensor but no lora_B.weight"
    conv = {f"{K}.lora_down.weight": {"shape": [4, 8, 1, 1]}, f"{K}.lora_up.weight": {"shape": [8, 4]}}
    assert lora_layouts.lora_rank_mismatch(conv) is None



def test_mixed_peft_and_older_diffusers_names_are_refused_only_when_diffusers_would_drop_layers(tmp_path):
    """diffusers converts a denoiser's older names (lora.down/up) only when its first tensor (sorted) is
    not a peft name; tests/e2e/test_lora_producers_families.py measures both sides on real files."""
    q, ff = "transformer_blocks.1.attn.to_q", "transformer_blocks.0.ff.net.2"  # sorted: the ff layer first
    mixed = {f"transformer.{ff}.lora_A.weight": (4, 8), f"transformer.{ff}.lora_B.weight": (8, 4),
             f"transformer.{q}.lora.down.weight": (4, 8), f"transformer.{q}.lora.up.weight": (8, 4)}
    head = formats.header(_write(tmp_path / "mixed.safetensors", mixed))
    for fam in ("sd3", "flux"):
        why = lora_layouts.lora_unsupported(head, fam)
        assert why and why.startswith("a diffusers/peft LoRA whose transformer tensors mix peft names"), why
        assert f"transformer.{q}.lora.down.weight" in why and "2 tensors" in why
    # the first tensor with the older names: diffusers converts them all
    first_old = {k.replace("transformer_blocks.0.ff", "transformer_blocks.2.ff"): v for k, v in mixed.items()}
    assert lora_layouts.lora_unsupported(formats.header(_write(tmp_path / "first-old.safetensors", first_old)), "flux") is None
    # one spelling only: accepted
    peft_only = {k.replace(".lora.down.", ".lora_A.").replace(".lora.up.", ".lora_B."): v for k, v in mixed.items()}
    assert lora_layouts.lora_unsupported(formats.header(_write(tmp_path / "peft.safetensors", peft_only)), "flux") is None


def test_flux_lora_transformer_names_are_refused_where_diffusers_converter_stops(tmp_path):
    """diffusers' Flux "mixture" converter (lora_transformer_* names) maps a fixed list of layers; measured on
    lycoris-written files by tests/e2e/test_lora_producers_families.py."""
    q = "lora_transformer_transformer_blocks_0_attn_to_q"
    ok = {f"{q}.lora_down.weight": (4, 8), f"{q}.lora_up.weight": (8, 4), f"{q}.alpha": (),
          "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 8),
          "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": (8, 4), "lora_te1_text_model_encoder_layers_0_mlp_fc1.alpha": ()}
    assert lora_layouts.lora_unsupported(formats.header(_write(tmp_path / "ok.safetensors", ok)), "flux") is None
    bad = {  # name -> (extra tensors, what the refusal names)
        "ff": ({"lora_transformer_transformer_blocks_0_ff_net_2.lora_down.weight": (4, 8),
                "lora_transformer_transformer_blocks_0_ff_net_2.lora_up.weight": (8, 4),
                "lora_transformer_transformer_blocks_0_ff_net_2.alpha": ()}, "it stops on lora_transformer_transformer_blocks_0_ff_net_2"),
        "no-alpha": ({"lora_transformer_proj_out.lora_down.weight": (4, 8), "lora_transformer_proj_out.lora_up.weight": (8, 4)},
                     "needs an alpha per layer and stops on lora_transformer_proj_out"),
        "unet": ({"lora_unet_x.lora_down.weight": (4, 8), "lora_unet_x.lora_up.weight": (8, 4), "lora_unet_x.alpha": ()},
                 "drops the lora_unet_* layers, e.g. lora_unet_x, without a word"),
    }
    for name, (extra, said) in bad.items():
        why = lora_layouts.lora_unsupported(formats.header(_write(tmp_path / f"{name}.safetensors", {**ok, **extra})), "flux")
        assert why and why.startswith("kohya LoRA with diffusers Flux names (lora_transformer_*) is not supported") and said in why, why


def test_peft_oft_names_of_each_peft_version_are_recognised(tmp_path):
    """peft's OFT stores oft_r in older releases and oft_R.weight in newer ones (measured on a saved file by
    tests/e2e/test_lora_producers_families.py); BOFT stores boft_R."""
    for i, key in enumerate(("unet.a.to_q.oft_r", "unet.a.to_q.oft_R.weight", "transformer.a.to_q.boft_R")):
        assert lora_layouts.lora_layout(formats.header(_write(tmp_path / f"{i}.safetensors", {key: (2, 4, 4)}))) == "peft-oft", key


def test_diffusers_lora_tensors_for_a_component_the_family_loader_skips_are_refused(tmp_path):
    """SD3's loader loads transformer + the two CLIP encoders, Flux.1's transformer + the CLIP encoder: T5
    tensors would be dropped (measured on files by tests/e2e/test_lora_producers_families.py)."""
    t = {"transformer.a.to_q.lora_A.weight": (4, 8), "transformer.a.to_q.lora_B.weight": (8, 4)}
    for fam, comp, ok in (("sd3", "text_encoder_3", "text_encoder_2"), ("flux", "text_encoder_2", "text_encoder")):
        extra = {f"{comp}.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight": (4, 8)}
        why = lora_layouts.lora_unsupported(formats.header(_write(tmp_path / f"{fam}.safetensors", {**t, **extra})), fam)
        assert why and why.startswith(f"a diffusers/peft LoRA with {comp} tensors is not supported by diffusers"), why
        fine = {f"{ok}.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": (4, 8)}
        assert lora_layouts.lora_unsupported(formats.header(_write(tmp_path / f"{fam}-ok.safetensors", {**t, **fine})), fam) is None
