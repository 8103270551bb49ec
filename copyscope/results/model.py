"""The audit result, typed: :class:`AuditReport` and its parts, each one JSON object of report.json.

report.json is ``AuditReport.to_json()``; reading it is ``AuditReport.from_json`` (:func:`read_report` for a
file). Every key the views or a consumer index is declared and checked on the way in; the many optional
sections (controls, per_work, vs_placebo, adaptive, ...) are declared where a consumer reads them and kept
unchanged otherwise (copyscope.results.records), so a read and a write give back the same report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .records import (
    BOOL,
    INT,
    JSON,
    MISSING,
    NUMBER,
    NUMBER_OR_NULL,
    OBJECT,
    TEXT,
    TEXT_OR_NULL,
    Missing,
    Record,
    ReportFormatError,
    dict_of,
    key_path,
    list_of,
    nullable,
    optional,
    record,
    required,
)

SCHEMA_VERSION = "copyscope-report/2"
# what this copyscope reads: its own version, and files of older copyscopes, which have no schema_version
READABLE_VERSIONS = (SCHEMA_VERSION,)
EXPECTED = "expected the report.json an audit wrote"

PAIR = nullable(list_of(NUMBER_OR_NULL, length=2))  # an interval [low, high], or null
SERIES = nullable(dict_of(list_of(NUMBER_OR_NULL)))  # name -> one value per seed, or null


@dataclass(kw_only=True)
class TestResult(Record):
    """One test of a Shapley entry (``t``, ``bounded``): its interval, p-value and Holm-corrected p-value."""

    __test__ = False  # a result, not a pytest test class

    ci95: list[float | None] | None = required(PAIR)
    p_value: float | None = required(NUMBER_OR_NULL)
    p_holm: float | None = required(NUMBER_OR_NULL)


@dataclass(kw_only=True)
class ShapleyEntry(Record):
    """One player's attribution under one metric (copyscope.report.estimate_section)."""

    value: float | None = required(NUMBER_OR_NULL)
    ci95: list[float | None] | None = required(PAIR)  # at the report's confidence level
    p_value: float | None = required(NUMBER_OR_NULL)  # one-sided, of value > 0, under the claim's rule
    p_holm: float | None = required(NUMBER_OR_NULL)  # Holm-corrected across players
    claim: str | Missing = optional(TEXT)  # which test carried the claim
    se: float | None | Missing = optional(NUMBER_OR_NULL)  # jackknife estimates
    df: int | None | Missing = optional(nullable(INT))
    t: TestResult | Missing = optional(record(TestResult))
    bounded: TestResult | Missing = optional(record(TestResult))  # the distribution-free test, where it applies
    placebo: bool | Missing = optional(BOOL)  # the placebo player (controls.placebo)
    beats_placebo: bool | Missing = optional(BOOL)
    sequential: bool | Missing = optional(BOOL)  # adaptive seeds: the stopping look's interval and test


@dataclass(kw_only=True)
class Share(Record):
    """A player's share of the copying, in percent, and its interval."""

    share: float | None = required(NUMBER_OR_NULL)
    low: float | None | Missing = optional(NUMBER_OR_NULL)
    high: float | None | Missing = optional(NUMBER_OR_NULL)


class _Attribution:
    """What the averaged game's metric sections and each work's share: the players' values, per seed."""

    shapley: dict[str, ShapleyEntry]
    per_seed: dict[str, list[float | None]] | None | Missing

    def values(self, players: list[str]) -> np.ndarray:
        """The players' Shapley values (NaN where there is none)."""
        return np.array([np.nan if (v := self.shapley[p].value) is None else v for p in players], dtype=float)

    def value_map(self) -> dict[str, float | None]:
        return {p: e.value for p, e in self.shapley.items()}

    def has_per_seed(self, players: list[str]) -> bool:
        """Every player has per-seed pseudo-values, all finite numbers (jackknife estimates)."""
        per_seed = self.per_seed
        return bool(per_seed) and all(p in per_seed and all(v is not None for v in per_seed[p]) for p in players)

    def per_seed_matrix(self, players: list[str]) -> np.ndarray:
        """(players, seeds) per-seed pseudo-values (check :meth:`has_per_seed` first)."""
        if not self.per_seed:
            raise ValueError("no per-seed values (bootstrap intervals, or a report of an older version)")
        return np.array([self.per_seed[p] for p in players], dtype=float)

    def check_players(self, players: list[str], where: str) -> None:
        lacking = [p for p in players if p not in self.shapley]
        if lacking:
            raise ReportFormatError(f"has no entry for player {lacking[0]!r}", at=key_path(where, "shapley"))


