"""OddShap: paired KernelSHAP extended with third-order odd interactions, ridge-penalised.

Why it works (Walsh/Fourier view, x_j = +1 if j is in S, -1 otherwise): a game is
``v = sum_T f_T prod_{j in T} x_j``. The Shapley value of a character with an even |T| is 0 for
everyone, of one with an odd |T| it is ``2 / |T|`` for each member of T, so Shapley values depend
only on the game's odd part. A coalition S and its complement have opposite x, so the difference
``d(S) = v(S) - v(N - S)`` is exactly twice the odd part at S: paired sampling hands us the odd
part directly, free of every even (order 2, 4, ...) interaction.

Paired KernelSHAP is the Shapley-kernel-weighted least-squares fit of ``d`` on the n linear
characters ``x_i`` with ``sum phi = v(N) - v(empty)``. OddShap adds the C(n, 3) third-order
characters ``x_i x_j x_k``, with a ridge penalty on them only:

    min_{a, b}  sum_pairs w_p (d_p - x_p'a - chi3_p'b)**2 + lambda ||b||**2
    s.t.        sum(a) + sum(b) = v(N) - v(empty)           (the pair N / empty, fitted exactly)
    phi_i = a_i + (1/3) sum_{T contains i, |T| = 3} b_T

``lambda`` is chosen per estimate from a grid by leave-one-pair-out cross-validation (closed form
for a linear smoother); ``lambda = inf`` is paired KernelSHAP itself, so the fit only moves away
from it when the held-out pairs say the third-order terms predict better. Games whose odd part
has order <= 3 (every game with interactions of order <= 4) are fitted exactly once the samples
determine the terms; higher-order odd parts (saturating or max-type games) are approximated.

The coalitions are exactly paired KernelSHAP's (same plan for the same n, budget and seed). The
chosen ``lambda`` (from column 0) is applied to every column, so the estimator is linear in the
worths for the bootstrap replicates. ``estimator_se``: a stratified sandwich over the sampled
pairs, with leave-one-out residuals (so it includes the model's misfit), enumerated sizes fixed.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from copyscope.estimate.shapley.base import Design, Estimator
from copyscope.estimate.shapley.kernelshap import KernelShap

__all__ = ["OddShap", "MAX_THIRD_ORDER_TERMS"]

MAX_THIRD_ORDER_TERMS = 2300
"""Above this many third-order characters (n > 25) OddShap reduces to paired KernelSHAP."""

RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
"""lambda candidates, relative to the total pair weight (plus lambda = inf)."""


def _triples(n: int) -> np.ndarray:
    return np.array(list(combinations(range(n), 3)), dtype=int).reshape(-1, 3)


def _pairs_of(coalitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (first, complement) of every complementary pair in rows 2.. of the design."""
    n = coalitions.shape[1]
    where = {row.tobytes(): k for k, row in enumerate(coalitions)}
    first, second = [], []
    for k in range(2, len(coalitions)):
        row = coalitions[k]
        s = int(row.sum())
        if 2 * s > n or (2 * s == n and not row[0]):
            continue  # the other member of the pair represents it
        j = where.get((~row).tobytes())
        if j is None:  # paired KernelSHAP always draws both members
            raise AssertionError("OddShap needs a paired design")
        first.append(k)
        second.append(j)
    return np.array(first, dtype=int), np.array(second, dtype=int)


