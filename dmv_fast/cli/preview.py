"""``dmv-fast preview``: a contact sheet of the frames a render would make, in seconds."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated

import typer

from dmv_fast.cli import params
from dmv_fast.cli.terminal import ProgressBars, one_line_errors, setup_logging
from dmv_fast.settings.choices import MAX_PREVIEW_FRAMES, PREVIEW_FRAMES

logger = logging.getLogger("dmv_fast")

OUTPUT = Path("output.preview.png")


def parse_times(text: str | None) -> list[float] | None:
    """``--at 10,42.5,1:30`` as seconds (``M:SS`` allowed); a malformed list is a usage error."""
    if text is None:
        return None
    times = []
    for part in text.split(","):
        item = part.strip()
        try:
            if ":" in item:
                minutes, _, rest = item.partition(":")
                value = int(minutes) * 60 + float(rest)
            else:
                value = float(item)
        except ValueError:
            raise typer.BadParameter(
                f"{item!r} is not a time: give seconds separated by commas (10,42.5,1:30)",
                param_hint="'--at'",
            ) from None
        if not math.isfinite(value):
            raise typer.BadParameter(f"{item!r} is not a time", param_hint="'--at'")
        times.append(value)
    return times


def preview(
    song: params.Song,
    frames: Annotated[
        int | None,
        typer.Option(
            "--frames",
            help=f"Frames spread over the video, first and last included, 1-{MAX_PREVIEW_FRAMES}"
            f" (default {PREVIEW_FRAMES}).",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Or the frames shown at these times: seconds, comma-separated (10,42.5)."
        ),
    ] = None,
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
    seed: params.Seed = None,
    use_previous_classes: params.UsePreviousClasses = 0,
    use_previous_vectors: params.UsePreviousVectors = 0,
    batch_size: params.BatchSize = params.BATCH_SIZE,
    scaling: params.Scaling = params.SCALING,
    weights: params.Weights = None,
    backend: params.Backend = params.BACKEND,
    precision: params.Precision = params.PRECISION,
    pixels: params.Pixels = params.PIXELS,
    aspect: params.Aspect = None,
    size: params.Size = None,
    fill: params.Fill = params.FILL,
    output_file: Annotated[
        Path,
        typer.Option(
            "--output-file",
            "--output_file",
            "-o",
            help="The sheet (.png). NAME.preview.png is for NAME.mp4: the record goes beside it.",
        ),
    ] = OUTPUT,
    overwrite: params.Overwrite = False,
    quiet: params.Quiet = False,
    verbose: params.Verbose = False,
) -> None:
    """Preview a render: the frames it would make at a few times, as a labelled sheet.

    Same options, same graph, same vectors as `render`: the next `render -o NAME.mp4
    --use_previous_vectors 1` (or --seed) makes exactly these frames.
    """
    from dmv_fast.render.preview import preview_song, video_for

    setup_logging(verbose, quiet)
    times = parse_times(at)  # a malformed list is a usage error (exit 2)
    with one_line_errors("no preview was written", writing=output_file):
        spec = params.model_spec(
            resolution, weights, backend, precision, batch_size, scaling, pixels, aspect, size, fill
        )
        video = video_for(output_file)
        options = params.vector_options(
            song,
            video,
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
            result = preview_song(
                options,
                spec,
                frames=frames,
                at=times,
                sheet=output_file,
                overwrite=overwrite,
                progress=progress,
            )
    logger.info(
        "wrote %s: %d frames from %.2f to %.2f s, seed %d; recorded in %s: "
        "`dmv-fast render --song %s -o %s --use_previous_vectors 1` (or --seed %d with the same "
        "options) makes these frames",
        result.sheet,
        len(result.indices),
        min(result.times),
        max(result.times),
        result.seed,
        result.record,
        song,
        video,
        result.seed,
    )
