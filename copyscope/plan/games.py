"""Stage 2 — plan: turn a zoo into games, players, coalitions and work items.

Each base checkpoint is its own game. Its players are the add-ons (one kind after another in the
order of ``copyscope.players.KINDS``: ControlNets, LoRAs, prompt fragments, IP-Adapters, textual
inversions; zoo order within a kind), plus the base itself when ``estimator.base: player``. A work item is one (prompt, seed)
pair; every coalition generates the same work items (common random numbers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .coalitions import coalition_key, gray_rank
from ..conditioning import map_count
from ..config import BaseSpec, Zoo, render_prompt

PlayerKind = str  # "base" or a registered kind of copyscope.players (controlnet, lora, prompt, ...)


@dataclass(frozen=True)
class Player:
    name: str
    kind: PlayerKind


@dataclass(frozen=True)
class WorkItem:
    prompt: str  # prompt name
    text: str
    negative: str
    work: str | None
    seed: int
    control: int = 0  # which computed conditioning map (ControlNets with `reference: each`)


@dataclass
class GamePlan:
    base: BaseSpec
    players: list[Player]
    base_as_player: bool = False
    fragments: dict[str, str] = field(default_factory=dict)  # prompt player / textual inversion -> its text
    family: str = "sd"  # the base's pipeline family (copyscope.families)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.players]

    @property
    def n_players(self) -> int:
        return len(self.players)

    def coalition_key(self, members: tuple[bool, ...]) -> str:
        """Players joined by '+' in the order of ``players``; '' is the empty coalition."""
        return coalition_key(self.names, members)

    def all_coalitions(self) -> list[tuple[bool, ...]]:
        """Every coalition, in reflected Gray-code order: neighbours differ by one player, so
        walking the list switches one adapter (or the ControlNet) at a time."""
        n = self.n_players
        return [tuple(bool((g >> i) & 1) for i in range(n)) for g in (k ^ (k >> 1) for k in range(2**n))]

    def prompt_text(self, members: tuple[bool, ...], item: "WorkItem") -> str:
        """The prompt a coalition generates from: the item's template with its members' fragments."""
        if not self.fragments:
            return item.text
        active = {p.name for p, m in zip(self.players, members) if m and p.name in self.fragments}
        return render_prompt(item.text, self.fragments, active)

    def active_by_kind(self, members: tuple[bool, ...]) -> dict[str, list[str]]:
        """Active add-on player names per kind, in player order (the base is not an add-on)."""
        out: dict[str, list[str]] = {}
        for p, m in zip(self.players, members):
            if m and p.kind != "base":
                out.setdefault(p.kind, []).append(p.name)
        return out

    def base_active(self, members: tuple[bool, ...]) -> bool:
        """Whether the coalition runs the base (always, unless the base is a player and not a member)."""
        return (not self.base_as_player) or any(m and p.kind == "base" for p, m in zip(self.players, members))


@dataclass
class Plan:
    zoo_name: str
    games: list[GamePlan]
    items: list[WorkItem]
    seeds: list[int]
    estimator: dict = field(default_factory=dict)

    @property
    def n_players(self) -> int:
        """Players of the largest game (every game has the same players: :func:`player_count`)."""
        return max(g.n_players for g in self.games)

    @property
    def images_per_coalition(self) -> int:
        return len(self.items)

    def to_dict(self, coalitions: list[list[tuple[bool, ...]]]) -> dict:
        """plan.json. ``coalitions``: per game, the coalitions the audit evaluates, in generation
        order (:func:`planned_coalitions`); listed by key when there are at most ``MAX_LISTED``."""
        return {
            "zoo": self.zoo_name,
            "seeds": self.seeds,
            "items": [asdict(i) for i in self.items],
            "estimator": self.estimator,
            "games": [
                {
                    "base": g.base.name,
                    "family": g.family,
                    "players": [asdict(p) for p in g.players],
                    "coalitions": [g.coalition_key(c) for c in cs] if len(cs) <= MAX_LISTED else None,
                    "n_coalitions": len(cs),
                }
                for g, cs in zip(self.games, coalitions)
            ],
        }


def addon_players(zoo: Zoo) -> list[Player]:
    """Every add-on player of the zoo: the registered kinds in order, zoo order within a kind."""
    from ..players import KINDS

    return [Player(spec.name, kind) for kind, cls in KINDS.items() for spec in cls.specs(zoo)]


def player_count(zoo: Zoo) -> int:
    """Players of each game: every add-on of every kind, plus the base with ``estimator.base: player``."""
    return len(addon_players(zoo)) + (1 if zoo.spec.estimator.base == "player" else 0)
MAX_LISTED = 2**12  # plan.json lists the coalitions' keys up to this many


def planned_coalitions(n_players: int, estimator, budget: int | None, seed: int) -> list[tuple[bool, ...]]:
    """The coalitions an audit evaluates for a game of ``n_players``, in generation (Gray-code) order: exactly the
    estimator's own ``plan`` (its design depends on the number of players, the budget and the seed,
    never on worths). Leave-one-out, Banzhaf and fusion reuse these and add none; the per-work games
    use the same estimator and seed. plan.json, ``copyscope plan`` and the distributed split all
    read this list."""
    rows = estimator.plan(n_players, budget, seed)
    return sorted({tuple(bool(x) for x in r) for r in rows}, key=gray_rank)


def make_plan(zoo: Zoo) -> Plan:
    s = zoo.spec
    base_as_player = s.estimator.base == "player"
    from ..players import KINDS

    addons = addon_players(zoo)
    # what joins the prompt when a player is active (prompt fragments, textual-inversion tokens, ...)
    fragments = {spec.name: text for cls in KINDS.values() for spec in cls.specs(zoo)
                 if (text := cls.prompt_fragment(spec)) is not None}
    from ..families import base_family

    games = []
    for i, base in enumerate(s.bases):
        players = ([Player(base.name, "base")] if base_as_player else []) + addons
        if base_as_player and base.name in {p.name for p in addons}:
            raise zoo.fail(f"base name {base.name!r} is also a player name", "bases")
        games.append(GamePlan(base=base, players=players, base_as_player=base_as_player, fragments=fragments,
                              family=base_family(zoo, i).name))
    seeds = s.generation.seed_list
    n_maps = map_count(zoo)  # one map per reference image with `reference: each`: prompts x maps x seeds
    items = [WorkItem(p.name, p.text, p.negative, p.work, seed, k) for p in s.prompts for k in range(n_maps) for seed in seeds]
    return Plan(zoo_name=s.name, games=games, items=items, seeds=seeds, estimator=s.estimator.model_dump())
