"""The interface every player kind implements (see copyscope/players/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

KINDS: dict[str, type["PlayerKind"]] = {}


def register(cls: type["PlayerKind"]) -> type["PlayerKind"]:
    """Register a kind: its zoo section joins the zoo schema (config.zoo_spec_model), its players
    join every game (plan) and engine, in registration order."""
    for other in KINDS.values():
        if other is not cls and other.kind != cls.kind and other.section == cls.section:
            raise ValueError(f"player kind {cls.kind!r}: zoo section {cls.section!r} is taken by {other.kind!r}")
    KINDS[cls.kind] = cls
    return cls


def unregister(kind: str) -> None:
    """Remove a kind (tests that register a toy kind)."""
    KINDS.pop(kind, None)


class PlayerKind:
    """One add-on player of one engine (one base). Class attributes describe the kind."""

    kind: ClassVar[str]  # plan/report kind name ("lora")
    section: ClassVar[str]  # zoo file section holding its specs ("loras")
    spec_model: ClassVar[type]  # pydantic model of one entry of the section (config.NamedSpec or Strict_)
    label: ClassVar[str]  # human name ("LoRA")
    # image-key field listing the active players of this kind; None when the kind changes the key
    # otherwise (a prompt fragment changes the prompt text)
    key_group: ClassVar[str | None] = None
    # the group is in every key, even empty (kinds whose keys predate player classes: keeps old caches valid)
    key_group_always: ClassVar[bool] = False
    has_model: ClassVar[bool] = True  # has a model file / hub id (checked by the audit's source checks)
    switch_cost: ClassVar[str] = "free"
    # switching it on or off changes the denoiser's traced graph (torch.compile recompiles per active set)
    changes_denoiser_graph: ClassVar[bool] = False
    # the spec field that scales the player's effect (a LoRA's weight, a ControlNet's conditioning scale), part of
    # its image-key entry; None: the kind has no strength (copyscope dose refuses it)
    strength_field: ClassVar[str | None] = None

    @dataclass
    class State:
        """What the kind keeps on one engine across its players (a subclass declares its own fields, e.g. the
        ControlNet pipelines per active set). The engine makes one per kind (``engine.state(cls)``) and a fresh
        one on release; per-player state lives on the player objects."""

    def __init__(self, engine, spec, index: int):
        self.engine = engine
        self.spec = spec
        self.index = index
        self.name: str = spec.name
        self.loc = (self.section, index)
        self.source = None
        if self.has_model:
            from ..modelfiles.sources import model_source

            self.source = model_source(engine.zoo, spec.model, getattr(spec, "revision", None), self.loc, engine.allow_pickle)

    # -- the zoo file (config) --------------------------------------------------------------------
    @classmethod
    def specs(cls, zoo) -> list:
        return list(getattr(zoo.spec, cls.section))

    @classmethod
    def fill_defaults(cls, spec) -> None:
        """After validation: the default name (the stem of ``weight_name`` if given, else of ``model``)."""
        from ..config.base import stem

        if getattr(spec, "name", None) is None:
            source = getattr(spec, "weight_name", None) or getattr(spec, "model", None)
            spec.name = stem(source) if source else None

    @classmethod
    def check_references(cls, zoo) -> None:
        """After names are filled in: keys of the section that name prompts, works, ... (no file access)."""

    @classmethod
    def prompt_fragment(cls, spec) -> str | None:
        """Text this player adds to the prompt when active (a ``{name}`` placeholder marks where), or None."""
        return None

    # -- before anything loads ------------------------------------------------------------------

    @classmethod
    def check_zoo(cls, zoo, base_families: dict[str, str]) -> None:
        """Zoo-wide checks before loading; ``base_families``: base name -> family name. By default:
        every player's :meth:`families` against every base's family."""
        for i, spec in enumerate(cls.specs(zoo)):
            fits = cls.families(zoo, spec)
            if fits is None:
                continue
            for base, fam in base_families.items():
                if fam not in fits:
                    message, *key = cls.family_mismatch(spec, base, fam, fits)
                    raise zoo.fail(message, cls.section, i, *key)

    @classmethod
    def families(cls, zoo, spec) -> frozenset[str] | None:
        """The base families this player works with, from its files before loading (None: any, or
        cannot tell)."""
        return None

    @classmethod
    def family_mismatch(cls, spec, base: str, fam: str, fits) -> tuple:
        """(message, key under the player's entry...) for a player made for other families than the base's."""
        from ..families import FAMILIES

        titles = [FAMILIES[f].title for f in sorted(fits)]  # "Chroma or Flux.1", "Chroma, Flux.1, Qwen-Image or ..."
        made_for = " or ".join([", ".join(titles[:-1]), titles[-1]] if len(titles) > 1 else titles)
        return (f"{cls.label} {spec.name!r} is a {made_for} {cls.label} but base {base!r} is {FAMILIES[fam].title} "
                f"(family {fam}); expected a {cls.label} trained for the base's family", "model")

    # -- identity -------------------------------------------------------------------------------
    def identity(self) -> dict:
        return self.source.identity() if self.source is not None else {}

    def key_entry(self, item) -> dict:
        """This player's entry in the image key's group when it is active."""
        return {"id": self.engine.identities()[self.key_group][self.name]}

    # -- life cycle on a loaded pipeline -----------------------------------------------------------
    def load(self, pipe) -> None:
        """Load once into the engine's pipeline (named adapter, model object, ...)."""

    @classmethod
    def after_load(cls, engine, players: list["PlayerKind"]) -> None:
        """After every player of the kind has loaded: leave them all switched off."""

    @classmethod
    def switch(cls, engine, active: list["PlayerKind"], players: list["PlayerKind"]) -> None:
        """Attach the ``active`` players of this kind and detach the others."""

    @classmethod
    def route(cls, engine, active: list["PlayerKind"], pipe):
        """The pipeline object to call when these players are active (default: unchanged)."""
        return pipe

    @classmethod
    def call_kwargs(cls, engine, active: list["PlayerKind"], items, kwargs: dict[str, Any]) -> None:
        """Add this kind's arguments to the pipeline call of a batch."""

    def touches_text_encoder(self) -> bool:
        """True when, active, it changes prompt embeddings for the same prompt text."""
        return False

    def release(self) -> None:
        """Drop what this player loaded (the engine releases its pipeline)."""
