"""The one-process render: analysis -> vectors -> generator -> bounded queue -> encoder.

The generator runs on the calling thread and a helper thread encodes, at most
:data:`~dmv_fast.render.engine.QUEUE_DEPTH` batches behind
(:func:`~dmv_fast.render.engine.overlapped`; ONNX Runtime and the encoders release the GIL),
so inference of batch k+1 overlaps the encoding of batch k and memory stays flat whatever the
song's length. With ``-d`` the frames go to the frames folder first and the video is built
from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dmv_fast.model.weights import check_weights
from dmv_fast.render.engine import Engine, ProgressCallback, overlapped
from dmv_fast.render.folders import FrameStore, frames_folder, frames_manifest
from dmv_fast.render.job import RenderResult, prepare
from dmv_fast.render.preflight import preflight
from dmv_fast.render.record import plot_path, song_sha256, stage_record
from dmv_fast.render.segment_folder import SegmentFolder, check_segments_folder, segments_folder
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.plan import Plan
from dmv_fast.video.writer import VideoWriter

logger = logging.getLogger("dmv_fast")


def render_single(
    engine: Engine, options: RenderOptions, *, overwrite: bool, progress: ProgressCallback
) -> RenderResult:
    """Render ``options.song`` into ``options.output_file`` in this process.

    Everything cheap (the song, the output folder) is checked before the analysis; the MP4
    and its record appear together or not at all.
    """
    plan = engine.plan_for(options.encoder)
    if not options.save_only:  # -s makes no frames: it needs no weights
        check_weights(plan.spec.weights, plan.spec.resolution)
    preflight(options, overwrite=overwrite)  # song and output, before any analysis
    output = Path(options.output_file)
    song_hash = song_sha256(options.song)  # the song's identity in the record and the manifest
    staged = options.use_disk or options.save_only
    folder = frames_folder(output)
    segments = segments_folder(output)
    # A segmented render of this output was interrupted: continue with its seed (its
    # segments are not reused here; the folder goes once this video is in place).
    recorded = FrameStore.read_manifest(folder) if staged else SegmentFolder.read_manifest(segments)
    if not options.save_only:  # the session loads while the song is analysed
        engine.preload()
    try:
        job = prepare(options, recorded, progress)
    except BaseException:
        engine.wait_preload()
        raise
    options = job.options
    timings = dict(job.timings)
    n_frames = job.n_frames
    providers: list[str] = []
    if not options.save_only:  # export and load the graph: the session settles the plan
        providers = list(engine.generator.providers)
        plan = engine.plan_for(options.encoder)
    store = None
    if staged:
        manifest = frames_manifest(options, plan, job.vectors.seed, job.noise, job.class_vectors)
        manifest["song_sha256"] = song_hash
        if options.save_only and recorded is not None and "precision" in recorded:
            # -s makes no frames: the precision is whatever made the frames on disk.
            manifest["precision"] = recorded["precision"]
        store = FrameStore.open(folder, manifest, create=not options.save_only)

    # The video and its record are one result: the record waits under temporary names until
    # the video is in place, and is dropped if the video fails.
    record_args = (output, job.vectors, options, job.features, song_hash)
    with stage_record(*record_args, plan=plan.to_dict()) as staged_record:
        t0 = time.perf_counter()
        if store is None:
            fmt = plan.pixel_format
            batches = engine.frames(job.noise, job.class_vectors, options.truncation, fmt)
            encoder = encode(batches, plan, options, n_frames, output, overwrite, progress,
                             stage="render", pixel_format=fmt)  # fmt: skip
        else:
            if not options.save_only:  # -s: FrameStore.open has checked every frame is there
                start = store.complete_frames()
                if start:
                    logger.info("resuming from frame %d of %d in %s", start, n_frames, folder)
                _make_frames(engine, store, job.noise, job.class_vectors, options.truncation,
                             start, progress)  # fmt: skip
                timings["generate"] = time.perf_counter() - t0
                t0 = time.perf_counter()
            batches = store.iter_batches(0, n_frames, engine.batch_size)
            encoder = encode(batches, plan, options, n_frames, output, overwrite, progress)
        timings["render" if store is None else "encode"] = time.perf_counter() - t0
        try:
            record = staged_record.publish()
        except BaseException:
            output.unlink(missing_ok=True)
            raise
    if not staged:
        _drop_segments(segments)
    return RenderResult(
        output=output,
        frames=n_frames,
        fps=options.fps,
        seed=job.vectors.seed,
        classes=tuple(job.vectors.classes),
        record=record,
        providers=providers,
        encoder=encoder,
        plan=plan.to_dict(),
        timings=timings,
        plot=plot_path(output) if options.plot else None,
    )


def _drop_segments(folder: Path) -> None:
    """Remove the segments of an interrupted segmented render of the same output, now that
    its video is made: only a folder of dmv-fast's own files that no live run holds."""
    if not folder.is_dir():
        return
    try:
        check_segments_folder(folder)
    except ValueError as e:
        logger.info("%s is left: %s", folder, e)
        return
    logger.info("removing %s, the segments of an earlier segmented render", folder)
    SegmentFolder(folder, {}).remove()


def _make_frames(
    engine: Engine,
    store: FrameStore,
    noise: np.ndarray,
    class_vectors: np.ndarray,
    truncation: float,
    start: int,
    progress: ProgressCallback,
) -> None:
    """Generate frames ``start..`` into the frames folder (``-d``), written as they come."""
    n_frames = len(noise)
    done = [start]

    def write(batch: np.ndarray) -> None:
        store.write(done[0], batch)
        done[0] += len(batch)
        progress("render", done[0], n_frames)

    progress("render", start, n_frames)
    overlapped(engine.frames(noise[start:], class_vectors[start:], truncation), write)


def encode(
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
    """Encode ``batches`` (exactly ``n_frames`` frames of the plan's size) with the song's
    audio into ``output``, overlapped with whatever makes the batches; returns the encoder
    that ran.

    ``batches`` hold RGB ``[b, H, W, 3]`` or, for ``pixel_format="yuv420p"``, planes
    ``[b, H * 3 // 2, W]``.
    """
    with VideoWriter(
        output,
        plan.frame_size,
        options.fps,
        audio=options.song,
        encoder=plan.encoder,
        nvenc_fallback=plan.encoder_fallback,
        crf=options.crf,
        preset=options.preset,
        overwrite=overwrite,
        pixel_format=pixel_format,
    ) as writer:

        def write(batch: np.ndarray) -> None:
            writer.write(batch)
            progress(stage, writer.frames_written, n_frames)

        progress(stage, 0, n_frames)
        overlapped(batches, write)
        if writer.frames_written != n_frames:  # internal invariant of the batching
            if writer.frames_written == 0:
                raise RuntimeError("no frames to encode")
            raise RuntimeError(f"wrote {writer.frames_written} frames, expected {n_frames}")
        name = writer.encoder_name
    return name
