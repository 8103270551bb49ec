"""The swap placebo (copyscope.controls.placebo_swap, ``controls: {placebo: swap}``): each LoRA against its own
spectrum-matched placebo put in its place in the full pipeline; one more coalition's images per LoRA, a paired
per-seed test, Holm across the LoRAs, and a LoRA that does not beat its placebo is never claimed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.controls.placebo_swap import against_own_placebos
from copyscope.report.headline import significant

from helpers.cli_errors import assert_one_line_error
from helpers.zoo import make_zoo_file

runner = CliRunner()


def _row(per_seed) -> np.ndarray:
    """A per-image metric's worth row: the mean over seeds, then the leave-one-seed-out means."""
    x = np.asarray(per_seed, dtype=float)
    return np.concatenate([[x.mean()], [np.delete(x, s).mean() for s in range(len(x))]])


KEYS = {"a": {"alone": ("a", ""), "full": ("a+b", "b")}, "b": {"alone": ("b", ""), "full": ("a+b", "a")}}


def test_against_own_placebos_by_hand():
    full = np.array([0.60, 0.55, 0.70, 0.65])
    a_alone, b_alone, empty = full - 0.1, full - 0.25, full - 0.3
    # symmetric per-seed differences (no skew correction applies), the two contexts averaged
    a_full_d, a_alone_d = np.array([0.10, 0.12, 0.14, 0.16]), np.array([0.20, 0.22, 0.24, 0.26])
    b_full_d, b_alone_d = np.array([0.02, -0.03, 0.01, -0.02]), np.array([0.0, 0.01, -0.01, 0.0])
    worths = {"a+b": _row(full), "b": _row(b_alone), "a": _row(a_alone), "": _row(empty)}
    swap = {"a": {"worths": {"full": {"ssim": _row(full - a_full_d)}, "alone": {"ssim": _row(a_alone - a_alone_d)}}},
            "b": {"worths": {"full": {"ssim": _row(full - b_full_d)}, "alone": {"ssim": _row(b_alone - b_alone_d)}}}}
    out = against_own_placebos(worths, swap, "ssim", KEYS, None, 0.95, "t")
    a, b = out["a"], out["b"]
    d = (a_full_d + a_alone_d) / 2
    assert a["per_seed"] == pytest.approx(d)  # each seed's own paired difference, the two contexts' mean
    assert a["value"] == pytest.approx(d.mean()) and b["value"] == pytest.approx(((b_full_d + b_alone_d) / 2).mean())
    full_ctx, alone_ctx = a["contexts"]["full"], a["contexts"]["alone"]
    assert full_ctx["value"] == pytest.approx(0.13) and alone_ctx["value"] == pytest.approx(0.23)
    assert full_ctx["with"] == pytest.approx(full.mean()) and full_ctx["swapped"] == pytest.approx((full - a_full_d).mean())
    assert full_ctx["lora_effect"] == pytest.approx(0.25)  # w(N) - w(N without a)
    assert full_ctx["placebo_effect"] == pytest.approx(0.25 - 0.13)  # w(N with a's placebo) - w(N without a)
    assert alone_ctx["lora_effect"] == pytest.approx(0.2) and alone_ctx["placebo_effect"] == pytest.approx(0.2 - 0.23)
    p_a = stats.ttest_1samp(d, 0.0, alternative="greater").pvalue
    assert a["p_value"] == pytest.approx(p_a, rel=1e-9)
    assert a["p_holm"] == pytest.approx(min(1.0, 2 * min(p_a, b["p_value"])))  # Holm across the two LoRAs
    assert a["beats"] and not b["beats"]
    lo, hi = a["ci95"]
    assert lo < d.mean() < hi


