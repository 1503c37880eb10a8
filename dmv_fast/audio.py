"""Audio decoding and the features that drive the video (SPEC §1).

All analysis happens on a mono signal at 22050 Hz, whatever the file's own rate and channels,
so every parameter means what it meant in the original. librosa, soundfile and PyAV are
imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

logger = logging.getLogger("dmv_fast")

SAMPLE_RATE = 22050
N_PITCHES = 12


class AudioInfo(NamedTuple):
    """What the file itself holds (the video's audio track keeps these)."""

    sample_rate: int
    channels: int
    duration: float  # seconds; 0.0 when the container does not say


@dataclass(frozen=True)
class AudioFeatures:
    """Per-frame audio features of a song at 22050 Hz (SPEC §1).

    ``N = 1 + n_samples // frame_length`` centred frames; frame ``i`` is centred on sample
    ``i * frame_length``.

    Attributes:
        specm: ``np.ndarray [shape=(N,)]`` mean mel power per frame, scaled to 0..1.
        gradm: ``np.ndarray [shape=(N,)]`` positive part of the gradient of the raw mean mel
            power, divided by its maximum.
        chroma: ``np.ndarray [shape=(12, N)]`` CQT chromagram, rows C, C#, ..., B, each frame
            scaled so its strongest pitch is 1.
        chromasort: ``np.ndarray [shape=(12,)]`` int, pitch rows by mean power, strongest first.
        frame_length: hop between frames in samples at 22050 Hz.
        n_samples: length of the mono 22050 Hz signal.
    """

    specm: np.ndarray
    gradm: np.ndarray
    chroma: np.ndarray
    chromasort: np.ndarray
    frame_length: int
    n_samples: int

    def __post_init__(self) -> None:
        n = self.specm.shape[0]
        if (
            self.specm.ndim != 1
            or self.gradm.shape != (n,)
            or self.chroma.shape != (N_PITCHES, n)
            or self.chromasort.shape != (N_PITCHES,)
        ):
            raise ValueError(
                "AudioFeatures shapes must be specm (N,), gradm (N,), chroma (12, N), "
                f"chromasort (12,); got {self.specm.shape}, {self.gradm.shape}, "
                f"{self.chroma.shape}, {self.chromasort.shape}"
            )
        if n < 1:
            raise ValueError("AudioFeatures need at least one frame")

    @property
    def n_frames(self) -> int:
        """Number of feature frames ``N`` (= video frames of the whole song)."""
        return int(self.specm.shape[0])

    @property
    def duration(self) -> float:
        """Length of the analysed signal in seconds."""
        return self.n_samples / SAMPLE_RATE


def _check_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"song {str(p)!r} does not exist")
    if not p.is_file():
        raise ValueError(f"song {str(p)!r} is not a file")
    if p.stat().st_size == 0:
        raise ValueError(f"song {str(p)!r} is empty (0 bytes)")
    return p


