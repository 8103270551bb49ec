"""The Wan text-to-video family without a model: its settings (num_frames 4k + 1), its frame count, and what a
video zoo refuses or leaves out at `copyscope validate` before anything loads (set metrics; CLIP zero-shot analyses),
on a declared hub base that is not downloaded (validate works offline)."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from copyscope.cli import app

from helpers.families import one_error_line
from helpers.zoo import write_reference_images

runner = CliRunner()


def _zoo(tmp_path, **top):
    data = {"name": "wan", "output": str(tmp_path / "out"),
            "bases": [{"name": "wan", "model": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "family": "wan"}],
            "prompt_players": [{"name": "oil", "text": "oil painting"}],
            "references": [{"name": "work", "paths": [str(write_reference_images(tmp_path / "refs"))]}],
            "prompts": [{"name": "p", "text": "a cat"}],
            "generation": {"resolution": 32, "steps": 2, "seeds": 2, "wan": {"num_frames": 5}},
            "metrics": ["ssim", "phash"], **top}
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_wan_settings_and_frame_count():
    from pydantic import ValidationError

    from copyscope.families import FAMILIES
    from copyscope.families.wan import WanSettings

    wan = FAMILIES["wan"]
    assert wan.video and not wan.controlnet and wan.img2img is None and not wan.ip_adapter and not wan.textual_inversion
    assert WanSettings().num_frames == 81 and WanSettings().max_sequence_length == 512  # diffusers' defaults
    for ok in (1, 5, 33, 81):
        assert WanSettings(num_frames=ok).num_frames == ok
    with pytest.raises(ValidationError, match=r"Wan generates 4k \+ 1 frames .* got 6; expected one of 5, 9"):
        WanSettings(num_frames=6)

    class Gen:
        wan = WanSettings(num_frames=9)

    assert wan.frame_count(Gen) == 9 and FAMILIES["sana"].frame_count(Gen) == 1


def test_metric_kinds_without_building():
    from copyscope.score.metrics.registry import metric_kinds

    assert metric_kinds(["ssim", {"name": "kid_pixels"}, "no-such-metric", "fid"]) == [
        (0, "ssim", "per_image"), (1, "kid_pixels", "set"), (3, "fid", "set")]


def test_a_set_metric_is_refused_on_a_video_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ok = runner.invoke(app, ["validate", str(_zoo(tmp_path / "ok"))])
    assert ok.exit_code == 0, ok.output
    for metrics, i, name in ((["ssim", "kid_pixels"], 1, "kid_pixels"), (["fd_pixels"], 0, "fd_pixels")):
        line = one_error_line(runner.invoke(app, ["validate", str(_zoo(tmp_path / name, metrics=metrics))]))
        assert f"metrics[{i}]" in line and f"metric {name!r} is a set metric" in line, line
        assert "not defined for videos yet (base 'wan' is Wan, a video family)" in line, line


def test_the_default_metrics_of_a_video_zoo_leave_the_set_metrics_out(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from copyscope.audit.prepare import select_metrics
    from copyscope.config import load_zoo
    from copyscope.score.metrics.registry import DEFAULT_METRICS, metric_kinds

    path = _zoo(tmp_path)
    data = yaml.safe_load(path.read_text())
    data.pop("metrics")
    path.write_text(yaml.safe_dump(data))
    metrics, unavailable = select_metrics(load_zoo(path))
    assert metrics and all(m.kind == "per_image" for m in metrics)
    default_sets = [name for _i, name, kind in metric_kinds(DEFAULT_METRICS) if kind == "set"]
    assert default_sets  # fd_dinov2, kid_dinov2, fid, kid: left out whether or not their weights are here
    for name in default_sets:
        assert unavailable[name].startswith("a set metric, not defined for videos yet"), name


def test_clip_zero_shot_analyses_are_refused_on_a_video_zoo(tmp_path):
    from copyscope.analyses.harness import refuse_videos
    from copyscope.common.errors import CopyscopeError
    from copyscope.config import load_zoo

    with pytest.raises(CopyscopeError, match="copyscope imitation identifies whole images with CLIP zero-shot, not "
                                             "defined for videos yet"):
        refuse_videos(load_zoo(_zoo(tmp_path)), "copyscope imitation")
