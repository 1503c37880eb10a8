"""Each sink on its own thread, behind its own bounded queue.

A :class:`SinkFeed` takes frames from the run's thread without waiting (a copy into a slot of a
preallocated ring) and hands them to its sink on a thread of its own, where the sink is also
opened and closed (a window must live on one thread). When the sink falls behind, its queue
drops its own oldest frames: a slow window, a stalled pipe or a busy encoder never holds back
the generator or the other sinks, and each says in :class:`SinkStats` what it dropped.

A sink that must get one frame per hop (``whole``: the MP4, the raw pipe) has the gaps its
queue or the generator left filled with the last frame it took, so its stream stays exactly
one frame per hop; a preview (a window, NDI) just shows the newest frame. A sink that fails is
logged once and gets no more frames; the failure of a whole sink is raised at :meth:`close`
(its output aborted), the failure of a preview only recorded.

Latency per sink: from the arrival of the audio that completed a frame to the return of the
sink's ``frame`` call (for a window: the frame is on the screen), on the session's clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from dmv_fast.live.session import LATENCY_SAMPLES

logger = logging.getLogger("dmv_fast")

IDLE_SECONDS = 0.02  # a sink with an idle() hook (a window's events) is called this often


@dataclass(frozen=True)
class SinkStats:
    """What one sink did.

    Attributes:
        name: the sink's name (``file``, ``pipe``, ``window``, ``ndi``, or its class).
        frames: frames it took, repeats that keep a whole stream one frame per hop included.
        dropped: frames its own queue dropped because it was behind.
        latency_p50_ms, latency_p99_ms, latency_max_ms: audio block in to frame handed over
            (the sink's ``frame`` call returned), over the frames made for it (not repeats).
        failed: the sink's error, if it failed (it got no frames after that).
    """

    name: str
    frames: int
    dropped: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    failed: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        text = (
            f"{self.name}: {self.frames} frames, {self.dropped} dropped; audio to {self.name} "
            f"p50 {self.latency_p50_ms:.0f} ms, p99 {self.latency_p99_ms:.0f} ms"
        )
        return text + (f"; failed: {self.failed}" if self.failed else "")


class SinkFeed:
    """One sink on its own thread with a queue of ``slots`` frames.

    Args:
        sink: a :class:`~dmv_fast.live.sinks.Sink`; optional attributes ``name`` (for the
            stats), ``whole`` (default True: one frame per hop, gaps filled) and an ``idle()``
            method called on the sink's thread when no frame came for a while.
        slots: frames waiting at most; when full, the oldest is dropped.
        clock: the session's clock (seconds), for the latency.
    """

    def __init__(
        self, sink: Any, *, slots: int, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.sink = sink
        self.name = str(getattr(sink, "name", type(sink).__name__))
        self.whole = bool(getattr(sink, "whole", True))
        self.slots = slots
        self._clock = clock
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._images: np.ndarray | None = None  # [slots, H, W, 3], at the first frame
        self._index = np.zeros(slots, np.int64)
        self._arrived = np.zeros(slots, np.float64)
        self._head = self._count = 0
        self._end: tuple[str, int] | None = None  # ("close", total) or ("abort", 0)
        self._opened = False
        self._error: BaseException | None = None
        self._work: np.ndarray | None = None  # the frame being handed over
        self._last: np.ndarray | None = None  # the last frame handed over (whole sinks)
        self._written = 0  # whole sinks: the next position of the stream
        self._frames = self._dropped = self._made = 0
        self._latencies = np.zeros(LATENCY_SAMPLES, np.float64)

    # -- the run's side -----------------------------------------------------------------------

    def open(self, size: tuple[int, int], fps: Fraction) -> None:
        """Start the thread and open the sink on it; raises what the sink's ``open`` raised."""
        self._thread = threading.Thread(
            target=self._run, args=(size, fps), name=f"dmv-fast-sink-{self.name}", daemon=True
        )
        self._thread.start()
        with self._cond:
            self._cond.wait_for(lambda: self._opened or self._error is not None)
            if self._error is not None:
                raise self._error

    def frame(self, index: int, image: np.ndarray, arrived: float | None = None) -> None:
        """Queue frame ``index`` (copied); never waits for the sink."""
        with self._cond:
            if self._error is not None or self._end is not None:
                self._dropped += 1
                return
            if self._images is None:
                self._images = np.empty((self.slots, *image.shape), np.uint8)
            if self._count == self.slots:  # behind: drop the oldest waiting
                self._head = (self._head + 1) % self.slots
                self._count -= 1
                self._dropped += 1
            slot = (self._head + self._count) % self.slots
            np.copyto(self._images[slot], image)
            self._index[slot] = index
            self._arrived[slot] = self._clock() if arrived is None else arrived
            self._count += 1
            self._cond.notify_all()

    def audio(self, block: np.ndarray, rate: int) -> None:
        """The audio as played, handed over on the caller's thread (it is never dropped)."""
        if self._error is None:
            self.sink.audio(block, rate)

    def close(self, total: int) -> None:
        """Hand over what is queued, pad a whole stream to ``total`` frames, close the sink.

        Raises:
            the failure of a whole sink (its output aborted); a preview's is only recorded.
        """
        self._finish(("close", total), timeout=None)
        if self._error is not None and self.whole:
            raise self._error

    def abort(self) -> None:
        """Drop what is queued and abort the sink (waits a few seconds for a busy sink)."""
        if self._thread is None:
            self.sink.abort()
            return
        self._finish(("abort", 0), timeout=5.0)

    def _finish(self, end: tuple[str, int], timeout: float | None) -> None:
        with self._cond:
            if self._end is None or end[0] == "abort":  # an abort overrides a close not begun
                self._end = end
            if end[0] == "abort":
                self._count = 0
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.debug("sink %s did not stop within %s s", self.name, timeout)

    def stats(self) -> SinkStats:
        with self._cond:
            n = min(self._made, LATENCY_SAMPLES)
            lat = self._latencies[:n] * 1000.0
            return SinkStats(
                name=self.name,
                frames=self._frames,
                dropped=self._dropped,
                latency_p50_ms=float(np.percentile(lat, 50)) if n else 0.0,
                latency_p99_ms=float(np.percentile(lat, 99)) if n else 0.0,
                latency_max_ms=float(lat.max()) if n else 0.0,
                failed=None if self._error is None else _describe(self._error),
            )

    # -- the sink's thread --------------------------------------------------------------------

    def _run(self, size: tuple[int, int], fps: Fraction) -> None:
        try:
            self.sink.open(size, fps)
        except BaseException as e:  # raised by open() on the run's thread
            try:
                self.sink.abort()
            except Exception as again:
                logger.debug("while aborting sink %s: %s", self.name, again)
            with self._cond:
                self._error = e
                self._cond.notify_all()
            return
        with self._cond:
            self._opened = True
            self._cond.notify_all()
        idle = getattr(self.sink, "idle", None)
        while True:
            with self._cond:
                if not self._count and self._end is None:
                    self._cond.wait(IDLE_SECONDS)
                if self._count:
                    assert self._images is not None
                    slot = self._head
                    if self._work is None:
                        self._work = np.empty_like(self._images[0])
                    np.copyto(self._work, self._images[slot])
                    index, arrived = int(self._index[slot]), float(self._arrived[slot])
                    self._head = (self._head + 1) % self.slots
                    self._count -= 1
                    task = "frame"
                else:
                    task = "idle" if self._end is None else self._end[0]
            if task == "frame":
                self._deliver(index, arrived)
            elif task == "idle":
                if idle is not None and self._error is None:
                    self._guard(idle)
            else:
                break
        self._end_sink()

    def _deliver(self, index: int, arrived: float) -> None:
        if self._error is not None:
            with self._cond:
                self._dropped += 1
            return
        assert self._work is not None
        try:
            if self.whole:
                filler = self._last if self._last is not None else self._work
                while self._written < index:  # frames nobody made: hold the last one
                    self.sink.frame(self._written, filler)
                    self._written += 1
                    self._frames += 1
            self.sink.frame(index, self._work)
            done = self._clock()
        except Exception as e:
            self._fail(e)
            return
        with self._cond:
            self._latencies[self._made % LATENCY_SAMPLES] = done - arrived
            self._made += 1
            self._frames += 1
        self._written = index + 1
        if self.whole:  # keep it for the gaps: swap the buffers
            if self._last is None:
                self._last = np.empty_like(self._work)
            self._last, self._work = self._work, self._last

    def _end_sink(self) -> None:
        assert self._end is not None
        kind, total = self._end
        if kind == "close" and self._error is None:
            try:
                if self.whole and self._last is not None:
                    while self._written < total:
                        self.sink.frame(self._written, self._last)
                        self._written += 1
                        self._frames += 1
                self.sink.close()
                return
            except Exception as e:
                self._fail(e)
        try:
            self.sink.abort()
        except Exception as e:  # the original failure matters, not this one
            logger.debug("while aborting sink %s: %s", self.name, e)

    def _guard(self, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as e:
            self._fail(e)

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._count = 0
        logger.warning("%s sink failed, it gets no more frames: %s", self.name, _describe(error))


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
