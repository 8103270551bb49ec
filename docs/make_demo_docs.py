"""The README's demo material, from a finished audit of the shipped zoo:

* docs/img/demo_grid.png: the reference images, then a few generations per coalition (the same
  seeds in every row), each row labelled with its coalition;
* the attribution table (markdown) printed to stdout: Shapley value [95% interval] per metric and
  player (the t interval), bold where the claim holds under the headline metric (only there), "(t)" where the t test
  alone finds it and the distribution-free test does not confirm it, and the planted LoRA's share in percent;
* the ablation table (markdown), when ``copyscope ablate`` has written ablation.json there.

    copyscope audit model_zoo.yaml && copyscope ablate model_zoo.yaml
    python docs/make_demo_docs.py copyscope-out/demo
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from copyscope.report.headline import significant, t_only
from copyscope.generate.cache import ImageCache

CELL, SCALE, LABEL_W, PAD = 32, 3, 250, 4


def tile(img: Image.Image) -> Image.Image:
    return img.convert("RGB").resize((CELL * SCALE, CELL * SCALE), Image.NEAREST)


def attribution_markdown(report: dict, focus: str = "planted") -> str:
    game = report["games"][0]
    players = game["players"]
    lines = ["| metric | " + " | ".join(players) + f" | {focus}'s share [95% interval] |",
             "|---" * (len(players) + 2) + "|"]
    head = game.get("headline")
    for metric, sec in sorted(game["metrics"].items(), key=lambda kv: kv[0] != head):  # headline first
        cells = []
        for p in players:
            v = sec["shapley"][p]
            t = v.get("t", v)  # the t interval; the claim's (distribution-free) one is in report.json
            c = f"{v['value']:+.3g} [{t['ci95'][0]:.2g}, {t['ci95'][1]:.2g}]"
            # significance is claimed for the headline metric only; the others are sensitivity analysis.
            # bold: claimed (both tests); (t): the t test alone, not confirmed by the distribution-free test
            if metric == head and significant(v, 0.05):
                c = f"**{c}**"
            elif metric == head and t_only(v, 0.05):
                c += " (t)"
            cells.append(c)
        share = sec["split_percent"][focus]
        label = f"{metric} (headline)" if metric == head else metric
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {share['share']:.0f}% [{share['low']:.0f}-{share['high']:.0f}%] |")
    return "\n".join(lines)


def ablation_markdown(ablation: dict) -> str:
    from copyscope.analyses.ablate import summary_rows

    n = len(ablation["seeds"])
    lines = [f"| metric | ranking (all {n} seeds) | mean Kendall tau with the other metrics | stable ranking from k "
             "seeds | mean 95% interval width / max abs value | planted rank | margin over the best other / max abs "
             "value | P(planted first) |", "|---" * 8 + "|"]
    for r in summary_rows(ablation):
        lines.append(f"| {r['metric']} | {r['ranking']} | {r['mean_kendall_with_other_metrics']:+.2f} | "
                     f"{r['k_stable']} of {r['n_seeds']} | {r['relative_ci_width']:.2f} | {r['planted_rank']} | "
                     f"{r['relative_margin']:+.2f} | {r['p_first']:.2f} |")
    return "\n".join(lines)


def main(audit_dir: str, out: str = "docs/img/demo_grid.png", per_row: int = 6) -> None:
    audit = Path(audit_dir)
    report = json.loads((audit / "report.json").read_text())
    cache = ImageCache(report["cache_dir"])
    game = report["games"][0]
    rows: list[tuple[str, list[Image.Image]]] = []
    for work, paths in report["works"].items():
        rows.append((f"reference: {work}", [tile(Image.open(p)) for p in paths][:per_row]))
    # coalitions by size, then in the players' order
    order = sorted(game["images"], key=lambda k: (0 if k == "" else len(k.split("+")), k))
    for coalition in order:
        keys = game["images"][coalition][:per_row]
        imgs = [tile(Image.open(cache.path(k))) for k in keys]
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
    print(f"wrote {out} ({len(rows)} rows)\n")
    print(attribution_markdown(report))
    if (audit / "ablation.json").is_file():
        print("\n" + ablation_markdown(json.loads((audit / "ablation.json").read_text())))


if __name__ == "__main__":
    main(*sys.argv[1:])
