"""Video encoding: frames + the song's own audio -> H.264/AAC MP4.

Two H.264 encoders sit behind one writer:

- libx264 through PyAV (the default and the only one CI runs): yuv420p, ``crf``, ``preset``,
  x264's own threading.
- NVENC through PyNvVideoCodec (imported lazily: importing it loads the driver library).
  Its Annex-B output is split into access units by FFmpeg's H.264 parser and muxed by PyAV
  with explicit timestamps and keyframe flags.

Which one is the plan's decision (:func:`dmv_fast.settings.plan.resolve`); the writer is told
``"x264"`` or ``"nvenc"`` and never decides ``auto`` itself.

Timing is exact: the stream time base is ``1/fps`` with ``fps`` a rational
(``22050/frame_length``), and frame ``k`` has ``pts = k``. The audio track is the song itself
at its own sample rate and channel layout, AAC, starting at the first frame and trimmed to
``n_frames / fps``; it is decoded and encoded as the frames arrive, so nothing holds the whole
song. The file is written beside the destination under a temporary name and renamed only
after a successful close.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np

from dmv_fast.audio.track import AudioPlan, AudioTrack, plan_audio
from dmv_fast.files import publish, temporary_name
from dmv_fast.settings.choices import CONTAINERS, PIXEL_FORMATS, SETTLED_ENCODERS
from dmv_fast.video.nvenc import NvencVideo, import_nvc, nvenc_options, probe_nvenc

logger = logging.getLogger("dmv_fast")


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder settings shared by both H.264 paths.

    Attributes:
        encoder: ``"x264"`` or ``"nvenc"`` once resolved.
        crf: x264 constant rate factor, 0..51 (lower is better). NVENC uses it as its
            constant QP.
        preset: x264 preset (ignored by NVENC, which runs preset P4).
        threads: x264 threads, 0 = automatic.
    """

    encoder: str = "x264"
    crf: int = 20
    preset: str = "veryfast"
    threads: int = 0

    def nvenc_options(self, fps: Fraction) -> dict[str, Any]:
        """Keyword options for ``PyNvVideoCodec.CreateEncoder``."""
        return nvenc_options(self.crf, fps)


# ---------------------------------------------------------------------------------------
# Video sinks: encode one frame at a time into the container


class _X264Video:
    def __init__(self, container: Any, width: int, height: int, fps: Fraction, cfg: EncoderConfig):
        self._container = container
        stream = container.add_stream("libx264", rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / fps
        stream.codec_context.time_base = 1 / fps
        stream.codec_context.thread_count = cfg.threads
        stream.options = {"crf": str(cfg.crf), "preset": cfg.preset}
        self._stream = stream
        self.frames = 0

    def encode(self, frame: np.ndarray, pixel_format: str = "rgb24") -> None:
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=pixel_format)
        vf.pts = self.frames
        self._container.mux(self._stream.encode(vf))
        self.frames += 1

    def flush(self) -> None:
        self._container.mux(self._stream.encode(None))


# ---------------------------------------------------------------------------------------
# The writer


