"""Pixel post-processing done inside the graph: 8-bit conversion and Lanczos upscaling.

Both follow the original's pipeline exactly (SPEC §5): each frame becomes 8-bit first
(``stretch``: the frame's own min..max over all channels and pixels to 0..255, scipy
``toimage``'s ``uint8(clip((x - min) * 255 / ptp, 0, 255) + 0.5)``; ``fixed``: [-1, 1] to
0..255 with the same rounding), then ``--scaling N`` resizes the 8-bit frame like PIL's
``Image.resize(..., Image.LANCZOS)``: a horizontal pass, an 8-bit intermediate, a vertical
pass, each with PIL's filter, support, normalisation and 22-bit fixed-point coefficients.
"""

from __future__ import annotations

import math

import numpy as np

_LANCZOS_SUPPORT = 3.0
_PRECISION_BITS = 32 - 8 - 2  # PIL's fixed-point precision for 8-bit images


def _lanczos(x: float) -> float:
    if not -_LANCZOS_SUPPORT <= x < _LANCZOS_SUPPORT:
        return 0.0

    def sinc(v: float) -> float:
        if v == 0.0:
            return 1.0
        v *= math.pi
        return math.sin(v) / v

    return sinc(x) * sinc(x / _LANCZOS_SUPPORT)


def lanczos_matrix(in_size: int, out_size: int) -> np.ndarray:
    """PIL's 8-bit Lanczos resampling as a matrix: ``out = floor(M @ in + 0.5)``, clipped.

    Returns:
        ``np.ndarray [shape=(out_size, in_size)]`` float32: PIL's fixed-point coefficients
        divided by ``2**22`` (exact in float32).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    mat = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        weights = [_lanczos((x + xmin - center + 0.5) / filterscale) for x in range(xmax - xmin)]
        total = sum(weights)
        if total != 0.0:
            weights = [w / total for w in weights]
        mat[xx, xmin:xmax] = weights
    one = float(1 << _PRECISION_BITS)
    # C's (int) cast truncates towards zero after PIL adds +-0.5.
    fixed = np.where(mat < 0, np.trunc(-0.5 + mat * one), np.trunc(0.5 + mat * one))
    return (fixed / one).astype(np.float32)


def lanczos_reference(frames: np.ndarray, scaling: int) -> np.ndarray:
    """NumPy model of the in-graph upscaling (for tests): uint8 ``[B, H, W, 3]`` in and out."""
    _, h, w, _ = frames.shape
    mx = lanczos_matrix(w, w * scaling).astype(np.float64)
    my = lanczos_matrix(h, h * scaling).astype(np.float64)
    x = frames.astype(np.float64)
    t = np.clip(np.floor(np.einsum("bhwc,vw->bhvc", x, mx) + 0.5), 0, 255)
    out = np.clip(np.floor(np.einsum("bhwc,uh->buwc", t, my) + 0.5), 0, 255)
    return out.astype(np.uint8)
