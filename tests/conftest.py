"""Shared fixtures: songs synthesized on the fly, and the shipped real clip."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

DATA = Path(__file__).parent / "data"

# I - vi - IV - V in C: MIDI root and chord intervals.
_CHORDS = [(60, (0, 4, 7)), (57, (0, 3, 7)), (53, (0, 4, 7)), (55, (0, 4, 7))]


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def synth_music(
    seconds: float = 3.0, rate: int = 22050, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """Chords, bass, kick, snare, hats and a little noise at 120 bpm.

    Returns:
        ``np.ndarray [shape=(n_samples, channels)]`` float32 in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    y = np.zeros(n)
    beat = 0.5
    for b, start in enumerate(np.arange(0.0, seconds, 2 * beat)):
        root, intervals = _CHORDS[b % len(_CHORDS)]
        i0, i1 = int(start * rate), min(n, int((start + 2 * beat) * rate))
        local = t[i0:i1] - start
        env = np.minimum(local / 0.02, 1.0) * np.exp(-1.5 * local)
        for iv in intervals:
            f = _hz(root + iv)
            y[i0:i1] += (
                0.1 * env * (np.sin(2 * np.pi * f * local) + 0.3 * np.sin(4 * np.pi * f * local))
            )
        y[i0:i1] += 0.2 * env * np.sin(2 * np.pi * _hz(root - 24) * local)
    for k, start in enumerate(np.arange(0.0, seconds, beat / 2)):
        i0 = int(start * rate)
        m = min(n - i0, int(0.15 * rate))
        local = np.arange(m) / rate
        if k % 4 == 0:  # kick: a falling sine
            y[i0 : i0 + m] += (
                0.5
                * np.sin(2 * np.pi * (55 * local + 3 * (1 - np.exp(-30 * local))))
                * np.exp(-20 * local)
            )
        elif k % 4 == 2:  # snare: noise burst
            y[i0 : i0 + m] += 0.25 * rng.standard_normal(m) * np.exp(-25 * local)
        y[i0 : i0 + m] += 0.05 * rng.standard_normal(m) * np.exp(-90 * local)  # hat
    y += 0.003 * rng.standard_normal(n)
    out = np.stack([y * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return np.clip(out, -1, 1).astype(np.float32)


@pytest.fixture
def make_song(tmp_path: Path) -> Callable[..., Path]:
    """``make_song(name="song.wav", seconds=3, rate=22050, channels=1, seed=0, **sf_kwargs)``.

    Writes a synthesized piece with soundfile (format from the name's extension) and returns
    its path.
    """

    def make(
        name: str = "song.wav",
        seconds: float = 3.0,
        rate: int = 22050,
        channels: int = 1,
        seed: int = 0,
        **kwargs,
    ) -> Path:
        path = tmp_path / name
        sf.write(path, synth_music(seconds, rate, channels, seed), rate, **kwargs)
        return path

    return make


@pytest.fixture
def song_wav(make_song: Callable[..., Path]) -> Path:
    """Three seconds of synthesized chords and drums, 44100 Hz stereo WAV."""
    return make_song("song.wav", seconds=3.0, rate=44100, channels=2)


@pytest.fixture
def real_song() -> Path:
    """8.9 s of real CC0 music jingles (Ogg Vorbis, 44100 Hz mono); see tests/data/README.md."""
    return DATA / "kenney_jingles.ogg"


@pytest.fixture(autouse=True)
def _restore_dmv_fast_logger():
    """The CLI configures the ``dmv_fast`` logger for a terminal; undo it after each test."""
    log = logging.getLogger("dmv_fast")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved[0], saved[1], saved[2]
