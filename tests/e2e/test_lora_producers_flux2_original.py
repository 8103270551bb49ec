"""Flux.2 LoRAs that name Black Forest Labs' original modules (``double_blocks.0.img_attn.qkv``, ``single_blocks.0.linear1``),
as ai-toolkit (``diffusion_model.`` + peft names) and kohya's trainers (``lora_unet_double_blocks_0_img_attn_qkv``)
write them, made by independent producers on a stand-in of the original model inside the test, on the tiny Flux.2
base (:mod:`copyscope.demo.tiny_flux2`):

* peft's ``LoraConfig`` on the stand-in, saved with peft's own names under ai-toolkit's ``diffusion_model.`` prefix;
* lycoris-lora's kohya network writer wrapping the stand-in's blocks (``lora_unet_`` + the module path).

The stand-in has the original modules' names and shapes (a fused ``qkv`` is the concatenation of diffusers'
``to_q`` / ``to_k`` / ``to_v``; ``linear1`` is diffusers' ``to_qkv_mlp_proj``), its weights are the tiny base's,
and the producer's own merge of the LoRA, split back into diffusers' modules, is the base the LoRA's audit must equal.
diffusers' Flux.2 loader converts both layouts (``_convert_non_diffusers_flux2_lora_to_diffusers``,
``_convert_kohya_flux2_lora_to_diffusers``), so copyscope must accept them (its fit check runs that same conversion,
:mod:`copyscope.modelfiles.lora_conversion`) and audit them exactly; files that conversion fails on are refused at
``validate`` in one line, and diffusers fails on them too.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from copyscope.cli import app

from helpers.cli_errors import assert_one_line_error
from helpers.producers import audit_images, perturb, producer_zoo, runner

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]
GENERATION = {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 1, "batch_size": 1, "dtype": "float32",
              "device": "cpu", "flux2": {"max_sequence_length": 64}}
# each original module -> the diffusers modules it is (several: concatenated along the output features)
ORIGINAL = {
    "double_blocks.{i}.img_attn.qkv": ["transformer_blocks.{i}.attn.to_q", "transformer_blocks.{i}.attn.to_k",
                                       "transformer_blocks.{i}.attn.to_v"],
    "double_blocks.{i}.img_attn.proj": ["transformer_blocks.{i}.attn.to_out.0"],
    "double_blocks.{i}.txt_attn.qkv": ["transformer_blocks.{i}.attn.add_q_proj", "transformer_blocks.{i}.attn.add_k_proj",
                                       "transformer_blocks.{i}.attn.add_v_proj"],
    "double_blocks.{i}.txt_attn.proj": ["transformer_blocks.{i}.attn.to_add_out"],
    "double_blocks.{i}.img_mlp.0": ["transformer_blocks.{i}.ff.linear_in"],
    "double_blocks.{i}.img_mlp.2": ["transformer_blocks.{i}.ff.linear_out"],
    "double_blocks.{i}.txt_mlp.0": ["transformer_blocks.{i}.ff_context.linear_in"],
    "double_blocks.{i}.txt_mlp.2": ["transformer_blocks.{i}.ff_context.linear_out"],
    "single_blocks.{i}.linear1": ["single_transformer_blocks.{i}.attn.to_qkv_mlp_proj"],
    "single_blocks.{i}.linear2": ["single_transformer_blocks.{i}.attn.to_out"],
}


class DoubleStreamBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.img_attn, self.txt_attn = torch.nn.Module(), torch.nn.Module()
        self.img_mlp, self.txt_mlp = torch.nn.Sequential(), torch.nn.Sequential()


class SingleStreamBlock(torch.nn.Module):
    pass


def _stand_in(transformer) -> torch.nn.Module:
    """The original model's blocks with the tiny base's weights (only the modules of ORIGINAL)."""
    weights = dict(transformer.named_parameters())
    root = torch.nn.Module()
    root.double_blocks = torch.nn.ModuleList([DoubleStreamBlock() for _ in transformer.transformer_blocks])
    root.single_blocks = torch.nn.ModuleList([SingleStreamBlock() for _ in transformer.single_transformer_blocks])
    for pattern, parts in ORIGINAL.items():
        n = len(root.double_blocks if pattern.startswith("double") else root.single_blocks)
        for i in range(n):
            w = torch.cat([weights[p.format(i=i) + ".weight"].detach() for p in parts])
            linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            linear.weight.data.copy_(w)
            parent = root.get_submodule(pattern.format(i=i).rsplit(".", 1)[0])
            name = pattern.rsplit(".", 1)[1]
            if isinstance(parent, torch.nn.Sequential):  # img_mlp.0 / img_mlp.2, with the activation between
                while len(parent) < int(name):
                    parent.append(torch.nn.Identity())
                parent.append(linear)
            else:
                setattr(parent, name, linear)
    return root


def _merged_base(base: Path, out: Path, stand_in: torch.nn.Module) -> Path:
    """A copy of ``base`` whose transformer holds the stand-in's (merged) weights, split into diffusers' modules."""
    from diffusers import Flux2Transformer2DModel

    transformer = Flux2Transformer2DModel.from_pretrained(str(base / "transformer"))
    weights = dict(transformer.named_parameters())
    with torch.no_grad():
        for pattern, parts in ORIGINAL.items():
            for i in range(len(transformer.transformer_blocks if pattern.startswith("double") else transformer.single_transformer_blocks)):
                merged = stand_in.get_submodule(pattern.format(i=i)).weight
                sizes = [weights[p.format(i=i) + ".weight"].shape[0] for p in parts]
                for p, chunk in zip(parts, torch.split(merged, sizes)):
                    weights[p.format(i=i) + ".weight"].copy_(chunk)
    shutil.copytree(base, out)
    shutil.rmtree(out / "transformer")
    transformer.save_pretrained(str(out / "transformer"), safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from copyscope.demo.tiny_families import save_tiny_family_zoo

    return save_tiny_family_zoo(tmp_path_factory.mktemp("flux2_base") / "flux2", "flux2", seed=0, n_loras=0,
                                controlnet=False)["base"]


def _transformer(base: Path):
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel.from_pretrained(str(base / "transformer"))


def _peft_ai_toolkit(base: Path, root: Path) -> tuple[Path, Path]:
    """ai-toolkit's layout: peft's names of the original modules under ``diffusion_model.`` (no alphas: scale 1)."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    stand_in = _stand_in(_transformer(base))
    targets = [p.format(i=0) for p in ORIGINAL]
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=targets), stand_in)
    perturb([p for n, p in stand_in.named_parameters() if "lora_" in n], seed=1, std=2.0)
    lora = root / "ai-toolkit.safetensors"
    save_file({"diffusion_model." + k: v.contiguous() for k, v in get_peft_model_state_dict(stand_in).items()}, str(lora))
    for module in stand_in.modules():
        if hasattr(module, "merge"):
            module.merge()  # peft's own merge into the base weights
    return lora, _merged_base(base, root / "ai-toolkit-merged", _unwrapped(stand_in))


