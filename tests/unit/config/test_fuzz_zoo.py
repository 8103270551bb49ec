"""Fuzz: mutated copies of the shipped model_zoo.yaml through `validate` and `plan`.

A seeded mutator (no extra dependency) deletes keys, swaps values for other types and extreme
numbers (on purpose at keys that hold numbers), adds unknown keys, repeats list items and
garbles the text itself. Every command must
end with exit code 0 or 2, print no traceback, say what is wrong in at most 3 lines, and finish
within a few seconds (a hang fails the test through SIGALRM). A file `validate` accepts must hold
only finite numbers, integer seeds (no booleans) within bounds, and LoRA weights within +-100.
"""

from __future__ import annotations

import copy
import math
import random
import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from copyscope.cli import app
from helpers.paths import REPO

pytestmark = pytest.mark.slow  # 1000 CLI runs, about 21 s of CPU (docs/robustness.md)

ROOT = REPO
N_FILES = 500
PER_COMMAND_SECONDS = 30

VALUES = [
    None, True, False, 0, -1, 1, 7, 2**64, -(2**63), 10**12, 1e308, -1e308, 1e-308, math.nan, math.inf, -math.inf,
    0.5, "", "x", "../../escape", "a" * 300, "a painting", "ddim", "/dev/zero", "nope.png", "5", "1e999",
    [], {}, [1, 2, 3], [True, False], [32, 32, 32], {"a": 1}, [{"name": "x"}], "exact",
]
EXTREMES = [math.nan, math.inf, -math.inf, 1e308, -1e308, 2**64, 2**63, 10**12, -1, 0, True, False, 1e-300]
UNKNOWN_KEYS = ["bogus", "wieght", "seeds ", "Name", "<<", "1"]


def shipped_zoo(tmp: Path) -> dict:
    """model_zoo.yaml with its paths made absolute (the mutated files live in tmp)."""
    data = yaml.safe_load((ROOT / "model_zoo.yaml").read_text())

    def absolute(p):
        return str(ROOT / p)

    data["output"] = str(tmp / "out")
    for section in ("bases", "controlnets", "loras"):
        for spec in data.get(section, []):
            spec["model"] = absolute(spec["model"])
    for cn in data.get("controlnets", []):
        c = cn["conditioning"]
        for k in ("per_work", "per_prompt"):
            if k in c:
                c[k] = {w: absolute(v) for w, v in c[k].items()}
    for ref in data["references"]:
        ref["paths"] = [absolute(p) for p in ref["paths"]]
    return data


def _slots(node, path=()):
    """Every (container, key) in a nested structure."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield node, k
            yield from _slots(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield node, i
            yield from _slots(v, path + (i,))


def _containers(node):
    if isinstance(node, (dict, list)):
        yield node
        for v in (node.values() if isinstance(node, dict) else node):
            yield from _containers(v)


def mutate(base: dict, rng: random.Random) -> str:
    """One mutated zoo file's text: 1-2 structural mutations, sometimes a textual one after them."""
    data = copy.deepcopy(base)
    for _ in range(rng.randint(1, 2)):
        kind = rng.choice(["delete", "replace", "replace", "nudge", "nudge", "nudge", "unknown", "repeat", "extreme", "extreme"])
        slots = list(_slots(data))
        if not slots:
            break
        container, key = rng.choice(slots)
        if kind == "delete":
            del container[key]
        elif kind == "replace":
            container[key] = copy.deepcopy(rng.choice(VALUES))
        elif kind == "extreme":  # an extreme number where a number is expected
            numeric = [(c, k) for c, k in slots if isinstance(c[k], (int, float))]
            if numeric:
                c, k = rng.choice(numeric)
                c[k] = rng.choice(EXTREMES)
        elif kind == "nudge":  # a plausible value of the same type: many files stay valid and reach `plan`
            old = container[key]
            if isinstance(old, bool):
                container[key] = not old
            elif isinstance(old, int):
                container[key] = rng.choice([1, 2, 3, 8, 16, 64, 128, 999, 1000, 1001, old * 2])
            elif isinstance(old, float):
                container[key] = round(rng.uniform(-2.0, 12.0), 3)
            elif isinstance(old, str):
                container[key] = rng.choice([old, old + "x", old.upper(), "cpu", "ddim", "euler", "auto", "kernelshap", "player"])
        elif kind == "unknown":
            target = rng.choice([c for c in _containers(data) if isinstance(c, dict)] or [data])
            target[rng.choice(UNKNOWN_KEYS)] = copy.deepcopy(rng.choice(VALUES))
        elif kind == "repeat":
            lists = [c for c in _containers(data) if isinstance(c, list) and c]
            if lists:
                lst = rng.choice(lists)
                lst.append(copy.deepcopy(rng.choice(lst)))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if rng.random() < 0.3:
        lines = text.splitlines(keepends=True)
        op = rng.choice(["dup-line", "drop-line", "swap-lines", "truncate", "garble"])
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        if op == "dup-line":  # often a duplicate key
            lines.insert(i, lines[i])
        elif op == "drop-line":
            del lines[i]
        elif op == "swap-lines":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "truncate":
            lines = lines[: max(1, i)]
            lines[-1] = lines[-1][: rng.randrange(len(lines[-1]) + 1)]
        else:
            pos = rng.randrange(len(text))
            text = text[:pos] + rng.choice(["\t", ":", "- ", "[", "{", "&a ", "*a", "!!python/none ", "\x00", "\ufeff", "%"]) + text[pos:]
            return text
        text = "".join(lines)
    return text


