"""Live audio sources besides a file (:func:`dmv_fast.audio.decode.song_blocks`, played at its
own pace by the runner): raw float32 PCM on stdin, a sound card. Blocks are
``np.ndarray [shape=(n, channels)]`` float32."""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

logger = logging.getLogger("dmv_fast")

BLOCK = 1024  # samples per pushed block at the source's own rate (23 ms at 44.1 kHz)


def stdin_blocks(
    channels: int, block: int = BLOCK, stream: IO[bytes] | None = None
) -> Iterator[np.ndarray]:
    """Raw little-endian float32 PCM, interleaved ``channels``, from ``stream`` (stdin)."""
    source = sys.stdin.buffer if stream is None else stream
    size = block * channels * 4
    pending = b""
    while True:
        chunk = source.read(size - len(pending))
        if not chunk:
            break
        pending += chunk
        usable = len(pending) // (channels * 4) * channels * 4
        if usable and (len(pending) == size or usable == len(pending)):
            data = np.frombuffer(pending[:usable], dtype="<f4").reshape(-1, channels)
            pending = pending[usable:]
            yield data.astype(np.float32)
    if pending:
        logger.warning("stdin ended inside a sample frame; %d bytes ignored", len(pending))


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