class VideoWriter:
    """Write RGB frames and the song's audio into an H.264/AAC video.

    Use as a context manager. Frames go to a temporary file beside ``path``
    (``.NAME.mp4.tmp-<pid>-XXXX``) that becomes ``path`` only when the block ends without an
    exception (and, without ``overwrite``, only if no other file took ``path`` meanwhile); otherwise the temporary file is deleted, ``path`` is left as it was, and the
    exception propagates (KeyboardInterrupt included).

    Args:
        path: the output file (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``).
        size: ``(height, width)`` of a frame in pixels, both even (yuv420p).
        fps: the exact frame rate, e.g. ``Fraction(22050, 512)``; never rounded.
        audio: the song; its first audio track is muxed at its own sample rate and channel
            layout as AAC, trimmed to ``frames_written / fps`` seconds. ``None``: no audio.
        encoder: the plan's encoder, ``"x264"`` or ``"nvenc"``.
        nvenc_fallback: an NVENC that the plan chose for ``auto`` but that cannot start falls
            back to libx264 with one INFO line (else it is a RuntimeError).
        crf: quality, 0..51, lower is better (x264 CRF; NVENC constant QP); checked by
            :class:`~dmv_fast.settings.options.RenderOptions`.
        preset: x264 preset (likewise checked there).
        threads: x264 threads, 0 = automatic.
        audio_start: seconds of the song to skip before the first frame.
        overwrite: replace an existing ``path``; ``False`` raises FileExistsError.
        pixel_format: host frames given to ``write``: ``"rgb24"`` ``(B, H, W, 3)`` or
            ``"yuv420p"`` ``(B, H * 3 // 2, W)`` planes (BT.601 limited range, as made by
            :func:`dmv_fast.video.yuv.rgb_to_yuv420` or inside the generator graph), which skips
            the colour conversion on the CPU.

    Raises:
        ValueError: a bad size, rate or destination, an unreadable audio file; all checked
            before any encoding.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        RuntimeError: ``encoder="nvenc"`` and NVENC is not available.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: tuple[int, int],
        fps: Fraction,
        audio: str | os.PathLike[str] | None = None,
        *,
        encoder: str = "x264",
        nvenc_fallback: bool = False,
        crf: int = 20,
        preset: str = "veryfast",
        threads: int = 0,
        audio_start: float = 0.0,
        overwrite: bool = True,
        pixel_format: str = "rgb24",
    ) -> None:
        self.path = Path(path)
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be rgb24 or yuv420p; got {pixel_format!r}")
        if encoder not in SETTLED_ENCODERS:
            raise ValueError(f"encoder must be the plan's x264 or nvenc; got {encoder!r}")
        self.pixel_format = pixel_format
        height, width = size
        self.height, self.width = _check_size(height, "height"), _check_size(width, "width")
        self.fps = _check_fps(fps)
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
            raise ValueError(f"threads must be an integer >= 0 (0 = automatic); got {threads!r}")
        if not (isinstance(audio_start, numbers.Real) and math.isfinite(audio_start)) or (
            audio_start < 0
        ):
            raise ValueError(
                f"audio_start must be a finite number of seconds >= 0; got {audio_start!r}"
            )
        self._format: str = _check_destination(self.path, overwrite)
        self._overwrite: bool = bool(overwrite)
        self.audio: Path | None = Path(audio) if audio is not None else None
        self._audio_plan: AudioPlan | None = None
        if self.audio is not None:
            if not self.audio.is_file():
                raise ValueError(f"audio file {str(self.audio)!r} does not exist")
            self._audio_plan = plan_audio(self.audio)
        self._audio_start: float = float(audio_start)
        self._fallback: bool = nvenc_fallback
        self._config: EncoderConfig = EncoderConfig(encoder, int(crf), preset, int(threads))
        self._nvc: ModuleType | None = None
        if encoder == "nvenc":
            ok, reason = probe_nvenc()
            if not ok:
                raise RuntimeError(f"NVENC is not available: {reason}")
            self._nvc = import_nvc()

        self._tmp: Path | None = None
        self._container: Any = None
        self._video: Any = None
        self._audio: AudioTrack | None = None
        self._state: str = "new"  # new -> open -> closed

    # -- public API ------------------------------------------------------------------

    @property
    def encoder_name(self) -> str:
        """``"x264"`` or ``"nvenc"``: the encoder in use."""
        return self._config.encoder

    @property
    def frames_written(self) -> int:
        """Frames encoded so far."""
        return self._video.frames if self._video is not None else 0

    @property
    def duration(self) -> Fraction:
        """Seconds of video written so far, exactly ``frames_written / fps``."""
        return self.frames_written / self.fps

    def open(self) -> VideoWriter:
        """Start the temporary output file (done by ``with`` or the first ``write``)."""
        if self._state != "new":
            raise RuntimeError(f"VideoWriter for {str(self.path)!r} is already {self._state}")
        video: Any = None
        if self._config.encoder == "nvenc":
            assert self._nvc is not None
            try:
                video = NvencVideo(
                    self._nvc,
                    self.width,
                    self.height,
                    self.fps,
                    self._config.nvenc_options(self.fps),
                )
            except Exception as e:
                if self._fallback:
                    logger.info("NVENC unavailable (%s); encoding with libx264", e)
                    self._config = dataclasses.replace(self._config, encoder="x264")
                else:
                    raise RuntimeError(f"NVENC could not start: {e}") from e
        self._tmp = temporary_name(self.path)
        try:
            self._container = av.open(str(self._tmp), "w", format=self._format)
            if video is not None:
                video.attach(self._container)
            else:
                video = _X264Video(self._container, self.width, self.height, self.fps, self._config)
            self._video = video
            if self._audio_plan is not None:
                assert self.audio is not None
                self._audio = AudioTrack(
                    self.audio, self._audio_plan, self._container, self._audio_start
                )
        except BaseException:
            self._state = "open"
            self.abort()
            raise
        self._state = "open"
        logger.debug(
            "writing %s: %dx%d at %s fps with %s, audio %s",
            self.path,
            self.width,
            self.height,
            self.fps,
            self.encoder_name,
            self._audio_plan,
        )
        return self

    def write(self, frames: Any) -> None:
        """Encode frames, and the song's audio up to the end of the last one.

        Args:
            frames: ``np.ndarray [shape=(B, H, W, 3)]`` or ``[shape=(H, W, 3)]`` uint8 RGB, or
                ``[shape=(B, H * 3 // 2, W)]`` planes for ``pixel_format="yuv420p"``.
        """
        if self._state == "new":
            self.open()
        if self._state != "open":
            raise RuntimeError(f"VideoWriter for {str(self.path)!r} is {self._state}")
        batch = self._check_frames(frames)
        for frame in batch:
            self._video.encode(frame, self.pixel_format)
        if self._audio is not None:
            self._audio.feed(self._audio_samples(self.frames_written))

    def close(self) -> None:
        """Flush the encoders, finish the audio and move the file to ``path``."""
        if self._state == "closed":
            return
        if self._state == "new":
            self.open()
        try:
            if self.frames_written == 0:
                raise RuntimeError(f"no frames were written; {str(self.path)!r} not created")
            self._video.flush()
            if self._audio is not None:
                self._audio.feed(self._audio_samples(self.frames_written))
                self._audio.finish()
                if self._audio.samples == 0:  # the muxer would drop the empty track
                    raise RuntimeError(
                        f"no audio could be decoded from {str(self.audio)!r}; not writing"
                        f" {str(self.path)!r} without sound"
                    )
            self._container.close()
            assert self._tmp is not None
            publish(self._tmp, self.path, self._overwrite)
        except BaseException:
            self.abort()
            raise
        self._state = "closed"

    def abort(self) -> None:
        """Stop without output: close everything and delete the temporary file."""
        if self._state == "closed":
            return
        self._state = "closed"
        for closer in (
            self._audio.close if self._audio is not None else None,
            self._container.close if self._container is not None else None,
        ):
            if closer is None:
                continue
            try:
                closer()
            except Exception as e:  # the original failure matters, not this one
                logger.debug("while aborting %s: %s", self.path, e)
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self.open()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals -------------------------------------------------------------------

    def _audio_samples(self, frames: int) -> int:
        assert self._audio_plan is not None
        return round(Fraction(frames) / self.fps * self._audio_plan.rate)

    def _check_frames(self, frames: Any) -> np.ndarray:
        if hasattr(frames, "__cuda_array_interface__") and not isinstance(frames, np.ndarray):
            raise ValueError("got GPU frames; pass numpy arrays")
        arr = np.asarray(frames)
        if self.pixel_format == "yuv420p":
            plane = (self.height * 3 // 2, self.width)
            if arr.ndim == 2:
                arr = arr[None]
            if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[1:] != plane:
                raise ValueError(
                    f"yuv420p frames must be uint8 of shape (B, {plane[0]}, {plane[1]});"
                    f" got {tuple(np.shape(frames))} {arr.dtype}"
                )
            return arr
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 RGB; got dtype {arr.dtype}")
        if arr.ndim != 4 or arr.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"frames must have shape (B, {self.height}, {self.width}, 3) or"
                f" ({self.height}, {self.width}, 3); got {tuple(np.shape(frames))}"
            )
        return arr


def _check_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{what} must be a positive even number of pixels; got {value!r}")
    if value % 2:
        raise ValueError(f"{what} must be even for yuv420p video; got {value}")
    return int(value)


def _check_fps(fps: Any) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Rational):
        raise ValueError(
            f"fps must be an exact fractions.Fraction such as Fraction(22050, 512); got {fps!r}"
        )
    value = Fraction(fps)
    if value <= 0:
        raise ValueError(f"fps must be > 0; got {value}")
    return value


def _check_destination(path: Path, overwrite: bool) -> str:
    """Refuse a destination we could not write; return its container format."""
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {str(folder)!r} is not writable")
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a folder, not a file")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True to replace it")
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise ValueError(
            f"output {str(path)!r} must end in one of {', '.join(CONTAINERS)}; got {suffix!r}"
        )
    return CONTAINERS[suffix]
