"""See before you render: the plot of a song's vectors, and a preview sheet of chosen frames.

:func:`plot_song` runs the analysis and the trajectory kernels only (no model, no torch) and
draws :mod:`dmv_fast.preview.figure`'s plot. :func:`preview_song` makes a few frames with what
a render would use (the same plan, graph, vectors and truncation statistics: frame ``k`` of
the preview is frame ``k`` of the video), tiles them into a contact sheet
(:mod:`dmv_fast.preview.sheet`) and writes the record a render writes beside its video
(:mod:`dmv_fast.render.record`), so that ``--seed``, ``--use_previous_classes`` or
``--use_previous_vectors`` then render exactly the previewed frames.

Both take the render's :class:`~dmv_fast.settings.options.RenderOptions`; its
``output_file`` is the video the preview is for (the record goes beside it, and
``use_previous_*`` read the record there). :func:`video_for` names it from an image's name:
``S.preview.png`` and ``S.plot.png`` are for ``S.mp4``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.audio.decode import probe_audio
from dmv_fast.files import atomic_write, publish, temporary
from dmv_fast.preview.figure import (
    PlotData,
    draw,
    figure_bytes,
    plot_data,
    plot_format,
    require_matplotlib,
)
from dmv_fast.preview.sheet import image_bytes, tile, time_label
from dmv_fast.render.engine import Engine, ProgressCallback, no_progress
from dmv_fast.render.job import SongJob, prepare
from dmv_fast.render.preflight import check_output
from dmv_fast.render.record import stage_record
from dmv_fast.settings.choices import MAX_PREVIEW_FRAMES, PREVIEW_FRAMES, SHEET_FORMATS, is_real
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.plan import Plan
from dmv_fast.settings.spec import ModelSpec

logger = logging.getLogger("dmv_fast")

#: Name parts that mark an image as made for a video: ``S.preview.png`` is for ``S.mp4``.
_IMAGE_KINDS = (".preview", ".plot")


def video_for(image: str | os.PathLike[str], suffix: str = ".mp4") -> Path:
    """The video an image is for: ``S.preview.png``, ``S.plot.png`` and ``S.png`` -> ``S.mp4``."""
    path = Path(image)
    stem = path.stem if path.suffix else path.name
    for kind in _IMAGE_KINDS:
        if stem.endswith(kind) and len(stem) > len(kind):
            stem = stem[: -len(kind)]
            break
    return path.with_name(stem + suffix)


# The plot ----------------------------------------------------------------------------------


@dataclass
class SongPlot:
    """The plot of a song's vectors: its data, the matplotlib figure, and where it went.

    In a notebook the object shows as the PNG of its figure.
    """

    data: PlotData
    figure: Any
    path: Path | None
    seed: int
    timings: dict[str, float] = field(default_factory=dict)

    def _repr_png_(self) -> bytes:
        return figure_bytes(self.figure, "png")


def plot_song(
    options: RenderOptions,
    output: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> SongPlot:
    """Analyse the song, compute its vectors as a render would, and draw their plot.

    No model runs: seconds for a whole song.

    Args:
        options: the render's settings (those that shape the vectors are used; with
            ``use_previous_*`` the record beside ``options.output_file`` is read).
        output: a ``.png`` or ``.svg`` file to write, or None (the figure only).
        overwrite: replace an existing ``output``.
        progress: ``progress("analysis", done, total)``.

    Raises:
        RuntimeError: matplotlib (the ``plot`` extra) is not installed.
        ValueError: a bad song, output or record; FileExistsError: ``output`` exists.
    """
    require_matplotlib()
    fmt = None
    if output is not None:  # everything cheap first
        fmt = plot_format(output)
        check_output(Path(output), overwrite, Path(options.song))
    probe_audio(options.song)
    timings: dict[str, float] = {}
    job = prepare(options, progress=progress or no_progress)
    timings.update(job.timings)
    t0 = time.perf_counter()
    data = plot_data(job.features, job.vectors, job.options)
    figure = draw(data)
    path = None
    if output is not None and fmt is not None:
        path = atomic_write(output, figure_bytes(figure, fmt), overwrite=overwrite)
    timings["plot"] = time.perf_counter() - t0
    return SongPlot(data=data, figure=figure, path=path, seed=job.vectors.seed, timings=timings)


# The preview sheet -------------------------------------------------------------------------


@dataclass
class PreviewResult:
    """What a preview made: the frames a render would make at the chosen times.

    Attributes:
        frames: ``np.ndarray [shape=(n, H, W, 3)]`` uint8 RGB, at the plan's frame size.
        indices: the video frame of each (frame ``k`` starts at ``k / fps`` seconds).
        times: ``k / fps`` of each, in seconds.
        image: the contact sheet (a ``PIL.Image.Image``).
        sheet: where the sheet went (None when not written).
        record: the record beside the video (``NAME.dmv.npz``), or None.
        seed, classes: the seed of the random draws and the classes in pitch-rank order.
        plan: the plan that made the frames (:meth:`Plan.to_dict`).
        timings: seconds of ``analysis``, ``vectors``, ``load`` (the graph: exported on
            first use, then loaded) and ``generate``.
    """

    frames: np.ndarray
    indices: tuple[int, ...]
    times: tuple[float, ...]
    image: Any
    sheet: Path | None
    record: Path | None
    seed: int
    classes: tuple[int, ...]
    plan: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def _repr_png_(self) -> bytes:
        return image_bytes(self.image)


def check_picks(frames: int | None, at: Sequence[float] | None) -> tuple[int, list[float] | None]:
    """The preview's choice of frames: a count spread over the song, or times in seconds.

    Returns:
        ``(count, times)``: ``times`` is None for frames spread evenly.

    Raises:
        ValueError: both or a bad value (a count outside 1..100, a time that is not a
            number >= 0, no times, more than 100).
    """
    if frames is not None and at is not None:
        raise ValueError("give a frame count (--frames) or times (--at), not both")
    if at is None:
        count = PREVIEW_FRAMES if frames is None else frames
        if isinstance(count, bool) or not isinstance(count, int | np.integer):
            raise ValueError(
                f"--frames must be an integer in 1..{MAX_PREVIEW_FRAMES}, got {count!r}"
            )
        if not 1 <= count <= MAX_PREVIEW_FRAMES:
            raise ValueError(f"--frames must be in 1..{MAX_PREVIEW_FRAMES}, got {count}")
        return int(count), None
    times = list(at)
    if not times:
        raise ValueError("--at needs at least one time in seconds")
    if len(times) > MAX_PREVIEW_FRAMES:
        raise ValueError(
            f"--at gives {len(times)} times; a sheet holds at most {MAX_PREVIEW_FRAMES}"
        )
    for t in times:
        if not is_real(t) or t < 0:
            raise ValueError(f"--at times must be seconds >= 0, got {t!r}")
    return len(times), [float(t) for t in times]


def _check_times(times: list[float], length: float, what: str) -> None:
    late = [t for t in times if t > length]
    if late:
        raise ValueError(
            f"--at {late[0]:g} s is past the end of {what} ({length:.2f} s): "
            f"give times in 0..{math.floor(length * 100) / 100:g}"
        )


def pick_frames(n_frames: int, fps: Any, count: int, times: list[float] | None) -> list[int]:
    """Video frames to preview: ``count`` spread evenly over ``0..n_frames - 1`` (first and
    last included), or the frame shown at each of ``times`` (``floor(t * fps)``)."""
    if times is None:
        picks = np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(int)
        return sorted({int(k) for k in picks})
    _check_times(times, n_frames / float(fps), "the video")
    return [min(n_frames - 1, math.floor(t * float(fps) + 1e-9)) for t in times]


def preview_song(
    options: RenderOptions,
    model: ModelSpec | Plan | Engine | None = None,
    *,
    frames: int | None = None,
    at: Sequence[float] | None = None,
    sheet: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> PreviewResult:
    """Make the frames a render would make at a few times, as a labelled contact sheet.

    The frames come from the render's engine: the same plan, the same exported graph, the
    same vectors (``prepare()``) and the same truncation statistics, so they equal the same
    frames of ``render(options)`` (pixels within 1 level: only the batch they ran in differs).
    With ``sheet`` the sheet is written and, beside ``options.output_file`` (the video to
    come), the record a render writes: the next render with ``use_previous_vectors`` (or
    ``use_previous_classes``, or this ``seed``) makes exactly these frames.

    Args:
        options: the render's settings; ``output_file`` is the video the preview is for.
        model: a :class:`ModelSpec`, a resolved :class:`Plan`, or an :class:`Engine` to reuse
            (default ``ModelSpec()``).
        frames: frames spread over the video, first and last included (default 12).
        at: times in seconds instead: the frame shown at each.
        sheet: the ``.png`` to write, or None (frames and image only, no record).
        overwrite: replace an existing sheet, and the record of an existing video.
        progress: ``progress(stage, done, total)``: "analysis", "export", "render".

    Raises:
        ValueError: a bad choice of frames, a time past the end, a bad song or output;
        FileExistsError: the sheet exists, or the video does (its record would change).
    """
    count, times = check_picks(frames, at)
    if isinstance(model, Engine):
        engine = model
        if progress is not None:
            engine.progress = progress
    else:  # the plan is resolved here: a backend this machine cannot run fails now
        engine = Engine(model or ModelSpec(), encoder=options.encoder, progress=progress)
    progress = progress or no_progress
    info = probe_audio(options.song)
    if times is not None and info.duration > 0:  # the header's length; checked again below
        if options.duration is None or options.duration >= info.duration:
            length, what = info.duration, "the song"
        else:
            length, what = options.duration, "the video (--duration)"
        _check_times(times, length + 1 / float(options.fps), what)
    video = Path(options.output_file)
    if sheet is not None:
        suffix = Path(sheet).suffix.lower()
        if suffix not in SHEET_FORMATS:
            raise ValueError(
                f"preview {os.fspath(sheet)!r} must end in {', '.join(SHEET_FORMATS)} "
                f"(got {suffix or 'no suffix'})"
            )
        check_output(Path(sheet), overwrite, Path(options.song))
        if video.exists() and not overwrite:
            raise FileExistsError(
                f"{str(video)!r} exists: the preview would replace its record (pass "
                "--overwrite, or preview under another name)"
            )
        check_output(video, True, Path(options.song))  # its record's folder takes files

    job = prepare(options, progress=progress)
    options = job.options
    timings = dict(job.timings)
    indices = pick_frames(job.n_frames, options.fps, count, times)
    t0 = time.perf_counter()
    _ = engine.generator  # the graph exported (first use) and loaded before frames are counted
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    made: list[np.ndarray] = []
    progress("render", 0, len(indices))
    for batch in engine.frames(job.noise[indices], job.class_vectors[indices], options.truncation):
        made.append(batch)
        progress("render", sum(len(b) for b in made), len(indices))
    pictures = np.concatenate(made)
    timings["generate"] = time.perf_counter() - t0
    fps = float(options.fps)
    seconds = tuple(k / fps for k in indices)
    plan = engine.plan
    height, width = plan.frame_size
    header = " · ".join(
        (
            Path(options.song).name,
            f"seed {job.vectors.seed}",
            f"{width}x{height} px",
            f"truncation {options.truncation:g}",
            f"{float(options.fps):.6g} frames/s",
        )
    )
    image = tile(
        pictures,
        labels=[time_label(t, k) for t, k in zip(seconds, indices, strict=True)],
        header=header,
    )
    written = record = None
    if sheet is not None:
        written, record = _publish(Path(sheet), image, job, plan, overwrite)
    return PreviewResult(
        frames=pictures,
        indices=tuple(indices),
        times=seconds,
        image=image,
        sheet=written,
        record=record,
        seed=job.vectors.seed,
        classes=tuple(job.vectors.classes),
        plan=plan.to_dict(),
        timings=timings,
    )


def _publish(
    sheet: Path, image: Any, job: SongJob, plan: Plan, overwrite: bool
) -> tuple[Path, Path]:
    """The sheet and the record beside the video: both appear, or neither."""
    options = job.options
    staged = stage_record(
        options.output_file, job.vectors, options, job.features, plan=plan.to_dict(), preview=sheet
    )
    with staged, temporary(sheet) as tmp:
        with open(tmp, "xb") as f:
            f.write(image_bytes(image, SHEET_FORMATS[sheet.suffix.lower()]))
        publish(tmp, sheet, overwrite)
        try:
            record = staged.publish()
        except BaseException:
            sheet.unlink(missing_ok=True)
            raise
    return sheet, record
