"""bench/bench_style_stack.py's treatments: what each style LoRA's training pictures are made of."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.bench import load_bench


def _picture():
    return np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)


def test_sepia_is_the_sepia_matrix_clipped():
    bench = load_bench("bench_style_stack")
    img = _picture()
    out = bench.treat(img, "sepia")
    r = 0.393 * img[..., 0] + 0.769 * img[..., 1] + 0.189 * img[..., 2]
    np.testing.assert_allclose(out[..., 0], np.clip(r, 0, 1), rtol=1e-6)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_poster_keeps_three_levels_and_grain_is_seeded():
    bench = load_bench("bench_style_stack")
    img = _picture()
    assert set(np.unique(bench.treat(img, "poster"))) <= {0.0, 0.5, 1.0}
    a, b = bench.treat(img, "grain", 3), bench.treat(img, "grain", 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, bench.treat(img, "grain", 4))
    with pytest.raises(ValueError, match="unknown style"):
        bench.treat(img, "watercolour")
