"""Comparing report.json's numbers with the ones recomputed from a bundle, value by value.

Numbers match when ``math.isclose(report, recomputed, rel_tol=REL_TOL, abs_tol=ABS_TOL)``: 1e-9 relative, and 1e-12
absolute for values that are zero up to rounding (an efficiency gap of 1e-17); the recomputation is the audit's own
code on the same images, so the only differences an honest bundle shows are the last bits of floating-point sums.
Everything else (text, true/false, null, integers inside lists of keys) must be equal. A mismatch names the report
key: ``games[0].metrics.phash.shapley.lora0.value: report 0.43, recomputed 0.41``.
"""

from __future__ import annotations

import math
from typing import Any

from ..results.records import key_path

REL_TOL = 1e-9
ABS_TOL = 1e-12
# wording of the copyscope that runs verify, not a result
WORDING = {"description"}
# what adaptive seeds replace in the headline's entries by the stopping look (copyscope.estimate.adaptive): not recomputed
SEQUENTIAL = {"ci95", "p_value", "p_holm", "claim", "t", "bounded", "sequential"}
_ABSENT = object()


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL) or (math.isnan(a) and math.isnan(b))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def show(x: Any) -> str:
    if x is _ABSENT:
        return "absent"
    if x is None:
        return "null"
    if isinstance(x, float):
        return f"{x:.12g}"
    if isinstance(x, (dict, list)):
        text = repr(x)
        return text if len(text) <= 80 else text[:77] + "..."
    return repr(x)


class Comparison:
    """Mismatches found so far, and how many values compared equal."""

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.values = 0

    def differ(self, path: str, report: Any, recomputed: Any) -> None:
        self.mismatches.append(f"{path}: report {show(report)}, recomputed {show(recomputed)}")

    def compare(self, report: Any, recomputed: Any, path: str, skip: set[str] = frozenset()) -> None:
        """Every value of ``report`` against ``recomputed`` (JSON values), recursively; keys in ``skip`` are left out
        at every depth; an entry marked ``sequential`` (adaptive seeds) is compared without its tests."""
        if isinstance(report, dict) and isinstance(recomputed, dict):
            if report.get("sequential") is True:
                skip = skip | SEQUENTIAL
            for k in list(report) + [k for k in recomputed if k not in report]:
                if k in skip or k in WORDING:
                    continue
                self.compare(report.get(k, _ABSENT), recomputed.get(k, _ABSENT), key_path(path, k), skip)
            return
        if isinstance(report, list) and isinstance(recomputed, list):
            if len(report) != len(recomputed):
                self.differ(path, f"{len(report)} items", f"{len(recomputed)} items")
                return
            for i, (a, b) in enumerate(zip(report, recomputed)):
                self.compare(a, b, f"{path}[{i}]", skip)
            return
        if _is_number(report) and _is_number(recomputed):
            same = report == recomputed if isinstance(report, int) and isinstance(recomputed, int) \
                else close(float(report), float(recomputed))
        else:
            same = type(report) is type(recomputed) and report == recomputed
        if same:
            self.values += 1
        else:
            self.differ(path, report, recomputed)


def compare_games(report: dict, rebuilt: dict, left_out: dict[str, str], controls: list[bool]) -> Comparison:
    """report.json's games against the recomputed report's: every metric section (and each work's) that could be
    recomputed, the skipped metrics among those, and the headline where the report's is not the controls' choice
    (``controls[i]``: game i has positive controls, which verify does not rerun). ``left_out``: metric -> why it was not
    recomputed."""
    out = Comparison()
    for i, (g, r) in enumerate(zip(report.get("games", []), rebuilt.get("games", []))):
        where = f"games[{i}]"
        for name in ("base", "players"):
            out.compare(g.get(name), r.get(name), key_path(where, name))
        _sections(out, g.get("metrics") or {}, r.get("metrics") or {}, key_path(where, "metrics"), left_out)
        skipped_report = {m: why for m, why in (g.get("skipped_metrics") or {}).items() if m not in left_out}
        out.compare(skipped_report, r.get("skipped_metrics") or {}, key_path(where, "skipped_metrics"))
        for part in ("per_work", "per_prompt"):  # each work's and each prompt's own game
            for key in sorted(set(g.get(part) or {}) | set(r.get(part) or {})):
                _sections(out, (g.get(part) or {}).get(key) or {}, (r.get(part) or {}).get(key) or {},
                          key_path(key_path(where, part), key), left_out)
        if not controls[i] and not left_out:
            out.compare(g.get("headline"), r.get("headline"), key_path(where, "headline"))
    return out


def _sections(out: Comparison, report: dict, rebuilt: dict, where: str, left_out: dict[str, str]) -> None:
    for m in list(report) + [m for m in rebuilt if m not in report]:
        if m in left_out:
            continue
        if m not in rebuilt:
            out.differ(key_path(where, m), "a section", "none (the metric attributes nothing from the bundled images)")
        elif m not in report:
            out.differ(key_path(where, m), "none", "a section")
        else:
            out.compare(report[m], rebuilt[m], key_path(where, m), {"inference"})
