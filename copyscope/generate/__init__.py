"""The generate stage: the engine that assembles each coalition's pipeline (:mod:`.engine`), the
generate-into-cache loop with its background queue (:mod:`.loop`), and the content-addressed image cache
(:mod:`.cache`, administered by :mod:`.cache_admin`). Model files are checked and located before this stage
(:mod:`copyscope.modelfiles`)."""

from __future__ import annotations

from .engine import GENERATOR_VERSION, CoalitionEngine, resolve_device, resolve_dtype  # noqa: F401
from .loop import BackgroundQueue, GenerationStats, ensure_images, image_flags  # noqa: F401
