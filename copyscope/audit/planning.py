"""`copyscope plan`: what an audit will cost, before it runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..plan.games import GamePlan
    from .prepare import PreparedAudit


def describe_plan(prep: PreparedAudit, out: Console, calibrate: bool = False, gpu_memory: float | None = None,
                  images_per_second: float | None = None) -> dict:
    """Print games, players, coalitions and image counts; optionally time a short calibration run
    (one batch of the full coalition) to estimate the duration; with ``gpu_memory`` (bytes) the memory plans that
    fit such a card (copyscope.plan.memory); with ``images_per_second`` the GPU-hours. Returns the numbers printed."""
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
        fam = FAMILIES[game.family]
        if fam.video:  # each "image" is a video, stored as one film strip (copyscope.score.frames)
            g["frames_per_image"] = fam.frame_count(prep.zoo.spec.generation)
            out.print(f"each image is a video of {g['frames_per_image']} frames (one film-strip image in the cache, "
                      "scored frame by frame)")
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
        if gpu_memory is not None:
            g["memory_plans"] = _memory_table(prep, game, gpu_memory, out)
        if images_per_second is not None:
            g["gpu_hours"] = images / images_per_second / 3600
            out.print(f"at {images_per_second:g} image(s)/s: {g['gpu_hours']:.2f} GPU-hour(s) for {images} image(s) "
                      "(without cache hits)")
        if calibrate:
            g["seconds_per_image"] = _calibrate(prep, game)
            g["estimated_seconds"] = g["seconds_per_image"] * images
            out.print(f"calibration: {g['seconds_per_image']:.2f} s/image -> about {g['estimated_seconds'] / 60:.1f} min "
                      "(without cache hits)")
        summary["games"].append(g)
    return summary


def _memory_table(prep: PreparedAudit, game: GamePlan, gpu_memory: float, out: Console) -> list[dict]:
    """The memory plans of one game against a card of ``gpu_memory`` bytes, as a table."""
    from ..families import FAMILIES
    from ..plan.memory import GIB, game_sizes, plans_that_fit

    sizes = game_sizes(prep.zoo, game)  # every weight file's header, read once for the table and its notes
    rows = plans_that_fit(prep.zoo, game, gpu_memory, sizes)
    video = FAMILIES[game.family].video
    for r in rows:  # a video's activations (all its frames at once) are not in the estimate: at least this much
        r["lower_bound"] = r["lower_bound"] or video
    t = Table(title=f"GPU memory, base {game.base.name}, on a {gpu_memory / GIB:.0f} GiB card (estimate from the weight headers)")
    for col in ("offload", "quantize", "peak (GiB)", "fits"):
        t.add_column(col, justify="right" if col == "peak (GiB)" else "left")
    for r in rows:
        t.add_row(r["offload"], r["quantize"], ("at least " if r["lower_bound"] else "") + f"{r['gib']:.1f}",
                  "yes" if r["fits"] else "no")
    out.print(t)
    if sizes.nominal:
        out.print(f"the base is not on this machine: counted with the published sizes of {sizes.nominal}")
    if sizes.not_counted:
        out.print("not on this machine, not counted: " + ", ".join(sizes.not_counted))
    if video:
        out.print("videos: the estimate counts the weights and the margin of an image's activations, not those of all "
                  "of a video's frames at once: each peak is a lower bound, and 'fits' may not hold")
    return rows


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
