"""Model sources: one pickle policy and one hub-cache lookup for zoo models and metric backbones."""

from __future__ import annotations

from pathlib import Path

from copyscope.modelfiles.sources import cached_snapshot, pickle_only_parts
from copyscope.score.metrics.backbones import CLIPBackbone

from test_lora_fits import _fake_hub_cache


def _folder(root: Path, *files: str) -> Path:
    root.mkdir(parents=True)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def test_pickle_policy_is_the_same_for_zoo_folders_and_backbones(tmp_path):
    only_bin = _folder(tmp_path / "clip-bin", "config.json", "pytorch_model.bin")
    mixed = _folder(tmp_path / "clip-both", "config.json", "pytorch_model.bin", "model.safetensors")
    pipeline = _folder(tmp_path / "pipe", "unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.safetensors")
    assert pickle_only_parts(only_bin) == ["."] and pickle_only_parts(mixed) == []
    assert pickle_only_parts(pipeline) == ["unet"]

    ok, reason = CLIPBackbone(str(only_bin)).availability()
    assert not ok and "only pickle weights: pass --allow-pickle" in reason
    assert CLIPBackbone(str(only_bin), allow_pickle=True).availability() == (True, "")
    assert CLIPBackbone(str(mixed)).availability() == (True, "")
    ok, reason = CLIPBackbone(str(_folder(tmp_path / "empty", "config.json"))).availability()
    assert not ok and "has no .safetensors weights;" in reason


def test_cached_hub_snapshot_for_zoo_models_and_backbones(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = _fake_hub_cache(tmp_path / "hf", "owner/clip", {"config.json": _folder(tmp_path / "src", "config.json") / "config.json"})
    snap = next((cache / "models--owner--clip" / "snapshots").iterdir())
    (snap / "model.safetensors").write_bytes(b"x")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cached_snapshot("owner/clip") == snap
    assert cached_snapshot("owner/absent") is None and cached_snapshot("not a repo id") is None
    backbone = CLIPBackbone("owner/clip")
    assert backbone.availability() == (True, "")
    assert backbone.fingerprint()["weights"] == f"hub:owner/clip@{snap.name}"
    ok, reason = CLIPBackbone("owner/absent").availability()
    assert not ok and "neither a local folder nor a hub id in the local Hugging Face cache" in reason
