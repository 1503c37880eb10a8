"""The end-to-end figure of a row: a synthesized song rendered to MP4 by the real pipeline.

The song is shortened so that its render fits the row's time budget at the measured
generator speed, but never below :data:`MIN_E2E_SECONDS`; a row whose render would take more
than ``limit`` budgets even so is skipped (``limit`` 0: rendered whatever the speed, so the
row's presence depends only on the settings). See :func:`e2e_length`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from dmv_fast.bench.machine import PeakRSS
from dmv_fast.bench.rows import Row, first_line

logger = logging.getLogger("dmv_fast")

SAMPLE_RATE = 22050
FRAME_LENGTH = 512  # the original's default hop: 43.07 frames per second of audio
MIN_E2E_SECONDS = 1.0  # shortest song worth an end-to-end row (session overheads dominate)
E2E_LIMIT = 10.0  # default: an end-to-end row may take this many measurement budgets


def write_song(path: str | os.PathLike[str], seconds: float, seed: int = 7) -> Path:
    """Synthesize ``seconds`` of music (:func:`dmv_fast.render.demo.synthesize_song`) into a WAV."""
    import soundfile as sf

    from dmv_fast.audio.synth import DEMO_RATE, synthesize_song

    path = Path(path)
    sf.write(path, synthesize_song(seconds, seed=seed), DEMO_RATE)
    return path


def end_to_end(
    song: str | os.PathLike[str],
    output: str | os.PathLike[str],
    model: Any,
    *,
    frame_length: int = FRAME_LENGTH,
    seed: int = 0,
) -> dict[str, Any]:
    """Render ``song`` with :func:`dmv_fast.render.api.render` and the x264 encoder.

    Args:
        song, output: the audio file and the MP4 to write (replaced if it exists).
        model: a :class:`~dmv_fast.settings.spec.ModelSpec`, or a
            :class:`~dmv_fast.render.api.Visualizer` whose session is reused.

    Returns:
        ``song_s``, ``audio_s`` (seconds of video), ``frames``, ``wall_s``,
        ``realtime_factor`` (seconds of video per second of wall time), the pipeline's stage
        ``timings``, ``encoder``, ``providers`` and ``plan`` (what ran, no ``auto``).
    """
    import soundfile as sf

    from dmv_fast.render.api import Visualizer, render
    from dmv_fast.settings.options import RenderOptions

    options = RenderOptions(
        song=str(song),
        frame_length=frame_length,
        output_file=str(output),
        seed=seed,
        encoder="x264",
    )
    vis = model if isinstance(model, Visualizer) else None
    t0 = time.perf_counter()
    result = render(options, None if vis else model, overwrite=True, visualizer=vis)
    wall = time.perf_counter() - t0
    video_s = float(result.frames / result.fps)
    return {
        "song_s": round(float(sf.info(str(song)).duration), 3),
        "audio_s": round(video_s, 3),
        "frames": result.frames,
        "wall_s": round(wall, 3),
        "realtime_factor": round(video_s / wall, 3),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "encoder": result.encoder,
        "providers": list(result.providers),
        "plan": result.plan,
    }


def e2e_length(
    song_seconds: float, frames_per_s: float, budget: float, limit: float = E2E_LIMIT
) -> tuple[float, str | None]:
    """Seconds of song for an end-to-end render, and why it is skipped (None: it runs).

    Args:
        song_seconds: the song asked for (> 0).
        frames_per_s: the generator speed the row measured.
        budget: the row's time budget in seconds.
        limit: skip when the render needs more than ``limit`` budgets; 0: never skip.

    The song fits the budget at ``frames_per_s`` but is never shorter than
    :data:`MIN_E2E_SECONDS` (nor longer than ``song_seconds``), rounded to 0.1 s.
    """
    fits = budget * frames_per_s * FRAME_LENGTH / SAMPLE_RATE
    seconds = round(min(song_seconds, max(MIN_E2E_SECONDS, fits)), 1)
    need = seconds * SAMPLE_RATE / FRAME_LENGTH / frames_per_s
    if limit > 0 and need > limit * budget:
        return seconds, (
            f"{seconds:g} s of video needs ~{need:.0f} s at {frames_per_s:.2f} frames/s,"
            f" over {limit:g}x the {budget:g} s budget"
        )
    return seconds, None


def e2e_row(
    row: Row,
    visualizer: Any,
    song_seconds: float,
    budget: float,
    songs: dict[float, Path] | None,
    workdir: Path | None,
    *,
    limit: float = E2E_LIMIT,
) -> dict[str, Any]:
    """Render a synthesized song on the row's :class:`~dmv_fast.render.api.Visualizer`.

    Returns:
        The figures of :func:`end_to_end` plus ``peak_rss_mb`` (and ``note`` when the song was
        shortened); or ``{"skipped": reason}`` / ``{"failed": reason}``.
    """
    if song_seconds <= 0:
        return {"skipped": "song_seconds is 0"}
    if visualizer is None:
        return {"skipped": "the render pipeline runs on ONNX Runtime (see benchmarks/bench_e2e.py)"}
    if workdir is None or songs is None:
        return {"skipped": "no work folder"}
    assert row.frames_per_s is not None
    seconds, skip = e2e_length(song_seconds, row.frames_per_s, budget, limit)
    if skip is not None:
        return {"skipped": skip}
    song = songs.get(seconds)
    if song is None:
        song = workdir / f"song-{seconds:g}s.wav"
        if not song.exists():
            write_song(song, seconds)
        songs[seconds] = song
    output = workdir / f"e2e-{row.backend}-{row.resolution}-{row.batch_size}.mp4"
    try:
        with PeakRSS() as rss:
            result = end_to_end(song, output, visualizer)
    except Exception as exc:
        logger.warning("end-to-end %s failed: %s", row.backend, exc)
        return {"failed": first_line(exc)}
    finally:
        with contextlib.suppress(OSError):
            output.unlink()
    result["peak_rss_mb"] = rss.peak_mb
    if seconds < song_seconds:
        result["note"] = f"song shortened from {song_seconds:g} s to fit the {budget:g} s budget"
    return result
