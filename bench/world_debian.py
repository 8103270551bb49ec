"""Benchmark worlds built from pictures Debian packages (not from scikit-image): ``kde`` and ``mate``.

The shipped demo world is trained on scikit-image's bundled images; a default chosen there might only hold
there. This script builds further worlds from other pictures, photographs and paintings that Debian packages
install:

* ``kde``: the KDE Plasma wallpapers (``apt-get install plasma-workspace-wallpapers``; /usr/share/wallpapers);
  the second world, on which the per-audit headline rule was revised;
* ``mate``: the MATE, UKUI and GNOME backgrounds (``apt-get install mate-backgrounds ukui-wallpapers
  gnome-backgrounds``; /usr/share/backgrounds); the third world, built after every default was fixed, to test
  those defaults out of sample.

scikit-learn's and matplotlib's sample images are kept out: they are reserved for independent checks.

    python bench/world_debian.py images WORLD OUT/images  # copy the chosen pictures (shorter side 512 px) + manifest
    python bench/world_debian.py build WORLD OUT          # OUT/images, then train the world's zoo into OUT/zoo
    copyscope demo bench --zoo OUT/zoo --out OUT/validity --jobs 2 --worth raw,minus_mean,minus_hard

Each world (``WORLDS`` below; written into the zoo's ground_truth.json by the build, read back by the
benchmark): four works, the base's generic pictures (never a work), the three extra pictures of the
"plus-three" LoRA and the picture the palette decoy recolours. The zoo ships only the first work's LoRA;
the benchmark's pool trains the others (in parallel with ``--jobs``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DebianWorld:
    package: str  # what `apt-get install` needs
    root: Path
    pictures: dict  # name in this world -> its file (or, for KDE, its wallpaper folder) under root
    works: tuple  # the first is the shipped zoo's planted LoRA
    plus_three: tuple  # the plus-three LoRA's extra pictures (generic)
    palette_source: str  # the palette decoy: this picture histogram-matched to the first work

    @property
    def base_images(self) -> tuple:
        return tuple(n for n in self.pictures if n not in self.works)

    @property
    def world(self) -> dict:
        return {"works": list(self.works), "plus_three": list(self.plus_three), "palette_source": self.palette_source}


KDE = DebianWorld(
    package="plasma-workspace-wallpapers",
    root=Path("/usr/share/wallpapers"),
    pictures={
        # the works
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
    },
    works=("boats", "cups", "autumn-tree", "toy-rocket"),
    plus_three=("maple-leaf", "wave-facade", "forest-path"),
    palette_source="palm-tops",
)

MATE = DebianWorld(
    package="mate-backgrounds ukui-wallpapers gnome-backgrounds",
    root=Path("/usr/share/backgrounds"),
    pictures={
        # the works
        "ladybird": "mate/nature/LadyBird.jpg",  # photograph: a ladybird on a stem among blue flowers
        "goldfish": "goldfish.png",  # illustration: a pink goldfish on violet
        "water-drop": "mate/nature/Aqua.jpg",  # photograph: a drop splashing into water
        "mecha-head": "firstgeneration.jpg",  # illustration: a robot's head on blue
        # the base's generic pictures
        "ribbon": "2004default.jpg", "calla": "calla.png", "city-planes": "city.png", "desert-planes": "desert.png",
        "colour-mist": "fluent-color.png", "gold-grid": "gnome/grid-l.webp", "licorice": "gnome/licorice-l.webp",
        "truchet": "gnome/truchet-l.webp", "elephants": "mate/abstract/Elephants.jpg", "grass-blades":
        "mate/nature/Blinds.jpg", "dune-grass": "mate/nature/Dune.jpg", "orange-flower": "mate/nature/FreshFlower.jpg",
        "marigold": "mate/nature/Garden.jpg", "meadow": "mate/nature/GreenMeadow.jpg", "rain-drops":
        "mate/nature/RainDrops.jpg", "storm": "mate/nature/Storm.jpg", "dandelion": "mate/nature/TwoWings.jpg",
        "yellow-flower": "mate/nature/YellowFlower.jpg", "rhythm": "rhythm.jpg", "rollpaper": "rollpaper.png",
        "string": "string.jpg", "the-mouse": "the-mouse.jpg",
    },
    works=("ladybird", "goldfish", "water-drop", "mecha-head"),
    plus_three=("marigold", "storm", "string"),
    palette_source="dune-grass",
)

WORLDS = {"kde": KDE, "mate": MATE}
SHORT_SIDE = 512


def _source(world: DebianWorld, entry: str) -> Path:
    path = world.root / entry
    if path.is_file():
        return path
    images = path / "contents" / "images"  # a KDE wallpaper: the same picture at several sizes
    files = sorted([*images.glob("*.jpg"), *images.glob("*.png")]) if images.is_dir() else []
    if not files:
        sys.exit(f"{path}: no picture; install it with `apt-get install {world.package}`")
    return max(files, key=lambda f: f.stat().st_size)  # the largest file of the folder


def write_images(world: DebianWorld, out: Path) -> Path:
    """Each picture, its shorter side resized to 512 px, as OUT/<name>.png, with manifest.json (sources, hashes)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, entry in world.pictures.items():
        src = _source(world, entry)
        with Image.open(src) as im:
            im = im.convert("RGB")
            scale = SHORT_SIDE / min(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            im.save(out / f"{name}.png")
        manifest[name] = {"source": str(src), "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def build(world: DebianWorld, out: Path, threads: int) -> Path:
    from copyscope.demo.build import build_demo_zoo

    images = write_images(world, out / "images")
    return build_demo_zoo(out / "zoo", references=(world.works[0],), decoys=(), base_images=world.base_images,
                          images=images, threads=threads, check=False, world=world.world)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("images")
    i.add_argument("world", choices=sorted(WORLDS))
    i.add_argument("out", type=Path)
    b = sub.add_parser("build")
    b.add_argument("world", choices=sorted(WORLDS))
    b.add_argument("out", type=Path)
    b.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.cmd == "images":
        print(write_images(WORLDS[args.world], args.out))
    else:
        print(build(WORLDS[args.world], args.out, args.threads))


if __name__ == "__main__":
    main()
