"""The detectors that turn an image into a ControlNet conditioning map (copyscope.conditioning).

Each takes a float RGB image (H, W, 3) in [0, 1] at the generation size and returns a map of the same
shape. ``canny`` and ``pseudo_depth`` need no weights; ``depth`` runs a transformers depth-estimation
model; the controlnet-aux annotators are imported only when one is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.files import to_uint8, tree_sha256
from ..common.errors import MissingDependency

# Parameters each built-in detector accepts (name -> type); anything else in `params` is an error.
BUILTIN_PARAMS: dict[str, dict[str, type | tuple]] = {
    "canny": {"sigma": (int, float), "low_threshold": (int, float), "high_threshold": (int, float), "use_quantiles": bool},
    "pseudo_depth": {"sigma": (int, float)},
    "depth": {},
}
NEEDS_MODEL = {"depth"}

# controlnet-aux processor ids (controlnet_aux.processor.MODELS) -> (class, loads a checkpoint, fixed kwargs).
ANNOTATORS: dict[str, tuple[str, bool, dict]] = {
    "depth_midas": ("MidasDetector", True, {}),
    "depth_zoe": ("ZoeDetector", True, {}),
    "depth_leres": ("LeresDetector", True, {}),
    "normal_bae": ("NormalBaeDetector", True, {}),
    "softedge_hed": ("HEDdetector", True, {"scribble": False}),
    "scribble_hed": ("HEDdetector", True, {"scribble": True}),
    "softedge_pidinet": ("PidiNetDetector", True, {"safe": False, "scribble": False}),
    "scribble_pidinet": ("PidiNetDetector", True, {"safe": False, "scribble": True}),
    "lineart_realistic": ("LineartDetector", True, {"coarse": False}),
    "lineart_coarse": ("LineartDetector", True, {"coarse": True}),
    "lineart_anime": ("LineartAnimeDetector", True, {}),
    "mlsd": ("MLSDdetector", True, {}),
    "openpose": ("OpenposeDetector", True, {"include_body": True, "include_hand": False, "include_face": False}),
    "openpose_full": ("OpenposeDetector", True, {"include_body": True, "include_hand": True, "include_face": True}),
    "shuffle": ("ContentShuffleDetector", False, {}),
    "mediapipe_face": ("MediapipeFaceDetector", False, {}),
}
PROMPT_WORK = "{work}"  # from_work value: each prompt's own work
ANNOTATOR_HUB_DEFAULT = "lllyasviel/Annotators"
ANNOTATOR_EXTRA = "pip install 'copyscope[annotators]' (controlnet-aux; it needs torchvision and timm)"


def detector_names() -> list[str]:
    return sorted(BUILTIN_PARAMS) + sorted(ANNOTATORS)


def check_detector(detector: str, params: dict, model: str | None) -> None:
    """Schema-level checks (no files, no imports): raises ValueError with the problem."""
    if detector not in BUILTIN_PARAMS and detector not in ANNOTATORS:
        raise ValueError(f"unknown detector {detector!r}; expected one of {', '.join(detector_names())}")
    if detector in NEEDS_MODEL and not model:
        raise ValueError(f"detector {detector!r} needs 'model': a hub id or a local folder of a depth-estimation model")
    if detector in BUILTIN_PARAMS:
        if model and detector not in NEEDS_MODEL:
            raise ValueError(f"detector {detector!r} uses no weights; remove 'model'")
        allowed = BUILTIN_PARAMS[detector]
        for key, value in params.items():
            if key not in allowed:
                raise ValueError(f"unknown parameter {key!r} of detector {detector!r}; expected "
                                 f"{', '.join(sorted(allowed)) or 'none'}")
            if isinstance(value, bool) != (allowed[key] is bool) or not isinstance(value, allowed[key]):
                raise ValueError(f"parameter {key!r} of detector {detector!r} has the wrong type, got {value!r}")
        _check_values(detector, params)


MAX_SIGMA = 1000.0  # pixels of blur: far above any use (the side is at most 8192), and a kernel that fits memory
MAX_THRESHOLD = 1000.0  # canny thresholds on the gradient of a [0, 1] luminance (at most about 6)
CANNY_DEFAULTS = {"low_threshold": 0.1, "high_threshold": 0.2}  # skimage's, when a threshold is not given


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


def _check_values(detector: str, params: dict) -> None:
    """Values the detector would crash on (or run for ever with): a non-finite number, a negative or
    huge sigma, canny thresholds below 0, quantiles above 1, or low above high."""
    for key, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"parameter {key!r} of detector {detector!r} is {value!r}; expected a finite number")
    sigma = params.get("sigma")
    if sigma is not None and not 0 <= sigma <= MAX_SIGMA:
        raise ValueError(f"parameter 'sigma' of detector {detector!r} is {_shown(sigma)}; expected a number from 0 to "
                         f"{MAX_SIGMA:g} (pixels of blur)")
    if detector != "canny":
        return
    quantiles = params.get("use_quantiles", False)
    for key in CANNY_DEFAULTS:
        value = params.get(key)
        if value is not None and not 0 <= value <= (1 if quantiles else MAX_THRESHOLD):
            what = "a quantile from 0 to 1 (use_quantiles: true)" if quantiles else f"a number from 0 to {MAX_THRESHOLD:g}"
            raise ValueError(f"parameter {key!r} of detector 'canny' is {_shown(value)}; expected {what}")
    low, high = (params.get(k, CANNY_DEFAULTS[k]) for k in CANNY_DEFAULTS)
    low = CANNY_DEFAULTS["low_threshold"] if low is None else low
    high = CANNY_DEFAULTS["high_threshold"] if high is None else high
    if low > high:
        given = "" if "low_threshold" in params and "high_threshold" in params else " (the other at its default)"
        raise ValueError(f"canny low_threshold {low!r} is above high_threshold {high!r}{given}; expected low <= high")


# ------------------------------------------------------------------------------------------- detectors

def _grey_rgb(d: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(d, np.float32)[..., None], 3, -1)


def _normalise(d: np.ndarray) -> np.ndarray:
    d = np.nan_to_num(np.asarray(d, np.float64))
    lo, hi = d.min(), d.max()
    return (d - lo) / (hi - lo) if hi > lo + 1e-8 * max(1.0, abs(hi)) else np.full_like(d, 0.5)


def luminance(image: np.ndarray) -> np.ndarray:
    return 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]


def pseudo_depth(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """A stand-in for a depth map: blurred, min-max normalised luminance, grey, (H, W, 3) in [0, 1].

    NOT a depth estimate. It carries the coarse layout of an image the way a depth map does, which
    is what a depth ControlNet conditions on. ``sigma`` defaults to 1/8 of the image side.
    """
    from scipy.ndimage import gaussian_filter

    if sigma is None:
        sigma = min(image.shape[:2]) / 8.0
    d = gaussian_filter(luminance(image).astype(np.float64), sigma=sigma, mode="reflect")
    lo, hi = d.min(), d.max()
    d = (d - lo) / (hi - lo) if hi > lo + 1e-8 else np.full_like(d, 0.5)
    return _grey_rgb(d)


def canny(image: np.ndarray, sigma: float = 1.0, low_threshold: float | None = None,
          high_threshold: float | None = None, use_quantiles: bool = False) -> np.ndarray:
    """White edges on black: ``skimage.feature.canny`` of the luminance (thresholds on its scale,
    0..1, or quantiles with ``use_quantiles``)."""
    from skimage.feature import canny as sk_canny

    edges = sk_canny(luminance(image).astype(np.float64), sigma=sigma, low_threshold=low_threshold,
                     high_threshold=high_threshold, use_quantiles=use_quantiles)
    return _grey_rgb(edges.astype(np.float32))


@dataclass
class DetectorSource:
    """A detector's weights: a local folder/file or a hub id (None for weightless detectors)."""

    value: str | None
    local: Path | None
    revision: str | None

    def identity(self) -> dict | None:
        if self.value is None:
            return None
        if self.local is not None:
            return {"local_sha256": tree_sha256(self.local, (".safetensors", ".json", ".txt", ".pth", ".pt", ".bin", ".onnx"))}
        return {"hub_id": self.value, "revision": self.revision or "main"}


