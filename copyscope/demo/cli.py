"""``copyscope demo ...``: build (and sanity-check) the demo zoo. Mounted by copyscope.cli as ``demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..common.errors import CopyscopeError
from ..common.termtext import plain

demo_app = typer.Typer(help="The demo zoo: a tiny SD pipeline with a planted infringer and ground truth.",
                       no_args_is_help=True)


def _split(s: str, sep: str) -> list[str]:
    return [x.strip() for x in s.split(sep) if x.strip()]


@demo_app.command("build")
def build(
    out: Path = typer.Option(Path("demo_zoo"), "--out", help="output folder"),
    quick: bool = typer.Option(False, "--quick", help="a few training steps only (for tests; < 60 s)"),
    seed: int = typer.Option(0, "--seed", help="seed of everything"),
    resolution: int = typer.Option(32, "--resolution", help="training and generation resolution (multiple of 8)"),
    references: str = typer.Option("astronaut", "--references",
                                   help="comma-separated skimage.data images the planted LoRA memorises"),
    decoys: str = typer.Option("coffee;rocket", "--decoys",
                               help="decoy LoRAs, ';'-separated, each a comma-separated list of skimage images"),
    base_images: Optional[str] = typer.Option(None, "--base-images",
                                              help="comma-separated generic skimage images for the base"),
    prompt: str = typer.Option("a painting", "--prompt", help="the audit prompt = every LoRA's training caption"),
    vae_steps: Optional[int] = typer.Option(None, "--vae-steps"),
    base_steps: Optional[int] = typer.Option(None, "--base-steps"),
    controlnet_steps: Optional[int] = typer.Option(None, "--controlnet-steps"),
    lora_steps: Optional[int] = typer.Option(None, "--lora-steps"),
    lora_rank: Optional[int] = typer.Option(None, "--lora-rank", help="rank of every LoRA (default 16)"),
    check: Optional[bool] = typer.Option(None, "--check/--no-check",
                                         help="run the exact Shapley sanity check (default: on unless --quick)"),
    threads: int = typer.Option(2, "--threads", help="torch CPU threads"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the files of a non-empty --out folder"),
    images: Optional[Path] = typer.Option(None, "--images", help="a folder of image files (PNG/JPEG/...): their "
                                          "names (file stems) may be used in --references, --decoys and --base-images"),
) -> None:
    """Train the demo zoo on CPU from scikit-image's bundled images (or your own, --images) and write it to --out."""
    from .build import build_demo_zoo
    from .images import DEFAULT_BASE_IMAGES

    steps = {k: v for k, v in {"vae": vae_steps, "base": base_steps, "controlnet": controlnet_steps,
                               "lora": lora_steps}.items() if v is not None}
    try:
        build_demo_zoo(
            out,
            references=tuple(_split(references, ",")),
            decoys=tuple(tuple(_split(d, ",")) for d in _split(decoys, ";")),
            base_images=tuple(_split(base_images, ",")) if base_images else DEFAULT_BASE_IMAGES,
            resolution=resolution,
            seed=seed,
            quick=quick,
            steps=steps,
            lora_rank=lora_rank,
            prompt=prompt,
            check=check,
            threads=threads,
            log=typer.echo,
            overwrite=overwrite,
            images=images,
        )
    except CopyscopeError as e:
        typer.secho(plain(str(e)), fg="red", err=True)
        raise typer.Exit(e.exit_code) from None


@demo_app.command("check")
def check_cmd(
    zoo: Path = typer.Argument(Path("demo_zoo"), help="a built demo zoo folder"),
    seeds: int = typer.Option(8, "--seeds"),
    steps: int = typer.Option(20, "--steps"),
    guidance: float = typer.Option(5.0, "--guidance"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="save the generated images as one PNG grid"),
) -> None:
    """Exact Shapley over {controlnet-depth, LoRAs} with diffusers directly (independent of the audit engine)."""
    import torch

    from .check import check_grid_target, shapley_check

    if not (zoo / "ground_truth.json").exists():
        typer.secho(plain(f"{zoo}: no ground_truth.json (not a demo zoo?)"), fg="red", err=True)
        raise typer.Exit(2)
    if grid is not None:
        try:
            check_grid_target(grid)  # before the check runs: never over a file it did not write
        except CopyscopeError as e:
            typer.secho(plain(str(e)), fg="red", err=True)
            raise typer.Exit(e.exit_code) from None
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    res = shapley_check(zoo, seeds=seeds, steps=steps, guidance=guidance, grid_path=grid, log=typer.echo)
    typer.echo(json.dumps(res["shapley"], indent=2))


