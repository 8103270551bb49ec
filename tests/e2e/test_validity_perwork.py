"""Per-work attribution and the headline metric (issue 15) on a tiny two-work audit.

Each work's own attribution must equal the audit of that work alone (same images through the shared
cache): the per-work game is defined as exactly that. Only the headline metric carries significance
marks in the terminal table.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from copyscope.audit import audit_zoo  # noqa: E402
from copyscope.report import attribution_tables  # noqa: E402
from copyscope.report.headline import HEADLINE_PREFERENCE, headline_metric, per_work_sentences  # noqa: E402
from copyscope.report.html import render_html  # noqa: E402

from helpers.zoo import make_zoo_file, write_reference_images  # noqa: E402


def _two_work_zoo(tmp_path, tiny_models, works=("a", "b")):
    refs = {w: write_reference_images(tmp_path / f"refs-{w}", n=2, seed=i + 3) for i, w in enumerate(("a", "b"))}
    return make_zoo_file(
        tmp_path, tiny_models, controlnet=False, cache=str(tmp_path / "cache"),
        references=[{"name": w, "paths": [str(refs[w])]} for w in works],
        prompts=[{"name": f"p-{w}", "text": f"a painting number {i}", "work": w}
                 for i, w in enumerate(("a", "b")) if w in works],
    )


@pytest.fixture(scope="module")
def audits(tiny_models, tmp_path_factory, one_torch_thread):
    tmp = tmp_path_factory.mktemp("perwork")
    both = audit_zoo(_two_work_zoo(tmp, tiny_models), tmp / "both")
    alone = {}
    for w in ("a", "b"):
        sub = tmp / f"only-{w}"
        sub.mkdir()
        path = _two_work_zoo(tmp, tiny_models, works=(w,))
        alone[w] = audit_zoo(path, sub / "out")
    return both, alone


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_each_work_gets_its_own_attribution_equal_to_auditing_it_alone(audits):
    both, alone = audits
    (game,) = both["games"]
    assert set(game["per_work"]) == {"a", "b"}
    for w, rep in alone.items():
        (single,) = rep["games"]
        assert "per_work" not in single  # one work: the attribution is already that work's
        assert rep["generation"]["generated"] == 0  # the two-work audit's images, from the shared cache
        for metric, sec in single["metrics"].items():
            for p, v in sec["shapley"].items():
                got = game["per_work"][w][metric]["shapley"][p]
                assert got["value"] == pytest.approx(v["value"], abs=1e-12), (w, metric, p)
                assert got["ci95"] == pytest.approx(v["ci95"], abs=1e-12), (w, metric, p)
    # the per-work games differ from each other (different prompts, different references)
    va = game["per_work"]["a"]["ssim"]["shapley"]["lora0"]["value"]
    vb = game["per_work"]["b"]["ssim"]["shapley"]["lora0"]["value"]
    assert va != vb


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_headline_marks_and_per_work_words(audits):
    both, _ = audits
    (game,) = both["games"]
    assert game["headline"] == headline_metric(game["metrics"]) == next(m for m in HEADLINE_PREFERENCE
                                                                     if m in game["metrics"])
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=200, color_system=None)
    for t in attribution_tables(both):
        console.print(t)
    text = buf.getvalue()
    assert "Per-work attribution" in text and "work a" in text and "work b" in text
    for line in text.splitlines():
        if "(sensitivity)" in line:
            assert "*" not in line, line  # no significance claim outside the headline metric
    sentences = per_work_sentences(both, game)
    assert len(sentences) == 2 and sentences[0].startswith("Work 'a'") and sentences[1].startswith("Work 'b'")
    html = render_html(both, Path(both["output_dir"]))
    assert "Per-work attribution" in html and "sensitivity analysis" in html
    assert json.loads(json.dumps(both))  # the report stays JSON


def test_headline_marks_only_the_headline():
    """A decoy significant under a sensitivity metric only gets no mark; the headline's plant does."""
    from rich.console import Console

    def entry(v, p):
        return {"value": v, "ci95": [v - 0.1, v + 0.1], "p_value": p, "p_holm": p}

    report = {"settings": {"confidence": 0.95}, "games": [{
        "base": "b", "players": ["plant", "decoy"], "headline": "ssim",
        "metrics": {"ssim": {"shapley": {"plant": entry(0.5, 0.001), "decoy": entry(0.01, 0.6)}},
                    "histogram": {"shapley": {"plant": entry(0.2, 0.3), "decoy": entry(0.4, 0.001)}},
                    "dhash": {"shapley": {"plant": entry(0.2, 0.3), "decoy": entry(0.4, 0.001)}}}}]}
    buf = io.StringIO()
    for t in attribution_tables(report):
        Console(file=buf, width=200, color_system=None).print(t)
    rows = [line for line in buf.getvalue().splitlines() if line.lstrip("│┃ ").startswith(("ssim", "histogram", "dhash"))]
    assert len(rows) == 3
    assert "*" in next(r for r in rows if "ssim" in r)
    assert all("*" not in r for r in rows if "sensitivity" in r)
