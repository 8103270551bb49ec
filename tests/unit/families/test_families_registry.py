"""Families as plug-ins: a toy family, registered in a child process before the zoo schema is built (as a module
in copyscope/families/ would be), gets its `generation.<name>` settings, is detected from model_index.json,
passes its settings into the image key and its call arguments into the pipeline, and audits through the CLI; a
family without a ControlNet pipeline refuses ControlNet players in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers.paths import REPO
from helpers.zoo import make_zoo_file

CHILD = textwrap.dedent('''
    import sys
    from pydantic import Field
    from copyscope.common.fields import Float, Strict_
    from copyscope.families import register_family
    from copyscope.families.base import Family

    class ToySettings(Strict_):
        eta: Float = Field(0.0, ge=0, le=1, description="DDIM eta")

    register_family(Family(
        "toysd", "Toy SD", "StableDiffusionPipeline", None if sys.argv[2] == "no-controlnet" else
        "StableDiffusionControlNetPipeline", "ControlNetModel", "unet", ("ToySDPipeline",),
        load_kwargs={"safety_checker": None, "requires_safety_checker": False}, settings=ToySettings,
        call_arguments=lambda s, size: {"eta": s.eta}), {"toy": "toysd"})

    from copyscope.cli import app
    sys.argv = ["copyscope", *sys.argv[3:], sys.argv[1]]
    app()
''')


def _run(zoo: Path, mode: str, *command: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp),
           "COPYSCOPE_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", CHILD, str(zoo), mode, *command], capture_output=True, text=True,
                          env=env, timeout=600)


def _toy_zoo(tmp_path, tiny_models, controlnet: bool) -> Path:
    """The tiny SD base as a toy-family base; a prompt fragment as the player (the tiny LoRA and ControlNet files
    say they are SD's, and the family check refuses them on another family's base)."""
    base = tmp_path / "toy-base"
    shutil.copytree(tiny_models["base"], base)
    index = json.loads((base / "model_index.json").read_text())
    index["_class_name"] = "ToySDPipeline"  # detected as the toy family
    (base / "model_index.json").write_text(json.dumps(index))
    path = make_zoo_file(tmp_path, tiny_models, loras=0, controlnet=controlnet, metrics=["phash"],
                         prompt_players=[{"name": "oil", "text": "oil painting"}],
                         generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 2, "batch_size": 2,
                                     "scheduler": "ddim", "toysd": {"eta": 0.5}})
    data = yaml.safe_load(path.read_text())
    data["bases"][0]["model"] = str(base)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_toy_family_audits_with_its_settings_in_the_image_key(tiny_models, tmp_path):
    zoo = _toy_zoo(tmp_path, tiny_models, controlnet=False)
    r = _run(zoo, "controlnet", "audit", tmp=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (game,) = report["games"]
    key = game["images"]["oil"][0]
    fields = json.loads((tmp_path / "cache" / "images" / key[:2] / f"{key}.json").read_text())["fields"]
    assert fields["family"] == "toysd" and fields["family_settings"] == {"eta": 0.5}
    resolved = json.loads((tmp_path / "out" / "zoo.resolved.json").read_text())
    assert resolved["generation"]["toysd"] == {"eta": 0.5}  # the zoo schema has the family's section


def test_a_family_without_a_controlnet_pipeline_refuses_controlnets(tiny_models, tmp_path):
    zoo = _toy_zoo(tmp_path, tiny_models, controlnet=True)
    r = _run(zoo, "no-controlnet", "validate", tmp=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "base 'tiny-sd' is Toy SD, for which diffusers has no ControlNet pipeline; expected no controlnets" in r.stdout + r.stderr
    ok = _run(zoo, "controlnet", "validate", tmp=tmp_path)  # the same zoo where the family has one
    assert "no ControlNet pipeline" not in ok.stdout + ok.stderr


def test_unknown_family_settings_are_unknown_keys(tiny_models, tmp_path):
    from copyscope.common.errors import CopyscopeError
    from copyscope.config import load_zoo

    path = make_zoo_file(tmp_path, tiny_models, generation={"resolution": 32, "steps": 2, "seeds": 2, "toysd": {"eta": 1}})
    with pytest.raises(CopyscopeError, match=r"generation\.toysd: unknown key"):  # not registered in this process
        load_zoo(path)
