"""``dmv-fast bench``: generator throughput, latency, memory and end-to-end speed per backend.

Backends:

- ``torch``: pytorch-pretrained-biggan in eager mode (eval mode, fp32, CUDA when torch sees a
  GPU), followed by the original's per-frame uint8 conversion in NumPy: the original's way.
- ``ort-cpu``: ONNX Runtime, CPU execution provider, fp32 graph.
- ``ort-cuda-fp32`` / ``ort-cuda-fp16``: ONNX Runtime, CUDA execution provider.
- ``ort-trt-fp16``: ONNX Runtime, TensorRT execution provider.

Every row uses seeded random weights (``--weights random``: the same architecture, so the same
cost per frame as the pretrained model) and fresh random, non-zero inputs for every timed call.
A backend that cannot run here is reported as skipped, with the reason.

The helpers (:func:`environment`, :class:`PeakRSS`, :func:`time_calls`, :func:`torch_biggan`,
:func:`stretch_to_uint8`, :func:`end_to_end`, ...) are shared with the scripts under
``benchmarks/``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import importlib.metadata
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("dmv_fast")

#: backend name -> (ONNX Runtime backend, precision); ``None`` for the torch eager backend.
BACKENDS: dict[str, tuple[str, str] | None] = {
    "torch": None,
    "ort-cpu": ("cpu", "fp32"),
    "ort-cuda-fp32": ("cuda", "fp32"),
    "ort-cuda-fp16": ("cuda", "fp16"),
    "ort-trt-fp16": ("tensorrt", "fp16"),
}
RESOLUTIONS = (128, 256, 512)
TRUNCATION = 1.0  # the original's default; the cost per frame does not depend on it
SAMPLE_RATE = 22050
FRAME_LENGTH = 512  # the original's default hop: 43.07 frames per second of audio
MIN_E2E_SECONDS = 1.0  # shortest song worth an end-to-end row
E2E_BUDGET_FACTOR = 10.0  # an end-to-end row may take this many measurement budgets


class Skip(Exception):
    """A measurement that cannot run on this machine; the message says why."""


# --------------------------------------------------------------------------------------------
# Machine description


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), or what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _nvidia_smi(*query: str) -> str | None:
    """``nvidia-smi`` CSV output for ``query`` arguments; None without a working one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, *query, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def nvidia_gpus() -> list[dict[str, str]]:
    """Name, memory (MiB) and driver of every NVIDIA GPU ``nvidia-smi`` lists (empty without
    one)."""
    text = _nvidia_smi("--query-gpu=name,memory.total,driver_version")
    if text is None:
        return []
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def environment() -> dict[str, Any]:
    """Device, CPU, core count, load and package versions, for the results files."""
    try:
        import psutil
    except ImportError:  # optional here: the GPU machines may lack it
        psutil = None

    gpus = nvidia_gpus()
    affinity: int | None
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    providers: list[str] = []
    with contextlib.suppress(ImportError):
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": ", ".join(g["name"] for g in gpus) if gpus else "CPU only (no NVIDIA GPU)",
        "gpus": gpus,
        "cpu": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False) if psutil else None,
        "cores_usable": affinity,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1) if psutil else None,
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "dmv-fast": _version("dmv-fast"),
            "numpy": _version("numpy"),
            "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
            "onnxruntime-gpu": _version("onnxruntime-gpu"),
            "torch": _version("torch"),
            "pytorch-pretrained-biggan": _version("pytorch-pretrained-biggan"),
            "av": _version("av"),
            "librosa": _version("librosa"),
            "numba": _version("numba"),
        },
        "onnxruntime_providers": providers,
    }


# --------------------------------------------------------------------------------------------
# Memory


