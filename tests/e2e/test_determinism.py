"""Determinism: the same zoo file audited twice from scratch (separate output and cache folders)
gives the same report, down to the bits of every float, once timestamps, durations and the output
folder are left out."""

from __future__ import annotations

import pytest

from helpers.subprocess_audit import comparable, run_audit_subprocess, values, workspace

pytestmark = pytest.mark.slow  # subprocess audits (pyproject: markers)


def test_same_zoo_twice_gives_identical_report(tiny_models, tmp_path_factory):
    ws = workspace(tiny_models, tmp_path_factory)
    again = run_audit_subprocess(ws["zoo"], ws["root"] / "again")
    assert again["generation"]["generated"] == ws["solo"]["generation"]["generated"]  # both from scratch
    assert values(again) == values(ws["solo"])
    assert comparable(again) == comparable(ws["solo"])
    # what was left out really is only timestamps, durations and folders
    assert again["provenance"]["zoo_text"] == ws["solo"]["provenance"]["zoo_text"]
    assert again["output_dir"] != ws["solo"]["output_dir"]


def test_comparable_ignores_only_volatile_fields():
    report = {"a": 1.0, "generation": {"seconds": 3.2, "generated": 4}, "provenance": {"time_utc": "x", "wall_seconds": 1},
              "output_dir": "/x"}
    assert comparable(report) == {"a": 1.0, "generation": {"generated": 4}, "provenance": {}}
