"""Stable Diffusion 1.x / 2.x: the family of a base whose family cannot be told (image keys predate families)."""

from .base import Family

FAMILY = Family(
    "sd", "Stable Diffusion 1.x/2.x", "StableDiffusionPipeline", "StableDiffusionControlNetPipeline", "ControlNetModel",
    "unet", ("StableDiffusionPipeline",), embedding_cache=True, ip_adapter=True, textual_inversion=True,
    load_kwargs={"safety_checker": None, "requires_safety_checker": False},
    nominal=("stable-diffusion-v1-5", {"denoiser": 859.5e6, "text_encoder": 123.1e6, "vae": 83.7e6}),
    lora_layouts=frozenset({"diffusers", "diffusers-legacy", "kohya"}), lora_components=("unet", "text_encoder"),
    # SD1.x/2.x put attention in the first down block (SGM names: input_blocks.1.1)
    lora_names=r"^unet\.down_blocks\.0\.attentions\.|lora_unet_down_blocks_0_attentions_|lora_unet_input_blocks_1_1_",
    single_file_keys=r"^model\.diffusion_model\.",  # tried last: ComfyUI files of transformer families start so too
)
ALIASES = {"sd1": "sd", "sd15": "sd", "sd1.5": "sd", "sd2": "sd", "sd21": "sd", "sd2.1": "sd"}
