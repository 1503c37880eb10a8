"""``dmv-fast bench``: generator throughput, latency, memory and end-to-end speed per backend.

Backends (:data:`~dmv_fast.bench.rows.BACKENDS`):

- ``torch``: pytorch-pretrained-biggan in eager mode (eval mode, fp32, CUDA when torch sees a
  GPU), followed by the original's per-frame uint8 conversion in NumPy: the original's way.
- ``ort-cpu``: ONNX Runtime, CPU execution provider, fp32 graph.
- ``ort-cpu-int8``: ONNX Runtime, CPU execution provider, the int8 (QDQ) graph quantized from
  the fp32 one (a draft precision: see benchmarks/results/int8_cpu.md).
- ``ort-cuda-fp32`` / ``ort-cuda-fp16``: ONNX Runtime, CUDA execution provider.
- ``ort-trt-fp16``: ONNX Runtime, TensorRT execution provider.

Every row uses seeded random weights (``--weights random``: the same architecture, so the same
cost per frame as the pretrained model) and fresh random, non-zero inputs for every timed call.
The ONNX Runtime rows run the plan :func:`dmv_fast.settings.plan.resolve` makes for their settings; a
row that cannot run here is reported as skipped, with the reason.

This package imports torch and the exporter only when a row needs them, and nothing in the
runtime library imports it. Its modules, by job: :mod:`~dmv_fast.bench.machine` (the machine,
memory, other load, the sgemm peak), :mod:`~dmv_fast.bench.measure` (timing calls),
:mod:`~dmv_fast.bench.rows` (the backends and the :class:`Row`),
:mod:`~dmv_fast.bench.runner` (measuring a row, in its own process),
:mod:`~dmv_fast.bench.e2e` (the end-to-end render), :mod:`~dmv_fast.bench.original` (torch
eager) and :mod:`~dmv_fast.bench.report` (table, header, plot). The helpers are shared with
the scripts under ``benchmarks/``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmv_fast.bench.e2e import E2E_LIMIT, FRAME_LENGTH, end_to_end, write_song
from dmv_fast.bench.machine import (
    OtherLoad,
    PeakRSS,
    busy_cpu_s,
    environment,
    gpu_memory_mb,
    peak_rss_mb,
    sgemm_peak,
)
from dmv_fast.bench.measure import TRUNCATION, percentile, random_inputs, time_calls
from dmv_fast.bench.original import stretch_to_uint8, torch_biggan
from dmv_fast.bench.report import markdown_table, plot, report_header
from dmv_fast.bench.rows import (
    BACKENDS,
    FULL_SIZE,
    RANDOM,
    Row,
    Unavailable,
    backend_plan,
    first_line,
    prepare_row,
)
from dmv_fast.bench.runner import log_row, measure_isolated, measure_row
from dmv_fast.settings.choices import MAX_BATCH, RESOLUTIONS

__all__ = [
    "BACKENDS",
    "TRUNCATION",
    "OtherLoad",
    "PeakRSS",
    "Row",
    "Unavailable",
    "backend_plan",
    "busy_cpu_s",
    "end_to_end",
    "environment",
    "first_line",
    "gpu_memory_mb",
    "markdown_table",
    "measure_isolated",
    "measure_row",
    "peak_rss_mb",
    "percentile",
    "prepare_row",
    "random_inputs",
    "run_bench",
    "sgemm_peak",
    "stretch_to_uint8",
    "time_calls",
    "torch_biggan",
    "write_song",
]

logger = logging.getLogger("dmv_fast")


@dataclass(frozen=True)
class Settings:
    """The checked, de-duplicated settings of a run (see :func:`run_bench`)."""

    backends: list[str]
    resolutions: list[int]
    batch_sizes: list[int]
    seconds: float
    song_seconds: float
    e2e_limit: float
    shape: dict[str, Any] | None = None

    def grid(self) -> list[tuple[str, int, int]]:
        """(backend, resolution, batch) of every row, in the order they are measured."""
        return [
            (b, r, n) for b in self.backends for r in self.resolutions for n in self.batch_sizes
        ]


def check_settings(
    resolutions: list[int],
    batch_sizes: list[int],
    backends: list[str],
    seconds: float,
    song_seconds: float,
    e2e_limit: float = E2E_LIMIT,
    weights: str = RANDOM,
    shape: dict[str, Any] | None = None,
) -> Settings:
    """The settings of :func:`run_bench`, checked (``ValueError`` naming the bad one)."""
    if not resolutions:
        raise ValueError("resolutions is empty: give some of 128, 256, 512")
    for r in resolutions:
        if r not in RESOLUTIONS:
            raise ValueError(f"resolution {r} is not one of 128, 256, 512")
    if not batch_sizes:
        raise ValueError("batch sizes is empty: give integers >= 1")
    for b in batch_sizes:
        if int(b) != b or b < 1 or b > MAX_BATCH:
            raise ValueError(f"batch size {b} is out of range: integers 1-{MAX_BATCH}")
    if not backends:
        raise ValueError(f"backends is empty: give some of {', '.join(BACKENDS)}")
    for name in backends:
        if name not in BACKENDS:
            raise ValueError(f"backend {name!r} is not one of {', '.join(BACKENDS)}")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds {seconds} must be a finite number > 0")
    if not (song_seconds >= 0 and math.isfinite(song_seconds)):
        raise ValueError(f"song_seconds {song_seconds} must be >= 0 (0 skips the end-to-end rows)")
    if not (e2e_limit >= 0 and math.isfinite(e2e_limit)):
        raise ValueError(f"e2e_limit {e2e_limit} must be a finite number >= 0 (0: no limit)")
    if weights not in FULL_SIZE and not Path(weights).expanduser().exists():
        raise ValueError(
            f"weights {weights!r} is neither one of {', '.join(FULL_SIZE)} nor an existing path"
        )
    shape = {k: v for k, v in (shape or {}).items() if v is not None} or None
    if shape:
        from dmv_fast.settings.spec import ModelSpec

        unknown = sorted(set(shape) - {"aspect", "size", "fill"})
        if unknown:
            raise ValueError(f"unknown frame setting(s): {', '.join(unknown)}")
        for r in resolutions:
            ModelSpec(resolution=r, **shape)  # a bad aspect, size or fill fails here, once
    return Settings(
        list(dict.fromkeys(backends)),
        list(dict.fromkeys(resolutions)),
        list(dict.fromkeys(int(b) for b in batch_sizes)),
        float(seconds),
        float(song_seconds),
        float(e2e_limit),
        shape,
    )


def run_bench(
    out: str | os.PathLike[str],
    resolutions: list[int],
    batch_sizes: list[int],
    backends: list[str],
    seconds: float,
    song_seconds: float,
    *,
    isolate: bool = True,
    e2e_limit: float = E2E_LIMIT,
    weights: str = "random",
    shape: dict[str, Any] | None = None,
) -> str:
    """Benchmark every backend x resolution x batch size and write the results.

    Args:
        out: folder for ``bench.json`` (machine, versions, date, sgemm peak, every row with
            its plan), ``bench.md`` (the table) and ``bench.png`` (frames/s per backend and
            resolution); created if needed.
        resolutions: BigGAN-deep resolutions, from 128, 256, 512.
        batch_sizes: batch sizes asked of the model (1-1024; the CPU plan caps the graph's).
        backends: names from :data:`BACKENDS`; unavailable ones are skipped with the reason.
        seconds: time budget per measurement in seconds (timed calls stop after it; the
            end-to-end song is shortened to fit it at the measured speed).
        song_seconds: length of the synthesized song for the end-to-end rows (0: none).
        isolate: measure each row in its own process (clean peak RSS, crash isolation).
        e2e_limit: an end-to-end render that would take more than this many ``seconds``
            budgets at the measured speed is skipped; 0 renders it whatever the speed.
        weights: ``"random"`` (seeded, the full architecture: the cost per frame of the
            pretrained model), a pretrained name or a local weights folder.
        shape: the frame of every row: ``{"aspect": "16:9", "size": None, "fill": "wide"}``
            (:class:`~dmv_fast.settings.spec.ModelSpec` fields; None or omitted: square).
            Rows that are not square count their multiply-adds off their own graph; the
            torch rows are skipped.

    Returns:
        The markdown table (also in ``bench.md``).

    Raises:
        ValueError: a bad setting, before any work (nothing is written).
    """
    settings = check_settings(
        resolutions, batch_sizes, backends, seconds, song_seconds, e2e_limit, weights, shape
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    cpu_rows = any(BACKENDS[b].backend in (None, "cpu") for b in settings.backends)
    env["sgemm"] = sgemm_peak() if cpu_rows else None
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="dmv-fast-bench-") as tmp:
        songs: dict[float, Path] = {}
        for backend, res, batch in settings.grid():
            logger.info("measuring %s at %d px, batch %d", backend, res, batch)
            measure = measure_isolated if isolate else measure_row
            row = measure(
                backend,
                res,
                batch,
                settings.seconds,
                song_seconds=settings.song_seconds,
                songs={} if isolate else songs,
                workdir=Path(tmp),
                e2e_limit=settings.e2e_limit,
                weights=weights,
                shape=settings.shape,
            )
            log_row(row)
            rows.append(row)
    data = [row.to_dict() for row in rows]
    table = markdown_table(data)
    record: dict[str, Any] = {
        "resolutions": settings.resolutions,
        "batch_sizes": settings.batch_sizes,
        "backends": settings.backends,
        "seconds": settings.seconds,
        "song_seconds": settings.song_seconds,
        "e2e_limit": settings.e2e_limit,
        "weights": weights,
        "truncation": TRUNCATION,
        "frame_length": FRAME_LENGTH,
        "encoder": "x264",
        "isolated_rows": isolate,
        "shape": settings.shape,
    }
    (out / "bench.json").write_text(
        json.dumps({"environment": env, "settings": record, "rows": data}, indent=2) + "\n"
    )
    (out / "bench.md").write_text(report_header(env, record) + table)
    plot(data, out / "bench.png", f"dmv-fast bench: {env['device']} / {env['cpu']}")
    return table
