"""The background: generic images every generated image is also scored against (``worth:`` other than raw).

Two sources, in this order: the builtin set (``background: {builtin: true}``, the default), photographs and
scans bundled with scikit-image (public domain or CC0, nothing downloaded), and the zoo's ``background.paths``
(image files or folders: the user's own generic images, e.g. other works of the same genre). Every image is
centre-cropped to the references' aspect and resized to their size, as a generated image is compared with
them. An image that is a near-duplicate of a reference (perceptual hash within ``DUPLICATE_BITS`` bits) is
dropped and named in the report: a background holding the work would cancel the copying it should expose.

The builtin set leaves out every scikit-image picture that the demo zoo and the validity benchmark use as a
protected work or as a decoy's training image (astronaut, coffee, rocket, clock, chelsea, text, moon, coins),
so that the benchmark never scores a decoy against its own training image (docs/metrics.md "Controls").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import numpy as np

BUILTIN = (
    "camera", "brick", "grass", "gravel", "horse", "page", "colorwheel", "hubble_deep_field",
    "immunohistochemistry", "retina", "logo", "cell", "microaneurysms", "shepp_logan_phantom", "motorcycle",
)
DUPLICATE_BITS = 10  # of 64: unrelated photographs differ in about 32 bits of their pHash


def builtin_image(name: str) -> np.ndarray:
    """A picture bundled with scikit-image (a builtin background image; the demo's images too) as float32
    (H, W, 3) in [0, 1] (grey replicated, transparency on white)."""
    import skimage.data

    a = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    a = np.asarray(a)
    a = a.astype(np.float32) if a.dtype in (bool, np.float64, np.float32) else a.astype(np.float32) / 255.0
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    if a.shape[-1] == 4:
        alpha = a[..., 3:4]
        a = a[..., :3] * alpha + (1.0 - alpha)
    return np.ascontiguousarray(a[..., :3], dtype=np.float32)


def pixel_sha256(a: np.ndarray) -> str:
    """SHA-256 of an image's 8-bit pixels (as written to a PNG): an image's identity in cache keys."""
    import hashlib

    from ..common.files import to_uint8

    return hashlib.sha256(to_uint8(a).tobytes()).hexdigest()


def fit_to(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``a`` centre-cropped to the aspect of ``size`` (H, W) and resized to it (bicubic)."""
    from PIL import Image

    from ..common.files import to_uint8

    h, w = a.shape[:2]
    th, tw = size
    if h * tw > w * th:  # too tall
        ch, cw = max(1, round(w * th / tw)), w
    else:
        ch, cw = h, max(1, round(h * tw / th))
    y, x = (h - ch) // 2, (w - cw) // 2
    im = Image.fromarray(to_uint8(a[y : y + ch, x : x + cw])).resize((tw, th), Image.Resampling.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def _phash(a: np.ndarray):
    import imagehash
    from PIL import Image

    from ..common.files import to_uint8

    return imagehash.phash(Image.fromarray(to_uint8(a)))


@dataclass
class BackgroundSet:
    """The background images, fitted to the references' size, with a label and a content hash each."""

    labels: list[str]
    images: list[np.ndarray]
    sha256: list[str]
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (label, why)

    @property
    def identity(self) -> str:
        from ..common.files import key_of

        return key_of({"background": self.sha256})

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> dict:
        """What report.json records: the images used and those dropped, with why."""
        return {"images": list(self.labels), "count": len(self.labels),
                "dropped": [{"image": lab, "why": why} for lab, why in self.dropped]}

    @classmethod
    def build(cls, sources: list[tuple[str, np.ndarray]], references: list[np.ndarray]) -> "BackgroundSet":
        """From (label, image) pairs: fit each to the references' most common size, drop near-duplicates of a
        reference and exact duplicates of an earlier background image."""
        size = Counter(r.shape[:2] for r in references).most_common(1)[0][0]
        ref_hashes = [_phash(fit_to(r, size)) for r in references]
        labels, images, hashes, dropped = [], [], [], []
        for label, a in sources:
            img = fit_to(a, size)
            h = _phash(img)
            near = min((h - r) for r in ref_hashes)
            if near <= DUPLICATE_BITS:
                dropped.append((label, f"a near-duplicate of a reference image ({near} of 64 hash bits differ)"))
                continue
            sha = pixel_sha256(img)
            if sha in hashes:
                dropped.append((label, f"the same image as {labels[hashes.index(sha)]}"))
                continue
            labels.append(label)
            images.append(img)
            hashes.append(sha)
        return cls(labels, images, hashes, dropped)


def background_from_zoo(zoo, references: list[np.ndarray]) -> BackgroundSet:
    """The zoo's background (builtin set, then ``background.paths``); errors name the entry. An empty
    background is an error: a specific worth needs at least two generic images."""
    from ..config.zoo import expand_image_paths
    from ..common.inputs import check_image_file
    from ..common.inputs import load_image_rgb

    spec = zoo.spec.background
    sources: list[tuple[str, np.ndarray]] = []
    if spec.builtin:
        sources += [(f"builtin:{name}", builtin_image(name)) for name in BUILTIN]
    for path in expand_image_paths(zoo, spec.paths, "background") if spec.paths else []:
        problem = check_image_file(path)
        if problem is not None:
            raise zoo.fail(f"background file {path} is {problem}", "background", "paths")
        try:
            sources.append((str(path), load_image_rgb(path)))
        except (OSError, ValueError, SyntaxError) as exc:
            raise zoo.fail(f"background file {path} is unreadable ({exc.__class__.__name__}); expected an intact image file",
                           "background", "paths") from None
    bg = BackgroundSet.build(sources, references)
    if len(bg) < 2:
        raise zoo.fail(f"the background has {len(bg)} usable image(s) ({len(bg.dropped)} dropped as duplicates of the "
                       f"references); worth {zoo.spec.worth!r} needs at least 2: add generic images to background.paths",
                       "background")
    return bg

