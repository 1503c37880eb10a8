"""One benchmark row: a backend at one resolution and batch size, planned, built and timed.

A row's backend comes from :data:`BACKENDS`. The ONNX Runtime rows are built from
:mod:`dmv_fast.settings.plan` (:class:`~dmv_fast.settings.spec.ModelSpec`, :func:`~dmv_fast.settings.plan.resolve`,
:class:`~dmv_fast.render.api.Visualizer`), so they run exactly what a render with those settings
runs. A row that cannot run here is a :class:`Row` with status ``"skipped"`` and the reason:
``resolve`` refused the backend, or the plan (or the session) settled on another backend or
precision than the row names, or a package the row needs is missing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dmv_fast.bench.machine import (
    GRAPH_GMAC,
    ORIGINAL_GMAC,
    gpu_memory_mb,
)
from dmv_fast.bench.measure import TRUNCATION

if TYPE_CHECKING:  # pragma: no cover
    from dmv_fast.settings.plan import Plan

logger = logging.getLogger("dmv_fast")

Status = Literal["ok", "skipped", "failed"]
RANDOM = "random"
#: Weights of the full architecture, whose multiply-accumulates per frame are known.
FULL_SIZE = (RANDOM, "biggan-deep-128", "biggan-deep-256", "biggan-deep-512")


@dataclass(frozen=True)
class Backend:
    """What a row runs.

    Attributes:
        backend: the :class:`~dmv_fast.settings.spec.ModelSpec` backend (``"cpu"``, ``"cuda"``,
            ``"tensorrt"``), or ``None`` for torch eager (CUDA when torch sees a GPU).
        precision: the graph's precision (``"fp32"``, ``"fp16"``, ``"int8"``).
        gmac: multiply-accumulates per frame (GMAC) by resolution, for the CPU peak fraction.
    """

    backend: str | None
    precision: str
    gmac: dict[int, float]


#: Row name -> backend. The order is the default order of ``dmv-fast bench``.
BACKENDS: dict[str, Backend] = {
    # pytorch-pretrained-biggan in eager mode + the original's per-frame uint8 conversion.
    "torch": Backend(None, "fp32", ORIGINAL_GMAC),
    "ort-cpu": Backend("cpu", "fp32", GRAPH_GMAC),
    "ort-cuda-fp32": Backend("cuda", "fp32", GRAPH_GMAC),
    "ort-cuda-fp16": Backend("cuda", "fp16", GRAPH_GMAC),
    "ort-trt-fp16": Backend("tensorrt", "fp16", GRAPH_GMAC),
    # Planned, quantized (dmv_fast_export.quantize), timed and reported like "ort-cpu"; its
    # peak fraction is against the fp32 sgemm peak.
    "ort-cpu-int8": Backend("cpu", "int8", GRAPH_GMAC),
}


class Unavailable(Exception):
    """A row that cannot run on this machine; the message says why."""


@dataclass
class Row:
    """One measured (or skipped, or failed) row of ``dmv-fast bench``.

    ``frame_size``: ``[height, width]`` of a frame that is not the square native picture
    (``--aspect``, ``--size``), with ``shape`` its description; None for a square render.

    Times in milliseconds, memory in MiB, throughput in frames per second. ``plan`` is the
    resolved plan's :meth:`~dmv_fast.settings.plan.Plan.to_dict` (for torch rows: the same keys, with
    ``backend`` ``"torch-cpu"``/``"torch-cuda"``); ``e2e`` the end-to-end render's figures
    (see :func:`dmv_fast.bench.e2e.e2e_row`). The CPU rows carry the sgemm peak in GFLOP/s,
    the row's multiply-accumulates per frame and the fraction of the peak it reaches.
    """

    backend: str
    resolution: int
    batch_size: int
    status: Status = "ok"
    frame_size: list[int] | None = None
    reason: str = ""
    plan: dict[str, Any] | None = None
    providers: list[str] | None = None
    precision: str | None = None
    load_s: float | None = None
    frames_per_s: float | None = None
    call_ms_p50: float | None = None
    call_ms_p99: float | None = None
    calls: int | None = None
    peak_rss_mb: float | None = None
    other_cores_busy: float | None = None
    gpu_mem_mb: float | None = None
    sgemm_gflops: float | None = None
    gmac_per_frame: float | None = None
    sgemm_fraction: float | None = None
    e2e: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as written to ``bench.json``: every field for an ``ok`` row; backend,
        resolution, batch, status, reason (and the plan when known) otherwise."""
        data = dataclasses.asdict(self)
        if self.frame_size is None:  # square rows read as they always did
            del data["frame_size"]
        if self.status == "ok":
            del data["reason"]
            return data
        keep = ("backend", "resolution", "batch_size", "frame_size", "status", "reason")
        short = {k: data[k] for k in keep if k in data}
        if self.plan is not None:
            short["plan"] = self.plan
        return short


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for a failed row's reason."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Planning


