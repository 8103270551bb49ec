"""Shared fixtures: tiny SD-shaped models built from configs (no hub, no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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


