"""Prompt fragments as players: a coalition's prompt holds its members' fragments (config.render_prompt).
Nothing loads; the prompt text, part of every image key, carries the player."""

from __future__ import annotations

from .kind import PlayerKind, register


@register
class PromptPlayer(PlayerKind):
    kind = "prompt"
    section = "prompt_players"
    label = "prompt fragment"
    has_model = False
    switch_cost = "free (the prompt text changes)"
