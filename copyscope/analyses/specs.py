"""Zoo-file sections of the prompt-level analyses: ``reward_split:`` and ``imitation:``.

Both sections are optional; ``copyscope reward-split`` and ``copyscope imitation`` read them (see
docs/analyses.md). They live here, not in config.py, so that config.py only names them in
``ZooSpec``. Cross-references (work names, add-on names, base names) are checked when an analysis
runs, with the file:line of the offending key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

# Numbers as in copyscope.config (which imports this module): no booleans, no NaN or infinity
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]

DEFAULT_LABELS = ["Artwork", "Digital Artwork", "Artwork from the public domain"]
"""Casper et al.'s three 'default' labels: a generic style instead of a particular artist."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def _distinct(values: list[str], what: str) -> list[str]:
    seen = set()
    for v in values:
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{what} must be non-empty strings")
        if v in seen:
            raise ValueError(f"{what} must be distinct; {v!r} is repeated")
        seen.add(v)
    return values


class RecognisabilitySpec(_Strict):
    """Which images of a reward split count (an artist must be recognisable in them).

    ``zero_shot``: CLIP zero-shot classification of the full-prompt image among the artists' labels
    and the default labels; with ``threshold: null`` an image is kept when its most probable label is
    one of the artists, with a number when some artist's label has probability >= threshold.
    ``similarity``: kept when the image's similarity (the split's metric) to some artist's work is
    >= threshold (required). ``none``: keep every image.
    """

    method: Literal["zero_shot", "similarity", "none"] = "zero_shot"
    threshold: Float | None = Field(None, ge=-1e6, le=1e6)

    @model_validator(mode="after")
    def _threshold(self):
        if self.method == "similarity" and self.threshold is None:
            raise ValueError("method 'similarity' needs a 'threshold' (in units of the split's metric)")
        if self.method == "zero_shot" and self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError("a zero-shot threshold is a probability in [0, 1]")
        return self


class RewardSplitSpec(_Strict):
    """Glinsky & Sokolsky's reward split between the artists (prompt players) and the model."""

    metric: str | dict[str, Any] = Field("clip", description="any per-image metric (name or {name: ..., options})")
    works: dict[str, str] = Field({}, description="prompt player -> reference work (default: the work of the same name)")
    labels: dict[str, str] = Field({}, description="prompt player -> zero-shot label (default: the fragment's text)")
    default_labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LABELS))
    recognisability: RecognisabilitySpec = RecognisabilitySpec()
    model: Literal["empty_coalition", "veto_player"] = Field(
        "empty_coalition",
        description="empty_coalition: the model earns v(empty); veto_player: the model is a player without which the worth is 0",
    )

    _labels = field_validator("default_labels")(lambda v: _distinct(v, "default_labels"))


class ImitationArtist(_Strict):
    name: str = Field(description="the name put in the prompt and in the label")
    work: str | None = Field(None, description="reference work by this artist (for the matching test)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("an artist needs a non-empty name")
        return v


class ImitationSpec(_Strict):
    """Casper et al.'s imitation test: can the base imitate each artist at all?"""

    artists: list[ImitationArtist] = Field(min_length=1)
    random_names: list[str] = Field([], description="random names for the baseline (same procedure)")
    n_images: Int = Field(10, ge=1, le=100_000, description="images per artist (seeds first_seed .. first_seed + n - 1)")
    first_seed: Int = Field(0, ge=0, le=2**63 - 100_001)
    template: str = "Artwork from {name}"
    default_labels: list[str] = Field(default_factory=lambda: list(DEFAULT_LABELS))
    base: str | None = Field(None, description="base to test (default: the first base)")
    addons: list[str] = Field([], description="LoRAs / ControlNets switched on (default: none, the plain base)")
    alpha: Float = Field(0.05, gt=0, lt=1)

    @field_validator("artists", mode="before")
    @classmethod
    def _shorthand(cls, v):
        # a bare string is an artist without a work
        if isinstance(v, list):
            return [{"name": a} if isinstance(a, str) else a for a in v]
        return v

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        if v.count("{name}") != 1:
            raise ValueError("template must contain '{name}' exactly once, e.g. 'Artwork from {name}'")
        return v

    _labels = field_validator("default_labels")(lambda v: _distinct(v, "default_labels"))

    @model_validator(mode="after")
    def _names(self):
        names = [a.name for a in self.artists]
        _distinct(names, "artist names")
        _distinct(self.random_names, "random_names")
        clash = sorted(set(names) & set(self.random_names))
        if clash:
            raise ValueError(f"random_names must not repeat an artist: {clash[0]!r}")
        return self
