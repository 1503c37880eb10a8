"""Decoding songs: the header of any audio file, the whole signal as the analysis wants it,
and blocks at the file's own rate for live input.

soundfile, librosa and PyAV are imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dmv_fast.settings.choices import SAMPLE_RATE

logger = logging.getLogger("dmv_fast")


class AudioInfo(NamedTuple):
    """What the file itself holds (the video's audio track keeps these)."""

    sample_rate: int
    channels: int
    duration: float  # seconds; 0.0 when the container does not say


def check_file(path: str | os.PathLike[str]) -> Path:
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

    p = check_file(path)
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


def _decode(p: Path) -> tuple[np.ndarray, int]:
    decoded = _decode_soundfile(p)
    if decoded is None:
        logger.debug("libsndfile cannot read %s; decoding with PyAV", p)
        decoded = _decode_pyav(p)
    y, rate = decoded
    if y.size == 0:
        raise ValueError(f"song {str(p)!r} contains no audio samples")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"song {str(p)!r} contains non-finite samples (NaN or infinity)")
    return y, rate


def check_decodable(path: str | os.PathLike[str]) -> None:
    """Decode the whole song once, as :func:`load_audio` does, and drop it: the one-line
    ValueError the analysis would raise for a song whose header reads but whose audio does
    not, found before anything else starts (a playlist checks every song so)."""
    _decode(check_file(path))


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

    y, rate = _decode(check_file(path))
    if y.ndim > 1:
        y = librosa.to_mono(y)
    if rate != SAMPLE_RATE:
        y = librosa.resample(y, orig_sr=rate, target_sr=SAMPLE_RATE, res_type=_res_type())
    return np.ascontiguousarray(y, dtype=np.float32)


def _res_type() -> str:
    """The resampler that ``librosa.load`` uses by default in the installed librosa."""
    import inspect

    import librosa

    return str(inspect.signature(librosa.load).parameters["res_type"].default)


def song_blocks(
    path: str | os.PathLike[str], block: int = 1024
) -> tuple[int, int, Iterator[np.ndarray]]:
    """Decode a song's first audio stream lazily, block by block.

    Returns:
        ``(rate, channels, blocks)``; ``blocks`` yields ``np.ndarray [shape=(n, channels)]``
        float32 with ``n <= block``, at the file's own rate.
    """
    import av

    info = probe_audio(path)

    def blocks() -> Iterator[np.ndarray]:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt")  # packed float, same rate and layout
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    data = out.to_ndarray().reshape(-1, info.channels)
                    for start in range(0, len(data), block):
                        yield data[start : start + block]

    return info.sample_rate, info.channels, blocks()
