"""Does batching the learned-feature extraction pay on the CPU? EfficientNet-Lite0 (effnet, 224 px) per image
at forward batches of 8 (one demo coalition, what the audit's background scorer embeds at a time), 16 and 32.

    python bench/bench_effnet_batch.py [--repeats 3] [--images 64]

One process, one torch thread; the batch sizes alternate within each repeat (same machine load for each);
the memo is cleared before every pass, so every image is embedded. Prints ms per image, min over repeats.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=64)
    args = ap.parse_args()
    import numpy as np
    import torch

    from copyscope.score.metrics import build_metrics
    from copyscope.score.scorer import learned_backbones

    torch.set_num_threads(1)
    (bb,) = learned_backbones(build_metrics(["effnet"]))
    rng = np.random.default_rng(0)
    bb.embed([rng.random((32, 32, 3), dtype=np.float32)])  # weights loaded outside the timing
    res: dict[int, list[float]] = {8: [], 16: [], 32: []}
    for _ in range(args.repeats):
        for b in res:
            bb.options["batch_size"] = b
            bb._memo.clear()
            imgs = [rng.random((32, 32, 3), dtype=np.float32) for _ in range(args.images)]
            t = time.perf_counter()
            bb.embed(imgs)
            res[b].append(time.perf_counter() - t)
    for b, v in res.items():
        print(f"batch {b:2d}: {1000 * min(v) / args.images:6.1f} ms/image (min of {args.repeats}); "
              f"passes {', '.join(f'{x:.2f}' for x in v)} s")


if __name__ == "__main__":
    main()