def _accepted_but_unsound(zoo: Path) -> str | None:
    """A zoo file validate accepted must hold only sound numbers: finite, integers where counts
    and seeds are expected (not booleans), and within the documented bounds."""
    from copyscope.config import MAX_SEEDS, load_zoo

    spec = load_zoo(zoo).spec

    def walk(v, where):
        if isinstance(v, float) and not math.isfinite(v):
            return f"{where} = {v} accepted"
        if isinstance(v, dict):
            return next((p for k, x in v.items() if (p := walk(x, f"{where}.{k}"))), None)
        if isinstance(v, (list, tuple)):
            return next((p for i, x in enumerate(v) if (p := walk(x, f"{where}[{i}]"))), None)
        return None

    problem = walk(spec.model_dump(), "zoo")
    seeds = spec.generation.seed_list
    if problem is None and (any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(seeds) > MAX_SEEDS):
        problem = f"seeds {spec.generation.seeds!r} accepted"
    if problem is None and any(abs(lo.weight) > 100 for lo in spec.loras):
        problem = "a LoRA weight beyond +-100 accepted"
    return problem and f"validate accepted an unsound zoo file: {problem}"


class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


def test_fuzzed_zoo_files_exit_0_or_2_without_traceback(tmp_path, monkeypatch):
    import typer.testing

    base = shipped_zoo(tmp_path)
    rng = random.Random(20261202)
    command = get_command(app)  # built once, not per call as CliRunner.invoke would (a third of the time)
    monkeypatch.setattr(typer.testing, "_get_command", lambda _app: command)
    invoke = CliRunner().invoke
    # warm-up outside the alarm: the first command imports torch, diffusers and PIL plugins
    (tmp_path / "shipped.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    assert invoke(app, ["validate", str(tmp_path / "shipped.yaml")]).exit_code == 0
    old = signal.signal(signal.SIGALRM, _on_alarm)
    failures: list[str] = []
    counts = {0: 0, 2: 0}
    t0 = time.perf_counter()
    try:
        for n in range(N_FILES):
            zoo = tmp_path / f"zoo{n:03d}.yaml"
            text = mutate(base, rng)
            zoo.write_text(text, encoding="utf-8", errors="surrogatepass")
            for cmd in ("validate", "plan"):
                signal.alarm(PER_COMMAND_SECONDS)
                try:
                    result = invoke(app, [cmd, str(zoo)], catch_exceptions=True)
                except _Hang:
                    failures.append(f"{zoo.name} {cmd}: no answer within {PER_COMMAND_SECONDS} s")
                    continue
                finally:
                    signal.alarm(0)
                out = result.output
                lines = [line for line in out.splitlines() if line.strip()]
                problem = None
                if result.exit_code not in (0, 2):
                    problem = f"exit code {result.exit_code} ({result.exception!r})"
                elif result.exception is not None and not isinstance(result.exception, SystemExit):
                    problem = f"exception {result.exception!r}"
                elif "Traceback" in out or re.search(r'File "[^"]+", line \d+', out):
                    problem = "traceback in the output"
                elif result.exit_code == 2 and (len(lines) > 3 or not lines or not lines[-1].startswith("error: ")):
                    problem = f"{len(lines)} lines on error"
                if problem is None and result.exit_code == 0 and cmd == "validate":
                    problem = _accepted_but_unsound(zoo)
                if problem:
                    failures.append(f"{zoo.name} {cmd}: {problem}: {out[-300:]!r}\n--- zoo ---\n{text[:2000]}")
                else:
                    counts[result.exit_code] += 1
    finally:
        signal.signal(signal.SIGALRM, old)
    seconds = time.perf_counter() - t0
    assert not failures, f"{len(failures)} of {2 * N_FILES} runs misbehaved; first:\n" + "\n".join(failures[:3])
    # the mutator must exercise both outcomes, or it tests nothing
    assert counts[2] > N_FILES // 4 and counts[0] > N_FILES // 4, counts
    print(f"fuzz: {N_FILES} files x 2 commands in {seconds:.1f} s; exit codes {counts}")
