"""The bad-input harness shared by test_bad_input.py, test_bad_input_round2.py, test_outdir.py and
test_security.py: the zoo data they edit, the one-line-error check, output-folder snapshots, and a stub
for the engine's ``generate`` that loads no model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml

from helpers.zoo import write_reference_images

# Lines other than the error that a failing `audit` may print before it (progress, pickle warning).
ALLOWED_OTHER = re.compile(r"^(game: |loading |warning: --allow-pickle)")


def zoo_data(tmp: Path, a: dict, *, controlnet: bool = False) -> dict:
    """One LoRA (and optionally the ControlNet), one prompt, two seeds."""
    refs = write_reference_images(tmp / "refs")
    data = {
        "name": "bad",
        "output": str(tmp / "out"),
        "bases": [{"name": "tiny-sd", "model": str(a["base"])}],
        "loras": [{"name": "lora0", "model": str(a["loras"][0]), "weight": 1.0}],
        "references": [{"name": "work", "paths": [str(refs)]}],
        "prompts": [{"name": "p", "text": "a painting of a cat"}],
        "generation": {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 2, "batch_size": 2, "scheduler": "ddim"},
        "metrics": ["ssim", "dhash"],
        "estimator": {"bootstrap": 20},
        "controls": {"positive": False},  # tests/unit/controls/test_controls_positive.py tests the controls
    }
    if controlnet:
        data["controlnets"] = [{"name": "depth", "model": str(a["controlnet"]), "conditioning": {"image": str(a["control"])}}]
    return data


def sentinel_output(tmp: Path) -> Path:
    """An output folder holding a previous audit's report (must survive a failed run untouched)."""
    out = tmp / "previous-audit"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"sentinel": True, "games": []}) + "\n")
    (out / "attribution.csv").write_text("sentinel\n")
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(result, *patterns: str) -> str:
    """Exit 2, no traceback, exactly one error line (the last line), matching every pattern."""
    out = result.output
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out and 'File "' not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], out
    assert all(ALLOWED_OTHER.match(line) for line in lines[:-1]), out
    for pat in patterns:
        assert re.search(pat, errors[0]), f"{pat!r} not in {errors[0]!r}"
    return errors[0]


# Patterns are regexes the error line must match; "ZOO" stands for the zoo file's path (+ ":line").
Z = r"zoo\.yaml"


def _text(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def _set(path: str, value):
    def edit(tmp, data, a):
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if callable(value):
            node[int(last) if last.isdigit() else last] = value(tmp, a)
        else:
            node[int(last) if last.isdigit() else last] = value

    return edit


def _stub_generate(nan_black: bool):
    """A stand-in for CoalitionEngine.generate: deterministic noise per (coalition, seed); with
    ``nan_black`` the full coalition's first image is NaN and its second all black."""

    def generate(self, members, items):
        h, w = self.gen.size
        out = []
        for it in items:
            rng = np.random.default_rng([it.seed, *map(int, members)])
            img = rng.random((h, w, 3)).astype(np.float32)
            if nan_black and all(members):
                img = np.full((h, w, 3), np.nan if it.seed == 0 else 0.0, dtype=np.float32)
            out.append(img)
        return out

    return generate


def _misfit_lora(path: Path) -> Path:
    """A LoRA saved from a UNet with other block_out_channels / cross_attention_dim than the tiny base."""
    from types import SimpleNamespace

    import torch
    from diffusers import UNet2DConditionModel

    from copyscope.demo.tiny import lora_copies, save_lora_file

    torch.manual_seed(5)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(64, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=48, attention_head_dim=8, norm_num_groups=32,
    )
    lora_unet, _ = lora_copies(SimpleNamespace(unet=unet), "lora")
    return save_lora_file(path, lora_unet)
