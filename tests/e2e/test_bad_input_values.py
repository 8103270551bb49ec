"""Bad input, round two (issue 19): duplicate keys, numbers that are not finite, out of bounds or
booleans, names that would escape the output folder, inputs that are not regular files (FIFO,
/dev/zero, looping symlinks), files too large, decompression bombs, and the messages that were
vague. Every case: one error line naming file, line and key; exit code 2; no traceback; nothing
hangs (SIGALRM fails the case after 60 s). All fail at validation: no model is loaded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from copyscope.cli import app

from helpers.cli_errors import Z, _set, _text, assert_one_line_error, zoo_data

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_hang(no_hang):
    """Every case of this file under the 60 s alarm (conftest.no_hang)."""


def _with_controlnet(edit=None):
    def wrapped(tmp, data, a):
        data["controlnets"] = [{"name": "depth", "model": str(a["controlnet"]), "conditioning": {"image": str(a["control"])}}]
        return edit(tmp, data, a) if edit else None

    return wrapped


def _duplicate_top_key(tmp, data, a):
    text = _text(data)
    return text + "loras:\n- {name: other, model: " + str(a["loras"][1]) + "}\n"


def _duplicate_nested_key(tmp, data, a):
    text = _text(data)
    return text.replace("- name: lora0\n", "- name: lora0\n  name: lora1\n", 1)


def _bomb_png(path: Path, side: int) -> Path:
    """A 1-bit PNG of side x side pixels: a few kB on disk, side**2 pixels when decoded."""
    Image.new("1", (side, side)).save(path, optimize=True)
    return path


def _ref_at(make):
    def edit(tmp, data, a):
        data["references"][0]["paths"] = [str(make(tmp))]

    return edit


def _fifo(tmp: Path) -> Path:
    p = tmp / "pipe.png"
    os.mkfifo(p)
    return p


def _loop(tmp: Path) -> Path:
    p = tmp / "loop.png"
    p.symlink_to(p)
    return p


def _listed_twice(tmp, data, a):
    folder = data["references"][0]["paths"][0]
    first = sorted(Path(folder).iterdir())[0]
    data["references"][0]["paths"] = [folder, str(first)]


def _conditioning_at(make):
    return _with_controlnet(lambda tmp, data, a: data["controlnets"][0]["conditioning"].update(image=str(make(tmp))))


CASES = [
    # --- duplicate keys: PyYAML would keep the last one silently
    ("duplicate-top-level-key", _duplicate_top_key, [Z + r":\d+: duplicate key 'loras': also given at line \d+; give each key once"]),
    ("duplicate-nested-key", _duplicate_nested_key, [Z + r":\d+: duplicate key 'name': also given at line \d+"]),
    # --- numbers: finite, bounded, not booleans
    ("guidance-nan", _set("generation.guidance", float("nan")), [Z + r":\d+: generation\.guidance: nan is not a finite number"]),
    ("guidance-inf", _set("generation.guidance", float("inf")), [Z + r":\d+: generation\.guidance: inf is not a finite number"]),
    ("lora-weight-inf", _set("loras.0.weight", float("-inf")), [Z + r":\d+: loras\[0\]\.weight: -inf is not a finite number"]),
    ("lora-weight-nan", _set("loras.0.weight", float("nan")), [Z + r":\d+: loras\[0\]\.weight: nan is not a finite number"]),
    ("lora-weight-1e308", _set("loras.0.weight", 1e308), [Z + r":\d+: loras\[0\]\.weight: .*less than or equal to 100"]),
    ("conditioning-scale-nan", _with_controlnet(_set("controlnets.0.conditioning_scale", float("nan"))),
     [Z + r":\d+: controlnets\[0\]\.conditioning_scale: nan is not a finite number"]),
    ("guidance-boolean", _set("generation.guidance", True), [Z + r":\d+: generation\.guidance: .*valid number, got True"]),
    ("steps-boolean", _set("generation.steps", True), [Z + r":\d+: generation\.steps: .*valid integer, got True"]),
    ("seeds-booleans", _set("generation.seeds", [True, False]), [Z + r":\d+: generation\.seeds: seeds\[0\] is True; expected an integer"]),
    ("seeds-count-boolean", _set("generation.seeds", True), [Z + r":\d+: generation\.seeds: expected a number of seeds or a list"]),
    ("seeds-count-50M", _set("generation.seeds", 50_000_000),
     [Z + r":\d+: generation\.seeds: 50000000 seeds is too many; expected at most"]),
    ("seeds-count-1e12", _set("generation.seeds", 10**12), [Z + r":\d+: generation\.seeds: 1000000000000 seeds is too many"]),
    ("seed-2-to-the-64", _set("generation.seeds", [1, 2**64]),
     [Z + r":\d+: generation\.seeds: seeds\[1\] is 18446744073709551616; expected an integer from 0"]),
    ("seed-negative", _set("generation.seeds", [-1, 2]), [Z + r":\d+: generation\.seeds: seeds\[0\] is -1"]),
    ("seed-float", _set("generation.seeds", [1.5]), [Z + r":\d+: generation\.seeds: seeds\[0\] is 1\.5"]),
    ("steps-above-scheduler", _set("generation.steps", 1001),
     [Z + r":\d+: generation\.steps: 1001 steps, but the scheduler of base 'tiny-sd' has 1000 timesteps; expected at most 1000"]),
    ("resolution-huge", _set("generation.resolution", 1048576), [Z + r":\d+: generation\.resolution: resolution 1048576 is too large"]),
    ("resolution-three-numbers", _set("generation.resolution", [32, 32, 32]),
     [Z + r":\d+: generation\.resolution: expected an integer or \[height, width\] \(two integers\), got \[32, 32, 32\]$"]),
    ("batch-huge", _set("generation.batch_size", 10**9), [Z + r":\d+: generation\.batch_size: .*less than or equal to 4096"]),
    ("bootstrap-1e10", _set("estimator.bootstrap", 10**10), [Z + r":\d+: estimator\.bootstrap: .*less than or equal to 1000000"]),
    ("bootstrap-times-seeds", lambda t, d, a: d["generation"].update(seeds=100) or d["estimator"].update(bootstrap=1_000_000),
     [Z + r":\d+: estimator\.bootstrap: 1000000 resamples x 100 seeds = 100000000 draws; expected at most"]),
    ("budget-huge", _set("estimator", {"method": "kernelshap", "budget": 10**12}),
     [Z + r":\d+: estimator\.budget: .*less than or equal to"]),
    ("estimator-seed-negative", _set("estimator", {"seed": -1}), [Z + r":\d+: estimator\.seed: .*greater than or equal to 0"]),
    # --- names are path-safe, the zoo's own included
    ("zoo-name-escapes", _set("name", "../../x"), [Z + r":\d+: name: '\.\./\.\./x' is not a valid name"]),
    ("zoo-name-absolute", _set("name", "/tmp/x"), [Z + r":\d+: name: '/tmp/x' is not a valid name"]),
    ("name-too-long", _set("loras.0.name", "a" * 101),
     [Z + r":\d+: loras\[0\]\.name: name is 101 characters long; expected at most 100, got 'a{56}\.\.\.$"]),
    ("device-unknown", _set("generation.device", "gpu0"), [Z + r":\d+: generation\.device: unknown device 'gpu0'; expected auto, cpu"]),
    # --- messages that were vague
    ("metrics-empty", _set("metrics", []), [Z + r":\d+: metrics: lists no metric; name at least one"]),
    ("zero-players", _set("loras", []), [Z + r":\d+: estimator: no players: list at least one LoRA"]),
    ("lora-not-a-mapping", _set("loras", ["just-a-name"]),
     [Z + r":\d+: loras\[0\]: expected a mapping of keys \(key: value\), got 'just-a-name'"]),
    # --- references and conditioning images: regular files within the pixel limit
    ("reference-fifo", _ref_at(_fifo),
     [Z + r":\d+: references\[0\]\.paths\[0\]: reference '.*pipe\.png' is a FIFO \(named pipe\); expected an image file"]),
    ("reference-dev-zero", _set("references.0.paths", ["/dev/zero"]),
     [Z + r":\d+: references\[0\]\.paths\[0\]: reference '/dev/zero' is a device"]),
    ("reference-symlink-loop", _ref_at(_loop), [Z + r":\d+: references\[0\]\.paths\[0\]: reference '.*loop\.png' is a symlink that loops"]),
    ("reference-listed-twice", _listed_twice,
     [Z + r":\d+: references\[0\]\.paths\[1\]: reference file .* is listed twice \(also by paths\[0\]\)"]),
    ("reference-bomb", _ref_at(lambda t: _bomb_png(t / "bomb.png", 9000)),
     [Z + r":\d+: references\[0\]\.paths: reference file .*bomb\.png is too large "
          r"\(9000x9000 = 81000000 pixels, a decompression bomb\?\)"]),
    ("reference-bomb-beyond-pil-limit", _ref_at(lambda t: _bomb_png(t / "bigbomb.png", 14000)),
     [Z + r":\d+: references\[0\]\.paths: reference file .*bigbomb\.png is too large \(196000000 pixels, a decompression bomb\?\)"]),
    ("conditioning-bomb", _conditioning_at(lambda t: _bomb_png(t / "cbomb.png", 9000)),
     [Z + r":\d+: controlnets\[0\]\.conditioning: conditioning image '.*cbomb\.png' is too large \(9000x9000"]),
    ("conditioning-fifo", _conditioning_at(_fifo),
     [Z + r":\d+: controlnets\[0\]\.conditioning: conditioning image '.*pipe\.png' is a FIFO"]),
    ("conditioning-not-an-image", _conditioning_at(lambda t: (t / "c.png").write_text("text") and t / "c.png"),
     [Z + r":\d+: controlnets\[0\]\.conditioning: conditioning image '.*c\.png' is not an image"]),
]


# the audit command runs prepare_audit like validate: a sample of the cases through it as well
AUDIT_TOO = {"duplicate-top-level-key", "guidance-nan", "seeds-booleans", "seed-2-to-the-64", "steps-above-scheduler",
             "resolution-huge", "bootstrap-1e10", "zoo-name-escapes", "reference-fifo", "conditioning-bomb"}
RUNS = [("validate", *c) for c in CASES] + [("audit", *c) for c in CASES if c[0] in AUDIT_TOO]


@pytest.mark.parametrize("command, case_id, edit, patterns", RUNS, ids=[f"{r[0]}-{r[1]}" for r in RUNS])
def test_round2_one_line_exit_2(command, case_id, edit, patterns, assets, tmp_path):
    data = zoo_data(tmp_path, assets)
    zoo = tmp_path / "zoo.yaml"
    result = edit(tmp_path, data, assets)
    zoo.write_text(result if isinstance(result, str) else _text(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, [command, str(zoo)])
    line = assert_one_line_error(result, *patterns)
    assert "Warning" not in result.output, result.output
    assert not [w for w in caught if "DecompressionBomb" in type(w.message).__name__ or "DecompressionBomb" in str(w.category)]
    assert not (tmp_path / "out").exists(), "a refused zoo file created its output folder"
    assert line.count("\n") == 0


# -- the zoo file and report.json: regular files of bounded size ----------------------------------------


@pytest.mark.parametrize("command", ["validate", "plan", "audit"])
def test_zoo_path_fifo_and_dev_zero_answer_at_once(command, tmp_path):
    fifo = tmp_path / "zoo.yaml"
    os.mkfifo(fifo)
    assert_one_line_error(runner.invoke(app, [command, str(fifo)]),
                          r"zoo\.yaml: is a FIFO \(named pipe\); expected a zoo YAML file \(a regular file\)")
    assert_one_line_error(runner.invoke(app, [command, "/dev/zero"]), r"^error: /dev/zero: is a device; expected a zoo YAML file")


def test_zoo_file_too_large(tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("# padding\n" * (500 * 1024))  # 5 MB of comments
    assert_one_line_error(runner.invoke(app, ["validate", str(zoo)]), r"zoo\.yaml: is larger than 4 MiB; expected a zoo YAML file")


def test_zoo_symlink_loop(tmp_path):
    zoo = tmp_path / "zoo.yaml"
    zoo.symlink_to(zoo)
    assert_one_line_error(runner.invoke(app, ["validate", str(zoo)]), r"zoo\.yaml: is a symlink that loops; expected a zoo YAML file")


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b'{"games": [], "x": "\xff\xfe"}',
         r"report\.json: report\.json is not UTF-8 text \(byte \d+\); expected the report\.json an audit wrote"),
        (b'{"sentinel": true}', r"report\.json: has no 'games' list; expected the report\.json an audit wrote"),
        (b'[1, 2]', r"report\.json: report\.json is not a JSON object; expected the report\.json an audit wrote"),
        (b'{"games": [', r"report\.json: report\.json is not valid JSON \(line 1: "),
        (b"[" * 100_000 + b"]" * 100_000, r"report\.json: (report\.json is nested too deeply|report\.json is not valid JSON)"),
    ],
    ids=["not-utf8", "no-games", "not-a-mapping", "truncated", "deeply-nested"],
)
def test_report_command_on_bad_report_json(content, pattern, tmp_path):
    (tmp_path / "report.json").write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_one_line_error(runner.invoke(app, ["report", str(tmp_path)]), pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no view written


def test_report_command_on_fifo_report_json(tmp_path):
    os.mkfifo(tmp_path / "report.json")
    assert_one_line_error(runner.invoke(app, ["report", str(tmp_path)]), r"report\.json: is a FIFO \(named pipe\); expected a report\.json")


def test_yaml_line_of_both_duplicate_keys(tmp_path):
    """The message names the line of the second key and the line of the first."""
    from copyscope.config import load_zoo
    from copyscope.common.errors import CopyscopeError

    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("name: a\nbases:\n- model: x\nname: b\n")
    with pytest.raises(CopyscopeError, match=r"zoo\.yaml:4: duplicate key 'name': also given at line 1"):
        load_zoo(zoo)
    # merge keys (<<) are not duplicates
    zoo.write_text("base: &b {model: x}\nbases:\n- <<: *b\n  name: one\nreferences: [{name: w, paths: [w]}]\nprompts: [{text: t}]\n")
    with pytest.raises(CopyscopeError, match=r"base: unknown key"):
        load_zoo(zoo)


def test_hub_error_names_the_cause_not_an_unseen_stack_trace():
    """diffusers says "check out the root cause in the stacktrace above"; no stack trace is shown."""
    from types import SimpleNamespace

    from copyscope.modelfiles.sources import _hub_error
    from copyscope.common.errors import CopyscopeError

    class FakeZoo:
        def fail(self, message, *loc):
            return CopyscopeError(message, where="zoo.yaml:5: bases[0].model")

    try:
        try:
            raise ConnectionError("Failed to resolve 'huggingface.co'")
        except ConnectionError as cause:
            raise OSError("Cannot load model owner/sd: model is not cached locally and an error occurred while trying to "
                          "fetch metadata from the Hub. Please check out the root cause in the stacktrace above.") from cause
    except OSError as exc:
        err = _hub_error(FakeZoo(), exc, SimpleNamespace(local=None, value="owner/sd"), ("bases", 0))
    text = str(err)
    assert "stacktrace" not in text.lower() and "\n" not in text
    assert "cause: ConnectionError: Failed to resolve 'huggingface.co'" in text
    assert "huggingface-cli download owner/sd" in text
