"""Optional Ed25519 signatures of a bundle's manifest, with the ``cryptography`` package (``copyscope[sign]``).

Nothing here is home-made cryptography: keys are read with ``cryptography``'s PEM loaders, signed and checked
with its Ed25519 implementation. The signature covers the exact bytes of ``manifest.json``, which holds the
SHA-256 of every other bundled file, so one signature binds them all. ``signature.json`` records the algorithm,
the signature and the signer's public key with its SHA-256 fingerprint; that key is shown, never trusted:
``copyscope verify --public-key KEY`` checks the signature against the key the user supplies.

Keys: PEM, unencrypted (``openssl genpkey -algorithm ed25519 -out key.pem``, then ``openssl pkey -in key.pem
-pubout -out key.pub.pem`` for the public half).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from ..common.errors import CopyscopeError, MissingDependency
from ..common.files import sha256_bytes

SIGNATURE_FORMAT = "copyscope-evidence-signature/1"
MAX_KEY_BYTES = 64 << 10
KEYGEN = "openssl genpkey -algorithm ed25519 -out key.pem"


def _crypto():
    """(serialization, ed25519, InvalidSignature) of the cryptography package, or MissingDependency."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingDependency("signing and checking a bundle's signature need the cryptography package: "
                                "pip install 'copyscope[sign]'") from None
    return serialization, ed25519, InvalidSignature


def _read_key(path: Path, what: str) -> bytes:
    from ..common.inputs import read_bounded

    return read_bounded(Path(path), MAX_KEY_BYTES, what)


def load_private_key(path: Path) -> Any:
    """An Ed25519 private key from an unencrypted PEM file; anything else is one line naming the file."""
    serialization, ed25519, _ = _crypto()
    data = _read_key(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CopyscopeError("is an encrypted private key; copyscope reads unencrypted PEM keys only (decrypt a copy with "
                             "`openssl pkey -in KEY -out KEY.plain.pem`)", where=str(path)) from None
    except Exception as exc:  # noqa: BLE001 - cryptography raises ValueError or UnsupportedAlgorithm
        raise CopyscopeError(f"is not a PEM private key ({exc.__class__.__name__}); expected an Ed25519 key in PEM "
                             f"({KEYGEN})", where=str(path)) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise CopyscopeError(f"holds a key of type {_kind(key)}; expected an Ed25519 private key ({KEYGEN})", where=str(path))
    return key


def load_public_key(path: Path) -> Any:
    """An Ed25519 public key from a PEM file; anything else is one line naming the file."""
    serialization, ed25519, _ = _crypto()
    data = _read_key(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except Exception as exc:  # noqa: BLE001 - ValueError or UnsupportedAlgorithm
        raise CopyscopeError(f"is not a PEM public key ({exc.__class__.__name__}); expected the Ed25519 public key "
                             "(`openssl pkey -in key.pem -pubout`)", where=str(path)) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise CopyscopeError(f"holds a key of type {_kind(key)}; expected an Ed25519 public key", where=str(path))
    return key


def _kind(key: Any) -> str:
    return type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey") or "unknown"


def _raw_public(public_key: Any) -> bytes:
    serialization, _, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_key: Any) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key."""
    return "sha256:" + sha256_bytes(_raw_public(public_key))


def sign(data: bytes, private_key: Any, signed_file: str = "manifest.json") -> dict:
    """signature.json's content: the Ed25519 signature of ``data`` (the manifest's bytes)."""
    public = private_key.public_key()
    return {
        "format": SIGNATURE_FORMAT,
        "algorithm": "Ed25519",
        "signed_file": signed_file,
        "signed_sha256": sha256_bytes(data),
        "public_key": base64.b64encode(_raw_public(public)).decode("ascii"),
        "public_key_fingerprint": fingerprint(public),
        "signature": base64.b64encode(private_key.sign(data)).decode("ascii"),
    }


def check(data: bytes, record: Any, public_key: Any) -> tuple[bool, str]:
    """Whether ``record`` (signature.json) is a valid Ed25519 signature of ``data`` by ``public_key``; and what to say."""
    _, _, invalid_signature = _crypto()
    if not isinstance(record, dict) or record.get("algorithm") != "Ed25519" or not isinstance(record.get("signature"), str):
        return False, "signature.json is not an Ed25519 signature record"
    try:
        signature = base64.b64decode(record["signature"], validate=True)
    except (binascii.Error, ValueError):
        return False, "signature.json: the signature is not base64"
    who = fingerprint(public_key)
    try:
        public_key.verify(signature, data)
    except invalid_signature:
        return False, f"the manifest's signature does not verify with the key {who}"
    return True, f"the manifest is signed (Ed25519) by the key {who}"
