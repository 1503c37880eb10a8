"""NVENC through PyNvVideoCodec: the probe, the encoder options and the video sink.

PyNvVideoCodec is imported lazily (importing it loads the driver library). Its Annex-B output
is split into access units by FFmpeg's H.264 parser and muxed by PyAV with explicit timestamps
and keyframe flags. H100/H200/A100 have no NVENC; L4/L40S/A10/T4 do: :func:`probe_nvenc`
encodes one small frame to find out.
"""

from __future__ import annotations

import importlib
from fractions import Fraction
from types import ModuleType
from typing import Any

import av
import numpy as np

from dmv_fast.video.yuv import rgb_to_yuv420

#: Keyframe interval in frames (x264's default keyint; used for NVENC as well).
GOP = 250


def nvenc_options(crf: int, fps: Fraction) -> dict[str, Any]:
    """Keyword options for ``PyNvVideoCodec.CreateEncoder`` (constant QP ``crf``)."""
    return {
        "codec": "h264",
        "preset": "P4",
        "tuning_info": "high_quality",
        "rc": "constqp",  # PyNvVideoCodec's name; "cqp" is rejected
        "constqp": crf,
        "gop": GOP,
        "idrperiod": GOP,
        "bf": 0,  # decode order == presentation order: pts = dts = frame index
        "repeatspspps": 1,
        # NVENC takes an integer rate for its rate control only; the container
        # carries the exact rational rate.
        "fps": max(1, round(fps)),
    }


_probe_cache: dict[str, Any] = {}


def import_nvc() -> ModuleType:
    """The PyNvVideoCodec module (importing it loads the NVIDIA driver library)."""
    return importlib.import_module("PyNvVideoCodec")


def probe_nvenc() -> tuple[bool, str]:
    """Whether NVENC can encode H.264 here.

    Imports PyNvVideoCodec and encodes one small frame. The answer is cached for the
    imported module.

    Returns:
        ``(available, reason)``: ``reason`` says what was found or what failed.
    """
    try:
        nvc = import_nvc()
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
        enc = nvc.CreateEncoder(size, size, "NV12", True, **nvenc_options(20, Fraction(30)))
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
    the host reference :func:`dmv_fast.video.yuv.rgb_to_yuv420`, with U and V interleaved)."""
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


class NvencVideo:
    def __init__(
        self,
        nvc: ModuleType,
        width: int,
        height: int,
        fps: Fraction,
        options: dict[str, Any],
    ):
        self._width, self._height = width, height
        # Created before the container gets a video stream, so that a failure here can
        # still fall back to libx264.
        self._enc = nvc.CreateEncoder(width, height, "NV12", True, **options)
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
