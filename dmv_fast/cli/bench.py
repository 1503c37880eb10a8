"""``dmv-fast bench``: every backend x resolution x batch, measured in its own process."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import one_line_errors, setup_logging


def bench(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the JSON, markdown and PNG results.")
    ] = Path("benchmarks/results"),
    resolutions: Annotated[str, typer.Option("--resolutions")] = "128,256,512",
    batch_sizes: Annotated[str, typer.Option("--batch-sizes")] = "1,8,30",
    backends: Annotated[
        str,
        typer.Option(
            "--backends",
            help="Comma list of torch,ort-cpu,ort-cuda-fp32,ort-cuda-fp16,ort-trt-fp16",
        ),
    ] = "torch,ort-cpu,ort-cuda-fp32,ort-cuda-fp16,ort-trt-fp16",
    seconds: Annotated[
        float, typer.Option("--seconds", help="Time budget per measurement.")
    ] = 10.0,
    song_seconds: Annotated[
        float, typer.Option("--song-seconds", help="Audio length for the end-to-end rows.")
    ] = 20.0,
    e2e_limit: Annotated[
        float,
        typer.Option(
            "--e2e-limit",
            help="Skip an end-to-end row that needs more than this many budgets (0: never).",
        ),
    ] = 10.0,
    aspect: params.Aspect = None,
    size: params.Size = None,
    fill: params.Fill = params.FILL,
) -> None:
    """Benchmark the backends; writes JSON, a markdown table and a PNG plot."""
    from dmv_fast.bench import run_bench

    setup_logging(False, False)
    with one_line_errors("no results were written"):
        table = run_bench(
            out=out,
            resolutions=[int(r) for r in resolutions.split(",") if r],
            batch_sizes=[int(b) for b in batch_sizes.split(",") if b],
            backends=[b for b in backends.split(",") if b],
            seconds=seconds,
            song_seconds=song_seconds,
            e2e_limit=e2e_limit,
            shape=params.frame(aspect, size, fill),
        )
    typer.echo(table)
