"""The placebo LoRA (copyscope.controls.placebo, ``controls: {placebo: true}``): each layer's update keeps its
singular values and gets random directions; alphas, names, shapes, dtypes and metadata are kept; layouts that are
not plain down/up pairs are refused; an audit lists the placebo as a LoRA player whose images differ from the base's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.controls.placebo import _pairs, write_placebo
from copyscope.common.errors import CopyscopeError
from copyscope.modelfiles.formats import safetensors_header

from helpers.cli_errors import assert_one_line_error
from helpers.zoo import make_zoo_file

runner = CliRunner()


def _read(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _update(tensors: dict, down: str, up: str) -> np.ndarray:
    d, u = tensors[down].to(torch.float64), tensors[up].to(torch.float64)
    return (u.reshape(u.shape[0], d.shape[0]) @ d.reshape(d.shape[0], -1)).numpy()


def _kohya_file(path: Path, seed: int = 1) -> Path:
    g = torch.Generator().manual_seed(seed)
    t = {
        "lora_unet_mid_block_attn_to_q.lora_down.weight": torch.randn(4, 32, generator=g),
        "lora_unet_mid_block_attn_to_q.lora_up.weight": torch.randn(48, 4, generator=g),
        "lora_unet_mid_block_attn_to_q.alpha": torch.tensor(2.0),
        "lora_unet_down_blocks_0_conv.lora_down.weight": torch.randn(4, 16, 3, 3, generator=g),  # a LoCon conv layer
        "lora_unet_down_blocks_0_conv.lora_up.weight": torch.randn(24, 4, 1, 1, generator=g),
        "lora_unet_down_blocks_0_conv.alpha": torch.tensor(4.0),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.randn(8, 40, generator=g),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.randn(64, 8, generator=g),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha": torch.tensor(8.0),
    }
    save_file(t, str(path), metadata={"ss_network_dim": "4", "ss_output_name": "mine"})
    return path


def _peft_file(path: Path, seed: int = 2, adapter: str = "") -> Path:
    g = torch.Generator().manual_seed(seed)
    a = f".{adapter}" if adapter else ""
    t = {
        f"unet.mid_block.attentions.0.proj_in.lora_A{a}.weight": torch.randn(4, 32, generator=g),
        f"unet.mid_block.attentions.0.proj_in.lora_B{a}.weight": torch.randn(32, 4, generator=g),
        f"unet.down_blocks.0.resnets.0.conv1.lora_A{a}.weight": torch.randn(2, 8, 3, 3, generator=g),
        f"unet.down_blocks.0.resnets.0.conv1.lora_B{a}.weight": torch.randn(16, 2, 1, 1, generator=g),
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora.down.weight": torch.randn(4, 32, generator=g),
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora.up.weight": torch.randn(32, 4, generator=g),
    }
    save_file(t, str(path), metadata={"format": "pt", "lora_adapter_metadata": json.dumps({"r": 4, "lora_alpha": 4})})
    return path


@pytest.fixture(params=["tiny", "kohya", "peft", "peft-adapter"])
def lora_file(request, tmp_path, tiny_models) -> Path:
    if request.param == "tiny":
        return Path(tiny_models["loras"][0])
    if request.param == "kohya":
        return _kohya_file(tmp_path / "kohya.safetensors")
    return _peft_file(tmp_path / "peft.safetensors", adapter="default" if request.param == "peft-adapter" else "")


def test_placebo_keeps_spectra_and_everything_else(lora_file, tmp_path):
    dst = tmp_path / "out" / "placebo.safetensors"
    stats = write_placebo(lora_file, dst, seed=0)
    src_t, src_meta = _read(lora_file)
    new_t, new_meta = _read(dst)
    assert safetensors_header(dst) == safetensors_header(lora_file)  # names, shapes, dtypes
    assert {k: v for k, v in new_meta.items() if k != "copyscope_placebo"} == src_meta
    info = json.loads(new_meta["copyscope_placebo"])
    assert info["seed"] == 0 and len(info["source_sha256"]) == 64
    pairs = _pairs(lora_file, safetensors_header(lora_file))
    assert stats["layers"] == len(pairs) > 0 and set(stats["norm_rel_diff"]) == set(pairs)
    assert stats["max_norm_rel_diff"] < 1e-5
    for k in src_t:
        if k not in pairs and k not in pairs.values():  # alphas and the rest: unchanged
            assert torch.equal(src_t[k], new_t[k]), k
    cosines = []
    for down, up in pairs.items():
        a, b = _update(src_t, down, up), _update(new_t, down, up)
        r = src_t[down].shape[0]
        np.testing.assert_allclose(np.linalg.svd(b, compute_uv=False)[:r], np.linalg.svd(a, compute_uv=False)[:r], rtol=1e-4)
        cosines.append(abs(float((a * b).sum())) / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert max(cosines) < 0.5 and float(np.mean(cosines)) < 0.2, cosines


def test_placebo_is_deterministic_for_a_seed(lora_file, tmp_path):
    write_placebo(lora_file, tmp_path / "a.safetensors", seed=3)
    write_placebo(lora_file, tmp_path / "b.safetensors", seed=3)
    write_placebo(lora_file, tmp_path / "c.safetensors", seed=4)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    a, _ = _read(tmp_path / "a.safetensors")
    c, _ = _read(tmp_path / "c.safetensors")
    pairs = _pairs(lora_file, safetensors_header(lora_file))
    for down, up in pairs.items():
        assert not torch.allclose(a[down], c[down]) and not torch.allclose(a[up], c[up]), down
    # layers differ from each other: no two downs of one shape share their directions
    downs = [a[d].flatten() for d in pairs]
    for i in range(len(downs) - 1):
        if downs[i].shape == downs[i + 1].shape:
            assert not torch.allclose(downs[i], downs[i + 1])


def test_placebo_keeps_half_precision(tmp_path):
    g = torch.Generator().manual_seed(0)
    src = tmp_path / "half.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.randn(4, 32, generator=g).to(torch.bfloat16),
               "lora_unet_x.lora_up.weight": torch.randn(32, 4, generator=g).to(torch.float16),
               "lora_unet_x.alpha": torch.tensor(4.0, dtype=torch.float16)}, str(src))
    stats = write_placebo(src, tmp_path / "p.safetensors")
    assert safetensors_header(tmp_path / "p.safetensors") == safetensors_header(src)
    assert stats["max_norm_rel_diff"] < 1e-2


@pytest.mark.parametrize("layout,tensors,word", [
    ("loha", {"lora_unet_x.hada_w1_a": (4, 4), "lora_unet_x.hada_w1_b": (4, 32), "lora_unet_x.hada_w2_a": (4, 4),
              "lora_unet_x.hada_w2_b": (4, 32), "lora_unet_x.alpha": ()}, "LoHa"),
    ("kohya-dora", {"lora_unet_x.lora_down.weight": (4, 32), "lora_unet_x.lora_up.weight": (32, 4),
                    "lora_unet_x.dora_scale": (1, 32)}, "DoRA"),
    ("peft-dora", {"unet.x.lora_A.weight": (4, 32), "unet.x.lora_B.weight": (32, 4),
                   "unet.x.lora_magnitude_vector": (32,)}, "DoRA"),
    ("unpaired", {"lora_unet_x.lora_down.weight": (4, 32), "lora_unet_y.lora_down.weight": (4, 32),
                  "lora_unet_y.lora_up.weight": (32, 4)}, r"lora_unet_x\.lora_down\.weight has no up"),
    ("rank-mismatch", {"lora_unet_x.lora_down.weight": (4, 32), "lora_unet_x.lora_up.weight": (32, 3)}, "rank 4"),
    ("full-model", {"down_blocks.0.conv.weight": (4, 4)}, "not a LoRA"),
])
def test_other_layouts_are_refused_in_one_line(tmp_path, layout, tensors, word):
    import re

    src = tmp_path / f"{layout}.safetensors"
    save_file({k: torch.ones(s) for k, s in tensors.items()}, str(src))
    with pytest.raises(CopyscopeError) as err:
        write_placebo(src, tmp_path / "p.safetensors")
    message = str(err.value)
    assert "\n" not in message and src.name in message and re.search(word, message), message
    if layout not in ("full-model",):
        assert "plain LoRA" in message
    assert not (tmp_path / "p.safetensors").exists()


def test_pickle_is_never_read(tmp_path):
    src = tmp_path / "lora.pt"
    src.write_bytes(b"not read")
    with pytest.raises(CopyscopeError, match="safetensors files only"):
        write_placebo(src, tmp_path / "p.safetensors")


def _placebo_zoo(tmp_path, tiny_models, **overrides) -> Path:
    """One LoRA, no ControlNet, 2 seeds, 1 step, ssim, the placebo on; ``overrides`` replace top-level keys."""
    import yaml

    zoo = make_zoo_file(
        tmp_path, tiny_models, loras=1, controlnet=False, metrics=["ssim"],
        generation={"resolution": 32, "steps": 1, "guidance": 3.0, "seeds": 2, "batch_size": 2, "scheduler": "ddim"},
        controls={"placebo": True, "positive": False},
    )
    data = yaml.safe_load(zoo.read_text())
    data.update(overrides)
    zoo.write_text(yaml.safe_dump(data, sort_keys=False))
    return zoo


def test_validate_and_plan_list_the_placebo(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))
    zoo = _placebo_zoo(tmp_path, tiny_models)
    r = runner.invoke(app, ["validate", str(zoo)])
    assert r.exit_code == 0 and "2 player(s)" in r.output, r.output
    r = runner.invoke(app, ["plan", str(zoo)])
    assert r.exit_code == 0, r.output
    assert "placebo" in r.output and "4 coalition(s) x 2 image(s)" in r.output, r.output
    (placebo,) = (tmp_path / "cache" / "placebo").glob("*.safetensors")  # content-addressed, written once
    assert (tmp_path / "cache" / ".copyscope-cache").is_file()  # the new cache folder is marked first
    mtime = placebo.stat().st_mtime_ns
    assert runner.invoke(app, ["validate", str(zoo)]).exit_code == 0
    assert placebo.stat().st_mtime_ns == mtime  # reused


def test_validate_with_the_source_file_missing_names_the_lora(tiny_models, tmp_path):
    zoo = _placebo_zoo(tmp_path, tiny_models, loras=[{"name": "gone", "model": str(tmp_path / "gone.safetensors")}])
    assert_one_line_error(runner.invoke(app, ["validate", str(zoo)]), r"loras\[0\]\.model", "not found")


def test_hub_source_not_cached(tiny_models, tmp_path, monkeypatch):
    """For now the placebo needs the source as a local file: validate notes it as needed before `audit`; audit refuses."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo = _placebo_zoo(tmp_path, tiny_models, loras=[{"name": "hub", "model": "someone/no-such-lora"}])
    r = runner.invoke(app, ["validate", str(zoo)])
    assert r.exit_code == 0 and "1 player(s)" in r.output, r.output
    assert "controls.placebo_from" in " ".join(r.output.split()), r.output
    assert_one_line_error(runner.invoke(app, ["audit", str(zoo)]), r"controls\.placebo_from: .*not in the local Hugging Face cache")


