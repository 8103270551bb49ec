"""Prompt fragments as players: a coalition's prompt holds its members' fragments (config.render_prompt).
Nothing loads; the prompt text, part of every image key, carries the player."""

from __future__ import annotations

from pydantic import field_validator

from ..config.base import Strict_, check_name
from .kind import PlayerKind, register


class PromptPlayerSpec(Strict_):
    """A prompt fragment as a player: a coalition's prompt contains the fragments of its members."""

    name: str
    text: str

    _name = field_validator("name")(check_name)


@register
class PromptPlayer(PlayerKind):
    kind = "prompt"
    section = "prompt_players"
    spec_model = PromptPlayerSpec
    label = "prompt fragment"
    has_model = False
    switch_cost = "free (the prompt text changes)"

    @classmethod
    def prompt_fragment(cls, spec) -> str:
        return spec.text
