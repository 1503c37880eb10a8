"""``dmv-fast export``: the ONNX graph this machine's plan runs, exported once and cached."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import ProgressBars, one_line_errors, setup_logging


def export(
    resolution: params.Resolution = params.RESOLUTION,
    weights: params.Weights = None,
    backend: Annotated[
        params.BackendChoice, typer.Option("--backend", help="The backend the graph is for.")
    ] = params.BACKEND,
    precision: params.Precision = params.PRECISION,
    batch_size: params.BatchSize = params.BATCH_SIZE,
    scaling: params.Scaling = params.SCALING,
    pixels: params.Pixels = params.PIXELS,
    aspect: params.Aspect = None,
    size: params.Size = None,
    fill: params.Fill = params.FILL,
    output: Annotated[
        Path | None, typer.Option("--output", help="Copy the ONNX graph here too.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Export even if cached.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    verbose: params.Verbose = False,
) -> None:
    """Export BigGAN-deep to ONNX for this machine's plan (cached; needs the export extra).

    The graph is the one `dmv-fast render` with the same settings runs: `auto` is settled
    as for a render (fp16 with YUV planes on a GPU, fp32 batch 4 on the CPU).
    """
    from dmv_fast.model.cache import copy_onnx, ensure_graph
    from dmv_fast.settings.plan import resolve

    setup_logging(verbose, quiet)
    with one_line_errors("no graph was cached"):
        spec = params.model_spec(
            resolution, weights, backend, precision, batch_size, scaling, pixels, aspect, size, fill
        )
        plan = resolve(spec, encoder="x264", workers=1)
        with ProgressBars(enabled=not quiet) as progress:
            path = ensure_graph(
                plan, lambda done, total: progress("export", done, total), force=force
            )
        if output is not None:
            path = copy_onnx(path, output)
    typer.echo(str(path))
