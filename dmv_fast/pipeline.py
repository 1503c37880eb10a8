"""The render pipeline: analysis -> trajectories -> generator -> bounded queue -> encoder.

Inference of batch k+1 overlaps the encoding of batch k: the generator runs on the calling
thread (ONNX Runtime releases the GIL) while a worker thread encodes. The queue between them
is bounded, so memory stays flat whatever the song's length.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.models import ensure_graph
from dmv_fast.options import RenderOptions
from dmv_fast.plan import ModelSpec, Plan, resolve

logger = logging.getLogger("dmv_fast")

#: ``progress(stage, done, total)``; stages: "analysis", "export", "render", "encode".
ProgressCallback = Callable[[str, int, int], None]

QUEUE_DEPTH = 3  # batches in flight between the generator and the encoder (>= 2)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class RenderResult:
    """What a render produced and what it used (``plan``: :meth:`Plan.to_dict`, no ``auto``)."""

    output: Path
    frames: int
    fps: Fraction
    seed: int
    classes: tuple[int, ...]
    record: Path
    providers: list[str]
    encoder: str
    plan: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def video_frame_count(n_feature_frames: int, options: RenderOptions) -> int:
    """Frames in the video: every feature frame, or exactly ``--duration`` seconds of them."""
    if options.duration is None:
        return n_feature_frames
    wanted = round(options.duration * options.fps)
    if wanted > n_feature_frames:
        logger.warning(
            "--duration %.3g s is longer than the song (%.3f s): rendering the whole song",
            options.duration,
            n_feature_frames / options.fps,
        )
        return n_feature_frames
    return max(1, wanted)


class Visualizer:
    """Owns the resolved plan and the generator (one ONNX Runtime session): build once,
    render many songs.

    Args:
        model: a :class:`~dmv_fast.plan.ModelSpec`, an already resolved
            :class:`~dmv_fast.plan.Plan`, or a resolution (then ``spec_fields`` are the
            other :class:`ModelSpec` fields: ``weights``, ``backend``, ``precision``,
            ``batch_size``, ``scaling``, ``pixels``).
        encoder: ``"auto"``, ``"x264"`` or ``"nvenc"`` (settled in the plan).
        workers: segment workers (None: the plan's choice).
        threads: intra-op threads on the CPU (None: one per core).
        progress: ``progress(stage, done, total)`` callback.

    The plan is resolved here, once (:func:`dmv_fast.plan.resolve`): an explicit backend or
    encoder the machine cannot run fails now, before any work. The session is built on first
    use; if its providers contradict the plan, the plan is redone once as the CPU plan.
    """

    def __init__(
        self,
        model: ModelSpec | Plan | int | None = None,
        *,
        encoder: str = "auto",
        workers: int | None = None,
        threads: int | None = None,
        progress: ProgressCallback | None = None,
        **spec_fields: Any,
    ) -> None:
        if isinstance(model, Plan | ModelSpec) and spec_fields:
            raise ValueError(
                f"give either a ModelSpec/Plan or model fields, not both ({', '.join(spec_fields)})"
            )
        if isinstance(model, Plan):
            plan = model
        else:
            if isinstance(model, ModelSpec):
                spec = model
            else:
                fields: dict[str, Any] = dict(spec_fields)
                if model is not None:
                    fields["resolution"] = model
                spec = ModelSpec(**fields)
            plan = resolve(spec, encoder=encoder, workers=workers)
        self.plan: Plan = plan
        self.threads = threads
        self._progress = progress or _no_progress
        self._generator: Any = None
        for note in plan.notes:
            logger.debug("plan: %s", note)

    @property
    def spec(self) -> ModelSpec:
        return self.plan.spec

    @property
    def generator(self) -> Any:
        """The :class:`dmv_fast.runtime.Generator`, exported and loaded on first use."""
        if self._generator is None:
            from dmv_fast.runtime import Generator

            def build(plan: Plan) -> Any:
                path = ensure_graph(
                    plan, progress=lambda done, total: self._progress("export", done, total)
                )
                return Generator(path, plan=plan, threads=self.threads)

            gen = build(self.plan)
            if gen.plan.on_gpu != self.plan.on_gpu:  # the session fell to the CPU: redo once
                gen = build(gen.plan)
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
        for start in range(0, len(noise), step):
            yield gen.generate(
                noise[start : start + step],
                class_vectors[start : start + step],
                truncation,
                pixel_format=pixel_format,
            )

    def stream(
        self, options: RenderOptions | None = None, *, queue: int = 2, lookahead: int = 0
    ) -> Any:
        """A :class:`~dmv_fast.live.LiveSession` on this visualizer's warm generator: push
        audio blocks (any size, any rate), pull the newest frame; late frames are dropped.

        Args:
            options: the live settings (frame length, sensitivities, classes, truncation,
                jitter, depth, seed); ``song`` is not read.
            queue: slots in each bounded queue.
            lookahead: frames of class-smoothing look-ahead (each costs one frame of latency).

        Build the visualizer with ``batch_size=1`` for the lowest latency: the session runs
        the graph's batch, padded when fewer frames are pending.
        """
        from dmv_fast.live import LiveSession
        from dmv_fast.online import OnlineTrajectory

        trajectory = OnlineTrajectory(options, lookahead=lookahead)
        batch = min(self.plan.batch_size, queue)
        return LiveSession(self.generator, trajectory, queue=queue, batch=batch)

    def plan_for(self, options: RenderOptions) -> Plan:
        """The plan with the render's encoder settled (the Visualizer's own for ``auto``)."""
        if options.encoder in ("auto", self.plan.encoder):
            return self.plan
        resolved = resolve(self.plan.spec, encoder=options.encoder, workers=self.plan.workers)
        return dataclasses.replace(self.plan, encoder=resolved.encoder)

    def render(
        self,
        options: RenderOptions,
        *,
        overwrite: bool = False,
        workers: int | None = None,
        ray_address: str | None = None,
    ) -> RenderResult:
        """Render ``options.song`` into ``options.output_file``; see :func:`render`.

        With ``workers > 1`` (given, or the plan's on a GPU) or a ``ray_address``, the render
        is cut into segments made by several workers and joined
        (:func:`dmv_fast.segmented.render_segmented`); ``-d``/``-s`` renders stay in one
        process unless workers are asked for explicitly.
        """
        staged = options.use_disk or options.save_only
        segmented = ray_address is not None or (
            (workers or 1) > 1 if workers is not None else self.plan.workers > 1 and not staged
        )
        if segmented:
            from dmv_fast.segmented import render_segmented

            return render_segmented(
                options,
                self,
                workers=workers,
                ray_address=ray_address,
                overwrite=overwrite,
                progress=self._progress,
            )
        return _render(self, options, overwrite=overwrite, progress=self._progress)


def render(
    options: RenderOptions,
    model: ModelSpec | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    visualizer: Visualizer | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
) -> RenderResult:
    """Render a song into an MP4 with its own audio.

    Everything that can be checked cheaply (options, plan, song, output folder) is checked
    before the analysis starts. The MP4 is written to a temporary file beside the destination
    and renamed at the end, so a failure or an interrupt never leaves a truncated video.

    Args:
        options: the per-render settings.
        model: the model settings (default: ``ModelSpec()``, pretrained 512 px); ignored
            when ``visualizer`` is given, which must then have the same spec.
        overwrite: replace an existing output file.
        progress: ``progress(stage, done, total)`` callback.
        visualizer: reuse a model session across renders.
        workers, ray_address: segment workers on this machine, or Ray actors (a cluster
            address, ``"auto"`` or ``"local"``); see :meth:`Visualizer.render`.

    Raises:
        ValueError: a bad setting, song or output; a ``visualizer`` whose model differs from
            ``model``.
    """
    if visualizer is None:
        visualizer = Visualizer(
            model if model is not None else ModelSpec(),
            encoder=options.encoder,
            workers=workers,
            progress=progress,
        )
    elif model is not None and model != visualizer.spec:
        raise ValueError(
            f"the visualizer's model ({visualizer.spec}) is not the one asked for ({model}); "
            "pass one or the other"
        )
    if progress is not None:
        visualizer._progress = progress
    return visualizer.render(options, overwrite=overwrite, workers=workers, ray_address=ray_address)


def _render(
    vis: Visualizer, options: RenderOptions, *, overwrite: bool, progress: ProgressCallback
) -> RenderResult:
    from dmv_fast.audio import analyze
    from dmv_fast.frames import FrameStore, frames_folder, frames_manifest
    from dmv_fast.preflight import preflight
    from dmv_fast.record import read_record, song_sha256, stage_record
    from dmv_fast.trajectory import compute_vectors

    plan = vis.plan_for(options)
    preflight(options, overwrite=overwrite)  # song and output, before any analysis
    output = Path(options.output_file)
    song = Path(options.song)
    song_hash = song_sha256(song)  # the song's identity in the record and the manifest
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    progress("analysis", 0, 1)
    features = analyze(song, options.frame_length)
    progress("analysis", 1, 1)
    timings["analysis"] = time.perf_counter() - t0

    folder = frames_folder(output)
    recorded = None
    if options.use_disk or options.save_only:
        # A rerun without --seed adopts the seed of the frames already on disk.
        recorded = FrameStore.read_manifest(folder)
        if options.seed is None and recorded is not None and recorded.get("seed") is not None:
            options = dataclasses.replace(options, seed=int(recorded["seed"]))

    t0 = time.perf_counter()
    previous_classes = None
    if options.use_previous_vectors:
        vectors = read_record(output, options, features)
    else:
        if options.use_previous_classes:
            previous_classes = read_record(output, options, features).classes
        vectors = compute_vectors(features, options, seed=options.seed, classes=previous_classes)
    timings["vectors"] = time.perf_counter() - t0
    providers: list[str] = []
    n_frames = video_frame_count(features.n_frames, options)
    noise = np.ascontiguousarray(vectors.noise[:n_frames], dtype=np.float32)
    class_vectors = np.ascontiguousarray(vectors.class_vectors[:n_frames], dtype=np.float32)

    if not options.save_only:  # export and load the graph: the session settles the plan
        providers = list(vis.generator.providers)
        plan = dataclasses.replace(vis.plan, encoder=plan.encoder)
    store = None
    if options.use_disk or options.save_only:
        manifest = frames_manifest(options, plan, vectors.seed, noise, class_vectors)
        manifest["song_sha256"] = song_hash
        if options.save_only and recorded is not None and "precision" in recorded:
            # -s makes no frames: the precision is whatever made the frames on disk.
            manifest["precision"] = recorded["precision"]
        store = FrameStore.open(folder, manifest, create=not options.save_only)

    # The video and its record are one result: the record waits under temporary names until
    # the video is in place, and is dropped if the video fails.
    with stage_record(output, vectors, options, features, song_hash, plan=plan.to_dict()) as staged:
        t0 = time.perf_counter()
        if store is None:
            fmt = plan.pixel_format
            encoder = _encode(
                vis.frames(noise, class_vectors, options.truncation, pixel_format=fmt),
                plan,
                options,
                n_frames,
                output,
                overwrite,
                progress,
                stage="render",
                pixel_format=fmt,
            )
        else:
            if not options.save_only:  # -s: FrameStore.open has checked every frame is there
                start = store.complete_frames()
                if start:
                    logger.info("resuming from frame %d of %d in %s", start, n_frames, folder)
                _run_overlapped(
                    vis.frames(noise[start:], class_vectors[start:], options.truncation),
                    lambda i, batch: store.write(start + i, batch),
                    n_frames,
                    start,
                    progress,
                )
                timings["generate"] = time.perf_counter() - t0
                t0 = time.perf_counter()
            encoder = _encode(
                store.iter_batches(0, n_frames, vis.batch_size),
                plan,
                options,
                n_frames,
                output,
                overwrite,
                progress,
            )
        timings["render" if store is None else "encode"] = time.perf_counter() - t0
        try:
            record = staged.publish()
        except BaseException:
            output.unlink(missing_ok=True)
            raise
    return RenderResult(
        output=output,
        frames=n_frames,
        fps=options.fps,
        seed=vectors.seed,
        classes=tuple(vectors.classes),
        record=record,
        providers=providers,
        encoder=encoder,
        plan=plan.to_dict(),
        timings=timings,
    )


def _run_overlapped(
    batches: Iterator[np.ndarray],
    consume: Callable[[int, np.ndarray], None],
    total: int,
    done: int,
    progress: ProgressCallback,
    stage: str = "render",
) -> None:
    """Produce batches on this thread, consume them on a worker, at most QUEUE_DEPTH apart.

    ``consume(offset, batch)`` receives the offset of the batch's first frame relative to the
    first batch. An exception on either side stops both and is raised here.
    """
    q: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(maxsize=QUEUE_DEPTH)
    failure: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                offset, batch = item
                consume(offset, batch)
                progress(stage, done + offset + len(batch), total)
        except BaseException as exc:  # handed to the producer, re-raised there
            failure.append(exc)
            stop.set()
            # Drain so a producer blocked on put() can notice the failure.
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    return

    thread = threading.Thread(target=worker, name="dmv-fast-encoder", daemon=True)
    thread.start()
    offset = 0
    try:
        progress(stage, done, total)
        for batch in batches:
            while not stop.is_set():
                try:
                    q.put((offset, batch), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                break
            offset += len(batch)
    finally:
        # Always let the worker finish what it holds, then end it.
        while thread.is_alive():
            try:
                q.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        thread.join()
    if failure:
        raise failure[0]


def _encode(
    batches: Iterator[np.ndarray],
    plan: Plan,
    options: RenderOptions,
    n_frames: int,
    output: Path,
    overwrite: bool,
    progress: ProgressCallback,
    stage: str = "encode",
    pixel_format: str = "rgb24",
) -> str:
    """Encode ``batches`` (exactly ``n_frames`` frames) with the song's audio into ``output``.

    ``batches`` hold RGB ``[b, H, W, 3]`` or, for ``pixel_format="yuv420p"``, planes
    ``[b, H * 3 // 2, W]``.
    """
    from dmv_fast.encode import VideoWriter

    first = next(batches, None)
    if first is None:
        raise RuntimeError("no frames to encode")
    if pixel_format == "yuv420p":
        height, width = first.shape[1] * 2 // 3, first.shape[2]
    else:
        height, width = first.shape[1:3]
    batches = itertools.chain([first], batches)
    with VideoWriter(
        output,
        width,
        height,
        options.fps,
        audio=options.song,
        encoder=plan.encoder,
        crf=options.crf,
        preset=options.preset,
        overwrite=overwrite,
        pixel_format=pixel_format,
    ) as writer:
        _run_overlapped(
            batches, lambda _i, batch: writer.write(batch), n_frames, 0, progress, stage
        )
        if writer.frames_written != n_frames:  # internal invariant of the batching
            raise RuntimeError(f"wrote {writer.frames_written} frames, expected {n_frames}")
        name = writer.encoder_name
    return name
