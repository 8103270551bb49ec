"""Stage 1 — config: the zoo file's schema (:mod:`.schema`, :mod:`.generation`; player sections come
from the registered player kinds), loading with line numbers in errors (:mod:`.loading`), and the
validated :class:`Zoo` (:mod:`.zoo`)."""

from __future__ import annotations

from .base import MAX_NAME_LENGTH, MAX_WEIGHT, Float, Int, NamedSpec, Strict_, check_name  # noqa: F401
from .generation import (  # noqa: F401
    MAX_BATCH, MAX_GUIDANCE, MAX_SEED, MAX_SEEDS, MAX_SIDE, SCHEDULERS, AdaptiveSeeds, GenerationSpec,
)
from .kinds import zoo_spec_model
from .loading import MAX_YAML_VALUES, load_zoo, parse_zoo  # noqa: F401
from .schema import (  # noqa: F401
    HUB_ID_RE, IMAGE_SUFFIXES, MAX_BOOTSTRAP, MAX_BUDGET, PICKLE_SUFFIXES, BaseSpec, EstimatorSpec, PromptSpec,
    ReferenceSpec, is_hub_id, stem,
)
from .zoo import Zoo, iter_reference_files, render_prompt  # noqa: F401


def __getattr__(name: str):
    # ZooSpec is built from the player kinds registered when it is asked for
    if name == "ZooSpec":
        return zoo_spec_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