@dataclass(kw_only=True)
class Interactions(Record):
    """Pairwise interaction indices of a fully evaluated game with intervals over seeds (InteractionResult.to_json)."""

    index: str = required(TEXT)  # "shapley" (Grabisch & Roubens) or "banzhaf"
    players: list[str] = required(list_of(TEXT))
    pairs: list[list[int]] = required(list_of(list_of(INT, length=2)))  # player indices, i < j
    values: list[float | None] = required(list_of(NUMBER_OR_NULL))
    standard_error: list[float | None] = required(list_of(NUMBER_OR_NULL))
    ci: list[list[float | None] | None] = required(list_of(PAIR))
    p_values: list[float | None] = required(list_of(NUMBER_OR_NULL))  # two-sided
    p_adjusted: list[float | None] = required(list_of(NUMBER_OR_NULL))  # Holm across the pairs
    level: float = required(NUMBER)
    alternative: str = required(TEXT)
    p_adjust: str = required(TEXT)
    n_seeds: int = required(INT)


@dataclass(kw_only=True)
class MetricResult(_Attribution, Record):
    """One metric's game (or the fusion): coalition worths, attribution, its uncertainty and its checks."""

    orientation: str | Missing = optional(TEXT)
    kind: str | Missing = optional(TEXT)  # per_image, set or fusion
    raw_orientation: str | Missing = optional(TEXT)
    description: str | Missing = optional(TEXT)
    coalitions: dict[str, float | None] = required(dict_of(NUMBER_OR_NULL))  # coalition key -> worth (all seeds)
    shapley: dict[str, ShapleyEntry] = required(dict_of(record(ShapleyEntry)))
    seed_bound: float | None | Missing = optional(NUMBER_OR_NULL)
    efficiency_gap: float | None | Missing = optional(NUMBER_OR_NULL)
    estimator: dict[str, Any] | Missing = optional(OBJECT)
    split_percent: dict[str, Share] | None | Missing = optional(nullable(dict_of(record(Share))))
    per_seed: dict[str, list[float | None]] | None | Missing = optional(SERIES)
    seed_worths: dict[str, list[float | None]] | None | Missing = optional(SERIES)
    loo: dict[str, float | None] | None | Missing = optional(nullable(dict_of(NUMBER_OR_NULL)))
    banzhaf: dict[str, float | None] | None | Missing = optional(nullable(dict_of(NUMBER_OR_NULL)))
    interactions: Interactions | None | Missing = optional(nullable(record(Interactions)))
    sample_size: dict[str, Any] | Missing = optional(OBJECT)  # set metrics: per coalition
    raw_values: dict[str, float | None] | Missing = optional(dict_of(NUMBER_OR_NULL))
    vs_placebo: Any = optional(JSON)  # every player against the placebo, or null
    vs_own_placebo: Any = optional(JSON)  # controls.placebo: swap: every LoRA against its own placebo, or null
    inference: str | Missing = optional(TEXT)  # adaptive seeds: where the headline's sequential inference is


@dataclass(kw_only=True)
class WorkMetricResult(_Attribution, Record):
    """One metric's game on one work's prompts and references (``per_work``), or on one prompt (``per_prompt``)."""

    shapley: dict[str, ShapleyEntry] = required(dict_of(record(ShapleyEntry)))
    split_percent: dict[str, Share] | None | Missing = optional(nullable(dict_of(record(Share))))
    per_seed: dict[str, list[float | None]] | None | Missing = optional(SERIES)
    inference: str | Missing = optional(TEXT)


@dataclass(kw_only=True)
class GameReport(Record):
    """One game (one base and its players): the images, every metric's result, the headline, per work."""

    base: str = required(TEXT)
    players: list[str] = required(list_of(TEXT))
    player_kinds: dict[str, str] | Missing = optional(dict_of(TEXT))
    base_as_player: bool | Missing = optional(BOOL)
    weights: dict[str, Any] | Missing = optional(OBJECT)  # the engine's model identities
    images: dict[str, list[str]] | Missing = optional(dict_of(list_of(TEXT)))  # coalition key -> image keys
    flagged_images: dict[str, Any] | Missing = optional(OBJECT)
    skipped_metrics: dict[str, str] | Missing = optional(dict_of(TEXT))
    metrics: dict[str, MetricResult] = required(dict_of(record(MetricResult)))
    headline: str | None | Missing = optional(TEXT_OR_NULL)  # the metric that carries significance claims
    per_work: dict[str, dict[str, WorkMetricResult]] | Missing = optional(dict_of(dict_of(record(WorkMetricResult))))
    # several prompts: each prompt's own game (its images against the references its worth uses)
    per_prompt: dict[str, dict[str, WorkMetricResult]] | Missing = optional(dict_of(dict_of(record(WorkMetricResult))))
    controls: dict[str, Any] | Missing = optional(OBJECT)  # positive controls and the headline rule's choice
    # controls.placebo: swap: lora -> context (alone, full) -> the image keys with its placebo in its place
    placebo_swap_images: dict[str, dict[str, list[str]]] | Missing = optional(dict_of(dict_of(list_of(TEXT))))
    placebo_swap_change: Any = optional(JSON)  # lora -> context -> {lora, placebo}: mean absolute pixel change

    def check(self, where: str) -> None:
        for name, sec in self.metrics.items():
            sec.check_players(self.players, key_path(key_path(where, "metrics"), name))
        for part in ("per_work", "per_prompt"):
            for key, metrics in (getattr(self, part) or {}).items():
                for name, sec in metrics.items():
                    sec.check_players(self.players, key_path(key_path(key_path(where, part), key), name))

    def image_count(self) -> int:
        return sum(len(keys) for keys in (self.images or {}).values())


