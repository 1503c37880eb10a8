"""``dmv-fast plot``: the plot of the vectors a render would use (no model, seconds)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import ProgressBars, one_line_errors, setup_logging

logger = logging.getLogger("dmv_fast")

OUTPUT = Path("output.plot.png")


def plot(
    song: params.Song,
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
    seed: params.Seed = None,
    use_previous_classes: params.UsePreviousClasses = 0,
    use_previous_vectors: params.UsePreviousVectors = 0,
    output_file: Annotated[
        Path,
        typer.Option(
            "--output-file",
            "--output_file",
            "-o",
            help="The plot: .png or .svg. NAME.plot.png is the plot for NAME.mp4 (whose "
            "record --use_previous_* read).",
        ),
    ] = OUTPUT,
    overwrite: params.Overwrite = False,
    quiet: params.Quiet = False,
    verbose: params.Verbose = False,
) -> None:
    """Plot what steers a render: chromagram, class mixture, noise drive and speed, jitter.

    Runs the analysis and the vectors only (no model): seconds for a whole song. The same
    options as `render` give the same vectors; the title shows the seed to render them with.
    """
    from dmv_fast.render.preview import plot_song, video_for

    setup_logging(verbose, quiet)
    with one_line_errors("no plot was written", writing=output_file):
        options = params.vector_options(
            song,
            video_for(output_file),
            classes=classes,
            sort_classes_by_power=sort_classes_by_power,
            use_previous_classes=use_previous_classes,
            use_previous_vectors=use_previous_vectors,
            duration=duration,
            pitch_sensitivity=pitch_sensitivity,
            tempo_sensitivity=tempo_sensitivity,
            depth=depth,
            num_classes=num_classes,
            jitter=jitter,
            frame_length=frame_length,
            truncation=truncation,
            smooth_factor=smooth_factor,
            seed=seed,
        )
        with ProgressBars(enabled=not quiet) as progress:
            result = plot_song(options, output_file, overwrite=overwrite, progress=progress)
    data = result.data
    logger.info(
        "wrote %s: %.1f s, %d frames at %s fps, seed %d (render --seed %d gives these vectors)",
        result.path,
        data.seconds,
        data.n_frames,
        f"{float(data.fps):.6g}",
        result.seed,
        result.seed,
    )
