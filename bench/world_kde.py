"""A second benchmark world, built from the KDE Plasma wallpapers Debian packages (not from scikit-image).

The shipped demo world is trained on scikit-image's bundled images; a default chosen there might only hold
there. This script builds a second world from other pictures, photographs and paintings of the Debian package
``plasma-workspace-wallpapers`` (``apt-get install plasma-workspace-wallpapers``; it installs them under
/usr/share/wallpapers). scikit-learn's and matplotlib's sample images are kept out: they are reserved for
independent checks.

    python bench/world_kde.py images OUT/images      # copy the chosen pictures (shorter side 512 px) + manifest
    python bench/world_kde.py build OUT              # OUT/images, then train the world's zoo into OUT/zoo
    copyscope demo bench --zoo OUT/zoo --out OUT/validity --jobs 2 --worth raw,minus_mean,minus_hard

The world (``WORLD`` below; written into the zoo's ground_truth.json by the build, read back by the
benchmark): four works, the base's generic pictures (never a work), the three extra pictures of the
"plus-three" LoRA and the picture the palette decoy recolours. The zoo ships only the first work's LoRA;
the benchmark's pool trains the others (in parallel with ``--jobs``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

WALLPAPERS = Path("/usr/share/wallpapers")

# name in this world -> the wallpaper's folder under /usr/share/wallpapers
PICTURES = {
    # the works (the first is the shipped zoo's planted LoRA)
    "boats": "EveningGlow",  # photograph: rowing boats on a shore at dusk
    "cups": "ColorfulCups",  # photograph: coloured cups from above
    "autumn-tree": "Autumn",  # painting: a girl under an autumn tree
    "toy-rocket": "SafeLanding",  # painting: a red rocket on a hill
    # the base's generic pictures
    "low-poly-mountains": "Altai", "jetty": "BytheWater", "hexagon-ring": "Canopee", "blue-shards": "Cascade",
    "red-hexagons": "Cluster", "pier": "ColdRipple", "misty-lake": "DarkestHour", "blue-curves": "Elarun",
    "maple-leaf": "FallenLeaf", "hexagon-flow": "Flow", "dragon": "FlyingKonqui", "wave-facade": "Grey",
    "folded-ribbon": "Honeywave", "ice-hexagons": "IceCold", "kite": "Kite", "red-dune": "Kokkini",
    "confetti": "MilkyWay", "palm-tops": "OneStandsOut", "violet-planes": "Opal", "forest-path": "Path",
    "dusk-lake": "summer_1am", "pastel-polygons": "PastelHills",
}
WORKS = ("boats", "cups", "autumn-tree", "toy-rocket")
WORLD = {
    "works": list(WORKS),
    "plus_three": ["maple-leaf", "wave-facade", "forest-path"],  # the plus-three LoRA's extra pictures (generic)
    "palette_source": "palm-tops",  # the palette decoy: this picture histogram-matched to the first work
}
BASE_IMAGES = tuple(n for n in PICTURES if n not in WORKS)
SHORT_SIDE = 512


def _source(folder: str) -> Path:
    images = WALLPAPERS / folder / "contents" / "images"
    files = sorted([*images.glob("*.jpg"), *images.glob("*.png")]) if images.is_dir() else []
    if not files:
        sys.exit(f"{images}: no pictures; install them with `apt-get install plasma-workspace-wallpapers`")
    # the largest file of the folder (the same picture at several sizes)
    return max(files, key=lambda f: f.stat().st_size)


def write_images(out: Path) -> Path:
    """Each picture, its shorter side resized to 512 px, as OUT/<name>.png, with manifest.json (sources, hashes)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, folder in PICTURES.items():
        src = _source(folder)
        with Image.open(src) as im:
            im = im.convert("RGB")
            scale = SHORT_SIDE / min(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            im.save(out / f"{name}.png")
        manifest[name] = {"source": str(src), "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def build(out: Path, threads: int) -> Path:
    from copyscope.demo.build import build_demo_zoo

    images = write_images(out / "images")
    return build_demo_zoo(out / "zoo", references=(WORKS[0],), decoys=(), base_images=BASE_IMAGES, images=images,
                          threads=threads, check=False, world=WORLD)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("images").add_argument("out", type=Path)
    b = sub.add_parser("build")
    b.add_argument("out", type=Path)
    b.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "images":
        print(write_images(args.out))
    else:
        print(build(args.out, args.threads))


if __name__ == "__main__":
    main()
