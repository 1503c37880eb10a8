"""Timing generator calls: fresh inputs, warm-up, a time budget, percentiles."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

TRUNCATION = 1.0  # the original's default; the cost per frame does not depend on it


def random_inputs(
    rng: np.random.Generator, n: int, truncation: float = TRUNCATION
) -> tuple[np.ndarray, np.ndarray]:
    """Fresh non-zero inputs like the ones a song produces.

    Returns:
        ``noise`` ``np.ndarray [shape=(n, 128)]`` float32 in ``[-2T, 2T]`` and ``classes``
        ``np.ndarray [shape=(n, 1000)]`` float32 with 12 classes weighted in (0, 1].
    """
    noise = np.clip(rng.standard_normal((n, 128)), -2, 2) * truncation
    classes = np.zeros((n, 1000), np.float32)
    for row in classes:
        picks = rng.choice(1000, 12, replace=False)
        row[picks] = rng.uniform(0.05, 1.0, 12)
        row[picks[0]] = 1.0
    return noise.astype(np.float32), classes


def time_calls(
    call: Callable[[np.ndarray, np.ndarray], Any],
    batch: int,
    budget_s: float,
    *,
    seed: int = 0,
    warmup: int = 2,
    min_calls: int = 3,
    max_calls: int = 2000,
    synchronize: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds per ``call(noise, classes)`` on fresh inputs, after ``warmup`` untimed calls.

    Calls continue until ``budget_s`` seconds of timed calls have passed (at least
    ``min_calls``, at most ``max_calls``). Inputs are made outside the timed region;
    ``synchronize`` (e.g. ``torch.cuda.synchronize``) is inside it.
    """
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        call(*random_inputs(rng, batch))
    if synchronize is not None:
        synchronize()
    times: list[float] = []
    spent = 0.0
    while len(times) < max_calls and (len(times) < min_calls or spent < budget_s):
        noise, classes = random_inputs(rng, batch)
        t0 = clock()
        call(noise, classes)
        if synchronize is not None:
            synchronize()
        dt = clock() - t0
        times.append(dt)
        spent += dt
    return times


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def call_stats(times: list[float], batch: int) -> dict[str, Any]:
    """What a row reports of its timed calls (seconds each, ``batch`` frames per call).

    Returns:
        ``frames_per_s`` (batch / median call), ``call_ms_p50``, ``call_ms_p99`` and
        ``calls``.
    """
    if not times:
        raise ValueError("no timed calls")
    median = statistics.median(times)
    return {
        "frames_per_s": round(batch / median, 3),
        "call_ms_p50": round(1000 * median, 3),
        "call_ms_p99": round(1000 * percentile(times, 99), 3),
        "calls": len(times),
    }
