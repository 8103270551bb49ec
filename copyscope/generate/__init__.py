"""Generation: model sources and every check before loading (:mod:`.sources`), the engine that
assembles each coalition's pipeline (:mod:`.engine`), and the generate-into-cache loop with its
background queue (:mod:`.generate`)."""

from __future__ import annotations

from ..players import check_lora_fits, check_player_families  # noqa: F401
from .engine import GENERATOR_VERSION, CoalitionEngine, resolve_device, resolve_dtype  # noqa: F401
from .loop import BackgroundQueue, GenerationStats, ensure_images, image_flags  # noqa: F401
from ..modelfiles.sources import (  # noqa: F401
    ModelSource, hub_error, load_control, model_source, safetensors_header,
)