@demo_app.command("bench")
def bench_cmd(
    out: Path = typer.Option(Path("copyscope-out/validity"), "--out", help="output folder (pool, cache, results)"),
    zoo: Path = typer.Option(Path("demo_zoo"), "--zoo", help="a demo zoo (its base and ControlNet are reused)"),
    quick: bool = typer.Option(False, "--quick", help="6 scenarios on the demo zoo's own LoRAs (no training)"),
    no_controlnet: bool = typer.Option(False, "--no-controlnet", help="only the scenarios without the ControlNet"),
    kinds: Optional[str] = typer.Option(None, "--kinds", help="comma-separated scenario kinds to keep (plain, "
                                        "half-weight, transformed, plus-three, two-copiers, palette-decoy, two-works)"),
    truth: Optional[bool] = typer.Option(None, "--truth/--no-truth",
                                         help="measure true values with 32 more seeds (default: on for the full set)"),
    seed: int = typer.Option(0, "--seed", help="seed of the LoRA pool's training"),
    lora_steps: Optional[int] = typer.Option(None, "--lora-steps", help="training steps per pool LoRA (default: the zoo's)"),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads"),
    jobs: int = typer.Option(1, "--jobs", help="worker processes for the pool's training and the audits (one "
                             "torch thread each; 2 on a 2-core machine)"),
    seeds: int = typer.Option(8, "--seeds", help="audit seeds per coalition (0..N-1; the shipped zoo uses 8)"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="image cache folder (default: OUT/cache)"),
    worth: str = typer.Option("raw", "--worth", help="comma-separated worth variants to audit every scenario with "
                              "(raw, minus_mean, minus_hard, percentile, zscore; the zoo's `worth:`); the first is the "
                              "main table, a table beside it compares them"),
    placebo: bool = typer.Option(False, "--placebo", help="add the placebo LoRA player to every scenario "
                                 "(controls.placebo; twice the coalitions): do plants and decoys beat it?"),
    placebo_swap: bool = typer.Option(False, "--placebo-swap", help="put each LoRA's own placebo in its place in the "
                                      "full pipeline and alone (controls.placebo: swap; two more coalitions per LoRA): do plants "
                                      "and decoys beat their placebos?"),
    pool_recipe: str = typer.Option("demo", "--pool-recipe", help="how the pool's LoRAs are trained: demo (each alone, "
                                    "as `demo build`), or trigger-leave-alone (the works' LoRAs together, each with its "
                                    "own trigger word, so they keep their content when stacked; plain, half-weight and "
                                    "two-works scenarios)"),
) -> None:
    """The validity benchmark: audit planted scenarios, print per metric how often the plant is found."""
    import torch

    from .bench import check_demo_zoo, run_bench
    from .bench_verdicts import format_table

    torch.set_num_threads(max(1, threads))
    try:
        if quick and no_controlnet:
            raise CopyscopeError("--quick and --no-controlnet are two different subsets: choose one")
        if placebo and placebo_swap:
            raise CopyscopeError("--placebo and --placebo-swap are two designs of the same control: choose one")
        subset = "quick" if quick else "no-controlnet" if no_controlnet else "full"
        doc = run_bench(out, check_demo_zoo(zoo), subset=subset, kinds=set(_split(kinds, ",")) if kinds else None,
                        truth=truth, seed=seed, lora_steps=lora_steps, seeds=seeds, cache=cache,
                        jobs=jobs, worths=tuple(_split(worth, ",")), placebo="swap" if placebo_swap else placebo,
                        pool_recipe=pool_recipe, log=typer.echo)
    except CopyscopeError as e:
        typer.secho(plain(str(e)), fg="red", err=True)
        raise typer.Exit(e.exit_code) from None
    typer.echo(f"\n{doc['scenarios']} scenarios, {doc['wall_seconds']:.0f} s; alpha {doc['alpha']} (Holm across players)\n")
    typer.echo(format_table(doc["summary"]))
    typer.echo("Per scenario kind (headline first, then the fusion's members and the fusion):\n")
    typer.echo((Path(out) / "table_by_kind.md").read_text(encoding="utf-8"))
    typer.echo(f"results: {Path(out) / 'results.json'}, tables: {Path(out) / 'table.md'}, {Path(out) / 'table_by_kind.md'}")
