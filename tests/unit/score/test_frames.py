"""Videos as film strips (copyscope.score.frames): the strip round trip, the aggregation over frames, the scorer's
frame-by-frame rows, and the planted toy that chose the aggregation (docs/metrics.md "Videos"): synthetic 9-frame
videos whose three middle frames copy a work (with noise) against videos of unrelated frames only, and videos where
one frame resembles the work a little (a coincidence), under real metrics (ssim, phash, cosine). The numbers in
docs/metrics.md are printed by

    python -m pytest tests/unit/score/test_frames.py -s -k measurements
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data

from copyscope.score.frames import aggregate_frames, split_strip, to_strip, top_k, video_similarity_rows
from copyscope.score.metrics import build_metrics
from copyscope.score.metrics._imageops import resize

SIZE, FRAMES, PLANTED, N_VIDEOS = 64, 9, (3, 4, 5), 24
RULES = ("max", "mean", "top_quarter_mean")


def test_strip_round_trip():
    rng = np.random.default_rng(0)
    video = rng.random((5, 16, 24, 3)).astype(np.float32)
    strip = to_strip(video)
    assert strip.shape == (16, 5 * 24, 3)
    back = split_strip(strip, 24)
    assert len(back) == 5 and all(np.array_equal(a, b) for a, b in zip(back, video))
    assert len(split_strip(video[0], 24)) == 1  # an image one frame wide is one frame
    with pytest.raises(ValueError, match="not a whole number of 7-px frames"):
        split_strip(strip, 7)


def test_aggregation_over_frames():
    rows = np.array([[0.1, 0.9], [0.2, 0.1], [0.8, 0.1], [0.3, 0.1], [0.4, 0.2]])  # 5 frames x 2 references
    assert top_k(5) == 2 and top_k(1) == 1 and top_k(81) == 21 and top_k(9) == 3
    np.testing.assert_allclose(aggregate_frames(rows), [(0.8 + 0.4) / 2, (0.9 + 0.2) / 2])  # per column
    np.testing.assert_allclose(aggregate_frames(rows, "max"), [0.8, 0.9])
    np.testing.assert_allclose(aggregate_frames(rows, "mean"), rows.mean(axis=0))
    np.testing.assert_allclose(aggregate_frames(rows[:1]), rows[0])  # one frame: its row
    with pytest.raises(ValueError):
        aggregate_frames(rows, "median")


def test_video_rows_are_the_frames_rows_aggregated():
    (m,) = build_metrics(["ssim"])
    rng = np.random.default_rng(1)
    refs = [rng.random((32, 32, 3)).astype(np.float32) for _ in range(2)]
    ref_feats = np.asarray(m.features(refs))
    video = np.stack([refs[0] if i == 2 else rng.random((32, 32, 3)).astype(np.float32) for i in range(5)])
    (row,) = video_similarity_rows(m, [to_strip(video)], ref_feats, 32)
    per_frame = np.asarray(m.similarity(np.asarray(m.features(list(video))), ref_feats))
    np.testing.assert_allclose(row, aggregate_frames(per_frame))
    # without a frame width an image is scored as one image
    (whole,) = video_similarity_rows(m, [refs[1]], ref_feats, None)
    assert whole[1] == pytest.approx(1.0)


# -- the planted toy --------------------------------------------------------------------------------------------


def _image(name: str) -> np.ndarray:
    a = getattr(skimage.data, name)()
    a = np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]
    return a.astype(np.float32) / 255.0


def _crop(rng, img: np.ndarray) -> np.ndarray:
    """A random square crop (a quarter to all of the short side) resized to the frame size: an unrelated frame."""
    h, w = img.shape[:2]
    side = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return resize(img[y:y + side, x:x + side], (SIZE, SIZE))


def toy_videos(seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Film strips of FRAMES frames: 'planted' (the middle frames are the work, each with noise and a brightness
    jitter), 'unplanted' (every frame an unrelated crop), 'coincidence' (one frame a 35 % blend of the work into an
    unrelated crop); and the work."""
    rng = np.random.default_rng(seed)
    work = resize(_image("astronaut"), (SIZE, SIZE))
    others = [_image(n) for n in ("chelsea", "coffee", "rocket", "camera", "coins", "moon", "page", "text")]

    def unrelated():
        return np.clip(_crop(rng, others[int(rng.integers(len(others)))]) + rng.normal(0, 0.02, (SIZE, SIZE, 3)), 0, 1)

    def copy():
        return np.clip(work * rng.uniform(0.85, 1.15) + rng.normal(0, 0.04, (SIZE, SIZE, 3)), 0, 1)

    videos: dict[str, list[np.ndarray]] = {"planted": [], "unplanted": [], "coincidence": []}
    for _ in range(N_VIDEOS):
        videos["planted"].append(to_strip([copy() if i in PLANTED else unrelated() for i in range(FRAMES)]))
        videos["unplanted"].append(to_strip([unrelated() for _ in range(FRAMES)]))
        one = int(rng.integers(FRAMES))
        videos["coincidence"].append(to_strip([np.clip(0.35 * work + 0.65 * unrelated(), 0, 1) if i == one
                                               else unrelated() for i in range(FRAMES)]))
    videos["work"] = [work]
    return videos


