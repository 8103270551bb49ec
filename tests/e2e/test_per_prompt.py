"""Per-prompt attribution on a tiny audit with two prompts where only one triggers the copying.

The protected work is made of the images the LoRA ``lora0`` generates for prompt ``copy`` (so under that prompt its
images are the work; under prompt ``other`` they are not). Each prompt's own game must equal the audit of that
prompt alone (same images through the shared cache), lora0 must be attributed the copying in prompt ``copy`` only,
and the summary must name that prompt as the one driving the copying.
"""

from __future__ import annotations

import io
import shutil

import pytest
import yaml

from copyscope.audit import audit_zoo
from copyscope.generate.cache import ImageCache
from copyscope.report import attribution_tables
from copyscope.report.headline import per_prompt_sentences
from copyscope.report.html import render_html
from helpers.zoo import make_zoo_file

SEEDS = 6
PROMPTS = [{"name": "copy", "text": "a painting of a cat"}, {"name": "other", "text": "a photo of a harbour at night"}]


def _zoo(tmp, tiny_models, refs, prompts=PROMPTS):
    path = make_zoo_file(
        tmp, tiny_models, loras=2, controlnet=False, cache=str(tmp / "cache"), prompts=prompts,
        references=[{"name": "work", "paths": [str(refs)]}],
        generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": SEEDS, "batch_size": SEEDS, "scheduler": "ddim"},
        metrics=["phash", "ssim"], estimator={"method": "exact", "significance": "t"},
    )
    data = yaml.safe_load(path.read_text())
    data["loras"][0]["weight"] = 6.0  # the tiny random LoRAs change an image little at weight 1; at 6, clearly
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def audits(tiny_models, tmp_path_factory, one_torch_thread):
    tmp = tmp_path_factory.mktemp("perprompt")
    # 1) an audit against placeholder references, to generate lora0's images of prompt "copy"
    first = audit_zoo(_zoo(tmp, tiny_models, tmp / "refs"), tmp / "first")
    (game,) = first["games"]
    cache = ImageCache(first["cache_dir"])
    work = tmp / "work"
    work.mkdir()
    for i, key in enumerate(game["images"]["lora0"][:SEEDS]):  # items are prompt-major: the first prompt's seeds
        shutil.copy(cache.path(key), work / f"copy{i}.png")
    # 2) the audit whose work is those images (nothing generated again), and each prompt audited alone
    both = audit_zoo(_zoo(tmp, tiny_models, work), tmp / "both")
    alone = {}
    for p in PROMPTS:
        sub = tmp / f"only-{p['name']}"
        sub.mkdir()
        alone[p["name"]] = audit_zoo(_zoo(sub, tiny_models, work, prompts=[p]), sub / "out")
    return both, alone


@pytest.mark.slow
def test_each_prompt_gets_its_own_attribution_equal_to_auditing_it_alone(audits):
    both, alone = audits
    (game,) = both["games"]
    assert both["generation"]["generated"] == 0 and set(game["per_prompt"]) == {"copy", "other"}
    for name, rep in alone.items():
        (single,) = rep["games"]
        assert "per_prompt" not in single  # one prompt: the attribution is already that prompt's
        for metric, sec in single["metrics"].items():
            for p, v in sec["shapley"].items():
                got = game["per_prompt"][name][metric]["shapley"][p]
                assert got["value"] == pytest.approx(v["value"], abs=1e-12), (name, metric, p)
                assert got["ci95"] == pytest.approx(v["ci95"], abs=1e-12), (name, metric, p)


@pytest.mark.slow
def test_the_copying_is_attributed_to_the_prompt_that_triggers_it(audits):
    both, _ = audits
    (game,) = both["games"]
    head = game["headline"]
    copy = game["per_prompt"]["copy"][head]["shapley"]
    other = game["per_prompt"]["other"][head]["shapley"]
    assert copy["lora0"]["value"] > 0.05 and copy["lora0"]["p_holm"] < 0.05  # its images are the work
    assert other["lora0"]["p_holm"] >= 0.05 and other["lora0"]["value"] < copy["lora0"]["value"] / 3
    said = per_prompt_sentences(both, game)
    assert said[0] == "The copying is driven by prompt 'copy' (of 2)."
    assert said[1].startswith("Prompt 'copy': copied significantly by lora0")
    assert said[2].startswith("Prompt 'other': no component raises similarity to it significantly")
    from rich.console import Console

    buf = io.StringIO()
    for t in attribution_tables(both):
        Console(file=buf, width=200, color_system=None).print(t)
    assert "Per-prompt attribution" in buf.getvalue() and "prompt copy" in buf.getvalue()


@pytest.mark.slow
def test_the_html_summary_names_the_driving_prompt(audits, tmp_path):
    both, _ = audits
    html = render_html(both, tmp_path)
    summary = html.split('id="game-0-summary"')[1].split('id="game-0-shapley"')[0]
    assert "Per prompt" in summary and "The copying is driven by prompt &#x27;copy&#x27; (of 2)." in summary
