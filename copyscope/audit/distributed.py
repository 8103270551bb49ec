"""Distributed generation: split an audit's images over the processes of an ``accelerate launch``.

Which coalitions an audit evaluates is known before any image exists: the exact estimator needs
all 2**n, and a sampled estimator draws its coalitions from (seed, budget, n) only, never from the
worths. :func:`planned_coalitions` reads them from the estimator's own ``plan``
(:func:`copyscope.plan.games.planned_coalitions`, the same list plan.json holds).

The work items are the fixed batch chunks (``generation.batch_size`` items) of every planned
coalition, in the order a single process would generate them; they are dealt round robin to the
``W`` processes (:func:`assign_chunks`; ``ensure_images(work_filter=...)``), each process writing
each image to the shared, content-addressed cache (atomic writes, so two processes never see half
an image). After a barrier, the per-process counts are gathered and process 0 alone runs the
ordinary audit: it finds every image in the cache, scores, estimates and writes the report.
Because chunks are the same fixed batches a single process would feed the pipeline and every
image has its own seeded generator, the images, hence the report's values, are identical to a
single-process run.

Commands (docs/scale.md)::

    accelerate launch --multi_gpu --num_processes 4 -m copyscope.cli audit model_zoo.yaml
    torchrun --nproc_per_node 2 -m copyscope.cli audit model_zoo.yaml      # also on CPU (gloo)
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..generate import BackgroundQueue, CoalitionEngine, GenerationStats, ensure_images

if TYPE_CHECKING:
    from ..plan.games import GamePlan
    from .prepare import PreparedAudit

# Environment variables that a multi-process launcher (torchrun / accelerate launch / mpirun) sets.
_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world_size() -> int:
    """Number of processes the launcher started (1 for a plain run); reads the environment only."""
    for var in _WORLD_SIZE_VARS:
        value = os.environ.get(var)
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                continue
    return 1


def launch_state(cpu: bool | None = None):
    """The ``accelerate.PartialState`` of a multi-process launch, or None for a single process.

    ``cpu=None`` picks gloo on CPU when no CUDA device is visible (or ``ACCELERATE_USE_CPU`` is set),
    else NCCL with one GPU per process (``cuda:LOCAL_RANK``). A plain ``copyscope audit`` never
    initialises anything here.
    """
    if launched_world_size() <= 1:
        return None
    import datetime

    import torch
    from accelerate import PartialState

    if cpu is None:
        cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    # Processes wait at the barrier for the slowest one: allow long audits (default 30 min is not enough).
    timeout = datetime.timedelta(seconds=float(os.environ.get("COPYSCOPE_DIST_TIMEOUT", 12 * 3600)))
    state = PartialState(cpu=cpu, timeout=timeout)
    if state.num_processes <= 1:
        return None
    return state


# ---------------------------------------------------------------------------------- planning
def planned_coalitions(prep: PreparedAudit, game: GamePlan) -> list[tuple[bool, ...]]:
    """The coalitions ``run_audit`` will evaluate for ``game``, in generation order: the estimator's
    own plan (:meth:`copyscope.audit.prepare.PreparedAudit.coalitions`, the list plan.json holds)."""
    return prep.coalitions(game)


def count_planned(prep: PreparedAudit) -> list[int]:
    """Distinct coalitions per game of a prepared audit (what ``copyscope plan`` prints)."""
    return [len(planned_coalitions(prep, g)) for g in prep.plan.games]


# ---------------------------------------------------------------------------------- generation
@dataclass
class WorkerStats:
    rank: int
    generated: int = 0
    cached: int = 0
    seconds: float = 0.0
    switches: int = 0
    chunks: int = 0
    wall_seconds: float = 0.0


def assign_chunks(sizes: list[int], world: int, loads: list[tuple[int, int]] | None = None) -> list[int]:
    """Owner rank of each chunk: round robin over the chunks in generation order, except that a
    chunk goes to the rank with the fewest chunks, then the fewest images, so far (ties: lowest
    rank). With equal chunks this is plain ``i % world``; with a short last chunk per coalition it
    keeps ranks from always drawing the short ones. Depends only on the sizes, so every process
    computes the same assignment. ``loads`` ((chunks, images) per rank) carries over between games."""
    loads = loads if loads is not None else [(0, 0)] * world
    owners = []
    for size in sizes:
        r = min(range(world), key=lambda q: (loads[q][0], loads[q][1], q))
        loads[r] = (loads[r][0] + 1, loads[r][1] + size)
        owners.append(r)
    return owners


def generate_share(
    prep: PreparedAudit,
    rank: int,
    world: int,
    *,
    allow_pickle: bool = False,
    device: str | None = None,
    on_event: Callable[[str], None] | None = None,
) -> WorkerStats:
    """Generate this process's share (see :func:`assign_chunks`) of every image the audit will
    need, into the shared cache. Chunks are numbered over all games, in plan order."""
    t0 = time.perf_counter()
    out = WorkerStats(rank=rank)
    loads = [(0, 0)] * world
    n_items = len(prep.plan.items)
    for game in prep.plan.games:
        coalitions = planned_coalitions(prep, game)
        engine = CoalitionEngine(prep.zoo, game, allow_pickle=allow_pickle, on_event=on_event, conditioning=prep.conditioning)
        if device is not None and engine.device.split(":")[0] == device.split(":")[0]:
            engine.device = device  # same device type (so the same image keys), this process's index
        bs = engine.gen.batch_size
        sizes = [min(bs, n_items - start) for _ in coalitions for start in range(0, n_items, bs)]
        owners = assign_chunks(sizes, world, loads)
        stats = GenerationStats()
        with BackgroundQueue() as queue:  # PNG writes overlap the next batch
            ensure_images(engine, prep.cache, coalitions, prep.plan.items, stats,
                          work_filter=lambda i: owners[i] == rank, queue=queue)  # noqa: B023 - called only in this iteration
        out.chunks += sum(1 for o in owners if o == rank)
        out.generated += stats.generated
        out.cached += stats.cached
        out.seconds += stats.seconds
        out.switches += engine.switches
        engine.release()
    out.wall_seconds = time.perf_counter() - t0
    return out


def merge_generation(main_pass: dict, workers: list[WorkerStats]) -> dict:
    """The report's ``generation`` section of a distributed run.

    ``main_pass`` is what process 0's audit pass counted (everything planned is cached by then;
    anything it still had to generate is counted as generated). ``generated`` sums over processes,
    so it means what it means in a single-process run: images this audit run created.
    """
    gen_workers = sum(w.generated for w in workers)
    return {
        **main_pass,
        "generated": gen_workers + main_pass.get("generated", 0),
        "cached": max(0, main_pass.get("cached", 0) - gen_workers),
        "seconds": round(sum(w.seconds for w in workers) + main_pass.get("seconds", 0.0), 3),
        "adapter_switches": sum(w.switches for w in workers) + main_pass.get("adapter_switches", 0),
        "processes": len(workers),
        "generated_while_scoring": main_pass.get("generated", 0),  # 0 when the plan covered everything
        "generation_wall_seconds": round(max(w.wall_seconds for w in workers), 3),
        "per_process": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(w).items()} for w in workers
        ],
    }


def run_distributed_audit(
    zoo_path: str | Path,
    out: str | Path | None = None,
    *,
    allow_pickle: bool = False,
    hooks=None,
    state=None,
) -> dict | None:
    """Generate on every process, then audit on process 0. Returns the report on process 0 and
    None on the others. ``state`` defaults to :func:`launch_state`; without a multi-process launch
    this is a plain :func:`copyscope.audit.run_audit`."""
    from . import AuditHooks, audit_zoo, prepare_audit, run_audit

    hooks = hooks or AuditHooks()
    state = state if state is not None else launch_state()
    if state is None:
        return audit_zoo(zoo_path, out, allow_pickle=allow_pickle, hooks=hooks)
    from accelerate.utils import gather_object

    rank, world = state.process_index, state.num_processes
    prep = prepare_audit(zoo_path, out, allow_pickle)  # every process fails alike on bad input
    device = str(state.device) if str(state.device).startswith("cuda") else None
    on_event = hooks.on_event if state.is_main_process else None
    mine = generate_share(prep, rank, world, allow_pickle=allow_pickle, device=device, on_event=on_event)
    state.wait_for_everyone()  # every planned image is in the cache from here on
    workers = [WorkerStats(**w) if isinstance(w, dict) else w for w in gather_object([asdict(mine)])]
    workers.sort(key=lambda w: w.rank)
    _destroy_process_group()
    if not state.is_main_process:
        return None
    hooks.on_event(
        f"{world} processes generated {sum(w.generated for w in workers)} image(s) "
        f"in {max(w.wall_seconds for w in workers):.1f} s; scoring on process 0"
    )
    return run_audit(prep, hooks=hooks, generation_adjust=lambda main_pass: merge_generation(main_pass, workers))


def _destroy_process_group() -> None:
    """Only process 0 continues (scoring needs no collective); free the group so that no process
    waits on the others at exit."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - best effort teardown at exit  # pragma: no cover
        pass
