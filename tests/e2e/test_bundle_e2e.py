"""`copyscope bundle` and `copyscope verify` on a real audit of the tiny models: a bundle verifies (exit 0) with every
number recomputed from its images; a tampered image, a tampered Shapley value, an image missing from the cache, a
wrong key each fail as they should, naming the file or the report key."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.evidence.archive import TOP

from helpers.cli_errors import assert_one_line_error
from helpers.zoo import make_zoo_file

pytestmark = pytest.mark.slow  # an audit of the tiny models (pyproject: markers)
runner = CliRunner()
METRICS = ["phash", "dhash", "ssim", "kid_pixels"]


@pytest.fixture(scope="module")
def audited(tiny_models, tmp_path_factory):
    """A 2-LoRA audit (4 coalitions x 3 seeds) with metrics that need no weights, and its bundle."""
    tmp = tmp_path_factory.mktemp("bundle_audit")
    zoo = make_zoo_file(tmp, tiny_models, loras=2, controlnet=False, metrics=METRICS,
                        generation={"resolution": 32, "steps": 1, "guidance": 3.0, "seeds": 3, "batch_size": 3,
                                    "scheduler": "ddim"})
    r = runner.invoke(app, ["audit", str(zoo)])
    assert r.exit_code == 0, r.output
    out = tmp / "out"
    r = runner.invoke(app, ["bundle", str(out)])
    assert r.exit_code == 0, r.output
    return {"tmp": tmp, "out": out, "bundle": tmp / "out-evidence.tar.gz", "report": json.loads((out / "report.json").read_text())}


def _unpack(bundle: Path, into: Path) -> Path:
    with tarfile.open(bundle) as t:
        t.extractall(into, filter="data")
    return into / TOP


def _repack(root: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as t:
        t.add(root, arcname=TOP)
    return dest


def test_a_bundle_of_a_tiny_audit_verifies(audited, tmp_path):
    report = audited["report"]
    root = _unpack(audited["bundle"], tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    keys = {k for g in report["games"] for keys in g["images"].values() for k in keys}
    assert len(keys) == 12
    for k in keys:  # every image the estimate used, with its sidecar, hashed in the manifest
        for suffix in (".png", ".json"):
            assert f"images/{k[:2]}/{k}{suffix}" in manifest["files"]
    names = set(manifest["files"])
    assert {"audit/report.json", "audit/report.html", "audit/plan.json", "audit/zoo.resolved.json", "audit/zoo.yaml",
            "audit/attribution.csv", "references/000-ref0.png", "references/001-ref1.png"} <= names
    assert [m["name"] for m in manifest["models"]] == ["tiny-sd", "lora0", "lora1"]
    assert all(m["hashed"] and m["matches_report"] for m in manifest["models"])
    assert manifest["command"]["bundle"].startswith("copyscope bundle ")
    assert manifest["environment"]["audit"]["device"] == "cpu" and manifest["environment"]["bundle"]["libraries"]["numpy"]

    r = runner.invoke(app, ["verify", str(audited["bundle"])])
    assert r.exit_code == 0, r.output
    assert "MISMATCH" not in r.output
    assert f"ok: hashes: all {len(names)} files match" in r.output
    assert "ok: zoo file" in r.output
    assert "ok: recomputed from the bundled images: 1 game(s), 4 coalitions, 12 images, metrics phash, dhash, ssim, " \
           "kid_pixels and the fusion" in r.output
    assert r.output.rstrip().endswith("verdict: every check passed (3)")


def test_an_archive_is_never_overwritten_and_zip_works_too(audited, tmp_path):
    before = audited["bundle"].read_bytes()
    assert_one_line_error(runner.invoke(app, ["bundle", str(audited["out"]), "--out", str(audited["bundle"])]),
                          "exists; copyscope never overwrites an archive")
    assert audited["bundle"].read_bytes() == before
    zipped = tmp_path / "b.zip"
    assert runner.invoke(app, ["bundle", str(audited["out"]), "--out", str(zipped)]).exit_code == 0
    r = runner.invoke(app, ["verify", str(zipped)])
    assert r.exit_code == 0 and "verdict: every check passed" in r.output, r.output


def test_a_tampered_image_is_named(audited, tmp_path):
    root = _unpack(audited["bundle"], tmp_path / "x")
    key = audited["report"]["games"][0]["images"]["lora0"][1]
    png = root / "images" / key[:2] / f"{key}.png"
    pixels = np.asarray(Image.open(png).convert("RGB")).copy()
    pixels[5, 7, 1] ^= 0x40  # one byte of one pixel
    Image.fromarray(pixels).save(png)
    r = runner.invoke(app, ["verify", str(_repack(root, tmp_path / "t.tar.gz"))])
    assert r.exit_code == 1, r.output
    mismatches = [line for line in r.output.splitlines() if line.startswith("MISMATCH: ")]
    assert mismatches[0].startswith(f"MISMATCH: images/{key[:2]}/{key}.png: sha256 ")  # the file, by its hash
    # and the numbers it changes, by their report keys (SSIM sees one pixel)
    assert any(line.startswith("MISMATCH: games[0].metrics.ssim.coalitions.lora0: report ") for line in mismatches), r.output
    assert "verdict: " in r.output and "mismatch(es)" in r.output


def test_a_tampered_shapley_value_is_named(audited, tmp_path):
    root = _unpack(audited["bundle"], tmp_path / "x")
    path = root / "audit" / "report.json"
    report = json.loads(path.read_text())
    true_value = report["games"][0]["metrics"]["phash"]["shapley"]["lora1"]["value"]
    report["games"][0]["metrics"]["phash"]["shapley"]["lora1"]["value"] = true_value + 0.25
    path.write_text(json.dumps(report, indent=2))
    r = runner.invoke(app, ["verify", str(_repack(root, tmp_path / "t.tar.gz"))])
    assert r.exit_code == 1, r.output
    assert "MISMATCH: audit/report.json: sha256 " in r.output
    expected = f"MISMATCH: games[0].metrics.phash.shapley.lora1.value: report {true_value + 0.25:.12g}, recomputed {true_value:.12g}"
    assert expected in r.output.splitlines(), r.output
    # an image key is a file name inside the bundle: one that would lead outside it is refused, never read
    report["games"][0]["images"]["lora1"][0] = "../../../../../../etc/hostname"
    path.write_text(json.dumps(report, indent=2))
    r = runner.invoke(app, ["verify", str(_repack(root, tmp_path / "t2.tar.gz"))])
    assert r.exit_code == 1, r.output
    assert "MISMATCH: recompute: games[0].images.lora1[0]: '../../../../../../etc/hostname' is not an image key" in r.output


def test_a_missing_image_is_refused(audited, tmp_path):
    report = audited["report"]
    cache = tmp_path / "cache"
    shutil.copytree(Path(report["cache_dir"]) / "images", cache / "images")
    key = report["games"][0]["images"]["lora0+lora1"][2]
    (cache / "images" / key[:2] / f"{key}.png").unlink()
    assert_one_line_error(runner.invoke(app, ["bundle", str(audited["out"]), "--out", str(tmp_path / "b.tar.gz"),
                                              "--cache", str(cache)]),
                          "1 image.s. the estimate used are not in the image cache", key)
    assert not (tmp_path / "b.tar.gz").exists()


def test_a_signed_bundle(audited, tmp_path):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pub = {}
    for name in ("signer", "other"):
        key = ed25519.Ed25519PrivateKey.generate()
        (tmp_path / f"{name}.pem").write_bytes(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
        pub[name] = tmp_path / f"{name}.pub.pem"
        pub[name].write_bytes(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
    signed = tmp_path / "signed.tar.gz"
    r = runner.invoke(app, ["bundle", str(audited["out"]), "--out", str(signed), "--sign-key", str(tmp_path / "signer.pem")])
    assert r.exit_code == 0 and "signed: Ed25519, key sha256:" in r.output, r.output
    r = runner.invoke(app, ["verify", str(signed), "--public-key", str(pub["signer"])])
    assert r.exit_code == 0 and "ok: signature: the manifest is signed (Ed25519)" in r.output, r.output
    r = runner.invoke(app, ["verify", str(signed), "--public-key", str(pub["other"])])
    assert r.exit_code == 1 and "MISMATCH: signature.json: the manifest's signature does not verify" in r.output, r.output
    # an unsigned bundle checked against a key: a mismatch; a signed one without a key: said, not failed
    r = runner.invoke(app, ["verify", str(audited["bundle"]), "--public-key", str(pub["signer"])])
    assert r.exit_code == 1 and "the bundle is not signed" in r.output, r.output
    r = runner.invoke(app, ["verify", str(signed)])
    assert r.exit_code == 0 and "not checked: pass --public-key" in r.output, r.output
    # a manifest edited to cover a changed file no longer carries the signature
    root = _unpack(signed, tmp_path / "x")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["created_utc"] = "2000-01-01T00:00:00+00:00"
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    r = runner.invoke(app, ["verify", str(_repack(root, tmp_path / "t.tar.gz")), "--public-key", str(pub["signer"])])
    assert r.exit_code == 1 and "MISMATCH: signature.json" in r.output, r.output


def test_a_zoo_resolved_json_that_is_not_the_zoo_file_is_named(audited, tmp_path):
    root = _unpack(audited["bundle"], tmp_path / "x")
    path = root / "audit" / "zoo.resolved.json"
    resolved = json.loads(path.read_text())
    resolved["estimator"]["seed"] += 1
    path.write_text(json.dumps(resolved, indent=2))
    r = runner.invoke(app, ["verify", str(_repack(root, tmp_path / "t.tar.gz"))])
    assert r.exit_code == 1, r.output
    assert "MISMATCH: audit/zoo.resolved.json: sha256 " in r.output
    assert "MISMATCH: audit/zoo.resolved.json: estimator.seed: not what audit/zoo.yaml resolves to" in r.output
    assert "games[0].metrics" not in r.output  # the numbers come from the zoo file and the images: unchanged


def test_a_missing_file_and_a_changed_zoo_file_are_named(audited, tmp_path):
    root = _unpack(audited["bundle"], tmp_path / "x")
    gone = next(p for p in sorted((root / "references").iterdir()) if p.is_file())
    gone.unlink()
    r = runner.invoke(app, ["verify", str(_repack(root, tmp_path / "missing.tar.gz"))])
    assert r.exit_code == 1, r.output
    assert f"MISMATCH: references/{gone.name}: " in r.output and "missing" in r.output, r.output
    root = _unpack(audited["bundle"], tmp_path / "y")
    zoo = root / "audit" / "zoo.yaml"
    zoo.write_text(zoo.read_text().replace("seeds: 3", "seeds: 4"))
    r = runner.invoke(app, ["verify", str(_repack(root, tmp_path / "zoo.tar.gz"))])
    assert r.exit_code == 1, r.output
    assert "MISMATCH: audit/zoo.yaml: sha256 " in r.output, r.output
