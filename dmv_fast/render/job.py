"""A render's song side, shared by the one-process and segmented drivers: the analysis, the
seed (a rerun adopts the recorded one), the vectors (fresh or recorded), the frame count;
and :class:`RenderResult`, what every render returns."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.audio.features import AudioFeatures, analyze
from dmv_fast.render.engine import ProgressCallback, no_progress
from dmv_fast.render.record import read_record
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.trajectory import Vectors, compute_vectors

logger = logging.getLogger("dmv_fast")


@dataclass
class RenderResult:
    """What a render produced and what it used (``plan``: :meth:`Plan.to_dict`, no ``auto``)."""

    output: Path
    frames: int
    fps: Fraction
    seed: int
    classes: tuple[int, ...]
    record: Path
    providers: list[str]
    encoder: str
    plan: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    #: ``NAME.plot.png`` when the render drew the plot of its vectors (``plot``).
    plot: Path | None = None


def video_frame_count(n_feature_frames: int, options: RenderOptions) -> int:
    """Frames in the video: every feature frame, or exactly ``--duration`` seconds of them."""
    if options.duration is not None and round(options.duration * options.fps) > n_feature_frames:
        logger.warning(
            "--duration %.3g s is longer than the song (%.3f s): rendering the whole song",
            options.duration,
            n_feature_frames / options.fps,
        )
    return options.video_frames(n_feature_frames)


@dataclass
class SongJob:
    """A song analysed and its vectors computed, ready for the generator.

    Attributes:
        options: the render's options, with the seed adopted from a rerun's folder.
        features: the song's :class:`~dmv_fast.audio.features.AudioFeatures`.
        vectors: the whole song's vectors (what the record stores).
        noise: ``np.ndarray [shape=(n_frames, 128)]`` float32, the video's frames only.
        class_vectors: ``np.ndarray [shape=(n_frames, 1000)]`` float32, likewise.
        timings: seconds spent on ``analysis`` and ``vectors``.
    """

    options: RenderOptions
    features: AudioFeatures
    vectors: Vectors
    noise: np.ndarray
    class_vectors: np.ndarray
    timings: dict[str, float]

    @property
    def n_frames(self) -> int:
        return len(self.noise)


def warm_up(seconds: float = 3.0, frame_length: int = 512) -> dict[str, float]:
    """Run every compiled kernel a render and a live session use once, so that numba compiles
    them (librosa's analysis kernels and dmv-fast's trajectory kernels) and keeps them in its
    on-disk cache: the first render of a fresh install then starts in seconds, not the tens
    of seconds compiling takes. ``make setup`` runs it (``dmv-fast warm-up``).

    A synthesized piece (44.1 kHz stereo, so decoding and resampling run too) is analysed,
    its offline vectors computed, and the same audio pushed through the online trajectory.

    Returns:
        Seconds spent on ``analysis``, ``vectors`` and ``online``.
    """
    import tempfile

    import soundfile

    from dmv_fast.audio.synth import synthesize_song
    from dmv_fast.vectors.online import OnlineTrajectory

    timings: dict[str, float] = {}
    rate = 44100
    audio = synthesize_song(seconds, rate=rate)
    with tempfile.TemporaryDirectory(prefix="dmv-fast-warm-up-") as tmp:
        song = Path(tmp) / "warm-up.wav"
        soundfile.write(song, audio, rate)
        options = RenderOptions(song=str(song), frame_length=frame_length, seed=1)
        t0 = time.perf_counter()
        features = analyze(song, frame_length)
        timings["analysis"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        compute_vectors(features, options, seed=1)
        timings["vectors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    online = OnlineTrajectory(dataclasses.replace(options, song="-"))
    for start in range(0, len(audio), 4096):
        online.push(audio[start : start + 4096], rate)
    online.finish()
    timings["online"] = time.perf_counter() - t0
    return timings


def prepare(
    options: RenderOptions,
    recorded: dict[str, Any] | None = None,
    progress: ProgressCallback = no_progress,
) -> SongJob:
    """Analyse the song and compute its vectors once.

    Args:
        options: the render's options.
        recorded: the manifest of frames or segments a previous run left (None: none); a
            rerun without ``seed`` continues with its seed.
        progress: ``progress("analysis", done, total)``.

    Raises:
        ValueError: an unreadable song; a record (``use_previous_*``) that does not fit.
    """
    output = Path(options.output_file)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    progress("analysis", 0, 1)
    features = analyze(options.song, options.frame_length)
    progress("analysis", 1, 1)
    timings["analysis"] = time.perf_counter() - t0
    if options.seed is None and recorded is not None and recorded.get("seed") is not None:
        options = dataclasses.replace(options, seed=int(recorded["seed"]))
    t0 = time.perf_counter()
    if options.use_previous_vectors:
        vectors = read_record(output, options, features)
    else:
        previous = None
        if options.use_previous_classes:
            previous = read_record(output, options, features).classes
        vectors = compute_vectors(features, options, seed=options.seed, classes=previous)
    timings["vectors"] = time.perf_counter() - t0
    n = video_frame_count(features.n_frames, options)
    return SongJob(
        options=options,
        features=features,
        vectors=vectors,
        noise=np.ascontiguousarray(vectors.noise[:n], dtype=np.float32),
        class_vectors=np.ascontiguousarray(vectors.class_vectors[:n], dtype=np.float32),
        timings=timings,
    )
