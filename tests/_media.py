"""Helpers for the media tests: synthetic songs and frames, read-back, a fake PyNvVideoCodec."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import av
import numpy as np
import soundfile as sf

# I - vi - IV - V in C: MIDI root and chord intervals.
_CHORDS = [(60, (0, 4, 7)), (57, (0, 3, 7)), (53, (0, 4, 7)), (55, (0, 4, 7))]


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def synth_music(
    seconds: float = 3.0, rate: int = 22050, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """Chords, bass, kick, snare, hats and a little noise at 120 bpm.

    Returns:
        ``np.ndarray [shape=(n_samples, channels)]`` float32 in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    y = np.zeros(n)
    beat = 0.5
    for b, start in enumerate(np.arange(0.0, seconds, 2 * beat)):
        root, intervals = _CHORDS[b % len(_CHORDS)]
        i0, i1 = int(start * rate), min(n, int((start + 2 * beat) * rate))
        local = t[i0:i1] - start
        env = np.minimum(local / 0.02, 1.0) * np.exp(-1.5 * local)
        for iv in intervals:
            f = _hz(root + iv)
            y[i0:i1] += (
                0.1 * env * (np.sin(2 * np.pi * f * local) + 0.3 * np.sin(4 * np.pi * f * local))
            )
        y[i0:i1] += 0.2 * env * np.sin(2 * np.pi * _hz(root - 24) * local)
    for k, start in enumerate(np.arange(0.0, seconds, beat / 2)):
        i0 = int(start * rate)
        m = min(n - i0, int(0.15 * rate))
        local = np.arange(m) / rate
        if k % 4 == 0:  # kick: a falling sine
            y[i0 : i0 + m] += (
                0.5
                * np.sin(2 * np.pi * (55 * local + 3 * (1 - np.exp(-30 * local))))
                * np.exp(-20 * local)
            )
        elif k % 4 == 2:  # snare: noise burst
            y[i0 : i0 + m] += 0.25 * rng.standard_normal(m) * np.exp(-25 * local)
        y[i0 : i0 + m] += 0.05 * rng.standard_normal(m) * np.exp(-90 * local)  # hat
    y += 0.003 * rng.standard_normal(n)
    out = np.stack([y * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return np.clip(out, -1, 1).astype(np.float32)


def write_song(
    path: Path,
    seconds: float,
    rate: int = 44100,
    channels: int = 2,
    *,
    tones: bool = False,
    seed: int = 0,
    **sf_kwargs: Any,
) -> Path:
    """Write a song (format from the name's extension) and return its path.

    ``tones=True``: a distinct tone per channel (so a channel mix-up would show); else
    :func:`synth_music`.
    """
    if tones:
        t = np.arange(round(seconds * rate)) / rate
        data = np.stack(
            [0.3 * np.sin(2 * np.pi * 220 * (c + 1) * t) for c in range(channels)], axis=1
        ).astype(np.float32)
    else:
        data = synth_music(seconds, rate, channels, seed)
    sf.write(path, data, rate, **sf_kwargs)
    return path


def gradient_frames(n: int, height: int = 64, width: int = 64, start: int = 0) -> np.ndarray:
    """``uint8 [n, H, W, 3]`` smooth frames, each a little different from the last."""
    y, x = np.mgrid[0:height, 0:width]
    out = np.empty((n, height, width, 3), np.uint8)
    for k in range(n):
        s = (start + k) * 3
        out[k, ..., 0] = (x * 255 // (width - 1) + s) % 256
        out[k, ..., 1] = y * 255 // (height - 1)
        out[k, ..., 2] = (128 + s) % 256
    return out


@dataclass
class Probe:
    """What a player sees in a written video."""

    frames: int
    average_rate: Fraction
    video_start: float
    video_duration: float
    keyframes: list[int]
    decoded: np.ndarray  # uint8 [frames, H, W, 3]
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None
    audio_start: float | None = None
    audio_duration: float | None = None


def probe(path: Path) -> Probe:
    """Read a video back with PyAV: counts, rate, keyframes, durations, decoded frames."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        rate = Fraction(v.average_rate.numerator, v.average_rate.denominator)
        vtb = Fraction(v.time_base.numerator, v.time_base.denominator)
        packets = [p for p in c.demux(v) if p.size]
        keyframes = sorted(int(p.pts) for p in packets if p.is_keyframe)
        first_pts = min(int(p.pts) for p in packets)
        keyframes = [round((k - first_pts) * vtb * rate) for k in keyframes]  # frame numbers
    with av.open(str(path)) as c:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        result = Probe(
            frames=len(packets),
            average_rate=rate,
            video_start=float(c.streams.video[0].start_time * vtb),
            video_duration=float(c.streams.video[0].duration * vtb),
            keyframes=keyframes,
            decoded=decoded,
        )
        if c.streams.audio:
            a = c.streams.audio[0]
            atb = Fraction(a.time_base.numerator, a.time_base.denominator)
            result.audio_codec = a.codec_context.name
            result.audio_rate = a.rate
            result.audio_channels = a.channels
            result.audio_start = float(a.start_time * atb)
            result.audio_duration = float(a.duration * atb)
    return result


# ---------------------------------------------------------------------------------------
# A fake PyNvVideoCodec: libx264 stands in for the NVENC silicon, so that the caller's
# conversion, bitstream splitting, timestamps, keyframes and muxing all run for real.


class FakeCudaArray:
    """Host memory posing as device memory: exposes ``__cuda_array_interface__``."""

    def __init__(self, array: np.ndarray):
        self._array = np.ascontiguousarray(array)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        a = self._array
        return {
            "shape": a.shape,
            "strides": None,
            "typestr": "|u1",
            "data": (a.ctypes.data, False),
            "version": 3,
        }

    def __getitem__(self, index: int) -> FakeCudaArray:
        return FakeCudaArray(self._array[index])


def _read_plane(cai: dict[str, Any]) -> np.ndarray:
    """Read a (fake) device plane through its pointer, shape and strides."""
    shape, strides = cai["shape"], cai["strides"]
    extent = sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1
    raw = (ctypes.c_uint8 * extent).from_address(cai["data"][0])
    base = np.frombuffer(raw, np.uint8)
    return np.lib.stride_tricks.as_strided(base, shape, strides).copy()


class FakeEncoder:
    def __init__(self, module: Any, width: int, height: int, fmt: str, cpu: bool, kwargs: dict):
        if fmt != "NV12":
            raise ValueError(f"fake encoder only takes NV12, got {fmt}")
        self.width, self.height, self.cpu, self.kwargs = width, height, cpu, kwargs
        self._output = module.output
        gop = int(kwargs.get("gop", 250))
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = Fraction(1, int(kwargs.get("fps", 30)))
        ctx.options = {
            "preset": "ultrafast",
            "qp": str(kwargs.get("constqp", 20)),
            # A short lookahead so that output lags input, as NVENC's queue does.
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"
            ":repeat-headers=1:rc-lookahead=3:sync-lookahead=3",
        }
        self._ctx = ctx
        self._pts = 0
        self.ended = False

    def Encode(self, frame: Any) -> Any:  # noqa: N802 (PyNvVideoCodec's name)
        if self.cpu:
            assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
            nv12 = frame.reshape(self.height * 3 // 2, self.width)
        else:
            luma, chroma = (_read_plane(p.__cuda_array_interface__) for p in frame.cuda())
            nv12 = np.concatenate(
                [luma.reshape(self.height, self.width), chroma.reshape(self.height // 2, -1)]
            )
        vf = av.VideoFrame.from_ndarray(nv12, format="nv12")
        vf.pts = self._pts
        self._pts += 1
        return self._wrap(self._ctx.encode(vf))

    def EndEncode(self) -> Any:  # noqa: N802
        self.ended = True
        return self._wrap(self._ctx.encode(None))

    def _wrap(self, packets: list[Any]) -> Any:
        chunks = [bytes(p) for p in packets]
        if self._output == "list":
            return chunks
        data = b"".join(chunks)
        if self._output == "ndarray":
            return np.frombuffer(data, np.uint8)
        return data


def fake_pynvvideocodec(*, create_error: str | None = None, output: str = "bytes") -> ModuleType:
    """A stand-in ``PyNvVideoCodec`` module; ``module.encoders`` records what was created."""
    module = ModuleType("PyNvVideoCodec")
    module.__version__ = "2.2.4+fake"
    module.output = output
    module.encoders = []

    def CreateEncoder(width, height, fmt, usecpuinputbuffer, **kwargs):  # noqa: N802
        if create_error:
            raise RuntimeError(create_error)
        enc = FakeEncoder(module, width, height, fmt, usecpuinputbuffer, kwargs)
        module.encoders.append(enc)
        return enc

    module.CreateEncoder = CreateEncoder
    return module
