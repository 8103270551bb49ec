"""The backbone interface (:class:`Backbone`: images -> memoised feature rows, ``availability``,
``fingerprint``, ``on_progress``) and the image helpers the backbones share. The backbones themselves:
:mod:`copyscope.score.metrics.backbones` (which re-exports these names), :mod:`.hf_backbones`, :mod:`.effnet`,
:mod:`.onnx_backbone`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from copyscope.common.files import tree_sha256
from copyscope.common.errors import MissingDependency
from copyscope.common.model_lock import MODEL_BUILD_LOCK
from copyscope.common.hubids import HUB_REPO_RE as _HUB_ID  # noqa: F401 (the one hub-id pattern, owner/name; re-exported)

from .base import Option


DEFAULT_SOURCES = {
    "clip": "openai/clip-vit-base-patch32",
    "dinov2": "facebook/dinov2-small",
}
BACKBONE_KEYS = ("clip", "dinov2", "sscd", "inception", "dreamsim", "effnet")  # keys of the zoo's `backbones:`

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# config and weight files of a model folder (its fingerprint); hidden files and others are ignored
WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth")


def hash_weights(path: str | Path) -> str:
    """``sha256:<hex>`` of a weights file, or of a model folder's config and weight files (recursive,
    relative names and contents): copyscope.common.files.tree_sha256, the one folder hash (the image cache
    keys use it too)."""
    return f"sha256:{tree_sha256(Path(path), WEIGHT_SUFFIXES)}"


def _image_key(img: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    h.update(str(img.shape).encode())
    h.update(np.ascontiguousarray(img, dtype=np.float32).tobytes())
    return h.digest()


def _torch():
    import torch

    return torch


def _resize_tensor(x, size: tuple[int, int]):
    """(C, H, W) float tensor in [0, 1] -> (C, h, w), bicubic with antialiasing, clamped to [0, 1]."""
    torch = _torch()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    y = torch.nn.functional.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=True)
    return y[0].clamp(0.0, 1.0)


def _shortest_edge_size(h: int, w: int, short: int) -> tuple[int, int]:
    if h <= w:
        return short, max(1, int(round(w * short / h)))
    return max(1, int(round(h * short / w))), short


def _center_crop(x, size: tuple[int, int]):
    torch = _torch()
    ch, cw = size
    h, w = x.shape[-2:]
    if h < ch or w < cw:  # pad like HF processors do (zeros), rare: only if crop > resized image
        pad = [(cw - w + 1) // 2 if w < cw else 0, (cw - w) // 2 if w < cw else 0,
               (ch - h + 1) // 2 if h < ch else 0, (ch - h) // 2 if h < ch else 0]
        x = torch.nn.functional.pad(x, [max(0, p) for p in pad])
        h, w = x.shape[-2:]
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


def _rows_by_shape(shapes, batch_size: int, run) -> np.ndarray:
    """Rows of ``run(chunk)`` for chunks of at most ``batch_size`` indices of equal shape, in input order."""
    out: list[np.ndarray | None] = [None] * len(shapes)
    groups: dict[tuple, list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(i)
    for idx in groups.values():
        for k in range(0, len(idx), batch_size):
            chunk = idx[k : k + batch_size]
            for i, f in zip(chunk, run(chunk)):
                out[i] = f
    return np.stack(out)


class Backbone:
    """Turns images into feature rows (n, d); shared by all metrics that use it."""

    key: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Option]] = {}
    MEMO_MAX: ClassVar[int] = 4096

    def __init__(self, device: str = "cpu", **options: Any):
        self.device = device
        self.options = options
        self._memo: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.on_progress: Callable[[int, int], None] | None = None  # (images done, images to do) per chunk

    def availability(self) -> tuple[bool, str]:
        return True, ""

    def fingerprint(self) -> dict[str, Any]:
        opts = {k: v for k, v in sorted(self.options.items()) if self.OPTIONS[k].affects_output}
        return {"backbone": self.key, "backbone_options": opts}

    def require(self) -> None:
        ok, why = self.availability()
        if not ok:
            raise MissingDependency(why)

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Feature rows for validated float32 images, memoised by image content."""
        keys = [_image_key(im) for im in images]
        todo = [i for i, k in enumerate(keys) if k not in self._memo]
        if todo:
            self.require()
            load = getattr(self, "_load", None)
            if load is not None:  # the model is built (once) under the lock: see MODEL_BUILD_LOCK
                with MODEL_BUILD_LOCK:
                    load()
            chunk = max(1, int(self.options.get("batch_size", 64)))
            if self.on_progress is not None:
                self.on_progress(0, len(todo))  # announces the total before the first chunk
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                fresh = np.asarray(self._embed([images[i] for i in part]), dtype=np.float32)
                for i, row in zip(part, fresh):
                    self._memo[keys[i]] = row
                if self.on_progress is not None:
                    self.on_progress(min(start + chunk, len(todo)), len(todo))
        rows = []
        for k in keys:
            self._memo.move_to_end(k)
            rows.append(self._memo[k])
        while len(self._memo) > self.MEMO_MAX:
            self._memo.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def _embed(self, images: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


def imagenet_batches(images, size: int, batch_size: int, device):
    """(H, W, 3) float images -> batches of (b, 3, size, size) tensors, resized and ImageNet-normalised
    (the input of the TorchScript SSCD and EfficientNet-Lite0 backbones)."""
    torch = _torch()
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    for k in range(0, len(images), batch_size):
        xs = [
            (_resize_tensor(torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))), (size, size)) - mean) / std
            for im in images[k : k + batch_size]
        ]
        yield torch.stack(xs).to(device)


def _import_ok(*modules: str) -> str:
    """'' if all modules import, else the first problem."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a broken install is "unavailable", not a crash
            return f"{name} fails to import ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return ""
