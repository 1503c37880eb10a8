"""The machine a benchmark ran on: description, memory, other load and the CPU's sgemm peak.

Every results file records :func:`environment`; every CPU row also records the NumPy sgemm
peak (:func:`sgemm_peak`) and the fraction of it the generator reaches
(:func:`peak_fraction`), so a CPU figure says how close it is to what the cores can do.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import importlib.metadata
import os
import platform
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Multiply-accumulates per frame (GMAC) of the exported graph, by resolution
#: (``benchmarks/macs.py``, ``benchmarks/results/macs.md``).
GRAPH_GMAC = {128: 7.5, 256: 24.6, 512: 31.9}
#: The same for the original model (torch eager: full ``conv_to_rgb``, 3x3 convolutions after
#: the nearest up-sampling).
ORIGINAL_GMAC = {128: 11.3, 256: 38.8, 512: 75.7}
SGEMM_SIZE = 2048  # n for the n x n @ n x n float32 products: 17 GFLOP each
SGEMM_REPEATS = 5


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
        "cpu_flags": cpu_flags(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False) if psutil else None,
        "cores_usable": affinity,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1) if psutil else None,
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
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
# The CPU's arithmetic peak


def _blas() -> dict[str, Any]:
    """NumPy's BLAS library and the core type OpenBLAS picked (threadpoolctl), when known."""
    info: dict[str, Any] = {}
    with contextlib.suppress(Exception):  # the config layout differs between NumPy versions
        config: Any = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                info["blas_architecture"] = pool.get("architecture")
                info["blas_threads"] = pool.get("num_threads")
                break
    return info


def sgemm_peak(n: int = SGEMM_SIZE, repeats: int = SGEMM_REPEATS) -> dict[str, Any]:
    """The CPU's float32 matrix-multiply peak through NumPy, in GFLOP/s (2 n^3 per product).

    The best of ``repeats`` products of two ``[n, n]`` float32 matrices after one untimed
    product: the best call is the one least disturbed by other processes. Each CPU row
    measures it right after its own timed calls, so both see the same machine load.

    Returns:
        ``gflops`` (float), ``n``, ``repeats``, ``openblas_coretype`` (the
        ``OPENBLAS_CORETYPE`` environment value, None when unset: it pins OpenBLAS's kernels),
        and ``blas`` / ``blas_architecture`` / ``blas_threads`` when known.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return {
        "gflops": float(f"{2 * n**3 / best / 1e9:.3g}"),  # 3 significant digits, never 0
        "n": n,
        "repeats": repeats,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        **_blas(),
    }


class Sgemm:
    """One ``[n, n] @ [n, n]`` float32 product, timed on demand.

    :func:`sgemm_peak` measures the peak once; a benchmark that alternates variants calls
    :meth:`gflops` between its repetitions so the peak is sampled under the same machine load
    as the figures it normalises. The matrices are made once (``3 n^2`` floats: 48 MiB at
    n = 2048).
    """

    def __init__(self, n: int = SGEMM_SIZE) -> None:
        rng = np.random.default_rng(0)
        self.n = n
        self.a = rng.standard_normal((n, n), dtype=np.float32)
        self.b = rng.standard_normal((n, n), dtype=np.float32)
        self.out = np.empty((n, n), np.float32)
        np.matmul(self.a, self.b, out=self.out)  # untimed: page in and warm the BLAS threads

    def gflops(self) -> float:
        """GFLOP/s of one product (2 n^3 floating-point operations)."""
        t0 = time.perf_counter()
        np.matmul(self.a, self.b, out=self.out)
        return 2 * self.n**3 / (time.perf_counter() - t0) / 1e9


#: CPU flags that decide which kernels ONNX Runtime's integer and float paths use.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu_flags(wanted: tuple[str, ...] = VECTOR_FLAGS) -> list[str]:
    """Which of ``wanted`` the CPU has (``/proc/cpuinfo`` flags; empty where unknown)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    return []


def cpu_summary(n: int = SGEMM_SIZE) -> dict[str, Any]:
    """The CPU's name, logical cores, vector flags and :func:`sgemm_peak` (key ``sgemm``)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "sgemm": sgemm_peak(n),
    }


def peak_fraction(frames_per_s: float, gmac_per_frame: float, gflops: float) -> float:
    """The share of the sgemm peak a generator reaches: ``2 * GMAC * frames/s / GFLOP/s``."""
    return round(2 * gmac_per_frame * frames_per_s / gflops, 4)


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
# Other load


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
