"""The bundle's manifest (``manifest.json``): its format, its file entries, and reading it back with checks.

Every bundled file has an entry ``{"sha256": <hex>, "bytes": <n>}`` under ``files``, keyed by its path relative to the
bundle's top folder (``audit/report.json``, ``images/ab/<key>.png``, ...). The manifest itself is not in ``files``; a
signature (``signature.json``) covers its exact bytes. docs/evidence.md describes every key.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..common.errors import CopyscopeError
from ..common.files import sha256_bytes
from .archive import TOP, unsafe_name

FORMAT = "copyscope-evidence/1"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
AUDIT = "audit"  # the audit folder's files: report.json, report.html, the CSVs, plan.json, zoo.resolved.json
ZOO_COPY = f"{AUDIT}/zoo.yaml"  # the zoo file's text as audited (report provenance's zoo_text)
MAX_MANIFEST_BYTES = 256 << 20
EXPECTED = "expected the manifest.json `copyscope bundle` writes"
_SHA = re.compile(r"[0-9a-f]{64}")


def file_entry(data: bytes) -> dict:
    return {"sha256": sha256_bytes(data), "bytes": len(data)}


def safe_name(name: str, limit: int = 100) -> str:
    """A file name for inside the bundle: letters, digits, ``.``, ``-`` and ``_`` kept, the rest ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-limit:].lstrip(".")
    return cleaned or "file"


def read_manifest(path: Path) -> dict:
    """A bundle's manifest, checked: its format, and every file entry (a safe relative name, a SHA-256, a size).
    A fault is one line naming the file (the bundle cannot be checked: bad input)."""
    from ..common.inputs import file_kind, read_json_object

    if file_kind(path) == "not found":
        raise CopyscopeError(f"the bundle has no {MANIFEST}; {EXPECTED}", where=str(path.parent))
    data = read_json_object(path, MAX_MANIFEST_BYTES, MANIFEST, EXPECTED)
    if data.get("format") != FORMAT:
        raise CopyscopeError(f"format {data.get('format')!r} is not one this copyscope reads ({FORMAT}); {EXPECTED}",
                             where=str(path))
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise CopyscopeError(f"has no 'files' object; {EXPECTED}", where=str(path))
    for name, entry in files.items():
        why = unsafe_name(f"{TOP}/{name}") if isinstance(name, str) else "a name that is not text"
        if why is None and name in (MANIFEST, SIGNATURE):
            why = "the name of the manifest or its signature"
        if why:
            raise CopyscopeError(f"files: entry {name!r} has {why}; {EXPECTED}", where=str(path))
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and _SHA.fullmatch(entry["sha256"])
                and isinstance(entry.get("bytes"), int) and not isinstance(entry.get("bytes"), bool)):
            raise CopyscopeError(f"files: entry {name!r} is not {{sha256: 64 hex digits, bytes: an integer}}; {EXPECTED}",
                                 where=str(path))
    for key in ("references", "models"):
        if not isinstance(data.get(key, []), list):
            raise CopyscopeError(f"'{key}' is not a list; {EXPECTED}", where=str(path))
    return data
