"""The validity benchmark's LoRA pool and scenarios (``copyscope demo bench``).

The pool: LoRAs on the demo zoo's base, each memorising one image of the world, plus hard variants
(a transformed copy, a copy among three other images, a second copier, a palette-matched decoy). Works
(the protected images audited) are images the demo base never saw; every other LoRA of a scenario is a
decoy trained on unrelated images. A world (``World``) names those images: scikit-image's by default
(``SKIMAGE_WORLD``, the shipped demo's), or those a demo zoo's build recorded (``world_of``; for instance
the KDE wallpaper world and the MATE backgrounds world of bench/world_debian.py).

A scenario is: the works audited, the plant(s) (the LoRAs that copy them, and which work each copies),
2-3 decoys, with or without the depth ControlNet (fed the pseudo-depth of the work). Scenarios that
share a coalition share its generated images through one image cache, so the 40-odd audits cost
far fewer generations than 40 separate audits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from ..common.errors import CopyscopeError


@dataclass(frozen=True)
class PoolLora:
    """One LoRA of the pool: trained on ``images`` (after ``transform``), or taken from the demo zoo."""

    name: str
    images: tuple[str, ...]
    copies: str | None  # the work it memorises, None for a decoy
    transform: str = "none"  # none | flip_crop_colour (a transformed copy) | palette_of:<work>
    shipped: str | None = None  # file name under the demo zoo's loras/ (trained by `demo build`)
    seed_offset: int = 0


@dataclass(frozen=True)
class World:
    """The images a benchmark world is made of. ``works``: the four protected works (held out of the base;
    the first is the demo zoo's planted work, the hard variants copy it); ``plus_three``: the extra images of
    the LoRA that memorises the first work among three others; ``palette_source``: the image the palette decoy
    is trained on, histogram-matched to the first work; ``images``: the ``--images`` folder the names come from
    (None: scikit-image's); ``shipped``: work -> the demo zoo's LoRA file that memorises it alone."""

    works: tuple[str, ...]
    plus_three: tuple[str, ...]
    palette_source: str
    images: str | None = None
    shipped: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_doc(cls, doc: dict) -> "World":
        works = tuple(doc.get("works") or ())
        extra = tuple(doc.get("plus_three") or ())
        names = [*works, *extra, doc.get("palette_source")]
        if len(works) != 4 or len(set(works)) != 4 or len(extra) != 3 or not all(isinstance(n, str) and n for n in names):
            raise CopyscopeError("world: expected 4 distinct works, 3 plus_three images and a palette_source")
        return cls(works, extra, str(doc["palette_source"]), doc.get("images"),
                   tuple(sorted((doc.get("shipped") or {}).items())))

    def to_doc(self) -> dict:
        return {"works": list(self.works), "plus_three": list(self.plus_three),
                "palette_source": self.palette_source, "images": self.images, "shipped": dict(self.shipped)}

    def image_names(self) -> list[str]:
        return [*self.works, *self.plus_three, self.palette_source]

    @cached_property
    def library(self) -> dict[str, Path]:
        """Name -> image file of the world's ``images`` folder (empty for scikit-image's), read and checked once."""
        from .images import image_library

        return image_library(Path(self.images)) if self.images else {}

    def load(self, name: str) -> np.ndarray:
        """One of the world's images by name, float32 (H, W, 3) in [0, 1]."""
        from .images import load_named

        return load_named(name, self.library)

    @property
    def pool(self) -> tuple[PoolLora, ...]:
        """One LoRA per work (the zoo's own where it ships one), then the hard variants on the first work."""
        shipped = dict(self.shipped)
        w = self.works[0]
        out, trained = [], 0
        for work in self.works:
            if work in shipped:
                out.append(PoolLora(work, (work,), work, shipped=shipped[work]))
            else:  # the scikit-image world's seeds stay as they were: its one trained work has offset 1
                trained += 1
                out.append(PoolLora(work, (work,), work, seed_offset=1 if trained == 1 else 4 + trained))
        out += [
            PoolLora(f"{w}-twin", (w,), w, seed_offset=2),  # a second copier: shared credit
            PoolLora(f"{w}-transformed", (w,), w, transform="flip_crop_colour", seed_offset=3),
            PoolLora(f"{w}-plus3", (w, *self.plus_three), w, seed_offset=4),
            # a decoy whose palette matches the first work's
            PoolLora("palette-decoy", (self.palette_source,), None, transform=f"palette_of:{w}", seed_offset=5),
        ]
        return tuple(out)

    def lora(self, name: str) -> PoolLora:
        return next(p for p in self.pool if p.name == name)


# The shipped demo's world: scikit-image's images; the works are held out of the demo base's training set
# (images.DEFAULT_BASE_IMAGES) and of every decoy; the zoo's three LoRAs are seeds 101-103 of `demo build`.
SKIMAGE_WORLD = World(("astronaut", "coffee", "rocket", "clock"), ("text", "moon", "coins"), "chelsea",
                      shipped=(("astronaut", "planted.safetensors"), ("coffee", "decoy-coffee.safetensors"),
                               ("rocket", "decoy-rocket.safetensors")))
WORKS = SKIMAGE_WORLD.works
POOL: tuple[PoolLora, ...] = SKIMAGE_WORLD.pool
POOL_BY_NAME = {p.name: p for p in POOL}


def checked_world(world: dict | None, library: dict, references, base_images, images: Path | None) -> dict | None:
    """A build's ``world`` as ground_truth.json records it (its image folder resolved), or None; a CopyscopeError
    if it cannot be one: an image neither scikit-image's nor a file of ``library``, a first work that is not a
    reference, a work among the base's images."""
    if not world:
        return None
    from .images import SKIMAGE_IMAGES

    w = World.from_doc({**world, "images": str(Path(images).resolve()) if images else None})
    unknown = [n for n in w.image_names() if n not in SKIMAGE_IMAGES and n not in library]
    if unknown:
        raise CopyscopeError(f"world: unknown images {', '.join(unknown)}")
    if w.works[0] not in references or set(w.works) & set(base_images):
        raise CopyscopeError("world: its first work must be a reference and no work may be a base image")
    return w.to_doc()


def world_of(gt: dict) -> World:
    """The world of a demo zoo (its ground_truth.json): the one recorded by its build, else scikit-image's.
    The zoo's LoRAs that memorise one work alone are the pool's LoRAs of those works."""
    if not gt.get("world"):
        return SKIMAGE_WORLD
    world = World.from_doc(gt["world"])
    shipped = {}
    for info in ((gt.get("components") or {}).get("loras") or {}).values():
        on = list(info.get("trained_on") or []) if isinstance(info, dict) else []
        if len(on) == 1 and on[0] in world.works and on[0] not in shipped:
            shipped[on[0]] = Path(str(info.get("file", ""))).name
    return World(world.works, world.plus_three, world.palette_source, world.images, tuple(sorted(shipped.items())))


def transformed_pixels(image: np.ndarray, transform: str, world: World = SKIMAGE_WORLD) -> np.ndarray:
    """The image a pool LoRA is trained on, as float32 (H, W, 3) in [0, 1] (before random crops)."""
    from .images import center_square

    if transform == "none":
        return image
    if transform == "flip_crop_colour":
        # mirrored, the central 75% kept, colours shifted: R/B gains and a channel rotation
        sq = center_square(image)[:, ::-1]
        s = sq.shape[0]
        m = s // 8
        sq = sq[m : s - m, m : s - m]
        shifted = np.clip(sq[..., [1, 2, 0]] * np.array([1.1, 0.9, 1.0], np.float32) + 0.05, 0, 1)
        return np.ascontiguousarray(shifted, dtype=np.float32)
    if transform.startswith("palette_of:"):
        from skimage.exposure import match_histograms

        ref = center_square(world.load(transform.split(":", 1)[1]))
        return np.clip(match_histograms(image, ref, channel_axis=-1), 0, 1).astype(np.float32)
    raise ValueError(f"unknown transform {transform!r}")


@dataclass(frozen=True)
class Scenario:
    name: str
    works: tuple[str, ...]
    plants: dict  # LoRA name -> the work it copies
    decoys: tuple[str, ...]
    controlnet: bool
    weights: dict = field(default_factory=dict)  # LoRA name -> weight (default 1.0)
    kind: str = "plain"
    truth_seeds: bool = False  # true values measured with many more seeds (interval coverage)
    triggers: tuple = ()  # (work, trigger word) pairs: each work's prompt names its trigger (the trigger pool)

    @property
    def loras(self) -> tuple[str, ...]:
        return tuple(self.plants) + self.decoys

    def __hash__(self):
        return hash(self.name)


def _pair(work: str, plants: dict, decoys, cn: bool, kind: str, weights=None, works=None) -> Scenario:
    tag = "cn" if cn else "nocn"
    name = f"{kind}:{'+'.join(works or (work,))}:{'+'.join(decoys)}:{tag}"
    return Scenario(name, tuple(works or (work,)), dict(plants), tuple(decoys), cn, dict(weights or {}), kind)


SUBSETS = ("quick", "no-controlnet", "full")

# How the pool's LoRAs are trained. ``demo``: each alone, as `demo build` trains the zoo's (same caption for all: stacked
# at full weight they draw texture). ``trigger-leave-alone``: the four works' LoRAs trained together, each under a
# caption with its own trigger word, the others switched on beside it learning only to leave its prediction as it is
# alone (copyscope.demo.training.train_joint_loras): LoRAs that keep their content when stacked, as real ones mostly do;
# each work is audited with its own trigger in the prompt. It has no hard variants yet (twin, transformed, plus-three,
# palette decoy): its scenarios are the plain, half-weight and two-works ones.
POOL_RECIPES = ("demo", "trigger-leave-alone")
TRIGGER_WORDS = ("zqx", "vbk", "pmw", "jdq")  # one per work, in order; strings the base never saw in a caption


def trigger_caption(prompt: str, word: str) -> str:
    """A trigger pool LoRA's caption, and its work's audit prompt: "a painting" -> "a painting of zqx"."""
    return f"{prompt} of {word}"


def scenarios(subset: str = "full", world: World = SKIMAGE_WORLD, recipe: str = "demo") -> list[Scenario]:
    """The benchmark's scenarios in ``world``. ``quick``: those that need only the demo zoo's own LoRAs
    (the first work's plant at weight 1 and 0.5, with and without the ControlNet, and the second and third
    works' LoRAs as plants of their own works without it, which reuse the same images); ``no-controlnet``:
    every scenario without the ControlNet (their coalitions are shared across works: a fraction of
    the generation); ``full``: all. ``recipe`` (POOL_RECIPES): for ``trigger-leave-alone`` only the scenarios
    whose LoRAs are the works' own, each work prompted with its trigger."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    if recipe not in POOL_RECIPES:
        raise ValueError(f"unknown pool recipe {recipe!r}; expected one of {', '.join(POOL_RECIPES)}")
    if recipe == "demo":
        return _scenarios(subset, world)
    triggers = tuple(zip(world.works, TRIGGER_WORDS))
    return [replace(s, triggers=tuple(t for t in triggers if t[0] in s.works))
            for s in _scenarios(subset, world) if set(s.loras) <= set(world.works)]


def _scenarios(subset: str, world: World) -> list[Scenario]:
    w1, w2, w3, _ = world.works
    if subset == "quick":
        out = []
        for cn in (True, False):
            out.append(_pair(w1, {w1: w1}, (w2, w3), cn, "plain"))
            out.append(_pair(w1, {w1: w1}, (w2, w3), cn, "half-weight", weights={w1: 0.5}))
        out.append(_pair(w2, {w2: w2}, (w1, w3), False, "plain"))
        out.append(_pair(w3, {w3: w3}, (w1, w2), False, "plain"))
        return out
    full = _full(world)
    return full if subset == "full" else [s for s in full if not s.controlnet]


def _full(world: World) -> list[Scenario]:
    out: list[Scenario] = []
    works = world.works
    # plain: each work, its plant, every pair of the other works' LoRAs as decoys, with and without the ControlNet
    for work in works:
        others = [w for w in works if w != work]
        for decoys in itertools.combinations(others, 2):
            for cn in (True, False):
                out.append(_pair(work, {work: work}, decoys, cn, "plain"))
    # hard variants, on the first work
    w1, w2, w3, w4 = works
    a = {w1: w1}
    for cn in (True, False):
        out.append(_pair(w1, a, (w2, w3), cn, "half-weight", weights={w1: 0.5}))
        out.append(_pair(w1, {f"{w1}-transformed": w1}, (w2, w4), cn, "transformed"))
        out.append(_pair(w1, {f"{w1}-plus3": w1}, (w2, w3), cn, "plus-three"))
        out.append(_pair(w1, {w1: w1, f"{w1}-twin": w1}, (w2, w3), cn, "two-copiers"))
        out.append(_pair(w1, a, ("palette-decoy", w2, w3), cn, "palette-decoy"))
        # two works, two plants: each plant must be attributed to its own work
        out.append(_pair(w1, {w1: w1, w2: w2}, (w3, w4), cn, "two-works", works=(w1, w2)))
    return out


def truth_scenarios(all_scenarios: list[Scenario]) -> list[Scenario]:
    """Scenarios whose true Shapley values are measured with more (disjoint) seeds: the plain ones without
    the ControlNet (their coalitions are shared by all works, so their 32-seed runs cost 15 coalitions)."""
    return [s for s in all_scenarios if s.kind == "plain" and not s.controlnet]
