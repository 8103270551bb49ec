"""The LoRA-fits-base check for every way a LoRA is given, from the file headers before any model
loads: a folder with ``weight_name``, a hub id whose file is in the local Hugging Face cache, and a
hub file downloaded at load time (checked right after the download, before its weights load). Each
misfit is one error line naming the zoo key, exit code 2, and a previous output folder is untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from copyscope.cli import app
from helpers.cli_errors import _misfit_lora, assert_one_line_error, sentinel_output, snapshot, zoo_data

runner = CliRunner()
MISFIT = r"zoo\.yaml:\d+: loras\[0\]\.model: LoRA 'lora0' does not fit base 'tiny-sd': layer .* has shape \[4, 64\]"


@pytest.fixture(scope="module")
def misfit(tmp_path_factory) -> Path:
    return _misfit_lora(tmp_path_factory.mktemp("misfit") / "misfit.safetensors")


def _write(tmp: Path, data: dict) -> Path:
    zoo = tmp / "zoo.yaml"
    zoo.write_text(yaml.safe_dump(data, sort_keys=False))
    return zoo


def _fake_hub_cache(root: Path, repo: str, files: dict[str, Path]) -> Path:
    """The Hugging Face cache layout (models--owner--name/refs/main, snapshots/<commit>/<file>) holding
    ``files``, as `huggingface-cli download` leaves it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        shutil.copyfile(src, snap / name)
    return root


def test_folder_with_weight_name_is_checked_before_loading(tiny_models, misfit, tmp_path, monkeypatch):
    folder = tmp_path / "style-lora"
    folder.mkdir()
    shutil.copyfile(misfit, folder / "style.safetensors")
    data = zoo_data(tmp_path, tiny_models)
    data["loras"] = [{"name": "lora0", "model": str(folder), "weight_name": "style.safetensors"}]
    data["output"] = str(sentinel_output(tmp_path))
    before = snapshot(Path(data["output"]))
    # nothing may load: the check is from the headers
    monkeypatch.setattr("copyscope.generate.engine.CoalitionEngine.load", lambda self: pytest.fail("a model loaded"))
    assert_one_line_error(runner.invoke(app, ["audit", str(_write(tmp_path, data))]), MISFIT)
    assert snapshot(Path(data["output"])) == before
    # the same folder with a LoRA that fits passes the check (validate: exit 0)
    shutil.copyfile(tiny_models["loras"][0], folder / "style.safetensors")
    result = runner.invoke(app, ["validate", str(_write(tmp_path, data))])
    assert result.exit_code == 0, result.output


def test_hub_lora_in_the_local_cache_is_checked_before_loading(tiny_models, misfit, tmp_path):
    """A separate process, so HF_HUB_CACHE and HF_HUB_OFFLINE are read the way a user sets them."""
    cache = _fake_hub_cache(tmp_path / "hf-cache", "someone/misfit-lora", {"pytorch_lora_weights.safetensors": misfit})
    data = zoo_data(tmp_path, tiny_models)
    data["loras"] = [{"name": "lora0", "model": "someone/misfit-lora"}]
    data["output"] = str(sentinel_output(tmp_path))
    before = snapshot(Path(data["output"]))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", "from copyscope.cli import app; app()", "audit", str(_write(tmp_path, data))],
                          env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2, lines
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, lines
    import re

    assert re.search(MISFIT, errors[0]), errors[0]
    assert snapshot(Path(data["output"])) == before


def test_hub_lora_downloaded_at_load_time_is_checked_before_its_weights_load(tiny_models, misfit, tmp_path, monkeypatch):
    """Not in the cache at pre-flight: the engine downloads the file, checks it, and refuses it
    before ``load_lora_weights`` runs (the download is simulated: no network in tests)."""
    import huggingface_hub

    downloads = []

    def fake_download(repo, filename, revision=None, **_):
        downloads.append((repo, filename))
        return str(misfit)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr("diffusers.loaders.StableDiffusionLoraLoaderMixin.load_lora_weights",
                        lambda *a, **k: pytest.fail("LoRA weights loaded before the check"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    data = zoo_data(tmp_path, tiny_models)
    data["loras"] = [{"name": "lora0", "model": "someone/misfit-lora", "weight_name": "style.safetensors"}]
    result = runner.invoke(app, ["audit", str(_write(tmp_path, data))])
    assert_one_line_error(result, MISFIT)
    assert downloads == [("someone/misfit-lora", "style.safetensors")]


def test_missing_keys_of_other_adapters_do_not_stop_a_load():
    """peft lists the model's missing keys over every adapter it holds: a second LoRA's load may name the keys
    of the first; only keys of the adapter being loaded (or keys peft names otherwise) mean it is not applied."""
    from copyscope.players.lora import LoraPlayer

    other = ("Loading adapter weights from state_dict led to missing keys in the model: "
             "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.lora0.weight, "
             "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.lora0.weight")
    assert not LoraPlayer._dropped(other, {}, "te")
    assert LoraPlayer._dropped(other, {}, "lora0")
    assert LoraPlayer._dropped(other.replace("lora_A.lora0.weight", "lora_magnitude_vector.te.weight"), {}, "x")
    assert LoraPlayer._dropped(other + "; and unexpected keys: foo", {}, "te")
