"""Quality of an int8 graph against its fp32 graph: PSNR and SSIM of the final uint8 frames.

``compare`` runs both graphs on ONNX Runtime's CPU provider on the same render vectors
(:func:`dmv_fast_export.feeds.render_vectors`) and reports, per truncation, the PSNR over
all frames, the mean SSIM and the worst frame. ``ssim`` is a small NumPy SSIM (no new
dependency).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dmv_fast_export.feeds import feeds, render_vectors

CHECK_TRUNCATIONS = (0.2, 0.5, 1.0)
#: The synthesized piece (its seed) of the quality check; the calibration uses another.
CHECK_PIECE = 101


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 images ``[H, W, 3]`` (Wang et al. 2004: 7x7 uniform window,
    K1 = 0.01, K2 = 0.03, computed per channel on the 8-bit values and averaged)."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    win = 7

    def mean(img: np.ndarray) -> np.ndarray:
        s = np.cumsum(np.cumsum(np.pad(img, ((1, 0), (1, 0), (0, 0))), axis=0), axis=1)
        total = s[win:, win:] - s[:-win, win:] - s[win:, :-win] + s[:-win, :-win]
        return total / win**2

    mx, my = mean(x), mean(y)
    n = win**2
    vx = (mean(x * x) - mx * mx) * n / (n - 1)
    vy = (mean(y * y) - my * my) * n / (n - 1)
    cov = (mean(x * y) - mx * my) * n / (n - 1)
    num = (2 * mx * my + c1) * (2 * cov + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return float(np.mean(num / den))


def compare(
    int8_path: str | os.PathLike[str],
    fp32_path: str | os.PathLike[str],
    truncations: Sequence[float] = CHECK_TRUNCATIONS,
    frames: int = 8,
    seed: int = 101,
    threads: int | None = None,
    vectors: Any = None,
) -> dict[str, dict[str, float]]:
    """Final uint8 frames of the int8 graph against the fp32 graph's, on fresh render vectors
    (another piece, other classes and draws than the calibration's).

    ``vectors(truncation, frames, seed) -> (noise, classes)`` replaces the render vectors.

    Returns:
        Per truncation (as a string key): ``psnr_db`` (over all frames), ``ssim`` (mean),
        ``worst_psnr_db`` / ``worst_ssim`` (the worst frame) and ``worst_frame`` (its index).
    """
    sessions = [cpu_session(p, threads) for p in (int8_path, fp32_path)]
    batch = sessions[0].get_inputs()[0].shape[0]
    out: dict[str, dict[str, float]] = {}
    for k, truncation in enumerate(truncations):
        if vectors is None:
            noise, classes = render_vectors(truncation, frames, seed=seed + k, piece=CHECK_PIECE)
        else:
            noise, classes = vectors(truncation, frames, seed + k)
        pairs = [
            np.concatenate(
                [s.run(["frames"], f)[0] for f in feeds(noise, classes, truncation, batch)]
            )
            for s in sessions
        ]
        ours, ref = pairs[0][:frames], pairs[1][:frames]
        per_psnr = [psnr(o, r) for o, r in zip(ours, ref, strict=True)]
        per_ssim = [ssim(o, r) for o, r in zip(ours, ref, strict=True)]
        worst = int(np.argmin(per_psnr))
        out[str(truncation)] = {
            "psnr_db": round(psnr(ours, ref), 2),
            "ssim": round(float(np.mean(per_ssim)), 4),
            "worst_psnr_db": round(per_psnr[worst], 2),
            "worst_ssim": round(min(per_ssim), 4),
            "worst_frame": worst,
        }
    return out


def cpu_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
