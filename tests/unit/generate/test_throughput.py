"""Throughput features: text-embedding cache, no ControlNet forward without a ControlNet, plan
--calibrate, the compile switch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from typer.testing import CliRunner

from copyscope.audit import prepare_audit
from copyscope.cli import app
from copyscope.generate import CoalitionEngine
from helpers.zoo import make_zoo_file

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def te_lora(tiny_models, tmp_path_factory):
    """A LoRA with text-encoder weights (besides UNet ones), for the same tiny base."""
    from diffusers import StableDiffusionPipeline

    from copyscope.demo.tiny import tiny_lora

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_models["base"]), safety_checker=None, requires_safety_checker=False)
    return tiny_lora(pipe, tmp_path_factory.mktemp("te_lora") / "te.safetensors", seed=7, text_encoder=True)


@pytest.fixture(scope="module")
def engine_zoo(tiny_models, te_lora, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("thr")
    zoo = make_zoo_file(tmp, tiny_models, loras=1, controlnet=True,
                        prompts=[{"name": "p", "text": "a painting of a cat"},
                                 {"name": "q", "text": "a photo of a dog", "negative": "blurry"}],
                        generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 1, "batch_size": 2, "scheduler": "ddim"})
    import yaml

    data = yaml.safe_load(zoo.read_text())
    data["loras"].append({"name": "te", "model": str(te_lora), "weight": 1.0})
    zoo.write_text(yaml.safe_dump(data, sort_keys=False))
    return prepare_audit(zoo)


def _images(prep, coalitions, cache: bool):
    engine = CoalitionEngine(prep.zoo, prep.plan.games[0])
    engine.embedding_cache = cache
    out = {c: np.stack(engine.generate(c, prep.plan.items)) for c in coalitions}
    return out, engine


def test_embedding_cache_gives_bit_identical_images(engine_zoo):
    game = engine_zoo.plan.games[0]
    assert game.names == ["depth", "lora0", "te"]
    # (depth, lora0, te): switch the text-encoder LoRA on and off again, with and without others
    order = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 1, 0), (1, 0, 1), (0, 0, 0), (0, 1, 0)]
    order = [tuple(bool(x) for x in c) for c in order]
    with_cache, eng = _images(engine_zoo, order, cache=True)
    without, eng0 = _images(engine_zoo, order, cache=False)
    assert {p.name for p in eng.players["lora"] if p.text_encoder_weights} == {"te"}
    for c in order:
        assert np.array_equal(with_cache[c], without[c]), game.coalition_key(c)
    # 5 generations without the text-encoder LoRA, one batch each: all but the first are hits
    assert eng.embedding_hits == 4 and eng0.embedding_hits == 0
    # the text-encoder LoRA does change the images (so the check above is not vacuous)
    te_on, te_off = (False, False, True), (False, False, False)
    assert np.abs(with_cache[te_on] - with_cache[te_off]).max() > 1 / 255


def test_coalitions_without_controlnet_run_the_plain_pipeline(engine_zoo):
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline

    engine = CoalitionEngine(engine_zoo.zoo, engine_zoo.plan.games[0])
    engine.load()
    calls = []
    next(p for p in engine.players["controlnet"] if p.name == "depth").model.register_forward_hook(lambda *a: calls.append(1))
    for c in itertools.product([False, True], repeat=3):
        pipe = engine.activate(c)
        if c[0]:
            assert isinstance(pipe, StableDiffusionControlNetPipeline)
        else:
            assert type(pipe) is StableDiffusionPipeline
    engine.generate((False, True, False), engine_zoo.plan.items[:1])
    assert calls == []
    engine.generate((True, True, False), engine_zoo.plan.items[:1])
    assert len(calls) == engine.gen.steps  # one ControlNet forward per step (batched CFG)


def test_lora_switches_are_timed(engine_zoo):
    engine = CoalitionEngine(engine_zoo.zoo, engine_zoo.plan.games[0])
    engine.load()
    for c in engine_zoo.plan.games[0].all_coalitions():
        engine.activate(c)
    assert engine.switches == 8 and engine.switch_seconds > 0


def test_compile_flag_is_part_of_image_keys(tiny_models, tmp_path):
    plain = prepare_audit(make_zoo_file(tmp_path, tiny_models, loras=1))
    compiled = prepare_audit(make_zoo_file(tmp_path / "c", tiny_models, loras=1,
                             generation={"resolution": 32, "steps": 2, "seeds": 1, "batch_size": 2, "compile": True}))
    assert compiled.zoo.spec.generation.compile and not plain.zoo.spec.generation.compile
    item = plain.plan.items[0]
    members = (False, True)
    f_plain = CoalitionEngine(plain.zoo, plain.plan.games[0]).image_fields(members, item)
    f_comp = CoalitionEngine(compiled.zoo, compiled.plan.games[0]).image_fields(members, item)
    assert "compile" not in f_plain and f_comp["compile"] is True


def test_plan_calibrate_prints_an_estimate(tiny_models, tmp_path):
    zoo = make_zoo_file(tmp_path, tiny_models, loras=2, controlnet=False, estimator={"bootstrap": 10})
    r = runner.invoke(app, ["plan", str(zoo)])
    assert r.exit_code == 0, r.output
    assert "calibration" not in r.output
    r = runner.invoke(app, ["plan", str(zoo), "--calibrate"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "4 coalition(s) x 2 image(s)" in text and "= 8 image(s)" in text
    assert "calibration:" in text and "s/image" in text and "min" in text


def test_background_scoring_gives_the_same_report(tiny_models, tmp_path, monkeypatch):
    from copyscope.audit import audit_zoo

    reports = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("COPYSCOPE_BACKGROUND", flag)
        zoo = make_zoo_file(tmp_path / flag, tiny_models, loras=2, controlnet=False, estimator={"bootstrap": 20})
        reports[flag] = audit_zoo(zoo)
    a, b = reports["1"]["games"][0]["metrics"], reports["0"]["games"][0]["metrics"]
    assert a.keys() == b.keys()
    for name in a:
        assert a[name]["coalitions"] == b[name]["coalitions"] and a[name]["shapley"] == b[name]["shapley"], name
