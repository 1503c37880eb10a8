"""``dmv-fast batch``: many songs, the same settings, the same segment workers.

Each song becomes ``OUT_DIR/<song name>.mp4``; the songs' segments go to one pool of workers
(local processes, or Ray actors with ``--ray``), so the model sessions are built once for
the whole batch. The same command again skips the videos already there whose record says
they were made with the same settings, and resumes the rest; ``--overwrite`` renders every
song again. ``OUT_DIR`` is created for the run, and removed again if the run wrote nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import ProgressBars, one_line_errors, setup_logging
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.plan import Plan, resolve

logger = logging.getLogger("dmv_fast")


def batch(
    songs: Annotated[
        list[Path],
        typer.Argument(help="Audio files (mp3, wav, ogg, flac, ...).", show_default=False),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Folder for the videos (created if missing).")
    ],
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Segment workers: local processes, or Ray actors with --ray "
            "(default: what the model needs locally, every actor the cluster holds on Ray).",
        ),
    ] = None,
    ray: params.Ray = None,
    resolution: params.Resolution = params.RESOLUTION,
    weights: params.Weights = None,
    backend: params.Backend = params.BACKEND,
    precision: params.Precision = params.PRECISION,
    batch_size: params.BatchSize = params.BATCH_SIZE,
    scaling: params.Scaling = params.SCALING,
    pixels: params.Pixels = params.PIXELS,
    aspect: params.Aspect = None,
    size: params.Size = None,
    fill: params.Fill = params.FILL,
    frame_length: params.FrameLength = params.FRAME_LENGTH,
    pitch_sensitivity: params.PitchSensitivity = params.PITCH_SENSITIVITY,
    tempo_sensitivity: params.TempoSensitivity = params.TEMPO_SENSITIVITY,
    depth: params.Depth = params.DEPTH,
    jitter: params.Jitter = params.JITTER,
    truncation: params.Truncation = params.TRUNCATION,
    smooth_factor: params.SmoothFactor = params.SMOOTH_FACTOR,
    num_classes: params.NumClasses = params.NUM_CLASSES,
    classes: params.Classes = None,
    seed: Annotated[int | None, typer.Option("--seed", help="One seed for every song.")] = None,
    crf: params.Crf = params.CRF,
    preset: params.Preset = params.PRESET,
    overwrite: params.Overwrite = False,
    quiet: params.Quiet = False,
    verbose: params.Verbose = False,
) -> None:
    """Render several songs with the same settings on the same workers (local or Ray)."""
    from dmv_fast.render.segmented import render_many

    setup_logging(verbose, quiet)
    with one_line_errors("finished segments are kept for a rerun"):
        stems = [song.stem for song in songs]
        dup = sorted({s for s in stems if stems.count(s) > 1})
        if dup:
            raise ValueError(f"songs named {', '.join(dup)} would write the same video")
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out-dir {str(out_dir)!r} is not a folder")
        spec = params.model_spec(
            resolution, weights, backend, precision, batch_size, scaling, pixels, aspect, size, fill
        )
        indices = params.class_indices(classes)
        options = [
            RenderOptions(
                song=str(song),
                output_file=str(out_dir / f"{song.stem}.mp4"),
                frame_length=frame_length,
                pitch_sensitivity=pitch_sensitivity,
                tempo_sensitivity=tempo_sensitivity,
                depth=depth,
                jitter=jitter,
                truncation=truncation,
                smooth_factor=smooth_factor,
                num_classes=num_classes,
                classes=indices,
                seed=seed,
                encoder="x264",
                crf=crf,
                preset=params.value(preset),
            )
            for song in songs
        ]
        if not overwrite:
            options = _not_rendered(options, resolve(spec, encoder="x264", workers=workers))
        if not options:
            logger.info("every song is already in %s", out_dir)
            return
        created = _create(out_dir)
        try:
            with ProgressBars(enabled=not quiet) as progress:
                results = render_many(
                    options,
                    spec,
                    workers=workers,
                    ray_address=ray,
                    overwrite=overwrite,
                    progress=progress,
                )
        except BaseException:
            for folder in reversed(created):  # only folders this run made, and left empty
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
    for result in results:
        logger.info("wrote %s: %d frames, seed %d", result.output, result.frames, result.seed)


def _not_rendered(options: list[RenderOptions], plan: Plan) -> list[RenderOptions]:
    """The songs still to render: a video already there is skipped when its record says it
    was made with these settings (a rerun of the same command); any other existing video
    stays in the list (and the render refuses to replace it)."""
    from dmv_fast.render.record import differs_from_record

    todo = []
    for opts in options:
        output = Path(opts.output_file)
        if output.exists() and differs_from_record(output, opts, plan.to_dict()) is None:
            logger.info("%s is already rendered with these settings: skipping it", output)
        else:
            todo.append(opts)
    return todo


def _create(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]