@dataclass(kw_only=True)
class Generation(Record):
    """Images generated and found in the cache, and the time and adapter switches it took."""

    generated: int | Missing = optional(INT)
    cached: int | Missing = optional(INT)
    seconds: float | Missing = optional(NUMBER)
    adapter_switches: int | Missing = optional(INT)


@dataclass(kw_only=True)
class Settings(Record):
    """The settings the numbers depend on (an older report may lack the later ones)."""

    prompts: Any = optional(JSON)
    seeds: list[int] | Missing = optional(list_of(INT))
    steps: Any = optional(JSON)
    guidance: Any = optional(JSON)
    resolution: Any = optional(JSON)
    aggregate: Any = optional(JSON)
    worth: str | Missing = optional(TEXT)
    background: Any = optional(JSON)
    placebo: Any = optional(JSON)
    bootstrap: Any = optional(JSON)
    confidence: float | Missing = optional(NUMBER)
    intervals: str | Missing = optional(TEXT)
    test: str | Missing = optional(TEXT)
    significance: str | Missing = optional(TEXT)
    n_seeds: int | Missing = optional(INT)
    min_seeds: int | Missing = optional(INT)
    seed_warning: str | None | Missing = optional(TEXT_OR_NULL)
    power_note: str | None | Missing = optional(TEXT_OR_NULL)


@dataclass(kw_only=True)
class AuditReport(Record):
    """report.json: what was audited, how, and every game's result."""

    schema_version: str | Missing = optional(TEXT)  # absent in reports of copyscope before the typed report
    copyscope_version: str | Missing = optional(TEXT)
    config_sha256: str | Missing = optional(TEXT)
    zoo_name: str | None | Missing = optional(TEXT_OR_NULL)
    generation: Generation | Missing = optional(record(Generation))
    settings: Settings | Missing = optional(record(Settings))
    works: dict[str, list[str]] | Missing = optional(dict_of(list_of(TEXT)))  # work -> its reference files
    conditioning: Any = optional(JSON)  # computed ControlNet maps
    unavailable_metrics: dict[str, str] | Missing = optional(dict_of(TEXT))
    games: list[GameReport] = required(list_of(record(GameReport)))
    provenance: dict[str, Any] | Missing = optional(OBJECT)
    output_dir: str | Missing = optional(TEXT)
    cache_dir: str | Missing = optional(TEXT)  # the image cache the HTML view reads images from
    adaptive: Any = optional(JSON)  # adaptive seeds: the rounds, the looks, why they stopped

    def check(self, where: str) -> None:
        version = self.schema_version
        if version is not MISSING and version not in READABLE_VERSIONS:
            raise ReportFormatError(
                f"{version!r} is not a report format this copyscope reads ({', '.join(READABLE_VERSIONS)}, or none: "
                "older reports); rerun `copyscope audit` with this version", at=key_path(where, "schema_version"))

    def game(self, base: str) -> GameReport:
        return next(g for g in self.games if g.base == base)


def read_report(out_dir: Path) -> AuditReport:
    """The report.json of an audit's output folder, read and checked: every fault is one line naming the file
    and, for a report that is not one an audit wrote, the key."""
    from ..common.errors import CopyscopeError
    from ..common.inputs import MAX_REPORT_BYTES, file_kind, read_json_object

    path = Path(out_dir) / "report.json"
    if file_kind(path) == "not found":
        raise CopyscopeError("no report.json here (run `copyscope audit` first)", where=str(out_dir))
    data = read_json_object(path, MAX_REPORT_BYTES, "report.json", EXPECTED)
    try:
        return AuditReport.from_json(data)
    except ReportFormatError as exc:
        raise CopyscopeError(f"{' '.join(str(exc).split())}; {EXPECTED}", where=str(path)) from None