def test_bounded_rule_needs_both_tests():
    w = np.array([0.6, 0.5, 0.7, 0.65, 0.55, 0.62, 0.58, 0.66])
    d = np.array([0.05, 0.07, 0.04, 0.06, 0.05, 0.08, 0.03, 0.06])
    keys = {"a": {"alone": ("a", ""), "full": ("a", "")}}  # one player: alone is the full pipeline
    worths = {"a": _row(w)}
    swap = {"a": {"worths": {"alone": {"ssim": _row(w - d)}, "full": {"ssim": _row(w - d)}}}}
    t = against_own_placebos(worths, swap, "ssim", keys, 1.0, 0.95, "t")["a"]
    both = against_own_placebos(worths, swap, "ssim", keys, 1.0, 0.95, "both")["a"]
    assert t["beats"]  # the t test alone finds it
    assert both["p_value"] >= t["p_value"] and not both["beats"]  # 8 seeds cannot confirm 0.055 of a range of 1
    assert both["contexts"]["full"]["lora_effect"] is None  # the coalition without it was not evaluated
    # without leave-one-seed-out columns (bootstrap intervals) or for an unscored metric: no comparison
    assert against_own_placebos({"a": np.array([0.5])}, swap, "ssim", keys, None, 0.95, "t") is None
    assert against_own_placebos(worths, swap, "fusion", keys, None, 0.95, "t") is None


def test_a_lora_that_does_not_beat_its_placebo_is_not_claimed():
    entry = {"value": 0.2, "p_holm": 0.001}
    assert significant(entry, 0.05)
    assert not significant({**entry, "beats_placebo": False}, 0.05)
    assert significant({**entry, "beats_placebo": True}, 0.05)


def _swap_zoo(tmp_path, tiny_models, **overrides) -> Path:
    """Two LoRAs, no ControlNet, 3 seeds, 1 step, ssim, the swap placebo on."""
    import yaml

    zoo = make_zoo_file(
        tmp_path, tiny_models, loras=2, controlnet=False, metrics=["ssim"],
        generation={"resolution": 32, "steps": 1, "guidance": 3.0, "seeds": 3, "batch_size": 3, "scheduler": "ddim"},
        controls={"placebo": "swap", "positive": False},
    )
    data = yaml.safe_load(zoo.read_text())
    data.update(overrides)
    zoo.write_text(yaml.safe_dump(data, sort_keys=False))
    return zoo


@pytest.mark.parametrize("controls,loras,pattern", [
    ({"placebo": "swap", "positive": False, "placebo_from": "lora0"}, None,
     r"controls\.placebo_from: placebo_from picks the placebo player's source"),
    ({"placebo": "swap", "positive": False}, [], r"controls\.placebo: placebo: swap .*lists no LoRA"),
    ({"placebo": "swop", "positive": False}, None, r"controls\.placebo"),
    ({"placebo": "swap", "positive": False}, "lokr", r"loras\[1\]\.model: .*the placebo needs a plain LoRA .*LoKr"),
])
def test_bad_swap_settings(tiny_models, tmp_path, controls, loras, pattern):
    extra = {}
    if loras == "lokr":
        import torch
        from safetensors.torch import save_file

        lokr = tmp_path / "lokr.safetensors"
        save_file({"lora_unet_mid_block_attentions_0_proj_in.lokr_w1": torch.ones(2, 2),
                   "lora_unet_mid_block_attentions_0_proj_in.lokr_w2": torch.ones(16, 16)}, str(lokr))
        extra["loras"] = [{"name": "lora0", "model": str(tiny_models["loras"][0])}, {"name": "lokr", "model": str(lokr)}]
    elif loras is not None:
        extra["loras"] = loras
    zoo = _swap_zoo(tmp_path, tiny_models, controls=controls, **extra)
    for command in ("audit", "validate"):
        assert_one_line_error(runner.invoke(app, [command, str(zoo)]), pattern)
    assert not (tmp_path / "out").exists()


def test_validate_and_plan_write_each_loras_placebo(tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))
    zoo = _swap_zoo(tmp_path, tiny_models)
    r = runner.invoke(app, ["validate", str(zoo)])
    assert r.exit_code == 0 and "2 player(s)" in r.output, r.output  # the placebos are not players
    assert len(list((tmp_path / "cache" / "placebo").glob("*.safetensors"))) == 2


