"""Render options: every setting of the original visualizer plus dmv-fast's runtime settings.

:class:`RenderOptions` is frozen and validated once with :meth:`RenderOptions.validate`; change
it with :func:`dataclasses.replace`. Each bad value is reported as a one-line ``ValueError``
naming the option, the value and the valid range, before any expensive work starts.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

from dmv_fast.audio import SAMPLE_RATE

RESOLUTIONS = (128, 256, 512)
BACKENDS = ("auto", "cpu", "cuda", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16")
ENCODERS = ("auto", "x264", "nvenc")
PIXELS = ("stretch", "fixed")
MAX_CLASSES = 12  # one class per pitch class of the chromagram
N_IMAGENET = 1000
MAX_SEED = 2**63 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _fail(name: str, value: Any, valid: str) -> ValueError:
    return ValueError(f"{name} must be {valid}, got {value!r}")


@dataclass(frozen=True)
class RenderOptions:
    """Everything that decides a render. Defaults are the original visualizer's.

    The first block mirrors the original's command line (see its README); ``seed`` and the
    runtime block are dmv-fast's own. ``classes`` holds ImageNet indices already resolved from
    names (:func:`dmv_fast.classes.resolve_classes`); a list is stored as a tuple.
    """

    song: str
    resolution: int = 512
    duration: float | None = None
    pitch_sensitivity: float = 220
    tempo_sensitivity: float = 0.25
    depth: float = 1.0
    classes: tuple[int, ...] | None = None
    num_classes: int = 12
    sort_classes_by_power: bool = False
    jitter: float = 0.5
    frame_length: int = 512
    truncation: float = 1.0
    smooth_factor: float = 20
    batch_size: int = 30
    use_previous_classes: bool = False
    use_previous_vectors: bool = False
    output_file: str = "output.mp4"
    scaling: int = 1
    use_disk: bool = False
    save_only: bool = False
    seed: int | None = None
    # Runtime settings (not in the original).
    weights: str | None = None
    backend: str = "auto"
    precision: str = "auto"
    encoder: str = "auto"
    crf: int = 20
    preset: str = "veryfast"
    pixels: str = "stretch"

    def __post_init__(self) -> None:
        # Normalise containers and paths so the options stay hashable and comparable.
        if isinstance(self.song, os.PathLike):
            object.__setattr__(self, "song", os.fspath(self.song))
        if isinstance(self.output_file, os.PathLike):
            object.__setattr__(self, "output_file", os.fspath(self.output_file))
        if self.classes is not None and not isinstance(self.classes, tuple):
            object.__setattr__(self, "classes", tuple(self.classes))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RenderOptions:
        """Build options from keyword arguments and validate them.

        Raises:
            ValueError: an unknown option name or a value out of range.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(unknown)}")
        options = cls(**kwargs)
        options.validate()
        return options

    # Derived settings (SPEC §2) -------------------------------------------------------------

    @property
    def fps(self) -> Fraction:
        """Video frame rate, exactly ``22050 / frame_length`` frames per second."""
        return Fraction(SAMPLE_RATE, self.frame_length)

    @property
    def pitch_scale(self) -> float:
        """``ps = (300 - pitch_sensitivity) * 512 / frame_length``."""
        return (300 - self.pitch_sensitivity) * 512 / self.frame_length

    @property
    def tempo_scale(self) -> float:
        """``ts = tempo_sensitivity * frame_length / 512``."""
        return self.tempo_sensitivity * self.frame_length / 512

    @property
    def smooth_frames(self) -> int:
        """Bin size ``sf`` of the class-vector smoothing; 1 means no smoothing.

        ``int(smooth_factor * 512 / frame_length)`` when ``smooth_factor > 1``. Values in
        (0, 1] mean no smoothing (the original fails on fractional bin sizes below 1).
        """
        if self.smooth_factor > 1:
            return int(self.smooth_factor * 512 / self.frame_length)
        return 1

    # Validation -----------------------------------------------------------------------------

    def validate(self, *, check_song: bool = True) -> None:
        """Check every value; raise ``ValueError`` naming the first bad one and its range.

        Args:
            check_song: also check that ``song`` is an existing, non-empty, readable file (a
                cheap check: the file is not decoded here).
        """
        self._validate_analysis()
        self._validate_output()
        if check_song:
            self._validate_song()

    def validate_analysis(self) -> None:
        """Check only the settings that the trajectory computation uses."""
        self._validate_analysis()

    def _validate_song(self) -> None:
        song = self.song
        if not isinstance(song, str) or not song:
            raise _fail("song", song, "a path to an audio file")
        if not os.path.exists(song):
            raise ValueError(f"song {song!r} does not exist")
        if not os.path.isfile(song):
            raise ValueError(f"song {song!r} is not a file")
        if not os.access(song, os.R_OK):
            raise ValueError(f"song {song!r} is not readable")
        if os.path.getsize(song) == 0:
            raise ValueError(f"song {song!r} is empty (0 bytes)")

    def _validate_analysis(self) -> None:
        fl = self.frame_length
        if not _is_int(fl) or fl <= 0 or fl % 64:
            raise _fail("frame_length", fl, "a positive multiple of 64 (64, 128, ..., 512, ...)")
        p = self.pitch_sensitivity
        if not _is_real(p) or not 1 <= p <= 299:
            raise _fail("pitch_sensitivity", p, "in 1..299")
        t = self.tempo_sensitivity
        if not _is_real(t) or t <= 0:
            raise _fail("tempo_sensitivity", t, "a finite number > 0")
        d = self.depth
        if not _is_real(d) or not 0.01 <= d <= 1:
            raise _fail("depth", d, "in 0.01..1")
        j = self.jitter
        if not _is_real(j) or not 0 <= j <= 1:
            raise _fail("jitter", j, "in 0..1")
        tr = self.truncation
        if not _is_real(tr) or not 0 < tr <= 1:
            raise _fail("truncation", tr, "in (0, 1] (0 excluded; 0.1..1 recommended)")
        sm = self.smooth_factor
        if not _is_real(sm) or sm <= 0:
            raise _fail("smooth_factor", sm, "a finite number > 0")
        if sm > 1 and self.smooth_frames < 1:
            raise ValueError(
                f"smooth_factor {sm!r} rounds to 0 frames at frame_length {fl}: "
                f"int(smooth_factor * 512 / frame_length) must be >= 1, so use "
                f"smooth_factor >= {fl / 512:g} (or <= 1 for no smoothing)"
            )
        k = self.num_classes
        if not _is_int(k) or not 1 <= k <= MAX_CLASSES:
            raise _fail("num_classes", k, f"an integer in 1..{MAX_CLASSES}")
        if self.classes is not None:
            classes = self.classes
            if len(classes) not in (MAX_CLASSES, k):
                wanted = f"{MAX_CLASSES}" if k == MAX_CLASSES else f"{MAX_CLASSES} or {k}"
                raise ValueError(
                    f"classes: {len(classes)} given, must be {wanted} (--num_classes is {k})"
                )
            for c in classes:
                if not _is_int(c) or not 0 <= c < N_IMAGENET:
                    raise _fail("class index", c, f"an ImageNet index in 0..{N_IMAGENET - 1}")
            if len(set(classes)) != len(classes):
                dup = sorted({c for c in classes if classes.count(c) > 1})
                raise ValueError(f"classes must be distinct, got {dup} more than once")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise _fail("seed", self.seed, f"an integer in 0..{MAX_SEED}")
        if self.duration is not None and (not _is_real(self.duration) or self.duration <= 0):
            raise _fail("duration", self.duration, "a number of seconds > 0")
        for name in ("sort_classes_by_power", "use_previous_classes", "use_previous_vectors"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, getattr(self, name), "True or False")

    def _validate_output(self) -> None:
        if self.resolution not in RESOLUTIONS or not _is_int(self.resolution):
            raise _fail("resolution", self.resolution, "128, 256 or 512")
        from dmv_fast.models import MAX_BATCH, MAX_SCALING

        if not _is_int(self.batch_size) or not 1 <= self.batch_size <= MAX_BATCH:
            raise _fail("batch_size", self.batch_size, f"an integer in 1..{MAX_BATCH}")
        if not _is_int(self.scaling) or not 1 <= self.scaling <= MAX_SCALING:
            raise _fail("scaling", self.scaling, f"an integer in 1..{MAX_SCALING}")
        if not isinstance(self.output_file, str) or not self.output_file:
            raise _fail("output_file", self.output_file, "a file path")
        if self.weights is not None and (not isinstance(self.weights, str) or not self.weights):
            raise _fail("weights", self.weights, 'None, "random" or a path')
        for name, choices in (
            ("backend", BACKENDS),
            ("precision", PRECISIONS),
            ("encoder", ENCODERS),
            ("pixels", PIXELS),
        ):
            value = getattr(self, name)
            if value not in choices:
                raise _fail(name, value, "one of " + ", ".join(choices))
        if not _is_int(self.crf) or not 0 <= self.crf <= 51:
            raise _fail("crf", self.crf, "an integer in 0..51")
        from dmv_fast.encode import X264_PRESETS

        if self.preset not in X264_PRESETS:
            raise _fail("preset", self.preset, "one of " + ", ".join(X264_PRESETS))
        for name in ("use_disk", "save_only"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, getattr(self, name), "True or False")