def backend_plan(
    name: str,
    resolution: int,
    batch: int,
    weights: str = RANDOM,
    shape: dict[str, Any] | None = None,
) -> Plan | None:
    """The resolved plan of an ONNX Runtime row (``None`` for torch eager).

    ``weights``: ``"random"`` (the full architecture, seeded), a pretrained name or a local
    folder (a small model keeps the tests short); the torch rows run ``"random"`` only.
    ``shape``: the frame's ``aspect``, ``size`` and ``fill`` (:class:`ModelSpec` fields);
    the torch rows paint square frames only.

    Raises:
        Unavailable: the row cannot run here: a missing package, a backend that
            :func:`~dmv_fast.settings.plan.resolve` refuses, or a plan that settles on another backend
            or precision than the row names.
    """
    kind = BACKENDS[name]
    shape = {k: v for k, v in (shape or {}).items() if v is not None}
    if kind.backend is None:
        if any(k != "fill" for k in shape):
            raise Unavailable("the original's way (torch eager) paints square frames only")
        if weights != RANDOM:
            raise Unavailable(f"the torch rows run the {RANDOM!r} weights only, not {weights!r}")
        for module in ("torch", "pytorch_pretrained_biggan"):
            if importlib.util.find_spec(module) is None:
                raise Unavailable(f"{module} is not installed (pip install 'dmv-fast[export]')")
        return None
    if importlib.util.find_spec("onnxruntime") is None:
        raise Unavailable("onnxruntime is not installed (pip install 'dmv-fast[cpu]' or '[gpu]')")
    from dmv_fast.settings.choices import GRAPH_PRECISIONS
    from dmv_fast.settings.plan import resolve
    from dmv_fast.settings.spec import ModelSpec

    if kind.precision not in GRAPH_PRECISIONS:
        raise Unavailable(f"this dmv-fast exports no {kind.precision} graphs")
    spec = ModelSpec(resolution, weights, kind.backend, kind.precision, batch, **shape)
    try:
        plan = resolve(spec, encoder="x264", workers=1, lanes=1)  # one call: one session
    except ValueError as exc:
        raise Unavailable(str(exc)) from exc
    _check_settled(name, plan)
    return plan


def _check_settled(name: str, plan: Plan) -> None:
    kind = BACKENDS[name]
    if (plan.backend, plan.precision) != (kind.backend, kind.precision):
        raise Unavailable(
            f"asked for {kind.backend} {kind.precision}, the plan runs {plan.backend} "
            f"{plan.precision}"
        )


def prepare_row(
    name: str,
    resolution: int,
    batch: int,
    weights: str = RANDOM,
    shape: dict[str, Any] | None = None,
) -> Plan | None:
    """Plan a row and export its graph (in this process, before anything is measured).

    Raises:
        Unavailable: see :func:`backend_plan`; or the graph is not cached and torch, which
            exports it, is not installed.
    """
    plan = backend_plan(name, resolution, batch, weights, shape)
    if plan is None:
        return None
    from dmv_fast.model import cache as models

    try:
        models.ensure_graph(plan)
    except ImportError as exc:
        raise Unavailable(f"cannot export the graph here: {exc}") from exc
    except RuntimeError as exc:
        if models.torch_available():
            raise
        raise Unavailable(f"cannot export the graph here: {exc}") from exc
    return plan


# --------------------------------------------------------------------------------------------
# Building the callables


Call = Callable[[np.ndarray, np.ndarray], Any]


def torch_call(resolution: int, row: Row) -> tuple[Call, dict[str, Any]]:
    """torch eager + the per-frame uint8 conversion; fills ``row.plan`` and ``providers``."""
    from dmv_fast.bench.original import torch_frames

    call, device = torch_frames(resolution)
    row.providers, row.precision = [f"torch-{device}"], "fp32"
    row.plan = {
        "resolution": resolution,
        "precision": "fp32",
        "batch_size": row.batch_size,
        "scaling": 1,
        "pixels": "stretch",
        "pixel_format": "rgb24",
        "weights": "random",
        "backend": f"torch-{device}",
        "providers": [f"torch-{device}"],
    }
    extra: dict[str, Any] = {"on_cpu": device == "cpu"}
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        extra["synchronize"] = torch.cuda.synchronize
        extra["gpu_memory"] = lambda: round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return call, extra


def ort_call(name: str, plan: Plan, row: Row) -> tuple[Call, dict[str, Any]]:
    """:class:`~dmv_fast.render.api.Visualizer` on ``plan``; fills ``row.plan``, ``providers``,
    ``precision`` and ``load_s`` (seconds to build the session)."""
    import time

    from dmv_fast.render.api import Visualizer

    vis = Visualizer(plan)
    t0 = time.perf_counter()
    gen = vis.generator
    row.load_s = round(time.perf_counter() - t0, 2)
    _check_settled(name, vis.plan)  # the session may have fallen back: then not this row

    def call(noise: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return gen.generate(noise, classes, TRUNCATION)

    row.plan = vis.plan.to_dict()
    row.providers, row.precision = list(gen.providers), vis.plan.precision
    extra: dict[str, Any] = {"on_cpu": not vis.plan.on_gpu, "visualizer": vis}
    if vis.plan.on_gpu:
        extra["gpu_memory"] = gpu_memory_mb
    return call, extra
