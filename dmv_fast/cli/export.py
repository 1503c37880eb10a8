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
        if output is not None:
            _check_output(output)
        with ProgressBars(enabled=not quiet) as progress:
            path = ensure_graph(
                plan, lambda done, total: progress("export", done, total), force=force
            )
        if output is not None:
            path = copy_onnx(path, output)
    typer.echo(str(path))


def _check_output(output: Path) -> None:
    """Refuse an ``--output`` the graph could not be copied to, before exporting: the first
    folder of it that exists must take a new file (tried under a temporary name)."""
    from dmv_fast.files import temporary_name

    out = output.expanduser()
    folder = out if out.is_dir() else out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"--output {str(output)!r} is inside {str(folder)!r}, not a folder")
    probe = temporary_name(folder / "dmv-fast-export")
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as e:
        raise ValueError(
            f"--output folder {str(folder)!r} does not take a new file ({e.strerror or e})"
        ) from None
