"""Stage 1 — config: load and validate a zoo file.

The zoo file is YAML read with a safe loader (nothing in it is ever executed) and validated with
pydantic; unknown keys are errors. Every error names the file, the key path and, where the YAML
parser knows it, the line: ``zoo.yaml:14: loras[1].weight: Input should be a valid number``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import CopyscopeError
from .analysis_specs import ImitationSpec, RewardSplitSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z0-9_.\-]+)\}")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# A hub id is "owner/name" (or a bare "name"); anything with a path separator beyond that, a
# leading "." or "/", or a file suffix is a local path.
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


def _check_name(value: str | None) -> str | None:
    if value is not None and not _NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '_', '-' or '.' (no '+' or spaces)"
        )
    return value


class BaseSpec(_Strict):
    """A base checkpoint: each base is its own game."""

    name: str | None = None
    model: str = Field(description="hub id, local diffusers folder, or single .safetensors file")
    revision: str | None = None
    variant: str | None = None
    config: str | None = Field(None, description="diffusers config (hub id or folder) for a single-file checkpoint")

    _name = field_validator("name")(_check_name)


class ConditioningSpec(_Strict):
    """Where a ControlNet's conditioning image comes from: exactly one of the three."""

    image: str | None = None
    per_prompt: dict[str, str] | None = None
    per_work: dict[str, str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("image", "per_prompt", "per_work") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'image', 'per_prompt' or 'per_work'")
        return self


class ControlNetSpec(_Strict):
    name: str | None = None
    model: str
    revision: str | None = None
    conditioning_scale: float = 1.0
    conditioning: ConditioningSpec

    _name = field_validator("name")(_check_name)


class LoraSpec(_Strict):
    name: str | None = None
    model: str = Field(description="hub id or local .safetensors file")
    weight_name: str | None = None
    revision: str | None = None
    weight: float = 1.0

    _name = field_validator("name")(_check_name)


class ReferenceSpec(_Strict):
    """A protected work: one or more image files or folders of images."""

    name: str
    paths: list[str] = Field(min_length=1)

    _name = field_validator("name")(_check_name)


class PromptSpec(_Strict):
    name: str | None = None
    text: str
    negative: str = ""
    work: str | None = Field(None, description="the work this prompt targets (for per-work conditioning)")

    _name = field_validator("name")(_check_name)


class PromptPlayerSpec(_Strict):
    """A prompt fragment as a player: a coalition's prompt contains the fragments of its members."""

    name: str
    text: str

    _name = field_validator("name")(_check_name)


class GenerationSpec(_Strict):
    resolution: int | tuple[int, int] = 512
    steps: int = Field(30, ge=1)
    guidance: float = 7.5
    scheduler: str | None = Field(None, description="ddim, euler, euler_a, dpm, pndm, lms, or null for the base's own")
    seeds: int | list[int] = 4
    batch_size: int = Field(4, ge=1)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = "auto"
    compile: bool = Field(False, description="torch.compile the UNet (GPU; one compile per adapter set, docs/scale.md)")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if isinstance(v, int):
            if v < 1:
                raise ValueError("need at least one seed")
        else:
            if not v:
                raise ValueError("need at least one seed")
            if len(set(v)) != len(v):
                raise ValueError("seeds must be distinct")
        return v

    @field_validator("resolution")
    @classmethod
    def _resolution(cls, v):
        sizes = (v, v) if isinstance(v, int) else v
        if any(s < 8 or s % 8 for s in sizes):
            raise ValueError("resolution must be a positive multiple of 8")
        return v

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.resolution, self.resolution) if isinstance(self.resolution, int) else tuple(self.resolution)


class EstimatorSpec(_Strict):
    method: Literal["auto", "exact", "permutation", "kernelshap", "oddshap"] = "auto"
    budget: int | None = Field(None, ge=2, description="distinct coalitions a sampled estimator may evaluate")
    bootstrap: int = Field(500, ge=0, description="bootstrap resamples over seeds (0: no intervals)")
    confidence: float = Field(0.95, gt=0, lt=1)
    base: Literal["context", "player"] = "context"
    seed: int = 0


