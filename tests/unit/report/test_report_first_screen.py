"""The HTML report leads with the finding: one verdict sentence per work, the key images (the work, the bare base,
the culprit's coalition, the full pipeline) and the headline's chart come before any table and, in headless
chromium at 1300 x 1000 px, lie on the first screen (bench/check_report_first_screen.py measures it). Repeated
warnings are said once: the set metrics' sample-size warnings as one line per metric, the seed warning once in
the page and once in the terminal. On a demo-shaped report built here (4 players, 16 coalitions, 8 seeds), so
no model is needed."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from copyscope.generate.cache import ImageCache
from copyscope.report.html import render_html

PLAYERS = ["depth", "planted", "decoy-coffee", "decoy-rocket"]
KINDS = {"depth": "controlnet", "planted": "lora", "decoy-coffee": "lora", "decoy-rocket": "lora"}
SEEDS = list(range(8))
KID_WARNING = ("small sample: n_gen=8, n_ref=4 <= feature_dim=64; KID stays unbiased but is noisy (subset size 4, "
               "std over subsets {})")
SEED_WARNING = "only 8 seeds: below 16 seeds the intervals and p-values hold only if ..."


def _bench():
    from helpers.bench import load_bench

    return load_bench("check_report_first_screen")


def _entry(value: float, p_holm: float) -> dict:
    return {"value": value, "ci95": [value - 0.05, value + 0.05], "p_value": p_holm, "p_holm": p_holm}


def _metric(shapley: dict, coalitions: list[str], kind: str = "per_image") -> dict:
    pos = sum(max(e["value"], 0) for e in shapley.values())
    return {
        "orientation": "higher_is_closer", "kind": kind, "raw_orientation": "higher_is_closer", "description": "d",
        "coalitions": {k: 0.1 * i for i, k in enumerate(coalitions)}, "shapley": shapley, "seed_bound": None,
        "efficiency_gap": 0.0, "estimator": {"method": "exact", "coalitions_evaluated": 16, "budget": None},
        "split_percent": {p: {"share": 100 * max(e["value"], 0) / pos, "low": None, "high": None} for p, e in shapley.items()},
        "per_seed": None, "seed_worths": None, "loo": None, "banzhaf": None,
    }


def demo_report(tmp: Path, planted_p: float = 0.004) -> dict:
    """A report shaped like the shipped demo's (values made up), its images in tmp/cache, its work in tmp/work.png."""
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp / "work.png")
    cache = ImageCache(tmp / "cache")
    coalitions = ["+".join(p for p, m in zip(PLAYERS, ms) if m) for ms in itertools.product([0, 1], repeat=len(PLAYERS))]
    images = {}
    for k in coalitions:
        images[k] = [hashlib.sha256(f"{k}/{s}".encode()).hexdigest() for s in SEEDS]
        for key in images[k]:
            cache.put(key, rng.random((32, 32, 3)).astype(np.float32), {}, [])
    shapley = {"depth": _entry(0.0365, 0.3), "planted": _entry(0.193, planted_p),
               "decoy-coffee": _entry(-0.0475, 1.0), "decoy-rocket": _entry(-0.0807, 1.0)}
    kid = _metric({p: _entry(e["value"] / 2, 1.0) for p, e in shapley.items()}, coalitions, "set")
    kid["sample_size"] = {k: {"n_generated": 8, "n_reference": 4, "feature_dim": 64,
                              "warning": KID_WARNING.format(round(0.02 + i / 1000, 4))} for i, k in enumerate(coalitions)}
    game = {"base": "tiny-sd", "players": PLAYERS, "player_kinds": KINDS, "base_as_player": False, "weights": {},
            "images": images, "flagged_images": {}, "skipped_metrics": {}, "headline": "phash",
            "metrics": {"phash": _metric(shapley, coalitions), "kid_pixels": kid,
                        "ssim": _metric({p: _entry(0.01, 1.0) for p in PLAYERS}, coalitions)}}
    return {
        "copyscope_version": "0", "config_sha256": "0" * 64, "zoo_name": "demo", "generation": {},
        "settings": {"prompts": [{"name": "astronaut-neutral", "text": "a painting", "negative": "", "work": "astronaut"}],
                     "seeds": SEEDS, "confidence": 0.95, "intervals": "jackknife", "significance": "t", "n_seeds": 8,
                     "seed_warning": SEED_WARNING},
        "works": {"astronaut": [str(tmp / "work.png")]}, "conditioning": [], "unavailable_metrics": {},
        "games": [game], "provenance": {}, "cache_dir": str(tmp / "cache"), "output_dir": str(tmp),
    }


@pytest.fixture
def report(tmp_path) -> dict:
    return demo_report(tmp_path)


def _block(html: str, element_id: str) -> str:
    """The element with that id, up to the next element id (enough for counting its images)."""
    return html.split(f'id="{element_id}"', 1)[1].split(' id="', 1)[0]


def test_verdict_images_and_chart_come_before_any_table(report, tmp_path):
    html = render_html(report, tmp_path)
    first_table = html.index("<table")
    for element in ("game-0-verdict", "game-0-key-images", "game-0-chart"):
        assert html.index(f'id="{element}"') < first_table, element
    verdict = _block(html, "game-0-verdict")
    assert ("LoRA planted copies work astronaut: 84% of the copying under phash, significant "
            "(p = 0.004 after Holm correction).") in verdict
    # the work, then four seeds of each key coalition: the bare base, the planted LoRA alone, the full pipeline
    strip = _block(html, "game-0-key-images")
    assert strip.count("data:image/png;base64,") == 1 + 3 * 4
    for caption in ("work astronaut", "base tiny-sd alone", "base + LoRA planted", "full pipeline: all 4 components"):
        assert f"<figcaption>{caption}</figcaption>" in strip
    assert 'title="planted | astronaut-neutral / seed 0"' in strip and "seed 0, seed 1, seed 2, seed 3" in strip
    assert _block(html, "game-0-chart").count("data:image/svg+xml;base64,") == 1
    # the seed warning once in the page, with the verdict; the report stays script-free
    assert html.count("only 8 seeds") == 1 + 1 and html.index("only 8 seeds") < first_table  # + provenance table
    assert "<script" not in html.lower()


