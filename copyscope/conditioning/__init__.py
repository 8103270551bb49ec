"""ControlNet conditioning maps computed from a protected work (or any image) by a named detector.

A zoo's ControlNet may say ``conditioning: {from_work: W, detector: depth, model: ...}`` (or
``from_image: path``) instead of naming a ready-made map file. This module runs the detector on the
source image, resized to the generation size, and caches the map in ``<output>/conditioning/``
under the hash of (detector, its weights, its parameters, the source image's bytes, the size): an
unchanged entry is reused without running the detector again, a changed parameter is a new map with
a new key, and that key is part of every image key of a coalition with the ControlNet.

Detectors: ``canny`` (scikit-image, no weights), ``pseudo_depth`` (blurred, min-max normalised
luminance: a stand-in for a depth map, no weights), ``depth`` (a transformers depth-estimation model:
DPT, Depth Anything, ...; safetensors from a local folder or a hub id), and controlnet-aux's
annotators by their processor id (``depth_midas``, ``lineart_realistic``, ``softedge_hed``,
``openpose``, ...), an optional extra imported only when used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..common.files import atomic_write_bytes, atomic_write_text, canonical_json, key_of, png_bytes, sha256_bytes, to_uint8
from ..common.errors import CopyscopeError, MissingDependency
from ..common.inputs import image_sha256
from .detectors import (  # noqa: F401  (re-exported: copyscope.conditioning.canny, ...)
    ANNOTATOR_HUB_DEFAULT,
    ANNOTATORS,
    BUILTIN_PARAMS,
    PROMPT_WORK,
    canny,
    check_detector,
    detector_names,
    DetectorSource,
    load_annotator,
    load_depth_model,
    luminance,
    pseudo_depth,
    require_annotators,
    run_annotator,
    run_depth,
)

if TYPE_CHECKING:
    from ..config.zoo import Zoo

# Bump when a change here changes the maps a detector produces: part of every map key.
CONDITIONING_VERSION = 1


# ------------------------------------------------------------------------------------------- map cache

@dataclass
class MapEntry:
    controlnet: str
    index: int  # the map's position among this ControlNet's maps (one per reference image with reference: each)
    source: Path
    work: str | None
    key: str
    path: Path


class ConditioningMaps:
    """The computed conditioning maps of a zoo, cached in ``out_dir`` (``<output>/conditioning``)."""

    def __init__(self, zoo: "Zoo", out_dir: Path, allow_pickle: bool = False, device: str = "cpu"):
        self.zoo = zoo
        self.out_dir = Path(out_dir)
        self.allow_pickle = allow_pickle
        self.device = device
        self.computed = 0  # maps this process ran a detector for (cache misses)
        self._loaded: dict[tuple, object] = {}
        self._entries: dict[tuple[int, int, str | None], MapEntry] = {}  # (controlnet, map index, work)

    # -- what the zoo asks for ----------------------------------------------------------------------
    def _loc(self, i: int, *rest) -> tuple:
        return ("controlnets", i, "conditioning", *rest)

    def detector_controlnets(self) -> list[int]:
        return [i for i, cn in enumerate(self.zoo.spec.controlnets) if cn.conditioning.detector is not None]

    def works(self, i: int) -> list[str | None]:
        """The works ControlNet ``i`` reads: its ``from_work``, each prompt's own work with
        ``from_work: "{work}"``, or [None] for ``from_image``."""
        c = self.zoo.spec.controlnets[i].conditioning
        if c.from_work == PROMPT_WORK:
            return list(dict.fromkeys(p.work for p in self.zoo.spec.prompts))
        return [c.from_work]

    def sources(self, i: int, work: str | None = None) -> list[tuple[Path, str | None]]:
        """(source image, work) of each map of ControlNet ``i`` (for prompts of ``work`` when it
        reads each prompt's own work)."""
        from ..config.zoo import iter_reference_files

        c = self.zoo.spec.controlnets[i].conditioning
        work = work if c.from_work == PROMPT_WORK else c.from_work
        if c.from_image is not None:
            from ..common.inputs import check_image_file

            path = self.zoo.resolve_path(c.from_image)
            # a regular image file within the pixel limit (a FIFO, a folder or a bomb is named as such)
            what = check_image_file(path)
            if what is not None:
                what = f"not found (looked at {path})" if what == "not found" else f"is {what}"
                raise self.zoo.fail(f"conditioning source {c.from_image!r} {what}", *self._loc(i, "from_image"))
            return [(path, None)]
        files = iter_reference_files(self.zoo)[work]
        if c.reference == "each":
            return [(f, work) for f in files]
        if isinstance(c.reference, int):
            if not -len(files) <= c.reference < len(files):
                raise self.zoo.fail(f"work {work!r} has {len(files)} reference image(s); index {c.reference} is out "
                                    "of range", *self._loc(i, "reference"))
            return [(files[c.reference], work)]
        named = [f for f in files if f.name == c.reference]
        if not named:
            raise self.zoo.fail(f"work {work!r} has no reference image named {c.reference!r}; it has "
                                f"{', '.join(f.name for f in files)}", *self._loc(i, "reference"))
        return [(named[0], work)]

    def detector_source(self, i: int) -> DetectorSource:
        c = self.zoo.spec.controlnets[i].conditioning
        value = c.model or (ANNOTATOR_HUB_DEFAULT if c.detector in ANNOTATORS and ANNOTATORS[c.detector][1] else None)
        if value is None:
            return DetectorSource(None, None, None)
        if not self.zoo.is_local(value):
            return DetectorSource(value, None, c.revision)
        path = self.zoo.resolve_path(value)
        if not path.exists():
            raise self.zoo.fail(f"detector model {value!r} not found (looked at {path})", *self._loc(i, "model"))
        return DetectorSource(value, path, c.revision)

    def check(self) -> None:
        """Everything that can fail before a detector runs: sources, weights on disk or in the hub
        cache when offline, the pickle policy, the controlnet-aux extra. Raises one-line errors."""
        from ..modelfiles.sources import cached_snapshot, hub_offline

        for i in self.detector_controlnets():
            c = self.zoo.spec.controlnets[i].conditioning
            for work in self.works(i):
                self.sources(i, work)
            src = self.detector_source(i)
            if c.detector in ANNOTATORS:
                if ANNOTATORS[c.detector][1] and not self.allow_pickle:
                    raise self.zoo.fail(f"detector {c.detector!r} (controlnet-aux) loads pickle .pth weights, which can run "
                                        "code when loaded; pass --allow-pickle if you trust them", *self._loc(i, "detector"))
                try:
                    require_annotators(c.detector)
                except MissingDependency as exc:
                    raise self.zoo.fail(str(exc), *self._loc(i, "detector")) from None
            if src.value is None:
                continue
            if src.local is not None and c.detector == "depth":
                self._check_local_weights(i, src)
            elif src.local is None and hub_offline() and cached_snapshot(src.value, src.revision) is None:
                raise self.zoo.fail(
                    f"detector weights {src.value!r} are not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                    f"download them first (huggingface-cli download {src.value}) or point 'model' at a local folder",
                    *self._loc(i, "model"))

    def _check_local_weights(self, i: int, src: DetectorSource) -> None:
        root = src.local
        if root.is_file():
            raise self.zoo.fail(f"{root.name}: expected a folder holding config.json and model.safetensors", *self._loc(i, "model"))
        names = {p.name for p in root.iterdir()}
        if "config.json" not in names:
            raise self.zoo.fail(f"detector model folder {src.value!r} has no config.json", *self._loc(i, "model"))
        safe = any(n.endswith(".safetensors") for n in names)
        pickled = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
        if not safe and not (pickled and self.allow_pickle):
            what = ("has pickle weights only (.bin), which can run code when loaded; convert them to .safetensors, or "
                    "pass --allow-pickle if you trust them") if pickled else "holds no weights (*.safetensors)"
            raise self.zoo.fail(f"detector model folder {src.value!r} {what}", *self._loc(i, "model"))

    # -- keys and maps --------------------------------------------------------------------------
    def map_fields(self, i: int, source: Path) -> dict:
        c = self.zoo.spec.controlnets[i].conditioning
        h, w = self.zoo.spec.generation.size
        return {
            "copyscope_conditioning": CONDITIONING_VERSION,
            "detector": c.detector,
            "weights": self.detector_source(i).identity(),
            "params": dict(sorted(c.params.items())),
            "source_sha256": image_sha256(source),  # the file and its EXIF orientation
            "size": [h, w],
        }

    def entry(self, i: int, index: int = 0, work: str | None = None) -> MapEntry:
        """The map ``index`` of ControlNet ``i`` (for a prompt of ``work``), computed (or read from
        the cache) on first use."""
        if self.zoo.spec.controlnets[i].conditioning.from_work != PROMPT_WORK:
            work = None
        memo = (i, index, work)
        if memo not in self._entries:
            sources = self.sources(i, work)
            source, source_work = sources[min(index, len(sources) - 1)]
            fields = self.map_fields(i, source)
            key = key_of(fields)
            c = self.zoo.spec.controlnets[i].conditioning
            path = self.out_dir / f"{c.detector}-{key[:16]}.png"
            if not _intact(path, key):
                self._write(path, key, fields, self._run(i, source), source, source_work)
            self._entries[memo] = MapEntry(self.zoo.spec.controlnets[i].name, index, source, source_work, key, path)
        return self._entries[memo]

    def _run(self, i: int, source: Path) -> np.ndarray:
        from PIL import Image

        from ..common.inputs import load_image_rgb

        c = self.zoo.spec.controlnets[i].conditioning
        h, w = self.zoo.spec.generation.size
        image = load_image_rgb(source)
        if image.shape[:2] != (h, w):
            image = np.asarray(Image.fromarray(to_uint8(image)).resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0
        self.computed += 1
        if c.detector == "canny":
            return canny(image, **c.params)
        if c.detector == "pseudo_depth":
            return pseudo_depth(image, **c.params)
        loaded = self._load(i)
        if c.detector == "depth":
            return run_depth(loaded, image)
        return run_annotator(c.detector, loaded, image, c.params)

    def _load(self, i: int):
        c = self.zoo.spec.controlnets[i].conditioning
        src = self.detector_source(i)
        memo = (c.detector, src.value, src.revision)
        if memo not in self._loaded:
            try:
                self._loaded[memo] = (load_depth_model(src, self.allow_pickle, self.device) if c.detector == "depth"
                                      else load_annotator(c.detector, src))
            except CopyscopeError as exc:
                raise self.zoo.fail(str(exc), *self._loc(i, "detector")) from None
            except Exception as exc:  # noqa: BLE001 - transformers/hub raise many kinds; the user needs one line
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                raise self.zoo.fail(f"cannot load detector {c.detector!r} weights {src.value!r} "
                                    f"({exc.__class__.__name__}: {first})", *self._loc(i, "model")) from None
        return self._loaded[memo]

    def _write(self, path: Path, key: str, fields: dict, image: np.ndarray, source: Path, work: str | None) -> None:
        data = png_bytes(to_uint8(image))
        atomic_write_bytes(path, data)
        atomic_write_text(path.with_suffix(".json"), canonical_json(
            {"key": key, "fields": fields, "source": str(source), "work": work, "png_sha256": sha256_bytes(data)}))

    def compute_all(self, on_event: Callable[[str], None] = lambda msg: None) -> list[dict]:
        """Compute (or reuse) every map of the zoo; return one summary row per map (report.json)."""
        rows = []
        for i in self.detector_controlnets():
            cn = self.zoo.spec.controlnets[i]
            for work, index in [(w, k) for w in self.works(i) for k in range(len(self.sources(i, w)))]:
                before = self.computed
                e = self.entry(i, index, work)
                on_event(f"conditioning {cn.name}: {cn.conditioning.detector} of {e.source.name} -> {e.path.name}"
                         + ("" if self.computed > before else " (cached)"))
                rows.append({"controlnet": cn.name, "detector": cn.conditioning.detector, "index": index,
                             "work": e.work, "source": str(e.source), "map": str(e.path), "key": e.key})
        return rows


def _intact(path: Path, key: str) -> bool:
    try:
        info = json.loads(path.with_suffix(".json").read_text())
        return info.get("key") == key and sha256_bytes(path.read_bytes()) == info.get("png_sha256")
    except (OSError, ValueError):
        return False


def map_count(zoo: "Zoo") -> int:
    """How many maps each (prompt, seed) is generated with: the reference images of the work of a
    ControlNet with ``reference: each`` (1 otherwise). Several such ControlNets must agree."""
    counts = {}
    for i, cn in enumerate(zoo.spec.controlnets):
        c = cn.conditioning
        if c.detector is not None and c.reference == "each":
            maps = ConditioningMaps(zoo, Path("."))
            for work in maps.works(i):
                try:
                    counts[(i, work)] = len(maps.sources(i, work))
                except (CopyscopeError, KeyError):  # missing references: reported by the reference checks
                    counts[(i, work)] = 1
    if len(set(counts.values())) > 1:
        i = max(counts)[0]
        raise zoo.fail(f"'reference: each' needs the same number of reference images in every work it reads "
                       f"({sorted(set(counts.values()))}); they must agree", "controlnets", i, "conditioning", "reference")
    return next(iter(counts.values()), 1)