@pytest.mark.slow
def test_audit_with_swap_placebos(tiny_models, tmp_path, monkeypatch):
    from copyscope.generate.cache import ImageCache

    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))
    zoo = _swap_zoo(tmp_path, tiny_models)
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    (game,) = rep["games"]
    assert game["players"] == ["lora0", "lora1"]
    assert rep["generation"]["generated"] == 4 * 3 + 2 * 2 * 3  # the game's 4 coalitions, then two per LoRA
    s = rep["settings"]["placebo"]
    assert s["design"] == "swap" and set(s["loras"]) == {"lora0", "lora1"}
    assert all(v["layers"] == 32 and v["max_norm_rel_diff"] < 1e-5 for v in s["loras"].values())
    sec = game["metrics"]["ssim"]
    vs = sec["vs_own_placebo"]
    assert set(vs) == {"lora0", "lora1"}
    coalitions = sec["coalitions"]
    for name, other in (("lora0", "lora1"), ("lora1", "lora0")):
        row = vs[name]
        full, alone = row["contexts"]["full"], row["contexts"]["alone"]
        assert full["with"] == pytest.approx(coalitions["lora0+lora1"]) and alone["with"] == pytest.approx(coalitions[name])
        assert full["value"] == pytest.approx(full["with"] - full["swapped"])
        assert full["lora_effect"] == pytest.approx(coalitions["lora0+lora1"] - coalitions[other])
        assert alone["lora_effect"] == pytest.approx(coalitions[name] - coalitions[""])
        assert row["value"] == pytest.approx((full["value"] + alone["value"]) / 2)
        assert np.mean(row["per_seed"]) == pytest.approx(row["value"])
        assert sec["shapley"][name]["beats_placebo"] == row["beats"]
    for by in game["placebo_swap_change"].values():
        assert set(by) == {"alone", "full"} and all(0 < v["lora"] < 1 and 0 < v["placebo"] < 1 for v in by.values())
    cache = ImageCache(Path(rep["cache_dir"]))
    swapped = game["placebo_swap_images"]
    assert set(swapped) == {"lora0", "lora1"}
    for name in swapped:
        for context, coalition in (("full", "lora0+lora1"), ("alone", name)):
            keys = swapped[name][context]
            assert len(keys) == 3 and not set(keys) & set(game["images"][coalition])
            for k, f in zip(keys, game["images"][coalition]):
                assert np.abs(cache.load(k) - cache.load(f)).max() > 1 / 255, "the placebo changed nothing"
    # a rerun generates nothing: the swapped pipelines' images are cached like any coalition's
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "out" / "report.json").read_text())
    assert again["generation"]["generated"] == 0 and again["generation"]["cached"] == 24
    assert again["games"][0]["metrics"]["ssim"]["vs_own_placebo"] == vs

    # the evidence bundle holds the swapped pipelines' images, and verify recomputes the comparison from them
    assert runner.invoke(app, ["bundle", str(tmp_path / "out"), "--out", str(tmp_path / "b.tar.gz")]).exit_code == 0
    r = runner.invoke(app, ["verify", str(tmp_path / "b.tar.gz")])
    assert r.exit_code == 0 and "1 game(s), 4 coalitions, 24 images" in r.output, r.output
    import tarfile

    from PIL import Image

    from copyscope.evidence.archive import TOP

    with tarfile.open(tmp_path / "b.tar.gz") as t:
        t.extractall(tmp_path / "x", filter="data")
    key = swapped["lora1"]["alone"][0]
    png = tmp_path / "x" / TOP / "images" / key[:2] / f"{key}.png"
    pixels = np.asarray(Image.open(png).convert("RGB")).copy()
    pixels[3:9, 3:9] ^= 0x40
    Image.fromarray(pixels).save(png)
    with tarfile.open(tmp_path / "t.tar.gz", "w:gz") as t:
        t.add(tmp_path / "x" / TOP, arcname=TOP)
    r = runner.invoke(app, ["verify", str(tmp_path / "t.tar.gz")])
    assert r.exit_code == 1, r.output
    assert "MISMATCH: games[0].metrics.ssim.vs_own_placebo.lora1.contexts.alone.swapped: report " in r.output, r.output


def test_image_change_is_the_mean_absolute_pixel_difference(tmp_path):
    from copyscope.controls.placebo_swap import image_change

    class Cache:  # keys are the images themselves
        def load(self, key):
            return np.full((4, 4, 3), key, dtype=np.float32)

    out = image_change(Cache(), [0.5, 0.7], [0.2, 0.25], [0.1, 0.2])
    assert out["lora"] == pytest.approx(0.45) and out["placebo"] == pytest.approx(0.075)
    assert image_change(Cache(), [0.5], [0.2], None) is None  # the coalition without it was not evaluated
