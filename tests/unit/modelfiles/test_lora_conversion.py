"""copyscope.modelfiles.lora_conversion: a family's diffusers LoRA conversion run over a header (meta tensors) gives
the names and shapes the same conversion gives over the real tensors; a conversion that reads values falls back to
the file's tensors; a conversion that raises is carried as the view's error."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from copyscope.families import FAMILIES
from copyscope.modelfiles.formats import safetensors_header
from copyscope.modelfiles.lora_conversion import diffusers_view


def _real(family: str, path) -> dict:
    import diffusers

    out = getattr(diffusers, FAMILIES[family].pipeline).lora_state_dict(load_file(str(path)))
    out = out[0] if isinstance(out, tuple) else out
    return {k: tuple(v.shape) for k, v in out.items()}


def _kohya_flux(path, rank: int, blocks: str = "double"):
    g = torch.Generator().manual_seed(rank)
    sd = {}
    if blocks == "double":
        for name, (out_f, in_f) in {"img_attn_qkv": (96, 32), "img_attn_proj": (32, 32), "txt_attn_qkv": (96, 32)}.items():
            key = f"lora_unet_double_blocks_0_{name}"
            sd[key + ".lora_down.weight"] = torch.randn(rank, in_f, generator=g)
            sd[key + ".lora_up.weight"] = torch.randn(out_f, rank, generator=g)
            sd[key + ".alpha"] = torch.tensor(float(rank) / 2)
    save_file(sd, str(path))
    return path


@pytest.mark.parametrize("family", ["flux", "chroma"])
def test_meta_view_equals_the_conversion_of_the_real_tensors(tmp_path, family):
    f = _kohya_flux(tmp_path / "k.safetensors", rank=4)
    view = diffusers_view(safetensors_header(f), FAMILIES[family], f)
    assert view.error is None and not view.undetermined
    assert view.shapes == _real(family, f)
    assert view.component("transformer")  # converted into diffusers' transformer names
    assert all(k.startswith("transformer.") for k in view.shapes)


def test_a_conversion_that_reads_values_falls_back_to_the_file(tmp_path):
    """Flux.2's kohya converter tests whether a fused up weight is block-sparse when the rank divides by 3 (it reads
    values): from the header alone the view is undetermined; with the file it is the real conversion."""
    f = _kohya_flux(tmp_path / "k6.safetensors", rank=6)
    head = safetensors_header(f)
    assert diffusers_view(head, FAMILIES["flux2"]).undetermined
    view = diffusers_view(head, FAMILIES["flux2"], f)
    assert view.error is None and view.shapes == _real("flux2", f)
    assert "transformer.transformer_blocks.0.attn.to_q.lora_B.weight" in view.shapes


def test_a_conversion_that_raises_is_the_views_error(tmp_path):
    f = tmp_path / "odd.safetensors"
    save_file({"diffusion_model.double_blocks.0.img_mod.lin.lora_A.weight": torch.zeros(4, 32),
               "diffusion_model.double_blocks.0.img_mod.lin.lora_B.weight": torch.zeros(192, 4)}, str(f))
    view = diffusers_view(safetensors_header(f), FAMILIES["flux2"], f)
    assert view.shapes == {} and "should be empty" in view.error
    import diffusers

    with pytest.raises(ValueError, match="should be empty"):
        diffusers.Flux2Pipeline.lora_state_dict(load_file(str(f)))


def test_the_alphas_are_read_from_the_file(tmp_path):
    """1-element tensors are the file's (a conversion that scales by alpha / rank sees the real alpha)."""
    from copyscope.modelfiles.lora_conversion import _meta_state_dict

    f = _kohya_flux(tmp_path / "k.safetensors", rank=4)
    sd = _meta_state_dict(safetensors_header(f), f)
    assert float(sd["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 2.0
    assert sd["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"].is_meta
    assert float(_meta_state_dict(safetensors_header(f), None)["lora_unet_double_blocks_0_img_attn_qkv.alpha"]) == 1.0
