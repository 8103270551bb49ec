"""The cooperative game: a memoised worth function over boolean coalition matrices.

The game never knows how it is estimated, and never knows about diffusion. A worth function
takes a boolean matrix of coalitions, shape ``(k, n)`` (row = coalition, column = player), and
returns either a vector ``(k,)`` or a matrix ``(k, 1 + B)``: column 0 is the worth computed on all
seeds, columns ``1..B`` the worth on bootstrap resample ``b`` (the same resampled seeds for every
coalition). Estimators work column-wise on that matrix, so one set of sampled coalitions yields
the point estimate and every bootstrap replicate.

Cost is the number of *distinct* coalitions evaluated: :class:`Game` memoises every worth it has
seen and sends only the coalitions it has not seen before, in one batch call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from copyscope.common.errors import CopyscopeError

__all__ = ["Game", "as_coalition_matrix"]


def _check_names(n_players: int, player_names: Sequence[str] | None) -> list[str]:
    if player_names is None:
        return [f"player_{i}" for i in range(n_players)]
    names = [str(x) for x in player_names]
    if len(names) != n_players:
        raise CopyscopeError(
            f"player_names has {len(names)} entries but the game has {n_players} players"
        )
    if len(set(names)) != len(names):
        dupes = sorted({x for x in names if names.count(x) > 1})
        raise CopyscopeError(f"player_names must be unique; repeated: {', '.join(dupes)}")
    return names


def as_coalition_matrix(coalitions: ArrayLike, n_players: int) -> np.ndarray:
    """Return ``coalitions`` as a boolean ``(k, n_players)`` matrix, or raise CopyscopeError.

    A single coalition (1-D of length ``n_players``) becomes one row. Entries must be booleans or
    0/1 integers.
    """
    arr = np.asarray(coalitions)
    if arr.ndim == 1 and arr.shape[0] == n_players:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_players:
        raise CopyscopeError(
            f"coalitions must be a boolean matrix of shape (k, {n_players}); got shape {arr.shape}"
        )
    if arr.dtype == bool:
        return arr
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise CopyscopeError("coalitions must contain only booleans or 0/1")
    return arr.astype(bool)


class Game:
    """A memoised cooperative game.

    Args:
        n_players: number of players ``n`` (>= 1).
        value_function: takes a bool matrix ``(k, n)`` and returns ``(k,)`` or ``(k, 1 + B)``
            worths (higher = closer to the reference works). It is called at most once per
            :meth:`__call__`, with only the coalitions not seen before, each once.
        player_names: one unique name per player (default ``player_0`` ...).

    Attributes:
        n_evaluated: distinct coalitions evaluated so far (the generation cost).
        n_calls: how many times ``value_function`` was called.
    """

    def __init__(
        self,
        n_players: int,
        value_function: Callable[[np.ndarray], np.ndarray],
        player_names: list[str] | None = None,
    ):
        if isinstance(n_players, bool) or not isinstance(n_players, (int, np.integer)):
            raise CopyscopeError(f"n_players must be an integer, got {n_players!r}")
        if n_players < 1:
            raise CopyscopeError(f"a game needs at least one player, got n_players={n_players}")
        if not callable(value_function):
            raise CopyscopeError("value_function must be callable")
        self.n_players = int(n_players)
        self.player_names = _check_names(self.n_players, player_names)
        self._value_function = value_function
        self._table: dict[bytes, np.ndarray] = {}
        self._width: int | None = None  # 1 + B, fixed by the first call
        self._vector_output: bool | None = None  # value_function returned (k,) vectors
        self.n_calls = 0

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_table(
        cls,
        table: Mapping[tuple[bool, ...], object],
        player_names: list[str] | None = None,
        n_players: int | None = None,
    ) -> Game:
        """A game over precomputed worths, e.g. from a plan run ahead of generation.

        ``table`` maps a coalition (tuple of ``n`` bools) to a worth (scalar or ``(1 + B,)``).
        Asking for a coalition that is not in the table raises CopyscopeError naming it.
        """
        if not table:
            raise CopyscopeError("the table of coalition values is empty")
        keys = [tuple(bool(x) for x in k) for k in table]
        n = n_players if n_players is not None else len(keys[0])
        if any(len(k) != n for k in keys):
            raise CopyscopeError(f"every coalition in the table must have {n} entries")
        rows = [np.asarray(v, dtype=float) for v in table.values()]
        shapes = {r.shape for r in rows}
        if len(shapes) != 1 or len(next(iter(shapes))) > 1:
            raise CopyscopeError(
                "table values must all be scalars or all 1-D arrays of the same length (1 + B)"
            )
        lookup = {np.asarray(k, dtype=bool).tobytes(): r for k, r in zip(keys, rows)}
        names = _check_names(n, player_names)

        def value_function(coalitions: np.ndarray) -> np.ndarray:
            out = []
            for row in coalitions:
                key = row.tobytes()
                if key not in lookup:
                    members = [names[i] for i in np.flatnonzero(row)]
                    raise CopyscopeError(
                        "coalition {" + ", ".join(members) + "} has no stored value "
                        "(it was not in the plan)"
                    )
                out.append(lookup[key])
            return np.stack(out)

        return cls(n, value_function, names)

    # ------------------------------------------------------------------ evaluation
    @property
    def value_function(self) -> Callable[[np.ndarray], np.ndarray]:
        """The wrapped, un-memoised worth function."""
        return self._value_function

    @property
    def n_evaluated(self) -> int:
        """Distinct coalitions evaluated so far."""
        return len(self._table)

    @property
    def n_replicates(self) -> int | None:
        """B, the number of bootstrap replicate columns (0 for plain vectors); None before any call."""
        return None if self._width is None else self._width - 1

    def _normalise_output(self, out: object, k: int, batch: np.ndarray) -> np.ndarray:
        arr = np.asarray(out, dtype=float)
        if arr.ndim == 1:
            if arr.shape[0] != k:
                raise CopyscopeError(
                    f"value_function returned {arr.shape[0]} values for {k} coalitions"
                )
            vector = True
            arr = arr[:, None]
        elif arr.ndim == 2:
            if arr.shape[0] != k:
                raise CopyscopeError(
                    f"value_function returned {arr.shape[0]} rows for {k} coalitions"
                )
            if arr.shape[1] < 1:
                raise CopyscopeError("value_function returned a matrix with no columns")
            vector = False
        else:
            raise CopyscopeError(
                f"value_function must return shape (k,) or (k, 1 + B); got {arr.shape}"
            )
        if self._width is None:
            self._width, self._vector_output = arr.shape[1], vector
        elif arr.shape[1] != self._width:
            raise CopyscopeError(
                f"value_function returned {arr.shape[1]} columns, earlier calls returned "
                f"{self._width} (1 + B must not change)"
            )
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            row = batch[int(np.flatnonzero(bad)[0])]
            members = [self.player_names[i] for i in np.flatnonzero(row)]
            raise CopyscopeError(
                "value_function returned a non-finite worth for coalition {"
                + ", ".join(members)
                + "}"
            )
        return arr

    def evaluate(self, coalitions: ArrayLike) -> np.ndarray:
        """Worths of ``coalitions`` as a ``(k, 1 + B)`` matrix (B = 0 for plain vectors).

        Only coalitions not seen before are sent to ``value_function``, in one batch call,
        each once. Rows come back in input order (duplicates included).
        """
        z = as_coalition_matrix(coalitions, self.n_players)
        keys = [row.tobytes() for row in z]
        new: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self._table and key not in new:
                new[key] = i
        if new:
            batch = z[list(new.values())]
            out = self._value_function(batch.copy())
            self.n_calls += 1
            arr = self._normalise_output(out, len(batch), batch)
            for key, row in zip(new, arr):
                self._table[key] = row.copy()
        if not keys:
            width = self._width if self._width is not None else 1
            return np.zeros((0, width))
        return np.stack([self._table[key] for key in keys])

    def __call__(self, coalitions: ArrayLike) -> np.ndarray:
        """Memoised worths in input order: ``(k,)`` if the value function returns vectors,
        ``(k, 1 + B)`` otherwise."""
        out = self.evaluate(coalitions)
        if self._vector_output:
            return out[:, 0]
        return out

    def values_table(self) -> dict[tuple[bool, ...], np.ndarray]:
        """Every coalition evaluated so far -> its ``(1 + B,)`` worths (a copy)."""
        n = self.n_players
        return {
            tuple(bool(x) for x in np.frombuffer(key, dtype=bool, count=n)): row.copy()
            for key, row in self._table.items()
        }

    def __repr__(self) -> str:
        return (
            f"Game(n_players={self.n_players}, n_evaluated={self.n_evaluated}, "
            f"n_replicates={self.n_replicates})"
        )
