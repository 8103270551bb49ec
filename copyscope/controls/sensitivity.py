"""What the positive controls say about a metric (pure numpy): dose-response, AUC with an interval, blindness,
and the img2img strength a Shapley value is worth.

Input: one score per control image, with its work, whether it is a copy (made from the work) or a non-copy
(made from a background image), its strength and its seed. Copies and non-copies are compared only within the
same work and strength (a score is similarity to that work).
"""

from __future__ import annotations

import numpy as np

# Blind: the AUC is below the conventional threshold of acceptable discrimination (0.7; Hosmer & Lemeshow,
# Applied Logistic Regression, 2000, ch. 5), or its interval reaches chance (0.5).
ACCEPTABLE_AUC = 0.7
CHANCE_AUC = 0.5


def mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a copy scores above a non-copy), ties counting half; NaN when either side is empty."""
    pos, neg = np.asarray(pos, float).ravel(), np.asarray(neg, float).ravel()
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    d = pos[:, None] - neg[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def _work_aucs(scores, work, copy, strength, seed, s: float, seeds_drawn) -> list[float]:
    """The AUC of each work at strength ``s``, over the seeds ``seeds_drawn`` (with repeats)."""
    out = []
    for w in np.unique(work):
        sel = (strength == s) & (work == w)
        pos = np.concatenate([scores[sel & copy & (seed == k)] for k in seeds_drawn])
        neg = np.concatenate([scores[sel & ~copy & (seed == k)] for k in seeds_drawn])
        out.append(mann_whitney_auc(pos, neg))
    return out


def _pooled_auc(scores, work, copy, strength, seed, seeds_drawn, strengths) -> float:
    """Mean over strengths below 1 (and works) of the AUC, over the seeds ``seeds_drawn`` (with repeats)."""
    aucs = [a for s in strengths if s < 1.0 for a in _work_aucs(scores, work, copy, strength, seed, s, seeds_drawn)]
    return float(np.nanmean(aucs)) if aucs and not np.all(np.isnan(aucs)) else float("nan")


def sensitivity(scores, work, copy, strength, seed, level: float = 0.95, n_boot: int = 2000, rng_seed: int = 0) -> dict:
    """One metric's controls: per strength the copies' and non-copies' mean score and their gap (the
    dose-response), the AUC per strength, the pooled AUC with a percentile bootstrap interval over seeds
    (seeds drawn with replacement, the same draw for copies and non-copies), and ``blind``."""
    scores, work, copy = np.asarray(scores, float), np.asarray(work), np.asarray(copy, bool)
    strength, seed = np.asarray(strength, float), np.asarray(seed)
    strengths = sorted(set(strength.tolist()))
    seeds = sorted(set(seed.tolist()))
    dose = []
    for s in strengths:
        sel = strength == s
        pos, neg = scores[sel & copy], scores[sel & ~copy]
        dose.append({"strength": s, "copies": float(pos.mean()), "non_copies": float(neg.mean()),
                     "gap": float(pos.mean() - neg.mean()),
                     "auc": float(np.nanmean(_work_aucs(scores, work, copy, strength, seed, s, seeds)))})
    auc = _pooled_auc(scores, work, copy, strength, seed, seeds, strengths)
    rng = np.random.default_rng(rng_seed)
    boots = np.array([_pooled_auc(scores, work, copy, strength, seed, list(rng.choice(seeds, len(seeds))), strengths)
                      for _ in range(n_boot)]) if len(seeds) > 1 else np.array([auc])
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if boots.size else (np.nan, np.nan))
    finite = bool(np.isfinite(auc) and np.isfinite(lo))
    return {"dose_response": dose, "auc": auc if np.isfinite(auc) else None,
            "auc_ci": [float(lo), float(hi)] if finite else None,
            "blind": (not finite) or auc < ACCEPTABLE_AUC or float(lo) <= CHANCE_AUC}


def equivalent_strength(value: float, dose: list[dict]) -> dict:
    """The img2img strength whose copies gain what ``value`` (a Shapley value on the same worth) gains: the
    strength where the copies-minus-non-copies gap equals ``value``, interpolated linearly between the
    measured strengths (the gap falls as strength rises). Outside the measured range: a bound."""
    pts = sorted((d["strength"], d["gap"]) for d in dose if np.isfinite(d["gap"]))
    if not pts or not np.isfinite(value):
        return {"strength": None, "bound": None}
    s, g = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    if value >= g.max():
        return {"strength": float(s[np.argmax(g)]), "bound": "at most"}  # as strong as the closest copy or more
    if value <= g.min():
        return {"strength": float(s[np.argmin(g)]), "bound": "at least"}
    for i in range(len(s) - 1):  # first crossing, from the strongest copying (lowest strength) up
        a, b = g[i], g[i + 1]
        if (a - value) * (b - value) <= 0 and a != b:
            return {"strength": float(s[i] + (value - a) / (b - a) * (s[i + 1] - s[i])), "bound": None}
    return {"strength": None, "bound": None}
