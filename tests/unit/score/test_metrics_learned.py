"""Learned-feature metrics through tiny random-weight models saved to temporary folders (no hub, no weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from copyscope.common.errors import CopyscopeError, MissingDependency
from copyscope.score.metrics import build_metrics, frechet_distance, kernel_inception_distance, list_metrics

import transformers  # noqa: E402 (a dependency: never skipped)

VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    torch.manual_seed(0)
    clip_cfg = transformers.CLIPVisionConfig(**VISION, projection_dim=16)
    transformers.CLIPVisionModelWithProjection(clip_cfg).save_pretrained(root / "clip")
    transformers.Dinov2Model(transformers.Dinov2Config(**VISION)).save_pretrained(root / "dinov2")
    torch.manual_seed(1)
    transformers.CLIPVisionModelWithProjection(clip_cfg).save_pretrained(root / "clip_other")
    # a full CLIPModel checkpoint (what openai/clip-vit-base-patch32 is): the vision tower must load from it
    full_cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                         vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=clip_cfg.to_dict(), projection_dim=16,
    )
    transformers.CLIPModel(full_cfg).save_pretrained(root / "clip_full")
    return root


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    smooth = [np.clip(np.kron(rng.random((5, 6, 3)), np.ones((8, 8, 1))), 0, 1).astype(np.float32)
              for _ in range(6)]
    odd = rng.random((50, 30, 3)).astype(np.float32)  # different size and aspect
    return smooth + [odd]


def _backbones(tiny):
    return {"clip": str(tiny / "clip"), "dinov2": str(tiny / "dinov2")}


@pytest.mark.parametrize("name", ["clip", "dinov2"])
def test_embedding_cosine_through_tiny_models(name, tiny, images):
    m = build_metrics([name], backbones=_backbones(tiny))[0]
    assert m.availability() == (True, "")
    feats = m.features(images)
    assert feats.shape == (len(images), 16 if name == "clip" else 32)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    sim = m.similarity(feats, feats)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-5)
    assert sim.shape == (len(images), len(images)) and np.all(sim <= 1.0)
    assert sim[0, 1:].min() < 1 - 1e-4  # different images are told apart
    # deterministic, and a row does not depend on the other images of the call
    fresh = build_metrics([name], backbones=_backbones(tiny))[0]
    np.testing.assert_allclose(fresh.features(images[::-1])[::-1], feats, atol=1e-6)


def test_features_equal_a_direct_model_forward(tiny, images):
    """Backbone output = the transformers model's own embedding of the preprocessed pixels."""
    ms = build_metrics(["fd_clip", "fd_dinov2"], backbones=_backbones(tiny))
    clip_bb, dino_bb = ms[0].backbone, ms[1].backbone
    clip_bb._load()
    dino_bb._load()
    x = torch.stack([clip_bb._prepare(im) for im in images[:3]])
    assert tuple(x.shape) == (3, 3, 32, 32)
    ref_clip = transformers.CLIPVisionModelWithProjection.from_pretrained(tiny / "clip").eval()
    with torch.no_grad():
        expected = ref_clip(pixel_values=x).image_embeds.numpy()
    np.testing.assert_allclose(ms[0].features(images[:3]), expected, rtol=1e-5, atol=1e-6)
    ref_dino = transformers.Dinov2Model.from_pretrained(tiny / "dinov2").eval()
    xd = torch.stack([dino_bb._prepare(im) for im in images[:3]])
    with torch.no_grad():
        out = ref_dino(pixel_values=xd)
        cls = out.last_hidden_state[:, 0].numpy()  # last_hidden_state is already layer-normed in Dinov2Model
    np.testing.assert_allclose(out.pooler_output.numpy(), cls, atol=1e-6)  # pooler_output = CLS token
    np.testing.assert_allclose(ms[1].features(images[:3]), out.pooler_output.numpy(), rtol=1e-5, atol=1e-6)


def test_clip_vision_tower_loads_from_full_clip_checkpoint(tiny, images):
    m = build_metrics(["clip"], backbones={"clip": str(tiny / "clip_full")})[0]
    feats = m.features(images[:2])
    full = transformers.CLIPModel.from_pretrained(tiny / "clip_full").eval()
    x = torch.stack([m.backbone._prepare(im) for im in images[:2]])
    with torch.no_grad():
        emb = full.get_image_features(pixel_values=x)
    emb = emb if isinstance(emb, torch.Tensor) else emb.pooler_output
    emb = torch.nn.functional.normalize(emb, dim=-1).numpy()
    np.testing.assert_allclose(feats, emb, rtol=1e-5, atol=1e-6)


