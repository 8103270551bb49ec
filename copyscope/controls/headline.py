"""The headline metric of one audit, chosen by a rule fixed in advance from the audit's positive controls.

Candidates: the metrics the validity benchmark admits (``ADMITTED``: a decoy called significant in at most 5%
of its scenarios, at the default worth) that this audit computed and whose controls are not blind. Among them
the benchmark's preferred one (the global order, copyscope.report.headline.HEADLINE_PREFERENCE, then
``ADMITTED``'s) is the headline, unless another candidate's controls separate copies from non-copies clearly
better: its AUC interval lies wholly above the preferred one's. The controls thus veto a metric that does not
detect copying here, and overrule the benchmark only on clear evidence. (An earlier rule took the largest AUC
outright: in the second benchmark world it chose effnet over phash on AUCs of 0.87 against 0.83, intervals
overlapping, for the six scenarios of one work, and effnet then missed the plant in all six; docs/validity.md.)
The fallback, when no candidate is left or the controls are off, is the global order. The rule sees only the
control images' scores: those images are not the audit's coalitions (copyscope.controls.positive), so the
metric whose significance is claimed is not chosen on the data its test then uses.
"""

from __future__ import annotations

# The validity benchmark's admission, the rule the defaults follow (copyscope.score.metrics.registry): a decoy called
# significant (t test) in at most 5% of the scenarios of every committed run of every world (bench/validity_results*.json,
# the raw worth of bench/validity_worth_results.json, bench/validity_world_kde.json, bench/validity_world_mate.json and
# the MATE world's 16-seed run with its 8-seed windows, bench/validity_world_mate_16seeds.json;
# tests/fitness/test_validity_committed.py checks this list against them). dhash (4/36 at 16 seeds), sscd (2/36 at 16
# seeds), kid_pixels (6/36 in the MATE world) and effnet (2/36 in the MATE world at 16 seeds, 9/36 in its seeds 8-15)
# miss it; metrics the benchmark could not measure here (clip, dinov2, dreamsim: no weights offline) are not
# admitted. The fusion has no per-image controls, so today the rule keeps phash unless its controls are blind.
ADMITTED = ("phash", "fusion")


def choose_headline(control_metrics: dict[str, dict], computed: list[str], preference: tuple[str, ...],
                    admitted: tuple[str, ...] = ADMITTED) -> dict:
    """``control_metrics``: metric -> its controls' sensitivity (auc, auc_ci, blind); ``computed``: the metrics
    the audit estimated, in report order; ``preference``: the global order. Returns the chosen metric, the
    rule's words and the candidates' numbers."""
    order = [*preference, *(m for m in admitted if m not in preference)]
    cands = {m: control_metrics[m] for m in admitted if m in computed and m in control_metrics}
    usable = {m: s for m, s in cands.items() if not s["blind"] and s.get("auc") is not None}
    table = {m: {"auc": s.get("auc"), "auc_ci": s.get("auc_ci"), "blind": s["blind"]} for m, s in cands.items()}
    if usable:
        preferred = min(usable, key=order.index)
        p = usable[preferred]
        better = {m: s for m, s in usable.items() if s["auc_ci"][0] > p["auc_ci"][1]}
        if not better:
            why = (f"{preferred}: the validity benchmark's preferred metric, and its positive controls separate img2img "
                   f"copies of the work from the same img2img of generic images in this audit (AUC {_auc(p)}); no "
                   "other admitted metric separates them clearly better")
            return {"metric": preferred, "rule": "controls", "why": why, "candidates": table}
        best = max(better, key=lambda m: (round(better[m]["auc"], 6), round(better[m]["auc_ci"][0], 6), -order.index(m)))
        why = (f"{best}: its positive controls separate img2img copies of the work from the same img2img of generic "
               f"images clearly better than the benchmark's preferred {preferred} in this audit (AUC {_auc(better[best])} "
               f"against {_auc(p)})")
        return {"metric": best, "rule": "controls", "why": why, "candidates": table}
    fallback = next((m for m in preference if m in computed), computed[0] if computed else None)
    blind = sorted(m for m, s in cands.items() if s["blind"])
    why = (f"{fallback}: the global preference, because no admitted metric's controls separate copies from generic "
           f"images in this audit" + (f" (blind: {', '.join(blind)})" if blind else ""))
    return {"metric": fallback, "rule": "fallback", "why": why, "candidates": table}


def _auc(s: dict) -> str:
    return f"{s['auc']:.2f}, {s['auc_ci'][0]:.2f} to {s['auc_ci'][1]:.2f}"
