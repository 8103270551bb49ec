"""Evidence bundles: ``copyscope bundle`` writes one archive with everything an audit's numbers rest on, and
``copyscope verify`` checks one without the models or a GPU.

:mod:`.bundle` collects and writes it (:func:`bundle_audit`), :mod:`.manifest` is its manifest, :mod:`.archive`
writes the archive atomically and extracts one safely, :mod:`.signing` signs the manifest (Ed25519, optional),
:mod:`.verify` checks a bundle (:func:`verify_bundle`), :mod:`.recompute` reruns the audit's scoring and estimation
on the bundled images, :mod:`.compare` compares the result with report.json. docs/evidence.md is the reference.
"""

from __future__ import annotations

from .bundle import BundleResult, bundle_audit
from .verify import Verdict, verify_bundle

__all__ = ["BundleResult", "Verdict", "bundle_audit", "verify_bundle"]
