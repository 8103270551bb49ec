"""Bad input, round three (issue 27, the hostile and odd inputs): data loss (cache prune in a folder that
is not copyscope's cache, commands writing into folders that are not copyscope's), silently wrong
results (EXIF-rotated images read sideways), tracebacks (bombs and FIFOs as IP-Adapter images and
``from_image`` sources, detector parameters that crash, huge sizes, read-only caches, wrong ground
truths, rich markup in names), terminal escape sequences from a tampered report.json, and numbers
that were not checked. Every refusal: one error line naming file and key, exit code 2, no traceback,
nothing already there changed. No model is loaded (audits run with a stub ``generate``).
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from copyscope.generate.cache import MARKER, ImageCache
from copyscope.common.files import key_of
from copyscope.cli import app

from helpers.cache_entries import aged_entries
from helpers.cli_errors import Z, _set, _stub_generate, _text, assert_one_line_error, snapshot, zoo_data
from helpers.paths import REPO

runner = CliRunner()
DAY = 86400.0
ESCAPES = ("\x1b", "\x07", "\x9b", "\x90")


@pytest.fixture(autouse=True)
def _no_hang(no_hang):
    """Every case of this file under the 60 s alarm (conftest.no_hang)."""


@pytest.fixture
def stubbed(monkeypatch):
    from copyscope.generate import CoalitionEngine

    monkeypatch.setattr(CoalitionEngine, "generate", _stub_generate(False))
    return monkeypatch


def _write_zoo(tmp: Path, data: dict) -> Path:
    zoo = tmp / "zoo.yaml"
    zoo.write_text(_text(data))
    return zoo


def _bomb_png(path: Path, side: int = 9000) -> Path:
    Image.new("1", (side, side)).save(path, optimize=True)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# =============================================================================================
# data loss: cache prune only in copyscope's cache, and only copyscope's files


def _photos(folder: Path) -> Path:
    """A user's folder laid out as prune used to glob: images/*/*.png|json, features/*/*/*.npy."""
    for sub in ("2023", "2024"):
        d = folder / "images" / sub
        d.mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 10, 10)).save(d / "IMG_0001.png")
        (d / "IMG_0001.json").write_text('{"camera": "phone"}')
    (folder / "features" / "a" / "b").mkdir(parents=True)
    np.save(folder / "features" / "a" / "b" / "embedding.npy", np.zeros(3))
    old = 1_000_000_000  # 2001: "older than" any age
    for f in folder.rglob("*"):
        os.utime(f, (old, old))
    return folder


def _copyscope_named_photos(folder: Path) -> Path:
    """Worse: files named like cache entries (images/ab/<64 hex>.png), but no marker and no sidecar of copyscope's."""
    key = "ab" + "0" * 62
    d = folder / "images" / "ab"
    d.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(d / f"{key}.png")
    (d / f"{key}.json").write_text('{"note": "mine"}')
    os.utime(d / f"{key}.png", (1e9, 1e9))
    return folder


@pytest.mark.parametrize("layout", [_photos, _copyscope_named_photos], ids=["photos", "copyscope-named-files"])
@pytest.mark.parametrize("how", ["--cache", "env"])
def test_prune_refuses_a_folder_that_is_not_a_copyscope_cache(layout, how, tmp_path, monkeypatch):
    folder = layout(tmp_path / "My Photos")
    before = snapshot(folder)
    args = ["cache", "prune", "--max-size", "0"]
    if how == "--cache":
        args += ["--cache", str(folder)]
    else:
        monkeypatch.setenv("COPYSCOPE_CACHE", str(folder))
    line = assert_one_line_error(runner.invoke(app, args),
                                 rf"My Photos: is not a copyscope cache \(no {re.escape(MARKER)}; it holds .*images")
    assert line.startswith("error: --cache " if how == "--cache" else "error: $COPYSCOPE_CACHE "), line
    assert snapshot(folder) == before and not (folder / MARKER).exists()
    # info refuses it too (it would report the photos as nothing, or worse)
    assert_one_line_error(runner.invoke(app, ["cache", "info", "--cache", str(folder)]), r"is not a copyscope cache")


def test_a_cache_copyscope_makes_carries_the_marker_and_prune_works_there(tmp_path):
    root = tmp_path / "c"
    keys = aged_entries(root, 3, 10 * DAY)
    assert (root / MARKER).is_file()
    # a file of the user's in the cache's own layout, named otherwise, is never counted nor deleted
    stray = root / "images" / keys[0][:2] / "holiday.png"
    Image.new("RGB", (8, 8)).save(stray)
    os.utime(stray, (1e9, 1e9))
    r = runner.invoke(app, ["cache", "prune", "--cache", str(root), "--max-size", "0"])
    assert r.exit_code == 0, r.output
    assert "deleted 3 images" in r.output
    assert not any(ImageCache(root).path(k).exists() for k in keys) and stray.exists()


