"""The typed audit result (copyscope.results): report.json read into an AuditReport and written back unchanged,
malformed reports refused with one line naming the key, older reports (no schema_version) still read, and the
identity check's comparison (bench/check_report_identity.py)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from copyscope.common.errors import CopyscopeError
from copyscope.results import (
    MISSING,
    SCHEMA_VERSION,
    AuditReport,
    GameReport,
    MetricResult,
    ReportFormatError,
    ShapleyEntry,
    read_report,
)

PLAYERS = ["depth", "planted"]
COALITIONS = ["", "depth", "planted", "depth+planted"]


def _entry(value: float, p: float, **more) -> dict:
    return {"value": value, "ci95": [value - 0.1, value + 0.1], "p_value": p, "p_holm": min(1.0, 2 * p),
            "claim": "t and distribution-free", "se": 0.01, "df": 3,
            "t": {"ci95": [value - 0.05, value + 0.05], "p_value": p / 2, "p_holm": p}, **more}


def _metric(kind: str = "per_image") -> dict:
    return {
        "orientation": "higher_is_closer", "kind": kind, "raw_orientation": "higher_is_closer", "description": "d",
        "coalitions": {k: 0.1 * i for i, k in enumerate(COALITIONS)},
        "shapley": {"depth": _entry(0.03, 0.4), "planted": _entry(0.2, 0.001, bounded={"ci95": None, "p_value": 0.2,
                                                                                          "p_holm": 0.4})},
        "seed_bound": 1.0, "efficiency_gap": 0.0,
        "estimator": {"method": "exact", "coalitions_evaluated": 4, "budget": None},
        "split_percent": {"depth": {"share": 13.0, "low": 5.0, "high": 20.0}, "planted": {"share": 87.0, "low": None,
                                                                                         "high": None}},
        "per_seed": {"depth": [0.02, 0.04, 0.03, 0.03], "planted": [0.1, 0.3, 0.2, 0.2]},
        "seed_worths": {k: [0.1, 0.2, None, 0.1] for k in COALITIONS},
        "loo": {"depth": 0.05, "planted": 0.04}, "banzhaf": None,
    }


def hand_made_report() -> dict:
    """A report with every section an audit writes, and sections a newer copyscope might add."""
    kid = _metric("set")
    kid["sample_size"] = {k: {"n_generated": 4, "n_reference": 2, "feature_dim": 64, "warning": None} for k in COALITIONS}
    kid["raw_values"] = {k: -0.1 for k in COALITIONS}
    kid["vs_placebo"] = None
    kid["a_newer_key"] = {"kept": [1, 2, 3]}
    game = {
        "base": "tiny-sd", "players": PLAYERS, "player_kinds": {"depth": "controlnet", "planted": "lora"},
        "base_as_player": False, "weights": {"base": {"local_sha256": "0" * 64}},
        "images": {k: [f"{k}-{s}" for s in range(4)] for k in COALITIONS}, "flagged_images": {},
        "skipped_metrics": {"kid_effnet": "not finite for this audit"},
        "metrics": {"phash": _metric(), "kid_pixels": kid},
        "headline": "phash",
        "per_work": {"astronaut": {"phash": {"shapley": {p: _entry(0.1, 0.01) for p in PLAYERS},
                                             "split_percent": {p: {"share": 50.0, "low": 0.0, "high": 100.0} for p in PLAYERS},
                                             "per_seed": {p: [0.1, 0.1, 0.1, 0.1] for p in PLAYERS}}},
                     "coffee": {"phash": {"shapley": {p: _entry(-0.1, 1.0, sequential=True) for p in PLAYERS},
                                          "split_percent": None, "per_seed": None, "inference": "sequential"}}},
        "controls": {"strengths": [0.3, 0.5], "metrics": {"phash": {"auc": 0.9, "blind": False}},
                     "headline": {"metric": "phash", "rule": "controls"}},
        "a_game_extension": "kept",
    }
    return {
        "schema_version": SCHEMA_VERSION, "copyscope_version": "0.1.0", "config_sha256": "a" * 64, "zoo_name": "demo",
        "generation": {"generated": 0, "cached": 64, "seconds": 0.0, "adapter_switches": 0},
        "settings": {"prompts": [{"name": "p", "text": "a painting", "negative": "", "work": "astronaut"}],
                     "seeds": [0, 1, 2, 3], "steps": 20, "guidance": 5.0, "resolution": [32, 32], "aggregate": "max_mean",
                     "worth": "raw", "background": None, "placebo": None, "bootstrap": None, "confidence": 0.95,
                     "intervals": "jackknife", "test": "t", "significance": "both", "n_seeds": 4, "min_seeds": 16,
                     "seed_warning": "only 4 seeds", "power_note": None},
        "works": {"astronaut": ["refs/a.png"], "coffee": ["refs/c.png"]},
        "conditioning": [], "unavailable_metrics": {"sscd": "pip install copyscope[sscd]"},
        "games": [game],
        "provenance": {"zoo_file": "zoo.yaml", "time_utc": "2026-01-01T00:00:00+00:00", "seeds": [0, 1, 2, 3]},
        "output_dir": "out", "cache_dir": "/cache",
        "adaptive": {"stopped_after": 4, "round": 1, "rounds_planned": 3, "reason": "decided", "looks": []},
        "an_extension": {"x": 1},
    }


def _older(report: dict) -> dict:
    """What a copyscope before the typed report wrote (no schema version), in the bootstrap era (fewer keys)."""
    old = copy.deepcopy(report)
    old.pop("schema_version")
    for key in ("intervals", "n_seeds", "min_seeds", "seed_warning", "power_note"):
        old["settings"].pop(key)
    for sec in old["games"][0]["metrics"].values():
        for key in ("per_seed", "seed_worths", "seed_bound"):
            sec.pop(key)
        for e in sec["shapley"].values():
            for key in ("se", "df", "claim", "t", "bounded"):
                e.pop(key, None)
    return old


@pytest.mark.parametrize("make", [hand_made_report, lambda: _older(hand_made_report())], ids=["current", "older"])
def test_round_trip_is_exact(make):
    data = make()
    report = AuditReport.from_json(data)
    assert report.to_json() == data
    assert json.dumps(report.to_json(), indent=2) == json.dumps(data, indent=2)  # the same bytes: key order kept
    assert AuditReport.from_json(report.to_json()) == report
    assert report.to_json() is not data and report.to_json()["games"][0]["controls"] is not data["games"][0]["controls"]


def test_older_reports_read_without_a_version_and_stay_without_one():
    report = AuditReport.from_json(_older(hand_made_report()))
    assert report.schema_version is MISSING and "schema_version" not in report.to_json()
    entry = report.games[0].metrics["phash"].shapley["planted"]
    assert entry.se is MISSING and entry.t is MISSING and not entry.has("claim")
    assert report.settings.seed_warning is MISSING and "seed_warning" not in report.to_json()["settings"]


def test_typed_access_and_writes():
    report = AuditReport.from_json(hand_made_report())
    game = report.games[0]
    assert isinstance(game, GameReport) and isinstance(game.metrics["phash"], MetricResult)
    phash = game.metrics["phash"]
    np.testing.assert_allclose(phash.values(PLAYERS), [0.03, 0.2])
    assert phash.has_per_seed(PLAYERS) and phash.per_seed_matrix(PLAYERS).shape == (2, 4)
    assert not game.per_work["coffee"]["phash"].has_per_seed(PLAYERS)
    assert game.image_count() == 16 and report.game("tiny-sd") is game
    assert game.metrics["kid_pixels"].extra == {"a_newer_key": {"kept": [1, 2, 3]}} and report.extra == {"an_extension": {"x": 1}}
    # a key set on a record is written; one set back to MISSING is not
    entry = phash.shapley["depth"]
    entry.sequential, entry.t = True, MISSING
    written = report.to_json()["games"][0]["metrics"]["phash"]["shapley"]["depth"]
    assert written["sequential"] is True and "t" not in written
    assert ShapleyEntry(value=None, ci95=None, p_value=None, p_holm=None).to_json() == {
        "value": None, "ci95": None, "p_value": None, "p_holm": None}


def test_non_finite_numbers_survive():
    data = hand_made_report()
    data["games"][0]["metrics"]["phash"]["shapley"]["depth"]["ci95"] = [float("nan"), 0.125]
    text = json.dumps(data)
    back = AuditReport.from_json(json.loads(text)).to_json()
    assert json.dumps(back) == text and math.isnan(back["games"][0]["metrics"]["phash"]["shapley"]["depth"]["ci95"][0])


def _set(data: dict, path: tuple, value) -> dict:
    target = data
    for k in path[:-1]:
        target = target[k]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


MALFORMED = [
    (("games",), KeyError, r"^has no 'games' list$"),
    (("games",), {"a": 1}, r"^games: expected a list, got an object$"),
    (("games", 0), "x", r"^games\[0\]: expected an object, got text$"),
    (("games", 0, "base"), KeyError, r"^games\[0\]: has no 'base' text$"),
    (("games", 0, "players"), ["depth", 3], r"^games\[0\]\.players\[1\]: expected text, got a number$"),
    (("games", 0, "metrics", "phash", "shapley"), KeyError, r"^games\[0\]\.metrics\.phash: has no 'shapley' object$"),
    (("games", 0, "metrics", "phash", "shapley", "planted", "value"), "0.2",
     r"^games\[0\]\.metrics\.phash\.shapley\.planted\.value: expected a number or null, got text$"),
    (("games", 0, "metrics", "phash", "shapley", "planted", "ci95"), [0.1],
     r"^games\[0\]\.metrics\.phash\.shapley\.planted\.ci95: expected a list of 2 values or null, got a list of 1$"),
    (("games", 0, "metrics", "phash", "shapley", "planted", "t", "p_holm"), KeyError,
     r"^games\[0\]\.metrics\.phash\.shapley\.planted\.t: has no 'p_holm' number or null$"),
    (("games", 0, "metrics", "phash", "shapley", "depth"), KeyError,
     r"^games\[0\]\.metrics\.phash\.shapley: has no entry for player 'depth'$"),
    (("games", 0, "per_work", "coffee", "phash", "shapley", "depth"), KeyError,
     r"^games\[0\]\.per_work\.coffee\.phash\.shapley: has no entry for player 'depth'$"),
    (("games", 0, "metrics", "phash", "per_seed", "depth"), [0.1, "x"],
     r"^games\[0\]\.metrics\.phash\.per_seed\.depth\[1\]: expected a number or null, got text$"),
    (("games", 0, "headline"), 3, r"^games\[0\]\.headline: expected text or null, got a number$"),
    (("settings", "confidence"), "95%", r"^settings\.confidence: expected a number, got text$"),
    (("generation", "generated"), 1.5, r"^generation\.generated: expected a whole number, got a number$"),
    (("schema_version",), "copyscope-report/99",
     r"^schema_version: 'copyscope-report/99' is not a report format this copyscope reads \(copyscope-report/2, or none"),
]


@pytest.mark.parametrize("path, value, pattern", MALFORMED, ids=[m[2][1:40] for m in MALFORMED])
def test_malformed_reports_are_one_line_naming_the_key(path, value, pattern):
    import re

    with pytest.raises(ReportFormatError) as info:
        AuditReport.from_json(_set(hand_made_report(), path, value))
    message = str(info.value)
    assert "\n" not in message and re.search(pattern, message), message


def test_odd_names_are_quoted_in_the_key_path():
    data = hand_made_report()
    data["games"][0]["metrics"]["ph.ash [x]"] = data["games"][0]["metrics"].pop("phash")
    data["games"][0]["metrics"]["ph.ash [x]"]["coalitions"][""] = "high"
    with pytest.raises(ReportFormatError, match=r"^games\[0\]\.metrics\['ph\.ash \[x\]'\]\.coalitions\[''\]: expected a number"):
        AuditReport.from_json(data)


def test_read_report_names_the_file_and_the_key(tmp_path):
    data = _set(hand_made_report(), ("games", 0, "metrics", "phash", "coalitions"), KeyError)
    (tmp_path / "report.json").write_text(json.dumps(data))
    with pytest.raises(CopyscopeError) as info:
        read_report(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'report.json'}: games[0].metrics.phash: has no 'coalitions' object; "
                               "expected the report.json an audit wrote")
    with pytest.raises(CopyscopeError, match="no report.json here"):
        read_report(tmp_path / "elsewhere")
    (tmp_path / "report.json").write_text(json.dumps(hand_made_report()))
    assert read_report(tmp_path).to_json() == hand_made_report()


def test_report_command_refuses_a_malformed_report_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from copyscope.cli import app
    from helpers.cli_errors import assert_one_line_error

    data = _set(hand_made_report(), ("games", 0, "metrics", "phash", "shapley", "planted", "p_value"), [0.1])
    (tmp_path / "report.json").write_text(json.dumps(data))
    line = assert_one_line_error(CliRunner().invoke(app, ["report", str(tmp_path)]),
                                 r"report\.json: games\[0\]\.metrics\.phash\.shapley\.planted\.p_value: expected a "
                                 r"number or null, got a list; expected the report\.json an audit wrote")
    assert line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no view written


def test_identity_check_ignores_timings_paths_the_version_and_cache_state_only(tmp_path, capsys):
    from helpers.bench import load_bench

    check = load_bench("check_report_identity")
    before = _older(hand_made_report())
    after = hand_made_report()
    after["settings"] = copy.deepcopy(before["settings"])
    for sec_after, sec_before in zip(after["games"][0]["metrics"].values(), before["games"][0]["metrics"].values()):
        sec_after.clear()
        sec_after.update(copy.deepcopy(sec_before))
    after.update({"output_dir": "elsewhere", "cache_dir": "/other", "generation": {**after["generation"], "seconds": 9.0}})
    after["provenance"] = {**after["provenance"], "time_utc": "later", "wall_seconds": 3.0}
    assert check.differences(before, after) == []
    after["games"][0]["metrics"]["phash"]["shapley"]["planted"]["value"] += 1e-15
    after["games"][0]["metrics"]["phash"]["new"] = 1
    assert check.differences(before, after) == [
        f"games[0].metrics.phash.shapley.planted.value: 0.2 then {0.2 + 1e-15!r}",
        "games[0].metrics.phash.new: only in the second report"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "report.json").write_text(json.dumps(before))
    (tmp_path / "b" / "report.json").write_text(json.dumps(before | {"schema_version": SCHEMA_VERSION}))
    assert check.compare(tmp_path / "a" / "report.json", tmp_path / "b" / "report.json") == 0
    assert "IDENTICAL" in capsys.readouterr().out
