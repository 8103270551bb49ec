"""``copyscope cache info`` / ``copyscope cache prune`` (library: copyscope.generate.cache_admin).

``register(app, user_errors, out)`` mounts them on the main CLI (cli.py passes its own error
wrapper and console, so this module does not import cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

CACHE_HELP = "cache folder (default: $COPYSCOPE_CACHE, else $XDG_CACHE_HOME/copyscope, else ~/.cache/copyscope)"


def register(app: typer.Typer, user_errors, out) -> typer.Typer:
    cache_app = typer.Typer(help="Inspect or prune the shared image cache.", no_args_is_help=True)

    @cache_app.command("info")
    @user_errors
    def info(
        cache: Optional[Path] = typer.Option(None, "--cache", help=CACHE_HELP),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ):
        """Where the cache is, how many images it holds, its size, running audits."""
        from .cache_admin import cache_info, format_info

        result = cache_info(cache)
        out.print(json.dumps(result) if as_json else format_info(result), highlight=False, markup=False, soft_wrap=True)

    @cache_app.command("prune")
    @user_errors
    def prune(
        cache: Optional[Path] = typer.Option(None, "--cache", help=CACHE_HELP),
        older_than: Optional[str] = typer.Option(None, "--older-than", help="delete images unused for this long: 30d, 12h, 90m"),
        max_size: Optional[str] = typer.Option(None, "--max-size", help="then least recently used images down to this size: 10GB, 500MB"),
        dry_run: bool = typer.Option(False, "--dry-run", help="only say what would be deleted"),
    ):
        """Delete old or least recently used images; never one a running audit uses."""
        from .cache_admin import format_prune, parse_age, parse_size, prune_cache

        result = prune_cache(
            cache,
            older_than=parse_age(older_than) if older_than is not None else None,
            max_size=parse_size(max_size) if max_size is not None else None,
            dry_run=dry_run,
        )
        out.print(format_prune(result), highlight=False, markup=False, soft_wrap=True)

    app.add_typer(cache_app, name="cache")
    return cache_app
