"""LoRAs as players: each is loaded once as a named adapter; a coalition is switched on with
``set_adapters`` (its members at their weights) or ``disable_lora`` (none), never a reload."""

from __future__ import annotations

from .kind import PlayerKind, register


@register
class LoraPlayer(PlayerKind):
    kind = "lora"
    section = "loras"
    label = "LoRA"
    key_group = "loras"
    key_group_always = True
    switch_cost = "set_adapters / disable_lora: milliseconds, no reload"

    @classmethod
    def check_zoo(cls, zoo, base_families):
        from ..engine import safetensors_header
        from ..families import FAMILIES, lora_families

        for i, lo in enumerate(cls.specs(zoo)):
            if not zoo.is_local(lo.model):
                continue
            path = zoo.resolve_path(lo.model)
            if not (path.is_file() and path.suffix == ".safetensors"):
                continue
            try:
                fits = lora_families(safetensors_header(path))
            except Exception:  # unreadable headers are reported by model_source / the loader
                continue
            if fits is None:
                continue
            for base, fam in base_families.items():
                if fam not in fits:
                    made_for = " or ".join(FAMILIES[f].title for f in sorted(fits))
                    raise zoo.fail(
                        f"LoRA {lo.name!r} is a {made_for} LoRA but base {base!r} is {FAMILIES[fam].title} "
                        f"(family {fam}); expected a LoRA trained for the base's family",
                        cls.section, i, "model",
                    )

    def identity(self) -> dict:
        return {**self.source.identity(), "weight_name": self.spec.weight_name}

    def key_entry(self, item) -> dict:
        return {"id": self.engine.identities()["loras"][self.name], "weight": self.spec.weight}

    def load(self, pipe) -> None:
        self.engine._load_lora(self.name, self.spec, self.source, self.loc)

    @classmethod
    def after_load(cls, engine, players):
        if players:
            engine.pipe.disable_lora()
        # adapters with text-encoder weights: their coalitions cannot reuse cached prompt embeddings
        names: set[str] = set()
        for attr in ("text_encoder", "text_encoder_2", "text_encoder_3"):
            names |= set(getattr(getattr(engine.pipe, attr, None), "peft_config", None) or ())
        engine._te_adapters = frozenset(names)

    @classmethod
    def switch(cls, engine, active, players):
        if not players:
            return
        if active:
            engine.pipe.enable_lora()
            engine.pipe.set_adapters([p.name for p in active], [p.spec.weight for p in active])
        else:
            engine.pipe.disable_lora()

    def touches_text_encoder(self) -> bool:
        return self.name in self.engine._te_adapters
