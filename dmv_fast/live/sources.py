"""Live audio sources besides a file (:func:`dmv_fast.audio.decode.song_blocks`, played at its
own pace by the runner): raw float32 PCM on stdin, a sound card. Blocks are
``np.ndarray [shape=(n, channels)]`` float32."""

from __future__ import annotations

import logging
import os
import queue
import select
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

logger = logging.getLogger("dmv_fast")

BLOCK = 1024  # samples per pushed block at the source's own rate (23 ms at 44.1 kHz)
POLL_SECONDS = 0.1  # how often a quiet stdin looks at the stop event


def stdin_blocks(
    channels: int,
    block: int = BLOCK,
    stream: IO[bytes] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[np.ndarray]:
    """Raw little-endian float32 PCM, interleaved ``channels``, from ``stream`` (stdin).

    Every whole sample frame (one float of each channel) is played, up to ``block`` frames a
    block, as soon as it is read; only a last partial sample frame (fewer than
    ``4 * channels`` bytes) is dropped, with a warning giving its size. With ``stop``, a
    stream that has a file descriptor is read without blocking for longer than
    ``POLL_SECONDS`` once ``stop`` is set (a pipe whose writer is quiet).

    Raises:
        ValueError: the stream ended before one whole sample frame (no audio on stdin).
    """
    source = sys.stdin.buffer if stream is None else stream
    frame = channels * 4
    pending = b""
    played = False
    for chunk in _chunks(source, block * frame, stop):
        pending += chunk
        usable = len(pending) // frame * frame
        if usable:
            data = np.frombuffer(pending[:usable], dtype="<f4").reshape(-1, channels)
            pending = pending[usable:]
            played = True
            yield data.astype(np.float32)
    if not played and (stop is None or not stop.is_set()):
        more = f" ({len(pending)} bytes, less than one sample frame of {frame})"
        raise ValueError("no audio on stdin" + (more if pending else ""))
    if pending:
        logger.warning(
            "stdin ended inside a sample frame (%d bytes each): its last %d bytes were ignored",
            frame,
            len(pending),
        )


def _chunks(source: IO[bytes], size: int, stop: threading.Event | None) -> Iterator[bytes]:
    """What ``source`` has, at most ``size`` bytes at a time, until its end or ``stop``."""
    fd: int | None = None
    if stop is not None:
        try:
            fd = source.fileno()
        except (AttributeError, OSError, ValueError):  # an in-memory stream: never blocks
            fd = None
    while True:
        if fd is None:
            chunk = source.read(size)
        else:
            while not select.select([fd], [], [], POLL_SECONDS)[0]:
                if stop is not None and stop.is_set():
                    return
            chunk = os.read(fd, size)
        if not chunk:
            return
        yield chunk


def device_blocks(
    device: str, rate: int | None, channels: int, block: int, stop: threading.Event
) -> tuple[int, Iterator[np.ndarray]]:
    """A sound card's input (the optional ``live`` extra: sounddevice and PortAudio).

    Returns:
        ``(rate, blocks)``: the rate in use (the device's default when ``rate`` is None).
    """
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise ValueError(
            f"--input-device needs the optional sounddevice package and PortAudio: "
            f"pip install 'dmv-fast[live]' ({e})"
        ) from None

    chosen: int | str = int(device) if device.isdigit() else device
    try:
        info = sd.query_devices(chosen, "input")
    except (ValueError, sd.PortAudioError) as e:
        raise ValueError(f"input device {device!r} not found ({e})") from None
    actual = int(rate or info["default_samplerate"])
    blocks: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=256)

    def callback(indata: np.ndarray, frames: int, when: Any, status: Any) -> None:
        try:
            blocks.put_nowait(indata.copy())
        except queue.Full:
            logger.warning("audio input overflow: a block was lost")

    def generate() -> Iterator[np.ndarray]:
        with sd.InputStream(
            device=chosen,
            samplerate=actual,
            channels=channels,
            dtype="float32",
            blocksize=block,
            callback=callback,
        ):
            while not stop.is_set():
                try:
                    item = blocks.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is not None:
                    yield item

    return actual, generate()
