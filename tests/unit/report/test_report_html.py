"""The HTML report: sections on a real tiny audit, escaping of hostile strings, determinism,
missing files, plain-language wording, the CSV share column."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil

import pytest

from copyscope.cli import app
from copyscope.report import attribution_csv
from copyscope.report.html import render_html, summary_sentences
from copyscope.report.plots import shapley_bars_svg

from helpers.audit_run import N_SEEDS, audited_and_ablated, runner


@pytest.fixture(scope="module")
def run(tiny_models, tmp_path_factory):
    return audited_and_ablated(tiny_models, tmp_path_factory)


def _ids(html: str) -> set[str]:
    return set(re.findall(r'id="([^"]+)"', html))


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_sections_exist(run):
    html, report = run["html"], run["report"]
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    ids = _ids(html)
    for sec in ["verdict", "game-0-verdict", "game-0-key-images", "game-0-chart", "details", "works", "game-0-summary",
                "game-0-shapley", "game-0-interactions", "game-0-coalitions", "game-0-agreement", "game-0-images", "game-0-flagged",
                "unavailable", "ablation", "provenance"]:
        assert sec in ids, sec
    game = report["games"][0]
    # every coalition row of the image grid, every image embedded (4 coalitions x 3 seeds + 2 reference thumbnails)
    grid = html.split('id="game-0-images"')[1].split('id="game-0-flagged"')[0]
    assert grid.count("data:image/png;base64,") == 4 * N_SEEDS
    for k in ["lora0", "lora1", "lora0+lora1", "(empty)"]:
        assert f"<td>{k}</td>" in grid
    assert "p / seed 0" in grid and f"p / seed {N_SEEDS - 1}" in grid
    works = html.split('id="works"')[1].split('id="game-0"')[0]
    assert works.count("data:image/png;base64,") == 2
    # plots: Shapley bars in the game section, seed curves / agreement / planted margin in the ablation
    assert html.split('id="game-0-shapley"')[1].split('id="game-0-interactions"')[0].count("data:image/svg+xml;base64,") == 1
    # interactions: the one pair of the two LoRAs, its value from report.json, and the heat map
    inter = html.split('id="game-0-interactions"')[1].split('id="game-0-coalitions"')[0]
    pairs = game["metrics"][game["headline"]]["interactions"]
    assert len(pairs["pairs"]) == 1 and inter.count("data:image/svg+xml;base64,") == 1
    assert f"{pairs['values'][0]:+.3g}" in inter and "Holm p (two-sided)" in inter
    assert html.split('id="ablation"')[1].split('id="provenance"')[0].count("data:image/svg+xml;base64,") == 3
    # numbers from the report: a Shapley value, every coalition worth of ssim, the weight hashes, the seeds
    for worth in game["metrics"]["ssim"]["coalitions"].values():
        assert f"{worth:.5g}" in html
    for comp in ("loras",):
        for ident in game["weights"][comp].values():
            assert ident["local_sha256"] in html
    assert game["weights"]["base"]["local_sha256"] in html
    assert "Kendall tau" in html and "Spearman rho" in html
    assert "accounts for" in html or "raises similarity" in html or "lowers similarity" in html
    assert "Every requested metric was available" in html and "No generated image was flagged" in html


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_self_contained(run):
    html = run["html"]
    low = html.lower()
    for bad in ["<script", "<link", "@import", "url(", 'src="http', "src='http", 'href="http', "<iframe", "<object"]:
        assert bad not in low, bad
    for src in re.findall(r'src="([^"]*)"', html):
        assert src.startswith("data:image/"), src[:40]


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_html_before_ablation_has_no_ablation_section(run):
    before = run["html_audit"].decode("utf-8")
    assert 'id="ablation"' not in before and 'id="game-0-summary"' in before


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_report_command_reproduces_the_same_bytes(run, tmp_path):
    out = run["out"]
    original = (out / "report.html").read_bytes()
    (out / "report.html").unlink()
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "report.html").read_bytes() == original
    # from report.json alone in another folder (cache found through report["cache_dir"]): same bytes
    other = tmp_path / "copy"
    other.mkdir()
    shutil.copy(out / "report.json", other / "report.json")
    shutil.copy(out / "ablation.json", other / "ablation.json")
    data = json.loads((other / "report.json").read_text())
    assert render_html(data, other) == original.decode("utf-8")


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_missing_files_are_reported_not_fatal(run, tmp_path):
    data = copy.deepcopy(run["report"])
    data["works"] = {"work": [str(tmp_path / "gone.png")]}
    data["cache_dir"] = str(tmp_path / "no-cache")
    html = render_html(data, tmp_path)  # tmp_path has no cache/ and no ablation.json
    assert "file not found on this machine" in html
    grid = html.split('id="game-0-images"')[1]
    assert grid.count("not in the image cache") == 4 * N_SEEDS
    # the verdict's key images: the bare base, the top-attributed LoRA alone and both LoRAs, every seed of the prompt
    assert html.split('id="game-0-key-images"')[1].split('id="game-0-chart"')[0].count("not in the image cache") == 3 * N_SEEDS
    assert 'id="ablation"' not in html


HOSTILE = '<script>alert(1)</script>'
ATTR = '"><img src=x onerror=alert(1)>'


def _rename_player(game: dict, old: str, new: str) -> None:
    game["players"] = [new if p == old else p for p in game["players"]]
    game["player_kinds"] = {(new if k == old else k): v for k, v in game["player_kinds"].items()}

    def rekey(key: str) -> str:
        return "+".join(new if p == old else p for p in key.split("+")) if key else key

    game["images"] = {rekey(k): v for k, v in game["images"].items()}
    for sec in game["metrics"].values():
        sec["coalitions"] = {rekey(k): v for k, v in sec["coalitions"].items()}
        for field in ("shapley", "split_percent", "loo", "banzhaf"):
            if sec.get(field):
                sec[field] = {(new if k == old else k): v for k, v in sec[field].items()}


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_hostile_strings_are_escaped(run, tmp_path):
    data = copy.deepcopy(run["report"])
    g = data["games"][0]
    _rename_player(g, "lora0", "lora0" + HOSTILE)
    _rename_player(g, "lora1", "lora1" + ATTR)
    g["base"] = "base" + HOSTILE
    g["metrics"]["ssim" + ATTR] = g["metrics"].pop("ssim")
    g["metrics"]["dhash"]["description"] = HOSTILE
    first_key = next(iter(g["images"].values()))[0]
    g["flagged_images"] = {"lora0" + HOSTILE: {first_key: [HOSTILE, ATTR]}}
    g["weights"]["loras"]["x" + HOSTILE] = {"local_sha256": ATTR}
    data["zoo_name"] = HOSTILE
    data["works"] = {"work" + HOSTILE: [str(tmp_path / (ATTR.replace("/", "_") + ".png"))]}
    data["settings"]["prompts"][0].update(name="p" + HOSTILE, text=ATTR, negative=HOSTILE)
    data["unavailable_metrics"] = {"clip" + HOSTILE: "weights missing " + ATTR}
    data["provenance"]["zoo_text"] = "name: x\n# " + HOSTILE + ATTR + "\n</pre>" + HOSTILE
    data["provenance"]["device"] = ATTR
    data["provenance"]["libraries"] = {HOSTILE: ATTR}
    data["output_dir"] = ATTR
    html = render_html(data, tmp_path)
    assert HOSTILE not in html and "<img src=x" not in html and "</pre>" + HOSTILE not in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    # each hostile field did reach the page (escaped): title, player, work, prompt, zoo text, flags, metric
    esc_h = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for text in ["<title>copyscope report — " + esc_h, "lora0" + esc_h, "work" + esc_h, "p" + esc_h, "clip" + esc_h,
                 "# " + esc_h, "base" + esc_h]:
        assert text in html, text
    # every tag in the page is one the renderer writes
    tags = set(re.findall(r"<([a-zA-Z0-9]+)", html))
    assert tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "nav", "ul", "li", "a",
                    "table", "thead", "tbody", "tr", "th", "td", "img", "span", "b", "code", "pre", "div", "figure",
                    "figcaption", "details", "summary"}, tags


def _game(value, ci, p_holm, share, low, high, kind="lora"):
    return {
        "players": ["planted", "other"],
        "player_kinds": {"planted": kind, "other": "controlnet"},
        "metrics": {"SSIM": {
            "shapley": {"planted": {"value": value, "ci95": ci, "p_value": p_holm, "p_holm": p_holm},
                        "other": {"value": -0.01, "ci95": [-0.02, 0.005], "p_value": 0.9, "p_holm": 0.9}},
            "split_percent": {"planted": {"share": share, "low": low, "high": high},
                              "other": {"share": 0.0, "low": 0.0, "high": 0.0}},
        }},
    }


def test_summary_wording():
    report = {"works": {"astronaut": ["a.png"]}, "settings": {"confidence": 0.95}}
    s = summary_sentences(report, _game(0.05, [0.03, 0.07], 0.003, 71.2, 58.4, 83.0))
    (sig,) = s["planted"]
    assert sig.startswith("LoRA planted accounts for 71% [58–83%]") and "work astronaut" in sig and "under SSIM" in sig
    assert "p = 0.003" in sig and "Holm" in sig
    (neg,) = s["other"]
    assert neg.startswith("ControlNet other lowers similarity") and "accounts for" not in neg
    assert "no share of the copying" in neg and "interval includes 0" in neg
    (ns,) = summary_sentences(report, _game(0.05, [-0.01, 0.1], 0.2, 100.0, 0.0, 100.0))["planted"]
    assert "not significantly" in ns and "p = 0.2" in ns and "accounts for" not in ns
    (tiny_p,) = summary_sentences(report, _game(0.05, [0.03, 0.07], 0.0001, 100.0, 100.0, 100.0))["planted"]
    assert "p < 0.001" in tiny_p
    (untested,) = summary_sentences(report, _game(0.05, None, None, 100.0, None, None))["planted"]
    assert "not tested for significance" in untested
    (undef,) = summary_sentences(report, _game(None, None, None, 0.0, None, None))["planted"]
    assert "undefined" in undef
    two = {"works": {"a": [], "b": []}, "settings": {"confidence": 0.9, "aggregate": "max_mean"}}
    (sig90,) = summary_sentences(two, _game(0.05, [0.03, 0.07], 0.07, 71.2, 58.4, 83.0))["planted"]
    assert "works a, b (combined: max_mean)" in sig90 and "90% interval" in sig90 and "accounts for" in sig90  # 0.07 < 0.1


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_attribution_csv_share_columns(run):
    report = run["report"]
    rows = list(csv.DictReader(io.StringIO(attribution_csv(report))))
    game = report["games"][0]
    assert len(rows) == sum(len(sec["shapley"]) for sec in game["metrics"].values())
    for r in rows:
        sp = game["metrics"][r["metric"]]["split_percent"][r["player"]]
        assert float(r["share_percent"]) == pytest.approx(sp["share"])
        assert float(r["share_low"]) == pytest.approx(sp["low"]) and float(r["share_high"]) == pytest.approx(sp["high"])
    # the file on disk is the same table
    assert (run["out"] / "attribution.csv").read_text().splitlines()[0].endswith("share_low,share_high")


def test_plots_are_deterministic_svg():
    m = {"a$b$": {"x": {"value": 0.1, "ci95": [0.0, 0.2]}, "y": {"value": None, "ci95": None}}}
    a, b = shapley_bars_svg(["x", "y"], m), shapley_bars_svg(["x", "y"], m)
    assert a == b and a.lstrip().startswith("<?xml") and "<dc:date>" not in a