@pytest.mark.parametrize("controls,loras,pattern", [
    ({"placebo": True, "positive": False, "placebo_from": "nosuch"}, None, r"zoo\.yaml:\d+: controls\.placebo_from: unknown LoRA 'nosuch'"),
    ({"placebo": True, "positive": False}, [], r"controls\.placebo_from: .*lists no LoRA"),
    ({"placebo": True, "positive": False}, "named", r"loras\[0\]\.name: .*already named 'placebo'"),
])
def test_bad_placebo_settings(tiny_models, tmp_path, controls, loras, pattern):
    extra = {}
    if loras == "named":
        extra["loras"] = [{"name": "placebo", "model": str(tiny_models["loras"][0])}]
    elif loras is not None:
        extra["loras"] = loras
    zoo = _placebo_zoo(tmp_path, tiny_models, controls=controls, **extra)
    for command in ("audit", "validate"):
        assert_one_line_error(runner.invoke(app, [command, str(zoo)]), pattern)


@pytest.mark.slow
def test_audit_with_a_placebo(tiny_models, tmp_path, monkeypatch):
    from copyscope.generate.cache import ImageCache

    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))
    zoo = _placebo_zoo(tmp_path, tiny_models)
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    (game,) = rep["games"]
    assert game["players"] == ["lora0", "placebo"]
    assert set(game["metrics"]["ssim"]["shapley"]) == {"lora0", "placebo"}
    s = rep["settings"]["placebo"]
    assert s["player"] == "placebo" and s["from"] == "lora0" and s["seed"] == 0 and s["layers"] == 32
    assert s["max_norm_rel_diff"] < 1e-5
    cache = ImageCache(Path(rep["cache_dir"]))
    base = [cache.load(k) for k in game["images"][""]]
    placebo = [cache.load(k) for k in game["images"]["placebo"]]
    for x, y in zip(base, placebo):
        assert np.abs(x - y).max() > 1 / 255, "the placebo changed nothing"
