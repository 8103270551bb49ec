"""Casper et al.'s imitation statistics on synthetic embeddings whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from copyscope.analyses.clip_zero_shot import normalise, zero_shot_probabilities
from copyscope.common.errors import CopyscopeError
from copyscope.analyses.imitation import (
    accuracy_per_class,
    chance_accuracy,
    matching_control,
    matching_test,
    rank_sum_test,
    zero_shot_accuracy,
)

D = 32


def label_vectors(k, seed=0):
    """k nearly orthogonal unit vectors in D dimensions."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((D, D)))
    return q[:k]


def test_zero_shot_probabilities_are_a_softmax_of_scaled_cosines():
    rng = np.random.default_rng(0)
    img, txt = rng.standard_normal((5, D)), rng.standard_normal((4, D))
    p = zero_shot_probabilities(img * 3.0, txt, logit_scale=10.0)  # scale of the embeddings does not matter
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    cos = normalise(img) @ normalise(txt).T
    expect = np.exp(10 * cos) / np.exp(10 * cos).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, expect, rtol=1e-10)
    # the temperature changes confidence, never the ranking
    assert (zero_shot_probabilities(img, txt, 100.0).argmax(1) == p.argmax(1)).all()
    with pytest.raises(CopyscopeError):
        zero_shot_probabilities(img, rng.standard_normal((4, D + 1)))


def test_identification_accuracy_on_planted_embeddings():
    n_artists, n_default, n_img = 4, 3, 10
    labels = label_vectors(n_artists + n_default)
    rng = np.random.default_rng(1)
    images, true = [], []
    for a in range(n_artists):
        # artists 0-2 are imitated: images lie near their label; artist 3 is not: images near "Artwork"
        target = labels[a] if a < 3 else labels[n_artists]
        images.append(target + 0.1 * rng.standard_normal((n_img, D)))
        true += [a] * n_img
    probs = zero_shot_probabilities(np.concatenate(images), labels, 100.0)
    acc = zero_shot_accuracy(probs, np.array(true), n_artists)
    np.testing.assert_allclose(acc["per_class"], [1, 1, 1, 0])
    assert acc["mean"] == pytest.approx(0.75)
    assert acc["chance"] == pytest.approx(1 / 7) == chance_accuracy(7)
    assert (acc["confidence"][:3] > 0.5).all() and acc["confidence"][3] < 0.1
    assert set(acc["predicted"][np.array(true) == 3]) == {n_artists}  # predicted as the default label


def test_random_guessing_is_near_chance():
    rng = np.random.default_rng(2)
    n_labels, n_classes = 8, 5
    true = np.repeat(np.arange(n_classes), 400)
    scores = rng.random((len(true), n_labels))  # no information
    acc = zero_shot_accuracy(scores, true, n_classes)
    assert abs(acc["mean"] - chance_accuracy(n_labels)) < 0.03


def test_accuracy_per_class_counts():
    pred = np.array([0, 0, 1, 2, 1, 1])
    true = np.array([0, 1, 1, 1, 2, 2])
    out = accuracy_per_class(pred, true, 4)
    np.testing.assert_allclose(out[:3], [1.0, 1 / 3, 0.0])
    assert np.isnan(out[3])


def test_rank_sum_test_direction():
    U, p = rank_sum_test([5, 6, 7, 8], [1, 2, 3, 4])
    assert U == 16 and p == pytest.approx(1 / 70)  # exact: only 1 of C(8,4) orders is as extreme
    _, p_rev = rank_sum_test([1, 2, 3, 4], [5, 6, 7, 8])
    assert p_rev > 0.9
    assert np.isnan(rank_sum_test([], [1.0])[1])


def planted_matching(n_artists=5, n_img=10, planted=(0,), seed=0):
    """Imitations of artist a = style_a + noise; the works of planted artists share their style, the
    other works are unrelated directions. Returns (sim, owner, artist_of_row)."""
    rng = np.random.default_rng(seed)
    styles = label_vectors(2 * n_artists, seed=seed)
    imitations = np.concatenate([styles[a] + 0.3 * rng.standard_normal((n_img, D)) for a in range(n_artists)])
    owner = np.repeat(np.arange(n_artists), n_img)
    works = np.stack([
        styles[a] + 0.1 * rng.standard_normal(D) if a in planted else styles[n_artists + a] for a in range(n_artists)
    ])
    sim = normalise(works) @ normalise(imitations).T
    return sim, owner, list(range(n_artists))


def test_matching_test_finds_the_planted_artist_only():
    sim, owner, rows = planted_matching(planted=(0,))
    res = matching_test(sim, owner, rows, alpha=0.05)
    assert res["m"] == 5
    np.testing.assert_allclose(res["p_bonferroni"], np.minimum(1.0, 5 * res["p"]))
    assert res["p_bonferroni"][0] < 0.05
    assert (res["p_bonferroni"][1:] >= 0.05).all()
    assert res["significant"].tolist() == [True, False, False, False, False]
    assert res["n_significant"] == 1
    assert ((0 <= res["p"]) & (res["p"] <= 1)).all()


def test_matching_test_all_planted_and_control():
    sim, owner, rows = planted_matching(planted=range(5), seed=1)
    res = matching_test(sim, owner, rows)
    assert res["n_significant"] == 5
    # with works assigned to artists at random, only the (rare) fixed points can match
    ctrl = matching_control(sim, owner, rows, n_perm=200, seed=0)
    assert ctrl["n_permutations"] == 200
    assert ctrl["mean_significant"] == pytest.approx(1.0, abs=0.3)  # E[fixed points of a permutation] = 1
    assert ctrl["mean_share"] == pytest.approx(ctrl["mean_significant"] / 5)
    assert matching_control(sim[:1], owner, rows[:1])["n_permutations"] == 0


def test_matching_test_rows_subset_and_shape_errors():
    sim, owner, rows = planted_matching(planted=(0, 2))
    res = matching_test(sim[[0, 2]], owner, [0, 2])  # only two artists have a work
    assert res["m"] == 2 and res["n_significant"] == 2
    np.testing.assert_allclose(res["p_bonferroni"], np.minimum(1.0, 2 * res["p"]))
    with pytest.raises(CopyscopeError):
        matching_test(sim, owner, [0, 1])
