"""Draw docs/img/demo_grid.png from a finished audit: the reference images, then a few generations
per coalition (the same seeds in every row), each row labelled with its coalition.

    copyscope audit model_zoo.yaml && python docs/make_demo_figure.py copyscope-out/demo
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

CELL, SCALE, LABEL_W, PAD = 32, 3, 250, 4


def tile(img: Image.Image) -> Image.Image:
    return img.convert("RGB").resize((CELL * SCALE, CELL * SCALE), Image.NEAREST)


def main(audit_dir: str, out: str = "docs/img/demo_grid.png", per_row: int = 6) -> None:
    audit = Path(audit_dir)
    report = json.loads((audit / "report.json").read_text())
    cache = Path(report["cache_dir"])
    game = report["games"][0]
    rows: list[tuple[str, list[Image.Image]]] = []
    for work, paths in report["works"].items():
        rows.append((f"reference: {work}", [tile(Image.open(p)) for p in paths][:per_row]))
    # coalitions by size, then in the players' order
    order = sorted(game["images"], key=lambda k: (0 if k == "" else len(k.split("+")), k))
    for coalition in order:
        keys = game["images"][coalition][:per_row]
        imgs = [tile(Image.open(cache / "images" / k[:2] / f"{k}.png")) for k in keys]
        rows.append((coalition or "(bare base)", imgs))
    side = CELL * SCALE
    width = LABEL_W + per_row * (side + PAD)
    canvas = Image.new("RGB", (width, len(rows) * (side + PAD) + PAD), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, imgs) in enumerate(rows):
        y = PAD + r * (side + PAD)
        draw.text((6, y + side // 2 - 6), label, fill="black")
        for c, img in enumerate(imgs):
            canvas.paste(img, (LABEL_W + c * (side + PAD), y))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)
    print(f"wrote {out} ({len(rows)} rows)")


if __name__ == "__main__":
    main(*sys.argv[1:])
