"""Output folders that belong to copyscope.

An output folder holds a manifest, ``.copyscope-output.json``, that marks it as copyscope's and
records which run wrote each file. copyscope

- writes into a folder only if it is new, empty, or carries the manifest (a folder written by a
  copyscope from before manifests, with its ``report.json``, is adopted);
- never writes over a file the manifest does not list (the user's own ``report.json``, or a zoo
  file that happens to be called ``plan.json``);
- writes a run's files into a staging folder inside the output folder and moves them in together
  at the end, so a run that is interrupted or fails leaves the previous complete result as it
  was. The manifest then says so (``last_attempt``), and so does the CLI, in one line.

Every OSError on the folder (permissions, a full disk, a file where a folder should be) becomes
one CopyscopeError line naming the path and what to do.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .files import atomic_write_text
from .errors import CopyscopeError

MANIFEST = ".copyscope-output.json"
STAGING_PREFIX = ".copyscope-staging-"
MAX_MANIFEST_BYTES = 16 << 20
OWN_SUBFOLDERS = {"cache", "conditioning", "reward-split", "imitation"}


class Interrupted(CopyscopeError):
    """Ctrl-C during a run: one line, and the shell's exit code for SIGINT."""

    exit_code = 130


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def os_error_message(exc: OSError, what: str = "output folder") -> CopyscopeError:
    """One line for an OSError on the output or the cache: the path, the reason, what to do."""
    # a file of the staging folder is reported under the name it would have had
    path = re.sub(rf"/{re.escape(STAGING_PREFIX)}[^/]+", "", str(exc.filename)) if exc.filename else "?"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        todo = "free disk space (or raise the file-size limit) and rerun; finished images are kept in the cache"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = f"make it writable or choose another {what}"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        todo = f"a file stands where a folder is needed (or the reverse); choose another {what}"
    else:
        todo = f"check the {what}"
    reason = exc.strerror or exc.__class__.__name__
    return CopyscopeError(f"cannot write ({reason}); {todo}", where=str(path))


def resolve_output(zoo, out: str | Path | None, subfolder: str | None = None) -> tuple[Path, str]:
    """The output-folder rule of every command: ``--out`` when given, else the zoo file's
    ``output`` (an analysis adds its own ``subfolder`` there). Returns (folder, how errors name it:
    "--out DIR" or "zoo.yaml:3: output: DIR"); a file standing there is refused."""
    if out:
        path = Path(out)
        where = f"--out {path}"
    else:
        path = zoo.output_dir / subfolder if subfolder else zoo.output_dir
        where = f"{zoo.where('output')}: {path}"
        if subfolder and path.is_symlink():  # copyscope's own subfolder must not lead elsewhere
            raise CopyscopeError(f"{subfolder}/ in the output folder is a symlink; copyscope writes its subfolders only as "
                                 "real folders: remove the link or pass --out", where=where)
    if path.exists() and not path.is_dir():
        raise CopyscopeError("exists and is not a folder; expected an output folder", where=where)
    return path, where


