"""The trigger world (bench/world_trigger.md): a validity pool whose LoRAs are trained together, each under its own
trigger word, the others learning only to leave the step's LoRA alone (copyscope.demo.training.train_joint_loras,
``partners="leave-alone"``); its scenarios prompt each work with its trigger."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.bench import load_bench
from helpers.paths import REPO

from copyscope.common.errors import CopyscopeError
from copyscope.demo.scenarios import SKIMAGE_WORLD, TRIGGER_WORDS, scenarios, trigger_caption

DEMO = REPO / "demo_zoo"
GT = {"prompt": "a painting", "resolution": 32}


def test_the_trigger_pool_has_the_scenarios_of_the_works_own_loras_each_prompted_with_its_trigger(tmp_path):
    from copyscope.demo.bench import scenario_zoo

    demo, trig = scenarios("full"), scenarios("full", recipe="trigger-leave-alone")
    assert len(trig) == 28 and {s.kind for s in trig} == {"plain", "half-weight", "two-works"}
    assert [s.name for s in trig] == [s.name for s in demo if set(s.loras) <= set(SKIMAGE_WORLD.works)]
    assert all(not s.triggers for s in demo)
    words = dict(zip(SKIMAGE_WORLD.works, TRIGGER_WORDS))
    assert len(set(TRIGGER_WORDS)) == len(TRIGGER_WORDS) == 4
    for s in trig:
        zoo = scenario_zoo(s, tmp_path / "pool", DEMO, tmp_path / "cache", ["phash"], seeds=2, gt=GT)
        assert {p["work"]: p["text"] for p in zoo["prompts"]} == {w: f"a painting of {words[w]}" for w in s.works}
    two = next(s for s in trig if s.kind == "two-works")
    plain = scenario_zoo(next(s for s in demo if s.kind == "two-works"), tmp_path, DEMO, tmp_path, ["phash"], seeds=2, gt=GT)
    assert {p["text"] for p in plain["prompts"]} == {"a painting"}  # the demo pool's prompts did not change
    assert len(two.triggers) == 2 and trigger_caption("a painting", "zqx") == "a painting of zqx"
    with pytest.raises(ValueError, match="unknown pool recipe"):
        scenarios("full", recipe="trigger")


def _lats(pipe, works):
    from copyscope.demo.training import lora_latents

    return {w: lora_latents(pipe.vae, [SKIMAGE_WORLD.load(w)], 4, 32, np.random.default_rng(0),
                            pipe.vae.config.scaling_factor) for w in works}


def test_leave_alone_partners_learn_only_where_they_change_the_steps_prediction():
    """Two LoRAs, the other always on, one step each. Step 1 (the first LoRA's work): the second is fresh (lora_B is
    zero), so the stack predicts exactly what the first does alone and the second gets a zero gradient (Adam moves it
    not at all); it has never been given the first work's pictures as a target. Step 2 (the second's work): the second
    takes its own step, and the first, which now changes the stack, is pulled toward leaving the second alone (a
    second Adam step: lora_B entries move further than the learning rate)."""
    import torch

    from copyscope.demo.training import HYPER, train_joint_loras

    from copyscope.demo.pool import _base_pipeline

    pipe = _base_pipeline(DEMO)
    works = ("astronaut", "coffee")
    lats = _lats(pipe, works)
    captions = {w: trigger_caption("a painting", word) for w, word in zip(works, TRIGGER_WORDS)}
    torch.set_num_threads(1)
    lr = HYPER["lora_lr"]

    def moved(unet, w):
        return max(float(p.detach().abs().max()) for n, p in unet.named_parameters() if f"lora_B.{w}." in n)

    unet = train_joint_loras(pipe, lats, captions, 1, 0, 4, partners="leave-alone", stacked_fraction=1.0)
    assert 1.5 * lr < moved(unet, "astronaut") <= 2.1 * lr  # its own step, then a partner's step
    assert 0.5 * lr < moved(unet, "coffee") <= 1.001 * lr  # its own step only
    once = train_joint_loras(pipe, {"astronaut": lats["astronaut"]}, captions, 1, 0, 4, partners="leave-alone")
    assert 0.5 * lr < moved(once, "astronaut") <= 1.001 * lr
    with pytest.raises(ValueError, match="partners="):
        train_joint_loras(pipe, lats, captions, 1, 0, 4, partners="help")


@pytest.mark.slow  # trains the four LoRAs of a trigger pool for two steps each
def test_a_trigger_pool_trains_the_works_together_once_and_records_their_captions(tmp_path):
    from copyscope.demo.pool import train_pool

    said: list[str] = []
    pool = train_pool(tmp_path, DEMO, steps=2, recipe="trigger-leave-alone", log=said.append)
    doc = json.loads((pool / "pool.json").read_text())
    assert set(doc["loras"]) == set(SKIMAGE_WORLD.works)
    for w, word in zip(SKIMAGE_WORLD.works, TRIGGER_WORDS):
        spec = doc["loras"][w]["spec"]
        assert spec["caption"] == f"a painting of {word}" and spec["recipe"] == "trigger-leave-alone"
        assert spec["trained_with"] == list(SKIMAGE_WORLD.works) and spec["steps"] == 2
    assert sum("trained together" in m for m in said) == 1
    files = {w: (pool / "loras" / f"{w}.safetensors").read_bytes() for w in SKIMAGE_WORLD.works}
    assert files["astronaut"] != (DEMO / "loras" / "planted.safetensors").read_bytes()  # not the zoo's own file
    train_pool(tmp_path, DEMO, steps=2, recipe="trigger-leave-alone", log=said.append)  # every entry matches: kept
    assert sum("trained together" in m for m in said) == 1
    # the demo recipe on the same folder does not take a trigger LoRA for its own: the zoo's file comes back
    train_pool(tmp_path, DEMO, steps=2, only={"astronaut"}, log=said.append)
    assert (pool / "loras" / "astronaut.safetensors").read_bytes() == (DEMO / "loras" / "planted.safetensors").read_bytes()
    with pytest.raises(CopyscopeError, match="unknown pool recipe"):
        train_pool(tmp_path, DEMO, steps=2, recipe="wide")


def test_the_bench_refuses_an_unknown_pool_recipe_and_kinds_the_pool_lacks(tmp_path):
    from copyscope.demo.bench import run_bench

    with pytest.raises(CopyscopeError, match="--pool-recipe joint"):
        run_bench(tmp_path / "a", DEMO, pool_recipe="joint")
    with pytest.raises(CopyscopeError, match="trigger-leave-alone pool has a kind among transformed"):
        run_bench(tmp_path / "b", DEMO, pool_recipe="trigger-leave-alone", kinds={"transformed"})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_world_trigger_counts_verdicts_with_the_t_test_and_the_corrected_first():
    wt = load_bench("world_trigger")
    rows = [{"verdicts": {"phash": {"planted_first": False, "planted_first_vs_decoys": True, "plant_significant": False,
                                    "plant_significant_t": True, "decoy_significant": True, "decoy_significant_t": False}}},
            {"verdicts": {"phash": {"planted_first": True, "plant_significant": True, "decoy_significant": True}}}]
    assert wt.verdict_counts(rows, "phash") == {"first_vs_decoys": [2, 2], "plant_significant_t": [2, 2],
                                                "decoy_significant_t": [1, 2]}
    assert wt.verdict_counts(rows, "ssim") is None
