"""Prompt fragments as players, mixed with model players in one game."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.cli import app
from copyscope.config import render_prompt
from helpers.zoo import make_zoo_file

runner = CliRunner()


def test_render_prompt_placeholders_and_appended_fragments():
    frags = {"artist": "by Ada Painter", "style": "in oil"}
    assert render_prompt("a cat {artist}, {style}", frags, {"artist", "style"}) == "a cat by Ada Painter, in oil"
    assert render_prompt("a cat {artist}, {style}", frags, {"style"}) == "a cat, in oil"
    assert render_prompt("a cat {artist}, {style}", frags, set()) == "a cat"
    # fragments the template does not mention are appended in zoo order
    assert render_prompt("a cat", frags, {"style", "artist"}) == "a cat, by Ada Painter, in oil"
    assert render_prompt("a cat", frags, set()) == "a cat"


def test_mixed_game_with_prompt_and_model_players(tiny_models, tmp_path):
    zoo = make_zoo_file(
        tmp_path,
        tiny_models,
        loras=1,
        controlnet=False,
        prompt_players=[{"name": "artist", "text": "by ada painter"}],
        prompts=[{"name": "p", "text": "a painting of a cat {artist}"}],
    )
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    game = report["games"][0]
    assert game["players"] == ["lora0", "artist"]
    assert game["player_kinds"] == {"lora0": "lora", "artist": "prompt"}
    assert set(game["metrics"]["ssim"]["coalitions"]) == {"", "lora0", "artist", "lora0+artist"}
    cache = ImageCache(Path(report["cache_dir"]))
    prompts = {k: cache.sidecar(keys[0])["fields"]["prompt"] for k, keys in game["images"].items()}
    assert prompts[""] == prompts["lora0"] == "a painting of a cat"
    assert prompts["artist"] == prompts["lora0+artist"] == "a painting of a cat by ada painter"
    a = cache.load(game["images"][""][0])
    b = cache.load(game["images"]["artist"][0])
    assert np.abs(a - b).max() > 1 / 255


def test_unknown_placeholder_is_an_error(tiny_models, tmp_path):
    zoo = make_zoo_file(tmp_path, tiny_models, loras=1, prompts=[{"name": "p", "text": "a cat {nobody}"}])
    r = runner.invoke(app, ["validate", str(zoo)])
    assert r.exit_code == 2
    assert "prompts[0].text" in r.output and "{nobody}" in r.output
