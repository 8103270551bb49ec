#!/usr/bin/env python
# usage: python bench/check_report_first_screen.py [DIR] [--screenshot PNG] [--width 1300] [--height 1000]
#   DIR: an audit's output folder (default copyscope-out/demo: run `copyscope audit model_zoo.yaml` first)
"""Does the HTML report's first screen show the finding? Renders DIR/report.html afresh from DIR/report.json
(copyscope.report.html.render_html, the images from the audit's cache), opens it in headless chromium at
WIDTH x HEIGHT and measures, with getBoundingClientRect, where the first game's verdict sentences
(``#game-0-verdict``), its key images (``#game-0-key-images``: the work, the bare base, the culprit alone on the
base, the full pipeline) and its attribution chart (``#game-0-chart``) lie. It passes when all three are
inside the first screen (top >= 0, bottom <= HEIGHT, right <= WIDTH), the verdict has text, every image of
the first strip and the chart decoded (naturalWidth > 0), and no table starts above the chart's bottom.

The shipped report has no script: the measuring script is added to a copy of the page in a temporary folder,
which chromium loads with ``--dump-dom``; the script writes the boxes into the DOM as JSON. Layout depends on
the width only (the page uses no viewport-height units), so the boxes are those of a WIDTH x HEIGHT window.
``--screenshot PNG`` also saves what a reader sees there. Exit status 0 when the check passes, 1 when it
fails, 2 when chromium is not installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH, HEIGHT = 1300, 1000
CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"]

PROBE = """<script>
window.addEventListener("load", function () {
  function box(e) {
    var r = e.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height};
  }
  function images(root) {
    return root ? Array.prototype.map.call(root.querySelectorAll("img"), function (i) {
      var b = box(i); b.loaded = i.complete && i.naturalWidth > 0; b.alt = i.alt; return b; }) : null;
  }
  function part(id, withImages) {
    var e = document.getElementById(id);
    if (!e) return null;
    var b = box(e); b.text = e.textContent.trim();
    if (withImages) { b.images = images(e); b.first_strip = images(e.querySelector(".strip")); }
    return b;
  }
  var tables = document.getElementsByTagName("table");
  var out = {viewport: {width: innerWidth, height: innerHeight}, verdict: part("game-0-verdict", false),
             key_images: part("game-0-key-images", true), chart: part("game-0-chart", true),
             first_table: tables.length ? box(tables[0]) : null};
  var pre = document.createElement("pre");
  pre.id = "first-screen-geometry";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM) if p), None)


def _run(args: list[str], timeout: float) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} exited {res.returncode}: {res.stderr.strip()[-400:]}")
    return res.stdout


def measure(html: str, width: int = WIDTH, height: int = HEIGHT, chromium: str | None = None,
            timeout: float = 120) -> dict:
    """The boxes of the verdict, the key images and the chart in ``html`` laid out at width x height."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "probe.html"
        page.write_text(html.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
        dom = _run([chromium, *FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}", "--dump-dom",
                    page.as_uri()], timeout)
    start = dom.find('<pre id="first-screen-geometry">')
    if start < 0:
        raise RuntimeError("the measuring script wrote nothing (did the page load?)")
    text = dom[start:].split(">", 1)[1].split("</pre>", 1)[0]
    return json.loads(text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&"))


def problems(geo: dict, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    """What keeps the first screen from showing the verdict, the key images and the chart (empty: nothing)."""
    out = []

    def on_screen(name: str, b: dict | None) -> None:
        if b is None:
            out.append(f"{name}: missing")
        elif b["top"] < 0 or b["bottom"] > height or b["left"] < 0 or b["right"] > width or b["height"] <= 0:
            out.append(f"{name}: at top {b['top']:.0f}, bottom {b['bottom']:.0f}, right {b['right']:.0f}, "
                       f"outside the first {width} x {height} px")

    on_screen("verdict sentences", geo.get("verdict"))
    if geo.get("verdict") is not None and not geo["verdict"].get("text"):
        out.append("verdict sentences: empty")
    strip = (geo.get("key_images") or {}).get("first_strip") or []
    if len(strip) < 3:
        out.append(f"key images: {len(strip)} image(s) in the first strip, expected the work, the base, the culprit's "
                   "coalition and the full pipeline")
    for i, b in enumerate(strip):
        on_screen(f"key image {i + 1} ({b.get('alt')})", b)
        if not b.get("loaded"):
            out.append(f"key image {i + 1} ({b.get('alt')}): did not decode")
    chart = geo.get("chart")
    on_screen("attribution chart", chart)
    imgs = (chart or {}).get("images") or []
    if chart is not None and not (imgs and all(b.get("loaded") for b in imgs)):
        out.append("attribution chart: its image did not decode")
    table = geo.get("first_table")
    if chart is not None and table is not None and table["top"] < chart["bottom"]:
        out.append(f"a table starts at {table['top']:.0f} px, above the chart's bottom ({chart['bottom']:.0f} px)")
    return out


def screenshot(html_path: Path, png: Path, width: int = WIDTH, height: int = HEIGHT, chromium: str | None = None) -> None:
    chromium = chromium or find_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        _run([chromium, *FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
              f"--screenshot={Path(png).resolve()}", Path(html_path).resolve().as_uri()], 120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", default="copyscope-out/demo", type=Path)
    ap.add_argument("--screenshot", type=Path, help="also save the first screen as this PNG")
    ap.add_argument("--width", type=int, default=WIDTH)
    ap.add_argument("--height", type=int, default=HEIGHT)
    a = ap.parse_args(argv)
    from copyscope.report.html import render_html

    chromium = find_chromium()
    if chromium is None:
        print("chromium is not installed: the first-screen check needs a headless browser", file=sys.stderr)
        return 2
    report = json.loads((a.dir / "report.json").read_text())
    html = render_html(report, a.dir)
    geo = measure(html, a.width, a.height, chromium)
    for name in ("verdict", "key_images", "chart"):
        b = geo.get(name)
        print(f"{name:11s}" + (f" top {b['top']:5.0f}  bottom {b['bottom']:5.0f}  left {b['left']:5.0f}  right {b['right']:5.0f}"
                               if b else " missing"))
    print("verdict:", (geo.get("verdict") or {}).get("text", ""))
    if a.screenshot:
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "report.html"
            page.write_text(html, encoding="utf-8")
            screenshot(page, a.screenshot, a.width, a.height, chromium)
        print("screenshot:", a.screenshot)
    found = problems(geo, a.width, a.height)
    for p in found:
        print("FAIL:", p)
    print("first screen:", "FAIL" if found else f"ok (verdict, key images and chart within {a.width} x {a.height} px)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
