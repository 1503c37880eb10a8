"""The command-line options shared by ``render``, ``batch``, ``live``, ``export``, ``plot`` and
``preview``: declared once here, with their spellings (the original's underscores and
kebab-case), choices and defaults read from :mod:`dmv_fast.settings`.

Each option is an ``Annotated`` type; a command declares ``name: params.Name = params.NAME``.
:func:`model_spec`, :func:`class_indices` and :func:`vector_options` turn parsed values into
settings. The group that shapes the vectors (``Song`` ... ``UsePreviousVectors``) is what
``plot`` and ``preview`` share with ``render``.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dmv_fast.settings import choices
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.plan import CPU_BATCH_CAP
from dmv_fast.settings.spec import ModelSpec


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum for typer from one of the settings' choice lists (defined once, there)."""
    members = {v if v[0].isalpha() else f"r{v}": v for v in values}
    return Enum(name, members, type=str)  # type: ignore[return-value]


BackendChoice = _choices("BackendChoice", choices.BACKENDS)
PrecisionChoice = _choices("PrecisionChoice", choices.PRECISIONS)
EncoderChoice = _choices("EncoderChoice", choices.ENCODERS)
PixelsChoice = _choices("PixelsChoice", choices.PIXELS)
FillChoice = _choices("FillChoice", choices.FILLS)
ResolutionChoice = _choices("ResolutionChoice", tuple(str(r) for r in choices.RESOLUTIONS))
PresetChoice = _choices("PresetChoice", choices.X264_PRESETS)

# Defaults, read from where they are defined.
_OPTIONS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(RenderOptions)}
_SPEC = ModelSpec()
RESOLUTION = ResolutionChoice(str(_SPEC.resolution))
LIVE_RESOLUTION = ResolutionChoice(str(choices.LIVE_RESOLUTION))
BACKEND = BackendChoice(_SPEC.backend)
PRECISION = PrecisionChoice(_SPEC.precision)
ENCODER = EncoderChoice(_OPTIONS["encoder"])
PRESET = PresetChoice(_OPTIONS["preset"])
PIXELS = PixelsChoice(_SPEC.pixels)
FILL = FillChoice(_SPEC.fill)
BATCH_SIZE: int = _SPEC.batch_size
LIVE_BATCH_SIZE = choices.LIVE_BATCH
SCALING: int = _SPEC.scaling
OUTPUT = Path(_OPTIONS["output_file"])
PITCH_SENSITIVITY: float = _OPTIONS["pitch_sensitivity"]
TEMPO_SENSITIVITY: float = _OPTIONS["tempo_sensitivity"]
DEPTH: float = _OPTIONS["depth"]
NUM_CLASSES: int = _OPTIONS["num_classes"]
JITTER: float = _OPTIONS["jitter"]
FRAME_LENGTH: int = _OPTIONS["frame_length"]
LIVE_FRAME_LENGTH = choices.LIVE_FRAME_LENGTH
TRUNCATION: float = _OPTIONS["truncation"]
SMOOTH_FACTOR: float = _OPTIONS["smooth_factor"]
CRF: int = _OPTIONS["crf"]

# The model ---------------------------------------------------------------------------------

Resolution = Annotated[ResolutionChoice, typer.Option("--resolution", help="GAN resolution.")]
Weights = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="biggan-deep-128/256/512, a local folder, or 'random' (default: pretrained).",
    ),
]
Backend = Annotated[BackendChoice, typer.Option("--backend")]
Precision = Annotated[
    PrecisionChoice, typer.Option("--precision", help="int8: CPU only, see the README.")
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        "--batch_size",
        help=(
            f"GAN batch size, 1-{choices.MAX_BATCH} (on the CPU at most {CPU_BATCH_CAP} frames "
            "in flight, shared by its lanes)."
        ),
    ),
]
Scaling = Annotated[
    int, typer.Option("--scaling", help=f"Lanczos upscaling factor, 1-{choices.MAX_SCALING}.")
]
Pixels = Annotated[
    PixelsChoice, typer.Option("--pixels", help="stretch (the original's look) or fixed.")
]
Aspect = Annotated[
    str | None,
    typer.Option(
        "--aspect",
        help="Frame aspect W:H (16:9, 9:16, 4:3, 2.39:1; 1:4 to 4:1); the short side is "
        "resolution x scaling. Default 1:1 (or the ratio of --size).",
        show_default=False,
    ),
]
Size = Annotated[
    str | None,
    typer.Option(
        "--size",
        help=f"Exact frame size WxH (1920x1080; even sides, {choices.MIN_FRAME_SIDE}-"
        f"{choices.MAX_FRAME_SIDE} px), scaled inside the graph; implies the aspect.",
    ),
]
Fill = Annotated[
    FillChoice,
    typer.Option(
        "--fill",
        help="A frame that is not square: wide (the generator paints the whole canvas), "
        "crop (the square, centre-cropped) or pad (the square on a blurred copy of itself).",
    ),
]

# The vectors -------------------------------------------------------------------------------

