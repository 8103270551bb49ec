"""The README introduces; the reference lives in docs/. Checked here: the README's length, its two commands (the
second is what CI runs, .ci/run), no issue numbers and no paths of a development machine in README or docs, and
every relative link and #anchor in README.md, docs/*.md and bench/README.md resolves (GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.paths import REPO

ROOT = REPO
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
ISSUE = [re.compile(r"\bissues? #?\d+", re.I), re.compile(r"\(#\d+\)")]
DEV_PATH = re.compile(r"/work/|/root/|/home/\w+")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: markup dropped, lowercase, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        a = github_anchor(m.group(1))
        n = seen.get(a, 0)
        seen[a] = n + 1
        out.add(a if n == 0 else f"{a}-{n}")
    return out


def broken_links(pages: list[Path], root: Path = ROOT) -> list[str]:
    bad = []
    for page in pages:
        for m in LINK.finditer(_prose(page.read_text())):
            target = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                bad.append(f"{page.relative_to(root)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{page.relative_to(root)}: {target}: no such anchor in {dest.relative_to(root)}")
    return bad


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= 260, f"README.md has {n} lines; the reference belongs in docs/"


def test_the_first_bash_block_holds_the_two_commands_and_the_second_is_what_ci_runs():
    block = _bash_blocks(README.read_text())[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, commands
    demo, tests = commands
    assert demo.endswith("copyscope audit model_zoo.yaml"), demo
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip().startswith(("pip ", "ruff ", "python -m pytest"))]
    steps = [s.strip() for s in tests.split("&&")]
    assert steps[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"], steps

    def same(ci_line: str, step: str) -> bool:  # CI adds quiet flags and a test-cache switch
        drop = {"-q", "-p", "no:cacheprovider"}
        words = [w for w in ci_line.split() if w not in drop]
        return words == [w for w in step.split() if w not in drop]

    rest = steps[2:]
    assert len(rest) == len(ci), (rest, ci)
    for ci_line, step in zip(ci, rest):
        assert same(ci_line, step), (ci_line, step)


def test_no_issue_numbers_in_readme_or_docs():
    for page in PAGES[:-1]:
        for pattern in ISSUE:
            hits = pattern.findall(page.read_text())
            assert not hits, (page.relative_to(ROOT), hits)


def test_no_development_machine_paths_in_readme_or_docs():
    for page in PAGES:
        hits = [line for line in page.read_text().splitlines() if DEV_PATH.search(line)]
        assert not hits, (page.relative_to(ROOT), hits)


def test_every_relative_link_and_anchor_resolves():
    assert broken_links(PAGES) == []


@pytest.mark.parametrize("heading, anchor", [
    ("Which test carries a claim (`copyscope/estimate/shapley/bounded.py`)",
     "which-test-carries-a-claim-copyscopeestimateshapleyboundedpy"),
    ("5. Scoring against generation: `python bench/bench_scoring.py`", "5-scoring-against-generation-python-benchbench_scoringpy"),
    ("Controls: is the metric shown to detect copying here?", "controls-is-the-metric-shown-to-detect-copying-here"),
])
def test_anchors_follow_github(heading, anchor):
    assert github_anchor(heading) == anchor


def test_the_link_check_finds_a_broken_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [bad](#nope) [file](b.md#x) `[code](#skip)`\n")
    (tmp_path / "b.md").write_text("## X\n")
    assert broken_links([tmp_path / "a.md"], tmp_path) == ["a.md: #nope: no such anchor in a.md"]
