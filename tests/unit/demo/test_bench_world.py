"""The validity benchmark in another world: works, pool and scenarios read from the demo zoo's build
(ground_truth.json "world"), so the same benchmark runs on images other than scikit-image's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from copyscope.demo.images import center_square, load_skimage, save_png
from copyscope.demo.scenarios import POOL, SKIMAGE_WORLD, World, scenarios, world_of
from copyscope.common.errors import CopyscopeError

WORLD = World(("w-one", "w-two", "w-three", "w-four"), ("g-a", "g-b", "g-c"), "g-d")


def test_scenarios_follow_the_world():
    full = scenarios("full", WORLD)
    assert len(full) == len(scenarios("full")) == 36
    assert {w for s in full for w in s.works} == set(WORLD.works)
    names = {p.name: p for p in WORLD.pool}
    for s in full:
        for d in s.decoys:  # a decoy never memorised a work of its own scenario
            assert not set(names[d].images) & set(s.works), s.name
        for plant, work in s.plants.items():
            assert names[plant].copies == work and work in s.works
    hard = {s.kind for s in full if s.works[0] == "w-one"} - {"plain"}
    assert hard == {"half-weight", "transformed", "plus-three", "two-copiers", "palette-decoy", "two-works"}
    assert names["w-one-plus3"].images == ("w-one", "g-a", "g-b", "g-c")
    assert names["palette-decoy"].transform == "palette_of:w-one" and names["palette-decoy"].images == ("g-d",)
    # no world shipped LoRA: every work's LoRA is trained, each with its own seed
    assert not any(p.shipped for p in WORLD.pool)
    assert len({p.seed_offset for p in WORLD.pool}) == len(WORLD.pool)


def test_the_scikit_image_world_is_the_shipped_benchmark():
    # the shipped benchmark's pool (names, images, seeds, shipped files) did not change with worlds
    assert [(p.name, p.images, p.shipped, p.seed_offset) for p in POOL] == [
        ("astronaut", ("astronaut",), "planted.safetensors", 0), ("coffee", ("coffee",), "decoy-coffee.safetensors", 0),
        ("rocket", ("rocket",), "decoy-rocket.safetensors", 0), ("clock", ("clock",), None, 1),
        ("astronaut-twin", ("astronaut",), None, 2), ("astronaut-transformed", ("astronaut",), None, 3),
        ("astronaut-plus3", ("astronaut", "text", "moon", "coins"), None, 4), ("palette-decoy", ("chelsea",), None, 5)]
    assert world_of({}) is SKIMAGE_WORLD
    assert scenarios("quick")[0].name == "plain:astronaut:coffee+rocket:cn"


@pytest.mark.parametrize("doc", [{"works": ["a", "b", "c"], "plus_three": ["x", "y", "z"], "palette_source": "p"},
                                 {"works": ["a", "a", "b", "c"], "plus_three": ["x", "y", "z"], "palette_source": "p"},
                                 {"works": ["a", "b", "c", "d"], "plus_three": ["x"], "palette_source": "p"},
                                 {"works": ["a", "b", "c", "d"], "plus_three": ["x", "y", "z"]},
                                 {"works": ["a", "b", "c", 4], "plus_three": ["x", "y", "z"], "palette_source": "p"}])
def test_a_malformed_world_is_refused(doc):
    with pytest.raises(CopyscopeError, match="world: expected 4 distinct works"):
        World.from_doc(doc)


def test_a_zoo_with_a_malformed_world_is_refused_naming_the_file(tmp_path):
    from copyscope.demo.bench import read_ground_truth

    gt = {"resolution": 32, "prompt": "a painting", "steps": {"lora": 4}, "world": {"works": ["a"]}}
    (tmp_path / "ground_truth.json").write_text(json.dumps(gt))
    with pytest.raises(CopyscopeError) as e:
        read_ground_truth(tmp_path)
    assert "ground_truth.json" in str(e.value) and "4 distinct works" in str(e.value) and "\n" not in str(e.value)


def _image_folder(folder):
    """Image files under new names (scikit-image's pixels, recoloured so that no file is a scikit-image image)."""
    sources = {"w-one": "astronaut", "w-two": "coffee", "w-three": "rocket", "w-four": "clock", "g-a": "brick",
               "g-b": "grass", "g-c": "gravel", "g-d": "chelsea", "g-e": "camera"}
    for name, src in sources.items():
        a = center_square(load_skimage(src))[..., ::-1]  # channels reversed
        save_png(np.ascontiguousarray(a), folder / f"{name}.png")
    return folder


@pytest.mark.slow  # builds a quick zoo and trains two pool LoRAs for a few steps
def test_a_world_built_from_image_files_trains_its_pool(tmp_path):
    from copyscope.demo.build import build_demo_zoo
    from copyscope.demo.pool import train_pool

    images = _image_folder(tmp_path / "images")
    zoo = build_demo_zoo(tmp_path / "zoo", references=("w-one",), decoys=(("w-two",),),
                         base_images=("g-a", "g-b", "g-c", "g-d", "g-e"), images=images, quick=True, log=None,
                         threads=1, world=WORLD.to_doc())
    gt = json.loads((zoo / "ground_truth.json").read_text())
    world = world_of(gt)
    assert world.works == WORLD.works and world.images == str(images.resolve())
    # the zoo's LoRAs that memorise one work are the pool's LoRAs of those works
    assert dict(world.shipped) == {"w-one": "planted.safetensors", "w-two": "decoy-w-two.safetensors"}
    only = {"w-three", "palette-decoy"}
    pool = train_pool(tmp_path / "bench", zoo, steps=2, only=only, log=lambda m: None)
    doc = json.loads((pool / "pool.json").read_text())
    assert set(doc["loras"]) == only
    spec = doc["loras"]["palette-decoy"]["spec"]
    assert spec["images"] == ["g-d"] and set(spec["image_sha256"]) == {"g-d", "w-one"}  # the file and the palette's
    # a changed image file retrains the LoRAs made from it, and only those
    from copyscope.demo.pool import _entry

    entries = {p.name: _entry(p, 0, 2, "a painting", zoo, 16, world) for p in world.pool}
    a = center_square(load_skimage("gravel"))
    save_png(np.ascontiguousarray(a), images / "w-three.png")
    changed = {p.name for p in world.pool if _entry(p, 0, 2, "a painting", zoo, 16, world) != entries[p.name]}
    assert changed == {"w-three"}
    for w in WORLD.works:  # references and conditioning of every work, from the world's own files
        assert (pool / "references" / w / f"{w}.png").is_file() and (pool / "control" / f"{w}_depth.png").is_file()
    from PIL import Image

    ref = np.asarray(Image.open(pool / "references" / "w-three" / "w-three.png").convert("RGB"), np.float32)
    mean = ref.reshape(-1, 3).mean(0)
    rocket = center_square(load_skimage("rocket")).reshape(-1, 3).mean(0) * 255
    assert np.allclose(mean, rocket[::-1], atol=6)  # the recoloured file, not scikit-image's rocket


def test_a_world_image_that_does_not_exist_is_refused(tmp_path):
    from copyscope.demo.build import build_demo_zoo

    images = _image_folder(tmp_path / "images")
    bad = {**WORLD.to_doc(), "palette_source": "nowhere"}
    with pytest.raises(CopyscopeError, match="world: unknown images nowhere"):
        build_demo_zoo(tmp_path / "zoo", references=("w-one",), decoys=(), base_images=("g-a", "g-b"),
                       images=images, quick=True, log=None, world=bad)
    assert not (tmp_path / "zoo" / "ground_truth.json").exists()
