"""Segmented rendering: many workers on one video, or many videos on the same workers.

The driver (this process) checks everything cheap, analyses each song and computes its
vectors once, cuts the video into segments (:mod:`dmv_fast.video.segments`) and hands the
segments that are not on disk yet to a pool of workers: local processes
(:class:`dmv_fast.render.workers.LocalPool`) or Ray actors (:class:`dmv_fast.render.ray_pool.RayPool`).
When a song's last segment is in, its segments are joined, the song's audio is muxed once,
the record is written and the segments folder is removed. Until then the MP4 does not
exist, and finished segments stay in ``NAME.segments/`` for a rerun of the same command.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.audio.decode import check_decodable
from dmv_fast.audio.track import plan_audio
from dmv_fast.model.cache import ensure_graph
from dmv_fast.model.weights import check_weights
from dmv_fast.render.engine import Engine, ProgressCallback, no_progress
from dmv_fast.render.folders import vectors_identity
from dmv_fast.render.job import RenderResult, SongJob, prepare
from dmv_fast.render.preflight import preflight
from dmv_fast.render.record import plot_path, write_record
from dmv_fast.render.segment_folder import (
    SegmentFolder,
    check_segments_folder,
    segments_folder,
)
from dmv_fast.render.workers import LocalPool, SegmentTask, WorkerModel
from dmv_fast.settings.choices import count_or_none
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.plan import Plan, resolve
from dmv_fast.settings.spec import ModelSpec
from dmv_fast.video.segments import (
    SEGMENT_FRAMES,
    Segment,
    VideoSettings,
    join_segments,
    plan_segments,
)

logger = logging.getLogger("dmv_fast")


@dataclass
class _Job:
    """One song on its way through the workers."""

    song: SongJob
    plan: Plan
    video: VideoSettings
    output: Path
    folder: SegmentFolder
    segments: list[Segment]
    missing: list[Segment]
    timings: dict[str, float] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    left: int = 0

    @property
    def options(self) -> RenderOptions:
        return self.song.options


def _plan_of(model: Any, workers: int | None) -> Plan:
    """The segmented plan of ``model`` (a ModelSpec, a Plan or an Engine): libx264 segments."""
    if isinstance(model, Engine):
        plan = model.plan
    elif isinstance(model, Plan):
        plan = model
    elif model is None or isinstance(model, ModelSpec):
        plan = resolve(model or ModelSpec(), encoder="x264", workers=workers)
    else:
        raise ValueError(f"model must be a ModelSpec, a Plan or a Visualizer; got {model!r}")
    plan = plan.for_segments(workers)
    # On the CPU the workers share the cores: the graph's form follows their thread count.
    return plan if plan.on_gpu else plan.for_threads(_worker_threads(plan))


def _worker_threads(plan: Plan) -> int | None:
    """ONNX Runtime threads of each local worker's session: the cores shared out on the
    CPU, None (the provider's own) on a GPU."""
    return None if plan.on_gpu else max(1, (os.cpu_count() or 1) // plan.workers)


def _check(options: RenderOptions, overwrite: bool) -> None:
    """Everything cheap about one render, before any analysis."""
    if options.use_disk or options.save_only:
        raise ValueError(
            "use_disk/save_only do not combine with segmented rendering "
            "(its segments are already kept on disk and resumed)"
        )
    if options.encoder == "nvenc":
        raise ValueError("segmented rendering encodes with libx264; use encoder x264 or auto")
    preflight(options, overwrite=overwrite)
    plan_audio(Path(options.song))
    check_segments_folder(segments_folder(options.output_file))


def _manifest(
    options: RenderOptions,
    plan: Plan,
    video: VideoSettings,
    segment_frames: int,
    seed: int,
    noise: np.ndarray,
    class_vectors: np.ndarray,
) -> dict[str, Any]:
    """What decides a segment's pixels and bitstream: a rerun reuses segments only if equal."""
    model = {k: v for k, v in plan.to_dict().items() if k not in ("workers", "encoder")}
    return {
        **vectors_identity(options, seed, noise, class_vectors),
        "fps": str(options.fps),
        "segment_frames": segment_frames,
        "video": video.to_dict(),
        "model": model,
    }


def _prepare(options: RenderOptions, plan: Plan, segment_frames: int) -> _Job:
    """Analyse the song, compute its vectors once, and find the segments left to render."""
    output = Path(options.output_file)
    video = VideoSettings(crf=options.crf, preset=options.preset)
    folder = segments_folder(output)
    song = prepare(options, SegmentFolder.read_manifest(folder))
    manifest = _manifest(
        song.options, plan, video, segment_frames, song.vectors.seed, song.noise,
        song.class_vectors,
    )  # fmt: skip
    store = SegmentFolder.open(folder, manifest)
    segments = plan_segments(song.n_frames, segment_frames)
    try:
        missing = store.missing(segments)
    except BaseException:
        store.discard()
        raise
    if len(missing) < len(segments):
        logger.info(
            "%s: %d of %d segments already rendered; rendering the other %d",
            output,
            len(segments) - len(missing),
            len(segments),
            len(missing),
        )
    return _Job(
        song=song,
        plan=plan,
        video=video,
        output=output,
        folder=store,
        segments=segments,
        missing=missing,
        timings=dict(song.timings),
    )


def _prepare_all(songs: Sequence[RenderOptions], plan: Plan, segment_frames: int) -> list[_Job]:
    """:func:`_prepare` every song; on a failure, the folders of the songs prepared so far
    are given up, and removed where they hold no finished segment."""
    jobs: list[_Job] = []
    try:
        for options in songs:
            jobs.append(_prepare(options, plan, segment_frames))
    except BaseException:
        for job in jobs:
            job.folder.discard()
        raise
    return jobs


def _ensure_graph(plan: Plan, progress: ProgressCallback) -> None:
    """Export the generator graph once here, so that workers sharing this machine's cache
    never export it side by side."""
    ensure_graph(plan, progress=lambda done, total: progress("export", done, total))


def _tasks(jobs: Sequence[_Job], local: bool) -> Iterator[SegmentTask]:
    for i, job in enumerate(jobs):
        for seg in job.missing:
            yield SegmentTask(
                key=(i, seg.index),
                noise=job.song.noise[seg.start : seg.stop].copy(),
                class_vectors=job.song.class_vectors[seg.start : seg.stop].copy(),
                truncation=job.options.truncation,
                fps=job.options.fps,
                video=job.video,
                path=str(job.folder.path(seg)) if local else None,
            )


def _finish(job: _Job, keep_segments: bool, overwrite: bool) -> RenderResult:
    t0 = time.perf_counter()
    parts = [(seg, job.folder.path(seg)) for seg in job.segments]
    options = job.options
    job.folder.verify(job.segments)  # every segment is the file its worker finished
    try:
        frames = join_segments(parts, job.output, options.fps, options.song, overwrite=overwrite)
    except FileExistsError:  # another run made this video meanwhile: the segments are no use
        job.folder.remove()
        raise
    job.timings["join"] = time.perf_counter() - t0
    plan = job.plan.to_dict()
    record = write_record(job.output, job.song.vectors, options, job.song.features, plan=plan)
    if keep_segments:
        job.folder.release()
    else:
        job.folder.remove()
    return RenderResult(
        output=job.output,
        frames=frames,
        fps=job.options.fps,
        seed=job.song.vectors.seed,
        classes=tuple(job.song.vectors.classes),
        record=Path(record) if record is not None else job.output.with_suffix(".dmv.npz"),
        providers=job.providers,
        encoder="x264",
        plan=job.plan.to_dict(),
        timings=job.timings,
        plot=plot_path(job.output) if options.plot else None,
    )


def render_many(
    songs: Sequence[RenderOptions],
    model: Any = None,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    segment_frames: int = SEGMENT_FRAMES,
    keep_segments: bool = False,
    pool: Any = None,
) -> list[RenderResult]:
    """Render several songs with the same model settings on the same segment workers.

    Args:
        songs: one :class:`RenderOptions` per song, each with its own ``output_file``.
        model: a :class:`~dmv_fast.settings.spec.ModelSpec`, a resolved
            :class:`~dmv_fast.settings.plan.Plan` or a ``Visualizer`` (its plan): the model every
            worker builds (default: ``ModelSpec()``). Segments encode with libx264.
        workers: local worker processes (default: the plan's ``workers``); with Ray, the
            number of actors (default: as many as the cluster holds).
        ray_address: None for local processes; ``"local"`` for a local Ray instance; else a
            Ray cluster address (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``).
        overwrite: replace existing outputs.
        progress: ``progress(stage, done, total)``; stage ``"render"`` counts frames over all
            workers and songs.
        segment_frames: frames per segment.
        keep_segments: keep ``NAME.segments/`` after the join.
        pool: an open worker pool to use instead of starting one (it is not closed).

    Returns:
        One :class:`RenderResult` per song, in order.

    Raises:
        ValueError: a bad option, song or output, before any analysis.
        RuntimeError: Ray asked for and not installed; a worker failed for good (the
            segments finished so far are kept for a rerun).
    """
    progress = progress or no_progress
    songs = list(songs)
    if not songs:
        raise ValueError("no songs to render")
    workers = count_or_none("workers", workers)
    if ray_address is not None and (not isinstance(ray_address, str) or not ray_address):
        raise ValueError(f"ray_address must be a Ray address or 'local'; got {ray_address!r}")
    if ray_address is not None and pool is None:
        from dmv_fast.render.ray_pool import require_ray

        require_ray()
    outputs = [Path(o.output_file).resolve() for o in songs]
    if len(set(outputs)) != len(outputs):
        raise ValueError("two songs would write the same output file")
    plan = _plan_of(model, workers)
    if ray_address is None:  # on Ray, the weights may be on the actors' machines only
        check_weights(plan.spec.weights, plan.spec.resolution)
    for options in songs:
        _check(options, overwrite)
    if len(songs) > 1:  # a playlist: no song is analysed before every one decodes
        for options in songs:
            check_decodable(options.song)
    plan_segments(1, segment_frames)  # validates segment_frames

    jobs = _prepare_all(songs, plan, segment_frames)
    for job in jobs:
        job.left = len(job.missing)
    total = sum(job.song.n_frames for job in jobs)
    done = [total - sum(seg.frames for job in jobs for seg in job.missing)]
    lock = threading.Lock()

    def add_frames(n: int) -> None:
        with lock:
            done[0] += n
            progress("render", done[0], total)

    results: dict[int, RenderResult] = {}
    todo = [i for i, job in enumerate(jobs) if job.left]
    for i, job in enumerate(jobs):
        if not job.left:
            results[i] = _finish(job, keep_segments, overwrite)
    if todo:
        try:
            _ensure_graph(plan, progress)
        except RuntimeError as e:  # e.g. no torch here to export with
            if ray_address is None:
                raise
            logger.info("the graph is not exported here (%s); the Ray actors will export it", e)
        own = pool is None
        if pool is None:
            pool = _open_pool(plan, workers, ray_address, add_frames)
        try:
            progress("render", done[0], total)
            t0 = time.perf_counter()
            local = pool_is_local(pool)
            per_batch = own and local  # our local workers report every batch
            for result in pool.run(_tasks(jobs, local)):
                i, index = result.key
                job = jobs[i]
                job.folder.finished(job.segments[index], result.data)
                if not per_batch:
                    add_frames(result.frames)
                job.providers = job.providers or list(result.providers)
                job.left -= 1
                logger.debug(
                    "segment %d of %s: %d frames in %.2f s on %s",
                    index,
                    job.output.name,
                    result.frames,
                    result.seconds,
                    result.node,
                )
                if job.left == 0:
                    job.timings["render"] = time.perf_counter() - t0
                    results[i] = _finish(job, keep_segments, overwrite)
        finally:
            if own:
                pool.close()
            for job in jobs:  # a failed song's folder: its segments stay, free for a rerun
                job.folder.release()
    return [results[i] for i in range(len(jobs))]


def pool_is_local(pool: Any) -> bool:
    """Whether a pool's workers share this machine's disk (they write segments in place)."""
    return bool(getattr(pool, "local", False))


def _open_pool(plan: Plan, workers: int | None, ray_address: str | None, add_frames: Any) -> Any:
    if ray_address is not None:
        from dmv_fast.render.ray_pool import RayPool

        return RayPool(plan.spec, address=ray_address, actors=workers)
    # On the CPU the workers share the cores; on a GPU each session takes what it needs.
    threads = _worker_threads(plan)
    logger.info("rendering with %d segment worker%s", plan.workers, "s" * (plan.workers > 1))
    return LocalPool(WorkerModel(plan, threads), plan.workers, on_frames=add_frames)


def render_segmented(
    options: RenderOptions,
    model: Any = None,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    segment_frames: int = SEGMENT_FRAMES,
    keep_segments: bool = False,
) -> RenderResult:
    """Render one song with segment workers; see :func:`render_many` for the arguments.

    The video has the frame count, rate, durations and audio of a one-process render (the
    segments are joined by remuxing, the audio is encoded once); at ``crf`` 0 its decoded
    frames are the same too. An interrupted or failed render
    leaves no MP4 and keeps its finished segments: the same call again renders only the
    missing ones.
    """
    return render_many(
        [options],
        model,
        workers=workers,
        ray_address=ray_address,
        overwrite=overwrite,
        progress=progress,
        segment_frames=segment_frames,
        keep_segments=keep_segments,
    )[0]
