"""``copyscope bundle OUT_DIR``: one archive holding the evidence of an audit, with a manifest of SHA-256 hashes.

The bundle holds, under its top folder ``copyscope-evidence/``: the audit folder's files (``audit/``: report.json,
report.html, the CSVs, plan.json, zoo.resolved.json), the zoo file as audited (``audit/zoo.yaml``), every image the
estimate used with its cache sidecar (``images/``, the cache's own layout), the reference works (``references/``), the
user's background images where the worth is specific (``background/``), ``manifest.json`` (the SHA-256 of every file,
the model files' hashes, the environment, the command) and, with a key, ``signature.json``. Everything that can be
refused is refused before the archive is begun, and the archive is written atomically, never over a file
(copyscope.evidence.archive). docs/evidence.md describes the layout and the manifest.
"""

from __future__ import annotations

import datetime as _dt
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..common.errors import CopyscopeError
from ..common.inputs import file_kind, read_bounded
from ..results import AuditReport, read_report
from .archive import MAX_MEMBER_BYTES, archive_kind
from .audited import audited_zoo, dumps, environment, listed_images, model_entries, reference_entries, resolved_differences
from .manifest import AUDIT, FORMAT, MANIFEST, SIGNATURE, ZOO_COPY, file_entry, safe_name


@dataclass
class BundleResult:
    archive: Path
    files: int
    images: int
    references: int
    models: list[dict]
    signed_by: str | None = None
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        hashed = sum(1 for m in self.models if m.get("hashed"))
        out = [f"bundle: {self.archive}",
               f"  {self.files} files hashed in {MANIFEST}: the audit's files, {self.images} images (PNG + sidecar), "
               f"{self.references} reference file(s); {hashed} of {len(self.models)} model(s) hashed",
               f"  signed: {self.signed_by}" if self.signed_by else "  not signed (--sign-key KEY.pem signs the manifest)"]
        return out + [f"warning: {w}" for w in self.warnings]


def default_archive(out_dir: Path) -> Path:
    """``<OUT_DIR>-evidence.tar.gz`` beside the audit folder (the audit folder itself is left as it is)."""
    folder = Path(out_dir).resolve()
    return folder.parent / f"{folder.name}-evidence.tar.gz"


def check_audit_folder(out_dir: Path) -> None:
    """``out_dir`` holds every file an audit writes (copyscope.audit.prepare.AUDIT_FILES), else one line."""
    from ..audit.prepare import AUDIT_FILES

    kind = file_kind(out_dir)
    if kind != "a folder":
        raise CopyscopeError(f"{'not found' if kind == 'not found' else 'is not a folder'}; expected an audit output folder "
                             "(the folder `copyscope audit` wrote: report.json, report.html, plan.json, ...)", where=str(out_dir))
    missing = [n for n in AUDIT_FILES if file_kind(out_dir / n) is not None]
    if missing:
        raise CopyscopeError(f"is not an audit output folder: no {', '.join(missing)}; expected the folder `copyscope audit` "
                             "wrote (run the audit, or `copyscope report` to redraw its views)", where=str(out_dir))


