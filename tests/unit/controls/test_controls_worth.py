"""Specific worth (copyscope.controls): the variants against hand-computed values, the background set, and
an audit whose worth is specific: the report's worths are the variant applied to the stored similarity rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from copyscope.controls.background import BUILTIN, BackgroundSet, builtin_image, fit_to
from copyscope.controls.worth import WORTHS, specific_range, specific_scores, specific_set_worth

S = np.array([0.5, 0.2])
B = np.array([[0.1, 0.3, 0.2, 0.6], [0.2, 0.2, 0.2, 0.2]])


def test_variants_by_hand():
    np.testing.assert_allclose(specific_scores(S, B, "raw"), [0.5, 0.2])
    np.testing.assert_allclose(specific_scores(S, B, "minus_mean"), [0.5 - 0.3, 0.0], atol=1e-12)
    np.testing.assert_allclose(specific_scores(S, B, "minus_hard"), [0.5 - (0.6 + 0.3 + 0.2) / 3, 0.0], atol=1e-12)
    # 3 of 4 background images below 0.5; all 4 tie at 0.2 (ties count half)
    np.testing.assert_allclose(specific_scores(S, B, "percentile"), [0.75, 0.5])
    sd = math.sqrt((0.2**2 + 0.0 + 0.1**2 + 0.3**2) / 3)
    np.testing.assert_allclose(specific_scores(S, B, "zscore"), [0.2 / sd, 0.0], atol=1e-9)


def test_hard_negatives_with_fewer_images_than_k():
    np.testing.assert_allclose(specific_scores(np.array([0.4]), np.array([[0.1, 0.3]]), "minus_hard"), [0.4 - 0.2])


def test_bad_shapes_and_names():
    with pytest.raises(ValueError, match="background similarities"):
        specific_scores(S, B[:1], "minus_mean")
    with pytest.raises(ValueError, match="unknown worth"):
        specific_scores(S, B, "minus_median")


def test_ranges():
    assert specific_range((0.0, 1.0), "raw") == (0.0, 1.0)
    assert specific_range((-1.0, 1.0), "minus_mean") == (-2.0, 2.0)
    assert specific_range((0.0, 1.0), "minus_hard") == (-1.0, 1.0)
    assert specific_range((-1.0, 1.0), "percentile") == (0.0, 1.0)
    assert specific_range((0.0, 1.0), "zscore") is None
    assert specific_range(None, "minus_mean") is None


def test_every_variant_stays_in_its_range():
    rng = np.random.default_rng(0)
    s, b = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, (50, 7))
    for w in WORTHS:
        lo_hi = specific_range((-1.0, 1.0), w)
        v = specific_scores(s, b, w)
        if lo_hi is not None:
            assert lo_hi[0] <= v.min() and v.max() <= lo_hi[1], w


def test_set_worth():
    assert specific_set_worth(3.0, 5.0, "raw") == -3.0
    assert specific_set_worth(3.0, 5.0, "minus_mean") == 2.0


def test_builtin_images_load_offline():
    imgs = [builtin_image(n) for n in BUILTIN]
    assert all(a.ndim == 3 and a.shape[-1] == 3 and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1 for a in imgs)
    # the demo world's works and decoy training images stay out of the builtin set
    assert not {"astronaut", "coffee", "rocket", "clock", "chelsea", "text", "moon", "coins"} & set(BUILTIN)


def test_fit_to_crops_to_the_aspect_then_resizes():
    a = np.zeros((100, 200, 3), np.float32)
    a[:, 50:150] = 1.0  # the centre square is white
    out = fit_to(a, (10, 10))
    assert out.shape == (10, 10, 3) and out.min() > 0.99


def test_background_drops_near_duplicates_of_references():
    import skimage.data

    work = skimage.data.astronaut().astype(np.float32) / 255.0
    ref = fit_to(work, (64, 64))
    sources = [(n, builtin_image(n)) for n in BUILTIN[:4]] + [("copy", work), ("camera-again", builtin_image(BUILTIN[0]))]
    bg = BackgroundSet.build(sources, [ref])
    assert bg.labels == list(BUILTIN[:4])
    assert [d[0] for d in bg.dropped] == ["copy", "camera-again"]
    assert "near-duplicate of a reference" in bg.dropped[0][1] and BUILTIN[0] in bg.dropped[1][1]
    assert all(img.shape == (64, 64, 3) for img in bg.images)
    assert bg.summary()["count"] == 4


@pytest.mark.slow
def test_audit_with_specific_worth(tiny_models, tmp_path):
    """A tiny audit under minus_mean: its worths are the raw rows minus the background rows' means, recomputed
    here from the cache; the bounded test's per-seed bound doubles with the range."""
    from typer.testing import CliRunner

    from copyscope.generate.cache import ImageCache
    from copyscope.cli import app
    from copyscope.audit.prepare import prepare_audit
    from copyscope.score.scorer import Scorer
    from helpers.zoo import make_zoo_file

    extra = tmp_path / "generic"
    extra.mkdir()
    from PIL import Image

    Image.fromarray((np.random.default_rng(3).random((20, 30, 3)) * 255).astype(np.uint8)).save(extra / "mine.png")
    zoo = make_zoo_file(tmp_path, tiny_models, loras=1, controlnet=False, metrics=["ssim", "kid_pixels"],
                        worth="minus_mean", background={"builtin": True, "paths": [str(extra)]},
                        generation={"resolution": 32, "steps": 1, "guidance": 3.0, "seeds": 3, "batch_size": 3,
                                    "scheduler": "ddim"})
    r = CliRunner().invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    s = rep["settings"]
    assert s["worth"] == "minus_mean" and s["background"]["count"] == len(BUILTIN) + 1
    assert s["background"]["images"][-1].endswith("mine.png")
    g = rep["games"][0]
    assert g["metrics"]["ssim"]["seed_bound"] == pytest.approx(4.0)  # ssim in [-1, 1]: a difference spans 4
    assert "raw_values" not in g["metrics"]["kid_pixels"]
    prep = prepare_audit(zoo, tmp_path / "out")
    plain = Scorer([m for m in prep.metrics if m.name == "ssim"], ImageCache(prep.zoo.cache_dir), prep.refs)
    spec = Scorer(plain.metrics.values(), plain.cache, prep.refs, background=prep.background, worth="minus_mean")
    m = plain.metrics["ssim"]
    for key, keys in g["images"].items():
        raw = plain.per_image_scores(m, keys)
        bg = spec.background_rows(m, keys)
        assert bg.shape == (len(keys), len(BUILTIN) + 1)
        assert g["metrics"]["ssim"]["coalitions"][key] == pytest.approx(float(np.mean(raw - bg.mean(axis=1))), abs=1e-9)
