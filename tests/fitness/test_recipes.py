"""The recipes of docs/ARCHITECTURE.md, followed: a toy metric and a toy estimator, each added by the recipe's
steps (a registry entry, made here instead of in the source) and audited through the CLI on the tiny models.
(The player-kind recipe: tests/unit/players/test_player_registry.py.) A child process makes the entries before
copyscope's schema is built, as a source edit would."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers.paths import REPO
from helpers.zoo import brute_force_shapley, make_zoo_file

CHILD = textwrap.dedent('''
    import sys
    import numpy as np

    # metric recipe, steps 1-2: a Metric subclass and its registry entry
    from copyscope.score.metrics import registry
    from copyscope.score.metrics.base import PerImageMetric

    class MeanMatch(PerImageMetric):
        """1 - |mean brightness of the image - that of the reference|: a toy similarity in [0, 1]."""
        description = "1 - |difference of mean brightness| (a toy metric of the recipe test)"
        OPTIONS = {}
        value_range = (0.0, 1.0)

        def _features(self, images):
            return np.array([[float(np.mean(im))] for im in images], dtype=np.float32)

        def _similarity(self, g, r):
            return 1.0 - np.abs(g[:, :1] - r[:, :1].T)

    entry = registry._Entry("mean_match", MeanMatch, MeanMatch.description, MeanMatch.OPTIONS)
    registry._ENTRIES.append(entry)
    registry.REGISTRY[entry.name] = entry
    registry.METRIC_NAMES.append(entry.name)

    # estimator recipe, steps 1-2: an Estimator subclass and its place in ESTIMATORS, before the schema loads
    from copyscope.estimate.shapley import estimators
    from copyscope.estimate.shapley.registry import ESTIMATORS, METHODS

    class ToyExact(estimators.ExactShapley):
        """Exact enumeration under its own name."""
        method = "toy_exact"

    ESTIMATORS["toy_exact"] = ToyExact
    METHODS["toy_exact"] = ToyExact

    from copyscope.cli import app
    sys.argv = ["copyscope", "audit", sys.argv[1]]
    app()
''')


@pytest.mark.slow
def test_a_toy_metric_and_a_toy_estimator_audit_through_the_cli(tiny_models, tmp_path):
    zoo = make_zoo_file(tmp_path, tiny_models, loras=2, controlnet=False, metrics=["mean_match", "phash"],
                        estimator={"method": "toy_exact", "intervals": "jackknife"})
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "COPYSCOPE_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", CHILD, str(zoo)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = Path(yaml.safe_load(zoo.read_text())["output"])
    report = json.loads((out / "report.json").read_text())
    (game,) = report["games"]
    metric = game["metrics"]["mean_match"]
    assert metric["orientation"] == "higher_is_closer" and set(metric["shapley"]) == {"lora0", "lora1"}
    assert metric["estimator"]["method"] == "toy_exact" and metric["estimator"]["coalitions_evaluated"] == 4
    expected = brute_force_shapley(game["players"], metric["coalitions"])
    for name, value in expected.items():
        assert metric["shapley"][name]["value"] == pytest.approx(value, abs=1e-9)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["estimator"]["method"] == "toy_exact" and plan["games"][0]["n_coalitions"] == 4


def test_every_family_is_in_each_place_the_family_recipe_names():
    """The pipeline-family recipe of docs/ARCHITECTURE.md, checked against every registered family: each step's place
    holds each family (a new family that skips a step fails here)."""
    import importlib

    import diffusers

    from copyscope.config.generation import GenerationSpec
    from copyscope.controls.positive import _img2img_class
    from copyscope.demo.tiny_families import BUILTIN, FAMILY_NAMES, _family_module
    from copyscope.families import FAMILIES, controlnet_family
    from copyscope.families.lora_detection import denoiser_modules

    recipe = (REPO / "docs" / "ARCHITECTURE.md").read_text().split("### Adding a pipeline family", 1)[1]
    zoo_doc = (REPO / "docs" / "zoo.md").read_text()
    readme_families = (REPO / "README.md").read_text().split("## Pipeline families", 1)[1].split("\n## ", 1)[0]
    families_section = zoo_doc.split("### Pipeline families", 1)[1].split("\n## ", 1)[0]
    formats_header = next(ln for ln in zoo_doc.splitlines() if ln.startswith("| layout (tensor names) |"))
    producers = (REPO / "tests" / "e2e" / "test_lora_producers_families.py").read_text()
    e2e = "".join(p.read_text() for p in (REPO / "tests" / "e2e").glob("test_families*.py"))
    # every Family field the recipe's step 1 should name
    for field in ("control_arg", "max_controlnets", "size_multiple", "check_generation", "negative_prompt_if",
                  "embedding_cache", "flow_matching", "ip_adapter", "textual_inversion", "img2img", "load_kwargs",
                  "call_arguments"):
        assert f"`{field}`" in recipe, f"step 1 of the family recipe does not name Family.{field}"
    for name, fam in FAMILIES.items():
        # step 1: one module per family, whose classes diffusers has
        module = importlib.import_module(f"copyscope.families.{name}")
        assert module.FAMILY is fam and isinstance(module.ALIASES, dict), name
        assert fam.model_index_classes and fam.pipeline in fam.model_index_classes, name
        for cls in (fam.pipeline, fam.controlnet_pipeline, fam.controlnet_model):
            assert cls is None or hasattr(diffusers, cls), f"step 1: diffusers has no {cls} ({name})"
        assert fam.max_controlnets is None or (fam.controlnet and fam.max_controlnets >= 1), name
        assert fam.size_multiple >= 1, name
        # its img2img pipeline (the positive controls) is found: a family not in AutoPipelineForImage2Image's mapping
        # names its class, or None where diffusers has none
        assert fam.img2img is None or _img2img_class(fam) is not None, f"step 1: no img2img pipeline for {name}"
        if fam.settings is not None:  # its settings reach the zoo schema without another edit
            assert GenerationSpec.model_fields[name].annotation is fam.settings, name
        # its LoRAs are told from its denoiser's own layers (built from its pipeline's denoiser class) and its ControlNet
        # configs by their class
        if fam.denoiser == "transformer":
            assert denoiser_modules(fam), f"no layers of {name}'s denoiser"
        if fam.video:  # a video family's settings say how many frames (Family.frame_count), and it offers no img2img
            assert fam.settings is not None and "num_frames" in fam.settings.model_fields, f"step 1: video {name}"
            assert fam.img2img is None and not fam.embedding_cache, f"step 1: video {name}"
        if fam.controlnet_model is not None and fam.controlnet_model != "ControlNetModel":
            assert controlnet_family({"_class_name": fam.controlnet_model}) == name, f"step 1: controlnet_family, {name}"
        # the layouts diffusers loads for it and the components its LoRA loader reads, measured by producers
        assert "diffusers" in fam.lora_layouts and fam.lora_components, f"{name}: Family.lora_layouts / lora_components"
        if name != "sd":  # the sd column: tests/e2e/test_lora_producers.py
            assert f'"{name}": ' in producers, f"step 3: no {name} column in tests/e2e/test_lora_producers_families.py"
        assert f"| {name} |" in formats_header + "|", f"step 3/6: no {name} column in docs/zoo.md's LoRA formats table"
        # step 4: its tiny pipeline, and its tiny ControlNet where it has a ControlNet pipeline
        assert name in FAMILY_NAMES, f"step 4: no tiny {name} pipeline (copyscope/demo/tiny_{name}.py)"
        if fam.controlnet:
            assert name in BUILTIN or callable(getattr(_family_module(name), "controlnet", None)), name
        # step 5: its end-to-end audit and, but for the families the recipe says have none yet, a ready zoo
        assert f'"{name}"' in e2e, f"step 5: no tests/e2e/test_families*.py audits {name}"
        if name not in ("sd", "sd3"):  # sd: the shipped demo (model_zoo.yaml); SD3 has none yet
            assert (REPO / "audits" / f"{name}-style-audit.yaml").is_file(), f"step 5: no audits/{name}-style-audit.yaml"
            assert f"`{name}-" in recipe or f"{name}-style-audit.yaml" in recipe, f"step 5: the recipe does not list {name}'s zoo"
        # step 6: README's table of what each family supports
        assert f"`{name}`" in readme_families, f"step 6: README's Pipeline families table does not list {name}"
        # step 6: docs/zoo.md's families section
        assert f"`{name}`" in families_section, f"step 6: docs/zoo.md's families section does not name {name}"