def _vm_hwm_kb() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB.

    Linux: the address space's own high-water mark (``VmHWM``). ``ru_maxrss`` is not used
    there because it carries the parent's peak over into a freshly started child.
    """
    kb = _vm_hwm_kb()
    if kb is not None:
        return round(kb / 1024, 1)
    import resource

    scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB elsewhere
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)


class PeakRSS:
    """Peak resident memory of this process while the ``with`` block runs, in MiB.

    On Linux the kernel's high-water mark is reset on entry (``/proc/self/clear_refs``) and
    read on exit, so nothing is missed between samples; elsewhere RSS is polled every 5 ms.
    """

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self._exact = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def __enter__(self) -> PeakRSS:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._exact = _vm_hwm_kb() is not None
        except OSError:
            self._exact = False
        if not self._exact:
            import psutil

            proc = psutil.Process()
            self._peak = proc.memory_info().rss

            def poll() -> None:
                while not self._stop.wait(0.005):
                    self._peak = max(self._peak, proc.memory_info().rss)

            self._thread = threading.Thread(target=poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._exact:
            kb = _vm_hwm_kb()
            self.peak_mb = None if kb is None else round(kb / 1024, 1)
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak_mb = round(self._peak / 2**20, 1)


def busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``None`` without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    t = psutil.cpu_times()
    return sum(getattr(t, name, 0.0) for name in ("user", "system", "nice", "irq", "softirq"))


class OtherLoad:
    """Cores kept busy by other processes while the ``with`` block runs (``.cores``).

    Timings on a shared machine are only as good as the machine was quiet: this says how
    quiet it was. Own CPU time is this process's (all threads) plus its waited-for children.
    """

    def __init__(self) -> None:
        self.cores: float | None = None

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> OtherLoad:
        self._busy, self._own0, self._t0 = busy_cpu_s(), self._own(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = busy_cpu_s()
        wall = time.perf_counter() - self._t0
        if busy is None or self._busy is None or wall <= 0:
            return
        other = (busy - self._busy) - (self._own() - self._own0)
        self.cores = round(max(0.0, other) / wall, 2)


def gpu_memory_mb(pid: int | None = None) -> float | None:
    """GPU memory held by process ``pid`` (default: this one) per ``nvidia-smi``, in MiB."""
    pid = os.getpid() if pid is None else pid
    text = _nvidia_smi("--query-compute-apps=pid,used_memory")
    if text is None:
        return None
    used = 0.0
    found = False
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            with contextlib.suppress(ValueError):
                used += float(parts[1])
                found = True
    return used if found else None


# --------------------------------------------------------------------------------------------
# Inputs and timing


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
) -> list[float]:
    """Seconds per ``call(noise, classes)`` on fresh inputs, after ``warmup`` untimed calls.

    Calls continue until ``budget_s`` seconds of timed calls have passed (at least
    ``min_calls``). Inputs are made outside the timed region.
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
        t0 = time.perf_counter()
        call(noise, classes)
        if synchronize is not None:
            synchronize()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return times


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# --------------------------------------------------------------------------------------------
# The original's way: torch eager + per-frame conversion


def stretch_to_uint8(frame: np.ndarray) -> np.ndarray:
    """One frame ``[3, H, W]`` float in [-1, 1] to ``[H, W, 3]`` uint8, stretching its own
    min..max to 0..255 and rounding half up (scipy ``toimage``'s look, SPEC §5)."""
    lo = float(frame.min())
    span = float(frame.max()) - lo
    scale = 255.0 / span if span > 0 else 1.0
    pixels = np.clip((frame - lo) * scale, 0, 255) + 0.5
    return pixels.astype(np.uint8).transpose(1, 2, 0)


def torch_biggan(resolution: int, *, device: str = "cpu") -> Any:
    """pytorch-pretrained-biggan's BigGAN-deep with the seeded random weights that
    ``--weights random`` exports (:func:`dmv_fast_export.weights.random_model`), in eval mode."""
    from dmv_fast_export.weights import random_model, standard_config

    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution {resolution} is not one of {RESOLUTIONS}")
    return random_model(standard_config(resolution)).eval().to(device)


