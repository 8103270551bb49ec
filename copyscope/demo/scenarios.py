"""The validity benchmark's LoRA pool and scenarios (``copyscope demo bench``).

The pool: LoRAs on the demo zoo's base, each memorising different scikit-image images, plus the hard
variants of issue 15. Works (the protected images audited) are images the demo base never saw
(``WORKS``); every other LoRA of a scenario is a decoy trained on unrelated images.

A scenario is: the works audited, the plant(s) (the LoRAs that copy them, and which work each copies),
2-3 decoys, with or without the depth ControlNet (fed the pseudo-depth of the work). Scenarios that
share a coalition share its generated images through one image cache, so the 40-odd audits cost
far fewer generations than 40 separate audits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

# Works: held out of the demo base's training set (build.DEFAULT_BASE_IMAGES) and of every decoy.
WORKS = ("astronaut", "coffee", "rocket", "clock")


@dataclass(frozen=True)
class PoolLora:
    """One LoRA of the pool: trained on ``images`` (after ``transform``), or taken from the demo zoo."""

    name: str
    images: tuple[str, ...]
    copies: str | None  # the work it memorises, None for a decoy
    transform: str = "none"  # none | flip_crop_colour (a transformed copy) | palette_of:<work>
    shipped: str | None = None  # file name under the demo zoo's loras/ (trained by `demo build`)
    seed_offset: int = 0


POOL: tuple[PoolLora, ...] = (
    # the shipped demo zoo's three LoRAs (seeds 101-103 of `copyscope demo build`)
    PoolLora("astronaut", ("astronaut",), "astronaut", shipped="planted.safetensors"),
    PoolLora("coffee", ("coffee",), "coffee", shipped="decoy-coffee.safetensors"),
    PoolLora("rocket", ("rocket",), "rocket", shipped="decoy-rocket.safetensors"),
    # trained by the benchmark
    PoolLora("clock", ("clock",), "clock", seed_offset=1),
    PoolLora("astronaut-twin", ("astronaut",), "astronaut", seed_offset=2),  # a second copier: shared credit
    PoolLora("astronaut-transformed", ("astronaut",), "astronaut", transform="flip_crop_colour", seed_offset=3),
    PoolLora("astronaut-plus3", ("astronaut", "text", "moon", "coins"), "astronaut", seed_offset=4),
    # a decoy whose palette matches the astronaut: the cat, histogram-matched to the work's colours
    PoolLora("palette-decoy", ("chelsea",), None, transform="palette_of:astronaut", seed_offset=5),
)
POOL_BY_NAME = {p.name: p for p in POOL}


def transformed_pixels(image: np.ndarray, transform: str) -> np.ndarray:
    """The image a pool LoRA is trained on, as float32 (H, W, 3) in [0, 1] (before random crops)."""
    from .images import center_square, load_skimage

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

        ref = center_square(load_skimage(transform.split(":", 1)[1]))
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


def scenarios(subset: str = "full") -> list[Scenario]:
    """The benchmark's scenarios. ``quick``: those that need only the shipped demo zoo's LoRAs (the
    astronaut plant at weight 1 and 0.5, with and without the ControlNet, and the coffee and rocket
    LoRAs as plants of their own works without it, which reuse the same images); ``no-controlnet``:
    every scenario without the ControlNet (their coalitions are shared across works: a fraction of
    the generation); ``full``: all."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    if subset == "quick":
        out = []
        for cn in (True, False):
            out.append(_pair("astronaut", {"astronaut": "astronaut"}, ("coffee", "rocket"), cn, "plain"))
            out.append(_pair("astronaut", {"astronaut": "astronaut"}, ("coffee", "rocket"), cn, "half-weight",
                             weights={"astronaut": 0.5}))
        out.append(_pair("coffee", {"coffee": "coffee"}, ("astronaut", "rocket"), False, "plain"))
        out.append(_pair("rocket", {"rocket": "rocket"}, ("astronaut", "coffee"), False, "plain"))
        return out
    full = _full()
    return full if subset == "full" else [s for s in full if not s.controlnet]


def _full() -> list[Scenario]:
    out: list[Scenario] = []
    # plain: each work, its plant, every pair of the other works' LoRAs as decoys, with and without the ControlNet
    for work in WORKS:
        others = [w for w in WORKS if w != work]
        for decoys in itertools.combinations(others, 2):
            for cn in (True, False):
                out.append(_pair(work, {work: work}, decoys, cn, "plain"))
    # hard variants, on the astronaut
    a = {"astronaut": "astronaut"}
    for cn in (True, False):
        out.append(_pair("astronaut", a, ("coffee", "rocket"), cn, "half-weight", weights={"astronaut": 0.5}))
        out.append(_pair("astronaut", {"astronaut-transformed": "astronaut"}, ("coffee", "clock"), cn, "transformed"))
        out.append(_pair("astronaut", {"astronaut-plus3": "astronaut"}, ("coffee", "rocket"), cn, "plus-three"))
        out.append(_pair("astronaut", {"astronaut": "astronaut", "astronaut-twin": "astronaut"}, ("coffee", "rocket"),
                         cn, "two-copiers"))
        out.append(_pair("astronaut", a, ("palette-decoy", "coffee", "rocket"), cn, "palette-decoy"))
        # two works, two plants: each plant must be attributed to its own work
        out.append(_pair("astronaut", {"astronaut": "astronaut", "coffee": "coffee"}, ("rocket", "clock"), cn,
                         "two-works", works=("astronaut", "coffee")))
    return out


def truth_scenarios(all_scenarios: list[Scenario]) -> list[Scenario]:
    """Scenarios whose true Shapley values are measured with more (disjoint) seeds: the plain ones without
    the ControlNet (their coalitions are shared by all works, so their 32-seed runs cost 15 coalitions)."""
    return [s for s in all_scenarios if s.kind == "plain" and not s.controlnet]
