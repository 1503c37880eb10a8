"""A piece synthesized in code (chords, bass and drums): the demo's song, and the music the
int8 graphs are calibrated on and the benchmarks render. No file, no download."""

from __future__ import annotations

import numpy as np

DEMO_SECONDS = 15.0
DEMO_RATE = 44100
# C major, A minor, F major, G major: root MIDI notes and chord intervals.
_PROGRESSION = [(48, (0, 4, 7)), (45, (0, 3, 7)), (41, (0, 4, 7)), (43, (0, 4, 7))]


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def synthesize_song(
    seconds: float = DEMO_SECONDS, rate: int = DEMO_RATE, seed: int = 7
) -> np.ndarray:
    """Chords, bass, kick, snare and hi-hats at 120 bpm.

    Returns:
        ``np.ndarray [shape=(n_samples, 2)]`` float32 stereo in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    beat = 0.5  # seconds per beat at 120 bpm
    bar = 4 * beat
    left = np.zeros(n)
    right = np.zeros(n)

    # Pads and bass: one chord per bar, a slow swell that follows the bar.
    for start in np.arange(0.0, seconds, bar):
        root, intervals = _PROGRESSION[int(start / bar) % len(_PROGRESSION)]
        seg = (t >= start) & (t < start + bar)
        local = t[seg] - start
        env = np.minimum(local / 0.05, 1.0) * np.exp(-local * 0.6)
        for k, iv in enumerate(intervals):
            f = _midi_hz(root + 12 + iv)
            tone = sum(np.sin(2 * np.pi * f * h * local) / h**1.5 for h in (1, 2, 3))
            pan = 0.35 + 0.3 * k / 2
            left[seg] += 0.12 * env * tone * (1 - pan)
            right[seg] += 0.12 * env * tone * pan
        bass = np.sin(2 * np.pi * _midi_hz(root - 12) * local) * np.exp(-(local % beat) * 3)
        left[seg] += 0.25 * bass
        right[seg] += 0.25 * bass

    # Drums: kick on 1 and 3, snare on 2 and 4, hats on every eighth; a fill in the last bar.
    def hit(at: float, length: float, wave: np.ndarray | None, decay: float, gain: float) -> None:
        i0 = int(at * rate)
        m = min(int(length * rate), n - i0)
        if m <= 0:
            return
        local = np.arange(m) / rate
        sig = wave[:m] if wave is not None else rng.standard_normal(m)
        sig = gain * sig * np.exp(-local * decay)
        left[i0 : i0 + m] += sig
        right[i0 : i0 + m] += sig

    kick_t = np.arange(int(0.3 * rate)) / rate
    # A pitch drop from 150 Hz to 50 Hz.
    kick = np.sin(2 * np.pi * (50 * kick_t + 100 / 30 * (1 - np.exp(-kick_t * 30))))
    for k, at in enumerate(np.arange(0.0, seconds, beat)):
        if k % 2 == 0:
            hit(at, 0.3, kick, 12, 0.6)
        else:
            hit(at, 0.2, None, 25, 0.25)
        hit(at + beat / 2, 0.05, None, 80, 0.08)
        if at >= seconds - bar:
            hit(at + beat / 4, 0.1, None, 40, 0.2)

    stereo = np.stack([left, right], axis=1)
    stereo /= max(1e-9, float(np.abs(stereo).max())) / 0.9
    return stereo.astype(np.float32)
