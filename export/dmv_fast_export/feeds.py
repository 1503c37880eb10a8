"""What int8 graphs are calibrated and checked on: the vectors a render makes from
synthesized music, as the graph's input feeds. No torch here."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from dmv_fast.model.truncation import bn_inputs

#: Truncations whose vectors calibrate the activation ranges.
CALIBRATION_TRUNCATIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
#: Calibration frames per truncation (rounded up to whole graph batches).
CALIBRATION_FRAMES = 8
#: Seconds of synthesized music the vectors follow.
PIECE_SECONDS = 12.0
#: The synthesized piece (its seed) of the calibration (the quality check uses another).
CALIBRATION_PIECE = 11


@functools.lru_cache(maxsize=4)
def _piece(piece: int, seconds: float) -> Any:
    """Audio features of a synthesized piece (22050 Hz mono, frame length 512)."""
    from dmv_fast.audio.features import analyze
    from dmv_fast.audio.synth import synthesize_song

    return analyze(synthesize_song(seconds, rate=22050, seed=piece).mean(axis=1), 512)


def render_vectors(
    truncation: float,
    n_frames: int,
    *,
    seed: int,
    piece: int = CALIBRATION_PIECE,
    seconds: float = PIECE_SECONDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Noise and class vectors a render makes, from synthesized music.

    ``n_frames`` frames are taken evenly over the piece, so quiet starts, beats and chord
    changes all appear. ``piece`` picks the music; ``seed`` the 12 classes and the draws.

    Returns:
        ``noise`` float32 ``[n_frames, 128]`` and ``classes`` float32 ``[n_frames, 1000]``.
    """
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.vectors.trajectory import compute_vectors

    options = RenderOptions(song="synthesized.wav", truncation=truncation)
    vectors = compute_vectors(_piece(piece, seconds), options, seed=seed)
    picks = np.linspace(0, len(vectors.noise) - 1, n_frames).round().astype(int)
    return vectors.noise[picks], vectors.class_vectors[picks]


def feeds(
    noise: np.ndarray, classes: np.ndarray, truncation: float, batch: int
) -> Iterator[dict[str, np.ndarray]]:
    """The graph's inputs, ``batch`` frames at a time (the last batch padded with zeros)."""
    idx, w = bn_inputs(truncation)
    for start in range(0, len(noise), batch):
        z, c = noise[start : start + batch], classes[start : start + batch]
        pad = batch - len(z)
        if pad:
            z = np.concatenate([z, np.zeros((pad, z.shape[1]), np.float32)])
            c = np.concatenate([c, np.zeros((pad, c.shape[1]), np.float32)])
        yield {"noise": z, "classes": c, "bn_idx": idx, "bn_w": w}


def calibration_feeds(
    batch: int,
    truncations: Sequence[float] = CALIBRATION_TRUNCATIONS,
    frames: int = CALIBRATION_FRAMES,
    seed: int = 11,
) -> list[dict[str, np.ndarray]]:
    """Calibration batches: ``frames`` render frames per truncation (other classes and draws
    at each truncation)."""
    n = batch * math.ceil(frames / batch)
    out = []
    for k, truncation in enumerate(truncations):
        noise, classes = render_vectors(truncation, n, seed=seed + k, piece=CALIBRATION_PIECE)
        out.extend(feeds(noise, classes, truncation, batch))
    return out
