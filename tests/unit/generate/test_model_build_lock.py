"""A backbone built while a pipeline loads in another thread: accelerate's init_empty_weights (which diffusers'
from_pretrained enters) patches torch process-wide, so a model built meanwhile would get meta tensors with no
data. The validity benchmark crashed on this (effnet built by the audit's background scoring thread while the
engine loaded); copyscope builds models under one lock (copyscope.common.model_lock.MODEL_BUILD_LOCK)."""

from __future__ import annotations

import threading
import time

import numpy as np


def test_effnet_built_while_another_thread_loads_a_model():
    from accelerate import init_empty_weights

    from copyscope.score.metrics import build_metrics
    from copyscope.common.model_lock import MODEL_BUILD_LOCK

    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    expected = np.asarray(build_metrics(["effnet"], {}, device="cpu")[0].features([img]))
    metric = build_metrics(["effnet"], {}, device="cpu")[0]  # a fresh backbone: its model is not built yet
    started = threading.Event()

    def load_elsewhere():  # what the engine's load does: the lock, then from_pretrained's empty-weights context
        with MODEL_BUILD_LOCK, init_empty_weights():
            started.set()
            time.sleep(1.0)

    t = threading.Thread(target=load_elsewhere)
    t.start()
    started.wait()
    got = np.asarray(metric.features([img]))  # waits for the other load to finish, then builds a real model
    t.join()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
