"""Running a row: plan, build, time, end-to-end render; optionally in its own process."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from dmv_fast.bench.e2e import E2E_LIMIT, e2e_row
from dmv_fast.bench.machine import OtherLoad, PeakRSS, peak_fraction, sgemm_peak
from dmv_fast.bench.measure import call_stats, graph_gmac, time_calls
from dmv_fast.bench.rows import (
    BACKENDS,
    FULL_SIZE,
    RANDOM,
    Row,
    Unavailable,
    first_line,
    ort_call,
    prepare_row,
    torch_call,
)

logger = logging.getLogger("dmv_fast")


def measure_row(
    name: str,
    resolution: int,
    batch: int,
    seconds: float,
    *,
    song_seconds: float = 0.0,
    songs: dict[float, Path] | None = None,
    workdir: Path | None = None,
    e2e_limit: float | None = None,
    weights: str = RANDOM,
    shape: dict[str, Any] | None = None,
) -> Row:
    """Plan, build and time one row in this process, then its end-to-end render.

    Args:
        name: a key of :data:`BACKENDS`.
        resolution, batch: the model's resolution and batch size asked for.
        seconds: time budget of the timed calls.
        song_seconds, songs, workdir, e2e_limit: the end-to-end render
            (:func:`dmv_fast.bench.e2e.e2e_row`).
        weights: see :func:`~dmv_fast.bench.rows.backend_plan`; the peak fraction needs the
            full architecture (``"random"`` or a pretrained name).
        shape: the frame's ``aspect``, ``size`` and ``fill``
            (:func:`~dmv_fast.bench.rows.backend_plan`): a frame that is not square counts
            its multiply-adds off its own graph.
    """
    row = Row(name, resolution, batch)
    extra: dict[str, Any] = {}
    try:
        plan = prepare_row(name, resolution, batch, weights, shape)  # exports outside the window
        if plan is not None and plan.frame_size != (resolution, resolution):
            row.frame_size = list(plan.frame_size)
        with PeakRSS() as rss:
            call, extra = torch_call(resolution, row) if plan is None else ort_call(name, plan, row)
            with OtherLoad() as load:
                times = time_calls(
                    call,
                    batch,
                    seconds,
                    seed=resolution * 1000 + batch,
                    synchronize=extra.get("synchronize"),
                )
        for key, value in call_stats(times, batch).items():
            setattr(row, key, value)
        row.peak_rss_mb, row.other_cores_busy = rss.peak_mb, load.cores
        gpu_mem = extra.get("gpu_memory")
        row.gpu_mem_mb = gpu_mem() if gpu_mem is not None else None
        if extra.get("on_cpu"):
            assert row.frames_per_s is not None
            row.sgemm_gflops = sgemm_peak()["gflops"]  # now, under the same load
            if weights in FULL_SIZE and plan is not None and plan.spec.shape.resampled:
                from dmv_fast.model.cache import ensure_graph

                fp32 = dataclasses.replace(plan, precision="fp32")  # int8: as many multiply-adds
                row.gmac_per_frame = graph_gmac(ensure_graph(fp32))
            elif weights in FULL_SIZE:
                row.gmac_per_frame = BACKENDS[name].gmac[resolution]
            if row.gmac_per_frame is not None:
                row.sgemm_fraction = peak_fraction(
                    row.frames_per_s, row.gmac_per_frame, row.sgemm_gflops
                )
    except Unavailable as exc:
        row.status, row.reason = "skipped", str(exc)
        logger.info("%s %d px batch %d: skipped (%s)", name, resolution, batch, exc)
        return row
    except Exception as exc:  # one broken backend must not stop the others
        row.status, row.reason = "failed", first_line(exc)
        logger.warning("%s %d px batch %d failed: %s", name, resolution, batch, exc)
        return row
    limit = E2E_LIMIT if e2e_limit is None else e2e_limit
    row.e2e = e2e_row(
        row, extra.get("visualizer"), song_seconds, seconds, songs, workdir, limit=limit
    )
    return row


def _row_in_child(kwargs: dict[str, Any]) -> Row:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    return measure_row(**kwargs)


def measure_isolated(name: str, resolution: int, batch: int, seconds: float, **kwargs: Any) -> Row:
    """:func:`measure_row` in a fresh (spawned) Python process; same arguments.

    The row's peak RSS is then its own, not what earlier rows or the export left behind, and a
    backend that crashes the interpreter only fails its own row. The plan and the export run
    here first, so an unavailable row costs no process.
    """
    import concurrent.futures
    import multiprocessing

    row = Row(name, resolution, batch)
    try:
        prepare_row(name, resolution, batch, kwargs.get("weights", RANDOM), kwargs.get("shape"))
    except Unavailable as exc:
        logger.info("%s %d px batch %d: skipped (%s)", name, resolution, batch, exc)
        row.status, row.reason = "skipped", str(exc)
        return row
    except Exception as exc:
        logger.warning("%s %d px batch %d failed: %s", name, resolution, batch, exc)
        row.status, row.reason = "failed", first_line(exc)
        return row
    job = {"name": name, "resolution": resolution, "batch": batch, "seconds": seconds, **kwargs}
    job.setdefault("songs", {})
    ctx = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            return pool.submit(_row_in_child, job).result()
    except concurrent.futures.process.BrokenProcessPool as exc:
        row.status, row.reason = "failed", f"the measuring process died: {exc}"
        return row


def log_row(row: Row) -> None:
    """One info line for a measured row (skips and failures are logged where they happen)."""
    if row.status == "ok":
        logger.info(
            "%s %d px batch %d: %.2f frames/s, %.1f ms per call",
            row.backend,
            row.resolution,
            row.batch_size,
            row.frames_per_s,
            row.call_ms_p50,
        )
