"""ControlNets as players: each model is loaded once; a coalition with ControlNets runs the base
family's ControlNet pipeline built from the same module objects as the plain pipeline (one per
distinct set of active ControlNets), a coalition without any runs the plain pipeline and pays no
ControlNet forward pass."""

from __future__ import annotations

import inspect
import json

from ..cache import file_sha256
from .kind import PlayerKind, register


@register
class ControlNetPlayer(PlayerKind):
    kind = "controlnet"
    section = "controlnets"
    label = "ControlNet"
    key_group = "controlnets"
    key_group_always = True
    switch_cost = "free: the ControlNet pipeline over the same modules is chosen per coalition"

    @classmethod
    def check_zoo(cls, zoo, base_families):
        from ..families import FAMILIES, controlnet_family

        for i, cn in enumerate(cls.specs(zoo)):
            path = zoo.resolve_path(cn.model)
            config = path / "config.json" if path.is_dir() else None
            if config is None or not config.is_file():
                continue
            try:
                fam = controlnet_family(json.loads(config.read_text(encoding="utf-8")))
            except ValueError:
                continue
            for base, base_fam in base_families.items():
                if fam is not None and fam != base_fam:
                    raise zoo.fail(
                        f"ControlNet {cn.name!r} is a {FAMILIES[fam].title} ControlNet but base {base!r} is "
                        f"{FAMILIES[base_fam].title} (family {base_fam}); expected a ControlNet trained for the base's family",
                        cls.section, i, "model",
                    )

    def identity(self) -> dict:
        from ..file_checks import load_identity

        return {**super().identity(), **load_identity(self.engine.zoo, self.spec)}

    def key_entry(self, item) -> dict:
        eng = self.engine
        entry = {
            "id": eng.identities()["controlnets"][self.name],
            "scale": self.spec.conditioning_scale,
            "image_sha256": file_sha256(eng.conditioning_path(self.spec, item)),
        }
        if self.spec.conditioning.detector is not None:
            # a computed map: its key names detector, weights, parameters and source
            entry["map_key"] = eng._conditioning_map(self.spec, item).key
        return entry

    def load(self, pipe) -> None:
        import diffusers

        from ..engine import _hub_error
        from ..file_checks import config_arg

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
                    revision=self.spec.revision,
                    variant=self.spec.variant,
                    torch_dtype=eng.dtype,
                    use_safetensors=not eng.allow_pickle,
                )
        except Exception as exc:
            raise _hub_error(eng.zoo, exc, src, self.loc) from None
        eng._cn_models[self.name] = model.to(eng.device)

    @classmethod
    def route(cls, engine, active, pipe):
        if not active:
            return pipe
        key = tuple(p.name for p in active)
        if key not in engine._cn_pipes:
            import diffusers

            pipe_cls = getattr(diffusers, engine.family.controlnet_pipeline)
            accepted = inspect.signature(pipe_cls.__init__).parameters
            models = [engine._cn_models[n] for n in key]
            parts = {k: v for k, v in pipe.components.items() if k in accepted and k != "controlnet"}
            extra = {k: v for k, v in engine.family.load_kwargs.items() if k in accepted and k != "safety_checker"}
            p = pipe_cls(**parts, **extra, controlnet=models[0] if len(models) == 1 else models)
            p.set_progress_bar_config(disable=True)
            engine._cn_pipes[key] = p
        return engine._cn_pipes[key]

    @classmethod
    def call_kwargs(cls, engine, active, items, kwargs):
        if not active:
            return
        from ..engine import _load_control

        h, w = engine.gen.size
        images = [[_load_control(engine.conditioning_path(p.spec, i), w, h) for i in items] for p in active]
        scales = [p.spec.conditioning_scale for p in active]
        kwargs[engine.family.control_arg] = images[0] if len(active) == 1 else images
        kwargs["controlnet_conditioning_scale"] = scales[0] if len(active) == 1 else scales
