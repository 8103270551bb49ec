"""What the tests of LoRA files made by independent producers share: the one-LoRA zoo file and the audit's
images in grey levels (tests/e2e/test_lora_producers.py for the SD demo base, test_lora_producers_families.py
for the tiny SDXL / SD3 / Flux bases)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from typer.testing import CliRunner

from copyscope.generate.cache import ImageCache
from copyscope.cli import app

from .zoo import write_reference_images

PROMPT = "a painting of a cat"
runner = CliRunner()


def producer_zoo(tmp: Path, base_name: str, base: Path, lora: Path | None, generation: dict) -> Path:
    """A zoo file auditing ``lora`` (or, without one, the base alone) on ``base`` with one prompt and ssim."""
    tmp.mkdir(parents=True, exist_ok=True)
    data = {
        "name": "producers",
        "output": str(tmp / "out"),
        "bases": [{"name": base_name, "model": str(base)}],
        "loras": [{"name": "style", "model": str(lora)}] if lora else [],
        "references": [{"name": "work", "paths": [str(write_reference_images(tmp / "refs"))]}],
        "prompts": [{"name": "p", "text": PROMPT}],
        "generation": generation,
        "metrics": ["ssim"],
        # without a LoRA the base is the one player (its image is the coalition named after it)
        "estimator": {"bootstrap": 0} if lora else {"bootstrap": 0, "base": "player"},
        "controls": {"positive": False},  # tests/unit/controls/test_controls_positive.py tests the controls
    }
    path = tmp / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def audit_images(zoo: Path) -> dict[str, np.ndarray]:
    """Each coalition's images from an audit through the CLI, as grey levels (decoded PNGs are floats in [0, 1])."""
    result = runner.invoke(app, ["audit", str(zoo)])
    assert result.exit_code == 0, result.output
    report = json.loads((zoo.parent / "out" / "report.json").read_text())
    cache = ImageCache(report["cache_dir"])
    (game,) = report["games"]
    return {c: np.rint(np.stack([cache.load(k) for k in keys]) * 255).astype(int) for c, keys in game["images"].items()}


def perturb(params, seed: int, std: float = 0.05) -> None:
    """Small random non-zero weights (trainers start up-weights at zero: a no-op LoRA tests nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn(p.shape, generator=g) * std)
