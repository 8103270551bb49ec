"""The validity benchmark's views of the controls (copyscope.demo.bench, bench_verdicts): the worth table, the audits' own headline
choices against the bar, the placebo verdicts, and the --worth option's refusals."""

from __future__ import annotations

from copyscope.demo.bench_verdicts import format_worth_table, headline_bar, judge, summarise
from copyscope.demo.scenarios import Scenario


def _v(first, plant, decoy, decoy_t=None):
    return {"planted_first": first, "plant_significant": plant, "decoy_significant": decoy,
            "plant_significant_t": plant, "decoy_significant_t": decoy if decoy_t is None else decoy_t}


def test_headline_bar_counts_the_chosen_metric_only():
    results = [
        {"headline": "phash", "verdicts": {"phash": _v(True, True, False), "ssim": _v(True, True, True)}},
        {"headline": "ssim", "verdicts": {"phash": _v(True, True, False), "ssim": _v(True, True, True)}},
        {"headline": "phash", "verdicts": {"phash": _v(False, True, False)}},
        {"headline": None, "verdicts": {"phash": _v(True, True, False)}},
    ]
    bar = headline_bar(results)
    assert bar["chosen"] == {"phash": 2, "ssim": 1}
    assert bar["meets_bar"] == [1, 3] and bar["planted_first"] == [2, 3] and bar["decoy_significant_t"] == [1, 3]
    assert bar["plant_significant_t"] == [3, 3]
    # runs judged before planted_first_vs_decoys existed count their planted_first for it
    assert bar["planted_first_vs_decoys"] == [2, 3] and bar["meets_bar_t_vs_decoys"] == [1, 3]


def test_headline_bar_with_the_controlnet_judged_apart():
    ahead = {**_v(False, True, False), "planted_first_vs_decoys": True}  # the ControlNet above the plant
    bar = headline_bar([{"headline": "phash", "verdicts": {"phash": ahead}},
                        {"headline": "phash", "verdicts": {"phash": {**_v(True, True, False), "planted_first_vs_decoys": True}}}])
    assert bar["meets_bar_t"] == [1, 2] and bar["meets_bar_t_vs_decoys"] == [2, 2]
    assert bar["planted_first"] == [1, 2] and bar["planted_first_vs_decoys"] == [2, 2]


def test_worth_table_compares_the_variants():
    rows = [{"verdicts": {"phash": _v(True, True, False)}}, {"verdicts": {"phash": _v(True, False, True)}}]
    text = format_worth_table({"raw": {"summary": summarise(rows)}, "percentile": {"summary": summarise(rows[:1])}})
    assert "raw: first / plant sig. / decoy sig. (t)" in text
    assert "| phash | 2/2 (100%) / 1/2 (50%) / 1/2 (50%) | 1/1 (100%) / 1/1 (100%) / 0/1 (0%) |" in text


def test_judge_reads_the_placebo_comparisons():
    s = Scenario("plain:w:d:nocn", ("w",), {"plant": "w"}, ("decoy",), False)
    entry = {"value": 0.1, "p_holm": 0.01, "t": {"p_holm": 0.01}}
    report = {"games": [{"metrics": {"phash": {"shapley": {
        "plant": {**entry, "value": 0.3, "beats_placebo": True},
        "decoy": {**entry, "beats_placebo": False},
        "placebo": {**entry, "value": 0.05, "p_holm": 0.5, "t": {"p_holm": 0.02}, "placebo": True}}}}}]}
    row = judge(s, report, None)["phash"]
    assert row["plant_beats_placebo"] and not row["decoy_beats_placebo"] and row["placebo_significant_t"]
    assert row["planted_first"]  # the plant is above the placebo too


def test_judge_reads_each_loras_own_placebo():
    """placebo: swap: the verdicts come from vs_own_placebo, under the claim's rule and the t test alone."""
    s = Scenario("plain:w:d:nocn", ("w",), {"plant": "w"}, ("decoy",), False)
    entry = {"value": 0.1, "p_holm": 0.01, "t": {"p_holm": 0.01}}
    own = {"plant": {"value": 0.2, "p_holm": 0.3, "t": {"p_holm": 0.001}},
           "decoy": {"value": -0.01, "p_holm": 0.9, "t": {"p_holm": 0.01}}}  # negative: never beats, whatever p says
    report = {"games": [{"metrics": {"phash": {"shapley": {"plant": {**entry, "value": 0.3}, "decoy": entry},
                                              "vs_own_placebo": own}}}]}
    row = judge(s, report, None)["phash"]
    assert not row["plant_beats_placebo"] and row["plant_beats_placebo_t"]
    assert not row["decoy_beats_placebo"] and not row["decoy_beats_placebo_t"]
    assert "placebo_significant_t" not in row  # no placebo player
    assert summarise([{"verdicts": {"phash": row}}])["phash"]["plant_beats_placebo_t"] == [1, 1]


def test_unknown_worth_is_refused_before_any_work(tmp_path):
    import pytest

    from copyscope.demo.bench import run_bench
    from copyscope.common.errors import CopyscopeError

    with pytest.raises(CopyscopeError, match="--worth raw,minus_median: expected one or more of raw, minus_mean"):
        run_bench(tmp_path / "out", tmp_path / "no-zoo", subset="quick", worths=("raw", "minus_median"))
    assert not (tmp_path / "out").exists()