def test_set_metrics_on_clip_features(tiny, images):
    fd, kid, cos = build_metrics(["fd_clip", {"name": "kid", "backbone": "clip", "subsets": 5}, "clip"],
                                 backbones=_backbones(tiny))
    assert fd.backbone is kid.backbone is cos.backbone  # one model, embeddings computed once
    assert kid.name == "kid_clip"
    g, r = fd.features(images[:4]), fd.features(images[3:])
    res = fd.distance(g, r)
    assert res.value == pytest.approx(frechet_distance(g, r))
    assert (res.n_gen, res.n_ref, res.feature_dim) == (4, 4, 16) and "rank-deficient" in res.warning
    kres = kid.distance(g, r)
    assert kres.value == pytest.approx(kernel_inception_distance(g, r, subsets=5)[0])
    assert fd.distance(g, g).value == pytest.approx(0.0, abs=1e-6)
    assert fd.distance(g, g).value < res.value


def test_config_id_includes_weights(tiny):
    a = build_metrics(["clip"], backbones={"clip": str(tiny / "clip")})[0]
    b = build_metrics(["clip"], backbones={"clip": str(tiny / "clip_other")})[0]
    a2 = build_metrics([{"name": "clip", "batch_size": 2}], backbones={"clip": str(tiny / "clip")})[0]
    assert json.loads(a.config_id())["weights"].startswith("sha256:")
    assert a.config_id() != b.config_id()
    assert a.config_id() == a2.config_id()  # batch size does not change outputs
    assert a.config_id() != build_metrics(["fd_clip"], backbones={"clip": str(tiny / "clip")})[0].config_id()


def test_hf_backbone_unavailable_paths(tmp_path, tiny):
    missing = build_metrics(["dinov2"], backbones={"dinov2": str(tmp_path / "nope")})[0]
    ok, why = missing.availability()
    assert not ok and "backbones.dinov2" in why and "not found" in why
    not_cached = build_metrics(["kid_dinov2"], backbones={"dinov2": "copyscope-test/not-cached"})[0]
    ok, why = not_cached.availability()
    assert not ok and "local Hugging Face cache" in why
    # pickle-only weights need the opt-in
    binonly = tmp_path / "binonly"
    binonly.mkdir()
    (binonly / "config.json").write_text((tiny / "clip" / "config.json").read_text())
    (binonly / "pytorch_model.bin").write_bytes(b"not really")
    ok, why = build_metrics(["clip"], backbones={"clip": str(binonly)})[0].availability()
    assert not ok and "--allow-pickle" in why
    rows = {r["name"]: r for r in list_metrics(backbones={"clip": str(tmp_path / "nope")})}
    assert not rows["clip"]["available"] and not rows["fd_clip"]["available"]
    assert "backbones.clip" in rows["kid_clip"]["reason"]
    with pytest.raises(MissingDependency, match="backbones.dinov2"):
        missing.features([np.zeros((8, 8, 3), np.float32)])


class _TinyDescriptor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, 12)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sscd_torchscript_requires_allow_pickle(tmp_path, images):
    torch.manual_seed(0)
    path = tmp_path / "sscd_tiny.torchscript.pt"
    torch.jit.script(_TinyDescriptor()).save(str(path))
    with pytest.raises(CopyscopeError, match="allow-pickle"):
        build_metrics(["sscd"], backbones={"sscd": str(path)})
    rows = {r["name"]: r for r in list_metrics(backbones={"sscd": str(path)})}
    assert not rows["sscd"]["available"] and "allow-pickle" in rows["sscd"]["reason"]
    m = build_metrics([{"name": "sscd", "size": 32}], backbones={"sscd": str(path)}, allow_pickle=True)[0]
    assert m.availability() == (True, "")
    feats = m.features(images)
    assert feats.shape == (len(images), 12)
    sim = m.similarity(feats, feats)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-5)
    assert json.loads(m.config_id())["weights"].startswith("sha256:")