def test_without_a_significant_component_the_images_show_the_top_attributed_one(tmp_path):
    html = render_html(demo_report(tmp_path, planted_p=0.2), tmp_path)
    verdict = _block(html, "game-0-verdict")
    assert ("No component is shown to copy work astronaut under phash: the largest contribution, LoRA planted (84% of "
            "the copying), is not significant (p = 0.2 after Holm correction).") in verdict
    assert "<figcaption>base + LoRA planted</figcaption>" in _block(html, "game-0-key-images")


def test_a_warning_repeated_per_coalition_is_one_line_with_a_count(report, tmp_path):
    html = render_html(report, tmp_path)
    assert "sample-size warning</th>" not in html
    lines = re.findall(r"<li>kid_pixels: small sample[^<]*</li>", html)
    assert lines == ["<li>kid_pixels: small sample: n_gen=8, n_ref=4 &lt;= feature_dim=64; KID stays unbiased but is "
                     "noisy (subset size 4, std over subsets 0.02–0.035) (16 coalitions)</li>"]


def test_the_terminal_prints_the_seed_warning_once(report, tmp_path):
    from typer.testing import CliRunner

    from copyscope.cli import app

    (tmp_path / "report.json").write_text(json.dumps(report))
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert re.sub(r"\s+", " ", res.output).count("only 8 seeds") == 1, res.output


@pytest.mark.skipif(_bench().find_chromium() is None,
                    reason="chromium is not installed: the first-screen layout needs a headless browser "
                           "(the static order check above still ran)")
def test_first_screen_of_1300_by_1000_shows_verdict_images_and_chart(report, tmp_path):
    bench = _bench()
    geo = bench.measure(render_html(report, tmp_path))
    assert bench.problems(geo) == [], geo
    assert geo["verdict"]["text"].startswith("LoRA planted copies work astronaut")
    assert len(geo["key_images"]["first_strip"]) == 1 + 3 * 4
    # the check fails where the finding is not on the first screen: the same page seen 400 px tall
    assert bench.problems(geo, height=400)


def test_the_first_screen_check_rejects_a_page_without_the_verdict():
    bench = _bench()
    geo = {"viewport": {"width": 1300, "height": 1000}, "verdict": None, "key_images": None, "chart": None,
           "first_table": {"top": 100, "bottom": 400, "left": 0, "right": 800, "width": 800, "height": 300}}
    assert bench.problems(geo) == ["verdict sentences: missing",
                                   "key images: 0 image(s) in the first strip, expected the work, the base, the "
                                   "culprit's coalition and the full pipeline", "attribution chart: missing"]


def test_one_sentence_and_one_strip_per_work(report, tmp_path):
    """With several works each work's own game (per_work) gives its sentence and its images (its own prompt)."""
    from copyscope.report.verdict import work_verdicts

    game = report["games"][0]
    phash = game["metrics"]["phash"]
    other = json.loads(json.dumps(phash))
    other["shapley"]["planted"].update(value=-0.01, p_holm=1.0)  # work b: the controlnet leads, not significantly
    game["per_work"] = {"astronaut": {"phash": phash}, "b": {"phash": other}}
    report["works"]["b"] = report["works"]["astronaut"]
    report["settings"]["prompts"].append({"name": "b-prompt", "text": "x", "negative": "", "work": "b"})
    for k in game["images"]:
        game["images"][k] = game["images"][k][:4] * 2  # 2 prompts x 4 seeds
    report["settings"]["seeds"] = SEEDS[:4]
    verdicts = work_verdicts(report, game)
    assert [v["culprit"] for v in verdicts] == ["planted", "depth"]
    assert verdicts[0]["sentence"].startswith("LoRA planted copies work astronaut: ")
    assert verdicts[1]["sentence"].startswith("No component is shown to copy work b under phash: the largest "
                                              "contribution, ControlNet depth (")
    strips = _block(render_html(report, tmp_path), "game-0-key-images")
    assert strips.count('<div class="strip">') == 2 and "<figcaption>base + ControlNet depth</figcaption>" in strips
    assert "Each tile: astronaut-neutral / seed 0" in strips and "Each tile: b-prompt / seed 0" in strips


def test_the_chart_names_the_interval_its_whiskers_show(report, tmp_path, monkeypatch):
    """The whiskers are the claim's interval (the hull of the t and distribution-free ones under the default rule),
    which can be far wider than the t interval of the tables: the chart's title says which (older reports without
    a "claim" field: the plain title)."""
    from copyscope.report import plots

    titles = []
    real = plots.shapley_bars_svg

    def spy(*args, title=None, **kwargs):
        titles.append(title)
        return real(*args, title=title, **kwargs)

    monkeypatch.setattr(plots, "shapley_bars_svg", spy)
    render_html(report, tmp_path)
    assert titles[-1].endswith("95% interval")
    for e in report["games"][0]["metrics"]["phash"]["shapley"].values():
        e["claim"] = "t and distribution-free"
    render_html(report, tmp_path)
    assert titles[-1].endswith("95% interval of the claim (t and distribution-free)")
