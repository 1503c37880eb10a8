"""``dmv-fast render``: a song into a BigGAN-deep music video, with every option of the
original under its original spelling."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import ProgressBars, one_line_errors, setup_logging
from dmv_fast.settings.options import RenderOptions

logger = logging.getLogger("dmv_fast")


def render(
    song: Annotated[Path, typer.Option("--song", help="Audio file (mp3, wav, ogg, flac, ...).")],
    resolution: params.Resolution = params.RESOLUTION,
    duration: params.Duration = None,
    pitch_sensitivity: params.PitchSensitivity = params.PITCH_SENSITIVITY,
    tempo_sensitivity: params.TempoSensitivity = params.TEMPO_SENSITIVITY,
    depth: params.Depth = params.DEPTH,
    classes: params.Classes = None,
    num_classes: params.NumClasses = params.NUM_CLASSES,
    sort_classes_by_power: params.SortClassesByPower = 0,
    jitter: params.Jitter = params.JITTER,
    frame_length: params.FrameLength = params.FRAME_LENGTH,
    truncation: params.Truncation = params.TRUNCATION,
    smooth_factor: params.SmoothFactor = params.SMOOTH_FACTOR,
    batch_size: params.BatchSize = params.BATCH_SIZE,
    use_previous_classes: Annotated[
        int,
        typer.Option(
            "--use-previous-classes",
            "--use_previous_classes",
            min=0,
            max=1,
            help="1: reuse the classes recorded next to the output.",
        ),
    ] = 0,
    use_previous_vectors: Annotated[
        int,
        typer.Option(
            "--use-previous-vectors",
            "--use_previous_vectors",
            min=0,
            max=1,
            help="1: reuse the vectors recorded next to the output.",
        ),
    ] = 0,
    output_file: Annotated[
        Path, typer.Option("--output-file", "--output_file", "-o", help="Output MP4.")
    ] = params.OUTPUT,
    scaling: params.Scaling = params.SCALING,
    use_disk: Annotated[
        bool,
        typer.Option(
            "-d",
            "--use-disk",
            "--use_disk",
            help="Write frames to NAME.frames/ as they are made (resumable); build from it.",
        ),
    ] = False,
    save_only: Annotated[
        bool,
        typer.Option(
            "-s",
            "--save-only",
            "--save_only",
            help="Build the video from an existing NAME.frames/ without generating.",
        ),
    ] = False,
    seed: params.Seed = None,
    plot: params.Plot = False,
    weights: params.Weights = None,
    backend: params.Backend = params.BACKEND,
    precision: params.Precision = params.PRECISION,
    encoder: params.Encoder = params.ENCODER,
    crf: params.Crf = params.CRF,
    preset: params.Preset = params.PRESET,
    pixels: params.Pixels = params.PIXELS,
    aspect: params.Aspect = None,
    size: params.Size = None,
    fill: params.Fill = params.FILL,
    overwrite: params.Overwrite = False,
    workers: params.Workers = None,
    ray: params.Ray = None,
    quiet: params.Quiet = False,
    verbose: params.Verbose = False,
) -> None:
    """Render a song into a BigGAN-deep music video (MP4 with the song's audio)."""
    from dmv_fast.render.api import Visualizer

    setup_logging(verbose, quiet)
    with one_line_errors(writing=output_file):
        spec = params.model_spec(
            resolution, weights, backend, precision, batch_size, scaling, pixels, aspect, size, fill
        )
        options = RenderOptions(
            song=str(song),
            duration=duration,
            pitch_sensitivity=pitch_sensitivity,
            tempo_sensitivity=tempo_sensitivity,
            depth=depth,
            classes=params.class_indices(classes),
            num_classes=num_classes,
            sort_classes_by_power=bool(sort_classes_by_power),
            jitter=jitter,
            frame_length=frame_length,
            truncation=truncation,
            smooth_factor=smooth_factor,
            use_previous_classes=bool(use_previous_classes),
            use_previous_vectors=bool(use_previous_vectors),
            output_file=str(output_file),
            use_disk=use_disk,
            save_only=save_only,
            seed=seed,
            encoder=params.value(encoder),
            crf=crf,
            preset=params.value(preset),
            plot=plot,
        )
        with ProgressBars(enabled=not quiet) as progress:
            vis = Visualizer(spec, encoder=options.encoder, workers=workers, progress=progress)
            result = vis.render(options, overwrite=overwrite, workers=workers, ray_address=ray)
    logger.info(
        "wrote %s: %d frames of %s at %s fps, seed %d, classes %s",
        result.output,
        result.frames,
        spec.shape.describe(),
        f"{float(result.fps):.6g}",
        result.seed,
        " ".join(map(str, result.classes)),
    )
