"""Player kinds as objects: the registry, and the IP-Adapter and textual-inversion players on a tiny
random-weight SD pipeline, audited through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.cli import app
from copyscope.config import ZooSpec, load_zoo
from copyscope.plan.games import make_plan

from helpers.zoo import make_zoo_file

runner = CliRunner()


def test_every_kind_has_a_zoo_section_and_keeps_the_old_player_order(tiny_models, tmp_path):
    from copyscope.players import KINDS

    assert list(KINDS)[:3] == ["controlnet", "lora", "prompt"]  # player order of zoos written before the classes
    for kind, cls in KINDS.items():
        assert cls.section in ZooSpec.model_fields, kind
    zoo = load_zoo(make_zoo_file(tmp_path, tiny_models, prompt_players=[{"name": "style", "text": "oil"}]))
    assert [(p.name, p.kind) for p in make_plan(zoo).games[0].players] == [
        ("depth", "controlnet"), ("lora0", "lora"), ("lora1", "lora"), ("style", "prompt")]


@pytest.fixture(scope="module")
def addon_files(tiny_models, tmp_path_factory):
    from copyscope.demo.tiny import tiny_pipeline
    from copyscope.demo.tiny_families import tiny_ip_adapter, tiny_textual_inversion

    root = tmp_path_factory.mktemp("addons")
    pipe = tiny_pipeline(0)  # the same weights as tiny_models["base"]
    return {"ti": tiny_textual_inversion(pipe, root / "ti" / "style.safetensors", seed=1),
            "ip": tiny_ip_adapter(pipe, root / "ip", seed=2)}


def _audit(zoo: Path) -> dict:
    result = runner.invoke(app, ["audit", str(zoo)])
    assert result.exit_code == 0, result.output
    return json.loads((Path(yaml.safe_load(zoo.read_text())["output"]) / "report.json").read_text())


def _images(report: dict, game: dict) -> dict:
    cache = ImageCache(report["cache_dir"])
    return {k: [cache.load(key) for key in keys] for k, keys in game["images"].items()}


def test_textual_inversion_player_puts_its_token_in_the_prompt(tiny_models, addon_files, tmp_path, one_torch_thread):
    zoo = make_zoo_file(tmp_path, tiny_models, loras=0, controlnet=False,
                        textual_inversions=[{"name": "style", "model": str(addon_files["ti"])}],
                        prompts=[{"name": "p", "text": "a painting of a cat {style}"}],
                        controls={"strengths": [0.5], "seeds": 1, "negatives": 1})
    report = _audit(zoo)
    (game,) = report["games"]
    assert game["players"] == ["style"] and game["player_kinds"] == {"style": "textual_inversion"}
    cache = ImageCache(report["cache_dir"])
    # the controls' img2img uses the bare base's prompt: the placeholder rendered away, as in the empty coalition
    (control,) = game["controls"]["images"]["work"]["work"]["0.5"]
    assert json.loads(cache.path(control).with_suffix(".json").read_text())["fields"]["prompt"] == "a painting of a cat"
    fields = json.loads(cache.path(game["images"]["style"][0]).with_suffix(".json").read_text())["fields"]
    assert fields["prompt"] == "a painting of a cat <style>" and fields["textual_inversions"][0]["token"] == "<style>"
    empty = json.loads(cache.path(game["images"][""][0]).with_suffix(".json").read_text())["fields"]
    assert empty["prompt"] == "a painting of a cat" and empty["textual_inversions"] == []
    images = _images(report, game)
    for a, b in zip(images[""], images["style"]):
        assert np.abs(a - b).max() > 1 / 255  # the embedding changes the images
    assert _audit(zoo)["generation"]["generated"] == 0


def test_ip_adapter_player_feeds_the_work_as_image_prompt(tiny_models, addon_files, tmp_path, one_torch_thread):
    ip = {"name": "ipa", "model": str(addon_files["ip"]), "weight_name": "ip-adapter.safetensors", "scale": 1.0}
    # with the positive controls on: the base's img2img runs with the IP-Adapter loaded (at scale 0)
    controls = {"strengths": [0.5], "seeds": 1, "negatives": 1}
    zoo = make_zoo_file(tmp_path, tiny_models, loras=1, controlnet=False, ip_adapters=[ip], controls=controls)
    report = _audit(zoo)
    (game,) = report["games"]
    assert game["players"] == ["lora0", "ipa"]
    images = _images(report, game)
    for without, with_ in (("", "ipa"), ("lora0", "lora0+ipa")):
        for a, b in zip(images[without], images[with_]):
            assert np.abs(a - b).max() > 1 / 255, f"{without!r} -> {with_!r} changed nothing"
    # at scale 0 (inactive) a loaded IP-Adapter adds exactly nothing: same pixels as a zoo without it
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    plain = make_zoo_file(plain_dir, tiny_models, loras=1, controlnet=False, controls=controls)
    plain_report = _audit(plain)
    plain_game = plain_report["games"][0]
    plain_images = _images(plain_report, plain_game)
    for key in ("", "lora0"):
        for a, b in zip(images[key], plain_images[key]):
            np.testing.assert_array_equal(a, b)
    # so are the controls' img2img images
    cache = ImageCache(report["cache_dir"])
    mine, theirs = game["controls"]["images"]["work"]["work"]["0.5"], plain_game["controls"]["images"]["work"]["work"]["0.5"]
    np.testing.assert_array_equal(cache.load(mine[0]), ImageCache(plain_report["cache_dir"]).load(theirs[0]))
    assert _audit(zoo)["generation"]["generated"] == 0


def test_conditioning_images_are_memoised_by_content_not_path(tmp_path):
    """A conditioning file rewritten during a run is read again: its pixels follow its content, as the
    image key's hash of it does (a memo keyed by path would hand back the old image)."""
    import os

    from PIL import Image

    from copyscope.generate.engine import load_control

    path = tmp_path / "control.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(path)
    first = np.asarray(load_control(path, 8, 8))
    st = path.stat()
    Image.new("RGB", (16, 16), (0, 0, 255)).save(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = np.asarray(load_control(path, 8, 8))
    assert first.shape == second.shape == (8, 8, 3)
    assert first[0, 0].tolist() == [255, 0, 0] and second[0, 0].tolist() == [0, 0, 255]
    assert load_control(path, 8, 8) is load_control(path, 8, 8)  # unchanged content: the memo answers


def test_base_active_only_without_base_player_or_with_the_base_in_the_coalition(tiny_models, tmp_path):
    zoo = load_zoo(make_zoo_file(tmp_path, tiny_models, loras=1, controlnet=False, estimator={"base": "player"}))
    game = make_plan(zoo).games[0]
    assert [p.kind for p in game.players] == ["base", "lora"]
    assert [game.base_active(c) for c in [(False, False), (False, True), (True, False), (True, True)]] == [False, False, True, True]
    plain = make_plan(load_zoo(make_zoo_file(tmp_path, tiny_models, loras=1, controlnet=False))).games[0]
    assert plain.base_active((False,)) and plain.base_active((True,))
