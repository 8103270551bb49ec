"""Model files whose fault the header (or a small config) shows, refused by ``copyscope validate``
before any model loads (issue 27): LoRA files with no tensors, a full UNet given as a LoRA, down/up
ranks that disagree, layers absent from the base, overlapping tensor offsets, unknown dtypes, a FIFO
given as a LoRA; textual inversions of the wrong width, with several tensors, sharing a token, or
whose token is in a prompt or the tokenizer's vocabulary, a folder without weight_name; a
model_index.json that is not JSON or not UTF-8; a ControlNet config.json that is a list. Every case:
one error line naming file, line and key, exit code 2, no traceback, no model loaded."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from copyscope.cli import app

from helpers.cli_errors import Z, assert_one_line_error, zoo_data

runner = CliRunner()
ATTN = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"  # a layer of the tiny base (32 features)


@pytest.fixture(autouse=True)
def nothing_loads(monkeypatch):
    monkeypatch.setattr("copyscope.generate.engine.CoalitionEngine.load", lambda self: pytest.fail("a model loaded"))


def _save(path: Path, tensors: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.randn(*s) * 0.01 if s else torch.tensor(1.0) for k, s in tensors.items()}, str(path))
    return path


def _raw(path: Path, header: dict, data: bytes) -> Path:
    """A safetensors file with a hand-written header (what no writer produces)."""
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + data)
    return path


def _validate(tmp: Path, data: dict):
    zoo = tmp / "zoo.yaml"
    zoo.write_text(yaml.safe_dump(data, sort_keys=False))
    return runner.invoke(app, ["validate", str(zoo)])


def _lora_case(tmp, a, lora):
    data = zoo_data(tmp, a)
    data["loras"] = [{"name": "lora0", "model": str(lora)}]
    return data


def _fifo(tmp: Path) -> Path:
    path = tmp / "lora.safetensors"
    os.mkfifo(path)
    return path


LORA_CASES = [
    ("no tensors", lambda t: _raw(t / "empty.safetensors", {}, b""),
     r"loras\[0\]\.model: empty\.safetensors holds no tensors; expected a LoRA's weights"),
    ("a full UNet as a LoRA", lambda t: _save(t / "unet.safetensors", {"conv_in.weight": (32, 4, 3, 3), "conv_in.bias": (32,)}),
     r"loras\[0\]\.model: unet\.safetensors holds a full UNet \(2 tensors, e\.g\. conv_in\.bias\), not a LoRA; expected one of "
     r"the layouts diffusers/peft LoRA, .*kohya LoRA/LoCon"),
    ("kohya ranks disagree", lambda t: _save(t / "rank.safetensors", {
        "lora_unet_" + ATTN.replace(".", "_") + "_to_q.lora_down.weight": (4, 32),
        "lora_unet_" + ATTN.replace(".", "_") + "_to_q.lora_up.weight": (32, 8)}),
     r"loras\[0\]\.model: LoRA 'lora0' is inconsistent: layer lora_unet_\w+_to_q has rank 4 in lora_down\.weight \[4, 32\] "
     r"but 8 in lora_up\.weight \[32, 8\]"),
    ("half the layers absent from the base", lambda t: _save(t / "half.safetensors", {
        f"unet.{ATTN}.to_q.lora_A.weight": (4, 32), f"unet.{ATTN}.to_q.lora_B.weight": (32, 4),
        "unet.down_blocks.7.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": (4, 32),
        "unet.down_blocks.7.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": (32, 4)}),
     r"loras\[0\]\.model: LoRA 'lora0' does not fit base 'tiny-sd': 2 of its 4 UNet tensors name no layer of the base "
     r"\(first: unet\.down_blocks\.7\.\S+\), so only part of the LoRA would apply"),
    ("overlapping tensor offsets", lambda t: _raw(t / "overlap.safetensors", {
        f"unet.{ATTN}.to_q.lora_A.weight": {"dtype": "F32", "shape": [4, 32], "data_offsets": [0, 512]},
        f"unet.{ATTN}.to_q.lora_B.weight": {"dtype": "F32", "shape": [32, 4], "data_offsets": [256, 768]}}, bytes(768)),
     r"loras\[0\]\.model: overlap\.safetensors is not a valid \.safetensors file \(tensor '\S+lora_B\.weight' overlaps the "
     r"tensor before it"),
    ("unknown dtype", lambda t: _raw(t / "dtype.safetensors", {
        f"unet.{ATTN}.to_q.lora_A.weight": {"dtype": "Q7", "shape": [4, 32], "data_offsets": [0, 512]}}, bytes(512)),
     r"loras\[0\]\.model: dtype\.safetensors is not a valid \.safetensors file \(tensor '\S+' has unknown dtype 'Q7'\)"),
    ("a FIFO as a LoRA", _fifo,
     r"loras\[0\]\.model: model path '.*lora\.safetensors' is not a regular file or folder \(a FIFO, socket or device\)"),
]


@pytest.mark.parametrize("case", LORA_CASES, ids=[c[0] for c in LORA_CASES])
def test_bad_lora_files_are_refused_at_validate(tiny_models, tmp_path, case):
    _, make, pattern = case
    out = assert_one_line_error(_validate(tmp_path, _lora_case(tmp_path, tiny_models, make(tmp_path))), Z + r":\d+: " + pattern)
    assert "offline" not in out


def _ti(tmp, a, files: list[tuple[str, Path, str | None]], prompt="a painting of a cat"):
    data = zoo_data(tmp, a)
    data["loras"] = []
    data["prompts"][0]["text"] = prompt
    data["textual_inversions"] = [{"name": n, "model": str(p), **({"token": tok} if tok else {})} for n, p, tok in files]
    return data


def _emb(t: Path, shape=(1, 32), name="emb.safetensors", keys=("emb_params",)) -> Path:
    return _save(t / name, {k: shape for k in keys})


TI_CASES = [
    ("a 64-wide embedding for a 32-wide text encoder", lambda t, a: _ti(t, a, [("style", _emb(t, (1, 64)), None)]),
     r"textual_inversions\[0\]\.model: emb\.safetensors: its embedding has shape \[1, 64\], but base 'tiny-sd''s text "
     r"encoder is 32 wide"),
    ("two tensors in one file", lambda t, a: _ti(t, a, [("style", _emb(t, keys=("a", "b")), None)]),
     r"textual_inversions\[0\]\.model: emb\.safetensors holds 2 tensors \(a, b\); expected one embedding"),
    ("two embeddings with one token", lambda t, a: _ti(t, a, [("one", _emb(t), "<tok>"), ("two", _emb(t, name="e2.safetensors"), "<tok>")]),
     r"textual_inversions\[1\]\.token: textual inversions 'one' and 'two' both use the token '<tok>'"),
    ("a token in the prompt", lambda t, a: _ti(t, a, [("style", _emb(t), "<style>")], prompt="a painting of a cat <style>"),
     r"textual_inversions\[0\]\.token: token '<style>' occurs in the text of prompt 'p' .*active in every coalition"),
    ("an ordinary prompt word as the token", lambda t, a: _ti(t, a, [("style", _emb(t), "cat")]),
     r"textual_inversions\[0\]\.token: token 'cat' occurs in the text of prompt 'p'"),
    ("a vocabulary word as the token", lambda t, a: _ti(t, a, [("style", _emb(t), "dog")]),
     r"textual_inversions\[0\]\.token: token 'dog' is an ordinary word of base 'tiny-sd''s tokenizer"),
    ("a folder without weight_name", lambda t, a: _ti(t, a, [("style", _emb(t / "embs").parent, None)]),
     r"textual_inversions\[0\]\.weight_name: '.*embs' is a folder; set weight_name to the embedding file in it"),
]


@pytest.mark.parametrize("case", TI_CASES, ids=[c[0] for c in TI_CASES])
def test_bad_textual_inversions_are_refused_at_validate(tiny_models, tmp_path, case):
    _, make, pattern = case
    assert_one_line_error(_validate(tmp_path, make(tmp_path, tiny_models)), Z + r":\d+: " + pattern)


def test_a_good_textual_inversion_passes_validate(tiny_models, tmp_path):
    assert _validate(tmp_path, _ti(tmp_path, tiny_models, [("style", _emb(tmp_path), None)])).exit_code == 0


def _base_copy(tmp: Path, a: dict, model_index: bytes) -> Path:
    base = tmp / "base"
    shutil.copytree(a["base"], base)
    (base / "model_index.json").write_bytes(model_index)
    return base


@pytest.mark.parametrize("content, why", [(b"{not json", "is not a JSON file"), (b"\xff\xfe{}", "is not a JSON file")],
                         ids=["not JSON", "not UTF-8"])
def test_model_index_that_is_not_json(tiny_models, tmp_path, content, why):
    data = zoo_data(tmp_path, tiny_models)
    data["bases"][0]["model"] = str(_base_copy(tmp_path, tiny_models, content))
    assert_one_line_error(_validate(tmp_path, data), Z + r":\d+: bases\[0\]\.model: .*model_index\.json " + why)


def test_controlnet_config_that_is_a_list(tiny_models, tmp_path):
    cn = tmp_path / "cn"
    shutil.copytree(tiny_models["controlnet"], cn)
    (cn / "config.json").write_text("[1, 2]")
    data = zoo_data(tmp_path, tiny_models, controlnet=True)
    data["controlnets"][0]["model"] = str(cn)
    assert_one_line_error(_validate(tmp_path, data),
                          Z + r":\d+: controlnets\[0\]\.model: .*config\.json holds a JSON list, not an object")


def _single_file(tmp: Path, a: dict, edit) -> tuple[Path, Path]:
    """The tiny base as an A1111 single file, its keys edited by ``edit``, and its config folder."""
    from safetensors.torch import load_file

    from copyscope.modelfiles import formats

    f = formats.pipeline_to_single_file(a["base"], tmp / "single" / "tiny.safetensors")
    tensors = edit(load_file(str(f)))
    f.unlink()
    save_file(tensors, str(f))
    return f, formats.config_folder(a["base"], tmp / "single" / "config")


def _no_text_model(t: dict) -> dict:
    # diffusers' converter under transformers >= 5.6: CLIPTextModel's own names, without text_model.
    pre = "cond_stage_model.transformer."
    return {(pre + k[len(pre + "text_model."):] if k.startswith(pre + "text_model.") else k): v for k, v in t.items()}


def _sd15_blocks(t: dict) -> dict:
    # diffusers' converter script hard-codes SD 1.5's two layers per block; the tiny UNet has one
    from copyscope.modelfiles import formats

    unet = {formats.unet_name_from_ldm(k[len(formats.UNET_PREFIX):], 1): v for k, v in t.items() if k.startswith(formats.UNET_PREFIX)}
    _, up_attn = formats.unet_layout(unet)
    out = {k: v for k, v in t.items() if not k.startswith(formats.UNET_PREFIX)}
    out.update({formats.UNET_PREFIX + formats.unet_name_to_ldm(k, 2, up_attn): v for k, v in unet.items()})
    return out


SINGLE_FILE_CASES = [
    ("text encoder without text_model.", _no_text_model,
     r"its text-encoder tensors lack the text_model\. level \(cond_stage_model\.transformer\.\S+; diffusers' converter "
     r"writes them so under transformers >= 5\.6\)"),
    ("SD 1.5 block layout for another UNet", _sd15_blocks,
     r"its UNet does not match the config's \(unet/config\.json\): \d+ of the \d+ tensors it needs are missing \(first: "
     r"down_blocks\.0\.downsamplers\.0\.conv\.weight\)"),
    ("no VAE", lambda t: {k: v for k, v in t.items() if not k.startswith("first_stage_model.")},
     r"it has no VAE tensors \(first_stage_model\.\*\)"),
    ("a wider text-encoder layer", lambda t: {**t, "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.ones(48)},
     r"its text encoder does not match the config's \(text_encoder/config\.json\): final_layer_norm\.weight has shape \[48\] "
     r"in the file but \[32\] in the config's model"),
]


@pytest.mark.parametrize("case", SINGLE_FILE_CASES, ids=[c[0] for c in SINGLE_FILE_CASES])
def test_single_files_that_do_not_fit_their_config_are_refused_at_validate(tiny_models, tmp_path, case):
    _, edit, pattern = case
    f, cfg = _single_file(tmp_path, tiny_models, edit)
    data = zoo_data(tmp_path, tiny_models)
    data["bases"][0].update(model=str(f), config=str(cfg))
    assert_one_line_error(_validate(tmp_path, data),
                          Z + r":\d+: bases\[0\]\.model: single-file checkpoint tiny\.safetensors cannot load with config .*: " + pattern)


@pytest.mark.parametrize("edit", [_no_text_model, _sd15_blocks], ids=["text encoder without text_model.", "SD 1.5 block layout"])
def test_diffusers_itself_cannot_load_the_refused_single_files(tiny_models, tmp_path, edit):
    """The refusals are needed: diffusers' from_single_file fails on these files (after loading), or loads
    a model whose weights are not the file's."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    f, cfg = _single_file(tmp_path, tiny_models, edit)
    try:
        pipe = StableDiffusionPipeline.from_single_file(str(f), config=str(cfg), safety_checker=None, requires_safety_checker=False)
    except Exception:  # noqa: BLE001 - any failure is what the refusal spares the user
        return
    ref = load_file(str(tiny_models["base"] / "unet" / "diffusion_pytorch_model.safetensors"))
    te = load_file(str(tiny_models["base"] / "text_encoder" / "model.safetensors"))
    unet_ok = all(torch.equal(pipe.unet.state_dict()[k], v) for k, v in ref.items())
    te_sd = {k.removeprefix("text_model."): v for k, v in pipe.text_encoder.state_dict().items()}
    te_ok = all(torch.equal(te_sd[k.removeprefix("text_model.")], v) for k, v in te.items() if k.removeprefix("text_model.") in te_sd)
    assert not (unet_ok and te_ok), "diffusers now loads this file as written: the refusal is not needed"


