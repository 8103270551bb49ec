"""A new player kind is one class plus its registration: a toy kind defined here (a guidance boost
that raises the guidance scale while it is active) gets its zoo section, validation with file/line
errors, a place in the plan, its own image-key group, state of its own on each engine, and audits end to
end through the CLI on the tiny models, with nothing changed outside this file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import Field
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.cli import app
from copyscope.config import Float, NamedSpec, load_zoo
from copyscope.common.errors import CopyscopeError
from copyscope.plan.games import make_plan
from copyscope.players import KINDS, PlayerKind, register
from copyscope.players.kind import unregister

from helpers.zoo import make_zoo_file

runner = CliRunner()


class GuidanceBoostSpec(NamedSpec):
    add: Float = Field(ge=0, le=50)


class GuidanceBoostPlayer(PlayerKind):
    kind = "guidance_boost"
    section = "guidance_boosts"
    spec_model = GuidanceBoostSpec
    label = "guidance boost"
    key_group = "guidance_boosts"  # its entries join the image key while it is active
    has_model = False

    @classmethod
    def fill_defaults(cls, spec) -> None:
        spec.name = spec.name or "boost"

    def key_entry(self, item) -> dict:
        return {"add": self.spec.add}

    @dataclass
    class State(PlayerKind.State):
        boosted_batches: int = 0  # batches this engine generated with a boost on

    @classmethod
    def call_kwargs(cls, engine, active, items, kwargs) -> None:
        kwargs["guidance_scale"] += sum(p.spec.add for p in active)
        if active:
            engine.state(cls).boosted_batches += 1


@pytest.fixture
def toy_kind():
    register(GuidanceBoostPlayer)
    yield GuidanceBoostPlayer
    unregister(GuidanceBoostPlayer.kind)


def _zoo(tmp_path, tiny_models, boosts) -> Path:
    return make_zoo_file(tmp_path, tiny_models, loras=1, controlnet=False, guidance_boosts=boosts)


def test_toy_kind_validates_and_plans(toy_kind, tiny_models, tmp_path):
    zoo = load_zoo(_zoo(tmp_path, tiny_models, [{"add": 4.0}]))
    assert zoo.spec.guidance_boosts[0].name == "boost"  # its own default name
    assert [(p.name, p.kind) for p in make_plan(zoo).games[0].players] == [("lora0", "lora"), ("boost", "guidance_boost")]
    assert list(json.loads(json.dumps(zoo.spec.model_dump())))[:7] == [
        "name", "output", "cache", "bases", "controlnets", "loras", "prompt_players"]
    # errors name file, line and key like any other section
    path = _zoo(tmp_path, tiny_models, [{"name": "b", "add": "lots"}])
    with pytest.raises(CopyscopeError, match=r"zoo\.yaml:\d+: guidance_boosts\[0\]\.add: .*valid number"):
        load_zoo(path)
    path = _zoo(tmp_path, tiny_models, [{"name": "lora0", "add": 1.0}])
    with pytest.raises(CopyscopeError, match=r"guidance_boosts\[0\]\.name: duplicate name 'lora0'"):
        load_zoo(path)


def test_without_the_registration_the_section_is_an_unknown_key(tiny_models, tmp_path):
    assert "guidance_boost" not in KINDS
    with pytest.raises(CopyscopeError, match=r"zoo\.yaml:\d+: guidance_boosts: unknown key"):
        load_zoo(_zoo(tmp_path, tiny_models, [{"add": 4.0}]))


def test_toy_kind_audits_end_to_end(toy_kind, tiny_models, tmp_path, one_torch_thread):
    zoo = _zoo(tmp_path, tiny_models, [{"name": "boost", "add": 6.0}])
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    report = json.loads((Path(yaml.safe_load(zoo.read_text())["output"]) / "report.json").read_text())
    (game,) = report["games"]
    assert game["players"] == ["lora0", "boost"] and game["player_kinds"]["boost"] == "guidance_boost"
    cache = ImageCache(report["cache_dir"])
    on = json.loads(cache.path(game["images"]["boost"][0]).with_suffix(".json").read_text())["fields"]
    off = json.loads(cache.path(game["images"][""][0]).with_suffix(".json").read_text())["fields"]
    assert on["guidance_boosts"] == [{"add": 6.0}] and off["guidance_boosts"] == []
    for a, b in zip((cache.load(k) for k in game["images"][""]), (cache.load(k) for k in game["images"]["boost"])):
        assert np.abs(a - b).max() > 1 / 255  # the boost changes the images
    ssim = game["metrics"]["ssim"]
    assert set(ssim["coalitions"]) == {"", "lora0", "boost", "lora0+boost"}
    assert set(ssim["shapley"]) == {"lora0", "boost"}


def test_toy_kind_keeps_its_state_on_the_engine(toy_kind, tiny_models, tmp_path, one_torch_thread):
    """The kind's State is its own per engine: counted while generating, fresh after release, separate per engine."""
    from copyscope.audit.prepare import prepare_audit
    from copyscope.generate import CoalitionEngine

    prep = prepare_audit(_zoo(tmp_path, tiny_models, [{"add": 2.0}]))
    game = prep.plan.games[0]
    engine, other = CoalitionEngine(prep.zoo, game), CoalitionEngine(prep.zoo, game)
    assert engine.state(GuidanceBoostPlayer) == GuidanceBoostPlayer.State()
    items = prep.plan.items[:1]
    engine.generate((False, False), items)
    assert engine.state(GuidanceBoostPlayer).boosted_batches == 0
    engine.generate((False, True), items)
    assert engine.state(GuidanceBoostPlayer).boosted_batches == 1
    assert other.state(GuidanceBoostPlayer).boosted_batches == 0  # one State per engine
    engine.release()
    assert engine.state(GuidanceBoostPlayer).boosted_batches == 0 and engine.pipe is None