class ZooSpec(_Strict):
    name: str = "audit"
    output: str | None = None
    cache: str | None = None
    bases: list[BaseSpec] = Field(min_length=1)
    controlnets: list[ControlNetSpec] = []
    loras: list[LoraSpec] = []
    prompt_players: list[PromptPlayerSpec] = []
    references: list[ReferenceSpec] = Field(min_length=1)
    prompts: list[PromptSpec] = Field(min_length=1)
    generation: GenerationSpec = GenerationSpec()
    metrics: list[str | dict[str, Any]] | None = None
    backbones: dict[str, str] = {}
    aggregate: Literal["max_mean", "mean_mean", "max_max"] = "max_mean"
    estimator: EstimatorSpec = EstimatorSpec()
    reward_split: RewardSplitSpec | None = None  # `copyscope reward-split` (docs/analyses.md)
    imitation: ImitationSpec | None = None  # `copyscope imitation` (docs/analyses.md)


class Zoo:
    """A validated zoo file with names filled in and paths resolved against the file's folder."""

    def __init__(self, spec: ZooSpec, path: Path, text: str, lines: dict[tuple, int]):
        self.spec = spec
        self.path = path
        self.root = path.parent
        self.text = text
        self._lines = lines
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()

    # -- error helpers -------------------------------------------------------------------------
    def where(self, *loc) -> str:
        """'zoo.yaml:LINE: key.path' for an error message."""
        return _where(self.path, loc, self._lines)

    def fail(self, message: str, *loc) -> CopyscopeError:
        return CopyscopeError(message, where=self.where(*loc))

    # -- path resolution -----------------------------------------------------------------------
    def resolve_path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def is_local(self, value: str) -> bool:
        """A model string is local if it names an existing path or cannot be a hub id."""
        if self.resolve_path(value).exists():
            return True
        return not _HUB_ID_RE.match(value) or value.startswith(".") or value.endswith(
            IMAGE_SUFFIXES + (".safetensors",) + PICKLE_SUFFIXES
        )

    @property
    def output_dir(self) -> Path:
        return self.resolve_path(self.spec.output or f"copyscope-out/{self.spec.name}")

    @property
    def cache_dir(self) -> Path:
        from .cache import default_cache_root  # shared by every audit unless the zoo says `cache:`

        return self.resolve_path(self.spec.cache) if self.spec.cache else default_cache_root()


def _where(path: Path, loc: tuple, lines: dict[tuple, int]) -> str:
    loc = tuple(loc)
    line = None
    for n in range(len(loc), -1, -1):  # the deepest key the parser has a line for
        if loc[:n] in lines:
            line = lines[loc[:n]]
            break
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    head = f"{path}:{line}" if line else str(path)
    return f"{head}: {key}" if key else head


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


def _pydantic_message(err: dict) -> str:
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    msg = msg.removeprefix("Value error, ")
    if "input" in err and err["type"] not in ("model_type",) and not isinstance(err["input"], (dict, list)):
        if repr(err["input"]) not in msg:
            msg += f", got {err['input']!r}"
    return msg


def _clean_loc(loc: tuple) -> tuple:
    # pydantic adds union branch tags ("int", "list[int]", "function-after[...]") to locations
    return tuple(p for p in loc if isinstance(p, int) or not re.match(r"^(int|str|float|list\[|dict\[|tuple\[|function-)", str(p)))


