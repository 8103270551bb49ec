"""copyscope: attribute copying in Stable Diffusion pipelines to the models that cause it."""

__version__ = "0.1.0"
