"""The plan: every ``auto`` of a :class:`~dmv_fast.settings.spec.ModelSpec` settled once.

- :class:`~dmv_fast.settings.spec.ModelSpec` is what was asked of the model; it may say
  ``auto``.
- :class:`Plan` is what will run, from :func:`resolve`. It never says ``auto``: backend,
  ONNX Runtime providers, precision, the graph's static batch, the pixel format the graph
  hands the encoder, how the CPU graph computes its 3x3 convolutions, how many batches the
  CPU generates side by side (lanes), the encoder and the number of segment workers. The
  graph cache key, the ``-d`` manifest, the record,
  :class:`~dmv_fast.render.engine.RenderResult` and ``dmv-fast bench`` store
  :meth:`Plan.to_dict` (the lanes are not part of it: they change how fast frames come, not
  what they are).

:func:`resolve` probes the installed execution providers once per process: which ones the
installed onnxruntime offers, and which of them actually load (a one-node session). If a
session later contradicts the plan, :func:`settle` redoes it once as the CPU plan (capped
batch, fp32, RGB) with one warning; an explicit ``cuda``/``tensorrt`` that does not load is an
error. Nothing downstream decides ``auto`` again.

The choice lists, defaults and ranges are in :mod:`dmv_fast.settings.choices`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from dmv_fast.settings.choices import CONV_FORMS, ENCODERS, MAX_WORKERS, choice, int_in
from dmv_fast.settings.machine import (
    BACKEND_OF,
    CPU,
    CUDA,
    GPU_HINT,
    GPU_PROVIDERS,
    PROVIDER_OF,
    TENSORRT,
    cpu_flags,
    load_failure,
    loadable_providers,
    offered_providers,
)
from dmv_fast.settings.spec import GraphSpec, ModelSpec

logger = logging.getLogger("dmv_fast")

#: On the CPU a larger batch buys no speed (the convolutions already fill the cores) while
#: ONNX Runtime's buffers grow with it: batch 30 peaks near 3 GB at 128 px, batch 4 under 1 GB
#: (benchmarks/results/e2e_cpu.md). So the CPU graph batch is capped; GPUs use the batch asked.
CPU_BATCH_CAP = 4
#: libx264 frames/s of ONE encoder (1 thread, preset veryfast, crf 20) on one core, at
#: 512x512 and 1024x1024, from ``benchmarks/results/encoders_cpu.md``.
X264_FPS_512 = 81.5
X264_FPS_1024 = 26.0
#: Frames/s expected of the generator on one H100/H200 at 512 px fp16; other resolutions
#: scale by the exported graph's multiply-adds per frame (``benchmarks/results/macs.md``).
GPU_FPS_512 = 1500.0
_GMAC = {128: 7.5, 256: 24.6, 512: 31.9}
#: Precision ``auto`` picks on the CPU (see benchmarks/results/int8_cpu.md for why not int8).
CPU_AUTO_PRECISION = "fp32"
#: CPU flags under which the fp32 graph computes its wide 3x3 convolutions as Winograd
#: transforms, for a session on at most :data:`WINOGRAD_MAX_THREADS` threads: measured faster
#: there (benchmarks/results/winograd_cpu.md: 1.08x the whole graph on one AVX-512 thread,
#: 1.00x on two, where ONNX Runtime's direct convolutions use both cores and the transforms'
#: memory shuffles do not). Other CPUs keep the direct convolutions until a measurement says
#: otherwise.
WINOGRAD_FLAGS = ("avx512f",)
WINOGRAD_MAX_THREADS = 1
#: Batches a CPU render generates side by side, each on its own thread calling one shared
#: session with the cores shared out (1 each on 2 cores, so Winograd applies on AVX-512):
#: ONNX Runtime's intra-op threads share one batch's layers poorly, and on 2 cores two lanes
#: made 1.07x (direct) and 1.17x (Winograd) the frames/s of one session on 2 threads, weights
#: held once (benchmarks/results/lanes_cpu.md); the graph batch is shared out so that as many
#: frames are in flight (:func:`cpu_batch_cap`). Live sessions, benchmark rows and callers that
#: give a thread count keep one lane.
CPU_LANES = 2

# ---------------------------------------------------------------------------------------------
# What will run


@dataclass(frozen=True)
class Plan:
    """Everything ``auto`` was resolved to; see :func:`resolve`.

    Attributes:
        spec: the model settings asked for.
        backend: ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        providers: ONNX Runtime execution providers to request, in order.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        batch_size: the graph's static batch.
        pixel_format: what the graph hands the encoder: ``"rgb24"`` (``[B, H, W, 3]``) or
            ``"yuv420p"`` (``[B, H * 3 // 2, W]`` planes made on the GPU).
        conv_form: ``"direct"`` or ``"winograd"`` (:func:`conv_form_for`).
        lanes: batches generated side by side on the CPU (:func:`cpu_lanes`); 1 on a GPU.
        lane_threads: ONNX Runtime threads of the session the lanes share (None: one per
            core, or the caller's own count).
        encoder: ``"x264"`` or ``"nvenc"``.
        workers: segment workers (each with its own encoder); 1 renders in one stream.
        encoder_fallback: NVENC was chosen for ``auto``: if it cannot start after all, the
            writer falls back to libx264 (an explicit ``nvenc`` fails instead).
        notes: why each ``auto`` went the way it did, one line each.
        warning: what the generator logs once when its session is built (``auto`` that ends
            on the CPU), else empty.
    """

    spec: ModelSpec
    backend: str
    providers: tuple[str, ...]
    precision: str
    batch_size: int
    pixel_format: str
    encoder: str
    workers: int = 1
    conv_form: str = "direct"
    lanes: int = 1
    lane_threads: int | None = None
    encoder_fallback: bool = False
    notes: tuple[str, ...] = ()
    warning: str = ""

    @property
    def on_gpu(self) -> bool:
        return self.backend != "cpu"

    @property
    def resolution(self) -> int:
        return self.spec.resolution

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(height, width)`` of a video frame."""
        return self.spec.frame_size

    @property
    def graph(self) -> GraphSpec:
        """What picks the exported graph this plan runs (besides the weights)."""
        spec = self.spec
        return GraphSpec(
            resolution=spec.resolution,
            precision=self.precision,
            batch_size=self.batch_size,
            scaling=spec.scaling,
            pixels=spec.pixels,
            pixel_format=self.pixel_format,
            frame=spec.frame_size,
            fill=spec.fill,
            conv_form=self.conv_form,
        )

    def graph_settings(self) -> dict[str, Any]:
        """What picks the exported graph (besides the weights): part of its cache key."""
        return self.graph.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-able values (no ``auto`` anywhere)."""
        return {
            **self.graph_settings(),
            "weights": self.spec.weights_name,
            "backend": self.backend,
            "providers": list(self.providers),
            "encoder": self.encoder,
            "workers": self.workers,
        }

    def with_encoder(self, encoder: str) -> Plan:
        """This plan with a render's own encoder request settled (``auto``: the plan's own)."""
        encoder = choice("encoder", encoder, ENCODERS)
        if encoder in ("auto", self.encoder):
            return self
        notes = list(self.notes)
        chosen = _resolve_encoder(encoder, self.on_gpu, notes)
        return dataclasses.replace(self, encoder=chosen, encoder_fallback=False, notes=tuple(notes))

    def for_segments(self, workers: int | None = None) -> Plan:
        """The plan of a segmented render: every segment worker encodes with its own
        single-threaded libx264; ``workers`` (if given) replaces the plan's count."""
        if workers is not None:
            int_in("workers", workers, 1, MAX_WORKERS)
        notes = self.notes
        if self.encoder != "x264":
            notes = (*notes, "encoder x264: segments encode with libx264")
        return dataclasses.replace(
            self,
            encoder="x264",
            encoder_fallback=False,
            workers=self.workers if workers is None else workers,
            notes=notes,
        )

    def for_threads(self, threads: int | None) -> Plan:
        """This plan for one generator session on ``threads`` CPU threads (None: one per
        core), called by one thread (one lane): a CPU plan's convolution form follows the
        thread count (:func:`conv_form_for`)."""
        if self.on_gpu:
            return self
        form, note = conv_form_for("cpu", self.precision, threads=threads)
        batch = min(self.spec.batch_size, cpu_batch_cap(1))
        if form == self.conv_form and self.lanes == 1 and batch == self.batch_size:
            return self
        notes = self.notes if form == self.conv_form else (*self.notes, note)
        return dataclasses.replace(
            self, conv_form=form, lanes=1, lane_threads=None, batch_size=batch, notes=notes
        )

    def on_cpu(self, why: str) -> Plan:
        """The CPU plan for the same request: capped batch, fp32 (or int8), RGB."""
        precision = cpu_precision(self.spec)
        lanes, lane_threads, lanes_note = cpu_lanes(None, None)
        form, form_note = conv_form_for("cpu", precision, threads=lane_threads)
        return dataclasses.replace(
            self,
            backend="cpu",
            providers=(CPU,),
            precision=precision,
            batch_size=min(self.spec.batch_size, cpu_batch_cap(lanes)),
            pixel_format="rgb24",
            conv_form=form,
            lanes=lanes,
            lane_threads=lane_threads,
            workers=1,
            notes=(*self.notes, f"runs on the CPU: {why}", lanes_note, form_note),
            warning="",
        )


def cpu_precision(spec: ModelSpec) -> str:
    """The precision a CPU plan runs: the one asked for, or fp32 for ``auto``."""
    return CPU_AUTO_PRECISION if spec.precision == "auto" else spec.precision


def cpu_batch_cap(lanes: int) -> int:
    """The CPU graph's batch: :data:`CPU_BATCH_CAP` frames in flight, shared by the lanes
    (on 2 lanes, batch 2 runs as fast as batch 4 with a third less memory at 128 px)."""
    return max(1, CPU_BATCH_CAP // lanes)


def cpu_lanes(threads: int | None, lanes: int | None) -> tuple[int, int | None, str]:
    """How many batches a CPU plan generates side by side, the threads of the session they
    share, and the one-line reason.

    ``lanes`` None picks: :data:`CPU_LANES` (at most one per core) when the session would run
    on every core (``threads`` None), each lane with the cores shared out; one lane where the
    caller gives a thread count (segment workers, benchmarks). ``lanes`` 1 keeps one lane.
    """
    if lanes is not None:
        int_in("lanes", lanes, 1, CPU_LANES)
    if threads is not None or lanes == 1:
        return 1, threads, "lanes 1: one batch at a time"
    cores = os.cpu_count() or 1
    lanes = min(lanes or CPU_LANES, cores)
    if lanes == 1:
        return 1, None, "lanes 1: one core"
    return (
        lanes,
        cores // lanes,
        (f"lanes {lanes}: batches generated side by side, {cores // lanes} thread(s) each"),
    )


def conv_form_for(
    backend: str,
    precision: str,
    flags: frozenset[str] | None = None,
    threads: int | None = None,
) -> tuple[str, str]:
    """How a plan's graph computes its 3x3 convolutions, and the one-line reason.

    ``winograd`` for the CPU's fp32 graph on a CPU with every flag of
    :data:`WINOGRAD_FLAGS`, run by a session on at most :data:`WINOGRAD_MAX_THREADS` threads
    (``threads``; None: one per core); ``direct`` otherwise: GPUs choose their own
    algorithms, int8 graphs are quantized from the direct graph, other CPUs have no
    measurement yet, and with more threads the direct convolutions were as fast.
    """
    if backend != "cpu":
        return "direct", "conv direct: the GPU chooses its own convolution algorithms"
    if precision != "fp32":
        return "direct", f"conv direct: {precision} graphs keep direct convolutions"
    flags = cpu_flags() if flags is None else flags
    missing = [f for f in WINOGRAD_FLAGS if f not in flags]
    if missing:
        return "direct", (
            f"conv direct: this CPU lacks {', '.join(missing)} (Winograd measured faster "
            f"only with {', '.join(WINOGRAD_FLAGS)})"
        )
    threads = threads or os.cpu_count() or 1
    if threads > WINOGRAD_MAX_THREADS:
        return "direct", (
            f"conv direct: {threads} threads per session (Winograd measured faster only on "
            f"{WINOGRAD_MAX_THREADS})"
        )
    return "winograd", (
        f"conv winograd: the CPU has {', '.join(WINOGRAD_FLAGS)}, {threads} thread per session"
    )


# ---------------------------------------------------------------------------------------------
# Resolving


def resolve(
    spec: ModelSpec,
    *,
    encoder: str = "auto",
    workers: int | None = None,
    offered: tuple[str, ...] | None = None,
    loadable: tuple[str, ...] | None = None,
    conv_form: str | None = None,
    threads: int | None = None,
    lanes: int | None = None,
) -> Plan:
    """Settle backend, providers, precision, graph batch, pixel format, convolution form,
    encoder and workers.

    Args:
        spec: the model settings asked for.
        encoder: ``"auto"``, ``"x264"`` or ``"nvenc"``.
        workers: segment workers; None picks what keeps the encoder from being the
            bottleneck (1 on the CPU).
        offered, loadable: provider lists to use instead of probing (tests).
        conv_form: ``"direct"`` or ``"winograd"`` instead of :func:`conv_form_for`'s choice
            (benchmarks comparing the two; ``winograd`` only where the graph allows it).
        threads: the CPU threads of the generator's session (None: one per core, shared out
            among the lanes), which the convolution form follows.
        lanes: batches generated side by side on the CPU (None: :func:`cpu_lanes` picks; 1:
            one at a time, as a live session runs).

    Raises:
        ValueError: an explicit backend or encoder this machine cannot run (one line, before
            any work).
    """
    encoder = choice("encoder", encoder, ENCODERS)
    if workers is not None:
        int_in("workers", workers, 1, MAX_WORKERS)
    offered = offered_providers() if offered is None else tuple(offered)
    notes: list[str] = []
    warning = ""
    providers: tuple[str, ...]
    if spec.backend in ("cuda", "tensorrt"):
        wanted = PROVIDER_OF[spec.backend]
        if wanted not in offered:
            raise ValueError(
                f"backend {spec.backend!r} needs onnxruntime-gpu, but the installed onnxruntime "
                f"offers only {', '.join(offered)}: {GPU_HINT}"
            )
        loadable = loadable_providers(offered) if loadable is None else tuple(loadable)
        if wanted not in loadable:
            raise ValueError(
                f"backend {spec.backend!r}: {wanted} did not load ({load_failure(wanted)})"
            )
        backend = spec.backend
        providers = (TENSORRT, CUDA, CPU) if backend == "tensorrt" else (CUDA, CPU)
        providers = tuple(p for p in providers if p in loadable)
    elif spec.backend == "cpu" or spec.cpu_only:
        backend, providers = "cpu", (CPU,)
        if spec.backend == "auto":
            notes.append(f"precision {spec.precision} runs on the CPU")
    else:
        gpu_offered = [p for p in GPU_PROVIDERS if p in offered]
        loadable = (
            (loadable_providers(offered) if gpu_offered else (CPU,))
            if loadable is None
            else tuple(loadable)
        )
        gpu = [p for p in GPU_PROVIDERS if p in loadable]
        if gpu:
            backend, providers = BACKEND_OF[gpu[0]], (*gpu, CPU)
            notes.append(f"backend {backend}: {gpu[0]} loads")
        else:
            backend, providers = "cpu", (CPU,)
            why = (
                f"{', '.join(gpu_offered)} did not load ({load_failure(gpu_offered[-1])})"
                if gpu_offered
                else f"the installed onnxruntime has no GPU provider ({GPU_HINT} on a GPU machine)"
            )
            notes.append(f"backend cpu: {why}")
            warning = f"generator runs on the CPU: {why}"
    on_gpu = backend != "cpu"
    if spec.precision != "auto":
        precision = spec.precision
    else:
        precision = "fp16" if on_gpu else cpu_precision(spec)
    lane_threads: int | None = threads
    n_lanes = 1
    if not on_gpu:
        n_lanes, lane_threads, lanes_note = cpu_lanes(threads, lanes)
        notes.append(lanes_note)
    batch = spec.batch_size if on_gpu else min(spec.batch_size, cpu_batch_cap(n_lanes))
    if batch != spec.batch_size:
        notes.append(f"graph batch {batch}: the CPU batch cap ({CPU_BATCH_CAP} frames in flight)")
    pixel_format = "yuv420p" if on_gpu else "rgb24"
    form, form_note = conv_form_for(backend, precision, threads=lane_threads)
    if conv_form is not None:
        form = choice("conv_form", conv_form, CONV_FORMS)
        form_note = f"conv {form}: asked for"
    notes.append(form_note)
    chosen_encoder = _resolve_encoder(encoder, on_gpu, notes)
    if workers is None:
        shape = spec.shape
        workers = default_workers(
            on_gpu,
            chosen_encoder,
            spec.resolution,
            spec.scaling,
            frame_size=shape.frame,
            canvas=shape.native,
        )
    return Plan(
        spec=spec,
        backend=backend,
        providers=providers,
        precision=precision,
        batch_size=batch,
        pixel_format=pixel_format,
        conv_form=form,
        lanes=n_lanes,
        lane_threads=lane_threads if n_lanes > 1 else None,
        encoder=chosen_encoder,
        workers=workers,
        encoder_fallback=encoder == "auto" and chosen_encoder == "nvenc",
        notes=tuple(notes),
        warning=warning,
    )


def _resolve_encoder(encoder: str, on_gpu: bool, notes: list[str]) -> str:
    if encoder == "x264":
        return "x264"
    from dmv_fast.video.nvenc import probe_nvenc

    if encoder == "nvenc":
        ok, why = probe_nvenc()
        if not ok:
            raise ValueError(f"encoder 'nvenc' is not available here: {why}")
        return "nvenc"
    if not on_gpu:
        notes.append("encoder x264: the generator runs on the CPU")
        return "x264"
    ok, why = probe_nvenc()
    notes.append(f"encoder {'nvenc' if ok else 'x264'}: {why}")
    return "nvenc" if ok else "x264"


def encoder_fps(side: int, pixels: int | None = None) -> float:
    """Expected libx264 frames/s of one single-threaded encoder at ``side x side`` pixels
    (or at ``pixels`` pixels a frame, for a frame of any shape)."""
    # Encoding cost grows with the pixel count; interpolate between the two measured sizes.
    area = side * side if pixels is None else pixels
    if area <= 512 * 512:
        return X264_FPS_512 * (512 * 512 / area)
    ratio = math.log(area / 512**2) / math.log(4)  # 0 at 512x512, 1 at 1024x1024
    return X264_FPS_512 * (X264_FPS_1024 / X264_FPS_512) ** ratio


def default_workers(
    on_gpu: bool,
    encoder: str,
    resolution: int,
    scaling: int = 1,
    *,
    cores: int | None = None,
    generator_fps: float | None = None,
    frame_size: tuple[int, int] | None = None,
    canvas: tuple[int, int] | None = None,
) -> int:
    """How many segment workers a render needs so that encoding never holds the generator.

    Args:
        on_gpu: the generator runs on a GPU provider.
        encoder: ``"x264"`` or ``"nvenc"`` (the resolved encoder).
        resolution: 128, 256 or 512; ``scaling``: the integer upscaling factor.
        cores: CPU cores to spread over (default: ``os.cpu_count()``).
        generator_fps: expected generator frames/s (default: 1,500 at 512 px on one
            H100/H200, scaled by the graph's multiply-adds at other resolutions and by the
            area of the canvas the generator paints).
        frame_size: ``(height, width)`` of a frame (default: square, ``resolution * scaling``).
        canvas: ``(height, width)`` the generator paints (default: square, ``resolution``).

    Returns:
        1 on the CPU or with NVENC (one hardware stream keeps up); otherwise
        ``ceil(generator_fps / encoder_fps)`` libx264 encoders, at most one per core.
    """
    if not on_gpu or encoder == "nvenc":
        return 1
    cores = cores or os.cpu_count() or 1
    if generator_fps is None:
        generator_fps = GPU_FPS_512 * _GMAC[512] / _GMAC.get(resolution, _GMAC[512])
        if canvas is not None:
            generator_fps *= resolution * resolution / (canvas[0] * canvas[1])
    side = resolution * scaling
    pixels = side * side if frame_size is None else frame_size[0] * frame_size[1]
    needed = math.ceil(generator_fps / encoder_fps(side, pixels))
    return max(1, min(cores, needed))


def settle(plan: Plan, loaded: list[str] | tuple[str, ...]) -> Plan:
    """Check a built session's providers against the plan.

    Returns the plan unchanged when they agree; for ``auto`` on a GPU plan whose session ended
    on the CPU, the CPU plan (one warning: the caller rebuilds the graph and session); for
    ``auto`` TensorRT that fell to CUDA, the CUDA plan.

    Raises:
        RuntimeError: an explicit ``cuda``/``tensorrt`` whose provider did not load.
    """
    loaded = list(loaded)
    if not plan.on_gpu or (loaded and loaded[0] == plan.providers[0]):
        return plan
    wanted = plan.providers[0]
    if plan.spec.backend != "auto":
        label = "CUDA" if wanted == CUDA else "TensorRT"
        raise RuntimeError(
            f"the {label} execution provider did not load ({load_failure(wanted)}); "
            f"loaded: {', '.join(loaded)}"
        )
    if loaded and loaded[0] in GPU_PROVIDERS:
        logger.warning("generator runs on %s: %s did not load", loaded[0], wanted)
        return dataclasses.replace(
            plan,
            backend=BACKEND_OF[loaded[0]],
            providers=tuple(p for p in plan.providers if p != wanted),
            notes=(*plan.notes, f"{wanted} did not load"),
        )
    why = f"{wanted} did not load ({load_failure(wanted)})"
    logger.warning("generator runs on the CPU: %s", why)
    return plan.on_cpu(why)
