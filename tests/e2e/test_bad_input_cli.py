"""Bad input through the CLI: every case is answered by ONE error line naming the file, the key (and
the line where the parser knows it) and what is expected; exit code 2; no traceback; and an existing
output folder is left byte-identical. docs/robustness.md has the table of these cases.

Almost every case fails during validation (before any model is loaded), so the module costs a few
seconds; the cases that must succeed (greyscale / RGBA references, flagged NaN / black images) run
with the engine's ``generate`` replaced by a stub, so they load no model either.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from copyscope.cli import app

from helpers.cli_errors import (
    Z,
    _misfit_lora,
    _set,
    _stub_generate,
    _text,
    assert_one_line_error,
    sentinel_output,
    snapshot,
    zoo_data,
)

runner = CliRunner()

# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assets(tiny_models, tmp_path_factory) -> dict:
    """Extra files the cases point at: a LoRA built for another UNet, pickle weights, a diffusers
    folder with .bin weights only, images of every kind."""
    import torch
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("bad_assets")
    a = {"root": root, **tiny_models}
    a["misfit_lora"] = _misfit_lora(root / "misfit" / "misfit.safetensors")
    # pickle files: content is irrelevant, they must be refused before anything reads them
    torch.save({"w": torch.zeros(2)}, root / "style.bin")
    torch.save({"w": torch.zeros(2)}, root / "base.ckpt")
    a["bin_lora"], a["ckpt_base"] = root / "style.bin", root / "base.ckpt"
    # a diffusers base folder saved with pickle weights (what save_pretrained(safe_serialization=False) writes)
    binbase = root / "base_bin"
    shutil.copytree(tiny_models["base"], binbase)
    for f in list(binbase.rglob("*.safetensors")):
        name = "pytorch_model.bin" if f.name == "model.safetensors" else "diffusion_pytorch_model.bin"
        torch.save(load_file(str(f)), f.parent / name)
        f.unlink()
    a["bin_base"] = binbase
    return a


# -- cases ---------------------------------------------------------------------------------------
# Each case: (id, command, edit, patterns). ``edit(tmp, data, assets)`` changes the zoo dict in place,
# or returns bytes/str to write as the zoo file verbatim, or a Path to pass instead of the zoo file.
# Patterns are regexes the error line must match; "ZOO" stands for the zoo file's path (+ ":line").

def _replace_text(old: str, new: str):
    def edit(tmp, data, a):
        text = _text(data)
        assert old in text
        return text.replace(old, new, 1)

    return edit


def _ref_file(name: str, writer):
    """Point the reference at one file made by ``writer(path)``."""

    def edit(tmp, data, a):
        d = tmp / "badrefs"
        d.mkdir(exist_ok=True)
        writer(d / name)
        data["references"][0]["paths"] = [str(d / name)]

    return edit


def _truncated_png(p: Path):
    full = tmp_png_bytes()
    p.write_bytes(full[: len(full) // 2])


def tmp_png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _copies_of_lora(n: int, method: str):
    def edit(tmp, data, a):
        d = tmp / "many"
        d.mkdir()
        data["loras"] = []
        for i in range(n):
            shutil.copy(a["loras"][0], d / f"lora_{i:02d}.safetensors")
            data["loras"].append({"model": str(d / f"lora_{i:02d}.safetensors")})
        data["estimator"] = {"method": method}

    return edit


def _loras_and_prompt_players(n_loras: int, n_prompts: int):
    """n LoRAs plus n prompt fragments: every kind of player counts towards the exact-estimation limit."""
    def edit(tmp, data, a):
        _copies_of_lora(n_loras, "exact")(tmp, data, a)
        data["prompt_players"] = [{"name": f"frag{i}", "text": f"style {i}"} for i in range(n_prompts)]

    return edit


def _two_loras_named(first: str, second: str, same_stem: bool = False):
    def edit(tmp, data, a):
        if same_stem:  # default names come from the file stems: two style.safetensors in two folders
            for sub in ("a", "b"):
                (tmp / sub).mkdir()
                shutil.copy(a["loras"][0], tmp / sub / "style.safetensors")
            data["loras"] = [{"model": str(tmp / "a" / "style.safetensors")}, {"model": str(tmp / "b" / "style.safetensors")}]
        else:
            data["loras"] = [{"name": first, "model": str(a["loras"][0])}, {"name": second, "model": str(a["loras"][1])}]

    return edit


def _file_at(key: str, what: str):
    """Make ``key`` point at a file where a folder is expected (or the reverse)."""

    def edit(tmp, data, a):
        p = tmp / what
        if what.endswith("/"):
            p.mkdir()
        else:
            p.write_text("not a folder\n")
        data[key] = str(p)

    return edit


CASES = [
    # --- the zoo file itself
    ("malformed-yaml", "audit", _replace_text("text: a painting of a cat", "text: [a painting of a cat"),
     [Z + r":\d+: malformed YAML: "]),
    ("malformed-yaml-validate", "validate", _replace_text("text: a painting of a cat", "text: [a painting of a cat"),
     [Z + r":\d+: malformed YAML: "]),
    ("tab-indentation", "audit", _replace_text("\n- name: p", "\n\t- name: p"), [Z + r":\d+: malformed YAML: .*(tab|\\t)"]),
    ("python-object-tag", "audit", lambda t, d, a: "name: !!python/object/apply:os.system ['echo pwned']\n" + _text(d).split("\n", 1)[1],
     [Z + r":1: malformed YAML: tag '!!python/object/apply:os.system' is not allowed"]),
    ("not-utf8", "audit", lambda t, d, a: _text(d).encode().replace(b"a painting", b"a \xff\xfe painting"),
     [Z + r":\d+: not UTF-8 text .*expected a UTF-8 YAML file"]),
    ("empty-file", "audit", lambda t, d, a: "", [Z + r": expected a mapping of keys"]),
    ("top-level-list", "audit", lambda t, d, a: "- bases\n- loras\n", [Z + r": expected a mapping of keys"]),
    ("zoo-file-missing", "audit", lambda t, d, a: t / "nope.yaml", [r"nope\.yaml: zoo file not found"]),
    ("zoo-path-is-folder", "validate", lambda t, d, a: t / "refs", [r"refs: is a folder, expected a zoo YAML file"]),
    # --- keys and types
    ("unknown-key", "audit", lambda t, d, a: _text(d).replace("name: bad\n", "name: bad\nbogus: 1\n"),
     [Z + r":2: bogus: unknown key"]),
    ("misspelled-key", "audit", _replace_text("  weight: 1.0", "  wieght: 1.0"), [Z + r":\d+: loras\[0\]\.wieght: unknown key"]),
    ("misspelled-nested-key", "validate", _replace_text("  steps: 2", "  setps: 2"), [Z + r":\d+: generation\.setps: unknown key"]),
    ("missing-required-key", "audit", lambda t, d, a: d.pop("prompts") and None, [Z + r":\d+: prompts: required key is missing"]),
    ("wrong-type-number", "audit", _set("loras.0.weight", "lots"), [Z + r":\d+: loras\[0\]\.weight: .*valid number.*'lots'"]),
    ("wrong-type-integer", "audit", _set("generation.steps", "many"), [Z + r":\d+: generation\.steps: .*valid integer.*'many'"]),
    ("wrong-type-list", "audit", _set("bases", "tiny-sd"), [Z + r":\d+: bases: .*valid list.*'tiny-sd'"]),
    ("out-of-range", "audit", _set("generation.steps", 0), [Z + r":\d+: generation\.steps: .*greater than or equal to 1"]),
    ("bad-resolution", "audit", _set("generation.resolution", 65), [Z + r":\d+: generation\.resolution: .*multiple of 8"]),
    ("invalid-name", "audit", _set("loras.0.name", "my lora"), [Z + r":\d+: loras\[0\]\.name: 'my lora' is not a valid name"]),
    ("unknown-scheduler", "audit", _set("generation.scheduler", "fancy"),
     [Z + r":\d+: generation\.scheduler: unknown scheduler 'fancy'; expected one of .*ddim"]),
    ("unknown-metric", "audit", _set("metrics", ["ssim", "ssmi"]),
     [Z + r":\d+: metrics\[1\]: unknown metric .ssmi.; valid metrics: .*ssim"]),
    ("unknown-estimator", "audit", _set("estimator", {"method": "montecarlo"}), [Z + r":\d+: estimator\.method: .*'montecarlo'"]),
    ("unknown-work", "audit", _set("prompts.0.work", "nowhere"), [Z + r":\d+: prompts\[0\]\.work: unknown work 'nowhere'"]),
    # --- seeds and names
    ("no-seeds-list", "audit", _set("generation.seeds", []), [Z + r":\d+: generation\.seeds: need at least one seed"]),
    ("no-seeds-count", "audit", _set("generation.seeds", 0), [Z + r":\d+: generation\.seeds: need at least one seed"]),
    ("duplicate-seeds", "audit", _set("generation.seeds", [1, 2, 1]), [Z + r":\d+: generation\.seeds: seeds must be distinct"]),
    ("duplicate-player-names", "audit", _two_loras_named("style", "style"),
     [Z + r":\d+: loras\[1\]\.name: duplicate name 'style'"]),
    ("duplicate-default-names", "audit", _two_loras_named("", "", same_stem=True),
     [Z + r":\d+: loras\[1\]\.name: duplicate name 'style'.*set 'name:' explicitly"]),
    ("duplicate-across-sections", "audit",
     lambda t, d, a: d.update(controlnets=[{"name": "lora0", "model": str(a["controlnet"]), "conditioning": {"image": str(a["control"])}}]),
     [Z + r":\d+: loras\[0\]\.name: duplicate name 'lora0'"]),
    # --- files
    ("base-missing", "audit", _set("bases.0.model", "./no/such/base"),
     [Z + r":\d+: bases\[0\]\.model: model path './no/such/base' not found"]),
    ("lora-missing", "audit", _set("loras.0.model", "missing.safetensors"),
     [Z + r":\d+: loras\[0\]\.model: model path 'missing\.safetensors' not found"]),
    ("lora-is-a-folder", "audit", _set("loras.0.model", lambda t, a: (t / "x.safetensors").mkdir() or str(t / "x.safetensors")),
     [Z + r":\d+: loras\[0\]\.model: .*is a folder; expected a \.safetensors file"]),
    ("lora-wrong-suffix", "audit", _set("loras.0.model", lambda t, a: (t / "lora.txt").write_text("x") and str(t / "lora.txt")),
     [Z + r":\d+: loras\[0\]\.model: lora\.txt: expected a \.safetensors file or a diffusers folder"]),
    ("lora-corrupt-safetensors", "audit",
     _set("loras.0.model", lambda t, a: (t / "bad.safetensors").write_bytes(b"\x00" * 8 + b"garbage") and str(t / "bad.safetensors")),
     [Z + r":\d+: loras\[0\]\.model: bad\.safetensors is not a valid \.safetensors file "
          r"\(its header is not JSON.*expected intact safetensors"]),
    ("lora-truncated-safetensors", "audit",
     _set("loras.0.model",
          lambda t, a: (t / "cut.safetensors").write_bytes(a["loras"][0].read_bytes()[:-100]) and str(t / "cut.safetensors")),
     [Z + r":\d+: loras\[0\]\.model: cut\.safetensors is not a valid \.safetensors file \(truncated"]),
    ("lora-does-not-fit-base", "audit", _set("loras.0.model", lambda t, a: str(a["misfit_lora"])),
     [Z + r":\d+: loras\[0\]\.model: LoRA 'lora0' does not fit base 'tiny-sd': layer .* but the LoRA's .* has shape \[4, 64\]"]),
    ("conditioning-is-a-folder", "audit",
     lambda t, d, a: d.update(controlnets=[{"name": "depth", "model": str(a["controlnet"]), "conditioning": {"image": str(t / "refs")}}]),
     [Z + r":\d+: controlnets\[0\]\.conditioning: conditioning image '.*refs' is a folder; expected an image file"]),
    ("conditioning-missing", "audit",
     lambda t, d, a: d.update(controlnets=[{"name": "depth", "model": str(a["controlnet"]), "conditioning": {"image": "nope.png"}}]),
     [Z + r":\d+: controlnets\[0\]\.conditioning: conditioning image 'nope\.png' not found"]),
    ("reference-missing", "audit", _set("references.0.paths", ["gone/"]),
     [Z + r":\d+: references\[0\]\.paths\[0\]: reference 'gone/' not found"]),
    ("reference-empty-folder", "audit", _set("references.0.paths", lambda t, a: [(t / "empty").mkdir() or str(t / "empty")]),
     [Z + r":\d+: references\[0\]\.paths\[0\]: folder '.*empty' holds no images"]),
    ("reference-corrupt-image", "audit", _ref_file("work.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)),
     [Z + r":\d+: references\[0\]\.paths: reference file .*work\.png is (not an image|unreadable).*expected an intact image file"]),
    ("reference-not-an-image", "audit", _ref_file("notes.jpg", lambda p: p.write_text("these are my notes\n")),
     [Z + r":\d+: references\[0\]\.paths: reference file .*notes\.jpg is not an image; expected an intact image file"]),
    ("reference-truncated-png", "audit", _ref_file("cut.png", _truncated_png),
     [Z + r":\d+: references\[0\]\.paths: reference file .*cut\.png is unreadable \(OSError"]),
    ("reference-too-small", "audit", _ref_file("tiny.png", lambda p: Image.new("RGB", (4, 4)).save(p)),
     [Z + r":\d+: references\[0\]\.paths: reference file .*tiny\.png is too small \(4x4\); expected at least 8x8"]),
    # --- hub, budget, output
    ("hub-base-not-cached-offline", "audit", _set("bases.0.model", "nobody/not-cached-model"),
     [Z + r":\d+: bases\[0\]\.model: hub model 'nobody/not-cached-model' is not in the local Hugging Face cache "
          r"and HF_HUB_OFFLINE is set"]),
    ("hub-lora-not-cached-offline", "audit", _set("loras.0.model", "nobody/not-cached-lora"),
     [Z + r":\d+: loras\[0\]\.model: hub model 'nobody/not-cached-lora' is not in the local Hugging Face cache"]),
    ("too-many-players-exact", "audit", _copies_of_lora(13, "exact"),
     [Z + r":\d+: estimator\.method: exact estimation of 13 players evaluates 2\*\*13 = 8192 coalitions; set estimator\.budget"]),
    ("too-many-players-exact-with-prompt-players", "audit", _loras_and_prompt_players(10, 5),
     [Z + r":\d+: estimator\.method: exact estimation of 15 players evaluates 2\*\*15 = 32768 coalitions; set estimator\.budget"]),
    ("too-many-players-auto", "audit", _copies_of_lora(13, "auto"),
     [Z + r":\d+: estimator: too many players \(13\) for exact estimation: set estimator\.budget"]),
    ("budget-too-small", "audit", _set("estimator", {"method": "kernelshap", "budget": 1}),
     [Z + r":\d+: estimator\.budget: .*greater than or equal to 2"]),
    ("output-key-is-a-file", "audit", _file_at("output", "out-file"),
     [Z + r":\d+: output: .*out-file: exists and is not a folder; expected an output folder"]),
    ("cache-key-is-a-file", "audit", _file_at("cache", "cache-file"),
     [Z + r":\d+: cache: .*cache-file: exists and is not a folder; expected a cache folder"]),
    # --- untrusted weights (tests/e2e/test_security.py has more)
    ("pickle-lora", "audit", _set("loras.0.model", lambda t, a: str(a["bin_lora"])),
     [Z + r":\d+: loras\[0\]\.model: style\.bin is a pickle checkpoint.*--allow-pickle"]),
    ("pickle-base", "audit", _set("bases.0.model", lambda t, a: str(a["ckpt_base"])),
     [Z + r":\d+: bases\[0\]\.model: base\.ckpt is a pickle checkpoint.*--allow-pickle"]),
    ("pickle-only-diffusers-folder", "audit", _set("bases.0.model", lambda t, a: str(a["bin_base"])),
     [Z + r":\d+: bases\[0\]\.model: '.*base_bin' has pickle weights only .*unet.*expected \.safetensors.*--allow-pickle"]),
]


@pytest.mark.parametrize("case_id, command, edit, patterns", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_overwritten(case_id, command, edit, patterns, assets, tmp_path):
    data = zoo_data(tmp_path, assets)
    zoo = tmp_path / "zoo.yaml"
    result = edit(tmp_path, data, assets)
    if isinstance(result, Path):
        zoo = result
    elif isinstance(result, bytes):
        zoo.write_bytes(result)
    elif isinstance(result, str):
        zoo.write_text(result)
    else:
        zoo.write_text(_text(data))
    args = [command, str(zoo)]
    prev = None
    if command == "audit":
        prev = sentinel_output(tmp_path)
        before = snapshot(prev)
        if case_id != "output-key-is-a-file":
            args += ["--out", str(prev)]
    result = runner.invoke(app, args)
    assert_one_line_error(result, *[p.replace("ZOO", Z) for p in patterns])
    if prev is not None:
        assert snapshot(prev) == before, "a failed run changed the existing output folder"
    assert not (tmp_path / "out").exists()


def test_output_path_is_a_file_via_cli_option(assets, tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(_text(zoo_data(tmp_path, assets)))
    target = tmp_path / "report.json"
    target.write_text("{}\n")
    result = runner.invoke(app, ["audit", str(zoo), "--out", str(target)])
    assert_one_line_error(result, r"^error: --out .*report\.json: exists and is not a folder; expected an output folder$")
    assert target.read_text() == "{}\n"


def test_allow_pickle_warns_and_gets_past_the_pickle_check(assets, tmp_path):
    """--allow-pickle prints its warning; the .bin LoRA then passes the pickle check (the run stops
    at the next problem, a missing reference, so nothing is loaded)."""
    data = zoo_data(tmp_path, assets)
    data["loras"][0]["model"] = str(assets["bin_lora"])
    data["references"][0]["paths"] = ["gone/"]
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(_text(data))
    result = runner.invoke(app, ["audit", str(zoo), "--allow-pickle"])
    line = assert_one_line_error(result, r"references\[0\]\.paths\[0\]: reference 'gone/' not found")
    assert "pickle checkpoint" not in line
    assert re.search(r"^warning: --allow-pickle: pickle checkpoints can execute arbitrary code", result.output, re.M)


# -- inputs that are accepted ------------------------------------------------------------------


def test_greyscale_rgba_and_16bit_references_are_converted(assets, tmp_path, monkeypatch):
    from copyscope.generate import CoalitionEngine
    from copyscope.common.inputs import load_image_rgb

    d = tmp_path / "refs_modes"
    d.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8), "L").save(d / "grey.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(np.full((40, 40), 32768, np.uint16)).save(d / "grey16.png")
    Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8), "L").convert("LA").save(d / "la.png")

    grey = load_image_rgb(d / "grey.png")
    assert grey.shape == (40, 40, 3) and grey.dtype == np.float32
    assert np.array_equal(grey[..., 0], grey[..., 2])
    rgb = load_image_rgb(d / "rgba.png")
    assert rgb.shape == (40, 40, 3)
    assert np.allclose(rgb[:20, :, 0], 200 / 255) and np.allclose(rgb[:20, :, 1], 0)
    assert np.allclose(rgb[20:], 1.0)  # transparent = paper, composited on white
    assert np.allclose(load_image_rgb(d / "grey16.png"), 32768 / 65535, atol=1e-6)  # not clipped to white

    monkeypatch.setattr(CoalitionEngine, "generate", _stub_generate(False))
    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))  # stub images must not reach another test
    data = zoo_data(tmp_path, assets)
    data["references"][0]["paths"] = [str(d)]
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(_text(data))
    result = runner.invoke(app, ["audit", str(zoo)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["works"]["work"]) == 4
    assert report["games"][0]["flagged_images"] == {}
    assert "flagged" not in result.output


def test_nan_and_black_images_are_flagged_not_silently_scored(assets, tmp_path, monkeypatch):
    from copyscope.generate import CoalitionEngine

    monkeypatch.setattr(CoalitionEngine, "generate", _stub_generate(True))
    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))  # stub images must not reach another test
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(_text(zoo_data(tmp_path, assets)))
    result = runner.invoke(app, ["audit", str(zoo)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    flagged = report["games"][0]["flagged_images"]
    assert list(flagged) == ["lora0"]  # only the full coalition
    assert sorted(f for flags in flagged["lora0"].values() for f in flags) == ["black", "nan"]
    assert set(flagged["lora0"]) == set(report["games"][0]["images"]["lora0"])
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:") and "flagged" in line]
    assert len(warnings) == 1, result.output
    assert "base tiny-sd: 2 generated image(s) flagged (black: 1, nan: 1) in coalition(s) 'lora0'" in warnings[0]
    # the values are still finite numbers (NaN pixels are stored as black), never NaN in the report
    for m in report["games"][0]["metrics"].values():
        assert all(v is not None and np.isfinite(v) for v in m["coalitions"].values())


def test_load_time_lora_mismatch_message_is_one_line():
    """The loader's own size-mismatch error (a LoRA the header check cannot compare, e.g. a
    hub LoRA) is condensed to one line naming the layer and both shapes."""
    from types import SimpleNamespace

    from copyscope.common.errors import CopyscopeError
    from copyscope.modelfiles.sources import ModelSource
    from copyscope.players.lora import LoraPlayer

    exc = RuntimeError(
        "Error(s) in loading state_dict for UNet2DConditionModel:\n\tsize mismatch for "
        "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.lora0.weight: copying a param with "
        "shape torch.Size([4, 64]) from checkpoint, the shape in current model is torch.Size([4, 32]).\n\tsize mismatch ..."
    )

    class FakeZoo:
        def fail(self, message, *loc):
            return CopyscopeError(message, where="zoo.yaml:9: loras[0].model")

    engine = SimpleNamespace(zoo=FakeZoo(), game=SimpleNamespace(base=SimpleNamespace(name="tiny-sd")))
    player = SimpleNamespace(engine=engine, name="lora0", source=ModelSource("x", Path("x.safetensors"), None),
                             loc=("loras", 0))
    err = LoraPlayer._error(player, exc)
    text = str(err)
    assert "\n" not in text
    assert "to_q.lora_A has shape [4, 64] in the LoRA but [4, 32] in the base" in text
