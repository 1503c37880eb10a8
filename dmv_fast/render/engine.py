"""The engine: a resolved plan and the generator session it runs, making frames on demand.

:class:`Engine` is what a one-process render, a segment worker and a live session share: the
plan is resolved once (or given), the generator graph is exported and loaded on first use,
and :meth:`Engine.frames` generates batches lazily (on the CPU, the plan's lanes generate
the next batches side by side); :func:`overlapped` hands them to a helper thread that consumes
them (encodes, writes) while the next batch is generated.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np

from dmv_fast.model.cache import cached_graph, ensure_graph
from dmv_fast.settings.plan import Plan, resolve
from dmv_fast.settings.spec import ModelSpec

logger = logging.getLogger("dmv_fast")

#: Batches in flight between the generator and what consumes its frames (>= 2).
QUEUE_DEPTH = 3
#: ``progress(stage, done, total)``; stages: "analysis", "export", "render", "encode".
ProgressCallback = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """A progress callback that shows nothing."""
    return None


class Engine:
    """Owns the resolved plan and the generator (one ONNX Runtime session).

    Args:
        model: a :class:`~dmv_fast.settings.spec.ModelSpec`, an already resolved
            :class:`~dmv_fast.settings.plan.Plan`, or a resolution (then ``spec_fields`` are
            the other :class:`ModelSpec` fields: ``weights``, ``backend``, ``precision``,
            ``batch_size``, ``scaling``, ``pixels``).
        encoder: ``"auto"``, ``"x264"`` or ``"nvenc"`` (settled in the plan).
        workers: segment workers (None: the plan's choice).
        threads: intra-op threads on the CPU (None: one per core, shared out among the
            plan's lanes); a count given here runs one lane.
        lanes: batches :meth:`frames` generates side by side on the CPU (None: the plan's
            choice, :func:`dmv_fast.settings.plan.cpu_lanes`; 1: one at a time).
        progress: ``progress(stage, done, total)`` callback.

    The plan is resolved here, once (:func:`dmv_fast.settings.plan.resolve`): an explicit
    backend or encoder the machine cannot run fails now, before any work. The session is
    built on first use, or ahead of it by :meth:`preload`; if its providers contradict the
    plan, the plan is redone once as the CPU plan.
    """

    def __init__(
        self,
        model: ModelSpec | Plan | int | None = None,
        *,
        encoder: str = "auto",
        workers: int | None = None,
        threads: int | None = None,
        lanes: int | None = None,
        progress: ProgressCallback | None = None,
        **spec_fields: Any,
    ) -> None:
        if isinstance(model, Plan | ModelSpec) and spec_fields:
            raise ValueError(
                f"give either a ModelSpec/Plan or model fields, not both ({', '.join(spec_fields)})"
            )
        if isinstance(model, Plan):
            plan = model
            if (threads is not None or lanes == 1) and plan.lanes != 1:
                plan = plan.for_threads(threads)
        else:
            if isinstance(model, ModelSpec):
                spec = model
            else:
                fields: dict[str, Any] = dict(spec_fields)
                if model is not None:
                    fields["resolution"] = model
                spec = ModelSpec(**fields)
            plan = resolve(spec, encoder=encoder, workers=workers, threads=threads, lanes=lanes)
        self.plan: Plan = plan
        self.threads = threads
        self.progress: ProgressCallback = progress or no_progress
        self._generator: Any = None
        self._loading: tuple[threading.Thread, dict[str, Any]] | None = None
        for note in plan.notes:
            logger.debug("plan: %s", note)

    @property
    def spec(self) -> ModelSpec:
        return self.plan.spec

    def _build(self, plan: Plan, path: Any = None) -> Any:
        from dmv_fast.model.runtime import Generator

        if path is None:
            path = ensure_graph(
                plan, progress=lambda done, total: self.progress("export", done, total)
            )
        threads = self.threads if self.threads is not None else plan.lane_threads
        return Generator(path, plan=plan, threads=threads)

    def preload(self) -> None:
        """Start building the generator session on a helper thread if its graph is already
        cached, so that it loads while the caller does other work (a render analyses the song
        meanwhile); :attr:`generator` waits for it. An export (or a download) never runs
        there: it waits for :attr:`generator`, on the caller's thread, where its progress
        shows."""
        if self._generator is not None or self._loading is not None:
            return
        box: dict[str, Any] = {}

        def load() -> None:
            try:
                path = cached_graph(self.plan)
                if path is not None:
                    box["generator"] = self._build(self.plan, path)
            except BaseException as exc:  # raised by the thread that asks for the generator
                box["error"] = exc

        thread = threading.Thread(target=load, name="dmv-fast-session", daemon=True)
        thread.start()
        self._loading = (thread, box)

    def wait_preload(self) -> None:
        """Wait for a :meth:`preload` in progress to finish (its result is kept for
        :attr:`generator`): a failed render leaves nothing half-written in the cache."""
        if self._loading is not None:
            self._loading[0].join()

    @property
    def generator(self) -> Any:
        """The :class:`dmv_fast.model.runtime.Generator`, exported and loaded on first use."""
        if self._generator is None:
            gen = None
            if self._loading is not None:
                thread, box = self._loading
                thread.join()
                self._loading = None
                if "error" in box:
                    raise box["error"]
                gen = box.get("generator")
            if gen is None:
                gen = self._build(self.plan)
            if gen.plan.on_gpu != self.plan.on_gpu:  # the session fell to the CPU: redo once
                gen = self._build(gen.plan)
            self.plan = gen.plan
            self._generator = gen
        return self._generator

    @property
    def batch_size(self) -> int:
        return self.plan.batch_size

    @property
    def encoder_format(self) -> str:
        """The pixel format the render path hands the encoder (the plan's)."""
        return self.plan.pixel_format

    def frames(
        self,
        noise: np.ndarray,
        class_vectors: np.ndarray,
        truncation: float,
        pixel_format: str = "rgb24",
    ) -> Iterator[np.ndarray]:
        """Lazily generate frames, one batch at a time.

        Args:
            noise: ``np.ndarray [shape=(n_frames, 128)]`` float32 noise vectors.
            class_vectors: ``np.ndarray [shape=(n_frames, 1000)]`` float32 class vectors.
            truncation: BigGAN truncation in (0, 1].
            pixel_format: ``"rgb24"``, or ``"yuv420p"`` when the plan's pixel format is.

        Yields:
            ``np.ndarray [shape=(b, H, W, 3)]`` uint8 RGB batches (``b <= batch_size``), or
            ``[shape=(b, H * 3 // 2, W)]`` YUV 4:2:0 planes.
        """
        gen = self.generator
        step = gen.batch_size
        starts = range(0, len(noise), step)

        def batch(start: int, run_options: Any = None) -> np.ndarray:
            args = (noise[start : start + step], class_vectors[start : start + step], truncation)
            if run_options is None:
                return gen.generate(*args, pixel_format=pixel_format)
            return gen.generate(*args, pixel_format=pixel_format, run_options=run_options)

        lanes = 1 if self.plan.on_gpu else min(self.plan.lanes, len(starts))
        if lanes <= 1:
            for start in starts:
                yield batch(start)
            return
        yield from _side_by_side(batch, starts, lanes)

    def stream(self, options: Any = None, *, queue: int = 2, lookahead: int = 0) -> Any:
        """A :class:`~dmv_fast.live.session.LiveSession` on this engine's warm generator: push
        audio blocks (any size, any rate), pull the newest frame; late frames are dropped.

        Args:
            options: the live settings (:class:`~dmv_fast.settings.options.RenderOptions`:
                frame length, sensitivities, classes, truncation, jitter, depth, seed);
                ``song`` is not read.
            queue: slots in each bounded queue.
            lookahead: frames of class-smoothing look-ahead (each costs one frame of latency).

        Build the engine with ``batch_size=1`` for the lowest latency: the session runs
        the graph's batch, padded when fewer frames are pending. The session's frames can go
        to sinks (:mod:`dmv_fast.live.sinks`) with :func:`dmv_fast.live.runner.run`.
        """
        from dmv_fast.live.session import LiveSession
        from dmv_fast.vectors.online import OnlineTrajectory

        self._one_lane()
        trajectory = OnlineTrajectory(options, lookahead=lookahead)
        batch = min(self.plan.batch_size, queue)
        return LiveSession(self.generator, trajectory, queue=queue, batch=batch)

    def _one_lane(self) -> None:
        """A live session runs one batch at a time: a plan with lanes (its session on a share
        of the cores) becomes the one-lane plan, and a session already built is rebuilt."""
        if self.plan.lanes == 1:
            return
        self.wait_preload()
        self._loading = None
        self._generator = None
        self.plan = self.plan.for_threads(self.threads)

    def plan_for(self, encoder: str) -> Plan:
        """The plan with a render's encoder request settled (``auto``: the engine's own)."""
        return self.plan.with_encoder(encoder)


def _side_by_side(
    batch: Callable[[int, Any], np.ndarray], starts: range, lanes: int
) -> Iterator[np.ndarray]:
    """``batch(start, run_options)`` for every start, ``lanes`` at a time, each call on a
    thread of its own (ONNX Runtime releases the GIL and runs one session's calls
    concurrently), yielded in order. A lane lives for one call, so an iterator dropped
    without being closed leaves nothing waiting.

    Closing the iterator early (a failure, a signal) terminates the ONNX Runtime calls
    running (their ``RunOptions``: they return after the layer they are in) and waits for
    them: a thread still inside ONNX Runtime while the interpreter exits aborts the process.
    """
    import onnxruntime as ort

    run_options = ort.RunOptions()
    pending: deque[tuple[Future[np.ndarray], threading.Thread]] = deque()

    def submit(start: int) -> None:
        future: Future[np.ndarray] = Future()

        def lane() -> None:
            try:
                future.set_result(batch(start, run_options))
            except BaseException as exc:  # raised to the caller by future.result()
                future.set_exception(exc)

        thread = threading.Thread(target=lane, name=f"dmv-fast-lane-{start}", daemon=True)
        pending.append((future, thread))
        thread.start()

    todo = iter(starts)
    finished = False
    try:
        for start in todo:
            submit(start)
            if len(pending) == lanes:
                break
        while pending:
            future, thread = pending[0]
            thread.join()  # the call ended (its result or its error is in the future)
            pending.popleft()
            frames = future.result()
            for start in todo:
                submit(start)
                break
            yield frames
        finished = True
    finally:
        if not finished:
            run_options.terminate = True
        for _, thread in pending:
            thread.join()


def overlapped(
    batches: Iterator[np.ndarray],
    consume: Callable[[np.ndarray], Any],
    depth: int = QUEUE_DEPTH,
) -> int:
    """Produce ``batches`` on this thread while a helper thread consumes them, at most
    ``depth`` batches apart; returns the number of frames consumed.

    The generator runs here (ONNX Runtime releases the GIL) while the helper encodes or
    writes, so inference of batch k+1 overlaps the consumption of batch k. An exception on
    either side stops both and is raised here; an interrupt (a signal) reaches this thread
    and the helper finishes only the batch it holds.
    """
    q: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []
    stop = threading.Event()
    done = [0]

    def worker() -> None:
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                consume(item)
                done[0] += len(item)
        except BaseException as exc:  # handed to the producer, re-raised there
            failure.append(exc)
            stop.set()
            while True:  # drain, so that a producer blocked on put() notices
                try:
                    q.get_nowait()
                except queue.Empty:
                    return

    thread = threading.Thread(target=worker, name="dmv-fast-consumer", daemon=True)
    thread.start()
    try:
        for batch in batches:
            while not stop.is_set():
                try:
                    q.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                break
    finally:
        # Always let the helper finish what it holds, then end it.
        while thread.is_alive():
            try:
                q.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        thread.join()
    if failure:
        raise failure[0]
    return done[0]
