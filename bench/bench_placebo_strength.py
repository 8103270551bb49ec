"""How strong is a random placebo, and does a stronger one reproduce the generic change that fools ssim?

    python bench/bench_placebo_strength.py OUT [--zoo demo_zoo] [--seeds 8]

On the demo zoo's three LoRAs, each alone on the base (no ControlNet, the shipped audit's prompt and sampling):
the LoRA itself; its spectrum-matched placebo (copyscope.controls.placebo: random input and output directions,
the one copyscope ships); a variant that keeps the LoRA's input singular directions and randomises only the
output ones (every input then gets an update of exactly the LoRA's size); and both at higher weights. Per row:
the mean absolute pixel change from the base's images and the change of phash, ssim and rgb_ssim (similarity to
the work, the mean over seeds). Writes the placebo files and a zoo file under OUT; images go to the zoo's cache.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

LORAS = {"planted": "planted", "coffee": "decoy-coffee", "rocket": "decoy-rocket"}
# (name, variant, source, weight): variant "lora" is the LoRA itself
ROWS = [(n, "lora", n, 1.0) for n in LORAS] + [(f"{n}-random", "random", n, 1.0) for n in LORAS] \
    + [(f"{n}-keep-inputs", "keep_inputs", n, 1.0) for n in LORAS] \
    + [("planted-random-w3", "random", "planted", 3.0), ("planted-random-w4", "random", "planted", 4.0),
       ("coffee-random-w3", "random", "coffee", 3.0), ("planted-keep-inputs-w2", "keep_inputs", "planted", 2.0),
       ("planted-keep-inputs-w3", "keep_inputs", "planted", 3.0), ("coffee-keep-inputs-w2", "keep_inputs", "coffee", 2.0)]


def write_keep_inputs(src: Path, dst: Path, seed: int = 0) -> None:
    """The variant placebo: each layer's update keeps its singular values and its input (right) singular vectors;
    its output (left) singular vectors are drawn at random."""
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from copyscope.controls.placebo import _layer_rng, _pairs
    from copyscope.modelfiles.formats import safetensors_header

    pairs = _pairs(src, safetensors_header(src))
    with safe_open(str(src), framework="pt") as f:
        meta, t = dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    for dn, un in pairs.items():
        d, u = t[dn], t[un]
        r = d.shape[0]
        up = u.to(torch.float64).reshape(u.shape[0], r).numpy()
        down = d.to(torch.float64).reshape(r, -1).numpy()
        _, ru = np.linalg.qr(up)
        qd, rd = np.linalg.qr(down.T)
        _, s, bt = np.linalg.svd(ru @ rd.T)
        inputs = qd @ bt.T  # the update's right singular vectors (n x k)
        k = len(s)
        outputs, _ = np.linalg.qr(_layer_rng(seed, dn).standard_normal((up.shape[0], k)))
        new_up, new_down = np.zeros((up.shape[0], r)), np.zeros((r, down.shape[1]))
        new_up[:, :k], new_down[:k, :] = outputs * np.sqrt(s), (inputs * np.sqrt(s)).T
        t[un] = torch.from_numpy(new_up).reshape(u.shape).to(u.dtype).contiguous()
        t[dn] = torch.from_numpy(new_down).reshape(d.shape).to(d.dtype).contiguous()
    save_file(t, str(dst), metadata=meta)


def main() -> None:
    import numpy as np
    import yaml

    from copyscope.audit import prepare_audit
    from copyscope.controls.placebo import write_placebo
    from copyscope.generate import CoalitionEngine, GenerationStats, ensure_images
    from copyscope.score.scorer import Scorer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--zoo", type=Path, default=Path("demo_zoo"))
    ap.add_argument("--seeds", type=int, default=8)
    a = ap.parse_args()
    out, demo = a.out.resolve(), a.zoo.resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for n, src in LORAS.items():
        lora = demo / "loras" / f"{src}.safetensors"
        files[(n, "lora")] = lora
        files[(n, "random")] = out / f"{n}-random.safetensors"
        write_placebo(lora, files[(n, "random")])
        files[(n, "keep_inputs")] = out / f"{n}-keep-inputs.safetensors"
        write_keep_inputs(lora, files[(n, "keep_inputs")])
    zoo = {
        "name": "placebo-strength", "output": str(out / "audit"),
        "bases": [{"name": "tiny-sd", "model": str(demo / "base")}],
        "loras": [{"name": name, "model": str(files[(src, variant)]), "weight": w} for name, variant, src, w in ROWS],
        "references": [{"name": "astronaut", "paths": [str(demo / "references" / "astronaut")]}],
        "prompts": [{"name": "astronaut-neutral", "text": "a painting", "negative": "", "work": "astronaut"}],
        "generation": {"resolution": 32, "steps": 20, "guidance": 5.0, "scheduler": "ddim", "seeds": a.seeds,
                       "batch_size": 8, "dtype": "float32", "device": "auto"},
        "estimator": {"method": "permutation", "budget": 20},  # never run: only single-LoRA coalitions are generated
        "metrics": ["phash", "ssim", "rgb_ssim"],
        "controls": {"positive": False},
    }
    (out / "zoo.yaml").write_text(yaml.safe_dump(zoo, sort_keys=False))
    prep = prepare_audit(out / "zoo.yaml", out / "audit")
    game = prep.plan.games[0]
    n = len(game.players)
    engine = CoalitionEngine(prep.zoo, game, conditioning=prep.conditioning)
    coalitions = [tuple(False for _ in range(n))] + [tuple(j == i for j in range(n)) for i in range(n)]
    keys = ensure_images(engine, prep.cache, coalitions, prep.plan.items, GenerationStats())
    engine.release()
    scorer = Scorer(prep.metrics, prep.cache, prep.refs, prep.zoo.spec.aggregate)

    def pixels(ks):
        return np.stack([prep.cache.load(k) for k in ks])

    def scores(ks):
        return {m.name: float(np.mean(scorer.per_image_scores(m, ks))) for m in prep.metrics}

    base_pixels, base = pixels(keys[coalitions[0]]), scores(keys[coalitions[0]])
    print(f"| alone on the base ({a.seeds} seeds) | weight | pixel change | phash | ssim | rgb_ssim |")
    print("|---|---|---|---|---|---|")
    for (name, _, _, w), c in zip(ROWS, coalitions[1:]):
        s = scores(keys[c])
        print(f"| {name} | {w:g} | {np.abs(pixels(keys[c]) - base_pixels).mean():.3f} | "
              + " | ".join(f"{s[m] - base[m]:+.3f}" for m in ("phash", "ssim", "rgb_ssim")) + " |")


if __name__ == "__main__":
    main()
