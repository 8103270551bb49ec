"""Zoo file loading: schema, defaults, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from copyscope.config import load_zoo
from copyscope.common.errors import CopyscopeError
from copyscope.plan.games import make_plan

MINIMAL = """\
name: t
bases:
  - model: runwayml/stable-diffusion-v1-5
loras:
  - model: some/lora-repo
    weight_name: style.safetensors
    weight: 0.8
  - {name: second, model: other/lora}
references:
  - {name: mona, paths: [refs]}
prompts:
  - text: a portrait
generation: {resolution: 64, steps: 3, seeds: [3, 1, 2]}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "refs").mkdir(exist_ok=True)
    p = tmp_path / "zoo.yaml"
    p.write_text(text)
    return p


def test_minimal_zoo_defaults_and_names(tmp_path):
    zoo = load_zoo(write(tmp_path, MINIMAL))
    s = zoo.spec
    assert s.bases[0].name == "stable-diffusion-v1-5"
    assert [lo.name for lo in s.loras] == ["style", "second"]
    assert s.generation.seed_list == [3, 1, 2]
    assert s.generation.size == (64, 64)
    assert s.estimator.method == "auto"
    assert zoo.is_local("refs") and not zoo.is_local("runwayml/stable-diffusion-v1-5")
    assert len(zoo.sha256) == 64


def test_plan_items_and_gray_order(tmp_path):
    plan = make_plan(load_zoo(write(tmp_path, MINIMAL)))
    game = plan.games[0]
    assert game.names == ["style", "second"]
    assert len(plan.items) == 3
    order = game.all_coalitions()
    assert len(set(order)) == 4 and order[0] == (False, False)
    # Gray-code order: neighbours differ in exactly one player
    assert all(sum(a != b for a, b in zip(x, y)) == 1 for x, y in zip(order, order[1:]))
    assert game.coalition_key((True, True)) == "style+second" and game.coalition_key((False, False)) == ""


@pytest.mark.parametrize(
    "text, expected",
    [
        (MINIMAL.replace("weight: 0.8", "weight: high"), r"zoo.yaml:7: loras\[0\].weight: .*number.*'high'"),
        (MINIMAL.replace("weight: 0.8", "wieght: 0.8"), r"zoo.yaml:7: loras\[0\].wieght: unknown key"),
        (MINIMAL.replace("  - text: a portrait", "  - text: [a portrait"), r"zoo.yaml:\d+: malformed YAML"),
        (MINIMAL.replace("{name: second, model: other/lora}", "{name: style, model: other/lora}"),
         r"loras\[1\].name: duplicate name 'style'"),
        (MINIMAL.replace("seeds: [3, 1, 2]", "seeds: []"), r"generation.seeds: need at least one seed"),
        (MINIMAL.replace("seeds: [3, 1, 2]", "seeds: 0"), r"generation.seeds: need at least one seed"),
        (MINIMAL.replace("resolution: 64", "resolution: 65"), r"generation.resolution: resolution must be a positive multiple of 8"),
        (MINIMAL.replace("  - text: a portrait", "  - text: a portrait\n    work: nowhere"), r"prompts\[0\].work: unknown work 'nowhere'"),
        (MINIMAL.replace("name: t\n", "name: t\nbogus: 1\n"), r"zoo.yaml:2: bogus: unknown key"),
        ("- just\n- a list\n", r"expected a mapping"),
        (MINIMAL.replace("references:\n  - {name: mona, paths: [refs]}\n", ""), r"references: required key is missing"),
        (MINIMAL.replace("{name: second,", "{name: 'has space',"), r"not a valid name"),
    ],
)
def test_bad_zoo_files_name_line_and_key(tmp_path, text, expected):
    with pytest.raises(CopyscopeError, match=expected):
        load_zoo(write(tmp_path, text))


def test_missing_zoo_file(tmp_path):
    with pytest.raises(CopyscopeError, match="zoo file not found"):
        load_zoo(tmp_path / "nope.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    evil = MINIMAL.replace("name: t", "name: !!python/object/apply:os.system ['echo pwned']")
    with pytest.raises(CopyscopeError, match="malformed YAML"):
        load_zoo(write(tmp_path, evil))


def test_analysis_spec_numbers_are_strict_and_bounded():
    """Issue 19: the analyses' numbers follow the zoo's rules: no booleans, no NaN/inf, bounded counts."""
    import pydantic

    from copyscope.analyses.specs import ImitationSpec

    ok = ImitationSpec(artists=[{"name": "x"}], n_images=3, alpha=0.1)
    assert ok.n_images == 3
    for bad in ({"n_images": True}, {"n_images": 10**9}, {"alpha": float("nan")}, {"first_seed": -1}):
        with pytest.raises(pydantic.ValidationError):
            ImitationSpec(artists=[{"name": "x"}], **bad)


def test_one_hub_id_pattern_for_zoo_models_and_metric_backbones():
    from copyscope.config import is_hub_id
    from copyscope.score.metrics import backbones

    for value, bare_ok, repo_ok in [("owner/name", True, True), ("stabilityai/sd-turbo", True, True), ("name", True, False),
                                    ("./local/x", False, False), ("a/b/c", False, False), ("/abs/path", False, False),
                                    ("-x/y", False, False)]:
        assert is_hub_id(value) is bare_ok and is_hub_id(value, owner=True) is repo_ok, value
        assert bool(backbones._HUB_ID.match(value)) is repo_ok, value  # the backbones use the same pattern