def test_the_lora_loader_is_part_of_the_lora_identity(tiny_models, tmp_path):
    """Images of a LoRA made by the old loading (a dict of tensors: peft's lora_alpha lost, DoRA dropped)
    are never reused: the loader's version is in every LoRA's identity, hence in its image keys."""
    from copyscope.audit import prepare_audit
    from copyscope.generate import CoalitionEngine
    from copyscope.players.lora import LOADER_VERSION

    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump(zoo_data(tmp_path, tiny_models), sort_keys=False))
    prep = prepare_audit(zoo)
    ident = CoalitionEngine(prep.zoo, prep.plan.games[0]).identities()["loras"]["lora0"]
    assert LOADER_VERSION >= 2 and ident["loader"] == LOADER_VERSION


def test_single_file_controlnet_that_does_not_fit_its_config(tiny_models, tmp_path):
    from safetensors.torch import load_file

    from copyscope.modelfiles import formats

    f = formats.controlnet_to_single_file(tiny_models["controlnet"], tmp_path / "cn" / "depth.safetensors")
    cfg = formats.config_folder(tiny_models["controlnet"], tmp_path / "cn" / "config")
    data = zoo_data(tmp_path, tiny_models, controlnet=True)
    data["controlnets"][0].update(model=str(f), config=str(cfg))
    assert _validate(tmp_path, data).exit_code == 0  # as written, it fits
    tensors = load_file(str(f))
    zero = "control_model.zero_convs.0.0.weight"  # a ControlNet trained for a wider UNet
    tensors[zero] = torch.zeros(48, *tensors[zero].shape[1:])
    f.unlink()
    save_file(tensors, str(f))
    assert_one_line_error(_validate(tmp_path, data),
                          Z + r":\d+: controlnets\[0\]\.model: single-file ControlNet depth\.safetensors cannot load with config .*: "
                          r"it does not match the config's ControlNet: controlnet_down_blocks\.0\.weight has shape \[48, 32, 1, 1\] in "
                          r"the file but \[32, 32, 1, 1\] in the config's model")