def load_zoo(path: str | Path) -> Zoo:
    """Read, parse and validate a zoo file. Raises CopyscopeError with file:line: key: message."""
    path = Path(path)
    if path.is_dir():
        raise CopyscopeError("is a folder, expected a zoo YAML file", where=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CopyscopeError("zoo file not found", where=str(path)) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise CopyscopeError(
            f"not UTF-8 text (byte {exc.object[exc.start]:#04x}); expected a UTF-8 YAML file", where=f"{path}:{line}"
        ) from None
    except OSError as exc:
        raise CopyscopeError(f"cannot read zoo file ({exc.__class__.__name__}: {exc})", where=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_expansion(node)
        data = yaml.safe_load(text)
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
    try:
        spec = ZooSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _clean_loc(err["loc"])
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise CopyscopeError(_pydantic_message(err) + more, where=_where(path, loc, lines)) from None
    zoo = Zoo(spec, path, text, lines)
    _fill_names_and_check(zoo)
    return zoo


def _stem(model: str) -> str:
    name = Path(model.rstrip("/")).name
    for suffix in (".safetensors",) + PICKLE_SUFFIXES:
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", name) or "model"


def _fill_names_and_check(zoo: Zoo) -> None:
    """Default names, uniqueness, and cross-references (prompt.work, per_prompt keys, ...)."""
    s = zoo.spec
    for i, base in enumerate(s.bases):
        base.name = base.name or _stem(base.model)
    for i, cn in enumerate(s.controlnets):
        cn.name = cn.name or _stem(cn.model)
    for i, lora in enumerate(s.loras):
        lora.name = lora.name or (_stem(lora.weight_name) if lora.weight_name else _stem(lora.model))
    for i, prompt in enumerate(s.prompts):
        prompt.name = prompt.name or f"prompt{i}"

    _unique(zoo, "bases", [b.name for b in s.bases])
    _unique(
        zoo,
        "players",
        [c.name for c in s.controlnets] + [lo.name for lo in s.loras] + [pp.name for pp in s.prompt_players],
        sections=("controlnets", "loras", "prompt_players"),
    )
    _unique(zoo, "references", [r.name for r in s.references])
    _unique(zoo, "prompts", [p.name for p in s.prompts])

    works = {r.name for r in s.references}
    prompts = {p.name for p in s.prompts}
    for i, p in enumerate(s.prompts):
        if p.work is not None and p.work not in works:
            raise zoo.fail(f"unknown work {p.work!r}; references are {sorted(works)}", "prompts", i, "work")
    for i, cn in enumerate(s.controlnets):
        c = cn.conditioning
        if c.per_prompt is not None:
            for key in c.per_prompt:
                if key not in prompts:
                    raise zoo.fail(f"unknown prompt {key!r}; prompts are {sorted(prompts)}", "controlnets", i, "conditioning", "per_prompt", key)
            missing = prompts - set(c.per_prompt)
            if missing:
                raise zoo.fail(f"no conditioning image for prompt(s) {sorted(missing)}", "controlnets", i, "conditioning", "per_prompt")
        if c.per_work is not None:
            for key in c.per_work:
                if key not in works:
                    raise zoo.fail(f"unknown work {key!r}; references are {sorted(works)}", "controlnets", i, "conditioning", "per_work", key)
            for j, p in enumerate(s.prompts):
                if p.work is None:
                    raise zoo.fail("per_work conditioning needs every prompt to name its 'work'", "prompts", j)
                if p.work not in c.per_work:
                    raise zoo.fail(f"no conditioning image for work {p.work!r}", "controlnets", i, "conditioning", "per_work")
    fragments = {pp.name for pp in s.prompt_players}
    for i, p in enumerate(s.prompts):
        for field in _PLACEHOLDER_RE.findall(p.text):
            if field not in fragments:
                raise zoo.fail(
                    f"placeholder {{{field}}} names no prompt player; prompt_players are {sorted(fragments)}", "prompts", i, "text"
                )
    for key, value in s.backbones.items():
        if not isinstance(value, str):
            raise zoo.fail("expected a hub id or a local path", "backbones", key)


def _unique(zoo: Zoo, what: str, names: list[str], sections: tuple[str, ...] | None = None) -> None:
    seen: dict[str, int] = {}
    for idx, name in enumerate(names):
        if name in seen:
            loc: tuple = (what, idx)
            if sections:  # player names span several sections: point at the second occurrence
                for section in sections:
                    size = len(getattr(zoo.spec, section))
                    if idx < size:
                        loc = (section, idx)
                        break
                    idx -= size
            raise zoo.fail(f"duplicate name {name!r}: names must be unique (set 'name:' explicitly)", *loc, "name")
        seen[name] = idx


def render_prompt(template: str, fragments: dict[str, str], active: set[str]) -> str:
    """A coalition's prompt: ``{name}`` placeholders take the fragment's text when the prompt player
    is in the coalition and vanish otherwise; active fragments the template does not mention are
    appended, comma-separated, in zoo order. Whitespace and stray commas are tidied."""
    used = set(_PLACEHOLDER_RE.findall(template))
    text = _PLACEHOLDER_RE.sub(lambda m: fragments[m.group(1)] if m.group(1) in active else "", template)
    extra = [fragments[n] for n in fragments if n in active and n not in used]
    text = ", ".join([text.strip()] + extra) if extra else text
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",(\s*,)+", ",", text)
    return text.strip().strip(",").strip()


def iter_reference_files(zoo: Zoo) -> dict[str, list[Path]]:
    """work name -> its image files (folders expanded, sorted). Errors name the offending key."""
    works: dict[str, list[Path]] = {}
    for i, ref in enumerate(zoo.spec.references):
        files: list[Path] = []
        for j, value in enumerate(ref.paths):
            p = zoo.resolve_path(value)
            if p.is_dir():
                found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
                if not found:
                    raise zoo.fail(f"folder {value!r} holds no images ({', '.join(IMAGE_SUFFIXES)})", "references", i, "paths", j)
                files.extend(found)
            elif p.is_file():
                files.append(p)
            else:
                raise zoo.fail(f"reference {value!r} not found (looked at {p})", "references", i, "paths", j)
        works[ref.name] = files
    return works
