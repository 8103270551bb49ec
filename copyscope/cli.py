"""The ``copyscope`` command line. Each command parses options and calls one library function;
user errors print one red line and exit with code 2."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from .common.errors import CopyscopeError
from .common.termtext import plain, term

if TYPE_CHECKING:
    from .audit.prepare import PreparedAudit

# Library chatter (optional-backend notices, loading bars) would bury the audit's own output.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    help="Attribute copying of protected works by a Stable Diffusion pipeline to the models in it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


def user_errors(fn):
    """Turn CopyscopeError into one red line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CopyscopeError as exc:
            # one line whatever the message holds; '[...]' in paths and keys is text, not markup, and
            # control characters of file names are shown escaped (termtext)
            message = term(" ".join(str(exc).split()) if "\n" in str(exc) else str(exc))
            console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


ZooArg = typer.Argument(..., help="zoo YAML file", show_default=False)
AllowPickleOpt = typer.Option(False, "--allow-pickle", help="allow .ckpt/.bin/.pt weights (they can run code when loaded)")



def _print_attribution(tables, report: dict) -> None:
    """The attribution tables, then (adaptive seeds) the line saying the rounds and why they stopped."""
    from .estimate.adaptive import adaptive_line

    for table in tables:
        out.print(table)
    line = adaptive_line(report)
    if line:  # from report.json: untrusted
        out.print(plain(line), highlight=False, markup=False)

@app.command()
@user_errors
def validate(zoo: Path = ZooArg):
    """Check a zoo file (schema, names, files) without loading any model."""
    from .audit import prepare_audit

    prep = prepare_audit(zoo, strict_files=False)
    n_players = max(g.n_players for g in prep.plan.games)
    out.print(
        f"[green]ok[/] {term(zoo)}: {len(prep.plan.games)} base(s), {n_players} player(s), "
        f"{len(prep.refs.files)} reference image(s) in {len(prep.refs.works)} work(s), "
        f"{len(prep.plan.items)} image(s) per coalition, metrics: {', '.join(m.name for m in prep.metrics)}"
    )
    for name, reason in prep.unavailable.items():
        out.print(f"  [yellow]unavailable[/] {term(name)}: {term(reason)}")  # reasons hold 'copyscope[extra]'
    _print_missing(prep)


def _print_missing(prep: PreparedAudit) -> None:
    for problem in prep.missing_files:
        out.print(f"  [yellow]needed before `audit`:[/] {term(problem)}", highlight=False)


@app.command()
@user_errors
def plan(
    zoo: Path = ZooArg,
    calibrate: bool = typer.Option(False, help="time a short generation run to estimate the audit's duration"),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="a card's memory (e.g. 24GB): which memory plans fit it"),
    images_per_second: Optional[float] = typer.Option(None, "--images-per-second", min=1e-6,
                                                      help="a measured throughput: the audit's GPU-hours"),
):
    """Print the games, coalitions and number of images an audit will generate (and, given a card, what fits it)."""
    from .audit import prepare_audit
    from .audit.planning import describe_plan
    from .plan.memory import parse_size

    memory = parse_size(gpu_memory) if gpu_memory is not None else None
    prep = prepare_audit(zoo, strict_files=False)
    describe_plan(prep, out, calibrate=calibrate, gpu_memory=memory, images_per_second=images_per_second)
    _print_missing(prep)