def probe_audio(path: str | os.PathLike[str]) -> AudioInfo:
    """Sample rate, channels and duration of the file's first audio stream (PyAV).

    Raises:
        ValueError: the file is missing, empty, not a media file or has no audio stream.
    """
    import av

    p = _check_file(path)
    try:
        with av.open(str(p)) as container:
            streams = container.streams.audio
            if not streams:
                raise ValueError(f"song {str(p)!r} has no audio stream")
            stream = streams[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            channels = int(stream.codec_context.channels or 0)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
    except av.FFmpegError as e:
        raise ValueError(f"song {str(p)!r} is not a readable audio file ({e})") from e
    if rate <= 0 or channels <= 0:
        raise ValueError(f"song {str(p)!r} has an audio stream without a sample rate or channels")
    return AudioInfo(sample_rate=rate, channels=channels, duration=duration)


def _decode_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    """Decode with libsndfile as ``librosa.load`` does; ``None`` when it cannot read the file."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            # Same call as librosa.load: float32, channels first.
            y = f.read(frames=-1, dtype="float32", always_2d=False).T
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    return y, int(rate)


def _decode_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with FFmpeg (formats libsndfile cannot read)."""
    import av

    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"song {str(path)!r} has no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            # Planar float, same rate and layout: FFmpeg's sample conversion only.
            resampler = av.AudioResampler(format="fltp")
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except av.FFmpegError as e:
        raise ValueError(f"song {str(path)!r} is not a readable audio file ({e})") from e
    if not chunks or rate <= 0:
        raise ValueError(f"song {str(path)!r} contains no audio samples")
    y = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    return (y[0] if y.shape[0] == 1 else y), rate


def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a song to mono float32 at 22050 Hz, as ``librosa.load(path)`` does.

    mp3, wav, ogg and flac (and whatever else libsndfile reads) go through soundfile; anything
    else through PyAV. Channels are averaged, then the signal is resampled with the installed
    librosa's default resampler.

    Returns:
        ``np.ndarray [shape=(n_samples,)]`` float32.

    Raises:
        ValueError: missing, empty, unreadable or non-audio files, files without samples.
    """
    import librosa

    p = _check_file(path)
    decoded = _decode_soundfile(p)
    if decoded is None:
        logger.debug("libsndfile cannot read %s; decoding with PyAV", p)
        decoded = _decode_pyav(p)
    y, rate = decoded
    if y.ndim > 1:
        y = librosa.to_mono(y)
    if y.size == 0:
        raise ValueError(f"song {str(p)!r} contains no audio samples")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"song {str(p)!r} contains non-finite samples (NaN or infinity)")
    if rate != SAMPLE_RATE:
        y = librosa.resample(y, orig_sr=rate, target_sr=SAMPLE_RATE, res_type=_res_type())
    return np.ascontiguousarray(y, dtype=np.float32)


def _res_type() -> str:
    """The resampler that ``librosa.load`` uses by default in the installed librosa."""
    import inspect

    import librosa

    return str(inspect.signature(librosa.load).parameters["res_type"].default)


def check_frame_length(frame_length: int) -> None:
    """Raise ``ValueError`` unless ``frame_length`` is a positive multiple of 64 (the CQT's)."""
    if (
        isinstance(frame_length, bool)
        or not isinstance(frame_length, (int, np.integer))
        or frame_length <= 0
        or frame_length % 64
    ):
        raise ValueError(
            f"frame_length must be a positive multiple of 64 (64, 128, ..., 512, ...), "
            f"got {frame_length!r}"
        )


def analyze(song: str | os.PathLike[str] | np.ndarray, frame_length: int = 512) -> AudioFeatures:
    """Compute the features of SPEC §1.

    Args:
        song: a path, or ``np.ndarray [shape=(n_samples,)]`` mono audio already at 22050 Hz.
        frame_length: hop in samples, a positive multiple of 64.

    Returns:
        :class:`AudioFeatures` with ``N = 1 + n_samples // frame_length`` frames.

    Silent or constant input gives finite features: ``specm`` is all 0 when it does not vary,
    ``gradm`` is all 0 when the gradient's maximum is 0, and silent frames have all-zero chroma.
    (The original divides by zero in these cases.)
    """
    check_frame_length(frame_length)
    if isinstance(song, np.ndarray):
        y = np.asarray(song, dtype=np.float32)
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"audio array must be 1-D and non-empty, got shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("audio array contains non-finite samples (NaN or infinity)")
    else:
        y = load_audio(song)
    return _features(y, int(frame_length))


def _features(y: np.ndarray, fl: int) -> AudioFeatures:
    with warnings.catch_warnings():
        # librosa warns on short or silent input (FFT longer than the signal in the lowest CQT
        # octaves, tuning estimated from no peaks); the results are still defined.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"librosa\.")
        return _compute_features(y, fl)


def _compute_features(y: np.ndarray, fl: int) -> AudioFeatures:
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_mels=128, fmax=8000, hop_length=fl)
    specm = np.mean(mel, axis=0)
    # gradm from the raw specm, divided by its maximum, negatives to 0 (in this order). A single
    # frame has no gradient, and a maximum of 0 (or a ptp of 0 for specm) gives zeros where the
    # original divides by zero.
    gradm = np.gradient(specm) if specm.shape[0] >= 2 else np.zeros_like(specm)
    gmax = np.max(gradm)
    gradm = gradm / gmax if gmax != 0 else np.zeros_like(gradm)
    gradm = gradm.clip(min=0)
    ptp = np.ptp(specm)
    specm = (specm - np.min(specm)) / ptp if ptp > 0 else np.zeros_like(specm)
    chroma = librosa.feature.chroma_cqt(y=y, sr=SAMPLE_RATE, hop_length=fl)
    # Frames with no energy come back from librosa as zeros; keep any NaN out all the same.
    chroma = np.nan_to_num(chroma, nan=0.0, posinf=0.0, neginf=0.0)
    chromasort = np.argsort(np.mean(chroma, axis=1))[::-1]
    n = specm.shape[0]
    if chroma.shape[1] != n:  # both use centred frames; guard the invariant
        raise RuntimeError(f"mel frames ({n}) and chroma frames ({chroma.shape[1]}) differ")
    return AudioFeatures(
        specm=specm,
        gradm=gradm,
        chroma=chroma,
        chromasort=np.ascontiguousarray(chromasort),
        frame_length=fl,
        n_samples=int(y.shape[0]),
    )
