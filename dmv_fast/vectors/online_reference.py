"""The online kernels (:mod:`dmv_fast.vectors.online`) written out frame by frame with NumPy:
their yardstick, compared with them by the tests."""

from __future__ import annotations

import numpy as np

from dmv_fast.settings.choices import N_IMAGENET, N_PITCHES, NOISE_DIM
from dmv_fast.vectors.online import RANGE_FLOOR, OnlineParams
from dmv_fast.vectors.reference import reference_class_step
from dmv_fast.vectors.trajectory import JITTER_PERIOD


def reference_vectors(
    specm_raw: np.ndarray,
    chroma: np.ndarray,
    classes: tuple[int, ...],
    nv0: np.ndarray,
    jitters: np.ndarray,
    params: OnlineParams,
) -> tuple[np.ndarray, np.ndarray]:
    """The online kernels written out frame by frame with NumPy on full-width vectors.

    Args:
        specm_raw: ``[N]`` raw mean mel power per frame; ``chroma``: ``[N, 12]`` per frame.
        classes: the ``K`` classes in rank order; ``nv0``: ``[128]`` first noise state.
        jitters: ``[ceil(N / 200), 128]`` jitter factors.

    Returns:
        ``(noise [N, 128], class_vectors [N, 1000])`` float64 (the last ``lookahead`` frames
        hold the final smoothing window).
    """
    n, k = len(specm_raw), len(classes)
    d, ts, ps, tr = params.decay, params.tempo_scale, params.pitch_scale, params.truncation
    lo = hi = prev = float(specm_raw[0]) if n else 0.0
    gmax = peak = 0.0
    means = np.zeros(N_PITCHES)
    order = list(range(N_PITCHES))
    nv = np.array(nv0, dtype=np.float64)
    direction = np.where(nv < 0, 1.0, -1.0)
    last = np.zeros(NOISE_DIM)
    cv = np.zeros(N_IMAGENET)
    noise, rows = [], []
    for i in range(n):
        x = float(specm_raw[i])
        hi, lo, peak = max(x, x + (hi - x) * d), min(x, x + (lo - x) * d), max(peak, x)
        g = x - prev
        gmax, prev = max(g, gmax * d), x
        spread = max(hi - lo, RANGE_FLOOR * peak)
        drive = ((x - lo) / spread if spread > 0 else 0.0) + (
            g / gmax if g > 0 and gmax > 0 else 0.0
        )
        update = (ts * drive * direction * jitters[i // JITTER_PERIOD] + 3 * last) / 4
        last, nv = update, nv + update
        direction = np.where(nv >= 2 * tr - ts, -1.0, np.where(nv < -2 * tr + ts, 1.0, direction))
        noise.append(nv)
        means = means * params.rank_decay + chroma[i] * (1 - params.rank_decay)
        for r in range(1, N_PITCHES):  # one insertion pass with a margin
            s = r
            while s > 0 and means[order[s]] > means[order[s - 1]] * (1 + params.hysteresis):
                order[s], order[s - 1] = order[s - 1], order[s]
                s -= 1
        cv = reference_class_step(cv, classes, chroma[i, order[:k]], ps, params.depth)
        rows.append(cv)
    sf, la = params.smooth_frames, params.lookahead
    ends = [min(t + la, n - 1) for t in range(n)]
    smoothed = [np.mean(rows[max(0, e - sf + 1) : e + 1], axis=0) for e in ends]
    if n == 0:
        return np.zeros((0, NOISE_DIM)), np.zeros((0, N_IMAGENET))
    return np.array(noise), np.array(smoothed)
