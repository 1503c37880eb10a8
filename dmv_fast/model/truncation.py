"""Truncation -> BatchNorm standing statistics, computed on the host.

BigGAN-deep stores 51 sets of BatchNorm statistics, one per truncation step of 1/50. The
statistics for a truncation ``T`` mix two neighbouring sets with pytorch-pretrained-biggan's
exact float logic (SPEC §5): ``coef, idx = math.modf(T / (1.0 / 50))``; if ``coef != 0`` the
statistics are ``S[idx] * coef + S[idx + 1] * (1 - coef)`` (the weights look swapped, and are
kept that way), else ``S[idx]``. Python's float rounding moves some values to a neighbour
(``0.14 / 0.02 = 7.000000000000001``), which is why the arithmetic stays here, in Python
floats, and the exported graph only receives the two indices and the two weights.
"""

from __future__ import annotations

import math

import numpy as np

N_STATS = 51
"""Number of standing-statistics sets in every BigGAN-deep BatchNorm."""


def check_truncation(truncation: float) -> float:
    """Return ``truncation`` as a float, or raise ValueError unless it is finite and in (0, 1]."""
    try:
        value = float(truncation)
    except (TypeError, ValueError) as e:
        raise ValueError(f"truncation must be a number in (0, 1], got {truncation!r}") from e
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"truncation must be in (0, 1], got {truncation!r}")
    return value


def bn_mix(truncation: float) -> tuple[int, int, float, float]:
    """Which two statistics sets a truncation uses, and their weights.

    Args:
        truncation: BigGAN truncation in (0, 1].

    Returns:
        ``(idx0, idx1, w0, w1)``: the statistics are ``S[idx0] * w0 + S[idx1] * w1``. When the
        truncation lands exactly on a step, ``idx1 == idx0`` and ``(w0, w1) == (1.0, 0.0)``.

    Raises:
        ValueError: truncation outside (0, 1] or not finite.
    """
    value = check_truncation(truncation)
    step_size = 1.0 / (N_STATS - 1)
    coef, start = math.modf(value / step_size)
    idx = int(start)
    if coef != 0.0:
        return idx, idx + 1, coef, 1.0 - coef
    return idx, idx, 1.0, 0.0


def bn_inputs(truncation: float) -> tuple[np.ndarray, np.ndarray]:
    """The exported graph's ``bn_idx`` (int64 ``[2]``) and ``bn_w`` (float32 ``[2]``) inputs."""
    idx0, idx1, w0, w1 = bn_mix(truncation)
    return np.array([idx0, idx1], dtype=np.int64), np.array([w0, w1], dtype=np.float32)
