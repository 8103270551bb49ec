"""A demo build's arguments, before anything is trained: the default training steps and sample pools (full and
``quick``), :func:`_checked` (resolution, known image names, no reference or decoy image among the base images,
the LoRA rank, and the output folder: ``--overwrite`` replaces only a folder :func:`_is_demo_zoo` recognises as a
demo zoo), and :class:`_Build`, the record of one build that carries the checked arguments through the stages of
:mod:`copyscope.demo.build` and collects what each produces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..common.errors import CopyscopeError
from .images import SKIMAGE_IMAGES, load_named
from .training import HYPER

# The shipped zoo's steps. 800/500/400 (rank 8) before 2026-12-03: its planted LoRA drew textures in the
# work's colours, not a recognisable astronaut (bench/demo_lora_grid.py; docs/validity.md).
FULL_STEPS = {"vae": 2000, "base": 3000, "controlnet": 200, "lora": 1600}
QUICK_STEPS = {"vae": 4, "base": 4, "controlnet": 3, "lora": 3}
# Augmented samples per image: generic pool (base, VAE, ControlNet) and per-LoRA pool.
FULL_POOL = {"base_per_image": 96, "lora_per_image": 64}
QUICK_POOL = {"base_per_image": 4, "lora_per_image": 4}


def _norm_decoys(decoys) -> list[tuple[str, ...]]:
    return [(d,) if isinstance(d, str) else tuple(d) for d in decoys]


@dataclass
class _Build:
    """One build: its checked arguments, then what each stage produces (stages run in order and share
    one NumPy generator, ``rng``, for the base crops then the LoRA crops)."""

    out: Path
    references: tuple[str, ...]
    decoys: list[tuple[str, ...]]
    base_images: tuple[str, ...]
    resolution: int
    seed: int
    quick: bool
    steps: dict[str, int]
    pool: dict[str, int]
    prompt: str
    log: Callable[[str], None]
    lora_rank: int = HYPER["lora_rank"]
    library: dict = field(default_factory=dict)  # --images: name -> image file (beside scikit-image's names)
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)  # measured numbers for ground_truth.json

    def image(self, name: str) -> np.ndarray:
        return load_named(name, self.library)

    @property
    def decoy_images(self) -> list[str]:
        return [x for d in self.decoys for x in d]

    def lora_sets(self) -> list[tuple[str, tuple[str, ...], str]]:
        return [("planted", tuple(self.references), "planted_infringer")] + [
            ("decoy-" + "-".join(d), tuple(d), "decoy") for d in self.decoys
        ]


DEMO_LAYOUT = {"base", "controlnet-depth", "loras", "references", "control", "ground_truth.json", "zoo.yaml"}


def _is_demo_zoo(folder: Path) -> bool:
    """A folder `copyscope demo build` wrote: its ground_truth.json says so (or, a build stopped before
    writing it, the folder holds the demo's own folders only)."""
    from ..common.inputs import read_bounded

    names = {p.name for p in folder.iterdir()}
    if "ground_truth.json" not in names and names <= DEMO_LAYOUT - {"zoo.yaml"} and all((folder / n).is_dir() for n in names):
        return True
    try:
        gt = json.loads(read_bounded(folder / "ground_truth.json", 16 << 20, "ground_truth.json").decode("utf-8"))
    except (CopyscopeError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(gt, dict) and str(gt.get("format", "")).startswith("copyscope-demo-ground-truth/")


def _checked(out_dir, references, decoys, base_images, resolution, quick, steps, overwrite, lora_rank, library=None) -> dict:
    """The arguments, normalised; a CopyscopeError for anything a build must not start with."""
    out = Path(out_dir)
    references, decoys, base_images = tuple(references), _norm_decoys(decoys), tuple(base_images)
    if resolution % 8 or resolution < 16:
        raise CopyscopeError(f"resolution must be a multiple of 8 and >= 16, got {resolution}")
    if not references:
        raise CopyscopeError("need at least one reference work")
    for name in (*references, *base_images, *(x for d in decoys for x in d)):
        if name not in SKIMAGE_IMAGES and name not in (library or {}):
            raise CopyscopeError(f"unknown image {name!r}: choose from {', '.join(SKIMAGE_IMAGES)}"
                                 + (f" or the --images files {', '.join(library)}" if library else ""))
    held_out = set(references) | {x for d in decoys for x in d}
    leak = sorted(held_out & set(base_images))
    if leak:
        raise CopyscopeError(f"base images must not include references or decoy images: {', '.join(leak)}")
    if set(references) & {x for d in decoys for x in d}:
        raise CopyscopeError("a decoy LoRA must not be trained on a reference work")
    if lora_rank is not None and (not isinstance(lora_rank, int) or lora_rank < 1):
        raise CopyscopeError(f"lora rank must be a positive integer, got {lora_rank!r}")
    st = dict(QUICK_STEPS if quick else FULL_STEPS)
    st.update(steps or {})
    if out.exists() and not out.is_dir():
        raise CopyscopeError(f"{out}: exists and is not a folder; expected an output folder for the zoo")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CopyscopeError(f"{out}: exists and is not empty; choose another --out, or pass --overwrite to replace it")
    if out.is_dir() and any(out.iterdir()) and not _is_demo_zoo(out):
        # --overwrite replaces a demo zoo built before, never a folder copyscope did not write
        raise CopyscopeError(f"{out}: exists, is not empty and is not a demo zoo (no ground_truth.json written by "
                             "`copyscope demo build`); --overwrite replaces only a demo zoo: choose another --out")
    return {"out": out, "references": references, "decoys": decoys, "base_images": base_images,
            "steps": st, "pool": QUICK_POOL if quick else FULL_POOL, "lora_rank": int(lora_rank or HYPER["lora_rank"]),
            "library": dict(library or {})}
