"""KernelSHAP (Lundberg & Lee 2017): stratified paired sampling, exact efficiency by a KKT solve."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley.base import Design, Estimator, _comb, _exact_if_affordable, _shapley_weights

__all__ = ["KernelShap"]


def _sample_distinct(rng: np.random.Generator, n: int, s: int, m: int,
                     paired_middle: bool = False) -> np.ndarray:
    """m distinct coalitions of size s, uniformly without replacement, as a bool matrix.

    With ``paired_middle`` (s = n/2) m/2 distinct unordered pairs {S, N - S} are drawn and both
    members returned (m must be even)."""
    total = _comb(n, s)
    out: list[np.ndarray] = []
    seen: set[bytes] = set()
    target = m // 2 if paired_middle else m
    if total <= 4096:  # enumerate and choose
        combos = list(combinations(range(n), s))
        order = rng.permutation(len(combos))
        for j in order:
            if len(out) >= target:
                break
            row = np.zeros(n, dtype=bool)
            row[list(combos[j])] = True
            if row.tobytes() in seen:
                continue
            seen.add(row.tobytes())
            if paired_middle:
                seen.add((~row).tobytes())
            out.append(row)
    else:
        while len(out) < target:
            row = np.zeros(n, dtype=bool)
            row[rng.choice(n, size=s, replace=False)] = True
            k = row.tobytes()
            if k in seen:
                continue
            seen.add(k)
            if paired_middle:
                seen.add((~row).tobytes())
            out.append(row)
    z = np.array(out, dtype=bool).reshape(-1, n)
    if paired_middle:
        z = np.concatenate([z, ~z])
    return z


def _largest_remainder(total: int, shares: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Integer allocation of ``total`` proportional to ``shares``, at most ``caps[j]`` each."""
    shares = np.asarray(shares, dtype=float)
    caps = np.asarray(caps, dtype=int)
    alloc = np.zeros(len(shares), dtype=int)
    remaining = int(total)
    while remaining > 0:
        active = alloc < caps
        w = np.where(active, shares, 0.0)
        if w.sum() <= 0:
            break
        ideal = remaining * w / w.sum()
        base = np.minimum(np.floor(ideal).astype(int), caps - alloc)
        alloc += base
        remaining -= int(base.sum())
        added = int(base.sum())
        frac = np.where(alloc < caps, ideal - np.floor(ideal), 0.0)
        for j in np.argsort(-frac, kind="stable"):
            if remaining <= 0 or frac[j] <= 0:
                break
            alloc[j] += 1
            remaining -= 1
            added += 1
        if added == 0:
            break
    return alloc


