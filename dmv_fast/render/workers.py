"""Segment workers: processes that each hold one generator session and one encoder.

A :class:`SegmentWorker` builds its generator once and then renders segment after segment:
it receives a :class:`SegmentTask` (the segment's noise and class vectors, ``[f, 128]`` and
``[f, 1000]`` float32, and where to put the file), generates the frames, encodes them and
returns a small :class:`SegmentDone`. Only vectors, paths and encoded segment files cross
process boundaries, never frames. The same class serves local processes
(:class:`LocalPool`) and Ray actors (:mod:`dmv_fast.render.ray_pool`).

How many workers a render needs is the plan's decision
(:func:`dmv_fast.settings.plan.default_workers`).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.render.engine import Engine, overlapped
from dmv_fast.render.processes import ProcessPool
from dmv_fast.settings.choices import MAX_WORKERS, int_in
from dmv_fast.settings.plan import Plan, resolve
from dmv_fast.settings.spec import ModelSpec
from dmv_fast.video.segments import VideoSettings, segment_writer

logger = logging.getLogger("dmv_fast")


# ---------------------------------------------------------------------------------------
# The model a worker builds


@dataclass(frozen=True)
class WorkerModel:
    """What a worker builds its generator from (picklable; it crosses process boundaries).

    Attributes:
        model: a resolved :class:`~dmv_fast.settings.plan.Plan` (used as it is: local workers share
            the machine it was resolved on), or a :class:`~dmv_fast.settings.spec.ModelSpec` that
            each worker resolves where it runs (Ray actors on other machines).
        threads: ONNX Runtime CPU threads of the worker's session (None: one per core).
    """

    model: Any
    threads: int | None = None

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec if isinstance(self.model, Plan) else self.model


def build_engine(model: WorkerModel) -> Engine:
    """The engine of a worker: its session is built on first use. A spec (a worker on
    another machine) is resolved there, as the one-stream plan a segment needs."""
    if isinstance(model.model, Plan):
        return Engine(model.model, threads=model.threads)
    plan = resolve(model.model, encoder="x264", workers=1, threads=model.threads)
    return Engine(plan.for_segments(1), threads=model.threads)


@dataclass(frozen=True)
class SegmentTask:
    """One segment to render.

    Attributes:
        key: the caller's name for the segment (e.g. ``(song, segment index)``).
        noise: ``np.ndarray [shape=(f, 128)]`` float32 noise vectors of its frames.
        class_vectors: ``np.ndarray [shape=(f, 1000)]`` float32 class vectors.
        truncation: BigGAN truncation in (0, 1].
        fps: the exact frame rate.
        video: libx264 settings, the same for every segment of a video.
        path: where the worker writes the segment file; None: the worker returns the file's
            bytes instead (workers on other machines).
    """

    key: Any
    noise: np.ndarray
    class_vectors: np.ndarray
    truncation: float
    fps: Fraction
    video: VideoSettings
    path: str | None = None


@dataclass
class SegmentDone:
    """What a worker reports for a finished segment (no frames)."""

    key: Any
    frames: int
    seconds: float
    providers: list[str]
    node: str
    pid: int
    data: bytes | None = field(default=None, repr=False)


class SegmentWorker:
    """Holds one generator session and renders segments with it, one at a time.

    Args:
        model: the model to build (once, on the first task).
    """

    def __init__(self, model: WorkerModel) -> None:
        self._model = model
        self._engine: Engine | None = None

    def node(self) -> str:
        """Where this worker runs (a Ray worker reports its node id instead)."""
        return socket.gethostname()

    def render(
        self, task: SegmentTask, on_frames: Callable[[int], None] | None = None
    ) -> SegmentDone:
        """Generate and encode one segment; ``on_frames(n)`` after each encoded batch."""
        t0 = time.perf_counter()
        if self._engine is None:
            self._engine = build_engine(self._model)
        engine = self._engine
        providers = list(engine.generator.providers)  # builds the session: settles the plan
        fmt = engine.encoder_format
        n = len(task.noise)
        data = None
        with tempfile.TemporaryDirectory(prefix="dmv-segment-") as scratch:
            path = Path(task.path) if task.path is not None else Path(scratch) / "segment.mp4"
            frames = engine.frames(task.noise, task.class_vectors, task.truncation, fmt)
            size = engine.plan.frame_size
            with segment_writer(path, size, task.fps, task.video, fmt) as writer:

                def write(batch: np.ndarray) -> None:
                    writer.write(batch)
                    if on_frames is not None:
                        on_frames(len(batch))

                overlapped(frames, write)
                written = writer.frames_written
            if written != n:
                raise RuntimeError(f"segment {task.key}: encoded {written} frames, expected {n}")
            if task.path is None:
                data = path.read_bytes()
        return SegmentDone(
            key=task.key,
            frames=n,
            seconds=time.perf_counter() - t0,
            providers=providers,
            node=self.node(),
            pid=os.getpid(),
            data=data,
        )

    def pid(self) -> int:
        return os.getpid()


# ---------------------------------------------------------------------------------------
# Local processes


class LocalPool:
    """``workers`` local processes (spawned), each with its own generator and encoder.

    The workers share this machine's disk: they write segment files in place (``local``).
    They live and die with this process (:mod:`dmv_fast.render.processes`): they ignore a
    terminal's Ctrl-C, stop at once when the render stops, end when this process ends
    (SIGKILL included), and a segment whose worker died is rendered again on a fresh one.

    Args:
        model: what each process builds its session from, once.
        workers: number of processes, >= 1.
        on_frames: called on this process with the frame count of every batch any worker
            encodes (for progress over all workers; negative for the frames of a segment
            whose worker died, which is rendered again).
    """

    local = True

    def __init__(
        self,
        model: WorkerModel,
        workers: int,
        on_frames: Callable[[int], None] | None = None,
    ) -> None:
        self.workers = int_in("workers", workers, 1, MAX_WORKERS)
        self.model = model
        self._pool = ProcessPool(
            SegmentWorker, (model,), self.workers, on_frames=on_frames, what="segment"
        )

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return self._pool.pids

    def run(self, tasks: Iterable[SegmentTask]) -> Iterator[SegmentDone]:
        """Render every task; yield each result as it finishes (in any order).

        Raises:
            RuntimeError: a segment's worker died more than
                :data:`~dmv_fast.render.processes.MAX_RETRIES` times. The exception of a
                failed task is re-raised.
        """
        return self._pool.run(tasks)

    def close(self) -> None:
        """Stop the processes at once (a segment being rendered is abandoned)."""
        self._pool.close()

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
