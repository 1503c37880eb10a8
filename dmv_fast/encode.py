"""Video encoding: frames + the song's own audio -> H.264/AAC MP4.

Two H.264 encoders sit behind one writer:

- libx264 through PyAV (the default and the only one CI runs): yuv420p, ``crf``, ``preset``,
  x264's own threading.
- NVENC through PyNvVideoCodec (imported lazily: importing it loads the driver library).
  Its Annex-B output is split into access units by FFmpeg's H.264 parser and muxed by PyAV
  with explicit timestamps and keyframe flags. ``encoder="auto"`` uses it when
  :func:`probe_nvenc` finds a working NVENC, else libx264 with one INFO line saying why.

Timing is exact: the stream time base is ``1/fps`` with ``fps`` a rational
(``22050/frame_length``), and frame ``k`` has ``pts = k``. The audio track is the song itself
at its own sample rate and channel layout, AAC, starting at the first frame and trimmed to
``n_frames / fps``; it is decoded and encoded as the frames arrive, so nothing holds the whole
song. The file is written beside the destination under a temporary name and renamed only
after a successful close.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import numbers
import os
import secrets
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np

from dmv_fast.plan import CONTAINERS, ENCODERS, X264_PRESETS
from dmv_fast.yuv import rgb_to_yuv420

logger = logging.getLogger("dmv_fast")

#: Keyframe interval in frames (x264's default keyint; used for NVENC as well).
GOP = 250
#: AAC channel layouts used when the song's layout has no channel names.
_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "3.0",
    4: "4.0",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}
_AAC_BITS_PER_CHANNEL = 96_000


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
        return {
            "codec": "h264",
            "preset": "P4",
            "tuning_info": "high_quality",
            "rc": "constqp",  # PyNvVideoCodec's name; "cqp" is rejected
            "constqp": self.crf,
            "gop": GOP,
            "idrperiod": GOP,
            "bf": 0,  # decode order == presentation order: pts = dts = frame index
            "repeatspspps": 1,
            # NVENC takes an integer rate for its rate control only; the container
            # carries the exact rational rate.
            "fps": max(1, round(fps)),
        }


# ---------------------------------------------------------------------------------------
# NVENC probe


_probe_cache: dict[str, Any] = {}


def _import_nvc() -> ModuleType:
    return importlib.import_module("PyNvVideoCodec")


def probe_nvenc() -> tuple[bool, str]:
    """Whether NVENC can encode H.264 here.

    Imports PyNvVideoCodec and encodes one small frame. The answer is cached for the
    imported module.

    Returns:
        ``(available, reason)``: ``reason`` says what was found or what failed.
    """
    try:
        nvc = _import_nvc()
    except Exception as e:  # ImportError, or the native module failing to load
        return False, f"PyNvVideoCodec is not importable ({type(e).__name__}: {e})"
    if _probe_cache.get("module") is nvc:
        return _probe_cache["result"]
    result = _probe_module(nvc)
    _probe_cache.update(module=nvc, result=result)
    return result


def _probe_module(nvc: ModuleType) -> tuple[bool, str]:
    if not hasattr(av.container.OutputContainer, "add_mux_stream"):
        return False, f"PyAV {av.__version__} cannot mux pre-encoded video (needs PyAV >= 17)"
    size = 256
    try:
        enc = nvc.CreateEncoder(
            size, size, "NV12", True, **EncoderConfig().nvenc_options(Fraction(30))
        )
        enc.Encode(np.zeros((size * 3 // 2, size), np.uint8))
        enc.EndEncode()
    except Exception as e:  # no NVENC on this GPU, no driver, no device...
        return False, f"NVENC could not start ({type(e).__name__}: {e})"
    version = getattr(nvc, "__version__", "?")
    return True, f"PyNvVideoCodec {version} encodes H.264"


# ---------------------------------------------------------------------------------------
# Colour conversion and bitstream helpers


def rgb_to_nv12(frame: np.ndarray) -> np.ndarray:
    """Convert one RGB frame ``[H, W, 3]`` to NV12 ``[H * 3 // 2, W]`` (BT.601 limited range,
    the host reference :func:`dmv_fast.yuv.rgb_to_yuv420`, with U and V interleaved)."""
    return yuv420p_to_nv12(rgb_to_yuv420(frame[None])[0])


def yuv420p_to_nv12(frame: np.ndarray) -> np.ndarray:
    """Planar YUV 4:2:0 ``[H * 3 // 2, W]`` (PyAV's yuv420p layout) to NV12, same shape."""
    h = frame.shape[0] * 2 // 3
    u = frame[h : h + h // 4].reshape(-1)
    v = frame[h + h // 4 :].reshape(-1)
    out = np.empty_like(frame)
    out[:h] = frame[:h]
    out[h:].reshape(-1)[0::2] = u
    out[h:].reshape(-1)[1::2] = v
    return out


def _as_bytes(data: Any) -> bytes:
    """PyNvVideoCodec's encoded output as bytes (its return type differs across versions)."""
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, np.ndarray):
        return data.astype(np.uint8, copy=False).tobytes()
    if isinstance(data, (list, tuple)):
        if all(isinstance(x, int) for x in data):
            return bytes(data)
        return b"".join(_as_bytes(x) for x in data)
    return bytes(memoryview(data))


def _has_idr(data: bytes) -> bool:
    """Whether an Annex-B access unit holds an IDR slice (NAL type 5)."""
    start = 0
    while True:
        i = data.find(b"\x00\x00\x01", start)
        if i < 0 or i + 3 >= len(data):
            return False
        if data[i + 3] & 0x1F == 5:
            return True
        start = i + 3


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


class _NvencVideo:
    def __init__(
        self,
        nvc: ModuleType,
        width: int,
        height: int,
        fps: Fraction,
        cfg: EncoderConfig,
    ):
        self._width, self._height = width, height
        # Created before the container gets a video stream, so that a failure here can
        # still fall back to libx264.
        self._enc = nvc.CreateEncoder(width, height, "NV12", True, **cfg.nvenc_options(fps))
        self._fps = fps
        # Constant: the muxer may change the stream's own time base when it writes the header.
        self._time_base = 1 / fps
        self._container: Any = None
        self._stream: Any = None
        self._parser = av.CodecContext.create("h264", "r")
        self.frames = 0  # frames handed to the encoder
        self.packets = 0  # access units muxed

    def attach(self, container: Any) -> None:
        self._container = container
        self._stream = container.add_mux_stream(
            "h264", rate=self._fps, width=self._width, height=self._height
        )
        self._stream.time_base = self._time_base

    def encode(self, frame: np.ndarray, pixel_format: str = "rgb24") -> None:
        nv12 = rgb_to_nv12(frame) if pixel_format == "rgb24" else yuv420p_to_nv12(frame)
        self._push(self._enc.Encode(nv12))
        self.frames += 1

    def flush(self) -> None:
        self._push(self._enc.EndEncode())
        self._mux(self._parser.parse(None))
        if self.packets != self.frames:
            raise RuntimeError(f"NVENC returned {self.packets} pictures for {self.frames} frames")

    def _push(self, out: Any) -> None:
        data = _as_bytes(out)
        if data:  # an empty input would flush the parser
            self._mux(self._parser.parse(data))

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            packet.pts = packet.dts = self.packets
            packet.duration = 1
            packet.time_base = self._time_base
            packet.is_keyframe = _has_idr(bytes(packet))
            packet.stream = self._stream
            self._container.mux(packet)
            self.packets += 1


# ---------------------------------------------------------------------------------------
# Audio: the song's own track, AAC


@dataclass(frozen=True)
class _AudioPlan:
    rate: int  # the output rate (the song's own unless AAC cannot carry it)
    layout: str  # the output channel layout name
    channels: int
    bit_rate: int


def _plan_audio(path: Path) -> _AudioPlan:
    """Check the song's audio track and choose the AAC settings, before any work."""
    try:
        with av.open(str(path)) as inp:
            if not inp.streams.audio:
                raise ValueError(f"{str(path)!r} has no audio track")
            ctx = inp.streams.audio[0].codec_context
            rate, layout = ctx.sample_rate, ctx.layout
    except av.FFmpegError as e:
        raise ValueError(f"cannot read audio from {str(path)!r}: {e}") from e
    channels = layout.nb_channels
    if not 1 <= channels <= 8:
        raise ValueError(f"{str(path)!r} has {channels} audio channels; AAC carries 1 to 8")
    aac_rates = av.Codec("aac", "w").audio_rates or ()
    out_rate = rate
    if aac_rates and rate not in aac_rates:
        out_rate = min(aac_rates, key=lambda r: (abs(r - rate), -r))
        logger.warning(
            "AAC cannot carry %d Hz; resampling the audio track to %d Hz", rate, out_rate
        )
    bit_rate = min(_AAC_BITS_PER_CHANNEL, 6 * out_rate) * channels
    for name in dict.fromkeys((layout.name, _DEFAULT_LAYOUTS[channels])):
        if name.endswith(" channels"):  # no channel names: AAC needs a named layout
            continue
        try:
            ctx = av.CodecContext.create("aac", "w")
            ctx.sample_rate = out_rate
            ctx.layout = name
            ctx.format = "fltp"
            ctx.bit_rate = bit_rate
            ctx.open()
        except (av.FFmpegError, ValueError):
            continue
        return _AudioPlan(out_rate, name, channels, bit_rate)
    raise ValueError(f"AAC cannot encode the {layout.name!r} channel layout of {str(path)!r}")


class _AudioTrack:
    """Decode the song lazily and encode it as AAC up to a given sample count."""

    def __init__(self, path: Path, plan: _AudioPlan, container: Any, start: float):
        self._path = path
        self._plan = plan
        self._container = container
        stream = container.add_stream("aac", rate=plan.rate, layout=plan.layout)
        stream.bit_rate = plan.bit_rate
        stream.time_base = Fraction(1, plan.rate)
        self._stream = stream
        self._input = av.open(str(path))
        self._decoded = self._input.decode(self._input.streams.audio[0])
        self._skip = round(start * plan.rate)
        self._pending = np.zeros((plan.channels, 0), np.float32)
        self._resampler: Any = None
        self._ended = False
        self.samples = 0  # samples encoded so far

    def feed(self, target: int) -> None:
        """Encode audio until ``target`` samples in total, or the end of the song."""
        while self.samples < target:
            if self._pending.shape[1] == 0:
                block = self._next_block()
                if block is None:
                    return
                self._pending = block
                continue
            take = min(self._pending.shape[1], target - self.samples)
            chunk, self._pending = self._pending[:, :take], self._pending[:, take:]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout=self._plan.layout
            )
            frame.sample_rate = self._plan.rate
            frame.time_base = self._stream.time_base
            frame.pts = self.samples
            self._container.mux(self._stream.encode(frame))
            self.samples += take

    def finish(self) -> None:
        self._container.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._input.close()

    def _next_block(self) -> np.ndarray | None:
        """The next decoded samples as ``float32 [channels, n]``, or None at the end."""
        while not self._ended:
            try:
                frame = next(self._decoded, None)
            except av.FFmpegError as e:
                raise RuntimeError(f"cannot decode the audio of {str(self._path)!r}: {e}") from e
            if self._resampler is None:
                # Sample format only (and the rate where AAC cannot carry the song's own);
                # the channel layout is relabelled below, never remixed.
                self._resampler = av.AudioResampler(
                    format="fltp",
                    layout=frame.layout if frame is not None else self._plan.layout,
                    rate=self._plan.rate,
                )
            out = self._resampler.resample(frame)
            if frame is None:
                self._ended = True
            if not out:
                continue
            block = np.concatenate([f.to_ndarray() for f in out], axis=1).astype(np.float32)
            if self._skip:
                cut = min(self._skip, block.shape[1])
                block, self._skip = block[:, cut:], self._skip - cut
            if block.shape[1]:
                return block
        return None


# ---------------------------------------------------------------------------------------
# The writer


class VideoWriter:
    """Write RGB frames and the song's audio into an H.264/AAC video.

    Use as a context manager. Frames go to a temporary file beside ``path``
    (``.NAME.partial-XXXX.mp4``) that replaces ``path`` only when the block ends without an
    exception; otherwise the temporary file is deleted, ``path`` is left as it was, and the
    exception propagates (KeyboardInterrupt included).

    Args:
        path: the output file (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``).
        width, height: frame size in pixels, both even (yuv420p).
        fps: the exact frame rate, e.g. ``Fraction(22050, 512)``; never rounded.
        audio: the song; its first audio track is muxed at its own sample rate and channel
            layout as AAC, trimmed to ``frames_written / fps`` seconds. ``None``: no audio.
        encoder: ``"auto"`` (NVENC when :func:`probe_nvenc` finds it, else libx264),
            ``"x264"`` or ``"nvenc"`` (an error when unavailable).
        crf: quality, 0..51, lower is better (x264 CRF; NVENC constant QP).
        preset: x264 preset.
        threads: x264 threads, 0 = automatic.
        audio_start: seconds of the song to skip before the first frame.
        overwrite: replace an existing ``path``; ``False`` raises FileExistsError.
        pixel_format: host frames given to ``write``: ``"rgb24"`` ``(B, H, W, 3)`` or
            ``"yuv420p"`` ``(B, H * 3 // 2, W)`` planes (BT.601 limited range, as made by
            :func:`dmv_fast.yuv.rgb_to_yuv420` or inside the generator graph), which skips
            the colour conversion on the CPU.

    Raises:
        ValueError: a bad argument, an unwritable destination, an unreadable audio file;
            all checked before any encoding.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        RuntimeError: ``encoder="nvenc"`` and NVENC is not available.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: Fraction,
        audio: str | os.PathLike[str] | None = None,
        *,
        encoder: str = "auto",
        crf: int = 20,
        preset: str = "veryfast",
        threads: int = 0,
        audio_start: float = 0.0,
        overwrite: bool = True,
        pixel_format: str = "rgb24",
    ) -> None:
        self.path = Path(path)
        if pixel_format not in ("rgb24", "yuv420p"):
            raise ValueError(f"pixel_format must be rgb24 or yuv420p; got {pixel_format!r}")
        self.pixel_format = pixel_format
        self.width, self.height = _check_size(width, "width"), _check_size(height, "height")
        self.fps = _check_fps(fps)
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}; got {encoder!r}")
        if isinstance(crf, bool) or not isinstance(crf, numbers.Integral) or not 0 <= crf <= 51:
            raise ValueError(f"crf must be an integer in 0..51; got {crf!r}")
        if preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}; got {preset!r}")
        if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 0:
            raise ValueError(f"threads must be an integer >= 0 (0 = automatic); got {threads!r}")
        if not (isinstance(audio_start, numbers.Real) and math.isfinite(audio_start)) or (
            audio_start < 0
        ):
            raise ValueError(
                f"audio_start must be a finite number of seconds >= 0; got {audio_start!r}"
            )
        self._format: str = _check_destination(self.path, overwrite)
        self.audio: Path | None = Path(audio) if audio is not None else None
        self._audio_plan: _AudioPlan | None = None
        if self.audio is not None:
            if not self.audio.is_file():
                raise ValueError(f"audio file {str(self.audio)!r} does not exist")
            self._audio_plan = _plan_audio(self.audio)
        self._audio_start: float = float(audio_start)
        self._requested: str = encoder
        self._config: EncoderConfig = EncoderConfig("x264", int(crf), preset, int(threads))
        self._nvc: ModuleType | None = None
        if encoder != "x264":
            ok, reason = probe_nvenc()
            if ok:
                self._nvc = _import_nvc()
                self._config = dataclasses.replace(self._config, encoder="nvenc")
            elif encoder == "nvenc":
                raise RuntimeError(f"NVENC is not available: {reason}")
            else:
                logger.info("NVENC unavailable (%s); encoding with libx264", reason)

        self._tmp: Path | None = None
        self._container: Any = None
        self._video: Any = None
        self._audio: _AudioTrack | None = None
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
                video = _NvencVideo(self._nvc, self.width, self.height, self.fps, self._config)
            except Exception as e:
                if self._requested == "auto":
                    logger.info("NVENC unavailable (%s); encoding with libx264", e)
                    self._config = dataclasses.replace(self._config, encoder="x264")
                else:
                    raise RuntimeError(f"NVENC could not start: {e}") from e
        self._tmp = self.path.with_name(
            f".{self.path.name}.partial-{secrets.token_hex(4)}{self.path.suffix}"
        )
        try:
            self._container = av.open(str(self._tmp), "w", format=self._format)
            if video is not None:
                video.attach(self._container)
            else:
                video = _X264Video(self._container, self.width, self.height, self.fps, self._config)
            self._video = video
            if self._audio_plan is not None:
                assert self.audio is not None
                self._audio = _AudioTrack(
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
            self._container.close()
            assert self._tmp is not None
            os.replace(self._tmp, self.path)
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