def test_a_cache_from_before_markers_is_recognised_and_marked(tmp_path):
    root = tmp_path / "old-cache"
    keys = aged_entries(root, 3, 10 * DAY)
    (root / MARKER).unlink()  # as a copyscope before markers left it
    r = runner.invoke(app, ["cache", "prune", "--cache", str(root), "--older-than", "5d", "--dry-run"])
    assert r.exit_code == 0 and "would delete 3 images" in r.output, r.output
    assert not (root / MARKER).exists()  # a dry run writes nothing
    r = runner.invoke(app, ["cache", "prune", "--cache", str(root), "--older-than", "5d"])
    assert r.exit_code == 0 and "deleted 3 images" in r.output, r.output
    assert (root / MARKER).is_file() and not any(ImageCache(root).path(k).exists() for k in keys)


def test_the_audit_marks_no_folder_holding_something_else(tmp_path):
    """A zoo's `cache:` pointed at a folder of photos: the audit may add its entries, but does not mark
    the folder as a cache, so prune still refuses it."""
    folder = _photos(tmp_path / "photos")
    ImageCache(folder).put(key_of({"x": 1}), np.zeros((8, 8, 3)), {}, [])
    assert not (folder / MARKER).exists()
    assert_one_line_error(runner.invoke(app, ["cache", "prune", "--cache", str(folder), "--max-size", "0"]),
                          r"is not a copyscope cache")
    assert (folder / "images" / "2023" / "IMG_0001.png").exists()


@pytest.mark.parametrize("command", [["prune", "--max-size", "1GB"], ["info"]])
def test_a_file_given_as_the_cache_is_refused(command, tmp_path):
    f = tmp_path / "cache.tar"
    f.write_bytes(b"not a folder")
    assert_one_line_error(runner.invoke(app, ["cache", *command, "--cache", str(f)]),
                          r"--cache .*cache\.tar: is a file, not a cache folder")
    assert f.read_bytes() == b"not a folder"


@pytest.mark.parametrize("option, value, pattern", [
    ("--max-size", "9" * 400, r"--max-size: size '9{37}\.\.\.' is too large; expected at most"),
    ("--max-size", "1" * 400 + "GB", r"--max-size: size .* is too large"),
    ("--max-size", "1e400", r"--max-size: expected a size such as 500MB"),
    ("--older-than", "9" * 400 + "d", r"--older-than: age .* is too large; expected at most 1000 years"),
])
def test_huge_sizes_and_ages_are_one_line(option, value, pattern, tmp_path):
    root = tmp_path / "c"
    aged_entries(root, 3, 10 * DAY)
    assert_one_line_error(runner.invoke(app, ["cache", "prune", "--cache", str(root), option, value]), pattern)


def test_read_only_cache_is_one_line_and_a_dry_run_still_works(tmp_path, monkeypatch):
    """A cache on a read-only file system (simulated: the tests may run as root, whom modes do not stop)."""
    import builtins

    from copyscope.generate import cache_admin

    root = tmp_path / "ro"
    keys = aged_entries(root, 3, 10 * DAY)
    real_open = builtins.open

    def ro_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and str(file).startswith(str(root)):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    def ro_unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(cache_admin, "open", ro_open, raising=False)
    monkeypatch.setattr(Path, "unlink", ro_unlink)
    r = runner.invoke(app, ["cache", "prune", "--cache", str(root), "--older-than", "1d", "--dry-run"])
    assert r.exit_code == 0 and "would delete 3 images" in r.output, r.output
    line = assert_one_line_error(runner.invoke(app, ["cache", "prune", "--cache", str(root), "--older-than", "1d"]),
                                 r"cannot write \(Read-only file system\); make it writable or choose another cache folder")
    assert str(root) in line
    monkeypatch.undo()
    assert all(ImageCache(root).path(k).exists() for k in keys)


# =============================================================================================
# data loss: every command that writes follows the output-folder rule


