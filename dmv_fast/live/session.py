"""Live sessions: push audio blocks in, pull the newest frame out, with bounded latency.

:class:`LiveSession` couples an :class:`~dmv_fast.vectors.online.OnlineTrajectory` with a generator
(anything with ``generate(noise [B, 128], classes [B, 1000], truncation) -> uint8 [B, H, W, 3]``,
such as :class:`dmv_fast.model.runtime.Generator` or ``Visualizer(...).generator``)::

    audio blocks ──push()──▶ online vectors ──▶ pending ring (queue slots) ──▶ generator
                                                   │ full: the oldest is dropped    │
                                   pull() ◀── finished ring (queue slots) ◀─────────┘

Both rings are bounded (``queue`` slots) and preallocated: when the generator falls behind,
the oldest vectors are dropped rather than queued, so a frame waits for at most ``queue``
generator calls before its own (``queue=1`` gives the lowest latency, ``2`` absorbs the
jitter of audio blocks that complete two hops at once). The worker takes up to ``batch``
pending vectors per call, oldest first (batch 1 by default: on the CPU a batch only adds
latency). Nothing is allocated per frame on the session's side (the generator returns its own
output array).

Latency is measured per generated frame, from the arrival of the audio block that completed the
frame's audio (``push(..., time=...)``, default: the session clock at the call) to the moment
the frame is ready to pull. Pacing a file or a stream at the audio's own rate is
:mod:`dmv_fast.live.pacer`'s; the sinks that take the frames are in :mod:`dmv_fast.live.sinks`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from dmv_fast.live.control import Controls
from dmv_fast.settings.choices import N_IMAGENET, NOISE_DIM
from dmv_fast.vectors.online import OnlineTrajectory

logger = logging.getLogger("dmv_fast")

LATENCY_SAMPLES = 1 << 16  # the latency percentiles cover the last this many frames


class FrameGenerator(Protocol):
    def generate(self, noise: np.ndarray, classes: np.ndarray, truncation: float) -> np.ndarray:
        """``noise [B, 128]``, ``classes [B, 1000]`` float32 -> ``uint8 [B, H, W, 3]``."""
        ...


@dataclass(frozen=True)
class Frame:
    """A frame pulled from a session.

    Attributes:
        index: frame number ``k``; it shows the audio at ``k / fps`` seconds.
        image: ``np.ndarray [shape=(H, W, 3)]`` uint8 RGB. A session buffer: valid until the
            next ``pull`` (copy it to keep it).
        latency: seconds from the arrival of its audio to the frame being ready.
        arrived: when its audio arrived, on the session clock (sinks measure their own
            latency from it).
    """

    index: int
    image: np.ndarray
    latency: float
    arrived: float = 0.0


@dataclass(frozen=True)
class LiveStats:
    """What a session did.

    Attributes:
        frames_total: frames the audio asked for (one per hop).
        frames_generated: frames the generator made.
        frames_shown: frames handed out by ``pull``.
        frames_dropped: frames dropped because the generator or the consumer fell behind.
        latency_p50_ms, latency_p99_ms, latency_max_ms: audio in to frame ready, over the
            generated frames (the last 65536).
        fps: frames shown per second of session time (first push to now or to the end).
        target_fps: the frame rate of the audio, ``22050 / frame_length``.
        generator_fps: frames generated per second of generator time.
        elapsed_s: session time in seconds.
    """

    frames_total: int
    frames_generated: int
    frames_shown: int
    frames_dropped: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    fps: float
    target_fps: float
    generator_fps: float
    elapsed_s: float

    @property
    def dropped_fraction(self) -> float:
        return self.frames_dropped / self.frames_total if self.frames_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dropped_fraction": self.dropped_fraction}

    def summary(self) -> str:
        return (
            f"{self.frames_shown} frames shown, {self.frames_dropped} dropped "
            f"({100 * self.dropped_fraction:.1f} %) of {self.frames_total}; latency p50 "
            f"{self.latency_p50_ms:.0f} ms, p99 {self.latency_p99_ms:.0f} ms; "
            f"{self.fps:.1f} of {self.target_fps:.2f} frames/s"
        )


class _Ring:
    """A bounded FIFO of slot indices (head = oldest); overwrites the oldest when full."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.head = 0
        self.count = 0

    def push(self) -> tuple[int, bool]:
        """Claim the slot for a new item; returns ``(slot, dropped_oldest)``."""
        if self.count == self.size:
            slot = self.head
            self.head = (self.head + 1) % self.size
            return slot, True
        slot = (self.head + self.count) % self.size
        self.count += 1
        return slot, False

    def take(self, n: int) -> list[int]:
        """Remove the ``n`` oldest slots (in order)."""
        slots = [(self.head + i) % self.size for i in range(n)]
        self.head = (self.head + n) % self.size
        self.count -= n
        return slots


