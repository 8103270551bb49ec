"""The demo's data: scikit-image's bundled images (nothing is downloaded), their captions, crops, the
reference views a built zoo ships, PNG writing and the luminance SSIM the build and its check report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.files import to_uint8
from ..common.errors import CopyscopeError

# Images bundled with scikit-image (no download needed) and simple captions for them.
CAPTIONS: dict[str, str] = {
    "astronaut": "a photo of an astronaut",
    "coffee": "a photo of a cup of coffee",
    "rocket": "a photo of a rocket launch",
    "chelsea": "a photo of a cat",
    "camera": "a photo of a man with a camera",
    "brick": "a photo of a brick wall",
    "grass": "a photo of grass",
    "gravel": "a photo of gravel",
    "horse": "a black and white horse",
    "moon": "a photo of the moon",
    "page": "a page of text",
    "coins": "a photo of coins",
    "colorwheel": "a colour wheel",
    "hubble_deep_field": "a photo of a galaxy field",
    "immunohistochemistry": "a microscope image of cells",
    "retina": "a photo of a retina",
    "logo": "a logo",
    "text": "text on a page",
    "clock": "a photo of a clock",
}
SKIMAGE_IMAGES = tuple(CAPTIONS)

DEFAULT_BASE_IMAGES = (
    "chelsea", "camera", "brick", "grass", "gravel", "horse", "moon", "page", "coins",
    "colorwheel", "hubble_deep_field", "immunohistochemistry", "retina", "logo",
)


def image_library(folder: Path | None) -> dict[str, Path]:
    """``--images DIR``: name (the file's stem) -> image file, for every PNG/JPEG/WebP/BMP/TIFF in the folder
    (not recursive). A name must be a valid zoo name and must not shadow one of scikit-image's."""
    from ..config.base import IMAGE_SUFFIXES, check_name
    from ..common.inputs import check_image_file, file_kind

    if folder is None:
        return {}
    folder = Path(folder)
    if file_kind(folder) != "a folder":
        raise CopyscopeError(f"--images {folder}: not a folder; expected a folder of image files")
    out: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() not in IMAGE_SUFFIXES or file_kind(f) is not None:
            continue
        problem = check_image_file(f)
        if problem is not None:
            raise CopyscopeError(f"--images: {f} is {problem}")
        try:
            check_name(f.stem)
        except ValueError as exc:
            raise CopyscopeError(f"--images: {f.name}: its name {f.stem!r} cannot name a work ({exc}); rename the file") from None
        if f.stem in SKIMAGE_IMAGES or f.stem in out:
            raise CopyscopeError(f"--images: {f.name}: the name {f.stem!r} is already taken (a scikit-image name or "
                                 "another file of the folder); rename the file")
        out[f.stem] = f
    if not out:
        raise CopyscopeError(f"--images {folder}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return out


def load_named(name: str, library: dict[str, Path] | None = None) -> np.ndarray:
    """An image by name: a file of the ``--images`` library, else one of scikit-image's, as float32 (H, W, 3)."""
    if library and name in library:
        from ..common.inputs import load_image_rgb

        return np.ascontiguousarray(load_image_rgb(library[name]), dtype=np.float32)
    return load_skimage(name)


def caption_of(name: str) -> str:
    """A base image's training caption: scikit-image's own, or for a file "a photo of" its name's words."""
    return CAPTIONS.get(name) or "a photo of " + name.replace("_", " ").replace("-", " ")


def source_of(name: str, library: dict[str, Path] | None = None) -> str:
    """Where a named image comes from, for ground_truth.json."""
    from ..common.inputs import image_sha256

    if library and name in library:
        return f"file {library[name]} (sha256 {image_sha256(library[name])})"
    return f"skimage.data.{name}()"


def load_skimage(name: str) -> np.ndarray:
    """A scikit-image bundled image as float32 (H, W, 3) in [0, 1] (grey replicated, RGBA on white)."""
    from ..controls.background import builtin_image

    if name not in SKIMAGE_IMAGES:
        raise CopyscopeError(f"unknown image {name!r}: choose from {', '.join(SKIMAGE_IMAGES)}")
    return builtin_image(name)


def resize_square(a: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(to_uint8(a))
    im = im.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def center_square(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return a[y : y + s, x : x + s]


def random_crops(a: np.ndarray, n: int, size: int, rng: np.random.Generator, scale=(0.35, 1.0), flip=True,
                 include_full: bool = True) -> np.ndarray:
    """``n`` square crops (side = uniform(scale) * min side), resized to ``size``; optional h-flips.

    With ``include_full`` the first crop is the whole centre square, unflipped.
    """
    h, w = a.shape[:2]
    out = []
    for i in range(n):
        if include_full and i == 0:
            crop = center_square(a)
        else:
            s = int(round(rng.uniform(*scale) * min(h, w)))
            s = max(8, min(s, h, w))
            y = int(rng.integers(0, h - s + 1))
            x = int(rng.integers(0, w - s + 1))
            crop = a[y : y + s, x : x + s]
            if flip and rng.random() < 0.5:
                crop = crop[:, ::-1]
        out.append(resize_square(crop, size))
    return np.stack(out)


def write_reference_views(out: Path, works: dict[str, np.ndarray], size: int, views: int,
                          seed: int, scale: tuple[float, float]) -> dict[str, list[str]]:
    """Write ``references/<work>/<work>.png`` (the centre square) and ``<work>-view<k>.png``.

    The views are near-full crops (side ``scale`` of the short side; the build passes the LoRAs'
    ``lora_crop_scale``) drawn from their own RNG, so they change no trained weight. Returns the
    written paths per work, relative to ``out``.
    """
    paths = {}
    for i, (w, a) in enumerate(works.items()):
        rng = np.random.default_rng(seed + 7 + i)
        crops = random_crops(a, views, size, rng, scale=scale, flip=False)
        names = [f"{w}.png"] + [f"{w}-view{k}.png" for k in range(1, views)]
        paths[w] = [str(save_png(c, out / "references" / w / n).relative_to(out)) for c, n in zip(crops, names)]
    return paths


def save_png(a: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(a)).save(path)
    return path


def grey_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of the luminance of two (H, W, 3) [0, 1] images, Gaussian window (sigma 1.5)."""
    from skimage.metrics import structural_similarity

    ga = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
    gb = 0.299 * b[..., 0] + 0.587 * b[..., 1] + 0.114 * b[..., 2]
    return float(structural_similarity(ga, gb, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))