class OddShap(Estimator):
    """Paired KernelSHAP plus cross-validated, ridge-penalised third-order odd terms.

    See the module docstring. Same coalitions and budget rules as ``KernelShap(paired=True)``;
    with ``budget >= 2**n`` it enumerates (``method="exact"``).
    """

    method = "oddshap"
    needs_budget = True

    def __init__(self, budget: int | None = None, grid: tuple[float, ...] = RIDGE_GRID):
        super().__init__(budget)
        self.grid = tuple(float(g) for g in grid)

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        base = KernelShap(paired=True, n_bootstrap=0)._design(n, budget, seed)
        if base.method != "kernelshap":
            return base  # exact enumeration: nothing to fit
        coalitions = base.coalitions
        first, second = _pairs_of(coalitions)
        sizes = coalitions.sum(axis=1)
        per_size = np.bincount(sizes, minlength=n + 1)
        s = sizes[first]
        # Shapley-kernel mass of the size over the coalitions drawn of that size (as KernelShap)
        w = (n - 1) / (s * (n - s)) / per_size[s]
        enumerated = np.array([per_size[k] == math.comb(n, int(k)) for k in s], dtype=bool)
        # strata = sizes {s, n - s}: the sampled pairs are drawn independently per stratum
        strata = np.where(enumerated, -1, s)

        unsampled = base.info.get("unsampled_sizes", [])
        x = np.where(coalitions[first], 1.0, -1.0)  # (m, n)
        triples = _triples(n) if math.comb(n, 3) <= MAX_THIRD_ORDER_TERMS else np.zeros((0, 3), int)
        x3 = x[:, triples[:, 0]] * x[:, triples[:, 1]] * x[:, triples[:, 2]]  # (m, t)
        member = np.zeros((n, len(triples)))  # player i in triple T
        for c in range(3):
            member[triples[:, c], np.arange(len(triples))] = 1.0
        to_phi = np.hstack([np.eye(n), member / 3.0])  # (n, n + t): coefficients -> phi

        fits = [_RidgeFit(x, x3, w, None)]
        if len(triples) and len(first) > 1:
            scale = float(w.sum())
            fits += [_RidgeFit(x, x3, w, g * scale) for g in self.grid]

        def solve(worths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
            d = worths[first] - worths[second]  # (m, C): twice the odd part at each pair
            delta = worths[1] - worths[0]  # (C,)
            scores = [f.cv_score(d[:, 0], delta[0]) for f in fits]
            best = int(np.nanargmin(scores)) if np.isfinite(scores).any() else 0
            fit = fits[best]
            coef = fit.coef(d, delta)  # (q, C)
            phi = to_phi[:, : coef.shape[0]] @ coef
            se = fit.sandwich_se(d[:, 0], delta[0], to_phi[:, : coef.shape[0]], strata)
            if unsampled and not (strata >= 0).any():
                se = np.full(n, np.inf)  # sizes never seen and nothing sampled to tell
            chosen = None if fit.lam is None else fit.lam / float(w.sum())
            return phi, se, {"ridge": chosen, "third_order": fit.lam is not None}

        info = {k: v for k, v in base.info.items()}
        info["third_order_terms"] = int(len(triples))
        return Design(coalitions, solve, "oddshap", "shapley", info)

    def __repr__(self) -> str:
        return f"OddShap(budget={self.budget})"


class _RidgeFit:
    """The constrained weighted ridge fit for one lambda (None: linear terms only), as a linear
    map from (d, delta) to coefficients, with its hat-matrix diagonal for leave-one-out."""

    def __init__(self, x: np.ndarray, x3: np.ndarray, w: np.ndarray, lam: float | None):
        self.lam = lam
        feats = x if lam is None else np.hstack([x, x3])
        m, q = feats.shape
        n = x.shape[1]
        gram = feats.T @ (w[:, None] * feats)
        if lam is not None:
            gram[n:, n:] += lam * np.eye(q - n)
        kkt = np.zeros((q + 1, q + 1))
        kkt[:q, :q] = gram
        kkt[:q, q] = kkt[q, :q] = 1.0
        # pseudo-inverse: small designs may leave linear terms undetermined (minimum norm then)
        inv = np.linalg.pinv(kkt, rcond=1e-10, hermitian=True)
        self.map_d = inv[:q, :q] @ (feats.T * w[None, :])  # (q, m)
        self.map_delta = inv[:q, q]  # (q,)
        self.feats = feats
        self.w = w
        self.hat = np.einsum("ij,ji->i", feats, self.map_d)  # diag of d -> fitted d

    def coef(self, d: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return self.map_d @ d + np.outer(self.map_delta, delta)

    def loo_residuals(self, d: np.ndarray, delta: float) -> np.ndarray:
        fitted = self.feats @ self.coef(d[:, None], np.array([delta]))[:, 0]
        lever = 1.0 - self.hat
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(lever > 1e-8, (d - fitted) / lever, np.nan)

    def cv_score(self, d: np.ndarray, delta: float) -> float:
        res = self.loo_residuals(d, delta)
        if not np.isfinite(res).all():
            return np.inf
        return float((self.w * res**2).sum() / self.w.sum())

    def sandwich_se(self, d: np.ndarray, delta: float, to_phi: np.ndarray,
                    strata: np.ndarray) -> np.ndarray:
        """sd of phi over redraws of the sampled pairs: per stratum, the centred influence
        ``A[:, p] * e_p`` (A = d -> phi, e = leave-one-out residual), scaled by h / (h - 1)."""
        res = self.loo_residuals(d, delta)
        res = np.where(np.isfinite(res), res, d - self.feats @ self.coef(
            d[:, None], np.array([delta]))[:, 0])
        infl = (to_phi @ self.map_d) * res[None, :]  # (n, m)
        var = np.zeros(infl.shape[0])
        for st in np.unique(strata):
            if st < 0:
                continue  # enumerated sizes carry no sampling error
            cols = infl[:, strata == st]
            h = cols.shape[1]
            if h > 1:
                centred = cols - cols.mean(axis=1, keepdims=True)
                var += (centred**2).sum(axis=1) * h / (h - 1)
            else:
                var += (cols**2).sum(axis=1)
        return np.sqrt(var)