def _foreign(folder: Path, *names: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names or ("notes.txt",):
        (folder / n).write_text(f"the user's own {n}\n")
    return snapshot(folder)


def _demo_zoo(tmp: Path, gt: object = None) -> Path:
    """A folder with the demo zoo's ground_truth.json (all `demo bench` reads before training)."""
    zoo = tmp / "demo"
    zoo.mkdir()
    text = (REPO / "demo_zoo" / "ground_truth.json").read_text()
    if gt is not None:
        text = gt if isinstance(gt, str) else json.dumps(gt)
    (zoo / "ground_truth.json").write_text(text)
    return zoo


@pytest.fixture
def no_training(monkeypatch):
    """demo bench's work (pool training, audits) replaced: a refusal must come before it."""
    from copyscope.demo import bench, bench_verdicts

    calls = []

    def fake(out, demo_zoo, gt, todo, **kw):
        calls.append(out)
        results = [{"scenario": "s", "kind": "plain", "controlnet": False, "verdicts": {"ssim": {
            "planted_first": True, "plant_significant": True, "decoy_significant": False}}}]
        return {"summary": bench_verdicts.summarise(results), "results": results, "metrics": ["ssim"], "scenarios": 1,
                "wall_seconds": 0.0, "alpha": 0.05}

    monkeypatch.setattr(bench, "_bench", fake)
    return calls


@pytest.mark.parametrize("names", [("results.json", "table.md"), ("notes.txt",)], ids=["its-file-names", "other-files"])
def test_demo_bench_never_writes_into_a_folder_that_is_not_copyscopes(names, no_training, tmp_path):
    out = tmp_path / "mine"
    before = _foreign(out, *names)
    r = runner.invoke(app, ["demo", "bench", "--quick", "--out", str(out), "--zoo", str(_demo_zoo(tmp_path))])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert re.search(r"--out .*mine: is not empty and is not a copyscope output folder", r.output), r.output
    assert snapshot(out) == before and not no_training


def test_demo_bench_writes_through_the_manifest_and_may_rerun(no_training, tmp_path):
    out = tmp_path / "validity"
    zoo = _demo_zoo(tmp_path)
    for _ in range(2):
        r = runner.invoke(app, ["demo", "bench", "--quick", "--out", str(out), "--zoo", str(zoo)])
        assert r.exit_code == 0, r.output
    manifest = json.loads((out / ".copyscope-output.json").read_text())
    assert {"results.json", "table.md", "table_by_kind.md"} <= set(manifest["files"])
    # a results.json of the user's in copyscope's folder is not overwritten either
    (out / "table.md").unlink()
    (out / "table.md").write_text("mine\n")
    manifest["files"].pop("table.md")
    (out / ".copyscope-output.json").write_text(json.dumps(manifest))
    r = runner.invoke(app, ["demo", "bench", "--quick", "--out", str(out), "--zoo", str(zoo)])
    assert r.exit_code == 2 and "table.md in the output folder was not written by copyscope" in r.output, r.output
    assert (out / "table.md").read_text() == "mine\n"


def test_demo_bench_out_a_file(no_training, tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("x")
    r = runner.invoke(app, ["demo", "bench", "--quick", "--out", str(f), "--zoo", str(_demo_zoo(tmp_path))])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert re.search(r"results\.txt: exists and is not a folder", r.output) and f.read_text() == "x" and not no_training


@pytest.mark.parametrize("gt, pattern", [
    ("{not json", r"ground_truth\.json: ground_truth\.json is not valid JSON \(line 1"),
    (b"\xff\xfe{}", r"ground_truth\.json: ground_truth\.json is not UTF-8 text"),
    ([1, 2], r"ground_truth\.json: ground_truth\.json is not a JSON object"),
    ({"resolution": "32", "prompt": "p", "steps": {"lora": 5}}, r"ground_truth\.json: resolution: expected a multiple of 8"),
    ({"resolution": 32, "prompt": 5, "steps": {"lora": 5}}, r"ground_truth\.json: prompt: expected a text"),
    ({"resolution": 32, "prompt": "p", "steps": [5]}, r"ground_truth\.json: steps\.lora: expected a positive integer"),
    ({"resolution": 32, "prompt": "p", "steps": {"lora": 5}, "hyperparameters": {"lora_rank": True}},
     r"ground_truth\.json: hyperparameters\.lora_rank: expected a positive integer"),
], ids=["not-json", "not-utf8", "a-list", "resolution-text", "prompt-number", "steps-list", "rank-boolean"])
def test_demo_bench_ground_truth_that_is_not_the_demos(gt, pattern, no_training, tmp_path):
    zoo = tmp_path / "demo"
    zoo.mkdir()
    path = zoo / "ground_truth.json"
    path.write_bytes(gt if isinstance(gt, bytes) else (gt if isinstance(gt, str) else json.dumps(gt)).encode())
    r = runner.invoke(app, ["demo", "bench", "--quick", "--out", str(tmp_path / "o"), "--zoo", str(zoo)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and re.search(pattern, lines[0]), r.output
    assert not (tmp_path / "o").exists() and not no_training


def test_demo_build_overwrite_replaces_only_a_demo_zoo(tmp_path):
    out = tmp_path / "home"
    before = _foreign(out, "zoo.yaml", "ground_truth.json")
    r = runner.invoke(app, ["demo", "build", "--quick", "--out", str(out), "--overwrite"])
    assert r.exit_code == 2 and "is not a demo zoo" in r.output and "Traceback" not in r.output, r.output
    assert snapshot(out) == before


def test_demo_check_grid_never_replaces_a_file_it_did_not_write(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    from copyscope.demo.check import GRID_SOFTWARE, check_grid_target

    photo = tmp_path / "grid.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(photo)
    before = photo.read_bytes()
    demo = REPO / "demo_zoo"
    r = runner.invoke(app, ["demo", "check", str(demo), "--seeds", "1", "--grid", str(photo)])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "grid.png: exists and was not written by `copyscope demo check`" in r.output
    assert photo.read_bytes() == before
    info = PngInfo()
    info.add_text("Software", GRID_SOFTWARE)
    Image.new("RGB", (8, 8)).save(photo, pnginfo=info)
    check_grid_target(photo)  # a grid of its own: may be replaced
    check_grid_target(tmp_path / "new.png")


def _conditioning_zoo(tmp: Path, a: dict, **params) -> Path:
    data = zoo_data(tmp, a)
    data["controlnets"] = [{"name": "depth", "model": str(a["controlnet"]),
                            "conditioning": {"from_image": str(a["control"]), "detector": "canny", **params}}]
    return _write_zoo(tmp, data)


def test_conditioning_never_writes_into_a_folder_that_is_not_copyscopes(assets, tmp_path):
    zoo = _conditioning_zoo(tmp_path, assets)
    out = tmp_path / "documents"
    before = _foreign(out, "thesis.pdf")
    assert_one_line_error(runner.invoke(app, ["conditioning", str(zoo), "--out", str(out)]),
                          r"--out .*documents: is not empty and is not a copyscope output folder")
    assert snapshot(out) == before
    # a new folder is fine, and the audit may write there afterwards
    r = runner.invoke(app, ["conditioning", str(zoo), "--out", str(tmp_path / "new")])
    assert r.exit_code == 0 and list((tmp_path / "new" / "conditioning").glob("canny-*.png")), r.output


def test_conditioning_subfolder_that_is_a_symlink_is_refused(assets, tmp_path):
    zoo = _conditioning_zoo(tmp_path, assets)
    elsewhere = tmp_path / "elsewhere"
    before = _foreign(elsewhere, "keep.txt")
    for out in (tmp_path / "fresh", tmp_path / "owned"):
        out.mkdir()
        (out / "conditioning").symlink_to(elsewhere, target_is_directory=True)
    (tmp_path / "owned" / ".copyscope-output.json").write_text('{"copyscope": 1, "files": {}}')
    for out in (tmp_path / "fresh", tmp_path / "owned"):
        for command in (["conditioning", str(zoo), "--out", str(out)], ["audit", str(zoo), "--out", str(out)]):
            assert_one_line_error(runner.invoke(app, command), r"conditioning/ in the output folder is a symlink")
    assert snapshot(elsewhere) == before


def test_analysis_output_folder_follows_the_rule(assets, tmp_path):
    """reward-split and imitation check their folder before any work, and write through the manifest."""
    from copyscope.analyses.harness import open_analysis, write_analysis
    from copyscope.config import load_zoo
    from copyscope.common.errors import CopyscopeError

    zoo = load_zoo(_write_zoo(tmp_path, zoo_data(tmp_path, assets)))
    foreign = tmp_path / "downloads"
    before = _foreign(foreign, "reward_split.json")
    with pytest.raises(CopyscopeError, match=r"--out .*downloads: is not empty and is not a copyscope output folder"):
        open_analysis(zoo, foreign, "reward-split")
    assert snapshot(foreign) == before
    ctx = open_analysis(zoo, None, "imitation")
    assert ctx.out_dir == zoo.output_dir / "imitation"
    ctx.write({"x": 1}, "imitation.json")
    assert json.loads((ctx.out_dir / "imitation.json").read_text())["x"] == 1
    assert (ctx.out_dir / ".copyscope-output.json").is_file()
    # a file of that name copyscope did not write is never overwritten
    other = tmp_path / "other"
    other.mkdir()
    (other / ".copyscope-output.json").write_text('{"copyscope": 1, "files": {}}')
    (other / "imitation.json").write_text("mine")
    with pytest.raises(CopyscopeError, match="imitation.json in the output folder was not written by copyscope"):
        write_analysis({"x": 2}, other, "imitation.json", 0.0)
    assert (other / "imitation.json").read_text() == "mine"


# =============================================================================================
# silently wrong: EXIF orientation


# EXIF orientation -> how the stored pixels turn upright (the TIFF/EXIF specification, written out by hand)
TO_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),  # 90 degrees counter-clockwise
}


def _exif_pair(tmp: Path, orientation: int) -> tuple[Path, Path]:
    """(a JPEG stored sideways with EXIF orientation ``orientation``, a PNG of the same pixels turned
    upright by hand): a viewer shows both alike, so copyscope must score them alike."""
    rng = np.random.default_rng(orientation)
    stored = np.zeros((40, 64, 3), np.uint8)  # wide as stored, tall when upright
    stored[:, :20] = (230, 30, 30)
    stored[:20, 20:] = (rng.random((20, 44, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    jpeg = tmp / f"photo-{orientation}.jpg"
    Image.fromarray(stored).save(jpeg, exif=exif.tobytes(), quality=95)
    with Image.open(jpeg) as im:  # the decoded pixels as stored (PIL does not apply the tag itself)
        decoded = np.asarray(im.convert("RGB"))
    upright = TO_UPRIGHT[orientation](decoded)
    png = tmp / f"upright-{orientation}.png"
    Image.fromarray(np.ascontiguousarray(upright)).save(png)
    return jpeg, png


@pytest.mark.parametrize("orientation", sorted(TO_UPRIGHT))
def test_exif_rotated_image_is_read_upright_by_every_reader(orientation, tmp_path):
    from copyscope.modelfiles.sources import load_control
    from copyscope.common.inputs import image_sha256
    from copyscope.common.inputs import load_image_rgb

    jpeg, png = _exif_pair(tmp_path, orientation)
    a, b = load_image_rgb(jpeg), load_image_rgb(png)  # references, conditioning sources, thumbnails
    assert a.shape == b.shape == ((64, 40, 3) if orientation >= 5 else (40, 64, 3)) and np.array_equal(a, b)
    # IP-Adapter images and ready-made conditioning images
    assert np.array_equal(np.asarray(load_control(jpeg, 40, 64)), np.asarray(load_control(png, 40, 64)))
    # the orientation is part of the image's identity: entries made from a sideways read are not reused
    plain = tmp_path / "no-tag.jpg"
    with Image.open(jpeg) as im:
        im.save(plain, quality=95)
    assert image_sha256(jpeg) != image_sha256(plain)


def _audit_values(tmp: Path, assets: dict, reference: Path) -> dict:
    data = zoo_data(tmp, assets)
    data["references"] = [{"name": "work", "paths": [str(reference)]}]
    data["metrics"] = ["ssim", "dhash"]
    data["output"] = str(tmp / f"out-{reference.stem}")
    r = runner.invoke(app, ["audit", str(_write_zoo(tmp, data))])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp / f"out-{reference.stem}" / "report.json").read_text())
    return {m: {p: v["value"] for p, v in sec["shapley"].items()} for m, sec in report["games"][0]["metrics"].items()}


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_reference_scores_as_the_upright_image(orientation, stubbed, assets, tmp_path):
    jpeg, png = _exif_pair(tmp_path, orientation)
    sideways = tmp_path / "sideways.png"  # what copyscope used to compare against
    with Image.open(jpeg) as im:
        im.convert("RGB").save(sideways)
    upright, rotated, as_stored = (_audit_values(tmp_path, assets, p) for p in (png, jpeg, sideways))
    assert rotated == upright
    assert as_stored != upright  # the test can tell: the sideways read scores differently


# =============================================================================================
# tracebacks and vague messages: IP-Adapter images and from_image sources, detector parameters


def _ip_adapter(make):
    def edit(tmp, data, a):
        (tmp / "ipa").mkdir(exist_ok=True)
        data["ip_adapters"] = [{"name": "ip", "model": str(tmp / "ipa"), "weight_name": "ip.safetensors",
                                "image": str(make(tmp))}]

    return edit


def _from_image(make, detector="canny", **params):
    def edit(tmp, data, a):
        source = str(make(tmp)) if make else str(a["control"])
        c = {"from_image": source, "detector": detector}
        if params:
            c["params"] = params
        data["controlnets"] = [{"name": "depth", "model": str(a["controlnet"]), "conditioning": c}]

    return edit


def _folder(tmp: Path) -> Path:
    (tmp / "a-folder").mkdir(exist_ok=True)
    return tmp / "a-folder"


def _ip_with(key, value):
    def edit(tmp, data, a):
        _ip_adapter(lambda t: a["control"])(tmp, data, a)
        data["ip_adapters"][0][key] = value

    return edit


def _from_work_reference(value):
    def edit(tmp, data, a):
        data["controlnets"] = [{"name": "depth", "model": str(a["controlnet"]), "conditioning": {
            "from_work": "work", "detector": "canny", "reference": value}}]

    return edit


CN = Z + r":\d+: controlnets\[0\]\.conditioning"
CASES = [
    # --- image inputs other than references: regular image files within the pixel limit, named precisely
    ("ip-adapter-image-bomb", _ip_adapter(lambda t: _bomb_png(t / "ipbomb.png")),
     [Z + r":\d+: ip_adapters\[0\]\.image: IP-Adapter image '.*ipbomb\.png' is too large \(9000x9000 = 81000000 pixels"]),
    ("ip-adapter-image-fifo", _ip_adapter(lambda t: _fifo(t / "pipe.png")),
     [Z + r":\d+: ip_adapters\[0\]\.image: IP-Adapter image '.*pipe\.png' is a FIFO \(named pipe\); expected an image file"]),
    ("ip-adapter-image-folder", _ip_adapter(_folder),
     [Z + r":\d+: ip_adapters\[0\]\.image: IP-Adapter image '.*a-folder' is a folder; expected an image file"]),
    ("ip-adapter-image-not-an-image", _ip_adapter(lambda t: (t / "x.png").write_text("text") and t / "x.png"),
     [Z + r":\d+: ip_adapters\[0\]\.image: IP-Adapter image '.*x\.png' is not an image"]),
    ("from-image-bomb", _from_image(lambda t: _bomb_png(t / "fbomb.png")),
     [CN + r"\.from_image: conditioning source '.*fbomb\.png' is too large \(9000x9000"]),
    ("from-image-fifo", _from_image(lambda t: _fifo(t / "pipe.png")),
     [CN + r"\.from_image: conditioning source '.*pipe\.png' is a FIFO \(named pipe\)"]),
    ("from-image-folder", _from_image(_folder), [CN + r"\.from_image: conditioning source '.*a-folder' is a folder"]),
    # --- detector parameters that validated but crashed the detector
    ("canny-low-above-high", _from_image(None, low_threshold=0.5, high_threshold=0.2),
     [CN + r": canny low_threshold 0\.5 is above high_threshold 0\.2; expected low <= high"]),
    ("canny-low-above-default-high", _from_image(None, low_threshold=0.5),
     [CN + r": canny low_threshold 0\.5 is above high_threshold 0\.2 \(the other at its default\)"]),
    ("canny-quantile-above-1", _from_image(None, use_quantiles=True, high_threshold=1.5),
     [CN + r": parameter 'high_threshold' of detector 'canny' is 1\.5; expected a quantile from 0 to 1"]),
    ("canny-threshold-negative", _from_image(None, low_threshold=-1),
     [CN + r": parameter 'low_threshold' of detector 'canny' is -1; expected a number from 0 to 1000"]),
    ("canny-threshold-400-digits", _from_image(None, high_threshold=10**400),
     [CN + r": parameter 'high_threshold' of detector 'canny' is 10{26}\.\.\.; expected a number from 0"]),
    ("pseudo-depth-sigma-400-digits", _from_image(None, detector="pseudo_depth", sigma=10**400),
     [CN + r": parameter 'sigma' of detector 'pseudo_depth' is 10{26}\.\.\.; expected"]),
    ("canny-sigma-negative", _from_image(None, sigma=-2),
     [CN + r": parameter 'sigma' of detector 'canny' is -2; expected a number from 0 to 1000"]),
    ("canny-sigma-nan", _from_image(None, sigma=float("nan")),
     [CN + r"\.params\.sigma: nan is not a finite number"]),
    ("pseudo-depth-sigma-1e308", _from_image(None, detector="pseudo_depth", sigma=1e308),
     [CN + r": parameter 'sigma' of detector 'pseudo_depth' is 1e\+308; expected a number from 0 to 1000"]),
    ("pseudo-depth-sigma-inf", _from_image(None, detector="pseudo_depth", sigma=float("inf")),
     [CN + r"\.params\.sigma: inf is not a finite number"]),
    # --- numbers: bounded, and a boolean is not a number
    ("sdxl-original-size-negative", _set("generation.sdxl", {"original_size": [-64, 0]}),
     [Z + r":\d+: generation\.sdxl\.original_size\[0\]: .*greater than or equal to 1"]),
    ("sdxl-target-size-zero", _set("generation.sdxl", {"target_size": [64, 0]}),
     [Z + r":\d+: generation\.sdxl\.target_size\[1\]: .*greater than or equal to 1"]),
    ("sdxl-original-size-boolean", _set("generation.sdxl", {"original_size": [True, 64]}),
     [Z + r":\d+: generation\.sdxl\.original_size\[0\]: .*valid integer, got True"]),
    ("sdxl-original-size-huge", _set("generation.sdxl", {"original_size": [64, 10**9]}),
     [Z + r":\d+: generation\.sdxl\.original_size\[1\]: .*less than or equal to 8192"]),
    ("sdxl-crop-boolean", _set("generation.sdxl", {"crops_coords_top_left": [0, False]}),
     [Z + r":\d+: generation\.sdxl\.crops_coords_top_left\[1\]: .*valid integer, got False"]),
    ("sdxl-crop-negative", _set("generation.sdxl", {"crops_coords_top_left": [-8, 0]}),
     [Z + r":\d+: generation\.sdxl\.crops_coords_top_left\[0\]: .*greater than or equal to 0"]),
    ("flux-true-cfg-huge", _set("generation.flux", {"true_cfg_scale": 1e12}),
     [Z + r":\d+: generation\.flux\.true_cfg_scale: .*less than or equal to 1000"]),
    ("flux-true-cfg-inf", _set("generation.flux", {"true_cfg_scale": float("inf")}),
     [Z + r":\d+: generation\.flux\.true_cfg_scale: .*finite"]),
    ("flux-true-cfg-boolean", _set("generation.flux", {"true_cfg_scale": True}),
     [Z + r":\d+: generation\.flux\.true_cfg_scale: .*valid number, got True"]),
    ("flux-sequence-boolean", _set("generation.flux", {"max_sequence_length": True}),
     [Z + r":\d+: generation\.flux\.max_sequence_length: .*valid integer, got True"]),
    ("sd3-sequence-boolean", _set("generation.sd3", {"max_sequence_length": True}),
     [Z + r":\d+: generation\.sd3\.max_sequence_length: .*valid integer, got True"]),
    ("compile-number", _set("generation.compile", 1), [Z + r":\d+: generation\.compile: .*valid boolean, got 1"]),
    ("ip-adapter-scale-huge", _ip_with("scale", 1e9), [Z + r":\d+: ip_adapters\[0\]\.scale: .*less than or equal to 100"]),
    ("ip-adapter-scale-nan", _ip_with("scale", float("nan")), [Z + r":\d+: ip_adapters\[0\]\.scale: .*finite"]),
    ("ip-adapter-scale-boolean", _ip_with("scale", True), [Z + r":\d+: ip_adapters\[0\]\.scale: .*valid number, got True"]),
    ("metric-size-huge", _set("metrics", ["dhash", {"name": "ssim", "size": 10**400}]),
     [Z + r":\d+: metrics\[1\]: metric 'ssim': option 'size' must be <= 8192, got 1000"]),
    ("metric-bins-huge", _set("metrics", [{"name": "histogram", "bins": 10**4}]),
     [Z + r":\d+: metrics\[0\]: metric 'histogram': option 'bins' must be <= 256, got 10000"]),
    ("reference-true", _from_work_reference(True),
     [CN + r"\.reference: expected an image index \(an integer\), a file name or 'each', got True"]),
    ("reference-float", _from_work_reference(1.0), [CN + r"\.reference: expected an image index .*got 1\.0"]),
]


@pytest.mark.parametrize("case_id, edit, patterns", CASES, ids=[c[0] for c in CASES])
def test_round3_one_line_exit_2(case_id, edit, patterns, assets, tmp_path):
    data = zoo_data(tmp_path, assets)
    edit(tmp_path, data, assets)
    zoo = _write_zoo(tmp_path, data)
    for command in ("validate", "audit") if case_id in AUDIT_TOO else ("validate",):
        assert_one_line_error(runner.invoke(app, [command, str(zoo)]), *patterns)
    assert not (tmp_path / "out").exists()


AUDIT_TOO = {"ip-adapter-image-bomb", "from-image-fifo", "canny-low-above-high", "pseudo-depth-sigma-1e308"}


def test_valid_odd_detector_parameters_still_run(assets, tmp_path):
    """The bounds refuse only what crashes: quantile thresholds within [0, 1], sigma 0, low == high run."""
    zoo = _conditioning_zoo(tmp_path, assets, params={"use_quantiles": True, "low_threshold": 0.9,
                                                      "high_threshold": 0.9, "sigma": 0})
    r = runner.invoke(app, ["conditioning", str(zoo), "--out", str(tmp_path / "maps")])
    assert r.exit_code == 0, r.output


# =============================================================================================
# ablate: the ground truth is checked before the audit runs


@pytest.mark.parametrize("gt, pattern", [
    ({"planted_infringer": 5}, r"gt\.json: planted_infringer: expected a component name or a list of names, got 5"),
    ({"planted": ["lora0", 3]}, r"gt\.json: planted: expected a component name or a list of names"),
    ({"components": ["lora0"]}, r"gt\.json: components: expected an object"),
    ({"components": {"loras": {"lora0": {"file": 7}}}}, r"gt\.json: components\.loras\.lora0\.file: expected a file name"),
    ({"references": {"work": {"trained_into": "lora0"}}},
     r"gt\.json: references\.work\.trained_into: expected a list of component names, got 'lora0'"),
    ({"references": [1]}, r"gt\.json: references: expected an object"),
    ("[1, 2", r"gt\.json: ground truth file \(JSON\) is not valid JSON \(line 1"),
    ([1, 2], r"gt\.json: ground truth file \(JSON\) is not a JSON object"),
], ids=["planted-number", "planted-list-with-number", "components-list", "file-number", "trained-into-text",
        "references-list", "not-json", "a-list"])
def test_ablate_checks_the_ground_truth_before_any_work(gt, pattern, assets, tmp_path, monkeypatch):
    from copyscope.generate import CoalitionEngine

    def no_generation(self, members, items):
        raise AssertionError("the audit ran before the ground truth was checked")

    monkeypatch.setattr(CoalitionEngine, "generate", no_generation)
    zoo = _write_zoo(tmp_path, zoo_data(tmp_path, assets))
    path = tmp_path / "gt.json"
    path.write_text(gt if isinstance(gt, str) else json.dumps(gt))
    assert_one_line_error(runner.invoke(app, ["ablate", str(zoo), "--ground-truth", str(path)]), pattern)
    assert not (tmp_path / "out").exists()
    # found beside the zoo file (not given): the same check, before the audit
    (tmp_path / "ground_truth.json").write_text(path.read_text())
    assert_one_line_error(runner.invoke(app, ["ablate", str(zoo)]), pattern.replace(r"gt\.json", r"ground_truth\.json"))


def test_ablate_ground_truth_that_is_a_fifo(assets, tmp_path):
    zoo = _write_zoo(tmp_path, zoo_data(tmp_path, assets))
    fifo = _fifo(tmp_path / "gt.json")
    assert_one_line_error(runner.invoke(app, ["ablate", str(zoo), "--ground-truth", str(fifo)]),
                          r"gt\.json: is a FIFO \(named pipe\); expected a ground truth file")


# =============================================================================================
# rich markup and terminal escape sequences in names


def test_markup_in_the_zoo_folder_and_reference_names(stubbed, assets, tmp_path):
    folder = tmp_path / "a[/]b [bold]c"  # folders "a[" and "]b [bold]c": the path reads "a[/]b"
    folder.mkdir(parents=True)
    data = zoo_data(folder, assets)
    zoo = _write_zoo(folder, data)
    r = runner.invoke(app, ["validate", str(zoo)])
    assert r.exit_code == 0 and re.sub(r"\s", "", f"ok {zoo}:") in re.sub(r"\s", "", r.output), r.output
    for command in (["plan", str(zoo)], ["audit", str(zoo)], ["report", str(folder / "out")]):
        r = runner.invoke(app, command)
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output
        if command[0] == "audit":  # the path printed as it is
            assert re.sub(r"\s", "", f"report: {folder / 'out' / 'report.json'}") in re.sub(r"\s", "", r.output), r.output
    # a reference file that is missing (validate lists it) and one that is not an image (an error)
    data["references"] = [{"name": "work", "paths": [str(folder / "[/]missing.png")]}]
    zoo = _write_zoo(folder, data)
    r = runner.invoke(app, ["validate", str(zoo)])
    assert r.exit_code == 0 and "[/]missing.png'notfound" in re.sub(r"\s", "", r.output), r.output
    (folder / "[").mkdir()
    (folder / "[/]bad[red].png").write_text("text")  # the file "]bad[red].png" in the folder "["
    data["references"] = [{"name": "work", "paths": [str(folder / "[/]bad[red].png")]}]
    zoo = _write_zoo(folder, data)
    line = assert_one_line_error(runner.invoke(app, ["validate", str(zoo)]), r"is not an image")
    assert "[/]bad[red].png" in line and "a[/]b [bold]c" in line


HOSTILE = {
    "lora0": "[/]lora\x1b[2J\x1b]0;pwned\x07[bold]x",
    "lora1": "p\x9b31m\x90q[link=http://evil]",
    "tiny-sd": "base[/]\x1b[31m",
}


@pytest.fixture
def tampered_report(stubbed, assets, tmp_path) -> Path:
    """A real report.json (stub audit, two LoRAs) whose names, warning and adaptive reason hold rich markup and
    terminal escape sequences, replaced consistently so the report is otherwise intact."""
    data = zoo_data(tmp_path, assets)
    data["loras"].append({"name": "lora1", "model": str(assets["loras"][1]), "weight": 1.0})
    data["metrics"] = ["dhash"]
    r = runner.invoke(app, ["audit", str(_write_zoo(tmp_path, data))])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    text = (out / "report.json").read_text()
    for name, hostile in HOSTILE.items():
        text = text.replace(json.dumps(name), json.dumps(hostile))
        text = re.sub(rf"(?<=[\"+]){re.escape(name)}(?=[\"+])", json.dumps(hostile)[1:-1].replace("\\", "\\\\"), text)
    report = json.loads(text)
    assert HOSTILE["lora0"] in report["games"][0]["players"] and report["games"][0]["base"] == HOSTILE["tiny-sd"]
    report["settings"]["seed_warning"] = "only [/]2 seeds\x1b]0;title\x07"
    report["adaptive"] = {"stopped_after": 2, "round": 1, "rounds_planned": 1, "reason": "[/]done\x1b[2J"}
    # an interval rich would read as a markup tag ('[nan, ...]') and drop
    report["games"][0]["metrics"]["dhash"]["shapley"][HOSTILE["lora1"]]["ci95"] = [float("nan"), 0.125]
    (out / "report.json").write_text(json.dumps(report))
    return out


def test_report_names_with_markup_and_escape_sequences_print_as_text(tampered_report):
    r = runner.invoke(app, ["report", str(tampered_report)])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert not any(c in r.output for c in ESCAPES), repr(r.output)
    flat = re.sub(r"[\s│┃|]+", "", r.output)  # the table may fold a name over lines
    for shown in ("[/]lora\\x1b[2J\\x1b]0;pwned\\x07[bold]x", "p\\x9b31m\\x90q[link=http://evil]", "base[/]\\x1b[31m",
                  "only[/]2seeds\\x1b]0;title\\x07", "[/]done\\x1b[2J", "[nan,0.12]"):
        assert re.sub(r"\s+", "", shown) in flat, (shown, r.output)


def test_escape_sequences_in_an_error_line_are_shown_escaped(assets, tmp_path):
    data = zoo_data(tmp_path, assets)
    bad = tmp_path / "ref\x1b]0;pwned\x07\x1b[2J.png"
    bad.write_text("not an image")
    data["references"] = [{"name": "work", "paths": [str(bad)]}]
    line = assert_one_line_error(runner.invoke(app, ["validate", str(_write_zoo(tmp_path, data))]), r"is not an image")
    assert not any(c in line for c in ESCAPES) and "ref\\x1b]0;pwned\\x07\\x1b[2J.png" in line


def test_terminal_text_helpers():
    from copyscope.common.termtext import plain, term

    assert plain("a\x1b[2Jb\tc\nd\x7f\x9b\u202e") == "a\\x1b[2Jb\\x09c\\x0ad\\x7f\\x9b\\u202e"
    assert plain("ordinary name_1.png – café") == "ordinary name_1.png – café"
    assert term("[/]x\x07") == "\\[/]x\\x07"
