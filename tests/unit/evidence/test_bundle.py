"""copyscope.evidence without an audit: the manifest's checks, the archive's path safety and limits, the refusals of
`copyscope bundle` / `copyscope verify` (one line, exit 2), the value-by-value comparison and its tolerance, which
metrics verify can recompute, and the signature (its refusal when `cryptography` is missing; the real thing where
it is installed). tests/e2e/test_bundle_e2e.py bundles and verifies a real audit."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copyscope.cli import app
from copyscope.common.errors import CopyscopeError, MissingDependency
from copyscope.evidence import archive
from copyscope.evidence.archive import TOP, extract_archive, unsafe_name, write_archive
from copyscope.evidence.compare import Comparison, compare_games
from copyscope.evidence.manifest import FORMAT, file_entry, read_manifest
from copyscope.results import SCHEMA_VERSION

from helpers.cli_errors import assert_one_line_error

runner = CliRunner()
KEY = "ab" * 32


# -- the manifest ------------------------------------------------------------------------------------


def _manifest(tmp_path: Path, files: dict, **extra) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": FORMAT, "files": files, **extra}))
    return path


def test_file_entry_is_the_sha256_and_size():
    assert file_entry(b"abc") == {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "bytes": 3}


def test_manifest_is_read_with_checks(tmp_path):
    good = {"audit/report.json": file_entry(b"{}"), f"images/ab/{KEY}.png": file_entry(b"png")}
    assert read_manifest(_manifest(tmp_path, good))["files"] == good
    cases = [
        ({"../x": file_entry(b"")}, r"'\.\.' component"),
        ({"/etc/passwd": file_entry(b"")}, r"empty or '\.' component|absolute"),
        ({"a/./b": file_entry(b"")}, r"empty or '\.' component"),
        ({"manifest.json": file_entry(b"")}, "the name of the manifest"),
        ({"a": {"sha256": "xyz", "bytes": 1}}, "64 hex digits"),
        ({"a": {"sha256": "0" * 64, "bytes": True}}, "an integer"),
    ]
    for files, pattern in cases:
        with pytest.raises(CopyscopeError, match=pattern):
            read_manifest(_manifest(tmp_path, files))
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "copyscope-evidence/99", "files": good}))
    with pytest.raises(CopyscopeError, match="not one this copyscope reads"):
        read_manifest(tmp_path / "manifest.json")
    with pytest.raises(CopyscopeError, match="has no manifest.json"):
        read_manifest(tmp_path / "none" / "manifest.json")


# -- path safety ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, why", [
    (f"{TOP}/audit/report.json", None),
    (f"{TOP}/images/ab/{KEY}.png", None),
    (f"{TOP}/../evil", "'..' component"),
    (f"{TOP}/a/../../evil", "'..' component"),
    ("/etc/passwd", "an absolute path"),
    ("C:/x", "an absolute path"),
    (f"{TOP}\\..\\evil", "a backslash"),
    ("elsewhere/file", f"a name outside {TOP}/"),
    (f"{TOP}//x", "an empty or '.' component"),
    (f"{TOP}/./x", "an empty or '.' component"),
    (f"{TOP}/a\x00b", "NUL"),
    ("", "an empty name"),
])
def test_unsafe_names(name, why):
    got = unsafe_name(name)
    assert (got is None) if why is None else (why in got), got


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            t.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member, pattern", [
    (lambda: (_file(f"{TOP}/../evil.txt"), b"x"), r"'\.\.' component"),
    (lambda: (_file("/tmp/evil.txt"), b"x"), "an absolute path"),
    (lambda: (_file("evil.txt"), b"x"), f"outside {TOP}/"),
    (lambda: (_link(f"{TOP}/link", "/etc/passwd"), b""), "is a symlink"),
    (lambda: (_link(f"{TOP}/hard", f"{TOP}/manifest.json", tarfile.LNKTYPE), b""), "is a hard link"),
    (lambda: (_link(f"{TOP}/fifo", "", tarfile.FIFOTYPE), b""), "a device or FIFO"),
])
def test_extraction_refuses_unsafe_tar_members(tmp_path, member, pattern):
    bundle = _tar(tmp_path / "b.tar.gz", [(_file(f"{TOP}/manifest.json"), b"{}"), member()])
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(CopyscopeError, match=pattern):
        extract_archive(bundle, into)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()


def test_extraction_refuses_unsafe_zip_members_and_links(tmp_path):
    into = tmp_path / "into"
    into.mkdir()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr(f"{TOP}/manifest.json", "{}")
        z.writestr(f"{TOP}/../../evil.txt", "x")
    with pytest.raises(CopyscopeError, match=r"'\.\.' component"):
        extract_archive(bad, into)
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo(f"{TOP}/link")
        info.external_attr = (0o120777) << 16  # a symlink, as zip tools store one
        z.writestr(info, "/etc/passwd")
    with pytest.raises(CopyscopeError, match="not a regular file"):
        extract_archive(link, into)


def test_extraction_limits_members_and_sizes(tmp_path, monkeypatch):
    members = [(_file(f"{TOP}/f{i}"), b"x" * 10) for i in range(5)]
    bundle = _tar(tmp_path / "b.tar.gz", members)
    for attr, value, pattern in (("MAX_MEMBERS", 3, "over 3 members"), ("MAX_MEMBER_BYTES", 5, "over the limit of 5"),
                                 ("MAX_TOTAL_BYTES", 25, "unpacks to over 25 bytes")):
        with monkeypatch.context() as m:
            m.setattr(archive, attr, value)
            into = tmp_path / f"into-{attr}"
            into.mkdir()
            with pytest.raises(CopyscopeError, match=pattern):
                extract_archive(bundle, into)
    twice = _tar(tmp_path / "twice.tar.gz", [(_file(f"{TOP}/a"), b"1"), (_file(f"{TOP}/a"), b"2")])
    (tmp_path / "into-twice").mkdir()
    with pytest.raises(CopyscopeError, match="appears twice"):
        extract_archive(twice, tmp_path / "into-twice")


def test_not_an_archive(tmp_path):
    (tmp_path / "x.tar.gz").write_bytes(b"not an archive at all")
    with pytest.raises(CopyscopeError, match="is not a .tar.gz or .zip archive"):
        extract_archive(tmp_path / "x.tar.gz", tmp_path)
    with pytest.raises(CopyscopeError, match="not found"):
        extract_archive(tmp_path / "none.zip", tmp_path)


@pytest.mark.parametrize("name", ["b.tar.gz", "b.tgz", "b.zip"])
def test_archive_round_trip_atomic_and_never_overwritten(tmp_path, name):
    dest = tmp_path / name
    write_archive(dest, [("manifest.json", b"{}"), ("images/ab/k.png", b"\x89PNG")])
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary file left
    into = tmp_path / "into"
    into.mkdir()
    assert sorted(extract_archive(dest, into)) == ["images/ab/k.png", "manifest.json"]
    assert (into / TOP / "images/ab/k.png").read_bytes() == b"\x89PNG"
    before = dest.read_bytes()
    with pytest.raises(CopyscopeError, match="exists; copyscope never overwrites"):
        write_archive(dest, [("manifest.json", b"other")])
    assert dest.read_bytes() == before


def test_failed_write_leaves_nothing(tmp_path):
    def members():
        yield "a", b"1"
        raise CopyscopeError("stopped")

    with pytest.raises(CopyscopeError, match="stopped"):
        write_archive(tmp_path / "b.zip", members())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CopyscopeError, match="ending in .tar.gz, .tgz or .zip"):
        write_archive(tmp_path / "b.tar", [])


# -- the commands' refusals ------------------------------------------------------------------------------


def _audit_folder(tmp_path: Path, keys: list[str], cache: Path) -> Path:
    """A folder with an audit's file names and a report.json listing ``keys`` (not a real audit)."""
    out = tmp_path / "audit"
    out.mkdir()
    report = {"schema_version": SCHEMA_VERSION, "cache_dir": str(cache), "provenance": {"zoo_text": "name: x\n"},
              "games": [{"base": "b", "players": ["a"], "metrics": {}, "images": {"": keys, "a": keys}}]}
    (out / "report.json").write_text(json.dumps(report))
    for name in ("report.html", "coalitions.csv", "attribution.csv", "per_seed.csv", "plan.json", "zoo.resolved.json"):
        (out / name).write_text("{}")
    return out


