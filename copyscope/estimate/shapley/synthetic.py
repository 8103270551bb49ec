"""Synthetic games with known values, for tests, benchmarks and sanity checks.

Each builder returns a :class:`Game`; the ``*_shapley`` / ``*_banzhaf`` functions give the values
in closed form (or by an independent brute-force definition for small n).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from itertools import combinations
from typing import TypeVar

import numpy as np

from copyscope.common.errors import CopyscopeError
from copyscope.estimate.shapley.game import Game

H = TypeVar("H", bound=Hashable)

__all__ = [
    "additive_game",
    "unanimity_game",
    "glove_game",
    "glove_shapley",
    "airport_game",
    "airport_shapley",
    "weighted_majority_game",
    "brute_force_shapley",
    "game_worth",
    "brute_force_banzhaf",
    "dividend_game",
    "dividend_shapley",
    "dividend_banzhaf",
    "random_dividend_game",
]


def additive_game(weights: Sequence[float], constant: float = 0.0) -> Game:
    """v(S) = constant + sum_{i in S} w_i. Shapley = Banzhaf = LOO = w."""
    w = np.asarray(weights, dtype=float)
    return Game(len(w), lambda z: constant + z.astype(float) @ w)


def unanimity_game(n: int, carriers: Sequence[int]) -> Game:
    """v(S) = 1 if S contains every player of ``carriers`` (T), else 0.
    Shapley: 1/|T| for members of T; Banzhaf: 2**-(|T|-1); LOO: 1; others 0."""
    t = np.zeros(n, dtype=bool)
    t[list(carriers)] = True
    return Game(n, lambda z: (z[:, t].all(axis=1)).astype(float))


def glove_game(n_left: int, n_right: int) -> Game:
    """Players 0..L-1 hold a left glove, L..L+R-1 a right one; v(S) = #pairs S can form."""
    n = n_left + n_right

    def v(z: np.ndarray) -> np.ndarray:
        return np.minimum(z[:, :n_left].sum(axis=1), z[:, n_left:].sum(axis=1)).astype(float)

    return Game(n, v)


def glove_shapley(n_left: int, n_right: int) -> np.ndarray:
    """Closed form for one left glove (L = 1) and R right ones: the left holder gets R/(R+1)
    (its marginal is 1 unless it comes before every right holder), each right holder
    1/(R(R+1)); and for L = R everyone gets 1/2 (symmetry and efficiency)."""
    if n_left == n_right:
        return np.full(2 * n_left, 0.5)
    if n_left == 1:
        r = n_right
        return np.array([r / (r + 1)] + [1.0 / (r * (r + 1))] * r)
    raise CopyscopeError("closed form only for L = 1 or L = R")


def airport_game(costs: Sequence[float]) -> Game:
    """v(S) = max_{i in S} c_i (runway cost), v(empty) = 0."""
    c = np.asarray(costs, dtype=float)

    def v(z: np.ndarray) -> np.ndarray:
        return np.where(z, c[None, :], 0.0).max(axis=1)

    return Game(len(c), v)


def airport_shapley(costs: Sequence[float]) -> np.ndarray:
    """Littlechild & Owen (1973): with costs sorted c_(1) <= ... <= c_(n),
    phi_(i) = sum_{j <= i} (c_(j) - c_(j-1)) / (n - j + 1), c_(0) = 0."""
    c = np.asarray(costs, dtype=float)
    n = len(c)
    order = np.argsort(c, kind="stable")
    sorted_c = c[order]
    increments = np.diff(np.concatenate([[0.0], sorted_c])) / (n - np.arange(n))
    phi_sorted = np.cumsum(increments)
    phi = np.empty(n)
    phi[order] = phi_sorted
    return phi


def weighted_majority_game(quota: float, weights: Sequence[float]) -> Game:
    """v(S) = 1 if sum_{i in S} w_i >= quota else 0."""
    w = np.asarray(weights, dtype=float)
    return Game(len(w), lambda z: (z.astype(float) @ w >= quota).astype(float))


