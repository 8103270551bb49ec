"""What the registered player kinds (:mod:`copyscope.players`) add to the config: the zoo model with one
section per kind (:func:`zoo_spec_model`) and the checks after validation (default names, uniqueness,
cross-references). Above the player kinds: the kinds import only the config's leaves (:mod:`.base`,
:mod:`.zoo`), never this module."""

from __future__ import annotations

from pydantic import BaseModel, create_model

from .base import stem
from .schema import _ZOO_TAIL, _ZooHead
from .zoo import _PLACEHOLDER_RE, Zoo

_models: dict[tuple, type[BaseModel]] = {}


def zoo_spec_model() -> type[BaseModel]:
    """The zoo model for the player kinds registered now: one ``list[<kind's spec>]`` section per kind,
    in registration order, between ``bases`` and ``references``. Built once per set of kinds."""
    from ..players import KINDS  # the package registers the built-in kinds

    sections = tuple((cls.section, cls.spec_model) for cls in KINDS.values())
    model = _models.get(sections)
    if model is None:
        players = {section: (list[spec], []) for section, spec in sections}
        model = create_model("ZooSpec", __base__=_ZooHead, **players, **_ZOO_TAIL)
        _models[sections] = model
    return model


def fill_names_and_check(zoo: Zoo) -> None:
    """Default names, uniqueness, and cross-references (prompt.work, placeholders, and each player
    kind's own: a ControlNet's per_prompt keys, ...)."""
    from ..players import KINDS  # the package registers the built-in kinds

    s = zoo.spec
    for base in s.bases:
        base.name = base.name or stem(base.model)
    for cls in KINDS.values():
        for spec in cls.specs(zoo):
            cls.fill_defaults(spec)
    for i, prompt in enumerate(s.prompts):
        prompt.name = prompt.name or f"prompt{i}"

    _unique(zoo, "bases", [b.name for b in s.bases])
    _unique(zoo, "players", [spec.name for cls in KINDS.values() for spec in cls.specs(zoo)],
            sections=tuple(cls.section for cls in KINDS.values()))
    _unique(zoo, "references", [r.name for r in s.references])
    _unique(zoo, "prompts", [p.name for p in s.prompts])

    works = {r.name for r in s.references}
    for i, p in enumerate(s.prompts):
        if p.work is not None and p.work not in works:
            raise zoo.fail(f"unknown work {p.work!r}; references are {sorted(works)}", "prompts", i, "work")
    for cls in KINDS.values():
        cls.check_references(zoo)
    fragments = {spec.name for cls in KINDS.values() for spec in cls.specs(zoo) if cls.prompt_fragment(spec) is not None}
    for i, p in enumerate(s.prompts):
        for field in _PLACEHOLDER_RE.findall(p.text):
            if field not in fragments:
                raise zoo.fail(
                    f"placeholder {{{field}}} names no prompt player or textual inversion; they are {sorted(fragments)}",
                    "prompts", i, "text"
                )
    for key, value in s.backbones.items():
        if not isinstance(value, str):
            raise zoo.fail("expected a hub id or a local path", "backbones", key)


def _unique(zoo: Zoo, what: str, names: list[str], sections: tuple[str, ...] | None = None) -> None:
    seen: dict[str, int] = {}
    for idx, name in enumerate(names):
        if name in seen:
            loc: tuple = (what, idx)
            if sections:  # player names span several sections: point at the second occurrence
                for section in sections:
                    size = len(getattr(zoo.spec, section))
                    if idx < size:
                        loc = (section, idx)
                        break
                    idx -= size
            raise zoo.fail(f"duplicate name {name!r}: names must be unique (set 'name:' explicitly)", *loc, "name")
        seen[name] = idx