def test_bundle_refuses_what_is_not_an_audit_folder(tmp_path):
    assert_one_line_error(runner.invoke(app, ["bundle", str(tmp_path / "none")]), "none: not found; expected an audit output folder")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(runner.invoke(app, ["bundle", str(tmp_path / "file")]), "is not a folder")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "report.json").write_text("{}")
    assert_one_line_error(runner.invoke(app, ["bundle", str(tmp_path / "half")]),
                          r"half: is not an audit output folder: no coalitions\.csv.*zoo\.resolved\.json")
    assert not list(tmp_path.glob("*evidence*"))


def test_bundle_refuses_an_image_missing_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    out = _audit_folder(tmp_path, [KEY], cache)
    line = assert_one_line_error(runner.invoke(app, ["bundle", str(out), "--out", str(tmp_path / "b.tar.gz")]),
                                 "1 image.s. the estimate used are not in the image cache", KEY,
                                 r"games\[0\]\.images\[''\]\[0\] in report\.json", "rerun `copyscope audit`")
    assert str(cache) in line
    assert not (tmp_path / "b.tar.gz").exists()


def test_bundle_refuses_an_image_key_that_is_not_a_cache_key(tmp_path):
    out = _audit_folder(tmp_path, [KEY, "../../../etc/passwd"], tmp_path / "cache")
    assert_one_line_error(runner.invoke(app, ["bundle", str(out), "--out", str(tmp_path / "b.zip")]),
                          r"games\[0\]\.images\[''\]\[1\]: '\.\./\.\./\.\./etc/passwd' is not an image key")


