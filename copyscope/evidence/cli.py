"""``copyscope bundle`` / ``copyscope verify`` (library: copyscope.evidence.bundle, copyscope.evidence.verify).

``register(app, user_errors, out)`` mounts them on the main CLI, as ``copyscope cache`` is mounted (cli.py passes its
own error wrapper and console, so this module does not import cli.py, and cli.py stays under the module size limit).
Each command parses its options and calls one library function; its lines name files from the bundle: printed
plain (copyscope.common.termtext)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..common.termtext import plain


def register(app: typer.Typer, user_errors, out) -> None:
    def show(lines: list[str]) -> None:
        for line in lines:
            out.print(plain(line), markup=False, highlight=False, soft_wrap=True)

    @app.command("bundle")
    @user_errors
    def bundle_cmd(
        out_dir: Path = typer.Argument(..., help="an audit's output folder (holding report.json)"),
        archive: Optional[Path] = typer.Option(None, "--out", help="the archive to write, .tar.gz or .zip "
                                               "(default: <OUT_DIR>-evidence.tar.gz beside the folder); never overwritten"),
        sign_key: Optional[Path] = typer.Option(None, "--sign-key", help="sign the manifest with this Ed25519 private key "
                                                "(PEM; needs copyscope[sign])"),
        cache: Optional[Path] = typer.Option(None, "--cache", help="the image cache (default: report.json's cache_dir)"),
    ):
        """Write an evidence bundle: report, views, zoo file, every image the estimate used, the references, a manifest of hashes."""
        from .bundle import bundle_audit

        show(bundle_audit(out_dir, archive, sign_key=sign_key, cache=cache).lines())

    @app.command("verify")
    @user_errors
    def verify_cmd(
        bundle: Path = typer.Argument(..., help="an evidence bundle (written by `copyscope bundle`)"),
        public_key: Optional[Path] = typer.Option(None, "--public-key", help="check the manifest's signature with this "
                                                  "Ed25519 public key (PEM; needs copyscope[sign])"),
    ):
        """Re-check a bundle's hashes and recompute its numbers from its images (no GPU); exit 0: all match, 1: a mismatch."""
        from .verify import verify_bundle

        verdict = verify_bundle(bundle, public_key=public_key)
        show(verdict.lines())
        raise typer.Exit(0 if verdict.ok else 1)
