"""The result of an estimator: point values, bootstrap replicates, uncertainty, tests, shares.

Two independent sources of uncertainty are carried separately:

* ``replicates`` (n, B): the estimate recomputed on each resample of the seeds (column ``b`` of
  the game's worth matrix) *with the same sampled coalitions*. They measure the noise of image
  generation (which seeds were drawn). ``resampling`` says what the columns are:
  ``"jackknife"`` (the audit's default: column ``s`` leaves seed ``s`` out; Student-t intervals
  and tests on the per-seed pseudo-values, :mod:`copyscope.estimate.shapley.inference`) or
  ``"bootstrap"`` (seeds resampled with replacement; percentile intervals, kept for comparison
  and for estimates written by older versions).
* ``estimator_se`` (n,): the estimator's own sampling standard error (which coalitions or
  permutations were drawn). Zero for exact methods.

Intervals and p-values combine both by adding variances (see :meth:`Estimate.ci`). The helpers that need no
estimate live beside it: the p-value adjustment and the positive shares in
:mod:`copyscope.estimate.shapley.pvalues_shares`, the JSON conversion in :mod:`copyscope.estimate.shapley.jsonsafe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from copyscope.common.errors import CopyscopeError
from copyscope.common.finite import finite_or_none as _json_float
from copyscope.estimate.shapley.inference import (
    default_zero_tol,
    jackknife_pseudo_values,
    jackknife_se,
    seed_inference,
    t_interval,
)

from .jsonsafe import from_json_array, json_array, jsonable
from .pvalues_shares import _check_level, adjust_p_values, positive_shares

__all__ = ["Estimate"]

RESAMPLINGS = ("jackknife", "bootstrap")


@dataclass
class Estimate:
    """Attribution values for one game, with their uncertainty.

    Attributes:
        player_names: one name per player.
        values: (n,) point estimates, computed on column 0 (all seeds).
        replicates: (n, B) the same estimator on bootstrap column b, or None when B = 0.
        estimator_se: (n,) the estimator's own sampling standard error (0 for exact methods,
            inf when it cannot be estimated), or None when not applicable.
        n_evaluated: distinct coalitions this estimate used (the generation cost is at most this;
            less when the game already knew some of them).
        method: e.g. ``"exact"``, ``"permutation"``, ``"kernelshap"``, ``"banzhaf"``, ``"loo"``.
        budget: the budget it ran under (None = unlimited).
        index: the attribution index: ``"shapley"``, ``"banzhaf"`` or ``"loo"``. Only
            ``"shapley"`` is efficient (sums to v(N) - v(empty)).
        seed: seed of the estimator's sampling (None for deterministic methods).
        info: method-specific facts (number of permutations, strata, ...), JSON-safe.
        resampling: ``"jackknife"`` (replicate ``s`` = the estimate without seed ``s``) or
            ``"bootstrap"`` (replicate ``b`` = the estimate on bootstrap resample ``b``).
        zero_tol: values and standard errors at or below it count as exactly zero (floating-point
            noise of a player that changes nothing); None: 1e-12 of the largest magnitude seen.
    """

    player_names: list[str]
    values: np.ndarray
    replicates: np.ndarray | None = None
    estimator_se: np.ndarray | None = None
    n_evaluated: int = 0
    method: str = ""
    budget: int | None = None
    index: str = "shapley"
    seed: int | None = None
    info: dict = field(default_factory=dict)
    resampling: str = "bootstrap"
    zero_tol: float | None = None

    def __post_init__(self) -> None:
        if self.resampling not in RESAMPLINGS:
            raise CopyscopeError(f"resampling must be one of {', '.join(RESAMPLINGS)}, got {self.resampling!r}")
        self.values = np.asarray(self.values, dtype=float).reshape(-1)
        n = self.values.shape[0]
        if len(self.player_names) != n:
            raise CopyscopeError(f"{len(self.player_names)} player names for {n} values")
        if self.replicates is not None:
            self.replicates = np.asarray(self.replicates, dtype=float).reshape(n, -1)
            if self.replicates.shape[1] == 0:
                self.replicates = None
        if self.estimator_se is not None:
            self.estimator_se = np.asarray(self.estimator_se, dtype=float).reshape(n)

    @property
    def n_players(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_replicates(self) -> int:
        return 0 if self.replicates is None else int(self.replicates.shape[1])

    def _se(self) -> np.ndarray | None:
        """The estimator SE, or None when absent or identically zero (exact methods)."""
        if self.estimator_se is None or not np.any(self.estimator_se):
            return None
        return self.estimator_se

    @property
    def jackknife(self) -> bool:
        """True when the replicates are leave-one-seed-out estimates (Student-t inference)."""
        return self.resampling == "jackknife" and self.replicates is not None

    def tolerance(self) -> float:
        """What counts as exactly zero (see ``zero_tol``)."""
        if self.zero_tol is not None:
            return float(self.zero_tol)
        return default_zero_tol(self.values, self.replicates)

    def per_seed(self) -> np.ndarray | None:
        """(n, m) per-seed pseudo-values (jackknife only, else None): for a per-image metric the
        attribution computed on each seed alone; their mean is ``values``."""
        if not self.jackknife:
            return None
        return jackknife_pseudo_values(self.values, self.replicates)

    def standard_error(self) -> np.ndarray | None:
        """(n,) total standard error of a jackknife estimate: seed noise (jackknife SE) and the
        estimator's own sampling error, variances added. None for bootstrap estimates."""
        if not self.jackknife:
            return None
        se = jackknife_se(self.replicates)
        est = self._se()
        return se if est is None else np.sqrt(se**2 + est**2)

    @property
    def df(self) -> int | None:
        """Degrees of freedom of the t quantiles (seeds - 1), jackknife only."""
        return self.n_replicates - 1 if self.jackknife else None

    # ------------------------------------------------------------------ intervals
    def ci(self, level: float = 0.95) -> np.ndarray | None:
        """(n, 2) two-sided interval at ``level``, or None when there is no uncertainty to show.

        * Jackknife replicates (``m`` seeds): the skew-corrected t interval of the per-seed
          pseudo-values (:func:`copyscope.estimate.shapley.inference.seed_inference`: Hall's transformation
          of ``(value - mu) / se``, ``se`` the jackknife standard error), with the estimator SE
          added in variance (:meth:`standard_error`).
        * Bootstrap replicates: the bootstrap percentile interval ``[q(a/2), q(1 - a/2)]`` of the
          replicates. If an estimator SE is present, each side's distance from the point
          estimate ``d`` is widened to ``sqrt(d**2 + (z * se)**2)`` (``z`` the normal quantile):
          the seed noise and the coalition-sampling noise are independent, so their variances
          add, and the asymmetry of the bootstrap interval is kept.
        * Without replicates but with an estimator SE: the normal interval ``value +- z * se``.
        * Neither: None.
        """
        level = _check_level(level)
        alpha = 1.0 - level
        z = float(ndtri(1.0 - alpha / 2.0))
        se = self._se()
        if self.jackknife:
            return seed_inference(self.values, self.per_seed(), se, level, self.tolerance())[0]
        if self.replicates is None:
            if se is None:
                return None
            half = z * se
            return np.column_stack([self.values - half, self.values + half])
        q = np.quantile(self.replicates, [alpha / 2.0, 1.0 - alpha / 2.0], axis=1).T
        if se is None:
            return q
        d_lo = np.maximum(self.values - q[:, 0], 0.0)
        d_hi = np.maximum(q[:, 1] - self.values, 0.0)
        extra = (z * se) ** 2
        with np.errstate(invalid="ignore"):
            lo = self.values - np.sqrt(d_lo**2 + extra)
            hi = self.values + np.sqrt(d_hi**2 + extra)
        return np.column_stack([lo, hi])

    # ------------------------------------------------------------------ tests
    def p_values(self) -> np.ndarray:
        """One-sided p-values for H0: phi_i <= 0 (the player does not increase copying).

        Jackknife replicates: the skew-corrected t test of :func:`seed_inference` (continuous, not
        floored; p = 1 for a player whose every seed contributes exactly zero).
        Bootstrap replicates: ``p_i = (1 + #{b : phi_i,b <= 0}) / (B + 1)`` over the replicates. With an estimator SE
        each replicate is counted with the probability that it would be <= 0 after the
        independent sampling noise is added: ``(1 + sum_b Phi(-phi_i,b / se_i)) / (B + 1)``.
        Without replicates but with an SE: the normal test ``Phi(-phi_i / se_i)``. Neither:
        all NaN.
        """
        n = self.n_players
        se = self._se()
        if self.jackknife:
            return seed_inference(self.values, self.per_seed(), se, 0.95, self.tolerance())[1]
        if self.replicates is None:
            if se is None:
                return np.full(n, np.nan)
            return self._normal_tail(self.values[:, None], se)[:, 0]
        B = self.replicates.shape[1]
        if se is None:
            # a replicate that is zero in exact arithmetic may come out as +-1e-16: count it as <= 0
            counts = (self.replicates <= self.tolerance()).sum(axis=1).astype(float)
        else:
            counts = self._normal_tail(self.replicates, se).sum(axis=1)
        return (1.0 + counts) / (B + 1.0)

    @staticmethod
    def _normal_tail(x: np.ndarray, se: np.ndarray) -> np.ndarray:
        """P(x + e <= 0), e ~ N(0, se^2), row-wise; se = 0 gives the indicator x <= 0."""
        se = se[:, None]
        out = np.where(x <= 0.0, 1.0, 0.0)
        pos = se > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            smooth = ndtr(-x / np.where(pos, se, 1.0))
        out = np.where(pos, smooth, out)
        return out

    def p_adjusted(self, method: str = "holm") -> np.ndarray:
        """:meth:`p_values` corrected across players (``holm`` or ``bonferroni``)."""
        return adjust_p_values(self.p_values(), method)

    # ------------------------------------------------------------------ shares
    def shares(self, level: float = 0.95) -> dict[str, dict[str, float | None]]:
        """Share of liability per player, in percent.

        Following the reward split of Glinsky & Sokolsky read as a share of liability, only
        players that increase copying are liable: ``share_i = 100 * max(phi_i, 0) /
        sum_j max(phi_j, 0)``; players with phi_i <= 0 get 0. Shares sum to 100 over the
        positive players (all 0 if none is positive). ``low``/``high`` are percentile intervals
        of the same split computed on each bootstrap replicate (replicates with no positive
        player are skipped), widened if needed so they contain the point share; None without
        replicates. They reflect seed noise only, not the estimator's sampling error.
        Jackknife replicates: ``share +- t_{m-1} * se`` with the jackknife SE of the share
        (computed on each leave-one-seed-out estimate), clipped to [0, 100].
        """
        level = _check_level(level)
        point = positive_shares(self.values[:, None], none_positive=0.0)[:, 0]
        lo = hi = None
        if self.jackknife and self.n_replicates >= 2:
            rep = positive_shares(self.replicates, none_positive=0.0)
            ci = t_interval(point, jackknife_se(rep), self.df, level, 1e-9)
            lo, hi = np.clip(ci[:, 0], 0.0, 100.0), np.clip(ci[:, 1], 0.0, 100.0)
        elif self.replicates is not None and not self.jackknife:
            rep = positive_shares(self.replicates, none_positive=np.nan)
            alpha = 1.0 - level
            keep = np.isfinite(rep).all(axis=0)
            if keep.any():
                q = np.quantile(rep[:, keep], [alpha / 2.0, 1.0 - alpha / 2.0], axis=1).T
                lo = np.minimum(q[:, 0], point)
                hi = np.maximum(q[:, 1], point)
        out: dict[str, dict[str, float | None]] = {}
        for i, name in enumerate(self.player_names):
            out[name] = {
                "share": float(point[i]),
                "low": None if lo is None else float(lo[i]),
                "high": None if hi is None else float(hi[i]),
            }
        return out

    # ------------------------------------------------------------------ serialisation
    def to_dict(self, level: float = 0.95, include_replicates: bool = True) -> dict:
        """JSON-safe summary (non-finite numbers become None)."""
        ci = self.ci(level)
        p = self.p_values()
        return {
            "method": self.method,
            "index": self.index,
            "budget": self.budget,
            "n_evaluated": int(self.n_evaluated),
            "seed": self.seed,
            "player_names": list(self.player_names),
            "values": json_array(self.values),
            "estimator_se": json_array(self.estimator_se),
            "n_replicates": self.n_replicates,
            "resampling": self.resampling,
            "zero_tol": self.zero_tol,
            "standard_error": json_array(self.standard_error()),
            "df": self.df,
            "level": level,
            "ci": json_array(ci),
            "p_values": json_array(p),
            "p_holm": json_array(adjust_p_values(p, "holm")),
            "shares": self.shares(level),
            "sum": _json_float(self.values.sum()),
            "info": jsonable(self.info),
            "replicates": json_array(self.replicates) if include_replicates else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Estimate:
        """Rebuild an Estimate from :meth:`to_dict` output (replicates must be included)."""
        try:
            return cls(
                player_names=list(data["player_names"]),
                values=from_json_array(data["values"]),
                replicates=from_json_array(data.get("replicates")),
                estimator_se=from_json_array(data.get("estimator_se")),
                n_evaluated=int(data.get("n_evaluated", 0)),
                method=str(data.get("method", "")),
                budget=data.get("budget"),
                index=str(data.get("index", "shapley")),
                seed=data.get("seed"),
                info=dict(data.get("info") or {}),
                resampling=str(data.get("resampling", "bootstrap")),  # older files: bootstrap
                zero_tol=data.get("zero_tol"),
            )
        except KeyError as exc:
            raise CopyscopeError(f"estimate is missing key {exc.args[0]!r}") from None

    def table(self, level: float = 0.95) -> str:
        """A plain-text table: player, value, interval, p (Holm), share."""
        ci = self.ci(level)
        p = self.p_adjusted("holm")
        sh = self.shares(level)
        width = max(6, *(len(x) for x in self.player_names))
        lines = [
            f"{'player':<{width}}  {'value':>10}  {'ci':>23}  {'p_holm':>7}  {'share %':>7}",
        ]
        for i, name in enumerate(self.player_names):
            iv = "" if ci is None else f"[{ci[i, 0]:+.4f}, {ci[i, 1]:+.4f}]"
            pv = "" if not np.isfinite(p[i]) else f"{p[i]:.3f}"
            lines.append(
                f"{name:<{width}}  {self.values[i]:>+10.4f}  {iv:>23}  {pv:>7}  "
                f"{sh[name]['share']:>7.1f}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        vals = ", ".join(f"{n}={v:+.4g}" for n, v in zip(self.player_names, self.values))
        return (
            f"Estimate(method={self.method!r}, n_evaluated={self.n_evaluated}, "
            f"B={self.n_replicates}, {vals})"
        )
