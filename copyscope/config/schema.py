"""The zoo file's schema: shared field types, bases, references, prompts, the estimator, and the
zoo model itself. Player sections (``loras:``, ``controlnets:``, ...) are not written here: each
registered player kind (:mod:`copyscope.players`) declares its zoo key and spec model, and
:func:`zoo_spec_model` builds the zoo model from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..controls.worth import DEFAULT_WORTH, WORTHS
from ..analyses.specs import ImitationSpec, RewardSplitSpec
from ..common.hubids import HUB_ID_RE, HUB_REPO_RE, is_hub_id  # noqa: F401 (re-exported)
from ..estimate.shapley.registry import estimator_names
from .base import (  # noqa: F401 (re-exported)
    IMAGE_SUFFIXES, PICKLE_SUFFIXES, Float, Int, NamedSpec, Strict_, check_name, stem,
)
from .generation import GenerationSpec

# Bounds checked before anything loads (docs/robustness.md).
MAX_BUDGET = 10_000_000
MAX_BOOTSTRAP = 1_000_000

class BaseSpec(NamedSpec):
    """A base checkpoint: each base is its own game."""

    model: str = Field(description="hub id, local diffusers folder, or single .safetensors file")
    revision: str | None = None
    variant: str | None = None
    config: str | None = Field(None, description="diffusers config (hub id or folder) for a single-file checkpoint")
    family: str | None = Field(None, description="sd, sdxl, sd3, flux, qwenimage, zimage, chroma, sana, flux2 or "
                               "lumina2; read from "
                               "model_index.json when not given")

    @field_validator("family")
    @classmethod
    def _family(cls, v):
        from ..families import canonical_family, family_names

        if v is not None and canonical_family(v) is None:
            raise ValueError(f"unknown family {v!r}; expected one of {family_names()}")
        return canonical_family(v) if v is not None else None


class ReferenceSpec(Strict_):
    """A protected work: one or more image files or folders of images."""

    name: str
    paths: list[str] = Field(min_length=1)

    _name = field_validator("name")(check_name)


class BackgroundSpec(Strict_):
    """Generic images every generated image is also scored against (docs/metrics.md "Controls"): the worth of a
    coalition is then how much closer its images are to the work than to these."""

    builtin: bool = Field(True, description="include the builtin generic set (scikit-image's bundled photographs)")
    paths: list[str] = Field([], description="image files or folders of your own generic images (e.g. other works of the genre)")


class ControlsSpec(Strict_):
    """Controls run in the audit's own pipeline (docs/metrics.md "Controls"): evidence that the metrics detect
    copying here, and the rule that picks the headline metric from it."""

    positive: bool = Field(True, description="img2img of each work through the base at `strengths`: known copies, "
                           "beside the same img2img of background images (known non-copies)")
    strengths: list[Float] = Field([0.3, 0.5, 0.7, 0.9], min_length=1, max_length=16,
                                   description="img2img strengths (0: the work itself, 1: nothing of it kept)")
    seeds: Int | None = Field(None, ge=1, le=1024, description="seeds per control (default: up to 4 of the audit's seeds)")
    negatives: Int = Field(3, ge=1, le=64, description="background images pushed through the same img2img")
    headline: Literal["auto", "fixed"] = Field(
        "auto", description="auto: the benchmark's preferred admitted metric whose controls are not blind in this audit, "
        "unless another's separate copies clearly better; fixed: the global preference (copyscope.report.headline)")
    placebo: bool | Literal["swap"] = Field(
        False, description="true: add a placebo LoRA player (a LoRA as strong as a real one, with no content; twice the "
        "coalitions); swap: each LoRA against its own placebo put in its place, alone and in the full pipeline (two more "
        "coalitions per LoRA)")
    placebo_from: str | None = Field(None, description="placebo: true: the LoRA whose per-layer spectrum the placebo "
                                     "copies (default: the first)")

    @field_validator("strengths")
    @classmethod
    def _strengths(cls, v):
        if any(not 0.0 <= x <= 1.0 for x in v):
            raise ValueError("img2img strengths lie in [0, 1]")
        if len(set(v)) != len(v):
            raise ValueError("strengths are listed twice")
        return sorted(v)


class PromptSpec(NamedSpec):
    text: str
    negative: str = ""
    work: str | None = Field(None, description="the work this prompt targets (for per-work conditioning)")


class EstimatorSpec(Strict_):
    method: Literal[estimator_names("shapley")] = "auto"  # the registry's names (copyscope/estimate/shapley/registry.py)
    budget: Int | None = Field(None, ge=2, le=MAX_BUDGET, description="distinct coalitions a sampled estimator may evaluate")
    intervals: Literal["jackknife", "bootstrap"] = Field(
        "jackknife",
        description="jackknife: leave-one-seed-out, Student-t intervals and tests (calibrated, docs/estimation.md); "
        "bootstrap: percentile bootstrap over seeds (the older method: too narrow at the seed counts audits use)",
    )
    bootstrap: Int = Field(500, ge=0, le=MAX_BOOTSTRAP,
                           description="bootstrap resamples over seeds with intervals: bootstrap (0: no intervals)")
    confidence: Float = Field(0.95, gt=0, lt=1)
    significance: Literal["both", "distribution_free", "t"] = Field(
        "both",
        description="what a significance claim needs (docs/estimation.md): both (default): the t test AND the "
        "distribution-free betting test, valid whatever the shape of the seed noise; distribution_free: the betting "
        "test alone; t: the skew-corrected t test alone (calibrated for roughly symmetric seed noise only)",
    )
    base: Literal["context", "player"] = "context"
    seed: Int = Field(0, ge=0, le=2**32 - 1)  # numpy's SeedSequence takes any int >= 0; 32 bits is plenty


class _ZooHead(Strict_):
    """The keys before the player sections (field order is the order of the resolved zoo JSON and of
    validation errors, so it is kept as it was when the sections were written here)."""

    name: str = "audit"
    output: str | None = None
    cache: str | None = None
    bases: list[BaseSpec] = Field(min_length=1)

    _name = field_validator("name")(check_name)


# the keys after the player sections
_ZOO_TAIL: dict[str, Any] = {
    "references": (list[ReferenceSpec], Field(min_length=1)),
    "prompts": (list[PromptSpec], Field(min_length=1)),
    "generation": (GenerationSpec, GenerationSpec()),
    "metrics": (list[str | dict[str, Any]] | None, None),
    "backbones": (dict[str, str], {}),
    "aggregate": (Literal["max_mean", "mean_mean", "max_max"], "max_mean"),
    # the worth of a coalition: raw similarity to the work, or specific to it against the background
    "worth": (Literal[WORTHS], DEFAULT_WORTH),
    "background": (BackgroundSpec, BackgroundSpec()),
    "controls": (ControlsSpec, ControlsSpec()),
    "estimator": (EstimatorSpec, EstimatorSpec()),
    "reward_split": (RewardSplitSpec | None, None),  # `copyscope reward-split` (docs/analyses.md)
    "imitation": (ImitationSpec | None, None),  # `copyscope imitation` (docs/analyses.md)
}
