#!/usr/bin/env python
# usage: python bench/check_demo_bit_identity.py BASELINE_CACHE "coal1,coal2"
#   (BASELINE_CACHE from an audit of model_zoo.yaml made before a change)
"""Bit-identity of the shipped demo under the player-class engine: every image key equals the
baseline run's (made with the engine before this branch), and regenerated images equal its PNGs."""
import sys
import time
from pathlib import Path
import numpy as np
from copyscope.audit import prepare_audit
from copyscope.generate import CoalitionEngine
from copyscope.generate.cache import ImageCache
from copyscope.common.files import key_of

base = ImageCache(Path(sys.argv[1]))
prep = prepare_audit("model_zoo.yaml", out="/tmp/fam_unused")
game = prep.plan.games[0]
eng = CoalitionEngine(prep.zoo, game)
keys = {}
for c in game.all_coalitions():
    keys[c] = [key_of(eng.image_fields(c, it)) for it in prep.plan.items]
allk = {k for ks in keys.values() for k in ks}
print("keys", len(allk), "all in baseline cache:", all(base.has(k) for k in allk))
check = [c for c in game.all_coalitions() if game.coalition_key(c) in sys.argv[2].split(",")]
for c in check:
    t = time.time()
    imgs = eng.generate(c, prep.plan.items)
    from copyscope.common.files import to_uint8
    same = all(np.array_equal(to_uint8(im), to_uint8(base.load(k))) for im, k in zip(imgs, keys[c]))
    print(repr(game.coalition_key(c)), "pixels identical:", same, f"{time.time()-t:.0f}s")
