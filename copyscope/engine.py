"""Stage 3 — generate: assemble the pipeline of each coalition with diffusers and generate its images.

One ``CoalitionEngine`` per base. The base is loaded once, each LoRA once as a named adapter, each
ControlNet once. A coalition is switched on with ``set_adapters`` / ``disable_lora`` (never a
reload). Coalitions with ControlNets run a ``StableDiffusionControlNetPipeline`` built from the same
module objects as the plain pipeline; coalitions without one run the plain pipeline, so they pay
no ControlNet forward pass. Every image gets its own CPU ``torch.Generator`` seeded with its seed,
so an image does not depend on its batch neighbours or on the device's RNG.
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import formats
from .cache import ImageCache, file_sha256, key_of, tree_sha256  # noqa: F401 (file_sha256: re-export)
from .config import PICKLE_SUFFIXES, ControlNetSpec, LoraSpec, Zoo
from .errors import CopyscopeError
from .file_checks import config_arg, load_identity
from .plan import GamePlan, WorkItem

# Bump when a change to this module changes the pixels it produces: it is part of every image key.
GENERATOR_VERSION = 1

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
    "ddpm": "DDPMScheduler",
    "unipc": "UniPCMultistepScheduler",
}


def resolve_device(name: str) -> str:
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(name: str, device: str, cuda_dtype: str = "float16"):
    """``auto``: float32 off CUDA; on CUDA the family's dtype (float16 for SD/SDXL, bfloat16 for SD3/Flux)."""
    import torch

    if name == "auto":
        name = cuda_dtype if device.startswith("cuda") else "float32"
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _quiet_diffusers() -> None:
    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    dlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    tlogging.set_verbosity_error()
    tlogging.disable_progress_bar()
    # peft warns when a second adapter is added to a model: that is exactly what we do
    warnings.filterwarnings("ignore", message=".*peft_config.*multiple adapters.*")
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    warnings.filterwarnings("ignore", message=".*torch_dtype.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="diffusers")
    logging.getLogger("diffusers").setLevel(logging.ERROR)


@dataclass
class ModelSource:
    """Where a model comes from, and its identity for cache keys."""

    value: str
    local: Path | None
    revision: str | None

    def identity(self, suffixes=(".safetensors", ".json", ".txt", ".model")) -> dict:
        if self.local is not None:
            return {"local_sha256": tree_sha256(self.local, suffixes)}
        return {"hub_id": self.value, "revision": self.revision or "main"}


def model_source(zoo: Zoo, value: str, revision: str | None, loc: tuple, allow_pickle: bool) -> ModelSource:
    if zoo.is_local(value):
        path = zoo.resolve_path(value)
        if not path.exists():
            raise zoo.fail(f"model path {value!r} not found (looked at {path})", *loc, "model")
        if path.is_file() and path.suffix in PICKLE_SUFFIXES and not allow_pickle:
            raise zoo.fail(
                f"{path.name} is a pickle checkpoint, which can run code when loaded; convert it to "
                ".safetensors, or pass --allow-pickle if you trust it",
                *loc,
                "model",
            )
        if path.is_file() and path.suffix not in (".safetensors",) + PICKLE_SUFFIXES:
            raise zoo.fail(f"{path.name}: expected a .safetensors file or a diffusers folder", *loc, "model")
        if path.is_dir() and path.suffix in (".safetensors",) + PICKLE_SUFFIXES:
            raise zoo.fail(f"{value!r} is a folder; expected a {path.suffix} file", *loc, "model")
        if path.is_dir() and not allow_pickle:
            # a diffusers folder whose component (unet/, vae/, ...) has pickle weights and no safetensors
            def parts(suffixes):
                return {f.parent.relative_to(path).as_posix() for f in path.rglob("*") if f.is_file() and f.suffix in suffixes}

            only_pickle = sorted(parts(PICKLE_SUFFIXES) - parts((".safetensors",)))
            if only_pickle:
                raise zoo.fail(
                    f"{value!r} has pickle weights only (.bin/.ckpt/.pt in {', '.join(only_pickle)}), which can run "
                    "code when loaded; expected .safetensors weights: convert them, or pass --allow-pickle if you trust them",
                    *loc,
                    "model",
                )
        if path.is_file() and path.suffix == ".safetensors":
            try:
                safetensors_header(path)
            except Exception as exc:  # truncated download, wrong file renamed, ...
                raise zoo.fail(
                    f"{path.name} is not a valid .safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                    "expected intact safetensors weights",
                    *loc,
                    "model",
                ) from None
        return ModelSource(value, path, revision)
    return ModelSource(value, None, revision)


def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (tensor names, dtypes, shapes), read without loading
    any tensor. Raises ValueError when the file is not a complete safetensors file."""
    import json

    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError("shorter than a safetensors header")
        n = int.from_bytes(raw, "little")
        if n > size - 8:
            raise ValueError(f"header length {n} exceeds the file size {size}")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise ValueError("its header is not JSON: not a safetensors file") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    header.pop("__metadata__", None)
    end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    if 8 + n + end > size:
        raise ValueError(f"truncated: tensors need {8 + n + end} bytes, the file has {size}")
    return header


def lora_misfit(base_dir: Path, lora_file: Path) -> str | None:
    """Why a LoRA file cannot fit a local base, from the headers alone; None when it fits or cannot be
    compared. UNet bases (SD1.x/2.x, SDXL; folder or single file; diffusers/peft or kohya LoRAs):
    :func:`copyscope.formats.lora_misfit`; transformer bases (SD3, Flux): diffusers-layout LoRAs here."""
    transformer = sorted((base_dir / "transformer").glob("*.safetensors")) if base_dir.is_dir() else []
    if not transformer:
        return formats.lora_misfit(base_dir, lora_file)
    base: dict[str, list[int]] = {}
    for f in transformer:
        base.update({k: v.get("shape") for k, v in safetensors_header(f).items()})
    n_found = n_lora = 0
    for key, info in sorted(safetensors_header(lora_file).items()):
        # peft names (lora_A / lora_B) and older diffusers names (lora.down / lora.up)
        m = re.match(r"^transformer\.(.+)\.(lora_A|lora_B|lora\.down|lora\.up)\.weight$", key)
        if not m:
            continue
        n_lora += 1
        target, got = base.get(m.group(1) + ".weight"), info.get("shape")
        if target is None:
            continue
        n_found += 1
        if len(target) != 2 or not got or len(got) != 2:
            continue
        down = m.group(2) in ("lora_A", "lora.down")
        if (down and got[1] != target[1]) or (not down and got[0] != target[0]):
            return (
                f"layer {m.group(1)} maps {target[1]} -> {target[0]} features in the base, but the LoRA's "
                f"{m.group(2)} weight has shape {list(got)}"
            )
    if n_lora and not n_found:
        return f"none of its {n_lora} transformer tensors name a layer of the base"
    return None


def check_player_families(zoo: Zoo) -> dict[str, str]:
    """Every base's family (declared or detected), and every add-on player file against them
    (a Flux LoRA on an SDXL base is refused here, before anything loads). Returns base -> family."""
    from .families import FAMILIES, base_family
    from .players import KINDS

    families = {b.name: base_family(zoo, i).name for i, b in enumerate(zoo.spec.bases)}
    scheduler = zoo.spec.generation.scheduler
    for name, fam in families.items():
        if scheduler is not None and FAMILIES[fam].flow_matching:
            raise zoo.fail(
                f"scheduler {scheduler!r} does not apply to {FAMILIES[fam].title} (base {name!r}), which samples "
                "with its flow-matching scheduler; expected scheduler: null", "generation", "scheduler",
            )
    for cls in KINDS.values():
        cls.check_zoo(zoo, families)
    return families


def check_lora_fits(zoo: Zoo) -> None:
    """Every player against its base's family (:func:`check_player_families`), then every local
    diffusers-format LoRA file against every local diffusers base, before loading."""
    check_player_families(zoo)
    for b in zoo.spec.bases:
        if not zoo.is_local(b.model):
            continue
        base_dir = zoo.resolve_path(b.model)
        for i, lo in enumerate(zoo.spec.loras):
            if not zoo.is_local(lo.model):
                continue
            path = zoo.resolve_path(lo.model)
            if not (path.is_file() and path.suffix == ".safetensors"):
                continue
            try:
                why = lora_misfit(base_dir, path)
            except Exception:  # unreadable headers are reported by model_source / the loader
                why = None
            if why:
                raise zoo.fail(
                    f"LoRA {lo.name!r} does not fit base {b.name!r}: {why}; expected a LoRA trained for this base's architecture",
                    "loras", i, "model",
                )


def _hub_error(zoo: Zoo, exc: Exception, src: ModelSource, loc: tuple) -> CopyscopeError:
    text = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    # diffusers' "check out the root cause in the stacktrace above": no stack trace is shown, so
    # name the cause instead
    if "stacktrace above" in text.lower():
        text = re.sub(r"\s*[^.]*stacktrace above\.?", "", text, flags=re.I).strip()
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause):
            text += f" (cause: {cause.__class__.__name__}: {str(cause).splitlines()[0][:200]})"
    if src.local is None:
        return zoo.fail(
            f"cannot load hub model {src.value!r} ({text}); if this machine is offline, download it first "
            f"(huggingface-cli download {src.value}) or point 'model' at a local copy",
            *loc,
            "model",
        )
    if "safetensors" in text and src.local.is_dir() and any(
        f.suffix in PICKLE_SUFFIXES for f in src.local.rglob("*") if f.is_file()
    ):
        # a diffusers folder saved with pickle weights: from_pretrained(use_safetensors=True) refused it
        return zoo.fail(
            f"cannot load {src.value!r}: it holds pickle weights (.bin/.ckpt), and only .safetensors are loaded "
            f"by default; convert them, or pass --allow-pickle if you trust them ({text})",
            *loc,
            "model",
        )
    return zoo.fail(f"cannot load {src.value!r}: {text}", *loc, "model")


class CoalitionEngine:
    """Loads one base with all its add-on players and generates images for coalitions of a game.

    The players are objects of the kinds in :mod:`copyscope.players`; the engine loads the base of
    its family (:mod:`copyscope.families`), asks every player to load once, and for a coalition
    asks each kind to switch to its active players and to add its arguments to the call."""

    def __init__(
        self,
        zoo: Zoo,
        game: GamePlan,
        *,
        allow_pickle: bool = False,
        on_event: Callable[[str], None] | None = None,
    ):
        from .families import base_family
        from .players import KINDS

        self.zoo = zoo
        self.game = game
        self.allow_pickle = allow_pickle
        self.gen = zoo.spec.generation
        base_idx = zoo.spec.bases.index(game.base)
        self.family = base_family(zoo, base_idx)
        self.device = resolve_device(self.gen.device)
        self.dtype = resolve_dtype(self.gen.dtype, self.device, self.family.cuda_dtype)
        self._on_event = on_event or (lambda msg: None)
        self.base_src = model_source(zoo, game.base.model, game.base.revision, ("bases", base_idx), allow_pickle)
        # kind -> its players (zoo order); every player of the zoo, whether in a coalition or not
        self.players: dict[str, list] = {
            kind: [cls(self, spec, i) for i, spec in enumerate(cls.specs(zoo))] for kind, cls in KINDS.items()
        }
        self._by_name = {p.name: p for ps in self.players.values() for p in ps}
        self.pipe = None
        self._cn_models: dict = {}
        self._cn_pipes: dict = {}
        self._active: tuple | None = None
        self.switches = 0
        self._identity_cache: dict | None = None
        # Text embeddings per batch of (prompt, negative) pairs, reused by every coalition whose
        # active players leave the text encoder alone (the embeddings then do not depend on the coalition).
        self.embedding_cache = True
        self._embeds: dict[tuple, tuple] = {}
        self.embedding_hits = 0
        self._te_adapters: frozenset[str] = frozenset()  # adapters with text-encoder weights
        self.switch_seconds = 0.0  # time spent switching players on and off
        # set by the audit: PNG writes and scoring run there, off the generation's critical path
        self.background: BackgroundQueue | None = None

    # kept for callers written before player classes: name -> (spec, source)
    @property
    def lora_srcs(self) -> dict:
        return {p.name: (p.spec, p.source) for p in self.players.get("lora", [])}

    @property
    def cn_srcs(self) -> dict:
        return {p.name: (p.spec, p.source) for p in self.players.get("controlnet", [])}

    def _kinds(self):
        from .players import KINDS

        return KINDS.items()

    # -- identities (cache keys) ---------------------------------------------------------------
    def identities(self) -> dict:
        """Hashes/ids of every model of this game; computed once (hashing reads the weights)."""
        if self._identity_cache is None:
            ident = {"base": {**self.base_src.identity(), **load_identity(self.zoo, self.game.base)}}
            for kind, cls in self._kinds():
                if cls.key_group and (cls.key_group_always or self.players[kind]):
                    ident[cls.key_group] = {p.name: p.identity() for p in self.players[kind]}
            self._identity_cache = ident
        return self._identity_cache

    def conditioning_path(self, cn: ControlNetSpec, item: WorkItem) -> Path:
        c = cn.conditioning
        if c.detector is not None:  # a map computed from a work or image (copyscope.conditioning)
            return self._conditioning_map(cn, item).path
        value = c.image if c.image is not None else (c.per_prompt[item.prompt] if c.per_prompt is not None else c.per_work[item.work])
        path = self.zoo.resolve_path(value)
        if not path.is_file():
            i = self.zoo.spec.controlnets.index(cn)
            raise self.zoo.fail(f"conditioning image {value!r} not found (looked at {path})", "controlnets", i, "conditioning")
        return path

    def _conditioning_map(self, cn: ControlNetSpec, item: WorkItem):
        from .conditioning import maps_for

        return maps_for(self.zoo).entry(self.zoo.spec.controlnets.index(cn), getattr(item, "control", 0), item.work)

    def _active_players(self, members: tuple[bool, ...]) -> dict[str, list]:
        """kind -> active player objects, in zoo order."""
        names = self.game.active_by_kind(members)
        return {kind: [p for p in ps if p.name in names.get(kind, ())] for kind, ps in self.players.items()}

    def image_fields(self, members: tuple[bool, ...], item: WorkItem) -> dict:
        """Everything that determines an image. Its hash is the cache key."""
        from .families import family_settings

        base_on = self.game.addons(members)[0]
        active = self._active_players(members)
        h, w = self.gen.size
        fields = {
            "copyscope_generator": GENERATOR_VERSION,
            "base": self.identities()["base"] if base_on else "null",
        }
        for kind, cls in self._kinds():
            if cls.key_group and (cls.key_group_always or self.players[kind]):
                fields[cls.key_group] = sorted((p.key_entry(item) for p in active[kind]), key=key_of)
        fields.update({
            "prompt": self.game.prompt_text(members, item),
            "negative": item.negative,
            "seed": item.seed,
            "steps": self.gen.steps,
            "guidance": self.gen.guidance,
            "scheduler": self.gen.scheduler or "default",
            "size": [h, w],
            "dtype": str(self.dtype).removeprefix("torch."),
            "device_type": self.device.split(":")[0],
            # a compiled UNet may round differently from the eager one: never mix them in one key
            **({"compile": True} if getattr(self.gen, "compile", False) else {}),
        })
        if self.family.name != "sd":  # SD1.x/2.x keys predate families and stay as they were
            fields["family"] = self.family.name
            fields["family_settings"] = family_settings(self.family, self.gen)
        return fields

    # -- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        if self.pipe is not None:
            return
        import diffusers

        _quiet_diffusers()
        base = self.game.base
        loc = ("bases", self.zoo.spec.bases.index(base))
        pipe_cls = getattr(diffusers, self.family.pipeline)
        common = dict(torch_dtype=self.dtype, **self.family.load_kwargs)
        self._on_event(f"loading base {base.name} ({self.family.title})")
        try:
            src = self.base_src
            if src.local is not None and src.local.is_file():
                self.pipe = pipe_cls.from_single_file(str(src.local), config=config_arg(self.zoo, base.config), **common)
            else:
                self.pipe = pipe_cls.from_pretrained(
                    str(src.local) if src.local is not None else src.value,
                    revision=base.revision,
                    variant=base.variant,
                    use_safetensors=not self.allow_pickle,
                    **common,
                )
        except CopyscopeError:
            raise
        except Exception as exc:  # diffusers raises many kinds; the user needs one line
            raise _hub_error(self.zoo, exc, self.base_src, loc) from None
        self._set_scheduler()
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)

        for kind, cls in self._kinds():
            for p in self.players[kind]:
                if cls.has_model:
                    self._on_event(f"loading {cls.label} {p.name}")
                p.load(self.pipe)
            cls.after_load(self, self.players[kind])
        self._active = None
        self._embeds.clear()
        if getattr(self.gen, "compile", False):
            self._compile_unet()

    def _compile_unet(self) -> None:
        """``generation.compile``: torch.compile the denoiser in place (after the LoRAs are attached,
        so the compiled graph holds their layers). Dynamo guards on the active adapters, so each
        distinct adapter set compiles once; the cache limit is raised to hold every coalition's graph
        (docs/scale.md has the measurements)."""
        import torch

        n_states = 2 ** sum(len(ps) for k, ps in self.players.items() if k in ("lora", "controlnet"))
        dyn = torch._dynamo.config
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(dyn, name):
                setattr(dyn, name, max(getattr(dyn, name), min(n_states + 8, 1024)))
        self._on_event(f"compiling the {self.family.denoiser} (torch.compile)")
        getattr(self.pipe, self.family.denoiser).compile(fullgraph=False, dynamic=False)

    def _set_scheduler(self) -> None:
        name = self.gen.scheduler
        if name is None:
            return
        import diffusers

        if name not in SCHEDULERS:
            raise self.zoo.fail(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}", "generation", "scheduler")
        if self.family.flow_matching:
            raise self.zoo.fail(
                f"scheduler {name!r} does not apply to {self.family.title}, which samples with its flow-matching "
                "scheduler; expected scheduler: null", "generation", "scheduler",
            )
        cls = getattr(diffusers, SCHEDULERS[name])
        self.pipe.scheduler = cls.from_config(self.pipe.scheduler.config)

    def _load_lora(self, name: str, lo: LoraSpec, src: ModelSource, loc: tuple) -> None:
        from diffusers.utils import logging as dlogging

        # diffusers logs a failed load (every mismatched tensor, many lines) before raising; the
        # raised error becomes one line below, so the log is silenced while loading.
        level = dlogging.get_verbosity()
        dlogging.set_verbosity(dlogging.CRITICAL)
        try:
            self._load_lora_weights(name, lo, src)
        except Exception as exc:
            raise self._lora_error(name, exc, src, loc) from None
        finally:
            dlogging.set_verbosity(level)

    def _lora_error(self, name: str, exc: Exception, src: ModelSource, loc: tuple) -> CopyscopeError:
        text = f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300]
        if src.local is None and ("offline" in text.lower() or "connect" in text.lower() or "cache" in text.lower()):
            return _hub_error(self.zoo, exc, src, loc)
        mismatch = re.search(
            r"size mismatch for (\S+?)(?:\.\w+)?\.weight: copying a param with shape torch\.Size\((\[[^\]]*\])\) from "
            r"checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)",
            str(exc),
        )
        if mismatch:
            layer, got, want = mismatch.groups()
            return self.zoo.fail(
                f"LoRA {name!r} does not fit base {self.game.base.name!r}: {layer} has shape {got} in the LoRA but "
                f"{want} in the base; expected a LoRA trained for this base architecture",
                *loc,
                "model",
            )
        return self.zoo.fail(
            f"LoRA {name!r} does not fit base {self.game.base.name!r} or cannot be read ({text})", *loc, "model"
        )

    def _load_lora_weights(self, name: str, lo: LoraSpec, src: ModelSource) -> None:
        if src.local is not None and src.local.is_file() and src.local.suffix == ".safetensors":
            # Read the tensors ourselves: a local file never goes through a pickle loader.
            from safetensors.torch import load_file

            target = load_file(str(src.local))
            self.pipe.load_lora_weights(target, adapter_name=name)
        else:
            target = str(src.local) if src.local is not None else src.value
            kwargs = {"weight_name": lo.weight_name, "revision": lo.revision}
            if not self.allow_pickle:
                kwargs["use_safetensors"] = True
            self.pipe.load_lora_weights(target, adapter_name=name, **kwargs)

    # -- switching -----------------------------------------------------------------------------
    def activate(self, members: tuple[bool, ...]):
        """Switch players for a coalition; return the pipeline object to call."""
        active = self._active_players(members)
        state = tuple((kind, tuple(p.name for p in ps)) for kind, ps in active.items())
        if state != self._active:
            self.switches += 1
            t_switch = time.perf_counter()
            for kind, cls in self._kinds():
                cls.switch(self, active[kind], self.players[kind])
            self._active = state
            self.switch_seconds += time.perf_counter() - t_switch
        pipe = self.pipe
        for kind, cls in self._kinds():
            pipe = cls.route(self, active[kind], pipe)
        return pipe

    # -- generation ----------------------------------------------------------------------------
    def generate(self, members: tuple[bool, ...], items: list[WorkItem]) -> list[np.ndarray]:
        """Images (float32 HxWx3 in [0,1]) for one coalition and a batch of work items."""
        import torch

        from .families import family_call_kwargs

        base_on = self.game.addons(members)[0]
        h, w = self.gen.size
        if not base_on:
            # The null generator used when the base is a player: a coalition without the base
            # produces uniform mid-grey images (documented in the README).
            return [np.full((h, w, 3), 0.5, dtype=np.float32) for _ in items]
        self.load()
        pipe = self.activate(members)
        active = self._active_players(members)
        negatives = [i.negative for i in items] if any(i.negative for i in items) else None
        if not self.family.negative_prompt and not (self.family.name == "flux" and self.gen.flux.true_cfg_scale > 1):
            negatives = None  # Flux without true CFG has no negative prompt
        kwargs = dict(
            prompt=[self.game.prompt_text(members, i) for i in items],
            negative_prompt=negatives,
            num_inference_steps=self.gen.steps,
            guidance_scale=self.gen.guidance,
            height=h,
            width=w,
            generator=[torch.Generator("cpu").manual_seed(i.seed) for i in items],
            output_type="np",
            **family_call_kwargs(self.family, self.gen),
        )
        if negatives is None and not self.family.negative_prompt:
            kwargs.pop("negative_prompt")
        for kind, cls in self._kinds():
            cls.call_kwargs(self, active[kind], items, kwargs)
        te_touched = any(p.touches_text_encoder() for ps in active.values() for p in ps)
        if self.embedding_cache and self.family.embedding_cache and not te_touched:
            embeds, negative_embeds = self._prompt_embeddings(pipe, kwargs.pop("prompt"), kwargs.pop("negative_prompt"))
            kwargs["prompt_embeds"] = embeds
            if negative_embeds is not None:
                kwargs["negative_prompt_embeds"] = negative_embeds
        with torch.inference_mode():
            out = pipe(**kwargs).images
        return [np.asarray(im, dtype=np.float32) for im in out]

    def _prompt_embeddings(self, pipe, prompts: list[str], negatives: list[str] | None):
        """(prompt_embeds, negative_prompt_embeds) of one batch, computed once per distinct batch of
        (prompt, negative) pairs by the pipeline's own ``encode_prompt`` with the arguments its
        ``__call__`` would use, so passing them gives the same pixels as passing the prompts.
        Only valid while no active LoRA has text-encoder weights (the caller checks)."""
        import torch

        cfg = self.gen.guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
        key = (tuple(prompts), tuple(negatives) if negatives is not None else None, cfg)
        hit = self._embeds.get(key)
        if hit is not None:
            self.embedding_hits += 1
            return hit
        with torch.inference_mode():
            hit = pipe.encode_prompt(prompts, pipe._execution_device, 1, cfg, negatives)
        if len(self._embeds) >= 512:  # a few MB at SD1.5 size; prompt players can make many batches
            self._embeds.pop(next(iter(self._embeds)))
        self._embeds[key] = hit
        return hit

    def release(self) -> None:
        self._embeds.clear()
        self.pipe = None
        self._cn_models.clear()
        self._cn_pipes.clear()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass


_control_memo: dict[tuple, object] = {}


def _load_control(path: Path, w: int, h: int):
    from PIL import Image

    key = (str(path), w, h)
    if key not in _control_memo:
        with Image.open(path) as im:
            _control_memo[key] = im.convert("RGB").resize((w, h), Image.BICUBIC)
    return _control_memo[key]


def image_flags(image: np.ndarray) -> list[str]:
    """Problems worth flagging in the report: NaN output (fp16 overflow) or an all-black image."""
    flags = []
    if not np.isfinite(image).all():
        flags.append("nan")
    elif float(np.nanmax(image)) < 2.0 / 255.0:
        flags.append("black")
    return flags


@dataclass
class GenerationStats:
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0
    switches: int = 0


def ensure_images(
    engine: CoalitionEngine,
    cache: ImageCache,
    coalitions: Iterable[tuple[bool, ...]],
    items: list[WorkItem],
    stats: GenerationStats,
    progress: Callable[[int], None] | None = None,
    work_filter: Callable[[int], bool] | None = None,
) -> dict[tuple[bool, ...], list[str]]:
    """Make sure every (coalition, item) image is in the cache; return the keys per coalition.

    Batches are fixed chunks of each coalition's item list (not "whatever is missing"), so a
    resumed or partial run feeds the pipeline exactly the same batches as an uninterrupted one.
    ``work_filter(chunk_index)`` selects the chunks this process generates (distributed runs).
    With ``engine.background`` (a :class:`BackgroundQueue`), images are written to the cache by its
    thread while the next batch generates, each finished coalition is handed to its
    ``on_coalition`` (the audit scores it there), and everything has completed when this returns.
    """
    bs = engine.gen.batch_size
    keys: dict[tuple[bool, ...], list[str]] = {}
    chunk_index = 0
    bg = getattr(engine, "background", None)
    for members in coalitions:
        fields = [engine.image_fields(members, it) for it in items]
        coalition_keys = [key_of(f) for f in fields]
        keys[members] = coalition_keys
        for start in range(0, len(items), bs):
            chunk_keys = coalition_keys[start : start + bs]
            mine = work_filter is None or work_filter(chunk_index)
            chunk_index += 1
            missing = [k for k in chunk_keys if not cache.has(k)] if mine else []
            if not missing:
                if mine:
                    stats.cached += len(chunk_keys)
                if progress:
                    progress(len(chunk_keys))
                continue
            chunk_items = items[start : start + bs]
            t0 = time.perf_counter()
            images = engine.generate(members, chunk_items)
            stats.seconds += time.perf_counter() - t0
            for k, f, img in zip(chunk_keys, fields[start : start + bs], images):
                if k in missing:
                    entry = {**f, "coalition": engine.game.coalition_key(members)}
                    if bg is not None:
                        bg.submit(cache.put, k, img, entry, image_flags(img))
                    else:
                        cache.put(k, img, entry, image_flags(img))
                    stats.generated += 1
                else:
                    stats.cached += 1
            if progress:
                progress(len(chunk_keys))
        if bg is not None and work_filter is None:
            bg.coalition_done(coalition_keys)
    if bg is not None:
        bg.wait()
    return keys


class BackgroundQueue:
    """One worker thread that runs tasks in submission order: the PNG writes of a coalition's
    images, then ``on_coalition(keys)`` for it (the audit's scoring), overlapping the generation of
    the next batches (a GPU generating leaves the CPU idle; PNG encoding and scoring would otherwise
    sit on the critical path). At most ``max_pending`` tasks wait (backpressure: generated images are
    not piled up in memory). Tasks never run concurrently with each other; ``wait()`` returns when
    all have run and re-raises the first error in the caller's thread."""

    def __init__(self, on_coalition: Callable[[list[str]], None] | None = None, max_pending: int = 64):
        from concurrent.futures import ThreadPoolExecutor

        self.on_coalition = on_coalition
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copyscope-bg")
        self._pending: list = []

    def submit(self, fn: Callable, *args) -> None:
        while len(self._pending) >= self.max_pending:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(fn, *args))

    def coalition_done(self, keys: list[str]) -> None:
        if self.on_coalition is not None:
            self.submit(self.on_coalition, list(keys))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for f in self._pending:
                f.cancel()
        self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close(cancel=exc_type is not None)
        return False
