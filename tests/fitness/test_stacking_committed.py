"""The committed LoRA-stacking runs (bench/bench_stacking.py): what bench/stacking_triggers.md and
bench/stacking_trigger_joint.md say of their runs holds in the committed files, and each run's baseline reproduces
the earlier run."""

from __future__ import annotations

import json

from helpers.bench import load_bench
from helpers.paths import REPO

BENCH = REPO / "bench"


def _doc(name: str) -> dict:
    return json.loads((BENCH / name).read_text())


def test_the_trigger_runs_baseline_reproduces_the_committed_wide_rows():
    new, old = _doc("stacking_triggers_results.json")["recipes"]["wide"], _doc("stacking_results.json")["recipes"]["wide"]
    for work, row in old["per_work"].items():
        assert {k: new["per_work"][work][k] for k in row} == row, work
    assert new["shapley"] == old["shapley"]
    assert new["interactions"]["values"] == old["interactions"]["values"]


def test_the_trigger_recipe_copies_alone_but_does_not_keep_its_content_with_both_others():
    """Predictions 2 (held) and 4 (failed) of bench/stacking_triggers.md, which decide the recipe; and the table in
    the file is the one the script writes from the committed results."""
    doc = _doc("stacking_triggers_results.json")
    wide, trig, every = (doc["recipes"][r]["per_work"] for r in ("wide", "trigger", "trigger-all"))
    assert all(r["effect_alone"] >= 0.10 for r in trig.values())
    assert sum(trig[w]["effect_alone"] >= wide[w]["effect_alone"] / 2 for w in trig) >= 2
    assert not all(r["retention"]["all three"] >= 0.7 for r in trig.values())
    assert max(r["retention"]["all three"] for r in trig.values()) < 0.3
    assert sum(r["retention"]["all three"] < 0.5 for r in every.values()) >= 2  # prediction 5
    text = (BENCH / "stacking_triggers.md").read_text()
    assert text.index("## Predictions (fixed before the run)") < text.index("## Results")
    table = load_bench("bench_stacking").table(doc)
    for line in table.splitlines()[2:]:
        assert line in text, line


def test_trigger_words_trained_together_combine():
    """bench/stacking_trigger_joint.md: its baseline reproduces the committed wide rows; predictions 2 and 3 (the
    decision rule) hold; each work's copying is credited to its own LoRA in every work's game; the file's table is
    the script's table of the committed results, after the predictions."""
    doc = _doc("stacking_trigger_joint_results.json")
    old = _doc("stacking_results.json")["recipes"]["wide"]
    assert all({k: doc["recipes"]["wide"]["per_work"][w][k] for k in row} == row for w, row in old["per_work"].items())
    wide, tj = doc["recipes"]["wide"]["per_work"], doc["recipes"]["trigger-joint"]["per_work"]
    assert all(r["effect_alone"] >= 0.10 and r["effect_alone"] >= wide[w]["effect_alone"] / 2 for w, r in tj.items())
    assert all(r["retention"]["all three"] >= 0.5 for r in tj.values())
    for work, values in doc["recipes"]["trigger-joint"]["shapley_by_work"].items():
        assert max(values, key=values.get) == work
        assert all(v < 0.05 for p, v in values.items() if p != work)
    assert doc["recipes"]["trigger-joint"]["shapley_by_work"]["astronaut"] == doc["recipes"]["trigger-joint"]["shapley"]
    # measured after the run: partners still change the images on another work's prompt (by > 50 of 255 levels)
    assert all(v > 50 for w, r in tj.items() for o, v in r["pixel_change_alone"].items() if o != w)
    text = (BENCH / "stacking_trigger_joint.md").read_text()
    assert text.index("## Predictions (fixed before the run)") < text.index("## Results")
    for line in load_bench("bench_stacking").table(doc).splitlines()[2:]:
        assert line in text, line
