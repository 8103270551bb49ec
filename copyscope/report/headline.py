"""Say only what holds: one headline metric carries the significance claims; the rest is sensitivity analysis.

The headline is chosen by the validity benchmark (``copyscope demo bench``, docs/validity.md): the first metric
of ``HEADLINE_PREFERENCE`` that the audit computed. Its Shapley values
are tested (one-sided test over seeds, Holm-corrected across players) and only they are marked
significant in the terminal table, the summary and the HTML report. Every other metric is shown as
sensitivity analysis: values and intervals, no significance mark (so no correction across metrics is
needed: nothing is flagged).
"""

from __future__ import annotations


from ..common.finite import is_finite

# In order of preference; see docs/validity.md, measured on the shipped demo zoo and two other benchmark worlds.
# phash is the only metric that called no decoy significant in any of the four committed runs of the demo's world
# (quick and full set, 8 and 16 seeds: 0/6, 0/6, 0/36, 0/36) and, on the full set, puts the plant first in 35/36
# and finds it significant in 33-34/36 (the KDE world: 1/36 false decoys; the MATE world: 0/36). kid_pixels (the
# headline before the rebuild; 6/36 false decoys in the MATE world, so no longer a default) is the fallback for a
# zoo that lists it but not phash, then the fusion (neither validated as the headline).
HEADLINE_PREFERENCE = ("phash", "kid_pixels", "fusion")

HEADLINE_NOTE = ("significance is claimed for the headline metric only (its one-sided test, Holm-corrected "
                 "across players); the other metrics are sensitivity analysis, shown without significance marks")


def headline_metric(metrics) -> str | None:
    """The headline among the metric names an audit computed (the first computed one if none is preferred)."""
    names = list(metrics)
    for m in HEADLINE_PREFERENCE:
        if m in names:
            return m
    return names[0] if names else None


def significant(entry: dict, alpha: float) -> bool:
    """A Shapley entry (value, p_holm) is significantly above zero and, in an audit with a placebo player
    (controls.placebo), also above the placebo (``beats_placebo``); the placebo itself is never a claim."""
    p, v = entry.get("p_holm"), entry.get("value")
    if entry.get("beats_placebo") is False or entry.get("placebo"):
        return False
    return is_finite(p) and is_finite(v) and p < alpha and v > 0


def t_only(entry: dict, alpha: float) -> bool:
    """Significant under the t test alone, but not under the claim's rule (not confirmed by the
    distribution-free test): shown as '(t)', never as a claim."""
    t = entry.get("t")
    if entry.get("beats_placebo") is False or entry.get("placebo"):
        return False
    return isinstance(t, dict) and not significant(entry, alpha) and significant({**t, "value": entry.get("value")}, alpha)


def claim_rule(report: dict) -> str:
    """In words, what a significance mark needs (settings.significance; older reports: the t test)."""
    rule = (report.get("settings") or {}).get("significance") or "t"
    return {"both": "t and distribution-free, the latter valid at any seed count and stopping rule",
            "distribution_free": "distribution-free, valid at any seed count and stopping rule"}.get(rule, "t test")


def ranked(shapley: dict, alpha: float) -> tuple[list[str], list[str]]:
    """The players with a value, largest first, and those of them significantly above zero (same order)."""
    order = sorted((p for p in shapley if shapley[p]["value"] is not None), key=lambda p: -shapley[p]["value"])
    return order, [p for p in order if significant(shapley[p], alpha)]


def per_work_sentences(report: dict, game: dict) -> list[str]:
    """One sentence per work: which component copies it most, under the headline metric."""
    return [f"Work '{work}': {text}" for work, text, _ in _part_findings(report, game, "per_work")]


def per_prompt_sentences(report: dict, game: dict) -> list[str]:
    """With several prompts: which prompts drive the copying (a component copies significantly in that prompt's
    own game, under the headline metric), then one sentence per prompt."""
    found = _part_findings(report, game, "per_prompt")
    if not found:
        return []
    driving = [prompt for prompt, _, sig in found if sig]
    lead = (f"The copying is driven by prompt{'s' if len(driving) > 1 else ''} "
            + ", ".join(f"'{p}'" for p in driving) + f" (of {len(found)})." if driving else
            f"No prompt alone shows a component copying significantly (of {len(found)} prompts).")
    return [lead] + [f"Prompt '{prompt}': {text}" for prompt, text, _ in found]


def _part_findings(report: dict, game: dict, part: str) -> list[tuple[str, str, bool]]:
    """(work or prompt, what its own game says under the headline, whether a component is significant there)."""
    alpha = 1.0 - (report.get("settings") or {}).get("confidence", 0.95)
    out = []
    for key, metrics in (game.get(part) or {}).items():
        m = game.get("headline") or headline_metric(metrics)
        sec = metrics.get(m)
        if not sec:
            continue
        sh = sec["shapley"]
        order, sig = ranked(sh, alpha)
        if not order:
            continue
        top = order[0]
        if sig:
            who = ", ".join(f"{p} ({sh[p]['value']:+.3g})" for p in sig)
            out.append((key, f"copied significantly by {who} under {m}; largest contribution: {top}.", True))
        else:
            out.append((key, f"no component raises similarity to it significantly under {m}; "
                             f"largest contribution: {top} ({sh[top]['value']:+.3g}).", False))
    return out
