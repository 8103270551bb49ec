"""Stage 3 — generate: one ``CoalitionEngine`` per base assembles the pipeline of each coalition with
diffusers and generates its images.

The engine loads the base of its family (:mod:`copyscope.families`) once and asks every player
(:mod:`copyscope.players`) to load once; for a coalition it asks each kind to switch to its active
players (``set_adapters``, a ControlNet pipeline over the same modules, an IP-Adapter scale, ...,
never a reload) and to add its arguments to the call. Every image gets its own CPU
``torch.Generator`` seeded with its seed, so an image does not depend on its batch neighbours or on
the device's RNG. Model checks before loading: :mod:`.sources`; the generate-into-cache loop:
:mod:`.generate`.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Callable

import numpy as np

from ..common.files import key_of
from ..conditioning import ConditioningMaps
from ..config import SCHEDULERS, Zoo
from ..common.errors import CopyscopeError
from ..modelfiles.file_checks import config_arg, load_identity
from ..plan.games import GamePlan, WorkItem
from ..modelfiles.sources import hub_error, load_control, model_source  # noqa: F401 (load_control: re-exported)

# Bump when a change to this module changes the pixels it produces: it is part of every image key.
GENERATOR_VERSION = 1


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
        conditioning: ConditioningMaps | None = None,
    ):
        from ..families import base_family
        from ..players import KINDS

        self.zoo = zoo
        self.game = game
        self.allow_pickle = allow_pickle
        # the computed ControlNet maps (the prepared audit's); by default those in the zoo's output folder
        self.conditioning = conditioning if conditioning is not None else ConditioningMaps(zoo, zoo.output_dir / "conditioning")
        self.gen = zoo.spec.generation
        base_idx = zoo.spec.bases.index(game.base)
        self.family = base_family(zoo, base_idx)
        self.device = resolve_device(self.gen.device)
        self.dtype = resolve_dtype(self.gen.dtype, self.device, self.family.cuda_dtype)
        self._on_event = on_event or (lambda msg: None)
        self.base_src = model_source(zoo, game.base.model, game.base.revision, ("bases", base_idx), allow_pickle)
        self._kind_classes = dict(KINDS)  # the kinds registered now, in order
        # kind -> its players (zoo order); every player of the zoo, whether in a coalition or not
        self.players: dict[str, list] = {
            kind: [cls(self, spec, i) for i, spec in enumerate(cls.specs(zoo))] for kind, cls in KINDS.items()
        }
        self._by_name = {p.name: p for ps in self.players.values() for p in ps}
        self.pipe = None
        # what each kind keeps on this engine (its State: the ControlNet pipelines per active set, ...)
        self._states = {kind: cls.State() for kind, cls in self._kind_classes.items()}
        self._active: tuple | None = None
        self.switches = 0
        self._identity_cache: dict | None = None
        # Text embeddings per batch of (prompt, negative) pairs, reused by every coalition whose
        # active players leave the text encoder alone (the embeddings then do not depend on the coalition).
        self.embedding_cache = True
        self._embeds: dict[tuple, tuple] = {}
        self.embedding_hits = 0
        self.switch_seconds = 0.0  # time spent switching players on and off

    def _kinds(self):
        return self._kind_classes.items()

    def state(self, kind_cls):
        """The kind's own state on this engine (an instance of ``kind_cls.State``)."""
        return self._states[kind_cls.kind]

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

    def _active_players(self, members: tuple[bool, ...]) -> dict[str, list]:
        """kind -> active player objects, in zoo order."""
        names = self.game.active_by_kind(members)
        return {kind: [p for p in ps if p.name in names.get(kind, ())] for kind, ps in self.players.items()}

    def image_fields(self, members: tuple[bool, ...], item: WorkItem) -> dict:
        """Everything that determines an image. Its hash is the cache key."""
        from ..families import family_settings

        base_on = self.game.base_active(members)
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
            # quantisation, VAE tiling / slicing (generation.memory): only when set, so other keys do not change
            **({"memory": memory} if (memory := self.gen.memory.image_key()) else {}),
        })
        if self.family.name != "sd":  # SD1.x/2.x keys predate families and stay as they were
            fields["family"] = self.family.name
            fields["family_settings"] = family_settings(self.family, self.gen)
        return fields

    # -- loading -------------------------------------------------------------------------------
    def load(self) -> None:
        if self.pipe is not None:
            return
        from ..common.model_lock import MODEL_BUILD_LOCK

        with MODEL_BUILD_LOCK:  # no backbone is built in another thread meanwhile (see the lock's comment)
            self._load()

    def _load(self) -> None:
        import diffusers

        _quiet_diffusers()
        base = self.game.base
        loc = ("bases", self.zoo.spec.bases.index(base))
        pipe_cls = getattr(diffusers, self.family.pipeline)
        from .memory import place_pipeline, quantization_config

        common = dict(torch_dtype=self.dtype, **self.family.load_kwargs)
        quant = quantization_config(self.gen.memory, self.family, self.dtype)
        self._on_event(f"loading base {base.name} ({self.family.title})")
        try:
            src = self.base_src
            if src.local is not None and src.local.is_file():
                if quant is not None:
                    raise self.zoo.fail("quantize applies to diffusers folders and hub ids, not to single-file "
                                        f"checkpoints ({src.local.name}); expected quantize: none", "generation", "memory")
                self.pipe = pipe_cls.from_single_file(str(src.local), config=config_arg(self.zoo, base.config), **common)
            else:
                self.pipe = pipe_cls.from_pretrained(
                    str(src.local) if src.local is not None else src.value,
                    revision=base.revision,
                    variant=base.variant,
                    use_safetensors=not self.allow_pickle,
                    **({"quantization_config": quant} if quant is not None else {}),
                    **common,
                )
        except CopyscopeError:
            raise
        except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds; the user needs one line
            raise hub_error(self.zoo, exc, self.base_src, loc) from None
        self._set_scheduler()
        if getattr(self.pipe, "transformer_2", None) is not None and self.players.get("lora"):
            from ..families.wan import TWO_EXPERTS  # Wan2.2's second expert; refused at validate where it can be seen

            raise self.zoo.fail(f"base {base.name!r} is a two-expert Wan2.2 checkpoint (transformer_2): {TWO_EXPERTS}",
                                "loras", 0, "model")
        place_pipeline(self.pipe, self.gen.memory, self.device)
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

        n_states = 2 ** sum(len(self.players[k]) for k, cls in self._kinds() if cls.changes_denoiser_graph)
        dyn = torch._dynamo.config
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(dyn, name):
                setattr(dyn, name, max(getattr(dyn, name), min(n_states + 8, 1024)))
        self._on_event(f"compiling the {self.family.denoiser} (torch.compile)")
        getattr(self.pipe, self.family.denoiser).compile(fullgraph=False, dynamic=False)

    def _set_scheduler(self) -> None:
        # the name (config.GenerationSpec) and its family (players.check_player_families) are checked
        # before anything loads
        name = self.gen.scheduler
        if name is not None:
            import diffusers

            cls = getattr(diffusers, SCHEDULERS[name])
            self.pipe.scheduler = cls.from_config(self.pipe.scheduler.config)

    # -- switching -----------------------------------------------------------------------------
    def player(self, name: str):
        """The player object called ``name`` (any kind)."""
        return self._by_name[name]

    def set_strength(self, name: str, value: float) -> None:
        """Set a player's strength (its kind's ``strength_field``: a LoRA's weight, a ControlNet's conditioning
        scale, an IP-Adapter's scale). Image keys read the spec, so the cache keeps each strength apart; the next
        coalition switches again, so the pipeline uses the new value."""
        player = self._by_name[name]
        setattr(player.spec, type(player).strength_field, float(value))
        self._active = None

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
        """Images (float32 HxWx3 in [0,1]) for one coalition and a batch of work items; a video family's videos as
        film strips (H x (F*W) x 3, its frames side by side: copyscope.score.frames)."""
        import torch

        from ..families import family_call_kwargs

        base_on = self.game.base_active(members)
        h, w = self.gen.size
        if not base_on:
            # The null generator used when the base is a player: a coalition without the base
            # produces uniform mid-grey images (docs/zoo.md, "Base as context or player").
            return [np.full((h, w * self.family.frame_count(self.gen), 3), 0.5, dtype=np.float32) for _ in items]
        self.load()
        pipe = self.activate(members)
        active = self._active_players(members)
        negatives = [i.negative for i in items] if any(i.negative for i in items) else None
        if not self.family.takes_negative_prompt(self.gen):
            negatives = None  # e.g. Flux without true CFG has no negative prompt
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
        if negatives is None:  # the pipeline's own default: Sana's is "" and it cannot take None
            kwargs.pop("negative_prompt")
        for kind, cls in self._kinds():
            cls.call_kwargs(self, active[kind], items, kwargs)
        te_touched = any(p.touches_text_encoder() for ps in active.values() for p in ps)
        if self.embedding_cache and self.family.embedding_cache and not te_touched:
            embeds, negative_embeds = self._prompt_embeddings(pipe, kwargs.pop("prompt"), kwargs.pop("negative_prompt", None))
            kwargs["prompt_embeds"] = embeds
            if negative_embeds is not None:
                kwargs["negative_prompt_embeds"] = negative_embeds
        with torch.inference_mode():
            out = pipe(**kwargs)
        if self.family.video:  # (batch, frames, H, W, 3): each video one film strip
            from ..score.frames import to_strip

            return [to_strip(video) for video in out.frames]
        return [np.asarray(im, dtype=np.float32) for im in out.images]

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
        for kind, cls in self._kinds():
            for p in self.players[kind]:
                p.release()
            self._states[kind] = cls.State()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - best effort: freeing cached GPU memory must never fail a release
            pass
