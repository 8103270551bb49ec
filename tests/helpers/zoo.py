"""Helpers for tests that write zoo files over the tiny models, and check their reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from copyscope.estimate.shapley.synthetic import brute_force_shapley as shapley_by_formula


def write_reference_images(folder: Path, n: int = 2, seed: int = 0, size: int = 40) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"ref{i}.png")
    return folder


def make_zoo_file(tmp_path: Path, tiny_models: dict, *, loras: int = 2, controlnet: bool = True, **overrides) -> Path:
    """A small zoo file over the tiny models; ``overrides`` replace top-level keys."""
    refs = write_reference_images(tmp_path / "refs")
    data = {
        "name": "tiny",
        "output": str(tmp_path / "out"),
        "bases": [{"name": "tiny-sd", "model": str(tiny_models["base"])}],
        "controlnets": (
            [{"name": "depth", "model": str(tiny_models["controlnet"]), "conditioning_scale": 1.0,
              "conditioning": {"image": str(tiny_models["control"])}}]
            if controlnet else []
        ),
        "loras": [{"name": f"lora{i}", "model": str(p), "weight": 1.0} for i, p in enumerate(tiny_models["loras"][:loras])],
        "references": [{"name": "work", "paths": [str(refs)]}],
        "prompts": [{"name": "p", "text": "a painting of a cat"}],
        "generation": {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 2, "batch_size": 2, "scheduler": "ddim"},
        "metrics": ["ssim", "rgb_ssim", "dhash", "histogram", "cosine"],
        "estimator": {"bootstrap": 50},
        # the positive controls (on by default in a zoo) have their own tests: tests/unit/controls/test_controls_positive.py
        "controls": {"positive": False},
    }
    data.update(overrides)
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def brute_force_shapley(players: list[str], worth: dict[str, float]) -> dict[str, float]:
    """Shapley values by the formula (copyscope.estimate.shapley.synthetic.brute_force_shapley) for worths keyed
    like report.json's coalitions: member names joined with ``+`` in ``players`` order."""
    return shapley_by_formula(players, lambda members: worth["+".join(p for p in players if p in members)])