class LiveSession:
    """Push audio blocks from any thread; pull the newest frame.

    Args:
        generator: anything with ``generate(noise, classes, truncation)`` (see the module).
        trajectory: the :class:`~dmv_fast.vectors.online.OnlineTrajectory` that turns audio into
            vectors (its options give the truncation and the frame rate).
        queue: slots in each of the two rings (vectors waiting, frames waiting), >= 1.
        batch: frames per generator call, 1..queue.
        clock: session clock in seconds (default ``time.perf_counter``).
        threaded: run the generator in a worker thread (started by :meth:`start` or ``with``);
            ``False``: the caller drives it with :meth:`step` (deterministic tests).

    The session is warm once the first frame is out; call :meth:`warm_up` to pay the first
    run's cost before the audio starts. Settings change while it plays through :meth:`set` or
    :attr:`controls` (:mod:`dmv_fast.live.control`), from the next frame on.
    """

    def __init__(
        self,
        generator: FrameGenerator,
        trajectory: OnlineTrajectory,
        *,
        queue: int = 2,
        batch: int = 1,
        clock: Callable[[], float] = time.perf_counter,
        threaded: bool = True,
    ) -> None:
        for name, value in (("queue", queue), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if batch > queue:
            raise ValueError(f"batch ({batch}) must not exceed queue ({queue})")
        if not callable(getattr(generator, "generate", None)):
            raise ValueError("generator must have a generate(noise, classes, truncation) method")
        self.generator = generator
        self.trajectory = trajectory
        self.truncation = float(trajectory.options.truncation)
        self.fps = Fraction(trajectory.options.fps)  # exactly 22050 / frame_length
        self.queue, self.batch = queue, batch
        self._clock = clock
        self._threaded = threaded
        self.controls = Controls(trajectory)
        # Pending vectors: full-width class rows whose other entries stay 0.
        self._noise = np.zeros((queue, NOISE_DIM), np.float32)
        self._classes = np.zeros((queue, N_IMAGENET), np.float32)
        self._index = np.zeros(queue, np.int64)
        self._t_in = np.zeros(queue, np.float64)
        self._truncations = np.zeros(queue, np.float64)  # each frame's own (they glide)
        self._pending = _Ring(queue)
        # The generator's inputs, one batch.
        self._noise_in = np.zeros((batch, NOISE_DIM), np.float32)
        self._classes_in = np.zeros((batch, N_IMAGENET), np.float32)
        self._meta_in = np.zeros((batch, 2), np.float64)  # index, arrival time
        self._truncation_in = self.truncation
        # Finished frames, allocated at the first frame (its size comes from the generator).
        self._frames: np.ndarray | None = None
        self._front: np.ndarray | None = None
        self._frame_index = np.zeros(queue, np.int64)
        self._frame_latency = np.zeros(queue, np.float64)
        self._frame_arrived = np.zeros(queue, np.float64)
        self._done = _Ring(queue)
        self._latencies = np.zeros(LATENCY_SAMPLES, np.float64)
        self._engine_lock = threading.Lock()  # the trajectory is not thread-safe
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._closed = False
        self._finished = False
        self._busy = False
        self._error: BaseException | None = None
        self._total = self._generated = self._shown = self._dropped = 0
        self._gen_seconds = 0.0
        self._t_first: float | None = None
        self._t_end: float | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> LiveSession:
        """Start the worker thread (threaded sessions; done by ``with``)."""
        if self._threaded and self._worker is None:
            self._worker = threading.Thread(target=self._run, name="dmv-fast-live", daemon=True)
            self._worker.start()
        return self

    def close(self) -> None:
        """Stop the worker (frames not yet pulled are discarded)."""
        with self._cond:
            self._closed = True
            if self._t_end is None:
                self._t_end = self._clock()
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()
            self._worker = None

    def __enter__(self) -> LiveSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm_up(self) -> None:
        """Compile the trajectory kernels and run the generator once (on a throwaway engine and
        zero vectors), so that the first real frame pays no start-up."""
        spare = OnlineTrajectory(self.trajectory.options, seed=0)
        spare.advance(np.ones(2), np.ones((2, 12)))
        self.generator.generate(self._noise_in[:1], self._classes_in[:1], self.truncation)

    def set(self, **changes: Any) -> None:
        """Change settings while playing, from the next frame on (see
        :mod:`dmv_fast.live.control`): ``session.set(truncation=0.6, classes=["goldfish", 97])``.

        Raises:
            ValueError: an unknown setting or a bad value (then nothing changes).
        """
        self.controls.set("api", **changes)

    # -- audio in -----------------------------------------------------------------------------

    def push(self, block: np.ndarray, rate: int, *, time: float | None = None) -> int:
        """Add an audio block (any size, ``[n]`` or ``[n, channels]`` float, any rate).

        Args:
            time: when the block arrived, on the session clock (default: now).

        Returns:
            the number of frames it completed.
        """
        arrived = self._clock() if time is None else float(time)
        with self._engine_lock:
            truncation = self.controls.apply(self.trajectory, self._total)
            columns = self.trajectory.classes
            step = self.trajectory.push(block, rate)
        self._enqueue(step, arrived, truncation=truncation, columns=columns)
        return step.n_frames

    def finish(self, *, time: float | None = None) -> int:
        """End of the audio: queue the last frames; the worker stops when it has made them.

        With the worker running, the last frames wait for room instead of being dropped
        (nothing newer will come), waking the worker as they go; a session closed meanwhile
        (or whose generator failed) drops the rest rather than wait.
        """
        arrived = self._clock() if time is None else float(time)
        with self._engine_lock:
            truncation = self.controls.apply(self.trajectory, self._total)
            columns = self.trajectory.classes
            step = self.trajectory.finish()
        self._enqueue(
            step, arrived, self._worker is not None, truncation=truncation, columns=columns
        )
        with self._cond:
            self._finished = True
            self._cond.notify_all()
        return step.n_frames

    def _enqueue(
        self,
        step: Any,
        arrived: float,
        wait: bool = False,
        *,
        truncation: float,
        columns: tuple[int, ...],
    ) -> None:
        n = step.n_frames
        with self._cond:
            if self._t_first is None:
                self._t_first = arrived
            self._total += n
            skip = 0 if wait else max(0, n - self.queue)  # these would be overwritten at once
            self._dropped += skip
            for i in range(skip, n):
                if wait:
                    self._cond.notify_all()  # the worker may sleep on what is queued so far
                    self._cond.wait_for(
                        lambda: (
                            self._pending.count < self.queue
                            or self._closed
                            or self._error is not None
                        )
                    )
                    if self._closed or self._error is not None:  # nobody makes them now
                        self._dropped += n - i
                        break
                slot, dropped = self._pending.push()
                self._dropped += dropped
                self._truncations[slot] = truncation
                self._noise[slot] = step.noise[i]
                self._classes[slot] = 0.0  # the classes may have changed
                self._classes[slot, list(columns)] = step.weights[i]
                self._index[slot] = step.start + i
                self._t_in[slot] = arrived
            if n:
                self._cond.notify_all()

    # -- the generator ------------------------------------------------------------------------

    def step(self, timeout: float | None = 0.0) -> int:
        """Generate the oldest pending frames (at most ``batch``); returns how many.

        Waits up to ``timeout`` seconds for pending vectors (``None``: until some arrive or
        the session ends).
        """
        with self._cond:
            if not self._pending.count and timeout != 0.0:
                self._cond.wait_for(
                    lambda: self._pending.count or self._closed or self._finished, timeout
                )
            count = self._pending.count
            if not count:
                return 0
            m, head = 1, self._pending.head
            self._truncation_in = float(self._truncations[head])
            while m < min(self.batch, count) and (  # one truncation per generator call
                self._truncations[(head + m) % self.queue] == self._truncation_in
            ):
                m += 1
            for i, slot in enumerate(self._pending.take(m)):
                self._noise_in[i] = self._noise[slot]
                self._classes_in[i] = self._classes[slot]
                self._meta_in[i] = self._index[slot], self._t_in[slot]
            self._busy = True
        try:
            t0 = self._clock()
            frames = self.generator.generate(
                self._noise_in[:m], self._classes_in[:m], self._truncation_in
            )
            t1 = self._clock()
        finally:
            with self._cond:
                self._busy = False
        with self._cond:
            if self._frames is None:
                self._frames = np.zeros((self.queue, *frames.shape[1:]), np.uint8)
                self._front = np.zeros(frames.shape[1:], np.uint8)
            for i in range(m):
                slot, dropped = self._done.push()
                self._dropped += dropped
                self._frames[slot] = frames[i]
                self._frame_index[slot] = int(self._meta_in[i, 0])
                latency = t1 - self._meta_in[i, 1]
                self._frame_latency[slot] = latency
                self._frame_arrived[slot] = self._meta_in[i, 1]
                self._latencies[self._generated % LATENCY_SAMPLES] = latency
                self._generated += 1
            self._gen_seconds += t1 - t0
            self._cond.notify_all()
        return m

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._closed or (self._finished and not self._pending.count):
                        break
                self.step(timeout=None)
        except BaseException as e:  # handed to the consumer by pull()
            logger.debug("live generator stopped: %s", e)
            with self._cond:
                self._error = e
                self._cond.notify_all()
        finally:
            with self._cond:
                if self._finished and self._t_end is None:
                    self._t_end = self._clock()
                self._cond.notify_all()

    # -- frames out ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The audio has finished and every frame has been made and pulled (or dropped)."""
        with self._cond:
            return self._drained()

    def _drained(self) -> bool:
        return (
            self._finished and not self._pending.count and not self._busy and not self._done.count
        )

    def pull(self, timeout: float | None = 0.0, *, newest: bool = True) -> Frame | None:
        """The newest frame not pulled yet (older ones are dropped), or ``None``.

        Args:
            timeout: seconds to wait for a frame (``None``: until one comes or the session
                is done).
            newest: ``False``: the oldest frame waiting instead, none dropped (for recorders
                that keep every frame the generator made).

        Raises:
            RuntimeError: the generator failed (the cause is chained).
        """
        with self._cond:
            if not self._done.count and timeout != 0.0:
                self._cond.wait_for(
                    lambda: self._done.count or self._error is not None or self._drained(),
                    timeout,
                )
            if self._error is not None:
                raise RuntimeError(f"the generator failed: {self._error}") from self._error
            count = self._done.count
            if not count:
                return None
            if newest:
                self._dropped += count - 1
                self._done.take(count - 1)
            (slot,) = self._done.take(1)
            assert self._frames is not None and self._front is not None
            np.copyto(self._front, self._frames[slot])
            self._shown += 1
            if self._finished and self._drained() and self._t_end is None:
                self._t_end = self._clock()
            index, latency = int(self._frame_index[slot]), float(self._frame_latency[slot])
            return Frame(index, self._front, latency, float(self._frame_arrived[slot]))

    def stats(self) -> LiveStats:
        """Counts, latency percentiles and frame rates so far."""
        with self._cond:
            n = min(self._generated, LATENCY_SAMPLES)
            lat = self._latencies[:n] * 1000.0
            end = self._t_end if self._t_end is not None else self._clock()
            elapsed = end - self._t_first if self._t_first is not None else 0.0
            return LiveStats(
                frames_total=self._total,
                frames_generated=self._generated,
                frames_shown=self._shown,
                frames_dropped=self._dropped,
                latency_p50_ms=float(np.percentile(lat, 50)) if n else 0.0,
                latency_p99_ms=float(np.percentile(lat, 99)) if n else 0.0,
                latency_max_ms=float(lat.max()) if n else 0.0,
                fps=self._shown / elapsed if elapsed > 0 else 0.0,
                target_fps=float(self.fps),
                generator_fps=self._generated / self._gen_seconds if self._gen_seconds else 0.0,
                elapsed_s=elapsed,
            )
