"""What an audit's own files say about it, read for a bundle and for its verification.

The zoo as the audit had it (its recorded text parsed again, the placebo player taken from ``zoo.resolved.json``),
rebuilt as a :class:`~copyscope.config.Zoo` without touching a model; the plan (``plan.json``: games, players, work items); the
images the estimate used (report.json's per-game ``images``); the reference works (report.json's provenance);
the model files the zoo names and what the report's ``weights`` recorded of them; the environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..common.errors import CopyscopeError
from ..results import AuditReport

if TYPE_CHECKING:
    from ..config import Zoo
    from ..plan.games import Plan

MAX_RESOLVED_BYTES = 16 << 20
MAX_PLAN_BYTES = 256 << 20  # plan.json lists every work item


def audited_zoo(text: str, zoo_file: Path, resolved: Path) -> Zoo:
    """The zoo as the audit had it, without reading a model: the zoo file's recorded ``text`` parsed and validated as
    the audit parsed it (names filled in; relative paths anchored at ``zoo_file``'s folder), plus the placebo player
    the audit adds (``controls.placebo``: copyscope.controls.placebo), read from its ``zoo.resolved.json``."""
    from ..common.inputs import read_json_object
    from ..config import parse_zoo
    from ..controls.placebo import PLACEBO_NAME

    zoo = parse_zoo(text, Path(zoo_file))
    data = read_json_object(resolved, MAX_RESOLVED_BYTES, "zoo.resolved.json", "expected the zoo.resolved.json an audit wrote")
    placebo = [e for e in data.get("loras") or [] if isinstance(e, dict) and e.get("name") == PLACEBO_NAME]
    if placebo and zoo.spec.loras and PLACEBO_NAME not in {spec.name for spec in zoo.spec.loras}:
        entry = placebo[0]  # as add_placebo_player appends it
        zoo.spec.loras.append(type(zoo.spec.loras[0])(name=PLACEBO_NAME, model=str(entry.get("model")),
                                                      weight=entry.get("weight", 1.0)))
    return zoo


def resolved_differences(zoo: Zoo, resolved: Path) -> list[str]:
    """The keys whose values differ between ``zoo``'s resolved spec and the audit's ``zoo.resolved.json`` (keys on one
    side only are left out: a copyscope with more settings writes more keys)."""
    from ..common.inputs import read_json_object
    from ..results.records import key_path

    recorded = read_json_object(resolved, MAX_RESOLVED_BYTES, "zoo.resolved.json", "expected the zoo.resolved.json an audit wrote")
    ours = json.loads(json.dumps(zoo.spec.model_dump()))

    def differ(a, b, path: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            return [d for k in a if k in b for d in differ(a[k], b[k], key_path(path, k))]
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            return [d for i, (x, y) in enumerate(zip(a, b)) for d in differ(x, y, f"{path}[{i}]")]
        return [] if a == b else [path or "(the whole file)"]

    return differ(ours, recorded, "")


def plan_from_json(path: Path, zoo: Zoo, seeds: list[int] | None = None) -> Plan:
    """The audit's plan from its ``plan.json`` (no model is read): games with their players, the work items;
    with ``seeds`` (the report's: adaptive seeds stop early), only the items of those seeds."""
    from ..common.inputs import read_json_object
    from ..plan.games import GamePlan, Plan, Player, WorkItem

    data = read_json_object(path, MAX_PLAN_BYTES, "plan.json", "expected the plan.json an audit wrote")
    bases = {b.name: b for b in zoo.spec.bases}
    try:
        items = [WorkItem(**it) for it in data["items"]]
        games = [GamePlan(base=bases[g["base"]], players=[Player(p["name"], p["kind"]) for p in g["players"]],
                          base_as_player=zoo.spec.estimator.base == "player", family=g.get("family", "sd"))
                 for g in data["games"]]
        plan_seeds = [int(s) for s in data["seeds"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CopyscopeError(f"lacks what an audit writes there ({exc.__class__.__name__}: {exc}); expected the plan.json an "
                             "audit wrote", where=str(path)) from None
    if seeds is not None:
        keep = set(seeds)
        items = [it for it in items if it.seed in keep]
        plan_seeds = list(seeds)
    return Plan(zoo_name=data.get("zoo", zoo.spec.name), games=games, items=items, seeds=plan_seeds,
                estimator=data.get("estimator", {}))


def listed_images(report: AuditReport) -> dict[str, str]:
    """Every image the estimate used, once, in report order: cache key -> where report.json lists it first. A key that
    is not a cache key (64 hex digits: it names a file) is one line naming where it is listed."""
    import re

    from ..results.records import key_path

    out: dict[str, str] = {}
    for i, g in enumerate(report.games):
        # the coalitions' images, then (controls.placebo: swap) each LoRA's swapped full pipeline's
        listed = [("images", c, keys) for c, keys in (g.images or {}).items()]
        listed += [(f"placebo_swap_images.{n}", c, keys) for n, by in (g.placebo_swap_images or {}).items()
                   for c, keys in by.items()]
        for field, coalition, keys in listed:
            for j, key in enumerate(keys):
                where = f"{key_path(f'games[{i}].{field}', coalition)}[{j}]"
                if not re.fullmatch(r"[0-9a-f]{64}", key):
                    raise CopyscopeError(f"{where}: {key[:80]!r} is not an image key (64 hex digits); expected the report.json "
                                         "an audit wrote")
                out.setdefault(key, where)
    return out


def reference_entries(report: AuditReport) -> list[dict]:
    """The reference works the audit scored against, in its order: {work, file, sha256 (None: not recorded)}."""
    recorded = (report.provenance or {}).get("references")
    if isinstance(recorded, list) and all(isinstance(r, dict) and {"work", "file"} <= set(r) for r in recorded):
        return [{"work": str(r["work"]), "file": str(r["file"]), "sha256": r.get("sha256")} for r in recorded]
    return [{"work": w, "file": f, "sha256": None} for w, files in (report.works or {}).items() for f in files]


def _reported_sha(report: AuditReport, section: str, name: str) -> str | None:
    """The local_sha256 report.json's ``weights`` recorded for a model (None: none recorded)."""
    from ..players import KINDS

    group = {cls.section: cls.key_group for cls in KINDS.values()}.get(section, section)
    for g in report.games:
        weights = g.weights or {}
        ident = weights.get("base") if section == "bases" and g.base == name else (weights.get(group) or {}).get(name)
        if isinstance(ident, dict) and isinstance(ident.get("local_sha256"), str):
            return ident["local_sha256"]
    return None


def model_entries(zoo: Zoo, report: AuditReport) -> list[dict]:
    """The manifest's ``models``: every model the zoo names, hashed where its files are on this disk (a local path,
    or a hub model in the local Hugging Face cache), else recorded by hub id and revision, not hashed. ``sha256`` is
    the file's hash, or the folder's (copyscope.common.files.tree_sha256: every file, by relative name and content);
    ``identity_sha256`` the hash the audit keys images by (copyscope.modelfiles.sources.ModelSource.identity), compared
    with what report.json's ``weights`` recorded (``matches_report``)."""
    from ..audit.prepare import _zoo_models
    from ..common.files import tree_sha256
    from ..common.inputs import file_kind
    from ..modelfiles.sources import ModelSource, cached_snapshot

    out = []
    for section, _, spec in _zoo_models(zoo):
        revision = getattr(spec, "revision", None)
        entry: dict = {"section": section, "name": spec.name, "model": spec.model}
        identity = None
        if zoo.is_local(spec.model):
            path = zoo.resolve_path(spec.model)
            kind = file_kind(path)
            entry["path"] = str(path)
            if kind not in (None, "a folder"):
                entry.update(hashed=False, why=f"{kind} when the bundle was made")
            else:
                identity = ModelSource(spec.model, path, revision).identity()["local_sha256"]
                entry.update(hashed=True, kind="folder" if kind else "file", sha256=tree_sha256(path), identity_sha256=identity)
        else:
            entry.update(hub_id=spec.model, revision=revision or "main")
            snapshot = cached_snapshot(spec.model, revision)
            if snapshot is not None:
                entry.update(hashed=True, kind="hub snapshot", path=str(snapshot), sha256=tree_sha256(snapshot))
            else:
                entry.update(hashed=False, why="a hub model not in this machine's Hugging Face cache: recorded by id and "
                                               "revision, not hashed")
        reported = _reported_sha(report, section, spec.name)
        entry["report_sha256"] = reported
        entry["matches_report"] = None if identity is None or reported is None else identity == reported
        out.append(entry)
    return out


def environment(report: AuditReport) -> dict:
    """The audit's environment (report provenance: device, platform, Python, libraries) and the bundling machine's."""
    import importlib.metadata as md
    import platform

    from .. import __version__

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    prov = report.provenance or {}
    return {
        "audit": {"copyscope": report.copyscope_version or None, "python": prov.get("python"), "platform": prov.get("platform"),
                  "device": prov.get("device"), "libraries": prov.get("libraries"), "time_utc": prov.get("time_utc")},
        "bundle": {"copyscope": __version__, "python": platform.python_version(), "platform": platform.platform(),
                   "libraries": {p: version(p) for p in ("torch", "diffusers", "numpy", "scipy", "scikit-image", "pillow")}},
    }


def dumps(obj) -> bytes:
    """The bundle's JSON files: indented, keys in order, UTF-8."""
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