def _scalar_value(game: Game, members: Sequence[int]) -> float:
    z = np.zeros((1, game.n_players), dtype=bool)
    z[0, list(members)] = True
    return float(game.evaluate(z)[0, 0])


def brute_force_shapley(players: Iterable[H], worth: Callable[[frozenset[H]], float]) -> dict[H, float]:
    """Shapley values straight from the formula, in plain Python (small n; the reference the tests,
    the demo's sanity check and the analyses compare against, independent of the estimators):

    ``phi_p = sum_{S not containing p} |S|! (n - |S| - 1)! / n! * (v(S + p) - v(S))``.

    ``players``: any hashable labels (names, indices); ``worth(S)`` the worth of the frozenset S of
    labels. For a :class:`Game`: ``brute_force_shapley(range(n), game_worth(game))``.
    """
    players = list(players)
    n = len(players)
    if n > 16:
        raise CopyscopeError("brute force is for n <= 16")
    phi = {}
    for p in players:
        others = [q for q in players if q != p]
        tot = 0.0
        for k in range(n):
            wk = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
            for s in combinations(others, k):
                s = frozenset(s)
                tot += wk * (worth(s | {p}) - worth(s))
        phi[p] = tot
    return phi


def game_worth(game: Game) -> Callable[[frozenset[int]], float]:
    """``S -> v(S)`` (column 0) for a frozenset of player indices, as brute_force_shapley takes it."""
    return lambda members: _scalar_value(game, sorted(members))


def brute_force_banzhaf(game: Game) -> np.ndarray:
    """The definition: mean marginal contribution over all coalitions without i."""
    n = game.n_players
    beta = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        total = 0.0
        for k in range(n):
            for s in combinations(others, k):
                total += _scalar_value(game, list(s) + [i]) - _scalar_value(game, s)
        beta[i] = total / 2 ** (n - 1)
    return beta


def dividend_game(n: int, dividends: Mapping[tuple[int, ...], float], constant: float = 0.0) -> Game:
    """v(S) = constant + sum of Harsanyi dividends d_T over T subset of S."""
    items = [(np.array(sorted(t), dtype=int), float(d)) for t, d in dividends.items() if len(t)]

    def v(z: np.ndarray) -> np.ndarray:
        out = np.full(len(z), constant, dtype=float)
        for t, d in items:
            out += d * z[:, t].all(axis=1)
        return out

    return Game(n, v)


def dividend_shapley(n: int, dividends: Mapping[tuple[int, ...], float]) -> np.ndarray:
    """Shapley = sum over T containing i of d_T / |T|."""
    phi = np.zeros(n)
    for t, d in dividends.items():
        if len(t):
            phi[list(t)] += d / len(t)
    return phi


def dividend_banzhaf(n: int, dividends: Mapping[tuple[int, ...], float]) -> np.ndarray:
    """Banzhaf = sum over T containing i of d_T / 2**(|T| - 1)."""
    beta = np.zeros(n)
    for t, d in dividends.items():
        if len(t):
            beta[list(t)] += d / 2 ** (len(t) - 1)
    return beta


def random_dividend_game(n: int, seed: int = 0, n_pairs: int | None = None,
                         n_triples: int | None = None, interaction_scale: float = 0.5,
                         ) -> tuple[Game, dict[tuple[int, ...], float], np.ndarray]:
    """Main effects N(0, 1) plus random pair and triple dividends N(0, scale): a game with
    interactions whose Shapley values are known exactly. Returns (game, dividends, shapley)."""
    rng = np.random.default_rng(seed)
    n_pairs = n if n_pairs is None else n_pairs
    n_triples = max(1, n // 2) if n_triples is None else n_triples
    div: dict[tuple[int, ...], float] = {(i,): float(rng.normal()) for i in range(n)}
    for size, count in ((2, n_pairs), (3, n_triples)):
        if n < size:
            continue
        count = min(count, math.comb(n, size))
        while sum(len(t) == size for t in div) < count:
            t = tuple(sorted(rng.choice(n, size=size, replace=False).tolist()))
            div.setdefault(t, float(rng.normal(scale=interaction_scale)))
    return dividend_game(n, div), div, dividend_shapley(n, div)
