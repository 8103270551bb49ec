"""Issue 18: the learned features (effnet, sscd, ...) report their extraction to a progress callback.

Backbone.embed calls ``on_progress(0, total)`` then ``on_progress(done, total)`` per chunk; the Scorer turns
those into the audit's ``(advance, add_total)`` shape (``AuditHooks.on_features``, the CLI's "learned features"
bar). Features stay cached per image: a second pass embeds nothing and reports nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

from copyscope.audit import AuditHooks, audit_zoo
from copyscope.generate.cache import ImageCache
from copyscope.score.metrics import build_metrics
from copyscope.score.scorer import ReferenceSet, Scorer, learned_backbones
from helpers.zoo import make_zoo_file, write_reference_images


def _own_zoo(tmp_path, tiny_models, seed: int, metrics):
    """A one-LoRA zoo whose prompt and references no other test of this module uses: the image and feature
    caches (one per module) then hold nothing of it, so every image is embedded here."""
    refs = write_reference_images(tmp_path / f"refs{seed}", seed=seed)
    return make_zoo_file(tmp_path, tiny_models, loras=1, controlnet=False, metrics=metrics,
                         references=[{"name": "work", "paths": [str(refs)]}],
                         prompts=[{"name": "p", "text": f"a painting number {seed}"}], estimator={"bootstrap": 20})


def _effnet_metrics(batch_size: int):
    metrics = build_metrics(["effnet", "fd_effnet", "kid_effnet", "ssim"])
    if not all(m.availability()[0] for m in metrics):
        pytest.skip("effnet unavailable here: " + "; ".join(m.availability()[1] for m in metrics if not m.availability()[0]))
    for bb in learned_backbones(metrics):
        bb.options["batch_size"] = batch_size  # images per forward pass (does not change the features)
    return metrics


def _cumulative(events):
    """Running (done, total) after each (advance, add_total) event."""
    done = total = 0
    out = []
    for advance, add_total in events:
        done += advance
        total += add_total
        out.append((done, total))
    return out


def test_backbone_reports_increasing_counts_ending_at_total():
    metrics = _effnet_metrics(batch_size=4)
    (bb,) = learned_backbones(metrics)
    calls = []
    bb.on_progress = lambda done, total: calls.append((done, total))
    rng = np.random.default_rng(0)
    bb.embed([rng.random((32, 32, 3), dtype=np.float32) for _ in range(10)])
    assert calls == [(0, 10), (4, 10), (8, 10), (10, 10)]


def test_scoring_with_a_learned_metric_reports_feature_progress(tmp_path):
    metrics = _effnet_metrics(batch_size=4)
    assert [bb.key for bb in learned_backbones(metrics)] == ["effnet"]  # shared by effnet, fd_effnet, kid_effnet
    cache = ImageCache(tmp_path / "cache")
    rng = np.random.default_rng(1)
    keys = [f"{i:02d}" + "a" * 62 for i in range(10)]
    for k in keys:
        cache.put(k, rng.random((32, 32, 3), dtype=np.float32), {}, [])
    ref = rng.random((40, 40, 3), dtype=np.float32)
    refs = ReferenceSet(files=[tmp_path / "ref.png"], work_of=["work"], images=[ref], sha256=["b" * 64])
    events = []
    scorer = Scorer(metrics, cache, refs, on_features=lambda advance, add_total: events.append((advance, add_total)))
    for m in metrics:
        scorer.rows(m, keys)
    seen = _cumulative(events)
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and all(a >= 0 for a, _ in events)
    # 1 reference image + 10 generated images embedded once (fd_effnet and kid_effnet reuse the rows)
    assert seen[-1] == (11, 11)
    assert any(d > 0 and d < t for d, t in seen)  # several chunks, not one jump
    # features are cached per image: scoring again (fresh backbone memo too) embeds nothing
    events.clear()
    metrics2 = _effnet_metrics(batch_size=4)
    scorer2 = Scorer(metrics2, cache, refs, on_features=lambda a, t: events.append((a, t)))
    for m in metrics2:
        scorer2.rows(m, keys)
    assert events == []  # the reference row is in the feature cache too


def test_audit_hook_counts_every_embedded_image(tmp_path, tiny_models, one_torch_thread):
    _effnet_metrics(batch_size=4)  # skips without effnet
    zoo = _own_zoo(tmp_path, tiny_models, 101, ["ssim", "effnet", "fd_effnet"])
    events = []
    audit_zoo(zoo, tmp_path / "out", hooks=AuditHooks(on_features=lambda a, t: events.append((a, t))))
    seen = _cumulative(events)
    assert seen and [d for d, _ in seen] == sorted(d for d, _ in seen)
    # 2 coalitions x 1 prompt x 2 seeds = 4 images + 2 reference images, each embedded once
    assert seen[-1] == (6, 6)


def test_cli_audit_shows_the_learned_features_bar(tmp_path, tiny_models, one_torch_thread, monkeypatch):
    from typer.testing import CliRunner

    from copyscope.cli import app

    _effnet_metrics(batch_size=4)  # skips without effnet
    zoo = _own_zoo(tmp_path, tiny_models, 102, ["ssim", "effnet"])
    monkeypatch.setenv("COPYSCOPE_PROGRESS", "1")  # the bars, although the runner is not a terminal
    res = CliRunner().invoke(app, ["audit", str(zoo), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "learned features (images)" in res.output and "6/6" in res.output
