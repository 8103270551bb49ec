"""Players as objects: one class per kind of add-on player (LoRA, ControlNet, prompt fragment,
IP-Adapter, textual-inversion embedding), plus the base checkpoint.

Each kind knows its zoo section and spec model (the zoo schema is built from the registered kinds:
config.zoo_spec_model), its default names and prompt text, how to check its specs before anything
loads, its identity for cache keys, how to load once into an engine, how to switch on/off on the
loaded pipeline, and what it adds to the pipeline call. The engine loads a base, asks each kind to
switch to the active players, and generates; config, plan, engine and report iterate :data:`KINDS`.
Adding a kind is one module here plus its import below (its :func:`register` runs on import);
the zoo-wide family checks before loading (:func:`check_player_families`) live here too;
docs/ARCHITECTURE.md "Adding a player kind".
"""

from __future__ import annotations

from .kind import KINDS, PlayerKind, register  # noqa: F401

# registration order is player order in a game (existing zoos: ControlNets, LoRAs, prompt fragments)
from . import controlnet, lora, prompt  # noqa: F401,E402
from . import ip_adapter, textual_inversion  # noqa: F401,E402


def kind_of(name: str) -> type[PlayerKind]:
    return KINDS[name]


def check_player_families(zoo) -> dict[str, str]:
    """Every base's family (declared or detected), the scheduler against it, and every add-on player
    against the bases (each kind's ``check_zoo``: a Flux LoRA on an SDXL base, a LoRA whose layers do
    not fit the base, ...), before anything loads. Returns base -> family."""
    from ..families import FAMILIES, base_family

    families = {b.name: base_family(zoo, i).name for i, b in enumerate(zoo.spec.bases)}
    gen = zoo.spec.generation
    controls = zoo.spec.controls
    for name, fam in families.items():
        family = FAMILIES[fam]
        if gen.scheduler is not None and family.flow_matching:
            raise zoo.fail(
                f"scheduler {gen.scheduler!r} does not apply to {family.title} (base {name!r}), which samples "
                "with its flow-matching scheduler; expected scheduler: null", "generation", "scheduler",
            )
        why = family.generation_problem(gen)  # the size multiple, the family's check_generation
        if why:
            raise zoo.fail(f"base {name!r}: {why}", "generation", "resolution")
        # the positive controls run the family's img2img pipeline: skipped where diffusers has none, refused when asked for
        if family.img2img is None and controls.positive and "positive" in controls.model_fields_set:
            raise zoo.fail(
                f"base {name!r} is {family.title}, for which diffusers has no img2img pipeline, so no positive controls "
                "can be made; expected controls.positive: false", "controls", "positive",
            )
        if family.video:
            _check_video(zoo, name, family)
        if family.check_base is not None:  # the family's own checks of a base (Wan2.2's second expert)
            family.check_base(zoo, [b.name for b in zoo.spec.bases].index(name))
    for cls in KINDS.values():
        cls.check_zoo(zoo, families)
    return families


def _check_video(zoo, base: str, family) -> None:
    """What a video family's audit does not define yet, refused before anything loads: set metrics (KID, FD: a
    distribution of videos is not one of frames; docs/metrics.md "Videos"). ControlNets, positive controls,
    IP-Adapters and textual inversion are refused by the family's capability flags, as for an image family."""
    from ..score.metrics.registry import metric_kinds

    for i, name, kind in metric_kinds(zoo.spec.metrics):
        if kind != "per_image":
            raise zoo.fail(
                f"metric {name!r} is a set metric (a distance between distributions of images), not defined for videos "
                f"yet (base {base!r} is {family.title}, a video family); expected per-image metrics only (ssim, phash, "
                "dhash, clip, dreamsim, ...: scored frame by frame)", "metrics", i)


check_lora_fits = check_player_families  # the name the audit calls (the LoRA check is LoraPlayer.check_zoo)