@app.command()
@user_errors
def audit(
    zoo: Path = ZooArg,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: the zoo file's 'output')"),
    allow_pickle: bool = AllowPickleOpt,
):
    """Generate, score and attribute: writes report.json (and the views) to the output folder."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .audit import AuditHooks, audit_zoo
    from .audit.distributed import launch_state, run_distributed_audit
    from .report import attribution_tables

    # Under `accelerate launch` / torchrun with several processes, all of them generate and
    # process 0 scores and reports (docs/scale.md).
    state = launch_state()
    worker = state is not None and not state.is_main_process
    if allow_pickle and not worker:
        console.print(
            "[yellow]warning:[/] --allow-pickle: pickle checkpoints can execute arbitrary code when loaded; use only files you trust",
            soft_wrap=True,
        )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
        disable=worker or (not console.is_terminal and os.environ.get("COPYSCOPE_PROGRESS") != "1"),
    ) as progress:
        gen_task = progress.add_task("generating images", total=0)
        score_task = progress.add_task("scoring (coalition x metric)", total=0)
        load_task = progress.add_task("loading models", total=None)

        def on_event(msg: str):
            progress.update(load_task, description=term(msg))  # messages name files: not markup
            if not console.is_terminal:
                console.print(plain(msg), markup=False, highlight=False)

        def counter(task):
            def on_progress(advance: int, add_total: int):
                if add_total:
                    progress.update(task, total=(progress.tasks[task].total or 0) + add_total)
                if advance:
                    progress.advance(task, advance)

            return on_progress

        # learned features (effnet, sscd, ...): shown once a backbone embeds images not in the feature cache
        feat_task = progress.add_task("learned features (images)", total=0, visible=False)
        feat_counter = counter(feat_task)

        def on_features(advance: int, add_total: int):
            if add_total and not progress.tasks[feat_task].visible:
                progress.update(feat_task, visible=True)
            feat_counter(advance, add_total)

        hooks = AuditHooks(on_event=on_event, on_generate=counter(gen_task), on_score=counter(score_task),
                           on_features=on_features)
        if state is None:
            report = audit_zoo(zoo, out_dir, allow_pickle=allow_pickle, hooks=hooks)
        else:
            report = run_distributed_audit(zoo, out_dir, allow_pickle=allow_pickle, hooks=hooks, state=state)
        progress.update(load_task, description="done", total=1, completed=1)
    if report is None:  # a worker process of a distributed run: process 0 writes the report
        # Leave without interpreter finalization: Gloo's worker threads can still hold work objects
        # with Python references after destroy_process_group, and finalizing them aborts the process
        # ("terminate called without an active exception", SIGABRT; pytorch/pytorch#179291), which
        # makes the launcher kill process 0 mid-audit. Nothing is left to write here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    _print_attribution(attribution_tables(report), report)
    gen = report["generation"]
    out.print(
        f"generated {gen['generated']} image(s), {gen['cached']} from cache, {gen['seconds']:.1f} s generating; "
        f"report: {term(Path(report['output_dir']) / 'report.json')}"
    )
    if gen.get("generated_while_scoring"):
        console.print(
            f"[yellow]warning:[/] process 0 had to generate {gen['generated_while_scoring']} image(s) the other processes "
            "should have written: is the cache on a filesystem every node shares? (docs/scale.md)"
        )
    if report["unavailable_metrics"]:
        out.print(
            "metrics unavailable on this machine (skipped; `copyscope metrics` says why): "
            + ", ".join(map(term, report["unavailable_metrics"]))
        )
    _warn_flagged(report)
    _warn_seeds(report)


def _warn_seeds(report: dict) -> None:
    from .report import seed_warning

    warn = seed_warning(report)
    if warn:
        console.print(f"[yellow]warning:[/] {term(warn)}", highlight=False, soft_wrap=True)  # from report.json


def _warn_flagged(report: dict) -> None:
    """One warning line per game whose generated images came out NaN or black (scored as stored)."""
    for g in report.get("games", []):
        flagged = g.get("flagged_images") or {}
        if not flagged:
            continue
        counts: dict[str, int] = {}
        for per_image in flagged.values():
            for flags in per_image.values():
                for f in flags:
                    counts[f] = counts.get(f, 0) + 1
        n = sum(len(per_image) for per_image in flagged.values())
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        coalitions = ", ".join(repr(c) if c else "'' (empty)" for c in flagged)
        console.print(
            f"[yellow]warning:[/] base {term(g['base'])}: {n} generated image(s) flagged ({term(kinds)}) in coalition(s) "
            f"{term(coalitions)}; NaN pixels are stored as black and scored as such; see flagged_images in report.json",
            highlight=False, soft_wrap=True,
        )


@app.command("metrics")
@user_errors
def metrics_cmd(zoo: Optional[Path] = typer.Argument(None, help="zoo file whose 'backbones' to use")):
    """List every metric, its orientation, and whether it is available on this machine."""
    from rich.table import Table

    from .score.metrics import list_metrics

    backbones = {}
    if zoo is not None:
        from .config import load_zoo

        backbones = load_zoo(zoo).spec.backbones
    t = Table(title="copyscope metrics")
    for col in ("name", "kind", "orientation", "available", "definition"):
        t.add_column(col)
    for row in list_metrics(backbones):
        t.add_row(*map(term, (row["name"], row["kind"], row["orientation"], "yes" if row["available"] else f"no: {row['reason']}",
                                row["description"])))
    out.print(t)


@app.command()
@user_errors
def report(out_dir: Path = typer.Argument(..., help="an audit's output folder (holding report.json)")):
    """Re-render the views (HTML, CSV, table) from report.json alone."""
    from .common.outdir import OutputFolder, interrupted_note, os_error_message
    from .report import VIEW_FILES, attribution_tables, write_views
    from .results import read_report

    data = read_report(out_dir).to_json()  # checked: a fault is one line naming the key
    try:
        with OutputFolder(out_dir).run(VIEW_FILES, "report") as stage:
            write_views(data, stage, view_root=out_dir)
        tables = attribution_tables(data)
    except OSError as exc:
        raise os_error_message(exc) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # what read_report does not check (the free-form sections: controls, adaptive) of a hand-edited report
        raise CopyscopeError(
            f"lacks what the views need ({exc.__class__.__name__}: {' '.join(str(exc).split())[:120]}); "
            "expected the report.json an audit wrote (rerun `copyscope audit`)", where=str(out_dir / "report.json"),
        ) from None
    _print_attribution(tables, data)
    _warn_seeds(data)
    note = interrupted_note(out_dir)
    if note:
        console.print(f"[yellow]note:[/] {term(note)}", highlight=False, markup=True, soft_wrap=True)


@app.command()
@user_errors
def ablate(
    zoo: Path = ZooArg,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="the audit's output folder (default: the zoo file's 'output')"),
    ground_truth: Optional[Path] = typer.Option(None, "--ground-truth",
                                                help="ground_truth.json (default: found beside the zoo file or the base model)"),
    allow_pickle: bool = AllowPickleOpt,
):
    """Compare metrics on the audit's cached images: agreement, seeds needed, planted-component recovery; writes ablation.json."""
    from .analyses.ablate import ablation_tables, run_ablation
    from .audit import AuditHooks

    result = run_ablation(zoo, out_dir, allow_pickle=allow_pickle, ground_truth=ground_truth,
                          hooks=AuditHooks(on_event=lambda m: console.print(plain(m), highlight=False, markup=False)))
    for table in ablation_tables(result):
        out.print(table)
    out.print(f"ablation: {plain(Path(result['output_dir']) / 'ablation.json')} (and ablation.csv, ablation_seeds.csv, report.html)",
              highlight=False, markup=False)