def _unwrapped(stand_in):
    """The stand-in with peft's layers replaced by their (merged) base layers."""
    for name, module in list(stand_in.named_modules()):
        if hasattr(module, "base_layer"):
            parent = stand_in.get_submodule(name.rsplit(".", 1)[0])
            last = name.rsplit(".", 1)[1]
            if isinstance(parent, torch.nn.Sequential):
                parent[int(last)] = module.base_layer
            else:
                setattr(parent, last, module.base_layer)
    return stand_in


def _lycoris_kohya(base: Path, root: Path, dim: int) -> tuple[Path, Path]:
    """kohya's layout, written by lycoris' kohya network wrapping the stand-in's blocks."""
    from lycoris.kohya import create_network
    from lycoris.logging import logger

    logger.setLevel(logging.ERROR)
    stand_in = _stand_in(_transformer(base))
    preset = root / f"preset-{dim}.toml"
    preset.write_text('unet_target_module = ["DoubleStreamBlock", "SingleStreamBlock"]\nunet_target_name = []\n'
                      "text_encoder_target_module = []\n")
    torch.manual_seed(0)
    net = create_network(1.0, dim, 2, None, [], stand_in, preset=str(preset), algo="lora")
    net.apply_to([], stand_in, False, True)
    perturb(list(net.parameters()), seed=dim, std=2.0)
    lora = root / f"kohya-{dim}.safetensors"
    net.save_weights(str(lora), None, {})
    for module in net.unet_loras:
        module.restore()
    net.merge_to([], stand_in, load_file(str(lora)), torch.float32, "cpu")
    return lora, _merged_base(base, root / f"kohya-{dim}-merged", stand_in)


