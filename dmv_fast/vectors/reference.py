"""The reference of SPEC §4: the original's way, a per-frame loop of NumPy operations.

It works on full 128-unit noise vectors and 1000-entry class vectors, frame by frame, exactly
as SPEC §4 is written: the specification in code, and the yardstick the numba kernels of
:mod:`dmv_fast.vectors.trajectory` (and the online engine's, :mod:`dmv_fast.vectors.online`) are tested and
benchmarked against.
"""

from __future__ import annotations

import numpy as np

from dmv_fast.settings.choices import N_IMAGENET, NOISE_DIM
from dmv_fast.vectors.trajectory import JITTER_PERIOD, NUDGE, NUDGE_STD


def reference_trajectory(
    drive: np.ndarray,
    chroma: np.ndarray,
    chromasort: np.ndarray,
    classes: tuple[int, ...],
    cv0: np.ndarray,
    nv0: np.ndarray,
    jitters: np.ndarray,
    *,
    tempo_scale: float,
    pitch_scale: float,
    truncation: float,
    depth: float,
    smooth_frames: int,
) -> tuple[np.ndarray, np.ndarray]:
    """SPEC §4 step by step: a per-frame loop of NumPy operations on full vectors.

    Args:
        drive: ``[N]`` ``gradm + specm``.
        chroma: ``[12, N]`` chromagram; ``chromasort``: ``[12]`` pitches strongest first.
        classes: the ``K`` classes in pitch-rank order.
        cv0: ``[1000]`` first class vector; ``nv0``: ``[128]`` first noise vector.
        jitters: ``[ceil(N / 200), 128]`` jitter factors.
        tempo_scale, pitch_scale, smooth_frames: ``ts``, ``ps``, ``sf`` of SPEC §2.

    Returns:
        ``(noise [N, 128], class_vectors [N, 1000])`` float64, row ``k`` = video frame ``k``.
    """
    n = len(drive)
    k = len(classes)
    ts, ps = float(tempo_scale), float(pitch_scale)
    nv = np.array(nv0, dtype=np.float64)
    direction = np.where(nv < 0, 1.0, -1.0)
    last_update = np.zeros(NOISE_DIM)
    cv = np.array(cv0, dtype=np.float64)
    noise = [nv]
    class_vectors = [cv]
    for i in range(n):
        jit = jitters[i // JITTER_PERIOD]
        update = np.full(NOISE_DIM, ts) * drive[i] * direction * jit
        update = (update + 3 * last_update) / 4
        last_update = update
        nv = nv + update
        noise.append(nv)
        direction = np.where(
            nv >= 2 * truncation - ts, -1.0, np.where(nv < -2 * truncation + ts, 1.0, direction)
        )
        cv = reference_class_step(cv, classes, chroma[chromasort[:k], i], ps, depth)
        class_vectors.append(cv)
    smoothed = reference_smooth(np.array(class_vectors), smooth_frames, n)
    return np.array(noise[:n]), smoothed


def reference_class_step(
    cv: np.ndarray, classes: tuple[int, ...], pitch: np.ndarray, ps: float, depth: float
) -> np.ndarray:
    """SPEC §4 steps 4-7 for one frame: the next ``[1000]`` class vector from the last one.

    ``pitch[j]`` is the chroma value of the pitch that drives ``classes[j]``. The offline and
    the online references both step the classes through this one function.
    """
    new = np.zeros(N_IMAGENET)
    for j, c in enumerate(classes):
        new[c] = (cv[c] + pitch[j] / ps) / (1 + 1 / ps)
    if len(classes) > 6:
        nonzero = new[new != 0]
        m = nonzero.min() if nonzero.size else 0.0
        new[new == 0] = m
        spread = np.ptp(new)
        new = (new - m) / spread if spread > 0 else np.zeros(N_IMAGENET)
    else:
        top = new.max()
        if top > 0:
            new = new / top
    new = new * depth
    nonzero = new[new != 0]
    if nonzero.size == 0 or np.std(nonzero) < NUDGE_STD:
        new[classes[0]] += NUDGE
    return new


def reference_smooth(class_vectors: np.ndarray, sf: int, n_out: int) -> np.ndarray:
    """Smooth ``[L, 1000]`` class vectors in bins of ``sf`` into ``n_out`` rows (SPEC §4 end).

    Bin ``c`` emits ``sf`` rows interpolating from its mean to the next bin's mean; the last
    (possibly partial) bin's mean is held to the end.
    """
    if sf == 1:
        return class_vectors[:n_out].copy()
    n_bins = -(-len(class_vectors) // sf)
    means = [np.mean(class_vectors[c * sf : (c + 1) * sf], axis=0) for c in range(n_bins)]
    out = []
    for c in range(n_bins - 1):
        for j in range(sf):
            w = j / (sf - 1)
            out.append(means[c] * (1 - w) + means[c + 1] * w)
    while len(out) < n_out:
        out.append(means[-1])
    return np.array(out[:n_out])
