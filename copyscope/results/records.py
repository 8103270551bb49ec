"""JSON records: dataclasses that read themselves from a JSON object and write themselves back, unchanged.

A record's fields are declared with :func:`required` or :func:`optional` and a :class:`Codec` (how one JSON value
is checked and typed, and written back). ``from_json`` checks every declared key it finds (one line naming the
key's path on the first fault: ``games[0].metrics.phash.shapley.lora0.value: expected a number or null, got
text``), keeps an absent optional key as :data:`MISSING` (so it stays absent when written), and keeps every key
it does not declare in ``extra``, so a section written by a newer or an extended copyscope survives a read and a
write: ``to_json(from_json(d)) == d``. Free-form JSON values are copied on the way in and out, never shared.
"""

from __future__ import annotations

import copy
import re
from dataclasses import MISSING as _NO_DEFAULT
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Final, TypeVar

from ..common.errors import CopyscopeError

__all__ = ["MISSING", "Missing", "Codec", "Record", "ReportFormatError", "required", "optional"]


class Missing:
    """The type of :data:`MISSING`: an optional key the JSON object does not hold (falsy)."""

    _instance: ClassVar[Missing | None] = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "MISSING"

    def __deepcopy__(self, memo: dict) -> Missing:
        return self


MISSING: Final = Missing()


class ReportFormatError(CopyscopeError):
    """A JSON object that is not the record it should be: one line naming the key (``at``: its path)."""

    def __init__(self, message: str, at: str = "", got: str | None = None):
        self.at = at
        self.got = got  # what the value at ``at`` is, when it is not of the expected kind (not something inside it)
        super().__init__(f"{at}: {message}" if at else message)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,60}")


def key_path(where: str, key: str | int) -> str:
    """``games[0]`` + ``metrics`` -> ``games[0].metrics``; odd keys (names with dots, markup) quoted."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{where}.{key}" if where else key
    shown = key if len(key) <= 60 else key[:57] + "..."
    return f"{where}[{shown!r}]"


def _fail(where: str, message: str) -> ReportFormatError:
    return ReportFormatError(message, at=where)


def _expected(where: str, noun: str, value: Any, detail: str = "") -> ReportFormatError:
    got = f"{_kind(value)}{detail}"
    return ReportFormatError(f"expected {noun}, got {got}", at=where, got=got)


@dataclass(frozen=True)
class Codec:
    """How one JSON value is checked and typed (``parse(value, where)``) and written back (``dump``)."""

    noun: str  # "a number", "a list", ... as in "expected a number"
    parse: Callable[[Any, str], Any]
    dump: Callable[[Any], Any]

    @property
    def bare(self) -> str:
        """The noun without its article: "has no 'games' list"."""
        return self.noun.split(" ", 1)[1] if self.noun.startswith(("a ", "an ")) else self.noun


def _same(value: Any) -> Any:
    return value


def _scalar(noun: str, ok: Callable[[Any], bool]) -> Codec:
    def parse(value: Any, where: str) -> Any:
        if not ok(value):
            raise _expected(where, noun, value)
        return value

    return Codec(noun, parse, _same)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


NUMBER = _scalar("a number", _is_number)
INT = _scalar("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = _scalar("text", lambda v: isinstance(v, str))
BOOL = _scalar("true or false", lambda v: isinstance(v, bool))
JSON = Codec("a JSON value", lambda v, where: copy.deepcopy(v), copy.deepcopy)  # free-form: kept as it is


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _expected(where, "an object", value)
    return copy.deepcopy(value)


OBJECT = Codec("an object", _object, copy.deepcopy)  # a free-form JSON object


def nullable(c: Codec) -> Codec:
    def parse(value: Any, where: str) -> Any:
        if value is None:
            return None
        try:
            return c.parse(value, where)
        except ReportFormatError as exc:
            if exc.got is not None and exc.at == where:  # this value is not one, rather than something inside it
                raise ReportFormatError(f"expected {c.noun} or null, got {exc.got}", at=where, got=exc.got) from None
            raise

    return Codec(f"{c.noun} or null", parse, lambda v: None if v is None else c.dump(v))


NUMBER_OR_NULL = nullable(NUMBER)
TEXT_OR_NULL = nullable(TEXT)


def list_of(c: Codec, length: int | None = None) -> Codec:
    noun = f"a list of {length} values" if length else "a list"

    def parse(value: Any, where: str) -> list:
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise _expected(where, noun, value, f" of {len(value)}" if isinstance(value, list) else "")
        return [c.parse(v, key_path(where, i)) for i, v in enumerate(value)]

    return Codec(noun, parse, lambda v: [c.dump(x) for x in v])


def dict_of(c: Codec) -> Codec:
    def parse(value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise _expected(where, "an object", value)
        return {k: c.parse(v, key_path(where, k)) for k, v in value.items()}

    return Codec("an object", parse, lambda v: {k: c.dump(x) for k, x in v.items()})


R = TypeVar("R", bound="Record")


def record(cls: type[R]) -> Codec:
    return Codec("an object", lambda value, where: cls.from_json(value, where), lambda v: v.to_json())


def required(codec: Codec) -> Any:
    """A key every JSON object of the record holds (its absence is an error naming it)."""
    return field(metadata={"codec": codec})


def optional(codec: Codec) -> Any:
    """A key the JSON object may lack (older reports, sections written only when they apply): MISSING then."""
    return field(default=MISSING, metadata={"codec": codec})


@dataclass(kw_only=True)
class Record:
    """A JSON object with declared keys (the dataclass fields, in the order they are written) and the rest."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # undeclared keys, written back unchanged

    @classmethod
    def from_json(cls: type[R], data: Any, where: str = "") -> R:
        if not isinstance(data, dict):
            raise _expected(where, "an object", data)
        values: dict[str, Any] = {}
        declared = [f for f in fields(cls) if f.name != "extra"]
        for f in declared:
            codec: Codec = f.metadata["codec"]
            if f.name in data:
                values[f.name] = codec.parse(data[f.name], key_path(where, f.name))
            elif f.default is _NO_DEFAULT:
                raise _fail(where, f"has no {f.name!r} {codec.bare}")
        names = {f.name for f in declared}
        out = cls(**values, extra={k: copy.deepcopy(v) for k, v in data.items() if k not in names})
        out.check(where)
        return out

    def check(self, where: str) -> None:
        """Consistency between keys (after every key was read); raise :class:`ReportFormatError`."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is MISSING:
                continue
            out[f.name] = f.metadata["codec"].dump(value)
        out.update(copy.deepcopy(self.extra))
        return out

    def has(self, name: str) -> bool:
        """Whether the key is there (an optional key may be MISSING)."""
        return getattr(self, name) is not MISSING