def _kkt_solve(A: np.ndarray, b: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Solve min (y - Z phi)' W (y - Z phi) s.t. sum(phi) = delta, given A = Z'WZ and b = Z'Wy.

    Batched: A (..., n, n), b (..., n, C), delta (..., C); returns (..., n, C). Uses the
    pseudo-inverse of the KKT matrix, so a rank-deficient design (e.g. two players that are
    inside or outside every sampled coalition together) gets the minimum-norm solution, which
    splits the indistinguishable players' total equally, instead of numerical garbage."""
    n = A.shape[-1]
    batch = A.shape[:-2]
    K = np.zeros(batch + (n + 1, n + 1))
    K[..., :n, :n] = A
    K[..., :n, n] = 1.0
    K[..., n, :n] = 1.0
    rhs = np.concatenate([b, delta[..., None, :]], axis=-2)
    sol = np.linalg.pinv(K, rcond=1e-10) @ rhs
    return sol[..., :n, :]


class KernelShap(Estimator):
    """KernelSHAP (Lundberg & Lee 2017) with exact efficiency and stratified paired sampling.

    The Shapley values are the solution of the weighted least squares problem
    ``min sum_S k(|S|) (v(S) - v(empty) - sum_{i in S} phi_i)**2`` subject to
    ``sum_i phi_i = v(N) - v(empty)``, with the Shapley kernel ``k(s) = (n-1) / (C(n,s) s (n-s))``
    over ``0 < |S| < n``. The empty and full coalitions are always evaluated and the constraint
    is solved exactly (KKT system), so efficiency holds to rounding error.

    Sampling (all depends on n, budget and seed only): the budget left after empty and full is
    split across coalition sizes in proportion to the kernel mass of each size, ``1/(s(n-s))``.
    Sizes whose share would cover all their C(n, s) coalitions are enumerated (the "border
    trick"); in the other sizes a fixed number of distinct coalitions is drawn uniformly without
    replacement (stratified sampling). With ``paired=True`` every drawn coalition comes with its
    complement (Covert & Lee 2021). A sampled coalition of size s carries weight
    ``K(s) / m_s`` (K(s) the total kernel mass of the size, m_s the number drawn), so the
    regression's normal equations are stratified estimates of the exact ones.

    ``estimator_se``: bootstrap over the sampled coalitions (pairs kept together, resampled
    within each size; enumerated sizes fixed), ``n_bootstrap`` re-solves on column 0. It ignores
    the finite-population gain of drawing without replacement, so it errs on the large side.
    With ``budget >= 2**n`` every coalition is enumerated and the result is exact.
    """

    method = "kernelshap"
    needs_budget = True

    def __init__(self, paired: bool = True, budget: int | None = None, n_bootstrap: int = 200):
        super().__init__(budget)
        self.paired = bool(paired)
        if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or (
                n_bootstrap < 0):
            raise CopyscopeError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")
        self.n_bootstrap = int(n_bootstrap)

    def _design(self, n: int, budget: int | None, seed: int) -> Design:
        assert budget is not None
        exact = _exact_if_affordable(n, budget, _shapley_weights, "exact", "shapley")
        if exact is not None:
            return exact
        if n == 1:  # 2**1 = 2 > budget means budget == 1
            raise CopyscopeError(f"budget {budget} is too small: a 1-player game needs 2")
        minimum = n + 2 if not self.paired else n + 2 + (n % 2)
        if budget < minimum:
            raise CopyscopeError(
                f"budget {budget} is too small for KernelSHAP with {n} players: it needs at least "
                f"{minimum} coalitions"
            )
        rng = np.random.default_rng(seed)
        st = _Strata(n, budget)
        if st.sampled.any():
            if self.paired:
                st.sample_paired(rng)
            else:
                st.sample_unpaired(rng)
        coalitions = np.concatenate(st.blocks)
        w = np.concatenate(st.weights)
        uid = np.concatenate(st.unit_ids)
        strata = np.array(st.stratum_of_unit, dtype=int)
        zf = coalitions.astype(float)
        reg = slice(2, None)  # rows after empty and full
        Zr, wr = zf[reg], w[reg]
        A = Zr.T @ (wr[:, None] * Zr)
        n_boot, n_units = self.n_bootstrap, st.n_units
        present = set(coalitions[2:].sum(axis=1).tolist())
        unsampled = [int(s) for s in st.sizes if int(s) not in present]

        def solve(worths: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
            y = worths[reg] - worths[0]
            delta = worths[1] - worths[0]
            b = Zr.T @ (wr[:, None] * y)
            phi = _kkt_solve(A, b, delta)
            se: np.ndarray | None
            if n_units == 0:  # nothing sampled: exact if every size is covered
                se = np.full(n, np.inf) if unsampled else np.zeros(n)
            elif n_boot <= 1:
                se = None  # not computed
            else:
                se = _bootstrap_se(Zr, wr, uid[reg], strata, n_units, y[:, 0], delta[0], n_boot, seed)
            return phi, se, {}

        # players inside/outside every regression coalition together cannot be told apart:
        # the solver splits their total equally; report them
        groups: dict[bytes, list[int]] = {}
        for i in range(n):
            groups.setdefault(Zr[:, i].tobytes(), []).append(i)
        info = {
            "indistinguishable": [g for g in groups.values() if len(g) > 1],
            "paired": self.paired,
            "enumerated_sizes": [int(s) for s in st.sizes[~st.sampled]],
            "sampled_per_stratum": st.strata_info,
            "unsampled_sizes": unsampled,
        }
        return Design(coalitions, solve, "kernelshap", "shapley", info)

    def __repr__(self) -> str:
        return f"KernelShap(paired={self.paired}, budget={self.budget})"




class _Strata:
    """KernelSHAP's coalitions by size: the border trick decides which sizes are enumerated, then
    ``sample_paired`` / ``sample_unpaired`` draw the others. Rows accumulate in ``blocks`` (empty
    and full first) with their regression weights and resampling units (-1: not resampled)."""

    def __init__(self, n: int, budget: int):
        self.n = n
        self.sizes = sizes = np.arange(1, n)
        self.mass = mass = 1.0 / (sizes * (n - sizes))  # relative kernel mass per size
        # coalitions per size, capped (any budget is far below 2**62)
        self.counts = counts = np.array([min(_comb(n, int(s)), 2**62) for s in sizes], dtype=np.int64)
        remaining = budget - 2
        sampled = np.ones(n - 1, dtype=bool)
        # border trick: enumerate sizes whose expected share covers them entirely
        while True:
            q = np.where(sampled, mass, 0.0)
            q = q / q.sum() if q.sum() > 0 else q
            full = sampled & (remaining * q >= counts)
            if not full.any():
                break
            remaining -= int(counts[full].sum())
            sampled &= ~full
        self.remaining, self.sampled = remaining, sampled
        self.kernel_total = (n - 1) * mass  # K(s) = C(n,s) k(s)
        self.blocks: list[np.ndarray] = [np.zeros((1, n), dtype=bool), np.ones((1, n), dtype=bool)]
        self.weights: list[np.ndarray] = [np.zeros(1), np.zeros(1)]
        self.unit_ids: list[np.ndarray] = [np.full(1, -1), np.full(1, -1)]
        self.stratum_of_unit: list[int] = []
        self.strata_info: dict[str, int] = {}
        self.n_units = 0
        for j in np.flatnonzero(~sampled):
            s = int(sizes[j])
            z = np.array([[i in c for i in range(n)] for c in combinations(range(n), s)],
                         dtype=bool).reshape(-1, n)
            self._add(z, np.full(len(z), self.kernel_total[j] / counts[j]), np.full(len(z), -1))

    def _add(self, z: np.ndarray, weights: np.ndarray, ids: np.ndarray) -> None:
        self.blocks.append(z)
        self.weights.append(weights)
        self.unit_ids.append(ids)

    def _new_units(self, m: int, label: str) -> None:
        self.n_units += m
        self.stratum_of_unit.extend([len(self.strata_info)] * m)
        self.strata_info[label] = m

    def sample_paired(self, rng: np.random.Generator) -> None:
        """Pair strata: sizes s < n/2 with their complements n - s; the middle size alone."""
        n, mass, counts, K = self.n, self.mass, self.counts, self.kernel_total
        lows = [int(s) for s in self.sizes[self.sampled] if 2 * s <= n]
        share = np.array([mass[s - 1] * (1 if 2 * s == n else 2) for s in lows])
        caps = np.array([counts[s - 1] // 2 if 2 * s == n else counts[s - 1] for s in lows])
        pairs = _largest_remainder(self.remaining // 2, share, caps)
        for s, p in zip(lows, pairs):
            if p == 0:
                continue
            ids = np.concatenate([np.arange(p), np.arange(p)]) + self.n_units
            if 2 * s == n:
                z = _sample_distinct(rng, n, s, 2 * int(p), paired_middle=True)
                self._add(z, np.full(len(z), K[s - 1] / (2 * p)), ids)
            else:
                z = _sample_distinct(rng, n, s, int(p))
                z = np.concatenate([z, ~z])
                self._add(z, np.concatenate([np.full(p, K[s - 1] / p), np.full(p, K[n - s - 1] / p)]), ids)
            self._new_units(int(p), f"{s}|{n - s}")

    def sample_unpaired(self, rng: np.random.Generator) -> None:
        idx = np.flatnonzero(self.sampled)
        alloc = _largest_remainder(self.remaining, self.mass[idx], self.counts[idx])
        for j, m in zip(idx, alloc):
            if m == 0:
                continue
            s = int(self.sizes[j])
            z = _sample_distinct(rng, self.n, s, int(m))
            self._add(z, np.full(m, self.kernel_total[j] / m), np.arange(m) + self.n_units)
            self._new_units(int(m), str(s))


def _bootstrap_se(Zr: np.ndarray, wr: np.ndarray, uid_r: np.ndarray, strata: np.ndarray, n_units: int,
                  y0: np.ndarray, delta0: float, n_boot: int, seed: int) -> np.ndarray:
    """sd of column 0's solution over ``n_boot`` resamples of the sampled units (enumerated rows
    fixed, ``uid_r`` -1)."""
    n = Zr.shape[1]
    brng = np.random.default_rng([seed, 7919])
    # Rao-Wu rescaled bootstrap: m - 1 draws with replacement among a stratum's m
    # units, counts scaled by m / (m - 1), so the bootstrap variance of a stratum
    # mean is not shrunk by (m - 1) / m (which matters with 2-5 units per size)
    unit_counts = np.ones((n_boot, n_units))
    for st in np.unique(strata):
        members = np.flatnonzero(strata == st)
        m = len(members)
        if m > 1:
            draws = brng.multinomial(m - 1, np.full(m, 1.0 / m), n_boot)
            unit_counts[:, members] = draws * (m / (m - 1))
    mult = np.where(uid_r >= 0, unit_counts[:, np.maximum(uid_r, 0)], 1.0)
    wb = wr[None, :] * mult  # (R, k)
    if Zr.shape[0] * n * n <= 20_000_000:  # one GEMM over outer products
        outer = (Zr[:, :, None] * Zr[:, None, :]).reshape(len(Zr), n * n)
        Ab = (wb @ outer).reshape(n_boot, n, n)
    else:
        Ab = np.stack([(Zr.T * wr_b) @ Zr for wr_b in wb])
    bb = ((wb * y0[None, :]) @ Zr)[..., None]  # (R, n, 1)
    db = np.full((n_boot, 1), delta0)
    boot = _kkt_solve(Ab, bb, db)[..., 0]
    return boot.std(axis=0, ddof=1)