@pytest.mark.parametrize("producer", ["ai-toolkit", "kohya-rank4", "kohya-rank6"])
def test_original_named_flux2_lora_is_accepted_and_exact(base, tmp_path, producer):
    """Accepted at validate and audited with the producer's pixels (rank 6 takes the kohya converter's test of a
    block-sparse fused up weight, which reads values: the fit check then converts the real tensors)."""
    if producer == "ai-toolkit":
        lora, merged = _peft_ai_toolkit(base, tmp_path)
        assert next(iter(load_file(str(lora)))).startswith("diffusion_model.double_blocks.0.")
    else:
        lora, merged = _lycoris_kohya(base, tmp_path, int(producer[-1]))
        assert any(k.startswith("lora_unet_double_blocks_0_img_attn_qkv.") for k in load_file(str(lora)))
    zoo = producer_zoo(tmp_path / "audit", "tiny-flux2", base, lora, GENERATION)
    result = runner.invoke(app, ["validate", str(zoo)])
    assert result.exit_code == 0, result.output
    audited = audit_images(zoo)
    base_image, with_lora = audited[""], audited["style"]
    producer_image = audit_images(producer_zoo(tmp_path / "merged", "tiny-flux2", merged, None, GENERATION))["tiny-flux2"]
    assert np.abs(producer_image - base_image).max() >= 8  # the LoRA matters, else equality proves nothing
    assert np.abs(with_lora - producer_image).max() <= 1, np.abs(with_lora - producer_image).max()


def test_original_named_flux2_lora_that_diffusers_cannot_convert_is_refused(base, tmp_path):
    """A module diffusers' Flux.2 converter does not map (a per-block modulation, which Flux.1 has and Flux.2 does
    not): diffusers raises when it loads the file; copyscope refuses it at validate, quoting diffusers' Flux.2
    converter."""
    lora, _ = _peft_ai_toolkit(base, tmp_path)
    tensors = load_file(str(lora))
    tensors["diffusion_model.double_blocks.0.img_mod.lin.lora_A.weight"] = torch.zeros(4, 32)
    tensors["diffusion_model.double_blocks.0.img_mod.lin.lora_B.weight"] = torch.zeros(192, 4)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad))
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(base))
    with pytest.raises(Exception, match="should be empty"):
        pipe.load_lora_weights(str(bad))
    zoo = producer_zoo(tmp_path / "audit", "tiny-flux2", base, bad, GENERATION)
    result = runner.invoke(app, ["validate", str(zoo)])
    assert_one_line_error(result, zoo.name, r"loras\[0\]\.model", "does not fit base 'tiny-flux2'",
                          "Flux.2 LoRA loader cannot convert it", "should be empty")


def test_original_names_in_peft_spelling_are_refused_on_flux1_which_loads_none_of_them(tmp_path):
    """The same layout on Flux.1: diffusers' Flux.1 loader leaves the names as they are and attaches no layer, without
    an error (a LoRA that silently does nothing); copyscope refuses it at validate."""
    from copyscope.demo.tiny_families import save_tiny_family_zoo
    from diffusers import DiffusionPipeline

    flux = save_tiny_family_zoo(tmp_path / "flux", "flux", seed=0, n_loras=0, controlnet=False)["base"]
    pipe = DiffusionPipeline.from_pretrained(str(flux))
    to_q = pipe.transformer.transformer_blocks[0].attn.to_q.weight
    lora = tmp_path / "bfl.safetensors"
    save_file({"diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": torch.randn(4, to_q.shape[1]),
               "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": torch.randn(3 * to_q.shape[0], 4)}, str(lora))
    pipe.load_lora_weights(str(lora))
    assert not any(getattr(m, "lora_A", None) for m in pipe.transformer.modules())  # nothing attached
    zoo = producer_zoo(tmp_path / "audit", "tiny-flux", flux, lora, dict(GENERATION, flux={"max_sequence_length": 16}))
    assert_one_line_error(runner.invoke(app, ["validate", str(zoo)]), r"loras\[0\]\.model",
                          "is a Flux.2 LoRA but base 'tiny-flux' is Flux.1", "Flux.1 LoRA loader leaves 2 of its tensors under "
                          "names it does not load")


def test_original_named_flux2_lora_of_other_shapes_is_refused(base, tmp_path):
    """The layout converts, but its layers are wider than this base's (a LoRA for a larger Flux.2): refused before
    loading, naming the layer."""
    lora, _ = _peft_ai_toolkit(base, tmp_path)
    tensors = {k: (torch.zeros(v.shape[0], 64) if k.endswith("img_attn.proj.lora_A.weight") else v)
               for k, v in load_file(str(lora)).items()}
    bad = tmp_path / "wide.safetensors"
    save_file(tensors, str(bad))
    zoo = producer_zoo(tmp_path / "audit", "tiny-flux2", base, bad, GENERATION)
    result = runner.invoke(app, ["validate", str(zoo)])
    assert_one_line_error(result, zoo.name, r"loras\[0\]\.model", "does not fit base", "transformer_blocks.0.attn.to_out.0")
    assert json.dumps(str(bad))  # the file is left as it was