def _folder_case(tmp, a, make):
    data = zoo_data(tmp, a)
    model, weight_name = make(tmp, a)
    data["loras"] = [{"name": "lora0", "model": str(model), **({"weight_name": weight_name} if weight_name else {})}]
    return data


def _unet_folder(tmp, a):
    shutil.copytree(a["base"] / "unet", tmp / "unet")
    return tmp / "unet", None


def _missing_weight_name(tmp, a):
    (tmp / "loras").mkdir()
    return tmp / "loras", "style.safetensors"


def _fifo_weight_name(tmp, a):
    (tmp / "loras").mkdir()
    os.mkfifo(tmp / "loras" / "style.safetensors")
    return tmp / "loras", "style.safetensors"


def _broken_base_weights(tmp, a):
    base = tmp / "base"
    shutil.copytree(a["base"], base)
    f = base / "unet" / "diffusion_pytorch_model.safetensors"
    raw = f.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    first = sorted(k for k in head if k != "__metadata__")[0]
    head[first]["dtype"] = "F4"  # a dtype this safetensors does not read
    text = json.dumps(head).encode()
    f.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    return base


FOLDER_CASES = [
    ("a UNet folder as a LoRA", _unet_folder,
     r"loras\[0\]\.model: '.*unet' is a diffusers model folder \(it has config\.json\), not a LoRA"),
    ("weight_name not in the folder", _missing_weight_name,
     r"loras\[0\]\.weight_name: no file 'style\.safetensors' in '.*loras'"),
    ("weight_name is a FIFO", _fifo_weight_name,
     r"loras\[0\]\.weight_name: style\.safetensors in '.*loras' is not a regular file"),
]


@pytest.mark.parametrize("case", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_bad_lora_folders_are_refused_at_validate(tiny_models, tmp_path, case):
    _, make, pattern = case
    assert_one_line_error(_validate(tmp_path, _folder_case(tmp_path, tiny_models, make)), Z + r":\d+: " + pattern)


def test_a_base_folder_with_a_broken_weights_header_is_refused_at_validate(tiny_models, tmp_path):
    data = zoo_data(tmp_path, tiny_models)
    data["bases"][0]["model"] = str(_broken_base_weights(tmp_path, tiny_models))
    assert_one_line_error(_validate(tmp_path, data),
                          Z + r":\d+: bases\[0\]\.model: unet/diffusion_pytorch_model\.safetensors is not a valid \.safetensors "
                          r"file \(tensor '\S+' has unknown dtype 'F4'\)")
