"""`copyscope demo build --images DIR`: a demo world from any image files (a second benchmark world), at 64 px."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from copyscope.demo.cli import demo_app


def _pictures(folder, names, size=(80, 60)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, n in enumerate(names):
        a = np.zeros((*size[::-1], 3), np.uint8)
        a[..., i % 3] = 200  # each picture its own colour and blobs
        a[rng.integers(0, size[1], 40), rng.integers(0, size[0], 40)] = 255
        Image.fromarray(a).save(folder / (n + (".jpg" if i % 2 else ".png")))
    return folder


@pytest.mark.slow
def test_build_a_world_from_image_files_at_64_px(tmp_path):
    lib = _pictures(tmp_path / "pics", ["mona", "vase", "field", "harbour", "forest"])
    out = tmp_path / "world2"
    r = CliRunner().invoke(demo_app, ["build", "--out", str(out), "--quick", "--resolution", "64", "--images", str(lib),
                                      "--references", "mona", "--decoys", "vase", "--base-images", "field,harbour,camera"])
    assert r.exit_code == 0, r.output
    gt = json.loads((out / "ground_truth.json").read_text())
    assert gt["resolution"] == 64
    assert gt["references"]["mona"]["source"].startswith(f"file {lib / 'mona.png'} (sha256 ")
    assert set(gt["components"]["loras"]) == {"planted", "decoy-vase"}
    ref = Image.open(out / gt["references"]["mona"]["paths"][0])
    assert np.asarray(ref)[..., 0].mean() > 150  # the work is the red picture, centre-cropped


def test_image_library_refusals(tmp_path):
    from copyscope.demo.images import image_library
    from copyscope.common.errors import CopyscopeError

    with pytest.raises(CopyscopeError, match="not a folder"):
        image_library(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CopyscopeError, match="holds no images"):
        image_library(tmp_path / "empty")
    _pictures(tmp_path / "clash", ["astronaut"])
    with pytest.raises(CopyscopeError, match="already taken"):
        image_library(tmp_path / "clash")
    lib = image_library(_pictures(tmp_path / "ok", ["mona", "vase"]))
    assert set(lib) == {"mona", "vase"}
    # names not in the library or scikit-image's: refused before anything is written
    r = CliRunner().invoke(demo_app, ["build", "--out", str(tmp_path / "w"), "--quick", "--images", str(tmp_path / "ok"),
                                      "--references", "nosuch"])
    assert r.exit_code == 2 and "or the --images files mona, vase" in r.output and not (tmp_path / "w").exists()
