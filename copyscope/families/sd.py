"""Stable Diffusion 1.x / 2.x: the family of a base whose family cannot be told (image keys predate families)."""

from .base import Family

FAMILY = Family(
    "sd", "Stable Diffusion 1.x/2.x", "StableDiffusionPipeline", "StableDiffusionControlNetPipeline", "ControlNetModel",
    "unet", ("StableDiffusionPipeline",), embedding_cache=True, ip_adapter=True, textual_inversion=True,
    load_kwargs={"safety_checker": None, "requires_safety_checker": False},
    nominal=("stable-diffusion-v1-5", {"denoiser": 859.5e6, "text_encoder": 123.1e6, "vae": 83.7e6}),
)
ALIASES = {"sd1": "sd", "sd15": "sd", "sd1.5": "sd", "sd2": "sd", "sd21": "sd", "sd2.1": "sd"}