def test_bundle_refuses_an_existing_archive_and_a_wrong_suffix(tmp_path):
    out = _audit_folder(tmp_path, [KEY], tmp_path / "cache")
    (tmp_path / "b.zip").write_bytes(b"mine")
    assert_one_line_error(runner.invoke(app, ["bundle", str(out), "--out", str(tmp_path / "b.zip")]),
                          r"b\.zip: exists; copyscope never overwrites an archive")
    assert (tmp_path / "b.zip").read_bytes() == b"mine"
    assert_one_line_error(runner.invoke(app, ["bundle", str(out), "--out", str(tmp_path / "b.rar")]),
                          r"ending in \.tar\.gz, \.tgz or \.zip")


def test_verify_refuses_what_is_not_a_bundle(tmp_path):
    (tmp_path / "x.zip").write_text("plain text")
    assert_one_line_error(runner.invoke(app, ["verify", str(tmp_path / "x.zip")]), "is not a .tar.gz or .zip archive")
    empty = tmp_path / "empty.zip"
    write_archive(empty, [("audit/report.json", b"{}")])
    assert_one_line_error(runner.invoke(app, ["verify", str(empty)]), "the bundle has no manifest.json")
    evil = _tar(tmp_path / "evil.tar.gz", [(_link(f"{TOP}/manifest.json", "/etc/passwd"), b"")])
    assert_one_line_error(runner.invoke(app, ["verify", str(evil)]), "is a symlink; refused")


# -- the comparison ---------------------------------------------------------------------------------------


def _game(value: float, ci=(0.1, 0.5), **entry) -> dict:
    shapley = {"lora0": {"value": value, "ci95": list(ci), "p_value": 0.01, "p_holm": 0.02, "claim": "t", **entry}}
    return {"games": [{"base": "b", "players": ["lora0"], "skipped_metrics": {}, "headline": "phash",
                       "metrics": {"phash": {"description": "one wording", "coalitions": {"": 0.1, "lora0": 0.5},
                                             "shapley": shapley}}}]}


def test_numbers_match_within_the_tolerance_and_a_mismatch_names_the_key():
    same = compare_games(_game(0.43), _game(0.43 * (1 + 1e-12)), {}, [False])
    assert same.mismatches == [] and same.values > 5
    off = compare_games(_game(0.43), _game(0.41), {}, [False])
    assert off.mismatches == ["games[0].metrics.phash.shapley.lora0.value: report 0.43, recomputed 0.41"]
    # 1e-9 relative is the line: a relative difference of 1e-8 is a mismatch
    assert compare_games(_game(0.43), _game(0.43 * (1 + 1e-8)), {}, [False]).mismatches
    # the metric's wording is the running copyscope's, not a result
    other = _game(0.43)
    other["games"][0]["metrics"]["phash"]["description"] = "another wording"
    assert compare_games(_game(0.43), other, {}, [False]).mismatches == []


