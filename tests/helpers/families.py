"""What the pipeline-family tests share (tests/e2e/test_families*.py): one error line, and the rerun of an audit."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner


def one_error_line(result) -> str:
    """The one line a refused command printed (exit 2)."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def assert_rerun_generates_nothing(zoo: Path, out: Path, game: dict, images: int) -> None:
    """The same audit again: nothing generated, every one of ``images`` from the cache, the same Shapley values."""
    from copyscope.cli import app

    second = CliRunner().invoke(app, ["audit", str(zoo)])
    assert second.exit_code == 0, second.output
    rerun = json.loads((out / "report.json").read_text())
    assert rerun["generation"]["generated"] == 0 and rerun["generation"]["cached"] == images
    assert rerun["games"][0]["metrics"]["ssim"]["shapley"] == game["metrics"]["ssim"]["shapley"]


def family_zoo_file(tmp: Path, models: dict, generation: dict, *, loras: list | None = None,
                    controlnets: list | None = None, negative: str | None = None, **top) -> Path:
    """A zoo file auditing a tiny family zoo (``copyscope.demo.tiny_families.save_tiny_family_zoo``'s ``models``):
    its LoRAs (style, style2, ...) unless ``loras`` says otherwise, one prompt, ssim and dhash, exact Shapley values."""
    import yaml

    from helpers.zoo import write_reference_images

    fam = models["family"]
    if loras is None:
        loras = [{"name": "style" if i == 0 else f"style{i + 1}", "model": str(p)} for i, p in enumerate(models["loras"])]
    data = {
        "name": f"tiny-{fam}",
        "output": str(tmp / "out"),
        "bases": [{"name": f"tiny-{fam}", "model": str(models["base"])}],
        **({"controlnets": controlnets} if controlnets else {}),
        "loras": loras,
        "references": [{"name": "work", "paths": [str(write_reference_images(tmp / "refs"))]}],
        "prompts": [{"name": "p", "text": "a painting of a cat", **({"negative": negative} if negative else {})}],
        "generation": json.loads(json.dumps(generation)),
        "metrics": ["ssim", "dhash"],
        "estimator": {"method": "exact", "bootstrap": 0},
        **top,
    }
    path = tmp / "zoo.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def edit_zoo(path: Path, change) -> Path:
    """The zoo file after ``change(data)``."""
    import yaml

    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def assert_sound_family_audit(game: dict, cache, family: str, settings: dict, shape: tuple) -> dict:
    """A two-player audit of a family: its name and settings in the image keys, every player changing every image
    (``shape`` each), Shapley efficiency; returns the images by coalition."""
    import numpy as np
    import pytest

    a, b = game["players"]
    full = f"{a}+{b}"
    entry = json.loads(cache.path(game["images"][full][0]).with_suffix(".json").read_text())
    fields = entry.get("fields", entry)
    assert fields["family"] == family and fields["family_settings"] == settings, fields
    images = {k: [cache.load(key) for key in ks] for k, ks in game["images"].items()}
    for without, with_ in (("", a), ("", b), (b, full), (a, full)):
        for x, y in zip(images[without], images[with_]):
            assert x.shape == shape
            assert np.abs(x - y).max() > 1 / 255, f"{without!r} -> {with_!r} changed nothing"
    for name, m in game["metrics"].items():  # the values sum to v(all) - v(empty)
        total = sum(v["value"] for v in m["shapley"].values())
        assert total == pytest.approx(m["coalitions"][full] - m["coalitions"][""], abs=1e-9), name
    return images


def audit_two_players(zoo: Path, players: list[str]):
    """An audit through the CLI of a zoo with two players: (its output, report.json, its one game, the image cache),
    after checking the players and that all 4 coalitions x 2 seeds were generated."""
    from copyscope.cli import app
    from copyscope.generate.cache import ImageCache

    first = CliRunner().invoke(app, ["audit", str(zoo)])
    assert first.exit_code == 0, first.output
    report = json.loads((zoo.parent / "out" / "report.json").read_text())
    (game,) = report["games"]
    assert game["players"] == players
    assert report["generation"]["generated"] == 4 * 2
    return first.output, report, game, ImageCache(report["cache_dir"])
