"""docs/img/conditioning.png: a reference work, the conditioning maps copyscope computes from it
(``pseudo_depth``, which the shipped demo ControlNet was trained on, and ``canny``), and generations of
the shipped demo zoo with the depth ControlNet fed the computed map (the same seeds in every row).

    python docs/make_conditioning_figure.py            # writes docs/img/conditioning.png (about a minute on CPU)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from copyscope.common.files import to_uint8  # noqa: E402
from copyscope.conditioning import ConditioningMaps  # noqa: E402
from copyscope.config import load_zoo  # noqa: E402
from copyscope.generate import CoalitionEngine  # noqa: E402
from copyscope.plan.games import make_plan  # noqa: E402

CELL, SCALE, LABEL_W, PAD = 32, 3, 230, 4
SEEDS = [0, 1, 2, 3, 4, 5]
COALITIONS = [(), ("depth",), ("depth", "planted")]


def tile(img: Image.Image) -> Image.Image:
    return img.convert("RGB").resize((CELL * SCALE, CELL * SCALE), Image.NEAREST)


def main(out: Path = ROOT / "docs" / "img" / "conditioning.png") -> None:
    data = yaml.safe_load((ROOT / "model_zoo.yaml").read_text())
    data["controlnets"][0]["conditioning"] = {"from_work": "astronaut", "reference": "astronaut.png", "detector": "pseudo_depth"}
    data["generation"]["seeds"] = SEEDS
    with tempfile.TemporaryDirectory() as tmp:
        zoo_path = ROOT / f".conditioning-figure-{Path(tmp).name}.yaml"  # paths in it are relative to the repository
        zoo_path.write_text(yaml.safe_dump(data, sort_keys=False))
        try:
            zoo = load_zoo(zoo_path)
            maps = ConditioningMaps(zoo, Path(tmp) / "maps")
            depth = maps.entry(0)
            canny_zoo = load_zoo(zoo_path)
            canny_zoo.spec.controlnets[0].conditioning.detector = "canny"
            canny_zoo.spec.controlnets[0].conditioning.params = {"sigma": 1.0}
            canny = ConditioningMaps(canny_zoo, Path(tmp) / "maps").entry(0)
            plan = make_plan(zoo)
            game = plan.games[0]
            engine = CoalitionEngine(zoo, game, conditioning=maps)
            rows = []
            for members in COALITIONS:
                flags = tuple(p.name in members for p in game.players)
                images = engine.generate(flags, plan.items)
                rows.append(("{" + ", ".join(members) + "}", [Image.fromarray(to_uint8(a)) for a in images]))
            top = [("reference astronaut.png", Image.open(depth.source)), ("pseudo_depth map (fed to depth)", Image.open(depth.path)),
                   ("canny map (sigma 1)", Image.open(canny.path))]
        finally:
            zoo_path.unlink()

    side = CELL * SCALE
    width = LABEL_W + len(SEEDS) * (side + PAD)
    height = (side + 22) + len(rows) * (side + PAD) + 22
    fig = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(fig)
    for k, (label, im) in enumerate(top):
        x = LABEL_W + 2 * k * (side + PAD)
        fig.paste(tile(im), (x, 0))
        draw.text((x, side + 4), label, fill="black")
    y0 = side + 22
    draw.text((LABEL_W, y0), f"generations, seeds {SEEDS[0]}-{SEEDS[-1]} (prompt 'a painting')", fill="black")
    y0 += 18
    for r, (label, images) in enumerate(rows):
        y = y0 + r * (side + PAD)
        draw.text((4, y + side // 2 - 6), f"coalition {label}", fill="black")
        for c, im in enumerate(images):
            fig.paste(tile(im), (LABEL_W + c * (side + PAD), y))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
