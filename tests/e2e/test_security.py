"""Untrusted inputs: pickle weights need --allow-pickle (and are never opened without it), diffusers
folders with pickle weights only are refused, and zoo files are read with a safe YAML loader that
builds no Python object and refuses alias bombs and recursive aliases."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copyscope.cli import app

from helpers.cli_errors import _text, assert_one_line_error, sentinel_output, snapshot, zoo_data

runner = CliRunner()


class _Evil:
    """Unpickling this creates a folder: proof that a pickle was loaded."""

    def __init__(self, canary: Path):
        self.canary = str(canary)

    def __reduce__(self):
        return (os.mkdir, (self.canary,))


def _evil_pickle(path: Path, canary: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Evil(canary)))
    return path


SECTIONS = {
    "bases": lambda d, p: d["bases"][0].update(model=str(p)),
    "loras": lambda d, p: d["loras"][0].update(model=str(p)),
    "controlnets": lambda d, p: d.update(
        controlnets=[{"name": "cn", "model": str(p), "conditioning": {"image": d["_control"]}}]
    ),
}


@pytest.mark.parametrize("suffix", [".ckpt", ".bin", ".pt", ".pth", ".pkl"])
@pytest.mark.parametrize("section", list(SECTIONS))
def test_pickle_weights_refused_without_flag_and_never_opened(section, suffix, tiny_models, tmp_path):
    canary = tmp_path / "PWNED"
    weights = _evil_pickle(tmp_path / "weights" / f"model{suffix}", canary)
    data = zoo_data(tmp_path, tiny_models)
    data["_control"] = str(tiny_models["control"])
    SECTIONS[section](data, weights)
    del data["_control"]
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(_text(data))
    prev = sentinel_output(tmp_path)
    before = snapshot(prev)
    result = runner.invoke(app, ["audit", str(zoo), "--out", str(prev)])
    name = re.escape(f"model{suffix}")
    assert_one_line_error(result, rf"zoo\.yaml:\d+: {section}\[0\]\.model: {name} is a pickle checkpoint", r"--allow-pickle")
    assert not canary.exists(), "a pickle was loaded without --allow-pickle"
    assert snapshot(prev) == before


def test_allow_pickle_prints_a_warning(tiny_models, tmp_path):
    canary = tmp_path / "PWNED"
    data = zoo_data(tmp_path, tiny_models)
    data["loras"][0]["model"] = str(_evil_pickle(tmp_path / "style.bin", canary))
    data["references"][0]["paths"] = ["gone/"]  # stop before any model is loaded
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(_text(data))
    result = runner.invoke(app, ["audit", str(zoo), "--allow-pickle"])
    line = assert_one_line_error(result, r"references\[0\]\.paths\[0\]: reference 'gone/' not found")
    assert "pickle checkpoint" not in line
    warning = [x for x in result.output.splitlines() if x.startswith("warning: --allow-pickle")]
    assert warning == [
        "warning: --allow-pickle: pickle checkpoints can execute arbitrary code when loaded; use only files you trust"
    ]
    assert not canary.exists()


def _pickle_only_folder(src: Path, dst: Path) -> Path:
    """A copy of a diffusers folder with every .safetensors replaced by a .bin (torch.save)."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    for f in list(dst.rglob("*.safetensors")):
        name = "pytorch_model.bin" if f.name == "model.safetensors" else "diffusion_pytorch_model.bin"
        torch.save(load_file(str(f)), f.parent / name)
        f.unlink()
    return dst


def test_diffusers_folder_with_pickle_weights_only_is_refused(tiny_models, tmp_path):
    binbase = _pickle_only_folder(tiny_models["base"], tmp_path / "base_bin")
    data = zoo_data(tmp_path, tiny_models)
    data["bases"][0]["model"] = str(binbase)
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(_text(data))
    result = runner.invoke(app, ["audit", str(zoo), "--out", str(tmp_path / "o")])
    assert_one_line_error(
        result, r"zoo\.yaml:5: bases\[0\]\.model: '.*base_bin' has pickle weights only \(.*unet", r"--allow-pickle"
    )
    assert not (tmp_path / "o").exists()


def test_lora_folder_with_pickle_weights_only_is_refused(tiny_models, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "lora_folder"
    folder.mkdir()
    torch.save(load_file(str(tiny_models["loras"][0])), folder / "pytorch_lora_weights.bin")
    data = zoo_data(tmp_path, tiny_models)
    data["loras"][0]["model"] = str(folder)
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(_text(data))
    result = runner.invoke(app, ["validate", str(zoo)])
    assert_one_line_error(result, r"zoo\.yaml:8: loras\[0\]\.model: '.*lora_folder' has pickle weights only", r"--allow-pickle")


def test_loader_refuses_pickle_folder_too(tiny_models, tmp_path):
    """Behind the up-front check, the loader itself asks diffusers for safetensors only
    (``from_pretrained(use_safetensors=True)``): its failure is one line naming the key."""
    from copyscope.config import load_zoo
    from copyscope.generate import CoalitionEngine
    from copyscope.common.errors import CopyscopeError
    from copyscope.plan.games import make_plan

    binbase = _pickle_only_folder(tiny_models["base"], tmp_path / "base_bin")
    data = zoo_data(tmp_path, tiny_models)
    data["bases"][0]["model"] = str(binbase)
    (tmp_path / "zoo.yaml").write_text(_text(data))
    zoo = load_zoo(tmp_path / "zoo.yaml")
    engine = CoalitionEngine(zoo, make_plan(zoo).games[0], allow_pickle=True)  # past the up-front check
    engine.allow_pickle = False
    with pytest.raises(CopyscopeError) as info:
        engine.load()
    text = str(info.value)
    assert "\n" not in text
    assert "zoo.yaml:5: bases[0].model: " in text and "--allow-pickle" in text and "safetensors" in text


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.mkdir [CANARY]",
        "!!python/object/new:os.mkdir [CANARY]",
        "!!python/name:os.system",
        "!!python/module:os",
        "!!python/object:pathlib.PosixPath {}",
    ],
)
def test_yaml_python_tags_are_refused(tag, tiny_models, tmp_path):
    canary = tmp_path / "PWNED"
    text = _text(zoo_data(tmp_path, tiny_models)).replace("name: bad\n", f"name: {tag.replace('CANARY', repr(str(canary)))}\n")
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(text)
    for command in ("validate", "audit"):
        result = runner.invoke(app, [command, str(zoo)])
        assert_one_line_error(result, r"zoo\.yaml:1: malformed YAML: tag '!!python/.*' is not allowed; expected plain YAML values")
    assert not canary.exists()
    assert not (tmp_path / "out").exists()


def _alias_bomb(levels: int = 9) -> str:
    lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, pattern",
    [
        (_alias_bomb(), r"zoo\.yaml:\d+: malformed YAML: aliases expand to more than 100000 values"),
        ("name: &x [1, *x]\n", r"zoo\.yaml:1: malformed YAML: recursive alias"),
        ("name: " + "[" * 3000 + "]" * 3000 + "\n", r"zoo\.yaml: malformed YAML: nested too deeply"),
    ],
    ids=["alias-bomb", "recursive-alias", "deep-nesting"],
)
def test_yaml_bombs_are_refused_quickly(text, pattern, tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(text)
    t0 = time.perf_counter()
    result = runner.invoke(app, ["validate", str(zoo)])
    assert time.perf_counter() - t0 < 10
    assert_one_line_error(result, pattern)