def bundle_audit(out_dir: str | Path, archive: str | Path | None = None, *, sign_key: str | Path | None = None,
                 cache: str | Path | None = None) -> BundleResult:
    """Write the evidence bundle of the audit in ``out_dir`` to ``archive`` (default :func:`default_archive`;
    ``.tar.gz``, ``.tgz`` or ``.zip``); sign its manifest with the Ed25519 key ``sign_key`` (PEM) when given.
    ``cache``: the image cache, when it is no longer where report.json's ``cache_dir`` says."""
    from ..generate.cache import ImageCache

    out_dir = Path(out_dir)
    check_audit_folder(out_dir)
    dest = Path(archive) if archive is not None else default_archive(out_dir)
    archive_kind(dest)
    if file_kind(dest) != "not found" or dest.is_symlink():
        raise CopyscopeError("exists; copyscope never overwrites an archive: remove it or choose another --out", where=str(dest))
    key = None
    if sign_key is not None:
        from .signing import load_private_key

        key = load_private_key(Path(sign_key))  # before any work: a bad key is refused at once
    report = read_report(out_dir)
    if cache is None and not report.cache_dir:
        raise CopyscopeError("report.json records no cache_dir (the image cache); pass --cache DIR", where=str(out_dir / "report.json"))
    cache_root = Path(cache) if cache is not None else Path(report.cache_dir)
    images = listed_images(report)
    if not images:
        raise CopyscopeError("report.json lists no image the estimate used (games[].images); expected the report.json an "
                             "audit wrote", where=str(out_dir / "report.json"))
    image_cache = ImageCache(cache_root)
    missing = [k for k in images if image_cache.sidecar(k) is None]
    if missing:
        raise CopyscopeError(
            f"{len(missing)} image(s) the estimate used are not in the image cache {cache_root} (or are damaged there), e.g. "
            f"{missing[0]} ({images[missing[0]]} in report.json); the bundle needs every one: rerun `copyscope audit` to "
            "make them again, or pass --cache with the cache the audit used", where=str(out_dir))
    zoo_text, zoo_file = _zoo_text(out_dir, report)
    zoo = audited_zoo(zoo_text, zoo_file, out_dir / "zoo.resolved.json")
    refs = _references(report)
    background = _background(zoo)
    models = model_entries(zoo, report)
    warnings = [f"model {m['name']} ({m['section']}): the file on disk (identity sha256 {m['identity_sha256'][:12]}...) is not the "
                f"one the audit hashed ({m['report_sha256'][:12]}...); `copyscope verify` will report it"
                for m in models if m.get("matches_report") is False]
    differ = resolved_differences(zoo, out_dir / "zoo.resolved.json")
    if differ:
        warnings.append(f"zoo.resolved.json is not what the recorded zoo file resolves to here (at {', '.join(differ[:3])}): "
                        "was the audit run by another copyscope version? `copyscope verify` will report it")
    command = ["copyscope", "bundle", str(out_dir), "--out", str(dest)]
    command += ["--sign-key", str(sign_key)] if sign_key is not None else []
    command += ["--cache", str(cache)] if cache is not None else []
    head = {
        "format": FORMAT,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "audit": {"zoo_name": report.zoo_name or None, "config_sha256": report.config_sha256 or None,
                  "output_dir": str(out_dir.resolve()), "cache_dir": str(cache_root), "zoo_file": str(zoo_file)},
        "command": _commands(report, zoo_file, command),
        "environment": environment(report),
        "settings": report.settings.to_json() if report.settings else None,
        "images": {"count": len(images), "listed_in": f"{AUDIT}/report.json: games[].images (coalition -> cache keys)",
                   "layout": "images/<first two hex digits of the key>/<key>.png and <key>.json (the cache sidecar)"},
        "references": [{"work": r["work"], "file": r["bundled"], "original": r["file"], "image_sha256": r["sha256"]} for r in refs],
        "background": [{"file": name, "original": str(path)} for name, path in background],
        "models": models,
    }
    files: dict[str, dict] = {}

    def members() -> Iterator[tuple[str, bytes]]:
        from ..audit.prepare import AUDIT_FILES

        def member(name: str, data: bytes) -> tuple[str, bytes]:
            files[name] = file_entry(data)
            return name, data

        for n in AUDIT_FILES:
            yield member(f"{AUDIT}/{n}", read_bounded(out_dir / n, MAX_MEMBER_BYTES, n))
        yield member(ZOO_COPY, zoo_text.encode("utf-8"))
        for k in images:
            png, meta = _image_bytes(image_cache, k, images[k])
            yield member(f"images/{k[:2]}/{k}.png", png)
            yield member(f"images/{k[:2]}/{k}.json", meta)
        for r in refs:
            yield member(r["bundled"], read_bounded(Path(r["file"]), MAX_MEMBER_BYTES, "reference file"))
        for name, path in background:
            yield member(name, read_bounded(path, MAX_MEMBER_BYTES, "background file"))
        manifest = dumps({**head, "files": dict(sorted(files.items()))})
        yield MANIFEST, manifest
        if key is not None:
            from .signing import sign

            yield SIGNATURE, dumps(sign(manifest, key))

    from .archive import write_archive

    write_archive(dest, members())
    signed_by = None
    if key is not None:
        from .signing import fingerprint

        signed_by = f"Ed25519, key {fingerprint(key.public_key())}"
    return BundleResult(dest, len(files), len(images), len(refs), models, signed_by, warnings)


