"""CLIP and DINOv2 vision towers from transformers, loaded from a folder or the local hub cache only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from copyscope.common.errors import MissingDependency

from .backbone_base import (
    _HUB_ID,
    DEFAULT_SOURCES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    Backbone,
    _center_crop,
    _resize_tensor,
    _rows_by_shape,
    _shortest_edge_size,
    _torch,
    hash_weights,
)
from .base import MAX_BATCH, Option

__all__ = ["HFBackbone", "CLIPBackbone", "DINOv2Backbone"]


class HFBackbone(Backbone):
    """CLIP or DINOv2 vision tower from transformers, loaded from a folder or the local hub cache only."""

    OPTIONS = {"batch_size": Option(16, int, minimum=1, maximum=MAX_BATCH, affects_output=False, help="images per forward pass")}
    MODEL_CLASS: ClassVar[str] = ""
    DEFAULT_MEAN: ClassVar[tuple[float, ...]] = IMAGENET_MEAN
    DEFAULT_STD: ClassVar[tuple[float, ...]] = IMAGENET_STD
    RESIZE_RATIO: ClassVar[float] = 1.0  # default shortest edge = crop * ratio (no preprocessor config)

    def __init__(self, source: str | None, device: str = "cpu", allow_pickle: bool = False, **options: Any):
        super().__init__(device, **options)
        self.source = source or DEFAULT_SOURCES[self.key]
        self.explicit_source = source is not None
        self.allow_pickle = allow_pickle
        self._resolved: tuple[str | None, str, str] | None = None  # (folder, weights id, reason)
        self._model = None
        self._prep: dict[str, Any] | None = None

    # -- locating weights -------------------------------------------------------------------------------
    def _hint(self) -> str:
        return (
            f"set backbones.{self.key} in the zoo file to a local folder saved with save_pretrained "
            f"(safetensors), or download the hub id on a machine with hub access "
            f"(`huggingface-cli download {self.source}`); copyscope never downloads weights"
        )

    def _resolve(self) -> tuple[str | None, str, str]:
        from copyscope.modelfiles.sources import cached_snapshot, pickle_only_parts

        if self._resolved is not None:
            return self._resolved
        src = os.path.expanduser(self.source)
        folder: str | None = None
        weights_id = ""
        reason = ""
        if os.path.isdir(src):
            folder = src
        elif os.path.exists(src):
            reason = f"backbones.{self.key}: {self.source} is a file; expected a model folder or a hub id"
        elif not _HUB_ID.match(self.source):
            reason = f"backbones.{self.key}: folder {self.source} not found; {self._hint()}"
        else:
            snapshot = cached_snapshot(self.source)
            if snapshot is not None:
                folder = str(snapshot)
                weights_id = f"hub:{self.source}@{snapshot.name}"
            else:
                reason = (
                    f"{self.key}: '{self.source}' is neither a local folder nor a hub id in the local "
                    f"Hugging Face cache; {self._hint()}"
                )
        if folder is not None:
            names = set(os.listdir(folder))
            has_st = any(n.endswith(".safetensors") for n in names)
            pickle_only = "." in pickle_only_parts(Path(folder))  # the zoo models' pickle policy
            if "config.json" not in names:
                reason = f"backbones.{self.key}: {self.source} has no config.json; {self._hint()}"
                folder = None
            elif not has_st and not (pickle_only and self.allow_pickle):
                reason = (
                    f"backbones.{self.key}: {self.source} has no .safetensors weights"
                    + (" (only pickle weights: pass --allow-pickle to accept them)" if pickle_only else "")
                    + f"; {self._hint()}"
                )
                folder = None
            elif not weights_id:
                weights_id = hash_weights(folder)
        self._resolved = (folder, weights_id, reason)
        return self._resolved

    def availability(self) -> tuple[bool, str]:
        folder, _, reason = self._resolve()
        return (True, "") if folder else (False, reason)

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp.update({"source": self.source, "weights": self._resolve()[1] or None})
        return fp

    # -- model ------------------------------------------------------------------------------------------
    def _load(self):
        if self._model is not None:
            return self._model
        self.require()
        torch = _torch()
        import transformers

        folder = self._resolve()[0]
        cls = getattr(transformers, self.MODEL_CLASS)
        use_st = any(n.endswith(".safetensors") for n in os.listdir(folder))
        try:
            model = cls.from_pretrained(folder, local_files_only=True, use_safetensors=use_st)
        except Exception as e:  # noqa: BLE001
            raise MissingDependency(f"{self.key}: could not load {self.source} as {self.MODEL_CLASS}: {e}") from e
        self._model = model.to(torch.device(self.device)).eval()
        self._prep = self._preprocessing(folder, model.config)
        return self._model

    def _preprocessing(self, folder: str, config) -> dict[str, Any]:
        """Resize / crop / normalisation from preprocessor_config.json when present, else family defaults."""
        crop = int(getattr(config, "image_size", 224))
        prep: dict[str, Any] = {
            "resize": ("shortest_edge", int(round(crop * self.RESIZE_RATIO))),
            "crop": (crop, crop),
            "mean": self.DEFAULT_MEAN,
            "std": self.DEFAULT_STD,
        }
        path = Path(folder) / "preprocessor_config.json"
        if path.is_file():
            cfg = json.loads(path.read_text())
            size = cfg.get("size")
            if cfg.get("do_resize", True) is False:
                prep["resize"] = None
            elif isinstance(size, int):
                prep["resize"] = ("shortest_edge", size)
            elif isinstance(size, dict) and "shortest_edge" in size:
                prep["resize"] = ("shortest_edge", int(size["shortest_edge"]))
            elif isinstance(size, dict) and "height" in size:
                prep["resize"] = ("exact", (int(size["height"]), int(size["width"])))
            cs = cfg.get("crop_size")
            if cfg.get("do_center_crop", True) is False:
                prep["crop"] = None
            elif isinstance(cs, int):
                prep["crop"] = (cs, cs)
            elif isinstance(cs, dict) and "height" in cs:
                prep["crop"] = (int(cs["height"]), int(cs["width"]))
            if cfg.get("do_normalize", True) is False:
                prep["mean"], prep["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
            else:
                prep["mean"] = tuple(cfg.get("image_mean", prep["mean"]))
                prep["std"] = tuple(cfg.get("image_std", prep["std"]))
        return prep

    def _prepare(self, img: np.ndarray):
        torch = _torch()
        p = self._prep
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        if p["resize"] is not None:
            how, val = p["resize"]
            size = _shortest_edge_size(x.shape[1], x.shape[2], val) if how == "shortest_edge" else val
            x = _resize_tensor(x, size)
        if p["crop"] is not None:
            x = _center_crop(x, p["crop"])
        mean = torch.tensor(p["mean"], dtype=x.dtype)[:, None, None]
        std = torch.tensor(p["std"], dtype=x.dtype)[:, None, None]
        return (x - mean) / std

    def _forward(self, model, x):
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return int(self._load().config.hidden_size)

    def _embed(self, images):
        torch = _torch()
        model = self._load()
        tensors = [self._prepare(im) for im in images]

        def run(chunk):
            x = torch.stack([tensors[i] for i in chunk]).to(self.device)
            return self._forward(model, x).float().cpu().numpy()

        with torch.inference_mode():
            return _rows_by_shape([t.shape for t in tensors], self.options["batch_size"], run)


class CLIPBackbone(HFBackbone):
    key = "clip"
    MODEL_CLASS = "CLIPVisionModelWithProjection"
    DEFAULT_MEAN = OPENAI_CLIP_MEAN
    DEFAULT_STD = OPENAI_CLIP_STD
    RESIZE_RATIO = 1.0

    @property
    def dim(self) -> int:
        cfg = self._load().config
        return int(getattr(cfg, "projection_dim", None) or cfg.hidden_size)

    def _forward(self, model, x):
        return model(pixel_values=x).image_embeds


class DINOv2Backbone(HFBackbone):
    key = "dinov2"
    MODEL_CLASS = "Dinov2Model"
    RESIZE_RATIO = 256 / 224

    def _forward(self, model, x):
        return model(pixel_values=x).pooler_output
