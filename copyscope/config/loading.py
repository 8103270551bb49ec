"""Stage 1 — config: load and validate a zoo file.

The zoo file is YAML read with a safe loader (nothing in it is ever executed) and validated with
pydantic; unknown keys are errors. Every error names the file, the key path and, where the YAML
parser knows it, the line: ``zoo.yaml:14: loras[1].weight: Input should be a valid number``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..common.errors import CopyscopeError
from .base import _pydantic_message
from .kinds import fill_names_and_check, zoo_spec_model
from .zoo import Zoo, _where

MAX_YAML_VALUES = 100_000


def _check_expansion(node, limit: int = MAX_YAML_VALUES) -> None:
    """Refuse recursive aliases and alias bombs ("billion laughs") before anything walks the
    document: the size of the document with every alias expanded, in time linear in the file."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    class Recursive(Exception):
        pass

    def size(n) -> int:
        k = id(n)
        if k in sizes:
            return sizes[k]
        if k in active:
            raise Recursive(n.start_mark)
        active.add(k)
        if isinstance(n, yaml.MappingNode):
            s = 1 + sum(size(a) + size(b) for a, b in n.value)
        elif isinstance(n, yaml.SequenceNode):
            s = 1 + sum(size(c) for c in n.value)
        else:
            s = 1
        active.discard(k)
        sizes[k] = s
        if s > limit:
            raise yaml.MarkedYAMLError(
                problem=f"aliases expand to more than {limit} values (an alias bomb?)", problem_mark=n.start_mark
            )
        return s

    try:
        size(node)
    except Recursive as exc:
        raise yaml.MarkedYAMLError(problem="recursive alias: a value contains itself", problem_mark=exc.args[0]) from None


def _line_map(node, prefix=(), out=None) -> dict[tuple, int]:
    """Map every key path of a composed YAML node tree to its 1-based line."""
    out = {} if out is None else out
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (key_node.value,)
            out[key] = key_node.start_mark.line + 1
            _line_map(value_node, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, prefix + (i,), out)
    return out


def _clean_loc(loc: tuple) -> tuple:
    # pydantic adds union branch tags ("int", "list[int]", "function-after[...]") to locations
    return tuple(p for p in loc if isinstance(p, int) or not re.match(r"^(int|str|float|list\[|dict\[|tuple\[|function-)", str(p)))


def _compose(text: str):
    """The YAML node tree, parsed by libyaml where available (fast); on an error the pure-Python
    parser parses again, so messages read the same everywhere."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _check_duplicate_keys(node, path: Path, seen: set[int] | None = None) -> None:
    """PyYAML keeps the last of two equal keys; a zoo file with two `loras:` blocks would silently
    lose a player. Refuse, naming the lines of both."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                k = key_node.value
                if k in first:
                    raise CopyscopeError(
                        f"duplicate key {k!r}: also given at line {first[k].line + 1}; give each key once",
                        where=f"{path}:{key_node.start_mark.line + 1}",
                    )
                first[k] = key_node.start_mark
            _check_duplicate_keys(key_node, path, seen)
            _check_duplicate_keys(value_node, path, seen)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _check_duplicate_keys(child, path, seen)


def _check_finite(data, path: Path, lines: dict[tuple, int], loc: tuple = ()) -> None:
    """No NaN or infinity anywhere in a zoo file (`.nan`, `.inf`, `1e999`): no key takes one."""
    if isinstance(data, float) and not math.isfinite(data):
        raise CopyscopeError(f"{data!r} is not a finite number; expected a finite number", where=_where(path, loc, lines))
    if isinstance(data, dict):
        for k, v in data.items():
            _check_finite(v, path, lines, loc + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _check_finite(v, path, lines, loc + (i,))


def load_zoo(path: str | Path) -> Zoo:
    """Read, parse and validate a zoo file. Raises CopyscopeError with file:line: key: message."""
    from ..common.inputs import MAX_ZOO_BYTES, read_bounded

    path = Path(path)
    raw = read_bounded(path, MAX_ZOO_BYTES, "zoo YAML file", short="zoo file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CopyscopeError(
            f"not UTF-8 text (byte {exc.object[exc.start]:#04x}); expected a UTF-8 YAML file", where=f"{path}:{line}"
        ) from None
    return parse_zoo(text, path)


def parse_zoo(text: str, path: Path) -> Zoo:
    """A zoo from its YAML text, validated as :func:`load_zoo` validates a file; ``path`` names it in errors and anchors
    its relative paths (it need not exist: ``copyscope verify`` parses the text an audit recorded)."""
    path = Path(path)
    try:
        node = _compose(text)
        if node is not None:
            _check_expansion(node)
            _check_duplicate_keys(node, path)
        # built from the checked node tree with the safe constructor (no second parse)
        data = yaml.SafeLoader("").construct_document(node) if node is not None else None
    except RecursionError:
        raise CopyscopeError("malformed YAML: nested too deeply", where=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        tag = re.search(r"constructor for the tag '([^']*)'", problem) if isinstance(exc, yaml.constructor.ConstructorError) else None
        if tag:  # !!python/object and friends: the safe loader builds no objects
            problem = (f"tag {tag.group(1).replace('tag:yaml.org,2002:', '!!')!r} is not allowed; expected plain "
                       "YAML values (zoo files are read with a safe loader)")
        raise CopyscopeError(f"malformed YAML: {problem}", where=f"{path}{line}") from None
    if not isinstance(data, dict):
        raise CopyscopeError("expected a mapping of keys (bases, loras, references, prompts, ...)", where=str(path))
    lines = _line_map(node) if node is not None else {}
    _check_finite(data, path, lines)
    try:
        spec = zoo_spec_model().model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _clean_loc(err["loc"])
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise CopyscopeError(_pydantic_message(err) + more, where=_where(path, loc, lines)) from None
    zoo = Zoo(spec, path, text, lines)
    fill_names_and_check(zoo)
    return zoo


