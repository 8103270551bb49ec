"""Behaviour unchanged: the shipped demo audit's report.json under two revisions of copyscope, compared key by key.

    python bench/check_report_identity.py                      # base: merge-base with main; head: this working tree
    python bench/check_report_identity.py --base REV --head REV
    python bench/check_report_identity.py --compare A/report.json B/report.json   # compare two reports only

Each revision's ``copyscope/`` is exported (``git archive``) to a temporary folder and put first on PYTHONPATH;
``copyscope audit model_zoo.yaml --out OUT/<label>`` then runs in the repository root, so both audits read the
same zoo file, the same demo models and the same image cache (``$COPYSCOPE_CACHE`` or ~/.cache/copyscope: with
the demo's images there, an audit takes a few seconds). The reports must be identical apart from:

* timings: ``provenance.time_utc``, ``provenance.wall_seconds``, ``generation.seconds``;
* paths: ``output_dir``, ``cache_dir``;
* the schema version (``schema_version``, added by the typed report);
* the image cache's state: ``generation.generated`` / ``cached`` / ``adapter_switches`` say what the cache held
  when each audit ran (only their sum, the images used, must agree); they are printed either way.

The views that hold no path or time (coalitions.csv, attribution.csv, per_seed.csv) must be the same bytes.
Exit status 0 when identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORED = {
    ("schema_version",): "schema version",
    ("output_dir",): "path",
    ("cache_dir",): "path",
    ("provenance", "time_utc"): "timing",
    ("provenance", "wall_seconds"): "timing",
    ("generation", "seconds"): "timing",
    ("generation", "generated"): "cache state",
    ("generation", "cached"): "cache state",
    ("generation", "adapter_switches"): "cache state",
}
SAME_BYTES = ("coalitions.csv", "attribution.csv", "per_seed.csv")


def _show(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path)) or "(top)"


def differences(a, b, path: tuple = ()) -> list[str]:
    """Every place where ``a`` and ``b`` differ, key by key (``IGNORED`` paths left out); floats compared exactly."""
    if path in IGNORED:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in a:
            if k not in b:
                if path + (k,) not in IGNORED:
                    out.append(f"{_show(path + (k,))}: only in the first report")
            else:
                out += differences(a[k], b[k], path + (k,))
        out += [f"{_show(path + (k,))}: only in the second report" for k in b if k not in a and path + (k,) not in IGNORED]
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{_show(path)}: {len(a)} items, then {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, path + (i,))]
    same = type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))
    return [] if same else [f"{_show(path)}: {a!r} then {b!r}"]


def ignored_values(a: dict, b: dict) -> list[str]:
    """The ignored keys' values in both reports (shown, not compared)."""
    out = []
    for path, why in IGNORED.items():
        va, vb = a, b
        for k in path:
            va = va.get(k, "(absent)") if isinstance(va, dict) else "(absent)"
            vb = vb.get(k, "(absent)") if isinstance(vb, dict) else "(absent)"
        out.append(f"  {_show(path)} ({why}): {va!r} / {vb!r}")
    return out


def compare(first: Path, second: Path) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (first, second))
    diffs = differences(a, b)
    gen_a, gen_b = a.get("generation") or {}, b.get("generation") or {}
    used = [(g.get("generated") or 0) + (g.get("cached") or 0) for g in (gen_a, gen_b)]
    if used[0] != used[1]:
        diffs.append(f"generation: {used[0]} images used, then {used[1]}")
    for name in SAME_BYTES:
        fa, fb = Path(first).parent / name, Path(second).parent / name
        if fa.exists() and fb.exists() and fa.read_bytes() != fb.read_bytes():
            diffs.append(f"{name}: the files differ")
    print(f"first:  {first}\nsecond: {second}")
    print("not compared (timings, paths, schema version, cache state):")
    print("\n".join(ignored_values(a, b)))
    n_keys = _count_leaves(a)
    if diffs:
        print(f"DIFFERENT: {len(diffs)} difference(s) in {n_keys} values")
        print("\n".join("  " + d for d in diffs[:50]))
        return 1
    print(f"IDENTICAL: {n_keys} values of report.json compared key by key; {', '.join(SAME_BYTES)} the same bytes")
    return 0


def _count_leaves(x) -> int:
    if isinstance(x, dict):
        return sum(_count_leaves(v) for v in x.values())
    if isinstance(x, list):
        return sum(_count_leaves(v) for v in x)
    return 1


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def export(rev: str, into: Path) -> Path:
    """``copyscope/`` of revision ``rev`` (or this working tree: ``worktree``) as a folder to put on PYTHONPATH."""
    if rev == "worktree":
        return ROOT
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "copyscope"], check=True, stdout=f)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into


def run_audit(code: Path, zoo: str, out: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(code)}
    # -P: the repository root (the working folder) is not put before PYTHONPATH, so its copyscope/ does not shadow
    where = subprocess.run([sys.executable, "-P", "-c", "import copyscope; print(copyscope.__file__)"], env=env, cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.strip()
    if Path(where).resolve() != (code / "copyscope" / "__init__.py").resolve():
        raise SystemExit(f"copyscope imports from {where}, not from {code}")
    cmd = [sys.executable, "-P", "-c", "import sys; from copyscope.cli import app; sys.argv[0] = 'copyscope'; app()",
           "audit", zoo, "--out", str(out)]
    print(f"$ PYTHONPATH={code} copyscope audit {zoo} --out {out}", flush=True)
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(f"the audit failed (exit {done.returncode})")
    return out / "report.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="revision of the first audit (default: the merge-base of HEAD and main)")
    ap.add_argument("--head", default="worktree", help="revision of the second audit (default: this working tree)")
    ap.add_argument("--zoo", default="model_zoo.yaml", help="zoo file, relative to the repository root")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "copyscope-identity")
    ap.add_argument("--compare", nargs=2, type=Path, metavar="REPORT", help="only compare two report.json files")
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    base = args.base or _git("merge-base", "HEAD", "main")
    reports = []
    with tempfile.TemporaryDirectory(prefix="copyscope-rev-") as tmp:
        for label, rev in (("base", base), ("head", args.head)):
            print(f"{label}: {rev if rev == 'worktree' else _git('rev-parse', '--short', rev)} ({rev})", flush=True)
            reports.append(run_audit(export(rev, Path(tmp) / label), args.zoo, args.out / label))
    return compare(*reports)


if __name__ == "__main__":
    sys.exit(main())
