"""``copyscope verify BUNDLE``: check an evidence bundle against itself, and its report against its images.

In order: the archive is extracted safely into a temporary folder (copyscope.evidence.archive); the manifest is read;
the signature is checked with the key the user gives (``--public-key``); every bundled file's SHA-256 and size are
compared with the manifest's, and every file in the bundle must be in it; the zoo file's hash must be report.json's
``config_sha256``; the model hashes recorded when the bundle was made must be those report.json's ``weights`` hold;
then the scores, worths, Shapley values, intervals and p-values are recomputed from the bundled images and compared
with report.json value by value (copyscope.evidence.recompute, copyscope.evidence.compare).

The verdict lists every check that passed, what could not be recomputed and why, and each mismatch naming the file
or the report key. A bundle that cannot be read as one (not an archive, an unsafe member, no manifest, a bad key)
is bad input: one error line, exit 2. Anything that does not match is a mismatch: exit 1.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common.errors import CopyscopeError
from ..common.files import file_sha256, sha256_bytes
from ..results import AuditReport
from .archive import TOP, extract_archive
from .compare import REL_TOL
from .manifest import AUDIT, MANIFEST, SIGNATURE, ZOO_COPY, read_manifest

MAX_SHOWN = 200  # mismatch lines printed; the count says how many more


@dataclass
class Verdict:
    bundle: Path
    about: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def lines(self) -> list[str]:
        out = [f"verify: {self.bundle}", *(f"  {a}" for a in self.about)]
        out += [f"ok: {p}" for p in self.passed] + [f"note: {n}" for n in self.notes]
        out += [f"MISMATCH: {m}" for m in self.mismatches[:MAX_SHOWN]]
        if len(self.mismatches) > MAX_SHOWN:
            out.append(f"MISMATCH: ... and {len(self.mismatches) - MAX_SHOWN} more")
        out.append(f"verdict: every check passed ({len(self.passed)})" if self.ok else
                   f"verdict: {len(self.mismatches)} mismatch(es): the bundle does not match its report")
        return out


def verify_bundle(bundle: str | Path, *, public_key: str | Path | None = None) -> Verdict:
    """Check the bundle at ``bundle``; with ``public_key`` (an Ed25519 public key in PEM), its signature too."""
    bundle = Path(bundle)
    key = None
    if public_key is not None:
        from .signing import load_public_key

        key = load_public_key(Path(public_key))  # a bad key is bad input, before anything is extracted
    with tempfile.TemporaryDirectory(prefix="copyscope-verify-") as tmp:
        names = set(extract_archive(bundle, Path(tmp)))
        root = Path(tmp) / TOP
        manifest = read_manifest(root / MANIFEST)
        verdict = Verdict(bundle)
        audit, env = manifest.get("audit") or {}, manifest.get("environment") or {}
        verdict.about.append(f"made {manifest.get('created_utc')} from the audit {audit.get('zoo_name')!r} "
                             f"({audit.get('output_dir')}), copyscope {(env.get('bundle') or {}).get('copyscope')}")
        _signature(verdict, root, names, key)
        _hashes(verdict, root, names, manifest["files"])
        report = _report(verdict, root)
        if report is not None:
            _zoo_file(verdict, root, report)
            _models(verdict, manifest)
            _recomputed(verdict, root, manifest, report)
    return verdict


def _signature(v: Verdict, root: Path, names: set[str], key: Any) -> None:
    record = None
    if SIGNATURE in names:
        try:
            record = json.loads((root / SIGNATURE).read_bytes()[: 1 << 20])
        except ValueError:
            record = None
    if key is None:
        if SIGNATURE in names:
            who = record.get("public_key_fingerprint") if isinstance(record, dict) else None
            v.notes.append(f"signature: the manifest carries a signature (by the key {who}); not checked: pass --public-key KEY.pem")
        else:
            v.notes.append("signature: the bundle is not signed")
        return
    if SIGNATURE not in names:
        v.mismatches.append(f"{SIGNATURE}: the bundle is not signed, and --public-key asks for a signature")
        return
    from .signing import check

    ok, message = check((root / MANIFEST).read_bytes(), record, key)
    (v.passed if ok else v.mismatches).append(f"signature: {message}" if ok else f"{SIGNATURE}: {message}")


def _hashes(v: Verdict, root: Path, names: set[str], files: dict) -> None:
    bundled = names - {MANIFEST, SIGNATURE}
    bad = 0
    for name, entry in files.items():
        if name not in bundled:
            v.mismatches.append(f"{name}: listed in the manifest, not in the bundle")
            bad += 1
            continue
        path = root / name
        sha, size = file_sha256(path), path.stat().st_size
        if sha != entry["sha256"] or size != entry["bytes"]:
            v.mismatches.append(f"{name}: sha256 {sha} ({size} bytes), the manifest records {entry['sha256']} ({entry['bytes']} bytes)")
            bad += 1
    for name in sorted(bundled - set(files)):
        v.mismatches.append(f"{name}: in the bundle, not in the manifest")
        bad += 1
    if not bad:
        folders = Counter(n.split("/", 1)[0] if "/" in n else "." for n in files)
        v.passed.append(f"hashes: all {len(files)} files match the manifest's SHA-256 and size ("
                        + ", ".join(f"{folder}/: {n}" for folder, n in sorted(folders.items())) + ")")


def _report(v: Verdict, root: Path) -> AuditReport | None:
    from ..results import read_report

    try:
        return read_report(root / AUDIT)
    except CopyscopeError as exc:
        v.mismatches.append(f"{AUDIT}/report.json: {' '.join(str(exc).split())}; nothing recomputed")
        return None


def _zoo_file(v: Verdict, root: Path, report: AuditReport) -> None:
    path = root / ZOO_COPY
    sha = sha256_bytes(path.read_bytes()) if path.is_file() else None
    if sha is not None and sha == report.config_sha256:
        v.passed.append(f"zoo file: {ZOO_COPY}'s SHA-256 is report.json's config_sha256")
    else:
        v.mismatches.append(f"{ZOO_COPY}: sha256 {sha}, report.json's config_sha256 {report.config_sha256 or None}")


def _models(v: Verdict, manifest: dict) -> None:
    models = [m for m in manifest.get("models", []) if isinstance(m, dict)]
    for m in models:
        if m.get("matches_report") is False:
            v.mismatches.append(f"models: {m.get('section')} {m.get('name')!r}: the file hashed when the bundle was made "
                                f"(identity sha256 {m.get('identity_sha256')}) is not the one report.json's weights record "
                                f"({m.get('report_sha256')})")
    hashed = [m for m in models if m.get("hashed")]
    agree = [m for m in models if m.get("matches_report") is True]
    if models:
        v.notes.append(f"models: {len(hashed)} of {len(models)} hashed when the bundle was made ({len(agree)} equal to "
                       "report.json's weights); the models are not in the bundle, so these hashes are recorded, not re-checked"
                       + ("; not hashed: " + ", ".join(f"{m.get('name')} ({m.get('why')})" for m in models if not m.get("hashed"))
                          if len(hashed) < len(models) else ""))


def _recomputed(v: Verdict, root: Path, manifest: dict, report: AuditReport) -> None:
    from .recompute import recompute

    r = recompute(root, manifest, report)
    v.mismatches += r.problems
    for metric, why in r.left_out.items():
        v.notes.append(f"not recomputed: {metric}: {why}")
    if any(g.controls for g in report.games):
        v.notes.append("not recomputed: the positive controls (img2img copies through the base need the models), and so "
                       "the headline metric they chose")
    if report.adaptive:
        v.notes.append("adaptive seeds: the headline's sequential intervals and tests (entries marked sequential) depend on "
                       "every round's look and are not recomputed; its values and every other number are")
    if r.comparison is None:
        return
    if r.left_out and not any(g.controls for g in report.games):
        v.notes.append("not compared: the headline metric (its choice depends on every metric)")
    v.mismatches += r.comparison.mismatches
    if not r.comparison.mismatches:
        fused = " and the fusion" if "fusion" not in r.left_out and any("fusion" in g.metrics for g in report.games) else ""
        v.passed.append(
            f"recomputed from the bundled images: {r.games} game(s), {r.coalitions} coalitions, {r.images} images, metrics "
            f"{', '.join(r.metrics)}{fused}: {r.comparison.values} values of "
            f"report.json match (numbers within {REL_TOL:g} relative)")