def test_absent_keys_sections_left_out_metrics_and_sequential_tests():
    rebuilt = _game(0.43)
    del rebuilt["games"][0]["metrics"]["phash"]["shapley"]["lora0"]["p_holm"]
    assert compare_games(_game(0.43), rebuilt, {}, [False]).mismatches == [
        "games[0].metrics.phash.shapley.lora0.p_holm: report 0.02, recomputed absent"]
    extra = _game(0.43)
    extra["games"][0]["metrics"]["clip"] = {"coalitions": {}, "shapley": {}}
    assert compare_games(extra, _game(0.43), {"clip": "needs weights"}, [False]).mismatches == []
    assert compare_games(extra, _game(0.43), {}, [False]).mismatches == [
        "games[0].metrics.clip: report 'a section', recomputed 'none (the metric attributes nothing from the bundled images)'"]
    # adaptive seeds: an entry marked sequential carries the stopping look's tests, which verify does not rerun
    seq = compare_games(_game(0.43, ci=(0.0, 0.9), sequential=True), _game(0.43), {}, [False])
    assert seq.mismatches == []
    assert compare_games(_game(0.44, sequential=True), _game(0.43), {}, [False]).mismatches  # its value still counts


def test_comparison_counts_and_lists():
    c = Comparison()
    c.compare({"a": [1, 2.0, None, "x", True]}, {"a": [1, 2.0, None, "x", True]}, "k")
    assert c.values == 5 and not c.mismatches
    c.compare({"a": [1, 2]}, {"a": [1]}, "k")
    c.compare({"b": True}, {"b": 1}, "k")
    assert c.mismatches == ["k.a: report '2 items', recomputed '1 items'", "k.b: report True, recomputed 1"]


# -- what verify recomputes ----------------------------------------------------------------------------------


def test_learned_metrics_are_left_out_with_why():
    from copyscope.evidence.recompute import weight_free_metrics

    metrics, left_out = weight_free_metrics(["phash", {"name": "kid_pixels"}, "effnet", "kid_effnet", "ssim"], {},
                                            {"phash", "kid_pixels", "effnet", "kid_effnet"})
    assert [m.name for m in metrics] == ["phash", "kid_pixels"]  # ssim: not in the report (unavailable at the audit)
    assert set(left_out) == {"effnet", "kid_effnet"}
    assert all("learned effnet backbone" in why and "does not carry" in why for why in left_out.values())


# -- signing ---------------------------------------------------------------------------------------------------


def test_signing_without_cryptography_names_the_extra(tmp_path, monkeypatch):
    from copyscope.evidence import signing

    # as if it were not installed: the package and every submodule an earlier import left in sys.modules
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")] + ["cryptography"]:
        monkeypatch.setitem(sys.modules, name, None)
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    for load in (signing.load_private_key, signing.load_public_key):
        with pytest.raises(MissingDependency, match=r"pip install 'copyscope\[sign\]'"):
            load(tmp_path / "key.pem")
    out = _audit_folder(tmp_path, [KEY], tmp_path / "cache")
    assert_one_line_error(runner.invoke(app, ["bundle", str(out), "--sign-key", str(tmp_path / "key.pem")]),
                          r"cryptography package: pip install 'copyscope\[sign\]'")
    assert_one_line_error(runner.invoke(app, ["verify", str(tmp_path / "b.zip"), "--public-key", str(tmp_path / "key.pem")]),
                          r"copyscope\[sign\]")
    assert not list(tmp_path.glob("audit-evidence*"))


def _keys(tmp_path: Path, name: str):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / f"{name}.pem").write_bytes(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    (tmp_path / f"{name}.pub.pem").write_bytes(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
    return tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"


def test_signature_round_trip_and_refusals(tmp_path):
    from copyscope.evidence import signing

    private, public = _keys(tmp_path, "a")
    _, other = _keys(tmp_path, "b")
    record = signing.sign(b"manifest bytes", signing.load_private_key(private))
    assert record["algorithm"] == "Ed25519" and record["public_key_fingerprint"].startswith("sha256:")
    ok, message = signing.check(b"manifest bytes", record, signing.load_public_key(public))
    assert ok and record["public_key_fingerprint"] in message
    assert not signing.check(b"manifest bytez", record, signing.load_public_key(public))[0]
    assert not signing.check(b"manifest bytes", record, signing.load_public_key(other))[0]
    assert not signing.check(b"manifest bytes", {**record, "signature": "%%%"}, signing.load_public_key(public))[0]
    with pytest.raises(CopyscopeError, match="is not a PEM public key"):
        signing.load_public_key(private)
    with pytest.raises(CopyscopeError, match="is not a PEM private key"):
        signing.load_private_key(public)
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec

    (tmp_path / "ec.pem").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    with pytest.raises(CopyscopeError, match=r"holds a key of type \w+; expected an Ed25519 private key"):
        signing.load_private_key(tmp_path / "ec.pem")
