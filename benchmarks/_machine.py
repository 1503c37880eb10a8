"""This machine's fp32 peak, measured in the benchmark's own run, for CPU results.

Generator figures from different machines only compare through the machine's own arithmetic
peak: ``sgemm_peak()`` times a large float32 NumPy matmul (best of several) and
``machine_info()`` records it with the CPU, the BLAS and ``OPENBLAS_CORETYPE`` (which changes
the kernels OpenBLAS picks). ``fraction_of_peak()`` turns frames/s into GFLOP/s (2 FLOP per
multiply-add) and the share of that peak.

    from _machine import machine_info, fraction_of_peak
    info = machine_info()                       # {"sgemm_gflops": ..., "cpu": ..., ...}
    fraction_of_peak(22.5, 7.5, info["sgemm_gflops"])   # frames/s, GMAC per frame
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Multiply-adds per frame of the exported graph (benchmarks/results/macs.md), GMAC.
GMAC_PER_FRAME = {128: 7.5, 256: 24.6, 512: 31.9}


def sgemm_peak(n: int = 2048, repeats: int = 7, threads: int | None = None) -> float:
    """Best GFLOP/s of an ``n x n`` float32 matmul over ``repeats`` runs (one warm-up).

    ``threads``: only recorded by the caller; NumPy's BLAS uses its own setting
    (``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``, else every core).
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
    return 2.0 * n**3 / best / 1e9


class Sgemm:
    """One large float32 matmul, timed on demand: interleave it with the measured work so the
    peak is taken under the same machine conditions as the figures it normalises."""

    def __init__(self, n: int = 2048) -> None:
        rng = np.random.default_rng(0)
        self.n = n
        self.a = rng.standard_normal((n, n), dtype=np.float32)
        self.b = rng.standard_normal((n, n), dtype=np.float32)
        self.out = np.empty((n, n), np.float32)
        np.matmul(self.a, self.b, out=self.out)  # warm-up

    def gflops(self) -> float:
        t0 = time.perf_counter()
        np.matmul(self.a, self.b, out=self.out)
        return 2.0 * self.n**3 / (time.perf_counter() - t0) / 1e9


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "fma")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])  # fmt: skip
    return [f for f in wanted if f in flags]


def _blas() -> str:
    try:
        config = np.show_config(mode="dicts")  # NumPy >= 1.25
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict form
        return "unknown"


def machine_info(sgemm_n: int = 2048) -> dict[str, Any]:
    """The CPU, its vector extensions, the BLAS, OPENBLAS_CORETYPE and the sgemm peak."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cpu_flags": _cpu_flags(),
        "blas": _blas(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "(not set)"),
        "sgemm_n": sgemm_n,
        "sgemm_gflops": round(sgemm_peak(sgemm_n), 1),
    }


def fraction_of_peak(fps: float, gmac_per_frame: float, peak_gflops: float) -> dict[str, float]:
    """GFLOP/s the generator reaches at ``fps`` and its share of the fp32 sgemm peak."""
    gflops = fps * gmac_per_frame * 2.0
    return {"gflops": round(gflops, 1), "fraction_of_sgemm": round(gflops / peak_gflops, 3)}


def _busy_jiffies() -> int:
    """Busy jiffies of the whole machine (/proc/stat), 0 where there is no /proc."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait


def timed(fn: Any) -> tuple[float, float]:
    """Wall seconds of ``fn()`` and the CPU other processes used meanwhile, in cores.

    On a shared machine a repetition that overlapped someone else's work is noisier: the
    second number lets a benchmark report (or drop) such repetitions.
    """
    busy0, own0 = _busy_jiffies(), sum(os.times()[:2])
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    own = sum(os.times()[:2]) - own0
    busy = (_busy_jiffies() - busy0) / os.sysconf("SC_CLK_TCK")
    return wall, max(0.0, busy - own) / wall
