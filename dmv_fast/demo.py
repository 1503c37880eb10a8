"""``dmv-fast demo``: a 15-second piece synthesized in code, rendered at 128 px."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dmv_fast.pipeline import ProgressCallback

logger = logging.getLogger("dmv_fast")

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


def pretrained_or_random(resolution: int = 128) -> tuple[str | None, str]:
    """Pretrained weights when they are cached or downloadable, else ``"random"``.

    Returns:
        ``(weights, note)`` where ``weights`` is ``None`` for the pretrained model.
    """
    from dmv_fast.models import fetch_weights

    name = f"biggan-deep-{resolution}"
    try:
        fetch_weights(name)
    except (OSError, RuntimeError, ValueError) as exc:
        return "random", (
            f"pretrained {name} weights are not cached and could not be downloaded ({exc}); "
            "rendering with --weights random: the motion follows the music, "
            "but the pictures are abstract, not ImageNet objects"
        )
    return None, f"rendering with the pretrained {name} weights"


def contact_sheet(video: Path, sheet: Path, columns: int = 4, rows: int = 3) -> Path:
    """Read evenly spaced frames back from ``video`` and tile them into a PNG."""
    import av
    from PIL import Image

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not frames:
        raise RuntimeError(f"{video} has no video frames")
    picks = np.linspace(0, len(frames) - 1, columns * rows).round().astype(int)
    h, w, _ = frames[0].shape
    grid = Image.new("RGB", (columns * w, rows * h))
    for k, idx in enumerate(picks):
        grid.paste(Image.fromarray(frames[idx]), ((k % columns) * w, (k // columns) * h))
    grid.save(sheet)
    return sheet


def run_demo(
    output: str | Path = "demo.mp4",
    *,
    weights: str | None = None,
    frame_length: int = 512,
    seed: int = 2026,
    progress: ProgressCallback | None = None,
) -> tuple[Path, Path]:
    """Synthesize the demo piece, render it at 128 px, and write a contact sheet.

    Returns:
        ``(video, sheet)`` paths: ``demo.mp4`` and ``demo.png`` beside it.
    """
    import soundfile as sf

    from dmv_fast.options import RenderOptions
    from dmv_fast.pipeline import render
    from dmv_fast.plan import ModelSpec

    output = Path(output)
    song = output.with_name(output.stem + "-song.wav")
    sf.write(song, synthesize_song(), DEMO_RATE)
    if weights is None:
        weights, note = pretrained_or_random(128)
        (logger.warning if weights == "random" else logger.info)(note)
    options = RenderOptions(
        song=str(song),
        output_file=str(output),
        frame_length=frame_length,
        seed=seed,
        classes=(1, 22, 94, 130, 309, 323, 327, 340, 388, 417, 980, 985),
    )
    render(
        options,
        ModelSpec(resolution=128, weights=weights, batch_size=8),
        overwrite=True,
        progress=progress,
    )
    sheet = contact_sheet(output, output.with_suffix(".png"))
    return output, sheet
