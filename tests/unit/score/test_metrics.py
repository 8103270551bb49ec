"""Metric suite: pixel / hash / SSIM metrics against reference implementations, set statistics against direct
computations, aggregation, fusion, registry errors. Learned backbones: tests/unit/score/test_metrics_learned.py."""

from __future__ import annotations

import importlib.util
import itertools

import imagehash
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import skimage.data
from PIL import Image
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from copyscope.common.errors import CopyscopeError, MissingDependency
from copyscope.score.metrics import (
    DEFAULT_METRICS,
    METRIC_NAMES,
    Metric,
    SetResult,
    aggregate_references,
    build_metrics,
    cosine_similarity,
    dhash_similarity,
    frechet_distance,
    fusion,
    hash_bits,
    histogram_similarity,
    kernel_inception_distance,
    list_metrics,
    mmd2_unbiased,
    phash_similarity,
    phash_soft_similarity,
    rgb_ssim,
    ssim,
)
from copyscope.score.metrics._imageops import from_pil, resize

# ------------------------------------------------------------------------------------------------ fixtures


def _u8(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def natural():
    """Colour images shipped with scikit-image (no download), float32 RGB in [0, 1]."""
    return {
        "astronaut": _u8(skimage.data.astronaut()),  # 512x512
        "chelsea": _u8(skimage.data.chelsea()),  # 300x451
        "coffee": _u8(skimage.data.coffee()),  # 400x600
        "rocket": _u8(skimage.data.rocket()),  # 427x640
    }


@pytest.fixture(scope="module")
def rng_images():
    rng = np.random.default_rng(1234)
    return [rng.random((48, 48, 3)).astype(np.float32) for _ in range(4)]


def _skimage_ssim(x: np.ndarray, y: np.ndarray, channel_axis=None) -> float:
    return structural_similarity(
        x.astype(np.float64), y.astype(np.float64), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0, channel_axis=channel_axis,
    )


# ------------------------------------------------------------------------------------------------ SSIM


def test_ssim_matches_skimage_on_random_images(rng_images):
    a, b = rng_images[0], rng_images[1]
    c = np.clip(a * 0.7 + b * 0.3, 0, 1).astype(np.float32)  # correlated pair: SSIM far from 0
    for x, y in [(a, b), (a, c), (b, c)]:
        # Images already at the working size, so no resize: only the metric itself is compared.
        expected = _skimage_ssim(rgb2gray(x), rgb2gray(y))
        assert ssim(x, y, size=48) == pytest.approx(expected, abs=1e-5)
    assert ssim(a, c, size=48) > 0.5 > ssim(a, b, size=48)


def test_rgb_ssim_matches_skimage_channel_axis(rng_images, natural):
    a, b = rng_images[0], rng_images[2]
    assert rgb_ssim(a, b, size=48) == pytest.approx(_skimage_ssim(a, b, channel_axis=-1), abs=1e-6)
    x = natural["astronaut"][100:228, 200:328]
    y = natural["astronaut"][104:232, 203:331]  # shifted crop: partly similar
    expected = _skimage_ssim(x, y, channel_axis=-1)
    assert rgb_ssim(x, y, size=128) == pytest.approx(expected, abs=1e-6)
    assert 0.05 < expected < 0.95  # a non-trivial case


def test_ssim_matches_skimage_on_natural_images_after_resize(natural):
    size = 96
    ast, cat = natural["astronaut"], natural["chelsea"]
    m = build_metrics([{"name": "ssim", "size": size}])[0]
    feats = m.features([ast, cat])
    planes = feats.reshape(2, size, size)
    # the features are the grey images at size x size ...
    assert planes.shape == (2, size, size)
    ref_grey = resize(rgb2gray(ast)[..., None].astype(np.float32), (size, size))[..., 0]
    assert np.abs(planes[0] - ref_grey).max() < 1e-5
    # ... and the similarity is skimage's SSIM of those.
    sim = m.similarity(feats, feats)
    assert sim[0, 1] == pytest.approx(_skimage_ssim(planes[0], planes[1]), abs=1e-6)
    assert sim[0, 0] == pytest.approx(1.0, abs=1e-9)
    assert np.allclose(sim, sim.T)


def test_ssim_resizes_by_interpolation_not_reshape(natural):
    ast = natural["astronaut"]
    smaller = resize(ast, (300, 300))  # same picture, different size (not square-compatible with np.resize)
    scrambled = np.resize(smaller, ast.shape)  # what the original CopyScope did
    assert ssim(ast, smaller, size=128) > 0.9
    assert rgb_ssim(ast, smaller, size=128) > 0.9
    assert ssim(ast, scrambled, size=128) < 0.5
    assert ssim(ast, natural["chelsea"], size=128) < 0.5


def test_ssim_rejects_size_below_window():
    with pytest.raises(CopyscopeError, match="size"):
        build_metrics([{"name": "ssim", "size": 8}])


# ------------------------------------------------------------------------------------------------ hashes


@pytest.mark.parametrize("method", ["dhash", "phash", "phash256"])
def test_hashes_match_imagehash_bit_for_bit(method, natural, rng_images):
    fn = getattr(imagehash, method) if method != "phash256" else (lambda pil: imagehash.phash(pil, hash_size=16))
    bits = 256 if method == "phash256" else 64
    pils = [Image.fromarray(np.rint(im * 255).astype(np.uint8)) for im in natural.values()]
    pils.append(Image.fromarray((rng_images[0] * 255).astype(np.uint8)))
    for pil in pils:
        assert np.array_equal(hash_bits(from_pil(pil), method), fn(pil).hash.ravel().astype(np.uint8))
    # similarity = 1 - Hamming / bits on imagehash's own Hamming distance (ImageHash.__sub__)
    m = build_metrics(["phash_256" if method == "phash256" else method])[0]
    imgs = [from_pil(p) for p in pils]
    feats = m.features(imgs)
    assert feats.shape == (len(pils), bits) == (len(pils), m.feature_dim_hint())
    sim = m.similarity(feats, feats)
    for i, j in itertools.product(range(len(pils)), repeat=2):
        assert sim[i, j] == pytest.approx(1 - (fn(pils[i]) - fn(pils[j])) / bits)
    if method != "phash256":
        simfn = dhash_similarity if method == "dhash" else phash_similarity
        assert simfn(imgs[0], imgs[1]) == pytest.approx(sim[0, 1])


def test_phash_soft_is_phash_before_binarising(natural, rng_images):
    """phash_soft's coefficients are computed independently here (scipy's DCT of PIL's 32x32 grey image): their
    signs are imagehash.phash's bits but the DC one, and the similarity is their cosine."""
    import scipy.fftpack

    pils = [Image.fromarray(np.rint(im * 255).astype(np.uint8)) for im in natural.values()]
    pils.append(Image.fromarray((rng_images[0] * 255).astype(np.uint8)))
    vecs = []
    for pil in pils:
        px = np.asarray(pil.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
        low = scipy.fftpack.dct(scipy.fftpack.dct(px, axis=0), axis=1)[:8, :8]
        v = (low - np.median(low)).ravel()[1:]
        vecs.append(v / np.linalg.norm(v))
        bits = imagehash.phash(pil).hash.ravel()
        assert np.array_equal(bits[1:], v > 0) and bits[0]  # the DC coefficient is always above the median
    imgs = [from_pil(p) for p in pils]
    m = build_metrics(["phash_soft"])[0]
    sim = m.similarity(m.features(imgs), m.features(imgs))
    for i, j in itertools.product(range(len(pils)), repeat=2):
        assert sim[i, j] == pytest.approx(vecs[i] @ vecs[j], abs=1e-6)
    assert phash_soft_similarity(imgs[0], imgs[1]) == pytest.approx(sim[0, 1], abs=1e-6)
    assert m.value_range == (-1.0, 1.0) and np.all(np.abs(sim) <= 1.0)


def test_phash_soft_ignores_brightness_and_contrast_but_not_content(natural):
    a = resize(natural["astronaut"], (64, 64))
    darker = np.clip(0.6 * a + 0.1, 0, 1).astype(np.float32)  # contrast and brightness, no clipping
    assert phash_soft_similarity(a, darker) > 0.99
    assert phash_soft_similarity(a, a[:, ::-1].copy()) < 0.9  # mirrored: a different arrangement
    flat = np.full((16, 16, 3), 0.4, np.float32)
    assert phash_soft_similarity(flat, a) == 0.0  # a flat image has no structure to compare


# ------------------------------------------------------------------------------------------------ cosine, histogram


def test_cosine_is_mean_centred(rng_images):
    a = (0.5 + 0.5 * rng_images[0]).astype(np.float32)  # two unrelated images, both bright
    b = (0.5 + 0.5 * rng_images[1]).astype(np.float32)
    ra, rb = resize(a, (64, 64)).ravel(), resize(b, (64, 64)).ravel()
    uncentred = ra @ rb / np.linalg.norm(ra) / np.linalg.norm(rb)
    assert uncentred > 0.9  # the original CopyScope cosine cannot tell them apart
    assert abs(cosine_similarity(a, b)) < 0.1
    # centred cosine = Pearson correlation of the resized pixel vectors
    assert cosine_similarity(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1], abs=1e-6)


def test_cosine_constant_offset_and_constant_images(rng_images):
    a = (0.2 + 0.5 * rng_images[0]).astype(np.float32)
    assert cosine_similarity(a, a + np.float32(0.25)) == pytest.approx(1.0, abs=1e-6)  # brightness offset
    assert cosine_similarity(a, 1 - a) == pytest.approx(-1.0, abs=1e-6)  # negative image
    grey = np.full((20, 20, 3), 0.3, np.float32)
    assert cosine_similarity(grey, grey + np.float32(0.4)) == 1.0  # two constant images: identical patterns
    assert cosine_similarity(grey, a) == 0.0


def test_histogram_is_bhattacharyya_coefficient(rng_images):
    a, b = rng_images[0], np.clip(rng_images[1] ** 2, 0, 1).astype(np.float32)
    bins = 4

    def hist(x):  # independent joint histogram via numpy.histogramdd
        h, _ = np.histogramdd(x.reshape(-1, 3), bins=bins, range=[(0, 1)] * 3)
        return h.ravel() / h.sum()

    expected = np.sum(np.sqrt(hist(a) * hist(b)))
    assert histogram_similarity(a, b, bins=bins) == pytest.approx(expected, abs=1e-6)
    assert histogram_similarity(a, a, bins=bins) == pytest.approx(1.0, abs=1e-6)
    red = np.zeros((8, 8, 3), np.float32)
    red[..., 0] = 1
    blue = np.zeros((8, 8, 3), np.float32)
    blue[..., 2] = 1
    assert histogram_similarity(red, blue) == 0.0


PER_IMAGE_PIXEL = ["cosine", "histogram", "dhash", "phash", "phash_256", "phash_soft", "ssim", "rgb_ssim"]


@pytest.mark.parametrize("name", PER_IMAGE_PIXEL)
def test_identical_is_best_and_noise_is_poor(name, natural):
    m = build_metrics([{"name": name, "size": 96} if "ssim" in name else name])[0]
    ast = natural["astronaut"]
    noise = np.random.default_rng(7).random((256, 256, 3)).astype(np.float32)
    refs = [ast, natural["chelsea"], noise]
    sim = m.score([ast, resize(ast, (200, 240))], refs)
    assert sim.shape == (2, 3)
    assert sim[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert sim[0, 0] >= sim.max() - 1e-9
    assert sim[0, 2] < 0.8  # unrelated noise scores poorly
    assert sim[1, 0] > sim[1, 2]  # a resized copy is closer to its source than noise is
    assert m.orientation == "higher_is_closer" and m.kind == "per_image"


def test_features_are_deterministic_and_per_image(natural):
    for m in build_metrics(PER_IMAGE_PIXEL + ["fd_pixels"]):
        imgs = [natural["coffee"], natural["rocket"]]
        f1 = m.features(imgs)
        f2 = m.features(imgs[::-1])
        assert np.array_equal(f1, f2[::-1]), m.name
        assert f1.ndim == 2 and f1.shape[0] == 2


def test_input_validation():
    m = build_metrics(["cosine"])[0]
    with pytest.raises(CopyscopeError, match="dtype uint8"):
        m.features([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(CopyscopeError, match=r"\(H, W, 3\)"):
        m.features([np.zeros((8, 8), np.float32)])
    with pytest.raises(CopyscopeError, match=r"\[0, 1\]"):
        m.features([np.full((8, 8, 3), 2.0, np.float32)])
    with pytest.raises(CopyscopeError, match="feature dimensions differ"):
        m.similarity(np.zeros((1, 5)), np.zeros((1, 6)))
    with pytest.raises(CopyscopeError, match="distance"):
        m.distance(np.zeros((1, 5)), np.zeros((1, 5)))


# ------------------------------------------------------------------------------------------------ Fréchet distance


def _scipy_fd(x, y, eps=0.0):
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    off = eps * np.eye(len(mu1))
    covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off)).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_full_rank():
    rng = np.random.default_rng(0)
    d = 6
    a = rng.standard_normal((300, d)) @ rng.standard_normal((d, d))
    b = rng.standard_normal((250, d)) @ rng.standard_normal((d, d)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(_scipy_fd(a, b), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_rank_deficient_is_stable():
    rng = np.random.default_rng(1)
    d = 32
    x = rng.standard_normal((5, d))
    y = rng.standard_normal((7, d)) + 0.3
    fd = frechet_distance(x, y)
    assert np.isfinite(fd) and fd > 0
    # agrees with the scipy computation regularised by the usual eps offset
    assert fd == pytest.approx(_scipy_fd(x, y, eps=1e-8), rel=1e-3)
    # identical rank-deficient sets are at distance 0 (a plain sqrtm of S S is inaccurate here)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("n, m, d", [(8, 4, 300), (3, 40, 20), (1, 5, 30), (2, 2, 9)])
def test_frechet_distance_few_samples_path_equals_covariance_path(n, m, d):
    """With fewer samples than dimensions FD is computed from the samples (O(n m d)): same value as the
    covariance formula."""
    from copyscope.score.metrics.setstats import frechet_distance_from_stats, gaussian_stats

    rng = np.random.default_rng(n * 100 + d)
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    y = rng.standard_normal((m, d)) + 0.2
    via_cov = frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(y))
    # rel 1e-7: the d x d path takes square roots of round-off-sized eigenvalues (the null space), ~1e-8 each
    assert frechet_distance(x, y) == pytest.approx(via_cov, rel=1e-7)
    if min(n, m) > 2:  # scipy's sqrtm needs the eps offset and warns on the most singular cases
        assert frechet_distance(x, y) == pytest.approx(_scipy_fd(x, y, eps=1e-9), rel=1e-4)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9 * d)


def test_frechet_distance_single_sample_uses_zero_covariance():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 4))
    y = rng.standard_normal((9, 4))
    expected = np.sum((x[0] - y.mean(0)) ** 2) + np.trace(np.cov(y, rowvar=False))
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-10)
    assert frechet_distance(x, x) == 0.0


