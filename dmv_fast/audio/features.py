"""The features that drive the video (SPEC §1).

All analysis happens on a mono signal at 22050 Hz, whatever the file's own rate and channels,
so every parameter means what it meant in the original. librosa is imported on first use, so
importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np

from dmv_fast.audio.decode import load_audio
from dmv_fast.settings.choices import N_PITCHES, SAMPLE_RATE, check_frame_length

logger = logging.getLogger("dmv_fast")


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
