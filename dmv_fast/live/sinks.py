"""Where live frames go: the :class:`Sink` protocol, the MP4 file and the raw pipe.

A sink is opened with the frame size and rate, takes frames by index (frame ``k`` shows the
audio at ``k / fps``), optionally the audio as it was played, and is closed (its output
published) or aborted (nothing left behind). :class:`Timeline` feeds several sinks at once,
each on its own thread behind its own bounded queue (:mod:`dmv_fast.live.feed`), and keeps
the streams whole: a frame the generator or a busy sink dropped is replaced by the last frame
made before it, so a file or a pipe has exactly one frame per hop, like ``dmv-fast render``.
The preview window and NDI are :mod:`dmv_fast.live.window` and :mod:`dmv_fast.live.ndi`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import numpy as np

from dmv_fast.live.feed import SinkFeed, SinkStats
from dmv_fast.settings.choices import LIVE_SINK_QUEUE, LIVE_STREAM_QUEUE
from dmv_fast.video.writer import VideoWriter

logger = logging.getLogger("dmv_fast")

#: The hidden recording and lossless video of a live session's MP4, named by its process.
_LIVE_TEMP_RE = re.compile(r"^\..+\.live-(\d+)-[0-9a-f]{8}\.(?:mkv|wav)$")


@runtime_checkable
class Sink(Protocol):
    """A consumer of live frames.

    Every call but :meth:`audio` comes from the sink's own thread (:class:`Timeline`). Optional
    attributes: ``name`` (in the stats), ``whole`` (default True: the sink needs one frame per
    hop, gaps filled; False for previews that show the newest frame) and ``idle()``, called on
    the sink's thread when no frame came for a moment (a window handles its events there).
    """

    def open(self, size: tuple[int, int], fps: Fraction) -> None:
        """Prepare for frames of ``size`` = ``(height, width)`` at ``fps`` frames/s."""
        ...

    def frame(self, index: int, image: np.ndarray) -> None:
        """Take frame ``index``: ``np.ndarray [shape=(H, W, 3)]`` uint8, valid only during
        the call (copy it to keep it)."""
        ...

    def audio(self, block: np.ndarray, rate: int) -> None:
        """The audio as it was played, ``np.ndarray [shape=(n, channels)]`` float32."""
        ...

    def close(self) -> None:
        """The session ended: finish and publish the output."""
        ...

    def abort(self) -> None:
        """The session failed or was interrupted: stop, leave no output behind."""
        ...


class PipeSink:
    """Raw RGB24 frames (``H x W x 3`` bytes each) on a binary stream (stdout by default)."""

    name = "pipe"
    whole = True

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer

    def open(self, size: tuple[int, int], fps: Fraction) -> None:
        return None

    def frame(self, index: int, image: np.ndarray) -> None:
        self.stream.write(image.tobytes())
        self.stream.flush()

    def audio(self, block: np.ndarray, rate: int) -> None:
        return None

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


class FileSink:
    """An MP4 (or ``.mov``/``.mkv``) published only when the session ends well.

    Args:
        output: the video file.
        song: the song being played, muxed as the audio track like ``dmv-fast render`` does.
            ``None`` (live input): the audio pushed through :meth:`audio` is recorded beside the
            output under a hidden name, the video kept lossless under another, and both are
            muxed into ``output`` at :meth:`close`. The names carry the process id
            (``.NAME.live-<pid>-<random>.wav``): those of a killed session are removed by
            the next one that opens a file sink in that folder.
        overwrite: replace an existing ``output``.
    """

    name = "file"
    whole = True

    def __init__(
        self, output: str | Path, song: str | Path | None = None, *, overwrite: bool = True
    ) -> None:
        self.output = Path(output)
        self.song = Path(song) if song is not None else None
        self.overwrite = overwrite
        self.writer: VideoWriter | None = None
        self.recording: Path | None = None
        self._audio_file: Any = None
        self._size: tuple[int, int] = (0, 0)
        self._fps = Fraction(0)
        self._tag = f"{os.getpid()}-{secrets.token_hex(4)}"

    def open(self, size: tuple[int, int], fps: Fraction) -> None:
        self._size, self._fps = size, fps
        sweep_live(self.output.parent)
        if self.song is not None:
            self.writer = VideoWriter(self.output, size, fps, self.song, overwrite=self.overwrite)
        else:
            video_tmp = self.output.with_name(f".{self.output.name}.live-{self._tag}.mkv")
            self.writer = VideoWriter(video_tmp, size, fps, None, crf=0)
        self.writer.open()

    def frame(self, index: int, image: np.ndarray) -> None:
        assert self.writer is not None
        self.writer.write(image)

    def audio(self, block: np.ndarray, rate: int) -> None:
        if self.song is not None:
            return
        if self._audio_file is None:
            import soundfile as sf

            self.recording = self.output.with_name(f".{self.output.name}.live-{self._tag}.wav")
            channels = 1 if block.ndim == 1 else block.shape[1]
            self._audio_file = sf.SoundFile(
                self.recording, "w", samplerate=rate, channels=channels, subtype="FLOAT"
            )
        self._audio_file.write(block)

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        if self.song is None:
            if self._audio_file is not None:
                self._audio_file.close()
            self._mux()

    def _mux(self) -> None:
        import av

        assert self.writer is not None
        tmp = self.writer.path
        try:
            with (
                VideoWriter(
                    self.output, self._size, self._fps, self.recording,
                    pixel_format="yuv420p", overwrite=self.overwrite,
                ) as final,
                av.open(str(tmp)) as source,
            ):  # fmt: skip
                for frame in source.decode(video=0):
                    final.write(frame.to_ndarray(format="yuv420p")[None])
        finally:
            tmp.unlink(missing_ok=True)
            if self.recording is not None:
                self.recording.unlink(missing_ok=True)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            if self.song is None:
                self.writer.path.unlink(missing_ok=True)
        if self._audio_file is not None:
            self._audio_file.close()
        if self.recording is not None:
            self.recording.unlink(missing_ok=True)


class Timeline:
    """Frame ``k`` at ``k / fps`` to every sink, each on its own thread (see ``feed``).

    A slow or failing sink drops its own frames and never holds back the others or the
    generator. Whole streams (the file, the pipe) get the gaps filled with the last frame made,
    so they have exactly one frame per hop.

    Args:
        sinks: the sinks, opened by :meth:`open` in order and closed in order.
        slots: frames each preview sink (``whole = False``) may have waiting before it drops
            its own; whole streams wait for up to ``LIVE_STREAM_QUEUE`` frames.
        clock: the session's clock, for each sink's latency.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        slots: int = LIVE_SINK_QUEUE,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.sinks = list(sinks)
        self.feeds = [
            SinkFeed(
                sink,
                slots=max(slots, LIVE_STREAM_QUEUE) if getattr(sink, "whole", True) else slots,
                clock=clock,
            )
            for sink in self.sinks
        ]

    def open(self, size: tuple[int, int], fps: Fraction) -> None:
        """Open every sink, each on its thread; raises the first failure."""
        for feed in self.feeds:
            feed.open(size, fps)

    def audio(self, block: np.ndarray, rate: int) -> None:
        for feed in self.feeds:
            feed.audio(block, rate)

    def frame(self, index: int, image: np.ndarray, arrived: float | None = None) -> None:
        """Frame ``index``, ``np.ndarray [shape=(H, W, 3)]`` uint8, to every sink (copied);
        ``arrived``: when its audio arrived, on the session clock (default: now)."""
        for feed in self.feeds:
            feed.frame(index, image, arrived)

    def close(self, total: int) -> None:
        """Hand over what is queued, pad whole streams to ``total`` frames (the audio's
        length), close every sink; raises the first failure of a whole stream."""
        errors: list[BaseException] = []
        for feed in self.feeds:
            try:
                feed.close(total)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def abort(self) -> None:
        for feed in self.feeds:
            try:
                feed.abort()
            except Exception as e:  # the original failure matters, not this one
                logger.debug("while aborting a sink: %s", e)

    def stats(self) -> list[SinkStats]:
        """Frames, drops, latency and failure of each sink, in order."""
        return [feed.stats() for feed in self.feeds]


def sweep_live(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the live recordings in ``folder`` whose session's process no longer exists (one
    killed with SIGKILL); returns what was deleted."""
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _LIVE_TEMP_RE.match(name)
        if match is None or _running(int(match.group(1))):
            continue
        path = Path(folder, name)
        try:
            path.unlink()
            removed.append(path)
        except OSError as e:
            logger.debug("could not remove %s: %s", path, e)
    return removed


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # not ours to signal: it exists
        return True
    return True