def load_depth_model(src: DetectorSource, allow_pickle: bool, device: str):
    """(image processor, model) of a transformers depth-estimation model."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation
    from transformers.utils import logging as tlogging

    tlogging.set_verbosity_error()
    tlogging.disable_progress_bar()
    where = str(src.local) if src.local is not None else src.value
    proc = AutoImageProcessor.from_pretrained(where, revision=src.revision)
    model = AutoModelForDepthEstimation.from_pretrained(where, revision=src.revision, use_safetensors=not allow_pickle)
    return proc, model.to(device).eval()


def run_depth(loaded, image: np.ndarray) -> np.ndarray:
    import torch
    from PIL import Image

    proc, model = loaded
    h, w = image.shape[:2]
    inputs = proc(images=Image.fromarray(to_uint8(image)), return_tensors="pt")
    device = next(model.parameters()).device
    with torch.inference_mode():
        pred = model(**{k: v.to(device) for k, v in inputs.items()}).predicted_depth
    d = torch.nn.functional.interpolate(pred[:, None].float(), size=(h, w), mode="bicubic", align_corners=False)
    # depth-estimation models predict relative inverse depth: near is bright, as depth ControlNets expect
    return _grey_rgb(_normalise(d[0, 0].cpu().numpy()))


def load_annotator(detector: str, src: DetectorSource):
    require_annotators(detector)
    import controlnet_aux

    cls_name, needs_ckpt, _ = ANNOTATORS[detector]
    cls = getattr(controlnet_aux, cls_name)
    if not needs_ckpt:
        return cls()
    return cls.from_pretrained(str(src.local) if src.local is not None else src.value)


def run_annotator(detector: str, loaded, image: np.ndarray, params: dict) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    kwargs = {**ANNOTATORS[detector][2], **params}
    side = max(h, w)
    out = loaded(Image.fromarray(to_uint8(image)), detect_resolution=side, image_resolution=side, output_type="pil", **kwargs)
    out = out.convert("RGB").resize((w, h), Image.BICUBIC)
    return np.asarray(out, dtype=np.float32) / 255.0


def require_annotators(detector: str) -> None:
    """Raise MissingDependency (one line naming the extra) when controlnet-aux cannot be imported."""
    try:
        import controlnet_aux  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or torchvision failing inside it (RuntimeError, ...)
        raise MissingDependency(f"detector {detector!r} needs the optional extra controlnet-aux, which cannot be "
                                f"imported ({exc.__class__.__name__}); {ANNOTATOR_EXTRA}") from None
