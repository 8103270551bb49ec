"""Coalitions as the reports write them: one key format and one order for every file.

A coalition is a tuple of booleans over a game's players; its key joins the members' names with
'+' in player order ('' is the empty coalition). Reports list coalitions by size, then
colexicographically (the coalition without the later players first), e.g. for players a, b, c:
'', 'a', 'b', 'c', 'a+b', 'a+c', 'b+c', 'a+b+c'.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ..common.errors import CopyscopeError

Coalition = tuple[bool, ...]


def coalition_key(names: Sequence[str], members: Sequence[bool]) -> str:
    """Members' names joined by '+', in player order; '' for the empty coalition."""
    return "+".join(n for n, m in zip(names, members) if m)


def members_of(key: str, names: Sequence[str]) -> Coalition:
    """The coalition a key names (its inverse); an unknown player name is a CopyscopeError."""
    parts = set(key.split("+")) if key else set()
    unknown = parts - set(names)
    if unknown:
        raise CopyscopeError(f"unknown player(s) {', '.join(sorted(unknown))} in coalition {key!r}")
    return tuple(n in parts for n in names)


def gray_rank(members: Sequence[bool]) -> int:
    """Position of a coalition in reflected Gray-code order (inverse Gray code of its bitmask):
    generation order, one player switched between neighbours."""
    g = sum(1 << i for i, m in enumerate(members) if m)
    n = 0
    while g:
        n ^= g
        g >>= 1
    return n


def report_order(members: Sequence[bool]) -> tuple:
    """Sort key of a coalition in reports: size first, then colexicographic."""
    return (sum(bool(m) for m in members), tuple(bool(m) for m in members)[::-1])


def sorted_coalitions(coalitions: Iterable[Coalition]) -> list[Coalition]:
    return sorted(coalitions, key=report_order)


def sorted_keys(keys: Iterable[str], names: Sequence[str]) -> list[str]:
    """Coalition keys in report order; keys naming players not in ``names`` (a hand-edited
    report) go last, in their given order."""
    keys = list(keys)

    def order(ik):
        i, k = ik
        try:
            return (0, report_order(members_of(k, names)), i)
        except CopyscopeError:
            return (1, (), i)

    return [k for _, k in sorted(enumerate(keys), key=order)]