def measure(metric_names=("ssim", "phash", "cosine"), seed: int = 0) -> dict:
    """{metric: {rule: {group: mean score}, 'margin': min planted - max unplanted, 'coincidence': mean
    coincidence - mean unplanted}} of the toy videos against the work."""
    videos = toy_videos(seed)
    out = {}
    for m in build_metrics(list(metric_names)):
        ref = np.asarray(m.features(videos["work"]))
        per_frame = {g: [np.asarray(m.similarity(np.asarray(m.features(split_strip(v, SIZE))), ref))[:, 0] for v in vs]
                     for g, vs in videos.items() if g != "work"}
        res = {}
        for rule in RULES:
            s = {g: np.array([aggregate_frames(f[:, None], rule)[0] for f in fs]) for g, fs in per_frame.items()}
            res[rule] = {"planted": s["planted"].mean(), "unplanted": s["unplanted"].mean(),
                         "coincidence": s["coincidence"].mean(),
                         "gap": s["planted"].mean() - s["unplanted"].mean(),
                         "margin": s["planted"].min() - s["unplanted"].max(),
                         "coincidence_gap": s["coincidence"].mean() - s["unplanted"].mean(),
                         "spread": s["unplanted"].std()}
        out[m.name] = res
    return out


@pytest.fixture(scope="module")
def measured():
    return measure()


def test_top_quarter_mean_separates_planted_videos(measured):
    for name, res in measured.items():
        top = res["top_quarter_mean"]
        # every planted video above every unplanted one
        assert top["margin"] > 0, (name, top)
        # the mean dilutes the copy: three of nine frames give it about a third of the top-k gap
        assert res["mean"]["gap"] < 0.5 * top["gap"], (name, res["mean"], top)
        # the max follows one frame's coincidence more than the top-k mean does
        assert res["max"]["coincidence_gap"] > top["coincidence_gap"], (name, res["max"], top)


def test_measurements(measured):
    """Prints the table of docs/metrics.md "Videos" (run with -s)."""
    print(f"\n{'metric':8} {'rule':17} {'planted':>8} {'unplanted':>9} {'gap':>6} {'margin':>7} {'coinc.gap':>9}")
    for name, res in measured.items():
        for rule in RULES:
            r = res[rule]
            print(f"{name:8} {rule:17} {r['planted']:8.3f} {r['unplanted']:9.3f} {r['gap']:6.3f} {r['margin']:7.3f} "
                  f"{r['coincidence_gap']:9.3f}")
    assert all(math.isfinite(r[rule]["gap"]) for r in measured.values() for rule in RULES)


def test_the_scorer_scores_strips_frame_by_frame_against_references_and_background(tmp_path):
    """Scorer.rows and Scorer.background_rows (worth other than raw) of cached strips are the frames' rows
    aggregated; the frame rule is part of the stored rows' identity, so an image audit's rows are never reused."""
    from copyscope.controls.background import BackgroundSet
    from copyscope.generate.cache import ImageCache
    from copyscope.score.scorer import ReferenceSet, Scorer

    rng = np.random.default_rng(3)
    frame = lambda: rng.random((32, 32, 3)).astype(np.float32)  # noqa: E731
    refs = ReferenceSet([tmp_path / "a.png"], ["work"], [frame()], ["sha-a"])
    background = BackgroundSet(["g1", "g2"], [frame(), frame()], ["sha-g1", "sha-g2"])
    video = np.stack([refs.images[0] if i == 1 else frame() for i in range(5)])
    cache = ImageCache(tmp_path / "cache")
    key = "ab" + "0" * 62
    cache.put(key, to_strip(video), {"size": [32, 32]}, [])
    (ssim,) = build_metrics(["ssim"])
    strip = cache.load(key)  # as stored (8-bit PNG)
    frames = split_strip(strip, 32)
    scorer = Scorer([ssim], cache, refs, background=background, worth="minus_mean", frame_width=32)
    want = aggregate_frames(np.asarray(ssim.similarity(np.asarray(ssim.features(frames)), ssim.features(refs.images))))
    np.testing.assert_allclose(scorer.rows(ssim, [key])[0], want)
    want_bg = aggregate_frames(np.asarray(ssim.similarity(np.asarray(ssim.features(frames)),
                                                           np.asarray(ssim.features(background.images)))))
    np.testing.assert_allclose(scorer.background_rows(ssim, [key])[0], want_bg)
    assert scorer.per_image_scores(ssim, [key]).shape == (1,)
    # the same key scored as one image (no frame width) is stored apart, not read back from the video's rows
    whole = Scorer([ssim], cache, refs).rows(ssim, [key])[0]
    assert whole != pytest.approx(want[0])
