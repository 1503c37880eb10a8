"""Render options: the per-render settings of the original visualizer plus the encoder's.

:class:`RenderOptions` is frozen and checked at construction; change it with
:func:`dataclasses.replace`. Each bad value is a one-line ``ValueError`` naming the option, the
value and the valid range, before any work starts. Model settings are in
:class:`~dmv_fast.settings.spec.ModelSpec`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

from dmv_fast.settings.choices import (
    CONTAINERS,
    ENCODERS,
    MAX_CLASSES,
    MAX_CRF,
    MAX_DURATION,
    MAX_SEED,
    MAX_TEMPO_SENSITIVITY,
    N_IMAGENET,
    SAMPLE_RATE,
    X264_PRESETS,
    check_frame_length,
    choice,
    int_in,
    invalid,
    is_int,
    is_real,
)


@dataclass(frozen=True)
class RenderOptions:
    """The per-render settings, checked at construction. Defaults are the original's.

    The first block mirrors the original's command line (see its README); ``seed`` and the
    encoder block are dmv-fast's own. The model settings (resolution, weights, backend,
    precision, batch size, scaling, pixels) live in :class:`~dmv_fast.settings.spec.ModelSpec`.
    ``classes`` holds ImageNet indices already resolved from names
    (:func:`dmv_fast.vectors.classes.resolve_classes`); a list is stored as a tuple.

    Every value is checked when the options are made (``ValueError`` naming the option, the
    value and the valid range); change them with :func:`dataclasses.replace`. Checks that
    touch the file system (the song exists, the output folder is writable) run once in
    :func:`dmv_fast.render.preflight.preflight`, before any work.
    """

    song: str
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
    use_previous_classes: bool = False
    use_previous_vectors: bool = False
    output_file: str = "output.mp4"
    use_disk: bool = False
    save_only: bool = False
    seed: int | None = None
    # Encoder settings (not in the original).
    encoder: str = "auto"
    crf: int = 20
    preset: str = "veryfast"
    # Also write ``NAME.plot.png`` (the plot of the vectors) beside the video; the record
    # names it.
    plot: bool = False

    def __post_init__(self) -> None:
        # Normalise containers and paths so the options stay hashable and comparable.
        if isinstance(self.song, os.PathLike):
            object.__setattr__(self, "song", os.fspath(self.song))
        if isinstance(self.output_file, os.PathLike):
            object.__setattr__(self, "output_file", os.fspath(self.output_file))
        if self.classes is not None and not isinstance(self.classes, tuple):
            object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "encoder", choice("encoder", self.encoder, ENCODERS))
        self._validate_analysis()
        self._validate_output()

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RenderOptions:
        """Build options from keyword arguments.

        Raises:
            ValueError: an unknown option name or a value out of range.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**kwargs)

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

    def video_frames(self, n_feature_frames: int) -> int:
        """Frames of the video for a song of ``n_feature_frames`` feature frames: all of them,
        or exactly ``duration`` seconds (at least 1, at most all)."""
        if self.duration is None:
            return n_feature_frames
        return max(1, min(n_feature_frames, round(self.duration * self.fps)))

    @property
    def container(self) -> str:
        """The output's container format, from its suffix (``mp4``, ``mov``, ``matroska``)."""
        return CONTAINERS[os.path.splitext(self.output_file)[1].lower()]

    # Validation -----------------------------------------------------------------------------

    def _validate_analysis(self) -> None:
        fl = check_frame_length(self.frame_length)
        p = self.pitch_sensitivity
        if not is_real(p) or not 1 <= p <= 299:
            raise invalid("pitch_sensitivity", p, "in 1..299")
        t = self.tempo_sensitivity
        if not is_real(t) or not 0 < t <= MAX_TEMPO_SENSITIVITY:
            raise invalid("tempo_sensitivity", t, f"a number in (0, {MAX_TEMPO_SENSITIVITY:g}]")
        d = self.depth
        if not is_real(d) or not 0.01 <= d <= 1:
            raise invalid("depth", d, "in 0.01..1")
        j = self.jitter
        if not is_real(j) or not 0 <= j <= 1:
            raise invalid("jitter", j, "in 0..1")
        tr = self.truncation
        if not is_real(tr) or not 0 < tr <= 1:
            raise invalid("truncation", tr, "in (0, 1] (0 excluded; 0.1..1 recommended)")
        sm = self.smooth_factor
        if not is_real(sm) or not 0 < sm <= 1e6:
            raise invalid("smooth_factor", sm, "a number in (0, 1e6]")
        if sm > 1 and self.smooth_frames < 1:
            raise ValueError(
                f"smooth_factor {sm!r} rounds to 0 frames at frame_length {fl}: "
                f"int(smooth_factor * 512 / frame_length) must be >= 1, so use "
                f"smooth_factor >= {fl / 512:g} (or <= 1 for no smoothing)"
            )
        k = int_in("num_classes", self.num_classes, 1, MAX_CLASSES)
        if self.classes is not None:
            classes = self.classes
            if len(classes) not in (MAX_CLASSES, k):
                counts = f"{MAX_CLASSES}" if k == MAX_CLASSES else f"{MAX_CLASSES} or {k}"
                raise ValueError(
                    f"classes: {len(classes)} given, must be {counts} (--num_classes is {k})"
                )
            for c in classes:
                if not is_int(c) or not 0 <= c < N_IMAGENET:
                    raise invalid("class index", c, f"an ImageNet index in 0..{N_IMAGENET - 1}")
            if len(set(classes)) != len(classes):
                dup = sorted({c for c in classes if classes.count(c) > 1})
                raise ValueError(f"classes must be distinct, got {dup} more than once")
        if self.seed is not None:
            int_in("seed", self.seed, 0, MAX_SEED)
        if self.duration is not None and (
            not is_real(self.duration) or not 0 < self.duration <= MAX_DURATION
        ):
            raise invalid("duration", self.duration, "a number of seconds > 0")
        for name in ("sort_classes_by_power", "use_previous_classes", "use_previous_vectors"):
            if not isinstance(getattr(self, name), bool):
                raise invalid(name, getattr(self, name), "True or False")

    def _validate_output(self) -> None:
        out = self.output_file
        if not isinstance(out, str) or not out:
            raise invalid("output_file", out, "a file path")
        suffix = os.path.splitext(out)[1].lower()
        if suffix not in CONTAINERS:
            raise ValueError(
                f"output_file {out!r} must end in one of {', '.join(CONTAINERS)} "
                f"(got {suffix or 'no suffix'})"
            )
        int_in("crf", self.crf, 0, MAX_CRF)
        object.__setattr__(self, "preset", choice("preset", self.preset, X264_PRESETS))
        for name in ("use_disk", "save_only", "plot"):
            if not isinstance(getattr(self, name), bool):
                raise invalid(name, getattr(self, name), "True or False")