def torch_backend(resolution: int, batch: int) -> tuple[Callable[..., Any], dict[str, Any]]:
    """A ``call(noise, classes)`` running torch eager + the per-frame conversion."""
    try:
        import torch
    except ImportError as exc:
        raise Skip("torch is not installed (pip install 'dmv-fast[export]')") from exc
    try:
        import pytorch_pretrained_biggan  # noqa: F401
    except ImportError as exc:
        raise Skip("pytorch-pretrained-biggan is not installed") from exc
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch_biggan(resolution, device=device)

    def call(noise: np.ndarray, classes: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = model(
                torch.from_numpy(noise).to(device),
                torch.from_numpy(classes).to(device),
                TRUNCATION,
            )
        return [stretch_to_uint8(f) for f in out.cpu().numpy()]

    info: dict[str, Any] = {"providers": [f"torch-{device}"], "precision": "fp32"}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        info["synchronize"] = torch.cuda.synchronize
        info["gpu_memory"] = lambda: round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return call, info


# --------------------------------------------------------------------------------------------
# ONNX Runtime backends


def provider_problem(backend: str) -> str | None:
    """Why ``backend`` ("cpu", "cuda", "tensorrt") cannot run here, or ``None`` if it may."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed (pip install 'dmv-fast[cpu]' or 'dmv-fast[gpu]')"
    preload = getattr(ort, "preload_dlls", None)
    if backend != "cpu" and preload is not None:
        try:
            preload()
        except Exception as exc:  # a missing CUDA library: reported by the check below
            logger.debug("onnxruntime.preload_dlls() failed: %s", exc)
    available = set(ort.get_available_providers())
    wanted = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}.get(
        backend, "TensorrtExecutionProvider"
    )
    if wanted in available:
        return None
    if _version("onnxruntime-gpu") is None:
        return f"{wanted} not available: onnxruntime-gpu not installed"
    return f"{wanted} not available in this onnxruntime-gpu build"


def ort_backend(
    resolution: int, batch: int, backend: str, precision: str
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """A ``call(noise, classes)`` on :class:`dmv_fast.runtime.Generator` (graph exported and
    cached on first use)."""
    problem = provider_problem(backend)
    if problem:
        raise Skip(problem)
    from dmv_fast.pipeline import Visualizer

    vis = Visualizer(
        resolution, weights="random", backend=backend, precision=precision, batch_size=batch
    )
    t0 = time.perf_counter()
    try:
        gen = vis.generator
    except ImportError as exc:
        raise Skip(f"cannot export the model here: {exc}") from exc
    except (RuntimeError, ValueError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pip install" in text or "not available" in text or "did not load" in text:
            raise Skip(text) from exc
        raise
    load_s = time.perf_counter() - t0

    def call(noise: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return gen.generate(noise, classes, TRUNCATION)

    info: dict[str, Any] = {
        "providers": list(gen.providers),
        "precision": getattr(gen, "precision", precision),
        "load_s": round(load_s, 2),
        "visualizer": vis,
    }
    if backend != "cpu":
        info["gpu_memory"] = gpu_memory_mb
    return call, info


# --------------------------------------------------------------------------------------------
# End to end


def write_song(path: str | os.PathLike[str], seconds: float, seed: int = 7) -> Path:
    """Synthesize ``seconds`` of music (:func:`dmv_fast.demo.synthesize_song`) into a WAV."""
    import soundfile as sf

    from dmv_fast.demo import DEMO_RATE, synthesize_song

    path = Path(path)
    sf.write(path, synthesize_song(seconds, seed=seed), DEMO_RATE)
    return path


def end_to_end(
    song: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    resolution: int,
    backend: str,
    precision: str,
    batch_size: int,
    frame_length: int = FRAME_LENGTH,
    visualizer: Any = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Render ``song`` with :func:`dmv_fast.pipeline.render` and the x264 encoder.

    Returns:
        ``audio_s`` (seconds of video), ``frames``, ``wall_s``, ``realtime_factor`` (seconds
        of video per second of wall time), the pipeline's stage ``timings`` and ``encoder``.
    """
    import soundfile as sf

    from dmv_fast.options import RenderOptions
    from dmv_fast.pipeline import render
    from dmv_fast.plan import ModelSpec

    options = RenderOptions(
        song=str(song),
        frame_length=frame_length,
        output_file=str(output),
        seed=seed,
        encoder="x264",
    )
    spec = ModelSpec(
        resolution=resolution,
        weights="random",
        backend=backend,
        precision=precision,
        batch_size=batch_size,
    )
    t0 = time.perf_counter()
    result = render(options, None if visualizer else spec, overwrite=True, visualizer=visualizer)
    wall = time.perf_counter() - t0
    video_s = float(result.frames / result.fps)
    return {
        "song_s": round(float(sf.info(str(song)).duration), 3),
        "audio_s": round(video_s, 3),
        "frames": result.frames,
        "wall_s": round(wall, 3),
        "realtime_factor": round(video_s / wall, 3),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "encoder": result.encoder,
        "providers": list(result.providers),
    }


# --------------------------------------------------------------------------------------------
# Rows


@dataclass
class _Plan:
    backends: list[str]
    resolutions: list[int]
    batch_sizes: list[int]
    seconds: float
    song_seconds: float


def _validate(
    resolutions: list[int],
    batch_sizes: list[int],
    backends: list[str],
    seconds: float,
    song_seconds: float,
) -> _Plan:
    if not resolutions:
        raise ValueError("resolutions is empty: give some of 128, 256, 512")
    for r in resolutions:
        if r not in RESOLUTIONS:
            raise ValueError(f"resolution {r} is not one of 128, 256, 512")
    if not batch_sizes:
        raise ValueError("batch sizes is empty: give integers >= 1")
    for b in batch_sizes:
        if int(b) != b or b < 1 or b > 1024:
            raise ValueError(f"batch size {b} is out of range: integers 1-1024")
    if not backends:
        raise ValueError(f"backends is empty: give some of {', '.join(BACKENDS)}")
    for name in backends:
        if name not in BACKENDS:
            raise ValueError(f"backend {name!r} is not one of {', '.join(BACKENDS)}")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds {seconds} must be a finite number > 0")
    if not (song_seconds >= 0 and math.isfinite(song_seconds)):
        raise ValueError(f"song_seconds {song_seconds} must be >= 0 (0 skips the end-to-end rows)")
    dedup = lambda xs: list(dict.fromkeys(xs))  # noqa: E731
    return _Plan(
        dedup(backends),
        dedup(resolutions),
        dedup(int(b) for b in batch_sizes),
        seconds,
        song_seconds,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def measure_row(
    backend_name: str,
    resolution: int,
    batch: int,
    seconds: float,
    *,
    song_seconds: float = 0.0,
    songs: dict[float, Path] | None = None,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Measure one (backend, resolution, batch) row; see the module docstring."""
    row: dict[str, Any] = {
        "backend": backend_name,
        "resolution": resolution,
        "batch_size": batch,
        "status": "ok",
    }
    spec = BACKENDS[backend_name]
    info: dict[str, Any] = {}
    try:
        prepare_row(backend_name, resolution, batch)  # exports outside the memory window
        with PeakRSS() as rss:
            if spec is None:
                call, info = torch_backend(resolution, batch)
            else:
                call, info = ort_backend(resolution, batch, *spec)
            with OtherLoad() as load:
                times = time_calls(
                    call,
                    batch,
                    seconds,
                    seed=resolution * 1000 + batch,
                    synchronize=info.get("synchronize"),
                )
        row["providers"] = info.get("providers")
        row["precision"] = info.get("precision")
        if "load_s" in info:
            row["load_s"] = info["load_s"]
        median = statistics.median(times)
        row.update(
            frames_per_s=round(batch / median, 3),
            call_ms_p50=round(1000 * median, 3),
            call_ms_p99=round(1000 * percentile(times, 99), 3),
            calls=len(times),
            peak_rss_mb=rss.peak_mb,
            other_cores_busy=load.cores,
        )
        gpu_mem = info.get("gpu_memory")
        row["gpu_mem_mb"] = gpu_mem() if gpu_mem is not None else None
    except Skip as exc:
        row.update(status="skipped", reason=str(exc))
        logger.info("%s %d px batch %d: skipped (%s)", backend_name, resolution, batch, exc)
        return row
    except Exception as exc:  # one broken backend must not stop the others
        row.update(status="failed", reason=_first_line(exc))
        logger.warning("%s %d px batch %d failed: %s", backend_name, resolution, batch, exc)
        return row
    row["e2e"] = _e2e_row(row, info, spec, song_seconds, seconds, songs, workdir)
    return row


def _e2e_row(
    row: dict[str, Any],
    info: dict[str, Any],
    spec: tuple[str, str] | None,
    song_seconds: float,
    budget: float,
    songs: dict[float, Path] | None,
    workdir: Path | None,
) -> dict[str, Any]:
    if song_seconds <= 0:
        return {"skipped": "song_seconds is 0"}
    if spec is None:
        return {"skipped": "the render pipeline runs on ONNX Runtime (see benchmarks/bench_e2e.py)"}
    if workdir is None or songs is None:
        return {"skipped": "no work folder"}
    # Fit the song into the time budget at the measured generator speed, but never below
    # MIN_E2E_SECONDS (analysis and session overheads would dominate a shorter song); a row
    # too slow to render even that within E2E_BUDGET_FACTOR budgets is skipped.
    fps = row["frames_per_s"]
    fits = budget * fps * FRAME_LENGTH / SAMPLE_RATE
    seconds = round(min(song_seconds, max(MIN_E2E_SECONDS, fits)), 1)
    need = seconds * SAMPLE_RATE / FRAME_LENGTH / fps
    if need > E2E_BUDGET_FACTOR * budget:
        return {
            "skipped": f"{seconds:g} s of video needs ~{need:.0f} s at {fps:.2f} frames/s,"
            f" over {E2E_BUDGET_FACTOR:g}x the {budget:g} s budget"
        }
    song = songs.get(seconds)
    if song is None:
        song = workdir / f"song-{seconds:g}s.wav"
        if not song.exists():
            write_song(song, seconds)
        songs[seconds] = song
    backend, precision = spec
    output = workdir / f"e2e-{row['backend']}-{row['resolution']}-{row['batch_size']}.mp4"
    try:
        with PeakRSS() as rss:
            result = end_to_end(
                song,
                output,
                resolution=row["resolution"],
                backend=backend,
                precision=precision,
                batch_size=row["batch_size"],
                visualizer=info.get("visualizer"),
            )
    except Exception as exc:
        logger.warning("end-to-end %s failed: %s", row["backend"], exc)
        return {"failed": _first_line(exc)}
    finally:
        with contextlib.suppress(OSError):
            output.unlink()
    result["peak_rss_mb"] = rss.peak_mb
    if seconds < song_seconds:
        result["note"] = f"song shortened from {song_seconds:g} s to fit the {budget:g} s budget"
    return result


# --------------------------------------------------------------------------------------------
# Reports


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The measured rows as a markdown table; skipped rows are grouped by backend and reason."""
    lines = [
        "| backend | res | batch | frames/s | call p50 ms | call p99 ms | peak RSS MiB "
        "| GPU MiB | e2e × real time | e2e song s | other jobs' cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    skipped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] != "ok":
            key = (row["backend"], f"{row['status']}: {row.get('reason', '')}")
            skipped.setdefault(key, []).append(row)
            continue
        e2e = row.get("e2e") or {}
        rtf = e2e.get("realtime_factor")
        if rtf is not None:
            rtf_text = _fmt(rtf, 2)
        else:
            rtf_text = "skipped" if "skipped" in e2e else "failed" if "failed" in e2e else "–"
        lines.append(
            f"| {row['backend']} | {row['resolution']} | {row['batch_size']} "
            f"| {_fmt(row['frames_per_s'], 2)} | {_fmt(row['call_ms_p50'])} "
            f"| {_fmt(row['call_ms_p99'])} | {_fmt(row['peak_rss_mb'], 0)} "
            f"| {_fmt(row.get('gpu_mem_mb'), 0)} | {rtf_text} | {_fmt(e2e.get('audio_s'))} "
            f"| {_fmt(row.get('other_cores_busy'), 2)} |"
        )
    for (backend, reason), group in skipped.items():
        res = ",".join(str(r) for r in dict.fromkeys(g["resolution"] for g in group))
        batch = ",".join(str(b) for b in dict.fromkeys(g["batch_size"] for g in group))
        reason = reason.replace("|", "/")
        lines.append(f"| {backend} | {res} | {batch} | {reason} ||||||||")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Bar chart of the best frames/s (over batch sizes) per backend and resolution."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        return None
    ok = [r for r in rows if r["status"] == "ok"]
    backends = list(dict.fromkeys(r["backend"] for r in ok))
    missing = [b for b in dict.fromkeys(r["backend"] for r in rows) if b not in backends]
    resolutions = sorted({r["resolution"] for r in rows})
    width_in = min(14.0, 2.5 + 0.6 * len(resolutions) * max(1, len(backends)))
    fig, ax = plt.subplots(figsize=(width_in, 4))
    width = 0.8 / max(1, len(backends))
    for k, backend in enumerate(backends):
        xs, ys, labels = [], [], []
        for i, res in enumerate(resolutions):
            cands = [r for r in ok if r["backend"] == backend and r["resolution"] == res]
            if not cands:
                continue
            best = max(cands, key=lambda r: r["frames_per_s"])
            xs.append(i + (k - (len(backends) - 1) / 2) * width)
            ys.append(best["frames_per_s"])
            labels.append(f"b{best['batch_size']}")
        bars = ax.bar(xs, ys, width, label=backend)
        for bar, label in zip(bars, labels, strict=True):
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(range(len(resolutions)), [f"{r} px" for r in resolutions])
    ax.set_ylabel("generator frames/s (best batch size)")
    if any(r["frames_per_s"] > 0 for r in ok):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    if backends:
        ax.legend(fontsize=8)
    if missing:
        ax.set_xlabel("not run here: " + ", ".join(missing), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Entry point


def prepare_row(backend_name: str, resolution: int, batch: int) -> None:
    """Check that a row can run and export its graph, in this process, before measuring.

    Raises:
        Skip: the backend cannot run here (missing package, provider or exporter).
    """
    spec = BACKENDS[backend_name]
    if spec is None:
        import importlib.util

        for module, hint in (
            ("torch", "torch is not installed (pip install 'dmv-fast[export]')"),
            ("pytorch_pretrained_biggan", "pytorch-pretrained-biggan is not installed"),
        ):
            if importlib.util.find_spec(module) is None:
                raise Skip(hint)
        return
    backend, precision = spec
    problem = provider_problem(backend)
    if problem:
        raise Skip(problem)
    from dmv_fast.models import ensure_onnx

    try:
        ensure_onnx(resolution, "random", precision, batch, scaling=1, pixels="stretch")
    except ImportError as exc:
        raise Skip(f"cannot export the model here: {exc}") from exc
    except (RuntimeError, ValueError) as exc:
        if "pip install" in str(exc):
            raise Skip(str(exc).splitlines()[0]) from exc
        raise


def _log_row(row: dict[str, Any]) -> None:
    if row["status"] == "ok":
        logger.info(
            "%s %d px batch %d: %.2f frames/s, %.1f ms per call",
            row["backend"],
            row["resolution"],
            row["batch_size"],
            row["frames_per_s"],
            row["call_ms_p50"],
        )


def _row_in_child(kwargs: dict[str, Any]) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    return measure_row(**kwargs)


def measure_isolated(
    backend_name: str,
    resolution: int,
    batch: int,
    seconds: float,
    *,
    song_seconds: float = 0.0,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """:func:`measure_row` in a fresh (spawned) Python process.

    The row's peak RSS is then its own, not what earlier rows or the export left behind, and a
    backend that crashes the interpreter only fails its own row.
    """
    import concurrent.futures
    import multiprocessing

    base = {"backend": backend_name, "resolution": resolution, "batch_size": batch}
    try:
        prepare_row(backend_name, resolution, batch)
    except Skip as exc:
        logger.info("%s %d px batch %d: skipped (%s)", backend_name, resolution, batch, exc)
        return {**base, "status": "skipped", "reason": str(exc)}
    except Exception as exc:
        logger.warning("%s %d px batch %d failed: %s", backend_name, resolution, batch, exc)
        return {**base, "status": "failed", "reason": _first_line(exc)}
    kwargs = {
        "backend_name": backend_name,
        "resolution": resolution,
        "batch": batch,
        "seconds": seconds,
        "song_seconds": song_seconds,
        "songs": {},
        "workdir": workdir,
    }
    ctx = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            row = pool.submit(_row_in_child, kwargs).result()
    except concurrent.futures.process.BrokenProcessPool as exc:
        row = {**base, "status": "failed", "reason": f"the measuring process died: {exc}"}
    return row


def run_bench(
    out: str | os.PathLike[str],
    resolutions: list[int],
    batch_sizes: list[int],
    backends: list[str],
    seconds: float,
    song_seconds: float,
    *,
    isolate: bool = True,
) -> str:
    """Benchmark every backend x resolution x batch size and write the results.

    Args:
        out: folder for ``bench.json`` (machine, versions, date, every row), ``bench.md`` (the
            table) and ``bench.png`` (frames/s per backend and resolution); created if needed.
        resolutions: BigGAN-deep resolutions, from 128, 256, 512.
        batch_sizes: static batch sizes of the exported graphs (>= 1).
        backends: names from :data:`BACKENDS`; unavailable ones are skipped with the reason.
        seconds: time budget per measurement in seconds (timed calls stop after it; the
            end-to-end song is shortened to fit it at the measured speed).
        song_seconds: length of the synthesized song for the end-to-end rows (0: none).
        isolate: measure each row in its own process (clean peak RSS, crash isolation).

    Returns:
        The markdown table (also in ``bench.md``).
    """
    plan = _validate(resolutions, batch_sizes, backends, seconds, song_seconds)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dmv-fast-bench-") as tmp:
        songs: dict[float, Path] = {}
        for backend, res, batch in _grid(plan):
            logger.info("measuring %s at %d px, batch %d", backend, res, batch)
            if isolate:
                row = measure_isolated(
                    backend,
                    res,
                    batch,
                    plan.seconds,
                    song_seconds=plan.song_seconds,
                    workdir=Path(tmp),
                )
            else:
                row = measure_row(
                    backend,
                    res,
                    batch,
                    plan.seconds,
                    song_seconds=plan.song_seconds,
                    songs=songs,
                    workdir=Path(tmp),
                )
            _log_row(row)
            rows.append(row)
    table = markdown_table(rows)
    settings = {
        "resolutions": plan.resolutions,
        "batch_sizes": plan.batch_sizes,
        "backends": plan.backends,
        "seconds": plan.seconds,
        "song_seconds": plan.song_seconds,
        "weights": "random",
        "truncation": TRUNCATION,
        "frame_length": FRAME_LENGTH,
        "encoder": "x264",
        "isolated_rows": isolate,
    }
    (out / "bench.json").write_text(
        json.dumps({"environment": env, "settings": settings, "rows": rows}, indent=2) + "\n"
    )
    (out / "bench.md").write_text(report_header(env, settings) + table)
    plot(rows, out / "bench.png", f"dmv-fast bench: {env['device']} / {env['cpu']}")
    return table


def report_header(env: dict[str, Any], settings: dict[str, Any]) -> str:
    """The title, machine and method lines above the table in ``bench.md``."""
    v = env["versions"]
    command = (
        f"dmv-fast bench --resolutions {','.join(map(str, settings['resolutions']))}"
        f" --batch-sizes {','.join(map(str, settings['batch_sizes']))}"
        f" --backends {','.join(settings['backends'])} --seconds {settings['seconds']:g}"
        f" --song-seconds {settings['song_seconds']:g}"
    )
    return (
        f"# dmv-fast bench\n\n{env['date']} · {env['device']} · {env['cpu']} "
        f"({env['cores_usable']} cores usable, load {env['load_average_1m']}) · "
        f"onnxruntime {v['onnxruntime']} · torch {v['torch']} · numpy {v['numpy']}\n\n"
        f"Reproduce: `{command}`\n\n"
        "Random weights (same cost as pretrained), truncation 1.0, fresh random inputs per call;"
        " frames/s = batch / median call time after warm-up; call p50/p99 = latency of one call"
        " at that batch (the batch-1 rows give the batch-1 latency); peak RSS of the process"
        " that measured the row; e2e = `dmv_fast.pipeline.render` of a synthesized song with"
        " libx264, in seconds of video per second of wall time; other jobs' cores = CPU"
        " cores kept busy by other processes during the timed calls (a timing is only as good"
        " as the machine was quiet). The torch rows include the original's per-frame uint8"
        " conversion in NumPy; the ONNX graphs make uint8 inside.\n\n"
    )


def _grid(plan: _Plan) -> Iterator[tuple[str, int, int]]:
    for backend in plan.backends:
        for res in plan.resolutions:
            for batch in plan.batch_sizes:
                yield backend, res, batch
