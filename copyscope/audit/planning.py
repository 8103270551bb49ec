"""`copyscope plan`: what an audit will cost, before it runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..plan.games import GamePlan
    from .prepare import PreparedAudit


def describe_plan(prep: PreparedAudit, out: Console, calibrate: bool = False) -> dict:
    """Print games, players, coalitions and image counts; optionally time a short calibration run
    (one batch of the full coalition) to estimate the duration. Returns the numbers printed."""
    from ..families import FAMILIES

    plan = prep.plan
    per_coalition = plan.images_per_coalition
    summary = {"games": []}
    for game in plan.games:
        n = game.n_players
        method = type(prep.estimator).__name__
        # exactly the coalitions the audit will evaluate (the estimator's plan; plan.json lists them)
        coalitions = prep.coalitions(game)
        n_coal = len(coalitions)
        t = Table(title=f"game: base {game.base.name} (family {game.family}, {method}, {n} players)")
        t.add_column("players")
        t.add_column("kind")
        for p in game.players:
            t.add_row(p.name, p.kind)
        out.print(t)
        if n <= 6:
            out.print("coalitions (in generation order): " + ", ".join(repr(game.coalition_key(c)) for c in coalitions))
        images = n_coal * per_coalition
        out.print(f"{n_coal} coalition(s) x {per_coalition} image(s) "
                  f"({len(plan.items) // len(plan.seeds)} prompt(s) x {len(plan.seeds)} seed(s)) = {images} image(s)")
        g = {"base": game.base.name, "family": game.family, "players": game.names, "coalitions": n_coal, "images": images}
        ctl = prep.zoo.spec.controls
        img2img = FAMILIES[game.family].img2img is not None
        if ctl.positive and prep.background is not None and not img2img:
            out.print(f"positive controls: none ({FAMILIES[game.family].title} has no img2img pipeline in diffusers)")
        elif ctl.positive and prep.background is not None:  # known copies and non-copies (copyscope.controls.positive)
            from ..controls.positive import DEFAULT_SEEDS, control_items

            per_work = control_items(prep.plan.items, prep.refs.works, ctl.seeds)
            n_src = 1 + min(ctl.negatives, len(prep.background))
            g["control_images"] = sum(len(its) for its in per_work.values()) * len(ctl.strengths) * n_src
            out.print(f"positive controls: {g['control_images']} img2img image(s) ({len(per_work)} work(s) x "
                      f"{len(ctl.strengths)} strength(s) x {n_src} source(s) x up to {ctl.seeds or DEFAULT_SEEDS} seed(s)), most "
                      "shorter than a full generation")
        if calibrate:
            g["seconds_per_image"] = _calibrate(prep, game)
            g["estimated_seconds"] = g["seconds_per_image"] * images
            out.print(f"calibration: {g['seconds_per_image']:.2f} s/image -> about {g['estimated_seconds'] / 60:.1f} min "
                      "(without cache hits)")
        summary["games"].append(g)
    return summary


def _calibrate(prep: PreparedAudit, game: GamePlan) -> float:
    """Seconds per image of the full coalition, from one timed batch after a warm-up batch."""
    from ..generate import CoalitionEngine

    engine = CoalitionEngine(prep.zoo, game, conditioning=prep.conditioning)
    engine.load()
    full = tuple(True for _ in game.players)
    items = prep.plan.items[: engine.gen.batch_size]
    engine.generate(full, items[:1])  # warm-up: first call pays one-off costs
    t0 = time.perf_counter()
    engine.generate(full, items)
    seconds = (time.perf_counter() - t0) / len(items)
    engine.release()
    return seconds
