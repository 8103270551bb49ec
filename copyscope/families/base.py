"""What a pipeline family is: the diffusers classes that run its bases, what it can do (its capabilities), its
own generation settings and call arguments. One module per family in this package holds one :class:`Family`;
``copyscope.families`` registers them (docs/ARCHITECTURE.md "Adding a pipeline family")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Family:
    name: str  # the zoo's `family:` value and the image key's "family" field
    title: str  # in messages ("Stable Diffusion XL")
    pipeline: str  # diffusers text-to-image pipeline class
    controlnet_pipeline: str | None  # its ControlNet pipeline class; None: diffusers has none (ControlNets refused)
    controlnet_model: str | None
    denoiser: str  # "unet" or "transformer"
    model_index_classes: tuple[str, ...]  # model_index.json "_class_name" values of this family
    cuda_dtype: str = "float16"
    control_arg: str = "image"  # the ControlNet pipeline's argument for the conditioning image
    negative_prompt: bool = True  # the pipeline takes negative_prompt
    embedding_cache: bool = False  # prompt embeddings are reused across coalitions (SD only so far)
    flow_matching: bool = False  # the SD schedulers (generation.scheduler) do not apply
    load_kwargs: dict = field(default_factory=dict)
    ip_adapter: bool = False  # diffusers loads IP-Adapters into its pipeline
    textual_inversion: bool = False  # diffusers loads textual-inversion embeddings into it
    # LoRA files (copyscope.families.lora_detection, copyscope.modelfiles.lora_layouts): the layouts its diffusers loader
    # reads (names of lora_layouts.LORA_LAYOUTS, measured with files of independent producers), the pipeline components
    # it loads (`_lora_loadable_modules`: a diffusers/peft file's tensors for any other are dropped, or, as
    # `lora_other_components` says, stop the loading), tensor names only its LoRAs have where no diffusers loader
    # converts them (SD3's original joint_blocks) or that tell UNet families apart, and configurations of its denoiser
    # (overrides of the default one) whose extra layers its LoRAs may name (Flux.1-dev's guidance embedder)
    lora_layouts: frozenset[str] = frozenset({"diffusers"})
    lora_components: tuple[str, ...] = ("transformer",)
    lora_other_components: str = "would be dropped"
    lora_names: str | None = None
    denoiser_variants: tuple[dict, ...] = ()
    # single-file checkpoints: a regex one of its tensor names matches (families registered later are tried first);
    # None: not told from a single file (its pipeline has no from_single_file, or it is the fallback: SD1.x/2.x)
    single_file_keys: str | None = None
    # (reference checkpoint, parameters per component: "denoiser", "text_encoder", ..., "vae"): the memory estimate's
    # counts for a hub base of the family not downloaded yet (copyscope.plan.memory); None: such a base is not counted
    nominal: tuple[str, dict[str, float]] | None = None
    # `generation.<name>` in the zoo file (a pydantic model), part of every image key of the family; None: no settings
    settings: type | None = None
    # (settings, (height, width)) -> the pipeline-call arguments only this family takes
    call_arguments: Callable[[Any, tuple[int, int]], dict] | None = None
    # settings -> whether the pipeline gets a negative prompt although `negative_prompt` is False (Flux's true CFG)
    negative_prompt_if: Callable[[Any], bool] | None = None
    # the diffusers class whose `from_pipe` makes the family's img2img pipeline over the loaded base (the positive
    # controls); None: diffusers has none (positive controls are skipped; `controls.positive: true` is refused)
    img2img: str | None = "AutoPipelineForImage2Image"
    # the most ControlNets its ControlNet pipeline takes at once (Qwen-Image, Z-Image, Sana: 1); None: any number (a
    # list, which the SD, SDXL, SD3 and Flux pipelines wrap in their multi-ControlNet models)
    max_controlnets: int | None = None
    # what its pipeline requires of height and width whatever the settings (its `check_inputs` raises or resizes
    # otherwise); generation.resolution is a multiple of 8 already
    size_multiple: int = 8
    # (settings, (height, width)) -> why the pipeline cannot generate with these settings (None: it can), for the rules
    # that depend on the settings (Sana: sides divisible by 32 with its resolution binning off); refused before
    # anything loads
    check_generation: Callable[[Any, tuple[int, int]], str | None] | None = None
    # the pipeline makes videos (`.frames`, its settings' `num_frames` each): the engine stores a video as one
    # film-strip image (frames side by side), the scorer scores it frame by frame (copyscope.score.frames)
    video: bool = False
    # (zoo, base index) -> refuses, with zoo.fail, a base of the family that the audit cannot run as configured
    # (Wan2.2's two experts with LoRA players); called by players.check_player_families before anything loads
    check_base: Callable[[Any, int], None] | None = None

    @property
    def controlnet(self) -> bool:
        return self.controlnet_pipeline is not None

    def settings_of(self, gen) -> Any:
        """This family's settings in a zoo's ``generation:`` (None when it has none)."""
        return getattr(gen, self.name, None) if self.settings is not None else None

    def call_kwargs(self, gen) -> dict:
        return self.call_arguments(self.settings_of(gen), tuple(gen.size)) if self.call_arguments else {}

    def frame_count(self, gen) -> int:
        """Frames of each generation: its settings' ``num_frames`` for a video family, 1 for an image family."""
        return int(self.settings_of(gen).num_frames) if self.video else 1

    def generation_problem(self, gen) -> str | None:
        """Why the family's pipeline cannot generate ``gen`` (the size multiple, then ``check_generation``); None: it can."""
        h, w = gen.size
        m = self.size_multiple
        if h % m or w % m:
            return (f"{self.title} takes sides that are multiples of {m} (its pipeline raises or resizes otherwise), got "
                    f"{h}x{w}; expected a resolution in multiples of {m}")
        return self.check_generation(self.settings_of(gen), (h, w)) if self.check_generation else None

    def takes_negative_prompt(self, gen) -> bool:
        return self.negative_prompt or bool(self.negative_prompt_if and self.negative_prompt_if(self.settings_of(gen)))