class OutputFolder:
    """The output folder of one run. ``where`` prefixes errors about the folder itself (the zoo
    file's ``output:`` key, or ``--out``)."""

    def __init__(self, root: Path, where: str | None = None):
        self.root = Path(root)
        self.where = where or str(self.root)
        self.manifest_path = self.root / MANIFEST

    # -- ownership ------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        """The manifest, or None if the folder has none. A manifest that is not copyscope's JSON
        is an error: the folder's ownership cannot be told."""
        from .inputs import file_kind, read_bounded

        if file_kind(self.manifest_path) == "not found":
            return None
        raw = read_bounded(self.manifest_path, MAX_MANIFEST_BYTES, "copyscope manifest")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise CopyscopeError("is not a copyscope manifest; move it away or choose another output folder",
                                 where=str(self.manifest_path))
        return data

    def _legacy_manifest(self) -> dict | None:
        """A folder written before manifests existed: its report.json is copyscope's (or, for
        `copyscope demo bench`, its results.json)."""
        report = self._own_json("report.json")
        if isinstance(report, dict) and "copyscope_version" in report and "config_sha256" in report:
            known = {"report.json", "report.html", "coalitions.csv", "attribution.csv", "per_seed.csv", "plan.json",
                     "zoo.resolved.json"}
        else:
            results = self._own_json("results.json")
            if not (isinstance(results, dict) and str(results.get("format", "")).startswith("copyscope-validity-bench/")):
                return None
            known = {"results.json", "table.md", "table_by_kind.md"}
        return {"copyscope": 1, "files": {n: "before-manifest" for n in known if (self.root / n).is_file()}}

    def _own_json(self, name: str):
        from .inputs import read_bounded

        try:
            return json.loads(read_bounded(self.root / name, 1 << 30, name).decode("utf-8"))
        except (CopyscopeError, UnicodeDecodeError, ValueError, RecursionError):
            return None

    def claim(self, names: list[str]) -> dict:
        """Check that copyscope may write ``names`` here; return the manifest (new or existing).
        Nothing is written."""
        try:
            if self.root.exists() and not self.root.is_dir():
                raise CopyscopeError("exists and is not a folder; expected an output folder", where=self.where)
            entries = [p.name for p in self.root.iterdir()] if self.root.is_dir() else []
        except OSError as exc:
            raise CopyscopeError(f"cannot read the output folder ({exc.strerror}); choose another output folder",
                                 where=self.where) from None
        entries = [e for e in entries if not e.startswith(STAGING_PREFIX)]
        self._check_own_subfolders(entries)
        manifest = self.read_manifest() if entries else None
        # what copyscope itself puts in an output folder before an audit's first report: the
        # default image cache, and computed conditioning maps and the analyses' own subfolders (`reward-split`, `imitation`)
        if manifest is None and all(e in OWN_SUBFOLDERS and (self.root / e).is_dir() for e in entries):
            entries = []
        if manifest is None and entries:
            manifest = self._legacy_manifest()
            if manifest is None:
                raise CopyscopeError(
                    f"is not empty and is not a copyscope output folder (no {MANIFEST}); copyscope writes only into "
                    "a new or empty folder or its own: choose another output folder", where=self.where,
                )
        manifest = manifest or {"copyscope": 1, "files": {}}
        for name in names:
            p = self.root / name
            if name in manifest["files"] and p.is_file() and not p.is_symlink():
                continue
            if os.path.lexists(p):
                raise CopyscopeError(
                    f"{name} in the output folder was not written by copyscope (not in {MANIFEST}); move it away "
                    "or choose another output folder", where=self.where,
                )
        return manifest

    def _check_own_subfolders(self, entries: list[str]) -> None:
        """copyscope writes into its subfolders (``conditioning/``, ...) directly: one that is a symlink
        would send those writes elsewhere."""
        for e in entries:
            # not cache/: a cache has its own marker (copyscope.generate.cache), and may live on another disk
            if e in OWN_SUBFOLDERS - {"cache"} and (self.root / e).is_symlink():
                raise CopyscopeError(f"{e}/ in the output folder is a symlink; copyscope writes there only into a real "
                                     "folder it made: remove the link or choose another output folder", where=self.where)

    # -- a run ----------------------------------------------------------------------------------
    @contextmanager
    def run(self, names: list[str], command: str) -> Iterator[Path]:
        """Stage a run's files: yields a staging folder; the caller writes ``names`` there. On a
        normal exit they are moved into the folder and the manifest records them; on an exception
        (Ctrl-C included) the staging folder is removed, the previous files stay, and the manifest
        notes the attempt."""
        manifest = self.claim(names)
        run_id = f"{_now()} {uuid.uuid4().hex[:8]}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._remove_stale_staging()
            stage = self.root / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            stage.mkdir()
            if not self.manifest_path.exists():  # mark the folder as ours before anything else lands
                atomic_write_text(self.manifest_path, json.dumps(manifest, indent=2))
        except OSError as exc:
            raise os_error_message(exc) from None
        try:
            yield stage
            self._commit(stage, names, manifest, run_id, command)
        except BaseException as exc:
            shutil.rmtree(stage, ignore_errors=True)
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {' '.join(str(exc).split())[:300]}"
            self._note_attempt(manifest, run_id, command, status)
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(
                    f"{command} interrupted; the previous result in {self.root} is unchanged "
                    "(rerun to resume: finished images are in the cache)"
                ) from None
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _commit(self, stage: Path, names: list[str], manifest: dict, run_id: str, command: str) -> None:
        missing = [n for n in names if not (stage / n).is_file()]
        if missing:
            raise RuntimeError(f"staged run lacks {missing}")  # a bug, not a user error
        try:
            # the manifest says a swap is under way before the first file moves, so a crash in
            # between is visible; os.replace within one folder is atomic per file
            pending = {**manifest, "committing": run_id}
            atomic_write_text(self.manifest_path, json.dumps(pending, indent=2))
            for n in names:
                os.replace(stage / n, self.root / n)
            files = {**manifest["files"], **{n: run_id for n in names}}
            # an unfinished audit stays noted until an audit finishes (`report` only redraws its views)
            attempt_done = (manifest.get("last_attempt") or {}).get("command") == command
            done = {k: v for k, v in manifest.items() if k != "committing" and not (k == "last_attempt" and attempt_done)}
            done.update(copyscope=1, files=files)
            if command == "audit" or "last_run" not in done:
                done["last_run"] = {"run": run_id, "command": command, "status": "complete"}
            atomic_write_text(self.manifest_path, json.dumps(done, indent=2))
        except OSError as exc:
            raise os_error_message(exc) from None

    def _note_attempt(self, manifest: dict, run_id: str, command: str, status: str) -> None:
        try:
            if self.manifest_path.exists():
                # the manifest on disk: if a swap stopped halfway it says so ("committing"), and keeps saying so
                try:
                    noted = self.read_manifest() or dict(manifest)
                except CopyscopeError:
                    noted = dict(manifest)
                noted["last_attempt"] = {"run": run_id, "command": command, "status": status}
                atomic_write_text(self.manifest_path, json.dumps(noted, indent=2))
        except OSError:
            pass  # the disk is full or read-only: the previous manifest still describes the folder

    def _remove_stale_staging(self) -> None:
        """Staging folders of runs that were killed (SIGKILL leaves no chance to clean up)."""
        for p in self.root.glob(f"{STAGING_PREFIX}*"):
            try:
                pid = int(p.name[len(STAGING_PREFIX):].split("-")[0])
                os.kill(pid, 0)
                continue  # that run is still going
            except (ValueError, ProcessLookupError):
                shutil.rmtree(p, ignore_errors=True)
            except PermissionError:
                continue


def interrupted_note(root: Path) -> str | None:
    """'the last audit here was interrupted (...)' if the manifest says so, else None."""
    try:
        manifest = OutputFolder(root).read_manifest()
    except CopyscopeError:
        return None
    if manifest and manifest.get("committing"):
        return (f"a run ({manifest['committing']}) stopped while its files were being moved in: some files may be "
                "from that run and some from the one before; rerun the audit")
    attempt = (manifest or {}).get("last_attempt")
    if not attempt:
        return None
    last = (manifest.get("last_run") or {}).get("run", "an earlier run")
    return (f"the last run here ({attempt.get('command')}, {attempt.get('run')}) did not finish ({attempt.get('status')}); "
            f"the files are those of {last}")
