"""What every analysis shares with the audit, so that an analysis is a module, a spec and a command.

:class:`AnalysisContext` (``open_analysis``) holds what the audit resolves in
:func:`copyscope.audit.prepare.prepare_audit`, by the same functions: the output folder (the audit's rule,
``outdir.resolve_output``, with the analysis's own subfolder of the zoo's ``output``), the image
cache (``prepare.open_cache``: images are shared with ``copyscope audit``), the device, the
generation-settings and model checks, the reference works, and one metric built and checked like
the audit's. Besides: CLIP embeddings cached per image, and writing the result JSON.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..common.errors import CopyscopeError
from ..generate.cache import ImageCache
from ..common.finite import finite_or_none  # noqa: F401  (the analyses' JSON numbers)
from ..score.scorer import ReferenceSet, within_rule, within_work_scores  # noqa: F401  (within-work aggregation: one source)

if TYPE_CHECKING:
    from ..config import Zoo


@dataclass
class AnalysisContext:
    zoo: Zoo
    out_dir: Path
    cache: ImageCache
    device: str
    allow_pickle: bool = False
    on_event: Callable[[str], None] = lambda msg: None
    t0: float = field(default_factory=time.perf_counter)
    _refs: ReferenceSet | None = None
    out_where: str | None = None  # how errors name the output folder ("--out DIR" or the zoo's output key)

    @property
    def refs(self) -> ReferenceSet:
        """The zoo's reference works (copyscope.score.scorer.ReferenceSet), loaded and checked once."""
        if self._refs is None:
            self._refs = ReferenceSet.from_zoo(self.zoo)
        return self._refs

    def check_models(self) -> None:
        """Every model path of the zoo resolves and obeys the pickle policy (the audit's check)."""
        from ..audit.prepare import check_model_sources

        check_model_sources(self.zoo, self.allow_pickle)

    def per_image_metric(self, spec, *loc, purpose: str = "this analysis"):
        """One per-image metric from a zoo spec (a name or {name: ..., options}), built on the
        audit's device and backbones and checked for availability; errors name ``loc``."""
        from ..score.metrics import build_metrics

        zoo = self.zoo
        try:
            (m,) = build_metrics([spec], zoo.spec.backbones, device=self.device, allow_pickle=self.allow_pickle)
        except CopyscopeError as exc:
            raise CopyscopeError(str(exc), where=zoo.where(*loc)) from None
        if m.kind != "per_image":
            raise zoo.fail(f"metric {m.name!r} compares sets of images; {purpose} needs a per-image metric "
                           "(e.g. clip, dinov2, ssim)", *loc)
        ok, why = m.availability()
        if not ok:
            raise zoo.fail(f"metric {m.name!r} is unavailable: {why}", *loc)
        return m

    def write(self, result: dict, filename: str, extra: dict[str, str] | None = None) -> dict:
        return write_analysis(result, self.out_dir, filename, self.t0, where=self.out_where, extra=extra)


def open_analysis(zoo, out: str | Path | None, subfolder: str, *, allow_pickle: bool = False,
                  on_event: Callable[[str], None] | None = None, t0: float | None = None) -> AnalysisContext:
    """The context of an analysis of a loaded zoo: output ``--out`` or ``<zoo output>/<subfolder>``,
    the shared image cache, the device; generation settings checked as the audit checks them."""
    from ..generate import resolve_device
    from ..common.outdir import OutputFolder, resolve_output
    from ..audit.prepare import check_generation, open_cache

    out_dir, where = resolve_output(zoo, out, subfolder)
    OutputFolder(out_dir, where=where).claim([])  # the audit's ownership rule, checked before any work
    cache = open_cache(zoo)
    check_generation(zoo)
    return AnalysisContext(zoo, out_dir, cache, resolve_device(zoo.spec.generation.device), allow_pickle,
                           on_event or (lambda msg: None), t0 if t0 is not None else time.perf_counter(),
                           out_where=where)


def refuse_videos(zoo, what: str) -> None:
    """An analysis that embeds whole generated images with CLIP (zero-shot identification) is not defined for a
    video family's film strips yet: refused in one line before anything loads."""
    from ..score.frames import video_frame_width

    if video_frame_width(zoo) is not None:
        raise zoo.fail(f"{what} identifies whole images with CLIP zero-shot, not defined for videos yet (a base is of a "
                       "video family: Wan); expected image-family bases", "bases")


def embed_cached(zs, cache, keys: Sequence[str], batch: int = 32) -> np.ndarray:
    """CLIP image embeddings of cached images, stored per image in the cache's features."""
    fid = "clip_zero_shot_image|" + json.dumps(zs.fingerprint(), sort_keys=True, default=str)
    rows = [cache.load_feature(fid, k) for k in keys]
    todo = [i for i, r in enumerate(rows) if r is None]
    for s in range(0, len(todo), batch):
        idx = todo[s : s + batch]
        feats = zs.embed([cache.load(keys[i]) for i in idx])
        for i, f in zip(idx, feats):
            cache.save_feature(fid, keys[i], f)
            rows[i] = f
    return np.stack(rows) if rows else np.zeros((0, 0))


def write_analysis(result: dict, out_dir: Path, filename: str, t0: float, where: str | None = None,
                   extra: dict[str, str] | None = None) -> dict:
    """Add the wall time and output folder to an analysis result, write it as ``out_dir/filename``
    (JSON), and ``extra`` text files (name -> text, e.g. a plot) beside it, in one run through the output
    folder's manifest (copyscope.common.outdir: never over a file copyscope did not write); return the result."""
    from ..common.files import atomic_write_text
    from ..common.outdir import OutputFolder, os_error_message

    result["wall_seconds"] = round(time.perf_counter() - t0, 3)
    result["output_dir"] = str(out_dir)
    try:
        extra = extra or {}
        with OutputFolder(Path(out_dir), where=where).run([filename, *extra], filename.removesuffix(".json")) as stage:
            atomic_write_text(stage / filename, json.dumps(result, indent=2))
            for name, text in extra.items():
                atomic_write_text(stage / name, text)
    except OSError as exc:
        raise os_error_message(exc) from None
    return result
