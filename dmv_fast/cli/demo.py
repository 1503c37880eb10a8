"""``dmv-fast demo``: a synthesized piece rendered at 128 px, with a contact sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import ProgressBars, one_line_errors, setup_logging


def demo(
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("demo.mp4"),
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="Default: pretrained if available, else random."),
    ] = None,
    frame_length: params.FrameLength = params.FRAME_LENGTH,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Synthesize a 15-second piece and render it at 128 px, with a contact sheet."""
    from dmv_fast.render.demo import run_demo

    setup_logging(False, quiet)
    with one_line_errors(), ProgressBars(enabled=not quiet) as progress:
        video, sheet = run_demo(
            output, weights=weights, frame_length=frame_length, progress=progress
        )
    typer.echo(f"wrote {video} and {sheet}")
