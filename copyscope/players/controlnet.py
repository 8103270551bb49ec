"""ControlNets as players: each model is loaded once; a coalition with ControlNets runs the base
family's ControlNet pipeline built from the same module objects as the plain pipeline (one per
distinct set of active ControlNets), a coalition without any runs the plain pipeline and pays no
ControlNet forward pass."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from ..common.inputs import image_sha256
from ..config.base import MAX_WEIGHT, Float, NamedSpec, Strict_
from .kind import PlayerKind, register


class ConditioningSpec(Strict_):
    """Where a ControlNet's conditioning image comes from: a ready-made file (``image``, ``per_prompt``,
    ``per_work``), or a map a detector computes from a work (``from_work``) or an image file
    (``from_image``): see copyscope.conditioning."""

    image: str | None = None
    per_prompt: dict[str, str] | None = None
    per_work: dict[str, str] | None = None
    from_work: str | None = Field(None, description="a reference work whose image the detector reads")
    from_image: str | None = Field(None, description="an image file the detector reads")
    detector: str | None = Field(None, description="canny, depth, pseudo_depth, or a controlnet-aux annotator id")
    model: str | None = Field(None, description="the detector's weights: hub id or local folder")
    revision: str | None = None
    params: dict[str, int | float | bool | str | None] = {}
    reference: int | str = Field(0, description="which image of from_work: index, file name, or 'each' (one map per image)")

    @field_validator("reference", mode="before")
    @classmethod
    def _reference(cls, v):
        # pydantic would read `true` as index 1 (the second image) and 1.0 as 1
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError(f"expected an image index (an integer), a file name or 'each', got {v!r}")
        return v

    @model_validator(mode="after")
    def _exactly_one(self):
        sources = ("image", "per_prompt", "per_work", "from_work", "from_image")
        given = [k for k in sources if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'image', 'per_prompt', 'per_work', 'from_work' or 'from_image'")
        computed = given[0] in ("from_work", "from_image")
        if computed and self.detector is None:
            raise ValueError(f"'{given[0]}' needs a 'detector' (canny, depth, pseudo_depth, ...)")
        if not computed:
            extra = [k for k in ("detector", "model", "revision") if getattr(self, k) is not None] + (["params"] if self.params else [])
            if extra:
                raise ValueError(f"'{extra[0]}' only goes with 'from_work' or 'from_image'")
        if computed:
            from ..conditioning import check_detector

            check_detector(self.detector, self.params, self.model)
        if "reference" in self.model_fields_set and given[0] != "from_work":
            raise ValueError("'reference' only goes with 'from_work'")
        return self


class ControlNetSpec(NamedSpec):
    model: str
    subfolder: str = Field("", description="the ControlNet's folder inside 'model' (a pipeline repo's controlnet/)")
    revision: str | None = None
    variant: str | None = None
    config: str | None = Field(None, description="diffusers ControlNet config (hub id or folder) for a single-file ControlNet")
    conditioning_scale: Float = Field(1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT)
    conditioning: ConditioningSpec


@register
class ControlNetPlayer(PlayerKind):
    kind = "controlnet"
    changes_denoiser_graph = True  # residuals added inside the denoiser
    section = "controlnets"
    spec_model = ControlNetSpec
    label = "ControlNet"
    key_group = "controlnets"
    key_group_always = True
    switch_cost = "free: the ControlNet pipeline over the same modules is chosen per coalition"
    strength_field = "conditioning_scale"
    model: Any = None  # the loaded ControlNet model (load), dropped on release

    @dataclass
    class State(PlayerKind.State):
        # the ControlNet pipeline of each active set (player names), built over the base's modules
        pipes: dict[tuple[str, ...], Any] = field(default_factory=dict)

    @classmethod
    def check_references(cls, zoo):
        s = zoo.spec
        works = {r.name for r in s.references}
        prompts = {p.name for p in s.prompts}
        for i, cn in enumerate(cls.specs(zoo)):
            c = cn.conditioning
            if c.per_prompt is not None:
                for key in c.per_prompt:
                    if key not in prompts:
                        raise zoo.fail(f"unknown prompt {key!r}; prompts are {sorted(prompts)}",
                                       "controlnets", i, "conditioning", "per_prompt", key)
                missing = prompts - set(c.per_prompt)
                if missing:
                    raise zoo.fail(f"no conditioning image for prompt(s) {sorted(missing)}", "controlnets", i, "conditioning", "per_prompt")
            if c.from_work == "{work}":  # each prompt's own work
                for j, p in enumerate(s.prompts):
                    if p.work is None:
                        raise zoo.fail("from_work: '{work}' needs every prompt to name its 'work'", "prompts", j)
            elif c.from_work is not None and c.from_work not in works:
                raise zoo.fail(f"unknown work {c.from_work!r}; references are {sorted(works)}",
                               "controlnets", i, "conditioning", "from_work")
            if c.per_work is not None:
                for key in c.per_work:
                    if key not in works:
                        raise zoo.fail(f"unknown work {key!r}; references are {sorted(works)}",
                                       "controlnets", i, "conditioning", "per_work", key)
                for j, p in enumerate(s.prompts):
                    if p.work is None:
                        raise zoo.fail("per_work conditioning needs every prompt to name its 'work'", "prompts", j)
                    if p.work not in c.per_work:
                        raise zoo.fail(f"no conditioning image for work {p.work!r}", "controlnets", i, "conditioning", "per_work")

    @classmethod
    def check_zoo(cls, zoo, base_families):
        """A base of a family for which diffusers has no ControlNet pipeline refuses every ControlNet, and one whose
        ControlNet pipeline takes fewer ControlNets at once than the zoo lists (``Family.max_controlnets``: Qwen-Image,
        Z-Image, Sana) refuses the extra ones, in one line."""
        from ..families import FAMILIES

        specs = cls.specs(zoo)
        if specs:
            for base, fam in base_families.items():
                family = FAMILIES[fam]
                if not family.controlnet:
                    raise zoo.fail(f"base {base!r} is {family.title}, for which diffusers has no ControlNet pipeline; "
                                   "expected no controlnets with this base", cls.section, 0)
                if family.max_controlnets is not None and len(specs) > family.max_controlnets:
                    raise zoo.fail(f"base {base!r} is {family.title}, whose diffusers ControlNet pipeline takes at most "
                                   f"{family.max_controlnets} ControlNet(s) at once, but the zoo lists {len(specs)} (the "
                                   f"coalition of all of them could not run); expected at most {family.max_controlnets} "
                                   "controlnets with this base (one zoo file per ControlNet)", cls.section,
                                   family.max_controlnets)
        super().check_zoo(zoo, base_families)

    @classmethod
    def families(cls, zoo, spec):
        from ..families import controlnet_family

        path = zoo.resolve_path(spec.model)
        config = path / spec.subfolder / "config.json" if path.is_dir() else None
        if config is None or not config.is_file():
            return None
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except ValueError as exc:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
            raise zoo.fail(f"{config} is not a JSON config ({str(exc).splitlines()[0][:120]}); expected the ControlNet's "
                           "diffusers config.json", cls.section, cls.specs(zoo).index(spec), "model") from None
        if not isinstance(data, dict):
            raise zoo.fail(f"{config} holds a JSON {type(data).__name__}, not an object; expected the ControlNet's diffusers "
                           "config.json", cls.section, cls.specs(zoo).index(spec), "model")
        fam = controlnet_family(data)
        return frozenset({fam}) if fam is not None else None

    def identity(self) -> dict:
        ident = super().identity()
        return {**ident, "subfolder": self.spec.subfolder} if self.spec.subfolder else ident

    def conditioning_path(self, item) -> Path:
        c, zoo = self.spec.conditioning, self.engine.zoo
        if c.detector is not None:  # a map computed from a work or image (copyscope.conditioning)
            return self._conditioning_map(item).path
        value = c.image if c.image is not None else (c.per_prompt[item.prompt] if c.per_prompt is not None else c.per_work[item.work])
        path = zoo.resolve_path(value)
        if not path.is_file():
            raise zoo.fail(f"conditioning image {value!r} not found (looked at {path})", "controlnets", self.index, "conditioning")
        return path

    def _conditioning_map(self, item):
        return self.engine.conditioning.entry(self.index, getattr(item, "control", 0), item.work)

    def key_entry(self, item) -> dict:
        entry = {
            "id": self.engine.identities()["controlnets"][self.name],
            "scale": self.spec.conditioning_scale,
            "image_sha256": image_sha256(self.conditioning_path(item)),  # file + EXIF orientation
        }
        if self.spec.conditioning.detector is not None:
            # a computed map: its key names detector, weights, parameters and source
            entry["map_key"] = self._conditioning_map(item).key
        return entry

    def load(self, pipe) -> None:
        import diffusers

        from ..modelfiles.sources import hub_error
        from ..modelfiles.file_checks import config_arg

        eng, src = self.engine, self.source
        model_cls = getattr(diffusers, eng.family.controlnet_model)
        try:
            if src.local is not None and src.local.is_file():
                model = model_cls.from_single_file(
                    str(src.local), config=config_arg(eng.zoo, self.spec.config), torch_dtype=eng.dtype
                )
            else:
                model = model_cls.from_pretrained(
                    str(src.local) if src.local is not None else src.value,
                    **({"subfolder": self.spec.subfolder} if self.spec.subfolder else {}),
                    revision=self.spec.revision,
                    variant=self.spec.variant,
                    torch_dtype=eng.dtype,
                    use_safetensors=not eng.allow_pickle,
                )
        except Exception as exc:  # noqa: BLE001 - diffusers/hub raise many kinds; the user needs one line
            raise hub_error(eng.zoo, exc, src, self.loc) from None
        self.model = model.to(eng.device)

    def release(self) -> None:
        self.model = None

    @classmethod
    def route(cls, engine, active, pipe):
        if not active:
            return pipe
        key = tuple(p.name for p in active)
        pipes = engine.state(cls).pipes  # one ControlNet pipeline per active set, sharing the base's modules
        if key not in pipes:
            import diffusers

            pipe_cls = getattr(diffusers, engine.family.controlnet_pipeline)
            accepted = inspect.signature(pipe_cls.__init__).parameters
            models = [p.model for p in active]
            parts = {k: v for k, v in pipe.components.items() if k in accepted and k != "controlnet"}
            extra = {k: v for k, v in engine.family.load_kwargs.items() if k in accepted and k != "safety_checker"}
            p = pipe_cls(**parts, **extra, controlnet=models[0] if len(models) == 1 else models)
            p.set_progress_bar_config(disable=True)
            pipes[key] = p
        return pipes[key]

    @classmethod
    def call_kwargs(cls, engine, active, items, kwargs):
        if not active:
            return
        from ..modelfiles.sources import load_control

        h, w = engine.gen.size
        images = [[load_control(p.conditioning_path(i), w, h) for i in items] for p in active]
        scales = [p.spec.conditioning_scale for p in active]
        kwargs[engine.family.control_arg] = images[0] if len(active) == 1 else images
        kwargs["controlnet_conditioning_scale"] = scales[0] if len(active) == 1 else scales
