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


def count_macs(model: Any, batch: int) -> dict[str, int]:
    """Multiply-accumulates per frame of a graph's Conv, ConvTranspose, MatMul and Gemm nodes
    (a Winograd graph's transforms and batched products included).

    Args:
        model: an ``onnx.ModelProto`` with static shapes (its large weights may be left out:
            shape inference needs only their shapes).
        batch: the graph's static batch.

    Returns:
        ``{"conv": ..., "matmul": ...}``, multiply-accumulates per frame.
    """
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    shapes: dict[str, list[int]] = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    for t in inferred.graph.initializer:
        shapes[t.name] = list(t.dims)
    counts = {"conv": 0, "matmul": 0}
    for node in inferred.graph.node:
        if node.op_type == "Conv":  # weights [O, C / group, kh, kw]: per output element
            w = shapes[node.input[1]]
            counts["conv"] += int(np.prod(shapes[node.output[0]])) * w[1] * w[2] * w[3]
        elif node.op_type == "ConvTranspose":  # weights [C, O / group, kh, kw]: per input
            w = shapes[node.input[1]]
            counts["conv"] += int(np.prod(shapes[node.input[0]])) * w[1] * w[2] * w[3]
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes[node.input[0]]
            k = a[-1] if node.op_type == "MatMul" else a[1]
            counts["matmul"] += int(np.prod(shapes[node.output[0]])) * k
    return {k: v // batch for k, v in counts.items()}


def graph_gmac(path: Any) -> float:
    """Multiply-accumulates per frame (GMAC) of an exported graph file (:func:`count_macs`;
    the weights' bytes are not read)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:  # shapes are enough; drop the bytes of large weights
        if t.data_type != onnx.TensorProto.INT64 and len(t.raw_data) > 4096:
            t.raw_data = b""
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    return round(sum(count_macs(model, batch).values()) / 1e9, 2)
