"""The planted ground truth of an ablation (``ground_truth.json`` beside the zoo file, or ``--ground-truth``):
found, read and type-checked before any work, and matched against the audit's players."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..common.errors import CopyscopeError

GROUND_TRUTH_FILE = "ground_truth.json"


def find_ground_truth(zoo, explicit: Path | str | None = None) -> Path | None:
    """``explicit``, else ``ground_truth.json`` beside the zoo file, else beside (or one folder
    above) a local base model folder / file."""
    if explicit is not None:
        from ..common.inputs import file_kind

        p = Path(explicit)
        kind = file_kind(p)
        if kind is not None:
            raise CopyscopeError("ground truth file not found" if kind == "not found" else f"is {kind}; expected a ground "
                                 "truth file (JSON)", where=str(p))
        return p
    candidates = [zoo.root / GROUND_TRUTH_FILE]
    for b in zoo.spec.bases:
        mp = zoo.resolve_path(b.model)
        if mp.exists():
            d = mp if mp.is_dir() else mp.parent
            candidates += [d / GROUND_TRUTH_FILE, d.parent / GROUND_TRUTH_FILE]
    for c in candidates:
        if c.is_file():
            return c
    return None


def read_ground_truth(path: Path) -> dict:
    """A ground_truth.json, read and checked: a regular JSON file holding an object whose keys that
    :func:`planted_players` reads have the types it expects (one line naming file and key)."""
    from ..common.inputs import read_json_object

    gt = read_json_object(path, 16 << 20, "ground truth file (JSON)",
                          "expected a JSON object naming the planted players", short="ground truth file")
    _check_ground_truth(gt, path)
    return gt


def _names(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _check_ground_truth(gt: dict, path: Path) -> None:
    def bad(key: str, what: str, value) -> CopyscopeError:
        return CopyscopeError(f"{key}: expected {what}, got {repr(value)[:60]}", where=str(path))

    for key in ("planted_infringer", "planted"):
        v = gt.get(key)
        if v is not None and not isinstance(v, str) and not _names(v):
            raise bad(key, "a component name or a list of names", v)
    refs = gt.get("references")
    if refs is not None and not isinstance(refs, dict):
        raise bad("references", "an object (work -> its entry)", refs)
    for work, entry in (refs or {}).items():
        if not isinstance(entry, dict):
            raise bad(f"references.{work}", "an object", entry)
        if entry.get("trained_into") is not None and not _names(entry["trained_into"]):
            raise bad(f"references.{work}.trained_into", "a list of component names", entry["trained_into"])
    components = gt.get("components")
    if components is not None and not isinstance(components, dict):
        raise bad("components", "an object (group -> components)", components)
    for group_name, group in (components or {}).items():
        if not isinstance(group, dict):
            raise bad(f"components.{group_name}", "an object", group)
        for name, entry in group.items():
            for key in ("file", "path"):
                if isinstance(entry, dict) and entry.get(key) is not None and not isinstance(entry[key], str):
                    raise bad(f"components.{group_name}.{name}.{key}", "a file name (text)", entry[key])


def planted_players(gt: dict, gt_path: Path, zoo, players: Sequence[str]) -> tuple[list[str], list[str]]:
    """Players the ground truth names as planted infringers, and notes on names it could not place.

    Accepted: ``planted_infringer`` (a name or a list of names), ``planted`` (same), and
    ``references.<work>.trained_into`` (lists of names), as in the demo zoo's ground_truth.json. A
    ground-truth name maps to a player when a component file it lists (``components.loras.<name>.file``,
    relative to ground_truth.json) is the file that player loads, else when it equals a player name.
    """
    names: list[str] = []
    for key in ("planted_infringer", "planted"):
        v = gt.get(key)
        if isinstance(v, str):
            names.append(v)
        elif isinstance(v, list):
            names += [x for x in v if isinstance(x, str)]
    for w in (gt.get("references") or {}).values():
        if isinstance(w, dict):
            names += [x for x in (w.get("trained_into") or []) if isinstance(x, str)]
    names = list(dict.fromkeys(names))
    by_file: dict[Path, str] = {}
    for lo in zoo.spec.loras:
        by_file[zoo.resolve_path(lo.model).resolve()] = lo.name
    for cn in zoo.spec.controlnets:
        by_file[zoo.resolve_path(cn.model).resolve()] = cn.name
    components = gt.get("components") or {}
    out, notes = [], []
    for n in names:
        found = None
        for group in components.values():
            if isinstance(group, dict) and isinstance(group.get(n), dict):
                f = group[n].get("file") or group[n].get("path")
                if isinstance(f, str):
                    found = by_file.get((gt_path.parent / f).resolve())
            if found:
                break
        if found is None and n in players:
            found = n
        if found is not None and found in players:
            out.append(found)
        else:
            notes.append(f"ground-truth component {n!r} is not a player of this game")
    return list(dict.fromkeys(out)), notes
