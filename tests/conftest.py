"""Shared fixtures: tiny SD-shaped models built from configs (no hub, no downloads)."""

from __future__ import annotations

import os
import signal

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module", autouse=True)
def _private_image_cache(tmp_path_factory):
    """The shared image cache defaults to ~/.cache/copyscope: tests never touch it. Each test
    module gets a cache folder of its own (subprocesses inherit it), set before the module's
    fixtures run, so image counts in one module do not depend on what other modules generated.
    A test that needs a cold cache of its own sets COPYSCOPE_CACHE itself (monkeypatch)."""
    old = os.environ.get("COPYSCOPE_CACHE")
    os.environ["COPYSCOPE_CACHE"] = str(tmp_path_factory.mktemp("copyscope-cache"))
    yield
    if old is None:
        os.environ.pop("COPYSCOPE_CACHE", None)
    else:
        os.environ["COPYSCOPE_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def _reports_round_trip(tmp_path_factory):
    """Every report.json the session's audits wrote (under its temporary folders, subprocess audits included)
    reads into the typed AuditReport and writes back unchanged (copyscope.results). Files a test wrote
    malformed on purpose (not JSON, not a report) are left to that test."""
    yield
    import json

    from copyscope.results import AuditReport, ReportFormatError

    changed = []
    for path in tmp_path_factory.getbasetemp().rglob("report.json"):
        try:
            if not path.is_file() or path.stat().st_size > 256 << 20:
                continue
            data = json.loads(path.read_text())
            report = AuditReport.from_json(data)
        except (OSError, ValueError, RecursionError, ReportFormatError):  # the bad-input tests' files
            continue
        if report.to_json() != data or AuditReport.from_json(report.to_json()) != report:
            changed.append(str(path))
    assert not changed, f"report.json files that do not round-trip through AuditReport: {changed}"


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """A base pipeline folder, a ControlNet folder, two LoRA files and a control image on disk."""
    from copyscope.demo.tiny import save_tiny_zoo

    root = tmp_path_factory.mktemp("tiny_models")
    return save_tiny_zoo(root, seed=0, n_loras=2, controlnet=True)




@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on a shared 2-core machine two OpenMP threads per process
    can be 10x slower than one (they spin waiting for each other)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random-weight CLIP folder (the offline stand-in for the CLIP backbone)."""
    from copyscope.analyses.clip_zero_shot import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


@pytest.fixture
def no_hang():
    """A command that does not answer within 60 s fails the test instead of hanging the suite (the
    bad-input files use it for every case)."""
    def on_alarm(signum, frame):
        raise TimeoutError("the command did not answer within 60 s (a hang)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def assets(tiny_models, tmp_path):
    """The tiny models and a fresh folder: what a bad-input case builds its zoo from."""
    return {"root": tmp_path, **tiny_models}
