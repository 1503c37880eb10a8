"""``dmv-fast warm-up``: compile and cache the analysis and trajectory kernels once."""

from __future__ import annotations

from typing import Annotated

import typer

from dmv_fast.cli.terminal import one_line_errors, setup_logging


def warm_up(
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Compile the analysis and trajectory kernels (numba) into their on-disk caches, so that
    the first render starts in seconds. `make setup` runs it after installing."""
    from dmv_fast.render.job import warm_up as run

    setup_logging(False, quiet)
    with one_line_errors():
        timings = run()
    if not quiet:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        typer.echo(f"kernels compiled and cached ({parts})")
