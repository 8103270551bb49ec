"""Players as objects: one class per kind of add-on player (LoRA, ControlNet, prompt fragment,
IP-Adapter, textual-inversion embedding), plus the base checkpoint.

Each kind knows its zoo section and spec model (the zoo schema is built from the registered kinds:
config.zoo_spec_model), its default names and prompt text, how to check its specs before anything
loads, its identity for cache keys, how to load once into an engine, how to switch on/off on the
loaded pipeline, and what it adds to the pipeline call. The engine loads a base, asks each kind to
switch to the active players, and generates; config, plan, engine and report iterate :data:`KINDS`.
Adding a kind is one module here plus its import below (its :func:`register` runs on import);
docs/ARCHITECTURE.md "Adding a player kind".
"""

from __future__ import annotations

from .kind import KINDS, PlayerKind, register  # noqa: F401

# registration order is player order in a game (existing zoos: ControlNets, LoRAs, prompt fragments)
from . import controlnet, lora, prompt  # noqa: F401,E402
from . import ip_adapter, textual_inversion  # noqa: F401,E402


def kind_of(name: str) -> type[PlayerKind]:
    return KINDS[name]
