"""Structure the architecture document promises (docs/ARCHITECTURE.md), checked on the source: report/ renders only,
analyses live in copyscope/analyses/, the one-source helpers. (Import cycles and module sizes: test_architecture.py.)"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REPO

PKG = REPO / "copyscope"


def _imports(path: Path) -> set[str]:
    """Absolute names of every module a file imports, at any depth (function-level imports included)."""
    mod = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    pkg = mod.rsplit(".", 1)[0] if path.name != "__init__.py" else mod
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    return out


def test_report_imports_no_analysis_and_no_stage_state():
    """report/ renders data: it never imports an analysis (the old report <-> ablate cycle) nor the evaluator."""
    stage_state = ("copyscope.analyses", "copyscope.game", "copyscope.generate.engine", "copyscope.audit")
    for f in (PKG / "report").glob("*.py"):
        bad = {m for m in _imports(f) if m.startswith(stage_state)}
        assert not bad, (f.name, bad)


def test_analyses_live_in_their_package():
    top = {p.stem for p in PKG.glob("*.py")}
    assert not top & {"ablate", "reward_split", "imitation", "clip_zero_shot", "analysis_io", "analysis_specs"}
    assert ({"ablate", "reward_split", "imitation", "clip_zero_shot", "harness", "specs"}
            <= {p.stem for p in (PKG / "analyses").glob("*.py")})


def test_demo_command_is_mounted_and_its_import_errors_surface():
    from typer.testing import CliRunner

    from copyscope.cli import app

    assert "demo" in CliRunner().invoke(app, ["--help"]).output
    # a broken demo module must not make `copyscope demo` vanish silently
    code = "import sys; sys.modules['copyscope.demo.cli'] = None; import copyscope.cli"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "copyscope.demo.cli" in r.stderr and "Error" in r.stderr


def test_finite_or_none_is_the_one_rule():
    from copyscope.common.finite import finite_or_none, is_finite
    from copyscope.estimate.shapley.result import _json_float

    assert _json_float is finite_or_none
    assert ([finite_or_none(x) for x in (1, np.float32(0.5), float("nan"), float("inf"), -np.inf, None)]
            == [1.0, 0.5, None, None, None, None])
    assert json.dumps(finite_or_none(np.float64(2.0))) == "2.0"
    assert [is_finite(x) for x in (0, 1.5, True, None, "1", float("nan"))] == [True, True, False, False, False, False]


def test_coalition_keys_round_trip_and_report_order():
    from copyscope.plan.coalitions import coalition_key, gray_rank, members_of, report_order, sorted_keys
    from copyscope.common.errors import CopyscopeError

    names = ["a", "b", "c", "d"]
    every = [tuple(bool((k >> i) & 1) for i in range(4)) for k in range(16)]
    assert all(members_of(coalition_key(names, c), names) == c for c in every)
    keys = [coalition_key(names, c) for c in sorted(every, key=report_order)]
    assert keys[:5] == ["", "a", "b", "c", "d"] and keys[5:11] == ["a+b", "a+c", "b+c", "a+d", "b+d", "c+d"]
    assert sorted_keys(list(reversed(keys)) + ["zz"], names) == keys + ["zz"]
    assert sorted(gray_rank(c) for c in every) == list(range(16))
    with pytest.raises(CopyscopeError, match="unknown player"):
        members_of("a+zz", names)


def test_within_work_scores_is_the_audits_aggregation():
    """The analyses' per-work similarity equals the audit's aggregate_references on one work."""
    from copyscope.score.metrics import aggregate_references
    from copyscope.score.scorer import within_work_scores

    rng = np.random.default_rng(0)
    sims = rng.normal(size=(5, 4))
    work_of = ["x", "y", "x", "y"]
    for how in ("max_mean", "mean_mean", "max_max"):
        per_work = within_work_scores(sims, work_of, ["x", "y"], how)
        np.testing.assert_array_equal(per_work[:, 0], aggregate_references(sims[:, [0, 2]], ["x", "x"], how))
        # over both works, max_mean / mean_mean average the per-work scores
        if how != "max_max":
            np.testing.assert_allclose(per_work.mean(axis=1), aggregate_references(sims, work_of, how))
    np.testing.assert_array_equal(within_work_scores(sims, work_of, ["y"], "max")[:, 0], sims[:, [1, 3]].max(axis=1))


def test_run_audit_takes_a_prepared_audit():
    from copyscope.audit import run_audit

    with pytest.raises(TypeError, match="PreparedAudit"):
        run_audit("model_zoo.yaml")


def test_one_output_folder_rule(tmp_path):
    from types import SimpleNamespace

    from copyscope.common.errors import CopyscopeError
    from copyscope.common.outdir import resolve_output

    zoo = SimpleNamespace(output_dir=tmp_path / "out", where=lambda *loc: "zoo.yaml:3: " + ".".join(map(str, loc)))
    assert resolve_output(zoo, None) == (tmp_path / "out", f"zoo.yaml:3: output: {tmp_path / 'out'}")
    assert resolve_output(zoo, None, "imitation")[0] == tmp_path / "out" / "imitation"
    assert resolve_output(zoo, tmp_path / "x", "imitation") == (tmp_path / "x", f"--out {tmp_path / 'x'}")  # --out wins
    (tmp_path / "file").write_text("")
    with pytest.raises(CopyscopeError, match=r"--out .*file: exists and is not a folder; expected an output folder"):
        resolve_output(zoo, tmp_path / "file")


STAGE_BOUNDARIES = ["audit", "plan", "generate", "score/scorer.py", "game", "estimate/per_game.py", "estimate/adaptive.py",
                    "report/build.py", "results"]


def _functions(paths):
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


def test_stage_boundaries_are_typed():
    """Every ``prep`` parameter is annotated, and no public function on a stage boundary takes or returns ``object``."""
    every = sorted(PKG.rglob("*.py"))
    for path, fn in _functions(every):
        args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
        untyped = [a.arg for a in args if a.arg == "prep" and a.annotation is None]
        assert not untyped, f"{path.relative_to(PKG.parent)}:{fn.lineno}: {fn.name}(prep) is not annotated"
    boundary = [p for b in STAGE_BOUNDARIES for p in ((PKG / b).rglob("*.py") if (PKG / b).is_dir() else [PKG / b])]
    for path, fn in _functions(boundary):
        if fn.name.startswith("_"):
            continue
        args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
        loose = [a.arg for a in args if isinstance(a.annotation, ast.Name) and a.annotation.id == "object"]
        if isinstance(fn.returns, ast.Name) and fn.returns.id == "object":
            loose.append("return")
        assert not loose, f"{path.relative_to(PKG.parent)}:{fn.lineno}: {fn.name} annotates {loose} as object"