def _zoo_text(out_dir: Path, report: AuditReport) -> tuple[str, Path]:
    """The zoo file's text as audited (report provenance's zoo_text) and its path."""
    prov = report.provenance or {}
    text, where = prov.get("zoo_text"), prov.get("zoo_file")
    zoo_file = Path(where) if isinstance(where, str) else out_dir / "zoo.yaml"
    if not isinstance(text, str):
        raise CopyscopeError("report.json records no zoo file text (provenance.zoo_text); rerun `copyscope audit`",
                             where=str(out_dir / "report.json"))
    return text, zoo_file


def _references(report: AuditReport) -> list[dict]:
    """The reference files the audit scored against, each checked to be the file the audit read."""
    from ..common.inputs import image_sha256

    out = []
    for i, r in enumerate(reference_entries(report)):
        path = Path(r["file"])
        kind = file_kind(path)
        if kind is not None:
            hint = "" if path.is_absolute() else (" (report.json records this path relative to the folder the audit ran in: "
                                                  "run `copyscope bundle` from there)")
            raise CopyscopeError(f"reference file of work {r['work']!r} is {kind}{hint}; the bundle needs every reference the "
                                 "audit scored against: restore it", where=str(path))
        if r["sha256"] and image_sha256(path) != r["sha256"]:
            raise CopyscopeError(f"reference file of work {r['work']!r} changed since the audit (report.json records sha256 "
                                 f"{r['sha256'][:12]}...); restore it or rerun `copyscope audit`", where=str(path))
        out.append({**r, "bundled": f"references/{i:03d}-{safe_name(path.name)}"})
    return out


def _background(zoo) -> list[tuple[str, Path]]:
    """The user's background images (a worth other than raw scores against them): bundled name and file."""
    from ..config.zoo import expand_image_paths

    spec = zoo.spec.background
    if zoo.spec.worth == "raw" or not spec.paths:
        return []
    files = expand_image_paths(zoo, spec.paths, "background")
    return [(f"background/{i:03d}-{safe_name(p.name)}", p) for i, p in enumerate(files)]


def _image_bytes(cache, key: str, where: str) -> tuple[bytes, bytes]:
    """A cached image's PNG and sidecar bytes, read once and checked against each other (the sidecar names its key
    and its PNG's SHA-256)."""
    import json

    from ..common.files import sha256_bytes

    png_path = cache.path(key)
    png = read_bounded(png_path, MAX_MEMBER_BYTES, "cached image")
    meta = read_bounded(png_path.with_suffix(".json"), MAX_MEMBER_BYTES, "cache sidecar")
    try:
        info = json.loads(meta)
    except ValueError:
        info = None
    if not isinstance(info, dict) or info.get("key") != key or info.get("png_sha256") != sha256_bytes(png):
        raise CopyscopeError(f"image {key} ({where} in report.json) changed in the cache while it was bundled, or its "
                             "sidecar does not match it; rerun `copyscope bundle`", where=str(png_path))
    return png, meta


def _commands(report: AuditReport, zoo_file: Path, bundle: list[str]) -> dict:
    prov = report.provenance or {}
    audit = ["copyscope", "audit", str(zoo_file)] + (["--out", report.output_dir] if report.output_dir else [])
    return {
        "bundle": shlex.join(bundle),
        "audit": prov.get("command"),
        "audit_equivalent": shlex.join(audit),
        "note": None if prov.get("command") else (
            "report.json records no command line: audit_equivalent is rebuilt from provenance.zoo_file and output_dir; the "
            "audit's settings are the zoo file as audited (audit/zoo.yaml, whose SHA-256 is config_sha256), plan.json and "
            "the manifest's settings"),
    }
