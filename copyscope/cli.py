"""The ``copyscope`` command line. Each command parses options and calls one library function;
user errors print one red line and exit with code 2."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .errors import CopyscopeError

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
            console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code)

    return wrapper


ZooArg = typer.Argument(..., help="zoo YAML file", show_default=False)


@app.command()
@user_errors
def validate(zoo: Path = ZooArg):
    """Check a zoo file (schema, names, files) without loading any model."""
    from .audit import prepare_audit

    prep = prepare_audit(zoo, strict_files=False)
    n_players = max(g.n_players for g in prep.plan.games)
    out.print(
        f"[green]ok[/] {zoo}: {len(prep.plan.games)} base(s), {n_players} player(s), "
        f"{len(prep.refs.files)} reference image(s) in {len(prep.refs.works)} work(s), "
        f"{len(prep.plan.items)} image(s) per coalition, metrics: {', '.join(m.name for m in prep.metrics)}"
    )
    for name, reason in prep.unavailable.items():
        out.print(f"  [yellow]unavailable[/] {name}: {reason}")
    _print_missing(prep)


def _print_missing(prep) -> None:
    for problem in prep.info.get("missing_files", []):
        out.print(f"  [yellow]needed before `audit`:[/] {problem}", highlight=False)


@app.command()
@user_errors
def plan(
    zoo: Path = ZooArg,
    calibrate: bool = typer.Option(False, help="time a short generation run to estimate the audit's duration"),
):
    """Print the games, coalitions and number of images an audit will generate."""
    from .audit import prepare_audit
    from .planning import describe_plan

    prep = prepare_audit(zoo, strict_files=False)
    describe_plan(prep, out, calibrate=calibrate)
    _print_missing(prep)


@app.command()
@user_errors
def audit(
    zoo: Path = ZooArg,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: the zoo file's 'output')"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="allow .ckpt/.bin/.pt weights (they can run code when loaded)"),
):
    """Generate, score and attribute: writes report.json (and the views) to the output folder."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .audit import AuditHooks, run_audit
    from .distributed import launch_state, run_distributed_audit
    from .report import attribution_tables

    # Under `accelerate launch` / torchrun with several processes, all of them generate and
    # process 0 scores and reports (docs/scale.md).
    state = launch_state()
    worker = state is not None and not state.is_main_process
    if allow_pickle and not worker:
        console.print("[yellow]warning:[/] --allow-pickle: pickle checkpoints can execute arbitrary code when loaded; use only files you trust")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
        disable=worker or (not console.is_terminal and os.environ.get("COPYSCOPE_PROGRESS") != "1"),
    ) as progress:
        gen_task = progress.add_task("generating images", total=0)
        load_task = progress.add_task("loading models", total=None)

        def on_event(msg: str):
            progress.update(load_task, description=msg)
            if not console.is_terminal:
                console.print(msg)

        def on_generate(advance: int, add_total: int):
            if add_total:
                progress.update(gen_task, total=(progress.tasks[gen_task].total or 0) + add_total)
            if advance:
                progress.advance(gen_task, advance)

        hooks = AuditHooks(on_event=on_event, on_generate=on_generate)
        if state is None:
            report = run_audit(zoo, out_dir, allow_pickle=allow_pickle, hooks=hooks)
        else:
            report = run_distributed_audit(zoo, out_dir, allow_pickle=allow_pickle, hooks=hooks, state=state)
        progress.update(load_task, description="done", total=1, completed=1)
    if report is None:  # a worker process of a distributed run: process 0 writes the report
        return
    for table in attribution_tables(report):
        out.print(table)
    gen = report["generation"]
    out.print(
        f"generated {gen['generated']} image(s), {gen['cached']} from cache, {gen['seconds']:.1f} s generating; "
        f"report: {Path(report['output_dir']) / 'report.json'}"
    )
    if report["unavailable_metrics"]:
        out.print(
            "metrics unavailable on this machine (skipped; `copyscope metrics` says why): "
            + ", ".join(report["unavailable_metrics"])
        )


@app.command("metrics")
@user_errors
def metrics_cmd(zoo: Optional[Path] = typer.Argument(None, help="zoo file whose 'backbones' to use")):
    """List every metric, its orientation, and whether it is available on this machine."""
    from rich.table import Table

    from .metrics import list_metrics

    backbones = {}
    if zoo is not None:
        from .config import load_zoo

        backbones = load_zoo(zoo).spec.backbones
    t = Table(title="copyscope metrics")
    for col in ("name", "kind", "orientation", "available", "definition"):
        t.add_column(col)
    for row in list_metrics(backbones):
        t.add_row(row["name"], row["kind"], row["orientation"], "yes" if row["available"] else f"no: {row['reason']}", row["description"])
    out.print(t)


@app.command()
@user_errors
def report(out_dir: Path = typer.Argument(..., help="an audit's output folder (holding report.json)")):
    """Re-render the views (HTML, CSV, table) from report.json alone."""
    import json

    from .report import attribution_tables, write_views

    path = out_dir / "report.json"
    if not path.is_file():
        raise CopyscopeError("no report.json here (run `copyscope audit` first)", where=str(out_dir))
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CopyscopeError(f"report.json is not valid JSON (line {exc.lineno})", where=str(path)) from None
    write_views(data, out_dir)
    for table in attribution_tables(data):
        out.print(table)


def _mount_optional_subapps() -> None:
    try:
        from .demo.cli import demo_app
    except ImportError:
        return
    app.add_typer(demo_app, name="demo", help="Build the embedded demo zoo with planted infringement.")


_mount_optional_subapps()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # `python -m copyscope.cli` (what `accelerate launch -m` runs)
    app()