def test_fd_metric_result_and_warning():
    m = build_metrics(["fd_pixels"])[0]
    assert (m.kind, m.orientation) == ("set", "lower_is_closer")
    rng = np.random.default_rng(3)
    imgs = [rng.random((20, 20, 3)).astype(np.float32) for _ in range(6)]
    g, r = m.features(imgs[:4]), m.features(imgs[4:])
    res = m.distance(g, r)
    assert isinstance(res, SetResult)
    assert (res.n_gen, res.n_ref, res.feature_dim) == (4, 2, 64)
    assert res.value == pytest.approx(frechet_distance(g, r))
    assert res.warning and "rank-deficient" in res.warning and "n_gen=4" in res.warning
    small = build_metrics([{"name": "fd", "backbone": "pixels", "size": 2, "dim": 3}])[0]
    assert small.name == "fd_pixels"
    many = [rng.random((20, 20, 3)).astype(np.float32) for _ in range(10)]
    res2 = small.score(many[:5], many[5:])
    assert res2.feature_dim == 3 and res2.warning is None
    with pytest.raises(CopyscopeError, match="at least one image"):
        m.distance(g[:0], r)


# ------------------------------------------------------------------------------------------------ KID


def _kid_brute_force(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written out from the definition."""
    d = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_kid_matches_brute_force_definition():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5))
    y = rng.standard_normal((6, 5)) + 0.7
    expected = _kid_brute_force(x, y)
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-10)
    value, std, m = kernel_inception_distance(x, y, subsets=10)
    assert (value, std, m) == (pytest.approx(expected, rel=1e-10), 0.0, 6)  # all samples used once
    # unequal set sizes follow the same definition
    y4 = rng.standard_normal((4, 5))
    assert mmd2_unbiased(x, y4) == pytest.approx(_kid_brute_force(x, y4), rel=1e-10)


def test_kid_subsets_average_to_full_estimate():
    # The mean of the unbiased estimate over all subsets equals the full-sample U-statistic; with many random
    # subsets the KID mean must approach it.
    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 3)) * 1.5
    y = rng.standard_normal((12, 3)) + 1.0
    value, std, m = kernel_inception_distance(x, y, subsets=3000, subset_size=5, seed=1)
    assert m == 5 and std > 0
    full = _kid_brute_force(x, y)
    assert value == pytest.approx(full, abs=4 * std / np.sqrt(3000))
    again = kernel_inception_distance(x, y, subsets=3000, subset_size=5, seed=1)
    assert again[0] == value  # deterministic
    assert kernel_inception_distance(x, y, subsets=50, subset_size=1000)[2] == 10  # min(n_gen, n_ref, 1000)


def test_kid_metric_small_samples():
    m = build_metrics([{"name": "kid", "backbone": "pixels", "subsets": 20}])[0]
    assert m.name == "kid_pixels"
    rng = np.random.default_rng(8)
    imgs = [rng.random((16, 16, 3)).astype(np.float32) for _ in range(5)]
    res = m.score(imgs[:4], imgs[4:])
    assert np.isnan(res.value) and "undefined" in res.warning and res.n_ref == 1
    res = m.score(imgs[:3], imgs[3:])
    assert np.isfinite(res.value) and res.std is not None and "small sample" in res.warning


@pytest.mark.parametrize("name", ["fd_pixels", "kid_pixels"])
def test_set_metric_identical_sets_closer_than_noise(name, natural):
    m = build_metrics([name])[0]
    crops = [natural["astronaut"][i : i + 128, j : j + 128] for i in (0, 160, 320) for j in (0, 192, 384)]
    rng = np.random.default_rng(9)
    noise = [rng.random((128, 128, 3)).astype(np.float32) for _ in crops]
    near = [np.clip(c + rng.normal(0, 0.02, c.shape), 0, 1).astype(np.float32) for c in crops]
    d_same = m.score(near, crops).value
    d_noise = m.score(noise, crops).value
    assert d_noise > 0
    assert d_same < d_noise
    if name == "fd_pixels":
        assert d_noise > 10 * d_same
    else:  # near-duplicate pairs make the unbiased cross term large: KID goes below 0 (closer than independent)
        assert d_same < 0


# ------------------------------------------------------------------------------------------------ aggregation


def test_aggregate_references_semantics():
    sim = np.array([[0.9, 0.1, 0.4, 0.2], [0.3, 0.5, 0.8, 0.6]])
    works = ["mona", "mona", "scream", "scream"]
    np.testing.assert_allclose(aggregate_references(sim, works), [(0.9 + 0.4) / 2, (0.5 + 0.8) / 2])
    np.testing.assert_allclose(aggregate_references(sim, works, "mean_mean"), [(0.5 + 0.3) / 2, (0.4 + 0.7) / 2])
    np.testing.assert_allclose(aggregate_references(sim, works, "max_max"), [0.9, 0.8])
    # a work with many reference images does not outweigh one with few under max_mean
    sim2 = np.array([[0.2, 0.2, 0.2, 0.9]])
    assert aggregate_references(sim2, ["a", "a", "a", "b"])[0] == pytest.approx(0.55)
    # interleaved labels group correctly
    assert aggregate_references(sim, ["mona", "scream", "mona", "scream"])[0] == pytest.approx((0.9 + 0.2) / 2)


def test_aggregate_references_errors():
    with pytest.raises(CopyscopeError, match="work labels"):
        aggregate_references(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(CopyscopeError, match="max_mean"):
        aggregate_references(np.zeros((2, 2)), ["a", "b"], how="median")


# ------------------------------------------------------------------------------------------------ fusion


def test_fusion_is_mean_of_zscores_and_non_degenerate():
    k = 8
    base = np.linspace(0.1, 0.8, k)
    worths = {"ssim": base, "clip": np.sqrt(base) * 3 + 1, "neg_fid": -100 / base}
    fused = fusion(worths)
    expected = np.mean([scipy.stats.zscore(w) for w in worths.values()], axis=0)
    np.testing.assert_allclose(fused, expected, atol=1e-12)
    assert fused.std() > 0.9  # O(1) spread, not floating-point noise (the original Fusion was ~1e-16)
    assert list(np.argsort(fused)) == list(np.argsort(base))  # ranks coalitions as its agreeing inputs do
    # disagreeing metrics shrink the spread but do not flip a consistent majority
    mixed = fusion({"a": base, "b": base ** 2, "c": -base})
    assert 0.1 < mixed.std() < 0.5
    assert np.all(np.diff(mixed) > 0)


def test_fusion_skips_constant_and_nonfinite_metrics():
    base = np.array([0.1, 0.5, 0.2, 0.9])
    ref = fusion({"a": base, "b": base * 2 + 1})
    assert np.allclose(fusion({"a": base, "b": base * 2 + 1, "const": np.full(4, 0.7)}), ref)
    assert np.allclose(fusion({"a": base, "b": base * 2 + 1, "kid": np.array([np.nan, 1, 2, 3])}), ref)
    assert np.array_equal(fusion({"const": np.full(4, 3.0)}), np.zeros(4))


def test_fusion_bootstrap_columns():
    rng = np.random.default_rng(10)
    a = rng.random((6, 5))
    b = rng.random((6, 5))
    c = rng.random(6)
    fused = fusion({"a": a, "b": b, "c": c})
    assert fused.shape == (6, 5)
    for col in range(5):
        expected = fusion({"a": a[:, col], "b": b[:, col], "c": c})
        np.testing.assert_allclose(fused[:, col], expected)
    with pytest.raises(CopyscopeError, match="coalitions"):
        fusion({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(CopyscopeError):
        fusion({})


# ------------------------------------------------------------------------------------------------ registry


def test_build_metrics_names_kinds_and_aliases():
    ms = build_metrics(["ssim", {"name": "kid", "backbone": "pixels"}, {"name": "fid", "backbone": "pixels"},
                        {"name": "cosine", "size": 32}])
    assert [m.name for m in ms] == ["ssim", "kid_pixels", "fd_pixels", "cosine"]
    assert all(isinstance(m, Metric) for m in ms)
    assert [m.kind for m in ms] == ["per_image", "set", "set", "per_image"]
    assert set(DEFAULT_METRICS) <= set(METRIC_NAMES)
    assert {"fid", "kid", "fd_clip", "kid_clip", "fd_dinov2", "sscd", "dreamsim"} <= set(METRIC_NAMES)


@pytest.mark.parametrize(
    "specs, match",
    [
        (["ssmi"], r"unknown metric 'ssmi'.*ssim"),
        ([{"name": "ssim", "sise": 3}], r"unknown option 'sise'.*size"),
        ([{"name": "ssim", "size": "big"}], r"'size' expects int"),
        ([{"name": "kid_pixels", "subsets": 0}], r"'subsets' must be >= 1"),
        ([{"name": "kid", "bakbone": "pixels"}], r"unknown option 'bakbone'.*backbone"),
        ([{"name": "fd"}], r"needs a 'backbone'.*pixels"),
        ([{"name": "fd", "backbone": "vgg"}], r"unknown backbone 'vgg'.*clip"),
        ([{"name": "kid_clip", "backbone": "pixels"}], r"use 'kid_pixels'"),
        ([{"name": "ssim", "backbone": "clip"}], r"no 'backbone' option"),
        (["ssim", {"name": "ssim", "size": 64}], r"listed twice"),
        ([{"size": 3}], r"'name'"),
        ([3], r"metric name"),
    ],
)
def test_build_metrics_errors(specs, match):
    with pytest.raises(CopyscopeError, match=match):
        build_metrics(specs)


def test_build_metrics_backbone_and_device_errors():
    with pytest.raises(CopyscopeError, match="unknown key 'clipp'.*clip"):
        build_metrics(["ssim"], backbones={"clipp": "x"})
    with pytest.raises(CopyscopeError, match="device"):
        build_metrics(["ssim"], device="quantum")


def test_config_id_tracks_output_affecting_options():
    a, b, c = build_metrics(["ssim"])[0], build_metrics([{"name": "ssim", "size": 64}])[0], build_metrics(["ssim"])[0]
    assert a.config_id() == c.config_id() != b.config_id()
    k1 = build_metrics([{"name": "kid_pixels", "seed": 1}])[0]
    k2 = build_metrics([{"name": "kid_pixels", "seed": 2}])[0]
    p1 = build_metrics([{"name": "kid_pixels", "projection_seed": 1}])[0]
    assert len({k1.config_id(), k2.config_id(), p1.config_id()}) == 3
    assert build_metrics(["dhash"])[0].config_id() != build_metrics(["phash"])[0].config_id()


def test_list_metrics_reports_unavailable_with_reason():
    rows = {r["name"]: r for r in list_metrics()}
    assert set(rows) == set(METRIC_NAMES)
    for name in PER_IMAGE_PIXEL + ["fd_pixels", "kid_pixels"]:
        assert rows[name]["available"] and rows[name]["reason"] == ""
    for row in rows.values():
        assert set(row) >= {"name", "kind", "orientation", "description", "available", "reason"}
        assert row["description"]
        assert row["available"] or row["reason"]
    if importlib.util.find_spec("torchvision") is None:  # the CPU dev machines: `fid` extra not installable
        for name in ("fid", "kid"):
            assert not rows[name]["available"]
            assert "fid" in rows[name]["reason"] and "torchvision" in rows[name]["reason"]


def test_unavailable_metric_raises_missing_dependency():
    m = build_metrics(["fd_clip"], backbones={"clip": "copyscope-test/no-such-model"})[0]
    ok, why = m.availability()
    assert not ok and "backbones.clip" in why and "no-such-model" in why
    with pytest.raises(MissingDependency, match="backbones.clip"):
        m.features([np.zeros((8, 8, 3), np.float32)])
    # an sscd file that is not there (unset, sscd uses the `sscd` extra's model when it is installed)
    m = build_metrics(["sscd"], backbones={"sscd": "/no/such/sscd.torchscript.pt"})[0]
    ok, why = m.availability()
    assert not ok and "backbones.sscd" in why
    m = build_metrics(["dhash"])[0]
    assert m.availability() == (True, "")


def test_fusion_fuses_the_benchmark_sound_metrics_only():
    """Issue 15: a metric added beside the validity benchmark's sound ones is sensitivity analysis, not a vote;
    with fewer than two sound metrics computed, the fusion falls back to every computed metric."""
    from copyscope.audit import fusion_members
    from copyscope.score.metrics.registry import FUSION_METRICS

    assert fusion_members(["ssim", "effnet", "phash", "sscd", "kid_pixels"]) == ["phash", "kid_pixels"]
    assert fusion_members(["ssim", "effnet", "phash"]) == ["ssim", "effnet", "phash"]  # one sound metric: all
    assert set(FUSION_METRICS) <= set(METRIC_NAMES)


def test_kind_and_orientation_are_written_once_on_the_class():
    """The registry reads a metric's kind and orientation from its class (never repeats them)."""
    from copyscope.score.metrics.base import PerImageMetric, SetMetric
    from copyscope.score.metrics.registry import METRIC_NAMES, list_metrics

    rows = {r["name"]: r for r in list_metrics()}
    for name in METRIC_NAMES:
        (m,) = build_metrics([name])
        assert "kind" not in vars(m) and "orientation" not in vars(m)  # not patched onto the instance
        assert (rows[name]["kind"], rows[name]["orientation"]) == (type(m).kind, type(m).orientation)
        expected = ("per_image", "higher_is_closer") if isinstance(m, PerImageMetric) else ("set", "lower_is_closer")
        assert isinstance(m, (PerImageMetric, SetMetric)) and (m.kind, m.orientation) == expected


def test_backbone_weights_use_the_one_tree_hash(tmp_path):
    """Backbone weight fingerprints use copyscope.common.files.tree_sha256 (the image cache's hash): a file's
    hash is its SHA-256, a folder's covers config and weight files (also in subfolders), not the rest."""
    import hashlib

    from copyscope.common.files import tree_sha256
    from copyscope.score.metrics.backbones import WEIGHT_SUFFIXES, hash_weights

    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "model.safetensors").write_bytes(b"w1")
    first = hash_weights(folder)
    assert first == f"sha256:{tree_sha256(folder, WEIGHT_SUFFIXES)}"
    (folder / "README.md").write_text("notes")
    assert hash_weights(folder) == first  # not a weight or config file
    (folder / "sub" / "model.safetensors").write_bytes(b"w2")
    assert hash_weights(folder) != first  # a weight in a subfolder counts
    assert hash_weights(folder / "config.json") == "sha256:" + hashlib.sha256(b"{}").hexdigest()
