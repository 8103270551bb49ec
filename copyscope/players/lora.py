"""LoRAs as players: each is loaded once as a named adapter; a coalition is switched on with
``set_adapters`` (its members at their weights) or ``disable_lora`` (none), never a reload."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field

from ..config.base import MAX_WEIGHT, Float, NamedSpec
from ..errors import CopyscopeError
from .kind import PlayerKind, register


class LoraSpec(NamedSpec):
    model: str = Field(description="hub id or local .safetensors file")
    weight_name: str | None = None
    revision: str | None = None
    weight: Float = Field(1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT)


@register
class LoraPlayer(PlayerKind):
    kind = "lora"
    changes_denoiser_graph = True  # adapter layers inside the denoiser
    section = "loras"
    spec_model = LoraSpec
    label = "LoRA"
    key_group = "loras"
    key_group_always = True
    switch_cost = "set_adapters / disable_lora: milliseconds, no reload"

    @classmethod
    def families(cls, zoo, spec):
        from ..generation.sources import weights_file

        return cls.file_families(weights_file(zoo, spec))

    @staticmethod
    def file_families(path) -> frozenset[str] | None:
        """The families a LoRA file fits, from its tensor names (None: no file, or cannot tell)."""
        from ..families import lora_families
        from ..formats import safetensors_header

        try:
            return lora_families(safetensors_header(path)) if path is not None else None
        except Exception:  # noqa: BLE001 - unreadable headers fail in any way; model_source / the loader report them
            return None

    @classmethod
    def check_zoo(cls, zoo, base_families):
        """Every LoRA whose file is here (a local file, ``weight_name`` in a local folder, a hub file in
        the local Hugging Face cache) against every base: its family, then its layers, from the headers."""
        from ..generation.sources import local_base, weights_file

        super().check_zoo(zoo, base_families)
        bases = {b.name: local_base(zoo, b) for b in zoo.spec.bases}
        for i, lo in enumerate(cls.specs(zoo)):
            path = weights_file(zoo, lo)
            if path is not None:
                cls.check_fit(zoo, i, lo, path, bases)

    @classmethod
    def check_fit(cls, zoo, index: int, spec, path, bases: dict) -> None:
        """One LoRA file's layers against ``bases`` (name -> local folder or file, or None: not here),
        from the headers; a misfit is a one-line error naming ``loras[index].model``."""
        from ..formats import lora_misfit

        for base, base_path in bases.items():
            try:
                why = lora_misfit(base_path, path) if base_path is not None else None
            except Exception:  # noqa: BLE001 - unreadable headers fail in any way; model_source / the loader report them
                why = None
            if why:
                raise zoo.fail(
                    f"LoRA {spec.name!r} does not fit base {base!r}: {why}; expected a LoRA trained for this base's architecture",
                    cls.section, index, "model",
                )

    def identity(self) -> dict:
        return {**self.source.identity(), "weight_name": self.spec.weight_name}

    def key_entry(self, item) -> dict:
        return {"id": self.engine.identities()["loras"][self.name], "weight": self.spec.weight}

    def load(self, pipe) -> None:
        from diffusers.utils import logging as dlogging

        # diffusers logs a failed load (every mismatched tensor, many lines) before raising; the
        # raised error becomes one line below, so the log is silenced while loading.
        level = dlogging.get_verbosity()
        dlogging.set_verbosity(dlogging.CRITICAL)
        try:
            self._load_weights(pipe)
        except CopyscopeError:
            raise
        except Exception as exc:  # noqa: BLE001 - diffusers/peft raise many kinds; the user needs one line
            raise self._error(exc) from None
        finally:
            dlogging.set_verbosity(level)

    def _load_weights(self, pipe) -> None:
        src, eng = self.source, self.engine
        if src.local is not None and src.local.is_file() and src.local.suffix == ".safetensors":
            # Read the tensors ourselves: a local file never goes through a pickle loader.
            from safetensors.torch import load_file

            pipe.load_lora_weights(load_file(str(src.local)), adapter_name=self.name)
            return
        if src.local is None:
            self._download_and_check()
        kwargs = {"weight_name": self.spec.weight_name, "revision": self.spec.revision}
        if not eng.allow_pickle:
            kwargs["use_safetensors"] = True
        pipe.load_lora_weights(str(src.local) if src.local is not None else src.value, adapter_name=self.name, **kwargs)

    def _download_and_check(self) -> None:
        """A hub LoRA not in the local cache at pre-flight: download its file now and check it against
        this engine's base from the headers, before any weight loads. A failed download is left to
        ``load_lora_weights`` (which reports it, or finds the file under another name)."""
        from ..generation.sources import DEFAULT_LORA_WEIGHTS, local_base

        name = self.spec.weight_name or DEFAULT_LORA_WEIGHTS
        if not name.endswith(".safetensors"):
            return
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(self.source.value, name, revision=self.spec.revision)
        except Exception:  # noqa: BLE001 - any hub failure: load_lora_weights reports it, or finds the file under another name
            return
        eng = self.engine
        base = eng.game.base
        fits = self.file_families(Path(path))
        if fits is not None and eng.family.name not in fits:
            message, *key = self.family_mismatch(self.spec, base.name, eng.family.name, fits)
            raise eng.zoo.fail(message, *self.loc, *key)
        self.check_fit(eng.zoo, self.index, self.spec, Path(path), {base.name: local_base(eng.zoo, base)})

    def _error(self, exc: Exception) -> CopyscopeError:
        from ..generation.sources import hub_error

        eng, src, name = self.engine, self.source, self.name
        text = f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300]
        if src.local is None and ("offline" in text.lower() or "connect" in text.lower() or "cache" in text.lower()):
            return hub_error(eng.zoo, exc, src, self.loc)
        mismatch = re.search(
            r"size mismatch for (\S+?)(?:\.\w+)?\.weight: copying a param with shape torch\.Size\((\[[^\]]*\])\) from "
            r"checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)",
            str(exc),
        )
        if mismatch:
            layer, got, want = mismatch.groups()
            return eng.zoo.fail(
                f"LoRA {name!r} does not fit base {eng.game.base.name!r}: {layer} has shape {got} in the LoRA but "
                f"{want} in the base; expected a LoRA trained for this base architecture", *self.loc, "model",
            )
        return eng.zoo.fail(
            f"LoRA {name!r} does not fit base {eng.game.base.name!r} or cannot be read ({text})", *self.loc, "model"
        )

    @classmethod
    def after_load(cls, engine, players):
        if players:
            engine.pipe.disable_lora()
        # adapters with text-encoder weights: their coalitions cannot reuse cached prompt embeddings
        names: set[str] = set()
        for attr in ("text_encoder", "text_encoder_2", "text_encoder_3"):
            names |= set(getattr(getattr(engine.pipe, attr, None), "peft_config", None) or ())
        engine.kind_state[cls.kind]["text_encoder_adapters"] = frozenset(names)

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
        return self.name in self.engine.kind_state[self.kind].get("text_encoder_adapters", ())
