"""The typed audit result: :class:`AuditReport` (report.json) and its parts, with ``to_json`` / ``from_json``.

The report stage builds an AuditReport from the estimate stage's ``GameResult``s
(:func:`copyscope.report.build_report`); report.json is written from it and read back into it
(:func:`read_report`); adaptive seeds, ``copyscope ablate`` and ``copyscope report`` consume it.

Why a package of its own, at the bottom of the layers (docs/ARCHITECTURE.md): it imports nothing of copyscope
but ``errors`` and ``inputs``, so every stage that produces or reads a result (estimate, adaptive seeds, the
report, the analyses, the CLI) imports it downwards. In ``report/`` the analyses and adaptive seeds would
depend on the renderer; in ``shapley/`` the Shapley code would hold the audit's whole output format.
"""

from .model import (
    EXPECTED,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    AuditReport,
    GameReport,
    Generation,
    Interactions,
    MetricResult,
    Settings,
    Share,
    ShapleyEntry,
    TestResult,
    WorkMetricResult,
    read_report,
)
from .records import MISSING, Missing, Record, ReportFormatError

__all__ = [
    "AuditReport", "GameReport", "MetricResult", "WorkMetricResult", "ShapleyEntry", "TestResult", "Share", "Interactions",
    "Generation", "Settings", "SCHEMA_VERSION", "READABLE_VERSIONS", "EXPECTED", "read_report",
    "MISSING", "Missing", "Record", "ReportFormatError",
]