def _echo(message: str) -> None:
    console.print(plain(message), highlight=False, markup=False)  # messages name files


def _print_analysis(tables: list, result: dict, filename: str) -> None:
    for table in tables:
        out.print(table)
    out.print(f"report: {plain(Path(result['output_dir']) / filename)}", markup=False, highlight=False)


@app.command("reward-split")
@user_errors
def reward_split_cmd(
    zoo: Path = ZooArg,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: <zoo output>/reward-split)"),
    metric: Optional[str] = typer.Option(None, "--metric", help="per-image metric of the worth (default: reward_split.metric, clip)"),
    allow_pickle: bool = AllowPickleOpt,
):
    """Split a reward between the artists (prompt players) and the model (Glinsky & Sokolsky); writes reward_split.json."""
    from .analyses.reward_split import reward_split_tables, run_reward_split

    result = run_reward_split(zoo, out_dir, metric=metric, allow_pickle=allow_pickle, on_event=_echo)
    _print_analysis(reward_split_tables(result), result, "reward_split.json")


@app.command("imitation")
@user_errors
def imitation_cmd(
    zoo: Path = ZooArg,
    n_images: Optional[int] = typer.Option(None, "--n-images", help="images per artist (default: imitation.n_images)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: <zoo output>/imitation)"),
    allow_pickle: bool = AllowPickleOpt,
):
    """Can the base imitate each artist at all? (Casper et al.: CLIP zero-shot identification + matching test); writes imitation.json."""
    from .analyses.imitation import imitation_tables, run_imitation

    result = run_imitation(zoo, out_dir, n_images=n_images, allow_pickle=allow_pickle, on_event=_echo)
    _print_analysis(imitation_tables(result), result, "imitation.json")


@app.command("dose")
@user_errors
def dose_cmd(
    zoo: Path = ZooArg,
    player: str = typer.Option(..., "--player", help="the player whose strength varies (a LoRA, ControlNet or IP-Adapter)"),
    weights: str = typer.Option("0,0.25,0.5,0.75,1,1.25", "--weights", help="comma-separated strengths"),
    metric: Optional[str] = typer.Option(None, "--metric", help="per-image metric of the worth (default: phash)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: <zoo output>/dose)"),
    allow_pickle: bool = AllowPickleOpt,
):
    """How a component's copying grows with its strength, alone and with the rest of the pipeline; writes dose.json and dose.svg."""
    from .analyses.dose import dose_tables, parse_weights, run_dose

    result = run_dose(zoo, player, parse_weights(weights), out_dir, metric=metric, allow_pickle=allow_pickle, on_event=_echo)
    _print_analysis(dose_tables(result), result, "dose.json")


@app.command("conditioning")
@user_errors
def conditioning_cmd(
    zoo: Path = ZooArg,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: the zoo file's 'output')"),
    allow_pickle: bool = AllowPickleOpt,
):
    """Compute the ControlNet conditioning maps (from_work / from_image) without generating anything."""
    from .audit.prepare import write_maps

    rows = write_maps(zoo, out_dir, allow_pickle=allow_pickle, on_event=_echo)
    if not rows:
        out.print(f"{plain(zoo)}: no ControlNet computes its conditioning (no 'from_work' or 'from_image'); nothing to do",
                  markup=False, highlight=False)
    for r in rows:
        out.print(plain(f"{r['controlnet']}: {r['detector']} of {r['source']} -> {r['map']}"), markup=False, highlight=False)


def _mount_subapps() -> None:
    # The demo ships with copyscope and its command module imports only typer at the top (its heavy
    # dependencies load inside the commands), so an ImportError here is a bug: let it surface
    # instead of dropping `copyscope demo` silently.
    from .demo.cli import demo_app

    app.add_typer(demo_app, name="demo", help="Build the embedded demo zoo with planted infringement.")


_mount_subapps()
__import__("copyscope.generate.cache_cli", fromlist=["register"]).register(app, user_errors, out)
__import__("copyscope.evidence.cli", fromlist=["register"]).register(app, user_errors, out)  # bundle, verify


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # `python -m copyscope.cli` (what `accelerate launch -m` runs)
    app()