PitchSensitivity = Annotated[
    float,
    typer.Option("--pitch-sensitivity", "--pitch_sensitivity", help="1-299 (200-295 advised)."),
]
TempoSensitivity = Annotated[
    float,
    typer.Option("--tempo-sensitivity", "--tempo_sensitivity", help="(0, 100] (0.05-0.8 advised)."),
]
Depth = Annotated[float, typer.Option("--depth", help="Max class weight, 0.01-1.")]
Classes = Annotated[
    list[str] | None,
    typer.Option(
        "--classes", help="ImageNet classes by index (0-999) or name: --classes 45 99 goldfish ..."
    ),
]
NumClasses = Annotated[
    int, typer.Option("--num-classes", "--num_classes", help="Classes used, 1-12.")
]
SortClassesByPower = Annotated[
    int,
    typer.Option(
        "--sort-classes-by-power",
        "--sort_classes_by_power",
        min=0,
        max=1,
        help="1: the first class listed gets the strongest pitch.",
    ),
]
Jitter = Annotated[float, typer.Option("--jitter", help="0-1.")]
FrameLength = Annotated[
    int, typer.Option("--frame-length", "--frame_length", help="Audio hop per video frame (x64).")
]
Truncation = Annotated[float, typer.Option("--truncation", help="(0, 1].")]
SmoothFactor = Annotated[
    float, typer.Option("--smooth-factor", "--smooth_factor", help="> 0 (10-30 advised).")
]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed for every random draw.")]
Duration = Annotated[
    float | None, typer.Option("--duration", help="Seconds of video (default: the whole song).")
]

Song = Annotated[Path, typer.Option("--song", help="Audio file (mp3, wav, ogg, flac, ...).")]
UsePreviousClasses = Annotated[
    int,
    typer.Option(
        "--use-previous-classes",
        "--use_previous_classes",
        min=0,
        max=1,
        help="1: reuse the classes recorded next to the output.",
    ),
]
UsePreviousVectors = Annotated[
    int,
    typer.Option(
        "--use-previous-vectors",
        "--use_previous_vectors",
        min=0,
        max=1,
        help="1: reuse the vectors recorded next to the output.",
    ),
]

# The video ---------------------------------------------------------------------------------

Encoder = Annotated[EncoderChoice, typer.Option("--encoder")]
Crf = Annotated[int, typer.Option("--crf", help="x264 quality, 0-51.")]
Preset = Annotated[PresetChoice, typer.Option("--preset", help="x264 preset.")]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", "-y", help="Replace an existing output file.")
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="Segment workers (processes), each with its own generator and x264 encoder; "
        "default: the plan's (1 on the CPU).",
    ),
]
Ray = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Render the segments on Ray actors: a cluster address (auto, HOST:6379, "
        "ray://HOST:10001) or local; a bare --ray means local.",
    ),
]

Plot = Annotated[
    bool,
    typer.Option(
        "--plot", help="Also write NAME.plot.png, the plot of the vectors (the 'plot' extra)."
    ),
]

# The terminal ------------------------------------------------------------------------------

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v")]


def value(choice: Any) -> Any:
    """The plain value of a choice Enum (or the value itself)."""
    return getattr(choice, "value", choice)


def model_spec(
    resolution: Any,
    weights: str | None,
    backend: Any,
    precision: Any,
    batch_size: int,
    scaling: int = 1,
    pixels: Any = "stretch",
    aspect: str | None = None,
    size: str | None = None,
    fill: Any = "wide",
) -> ModelSpec:
    """The :class:`ModelSpec` of the parsed model options (checked there)."""
    return ModelSpec(
        resolution=int(value(resolution)),
        weights=weights,
        backend=value(backend),
        precision=value(precision),
        batch_size=batch_size,
        scaling=scaling,
        pixels=value(pixels),
        aspect=aspect,
        size=size,
        fill=value(fill),
    )


def frame(aspect: str | None, size: str | None, fill: Any) -> dict[str, Any] | None:
    """The frame options as :class:`ModelSpec` fields, or None for the default square."""
    shape = {"aspect": aspect, "size": size}
    if aspect is None and size is None:
        return None
    return {**shape, "fill": value(fill)}


def class_indices(classes: list[str] | None) -> tuple[int, ...] | None:
    """``--classes`` as ImageNet indices (names looked up), or None."""
    if not classes:
        return None
    from dmv_fast.vectors.classes import resolve_classes

    return resolve_classes(classes)


def vector_options(
    song: Path,
    output_file: Path,
    *,
    classes: list[str] | None,
    sort_classes_by_power: int,
    use_previous_classes: int,
    use_previous_vectors: int,
    **values: Any,
) -> RenderOptions:
    """The :class:`RenderOptions` of the parsed vector options (checked there): classes by
    index or name, the original's 0/1 flags as booleans; ``values`` are the other fields
    (``pitch_sensitivity``, ``seed``, ...)."""
    return RenderOptions(
        song=str(song),
        output_file=str(output_file),
        classes=class_indices(classes),
        sort_classes_by_power=bool(sort_classes_by_power),
        use_previous_classes=bool(use_previous_classes),
        use_previous_vectors=bool(use_previous_vectors),
        **values,
    )
