"""LoRAs as players: each is loaded once as a named adapter; a coalition is switched on with
``set_adapters`` (its members at their weights) or ``disable_lora`` (none), never a reload."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field

from ..config.base import MAX_WEIGHT, Float, NamedSpec
from ..common.errors import CopyscopeError
from .kind import PlayerKind, register


# 2: local files load by path (safetensors metadata honoured), warnings that mean "not applied as
# written" are errors, every layer is checked to be attached (1: a dict of tensors, logs silenced)
LOADER_VERSION = 2
# warnings of diffusers / peft / transformers that mean a LoRA is not applied as written
_DROPPED = re.compile(
    r"dora|filter(ed)? out|unexpected|missing|not (been )?(correctly )?(loaded|applied|renamed|used)|ignor|incompatible|"
    r"not compatible|No LoRA keys associated",
    re.I,
)
_LIBRARIES = ("diffusers", "peft", "transformers")


def _one_line(text: str) -> str:
    """A library's log message as one plain line (no terminal escape codes: transformers colours its report)."""
    return " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x1f\x7f]", " ", text).split())[:300]


class captured_load_logs:
    """While a LoRA loads: the warnings of diffusers, peft and transformers (their loggers and Python
    warnings) are recorded instead of printed. diffusers logs a failed load at length before raising
    (the error becomes one line); after a load that succeeded, the records are judged and the harmless
    ones replayed (:meth:`replay`)."""

    def __enter__(self):
        import logging
        import warnings

        self.records: list = []
        self._saved = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = self.records.append
        for name in _LIBRARIES:
            log = logging.getLogger(name)
            self._saved.append((log, log.handlers[:], log.level, log.propagate))
            log.handlers = [handler]
            log.propagate = False
            if log.getEffectiveLevel() > logging.WARNING:
                log.setLevel(logging.WARNING)
        self._warn = warnings.catch_warnings(record=True)
        self.warnings = self._warn.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._warn.__exit__(*exc)
        for log, handlers, level, propagate in self._saved:
            log.handlers, log.propagate = handlers, propagate
            log.setLevel(level)
        return False

    def replay(self) -> None:
        import logging
        import warnings

        for rec in self.records:
            log = logging.getLogger(rec.name)
            if log.isEnabledFor(rec.levelno):  # the user's verbosity, restored on exit
                log.handle(rec)
        for w in self.warnings:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


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
    strength_field = "weight"
    # the adapter has text-encoder weights (after_load reads them): its coalitions cannot reuse cached prompt embeddings
    text_encoder_weights: bool = False

    @classmethod
    def families(cls, zoo, spec):
        from ..modelfiles.sources import weights_file

        return cls.file_families(weights_file(zoo, spec))

    @staticmethod
    def file_families(path) -> frozenset[str] | None:
        """The families a LoRA file fits, from its tensor names (None: no file, or cannot tell)."""
        from ..families import lora_families
        from ..modelfiles.formats import safetensors_header

        try:
            return lora_families(safetensors_header(path), path) if path is not None else None
        except Exception:  # noqa: BLE001 - unreadable headers fail in any way; model_source / the loader report them
            return None

    @classmethod
    def check_zoo(cls, zoo, base_families):
        """Every LoRA whose file is here (a local file, ``weight_name`` in a local folder, a hub file in
        the local Hugging Face cache) against every base: its family, then its layers, from the headers."""
        from ..modelfiles.sources import local_base, weights_file

        for i, lo in enumerate(cls.specs(zoo)):
            cls.check_folder(zoo, i, lo)
            path = weights_file(zoo, lo)
            if path is not None:
                cls.check_file(zoo, i, lo, path)
                cls.check_family(zoo, i, lo, path, base_families)
        super().check_zoo(zoo, base_families)
        bases = {b.name: local_base(zoo, b) for b in zoo.spec.bases}
        for i, lo in enumerate(cls.specs(zoo)):
            path = weights_file(zoo, lo)
            if path is not None:
                cls.check_layout(zoo, i, lo, path, set(base_families.values()))
                cls.check_fit(zoo, i, lo, path, bases, base_families)

    @classmethod
    def check_family(cls, zoo, index: int, spec, path, base_families: dict) -> None:
        """The file against each base's family (``base_families``: base name -> family name); the refusal adds what
        the base family's diffusers loader says of the file when it cannot convert it."""
        from ..families import FAMILIES
        from ..modelfiles.lora_fit import loader_note

        fits = cls.file_families(path)
        for base, fam in base_families.items():
            if fits is not None and fam not in fits:
                message, *key = cls.family_mismatch(spec, base, fam, fits)
                raise zoo.fail(message + loader_note(path, FAMILIES[fam]), cls.section, index, *key)

    @classmethod
    def check_folder(cls, zoo, index: int, spec) -> None:
        """A local folder given as a LoRA: its weight file must be there as a regular file, and a diffusers
        model folder (a base, a UNet) is not a LoRA."""
        from ..modelfiles.sources import DEFAULT_LORA_WEIGHTS

        folder = zoo.resolve_path(spec.model) if zoo.is_local(spec.model) else None
        if folder is None or not folder.is_dir():
            return
        name = spec.weight_name or DEFAULT_LORA_WEIGHTS
        f = folder / name
        if f.exists() and not f.is_file():
            raise zoo.fail(f"{name} in {spec.model!r} is not a regular file (a folder, FIFO or device); expected the LoRA's "
                           ".safetensors file", cls.section, index, "weight_name" if spec.weight_name else "model")
        if f.exists():
            return
        model = next((m for m in ("model_index.json", "config.json") if (folder / m).is_file()), None)
        if model is not None:
            raise zoo.fail(f"{spec.model!r} is a diffusers model folder (it has {model}), not a LoRA; list a base under "
                           "'bases:', or point 'model' at a LoRA file", cls.section, index, "model")
        if spec.weight_name is not None:
            raise zoo.fail(f"no file {spec.weight_name!r} in {spec.model!r} (looked at {f})", cls.section, index, "weight_name")

    @classmethod
    def check_file(cls, zoo, index: int, spec, path) -> dict:
        """The file itself, from its header: a complete safetensors file that holds LoRA tensors."""
        from ..modelfiles.formats import safetensors_header
        from ..modelfiles.lora_layouts import LORA_LAYOUTS, lora_layout

        try:
            head = safetensors_header(path)
        except (OSError, ValueError) as exc:
            raise zoo.fail(f"{Path(path).name} is not a valid .safetensors file ({exc}); expected intact safetensors weights",
                           cls.section, index, "model") from None
        layout = lora_layout(head)
        if layout == "empty":
            raise zoo.fail(f"{Path(path).name} holds no tensors; expected a LoRA's weights", cls.section, index, "model")
        if layout == "not-lora":
            unet = any(k.startswith(("down_blocks.", "mid_block.", "up_blocks.", "conv_in.", "model.diffusion_model.")) for k in head)
            what = "a full UNet" if unet else "no tensor named like a LoRA's"
            raise zoo.fail(
                f"{Path(path).name} holds {what} ({len(head)} tensors, e.g. {sorted(head)[0]}), not a LoRA; expected one "
                f"of the layouts {', '.join(LORA_LAYOUTS.values())}", cls.section, index, "model",
            )
        return head

    @classmethod
    def check_layout(cls, zoo, index: int, spec, path, families) -> None:
        """A layout the installed diffusers cannot load as written for a base's family, or a corrupt
        layer, is refused here (it would fail, or silently lose its DoRA / layers, after the base loads)."""
        from ..modelfiles.formats import safetensors_header
        from ..modelfiles.lora_layouts import lora_rank_mismatch, lora_unsupported

        head = safetensors_header(path)
        for fam in sorted(families):
            why = lora_unsupported(head, fam)
            if why:
                raise zoo.fail(f"LoRA {spec.name!r}: {why}; convert it to a plain LoRA or remove it", cls.section, index, "model")
        why = lora_rank_mismatch(head)
        if why:
            raise zoo.fail(f"LoRA {spec.name!r} is inconsistent: {why}; expected matching down/up ranks", cls.section, index, "model")

    @classmethod
    def check_fit(cls, zoo, index: int, spec, path, bases: dict, base_families: dict | None = None) -> None:
        """One LoRA file's layers against ``bases`` (name -> local folder or file, or None: not here), as the base
        family's diffusers loader converts them (``base_families``: base name -> family name), from the headers; a
        misfit is a one-line error naming ``loras[index].model``."""
        from ..families import FAMILIES
        from ..modelfiles.lora_fit import lora_misfit

        for base, base_path in bases.items():
            family = FAMILIES.get((base_families or {}).get(base))
            try:
                why = lora_misfit(base_path, path, family) if base_path is not None else None
            except Exception:  # noqa: BLE001 - unreadable headers fail in any way; model_source / the loader report them
                why = None
            if why:
                raise zoo.fail(
                    f"LoRA {spec.name!r} does not fit base {base!r}: {why}; expected a LoRA trained for this base's architecture",
                    cls.section, index, "model",
                )

    def identity(self) -> dict:
        # the loader is part of the identity: images made by an older, wrong loading are never reused
        return {**self.source.identity(), "weight_name": self.spec.weight_name, "loader": LOADER_VERSION}

    def key_entry(self, item) -> dict:
        return {"id": self.engine.identities()["loras"][self.name], "weight": self.spec.weight}

    def load(self, pipe) -> None:
        expected = self._expected_layers()
        with captured_load_logs() as logs:
            try:
                self._load_weights(pipe)
            except CopyscopeError:
                raise
            except Exception as exc:  # noqa: BLE001 - diffusers/peft raise many kinds; the user needs one line
                raise self._error(exc) from None
        # a warning that means "not applied as written" is an error; the others are shown as they came
        for rec in logs.records:
            if self._dropped(rec.getMessage(), expected, self.name):
                raise self.engine.zoo.fail(
                    f"LoRA {self.name!r} is not applied as written: {rec.name} warned while loading it: "
                    f"{_one_line(rec.getMessage())}", *self.loc, "model",
                )
        for w in logs.warnings:
            # deprecations speak of the API, not of this file's tensors
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)) and \
                    self._dropped(str(w.message), expected, self.name):
                raise self.engine.zoo.fail(
                    f"LoRA {self.name!r} is not applied as written: a warning while loading it: {_one_line(str(w.message))}",
                    *self.loc, "model",
                )
        logs.replay()
        self._check_applied(pipe, expected)

    @staticmethod
    def _dropped(message: str, expected: dict[str, int], adapter: str) -> bool:
        if not _DROPPED.search(message):
            return False
        m = re.search(r"No LoRA keys associated to \w+ found with the prefix='(\w+)'", message)
        # diffusers says this for every component the file has no tensors for: harmless then
        if m and not expected.get(m[1]):
            return False
        # peft lists the model's missing keys over every adapter it holds: keys of the adapters loaded
        # before this one (".lora_A.<other>.weight") say nothing about this file
        keys = re.search(r"missing keys in the model: ([\w.]+(?:, [\w.]+)*)", message)
        if keys and not _DROPPED.search(message[:keys.start()] + message[keys.end():]):
            names = [k.strip() for k in keys[1].split(",") if k.strip()]
            return any(f".{adapter}." in k or not re.search(r"\.lora_[AB]\.[^.]+\.", k) for k in names)
        return True

    def _expected_layers(self) -> dict[str, int]:
        """{pipeline component: layers the file holds for it}, from the header (empty when unknown)."""
        from ..modelfiles.formats import safetensors_header
        from ..modelfiles.lora_layouts import lora_layers_by_component

        path = self._local_file()
        try:
            return lora_layers_by_component(safetensors_header(path)) if path is not None else {}
        except (OSError, ValueError):
            return {}

    def _local_file(self):
        from ..modelfiles.sources import weights_file

        return weights_file(self.engine.zoo, self.spec)

    def _check_applied(self, pipe, expected: dict[str, int]) -> None:
        """Every layer of the file became an adapter layer: a count per component, so a layer dropped
        without any warning is an error too."""
        for comp, n in expected.items():
            module = getattr(pipe, comp, None)
            if module is None:
                continue
            got = sum(1 for m in module.modules()
                      if self.name in (getattr(m, "lora_A", None) or getattr(m, "lora_embedding_A", None) or {}))
            if got < n:
                raise self.engine.zoo.fail(
                    f"LoRA {self.name!r} is not applied as written: {n} of its layers are for the {comp} but diffusers "
                    f"attached {got}", *self.loc, "model",
                )

    def _load_weights(self, pipe) -> None:
        src, eng = self.source, self.engine
        if src.local is not None and src.local.is_file() and src.local.suffix == ".safetensors":
            # By path, as its producer meant: diffusers reads the safetensors metadata (peft's lora_alpha
            # lives there); use_safetensors: a local file never goes through a pickle loader.
            pipe.load_lora_weights(str(src.local.parent), weight_name=src.local.name, use_safetensors=True,
                                   local_files_only=True, adapter_name=self.name)
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
        from ..modelfiles.sources import DEFAULT_LORA_WEIGHTS, local_base

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
        self.check_file(eng.zoo, self.index, self.spec, Path(path))
        self.check_family(eng.zoo, self.index, self.spec, Path(path), {base.name: eng.family.name})
        self.check_layout(eng.zoo, self.index, self.spec, Path(path), {eng.family.name})
        self.check_fit(eng.zoo, self.index, self.spec, Path(path), {base.name: local_base(eng.zoo, base)},
                       {base.name: eng.family.name})

    def _error(self, exc: Exception) -> CopyscopeError:
        from ..modelfiles.sources import hub_error

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
        for p in players:
            p.text_encoder_weights = p.name in names

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
        return self.text_encoder_weights
