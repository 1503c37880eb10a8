"""The plot of a song's vectors: what steers every frame of a render, on one time axis.

:func:`plot_data` gathers, per video frame, the curves the trajectory kernels turn into
vectors and what they made of them: the chromagram, the class weights (the columns of the
class vectors a render records), the volume and its rise (the noise drive), the speed of the
noise vector and the jitter factors of the noise units. :func:`draw` lays them out in one
matplotlib figure (made without pyplot: no global state, safe in a library and in threads).
No model is involved.

matplotlib is the optional ``plot`` extra; :func:`require_matplotlib` names it when it is
missing.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dmv_fast.audio.features import AudioFeatures
from dmv_fast.settings.choices import PITCH_NAMES, PLOT_FORMATS, SAMPLE_RATE
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.classes import class_name
from dmv_fast.vectors.trajectory import JITTER_PERIOD, Vectors, draw_random, jitter_factors

#: What to install when matplotlib is missing.
PLOT_EXTRA = "pip install 'dmv-fast[plot]'"
#: The figure's size in inches and its resolution: 1430 x 935 pixels, a laptop screen.
FIGURE_SIZE = (13.0, 8.5)
DPI = 110
#: The settings that shape the vectors, shown under the title (in this order).
KNOBS = (
    "pitch_sensitivity",
    "tempo_sensitivity",
    "smooth_factor",
    "jitter",
    "depth",
    "truncation",
    "num_classes",
)


def require_matplotlib() -> None:
    """Raise a one-line RuntimeError naming the ``plot`` extra when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError(
            f"plots need matplotlib, the optional extra 'plot': {PLOT_EXTRA}"
        ) from None


def plot_format(path: str | os.PathLike[str]) -> str:
    """matplotlib's format name for a plot file (``png`` or ``svg``), from its suffix.

    Raises:
        ValueError: another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise ValueError(
            f"plot {os.fspath(path)!r} must end in one of {', '.join(PLOT_FORMATS)} "
            f"(got {suffix or 'no suffix'})"
        )
    return PLOT_FORMATS[suffix]


@dataclass(frozen=True)
class PlotData:
    """The curves that steer a render, one value per video frame (``F`` frames).

    Attributes:
        song: the song's path.
        fps: the video's frame rate, exactly ``22050 / frame_length``.
        seed: the seed of the random draws (classes, first noise vector, jitter).
        times: ``np.ndarray [shape=(F,)]`` seconds: frame ``k`` starts at ``k / fps``.
        chroma: ``np.ndarray [shape=(12, F)]`` the chromagram, rows C ... B, 0..1.
        classes: the ``K`` ImageNet classes in pitch-rank order.
        class_names: the first name of each class (``"goldfish"``).
        pitches: the pitch (0 = C ... 11 = B) driving each class; empty when unknown.
        class_weights: ``np.ndarray [shape=(F, K)]`` float32: column ``j`` is the class
            vectors' entry ``classes[j]`` (every other entry is 0), as a render records them.
        volume: ``np.ndarray [shape=(F,)]`` the mean mel power, 0..1 (``specm``).
        rise: ``np.ndarray [shape=(F,)]`` its positive slope, 0..1 (``gradm``).
        noise_speed: ``np.ndarray [shape=(F,)]`` float64 how fast the noise vector moves:
            ``|noise[k] - noise[k-1]| * fps`` (Euclidean, per second; 0 for frame 0).
        jitter: ``np.ndarray [shape=(ceil(F / 200), 128)]`` each noise unit's factor in each
            block of 200 frames: 1, or ``1 - jitter`` where the jitter slows it.
        settings: the knobs that shaped the vectors (:data:`KNOBS`), plus ``frame_length``.
    """

    song: str
    fps: Fraction
    seed: int
    times: np.ndarray
    chroma: np.ndarray
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    pitches: tuple[int, ...]
    class_weights: np.ndarray
    volume: np.ndarray
    rise: np.ndarray
    noise_speed: np.ndarray
    jitter: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.times.shape[0])

    @property
    def seconds(self) -> float:
        """The video's length: ``F / fps`` seconds."""
        return self.n_frames / float(self.fps)

    def class_labels(self) -> list[str]:
        """``"goldfish (G#)"``: each class with the pitch that drives it."""
        labels = []
        for j, name in enumerate(self.class_names):
            pitch = f" ({PITCH_NAMES[self.pitches[j]]})" if j < len(self.pitches) else ""
            labels.append(f"{name}{pitch}")
        return labels


def noise_speed(noise: np.ndarray, fps: Fraction | float) -> np.ndarray:
    """``|noise[k] - noise[k-1]| * fps`` per frame (0 for frame 0).

    Args:
        noise: ``np.ndarray [shape=(F, 128)]`` noise vectors.
        fps: frames per second.

    Returns:
        ``np.ndarray [shape=(F,)]`` float64, noise units per second.
    """
    steps = np.diff(np.asarray(noise, dtype=np.float64), axis=0)
    speed = np.zeros(len(noise), dtype=np.float64)
    speed[1:] = np.sqrt(np.sum(steps * steps, axis=1)) * float(fps)
    return speed


def plot_data(features: AudioFeatures, vectors: Vectors, options: RenderOptions) -> PlotData:
    """The plot's curves for the video's frames (all of them, or ``options.duration`` s).

    Args:
        features: the song's features (``features.n_frames`` frames).
        vectors: the whole song's vectors, as a render computes (or reads back) them.
        options: the run's settings (frame length, duration, jitter and the knobs shown).

    Raises:
        ValueError: vectors and features of different lengths.
    """
    if vectors.n_frames != features.n_frames:
        raise ValueError(
            f"vectors have {vectors.n_frames} frames, the song's features {features.n_frames}"
        )
    n = options.video_frames(features.n_frames)
    fps = options.fps
    blocks = -(-n // JITTER_PERIOD)
    draws = draw_random(vectors.seed, features.n_frames)
    settings = {name: getattr(options, name) for name in KNOBS}
    settings["frame_length"] = options.frame_length
    return PlotData(
        song=options.song,
        fps=fps,
        seed=vectors.seed,
        times=np.arange(n, dtype=np.float64) / float(fps),
        chroma=np.asarray(features.chroma[:, :n], dtype=np.float32),
        classes=tuple(vectors.classes),
        class_names=tuple(class_name(c).split(",")[0].strip() for c in vectors.classes),
        pitches=tuple(vectors.pitches),
        class_weights=np.ascontiguousarray(vectors.class_vectors[:n, list(vectors.classes)]),
        volume=np.asarray(features.specm[:n], dtype=np.float64),
        rise=np.asarray(features.gradm[:n], dtype=np.float64),
        noise_speed=noise_speed(vectors.noise[:n], fps),
        jitter=jitter_factors(draws.jitter_uniform[:blocks], options.jitter),
        settings=settings,
    )


def _title(data: PlotData) -> str:
    fl = data.settings.get("frame_length", round(SAMPLE_RATE / data.fps))
    knobs = "   ".join(f"{k} {data.settings[k]:g}" for k in KNOBS if k in data.settings)
    return (
        f"{Path(data.song).name}: {data.seconds:.1f} s at {float(data.fps):.6g} frames/s "
        f"({SAMPLE_RATE}/{fl}), seed {data.seed}\n{knobs}"
    )


def _colors(k: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    order = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3]  # 10 strong hues, then 2 light ones
    return [cmap(order[j % len(order)]) for j in range(k)]


def draw(data: PlotData, *, size: tuple[float, float] = FIGURE_SIZE, dpi: int = DPI) -> Any:
    """The figure: chromagram, class mixture, noise drive and speed, jitter, on one time axis.

    Args:
        data: :func:`plot_data`'s curves.
        size: ``(width, height)`` in inches.
        dpi: pixels per inch of a PNG.

    Returns:
        A ``matplotlib.figure.Figure`` (save it with :func:`figure_bytes`, or show it in a
        notebook).

    Raises:
        RuntimeError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[1.5, 2.6, 1.6, 0.75])
    ax_chroma, ax_classes, ax_drive, ax_jitter = axes
    end = data.seconds
    fig.suptitle(_title(data), fontsize=11)

    ax_chroma.imshow(
        data.chroma,
        aspect="auto",
        origin="lower",
        extent=(0.0, end, -0.5, 11.5),
        cmap="magma",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
    )
    ax_chroma.set_yticks(range(12), PITCH_NAMES, fontsize=7)
    ax_chroma.set_ylabel("pitch")
    ax_chroma.set_title(
        "chromagram: the brightest pitch of each moment is 1; each class below follows one pitch",
        fontsize=9,
        loc="left",
    )

    k = len(data.classes)
    colors = _colors(k)
    stacks = ax_classes.stackplot(
        data.times, data.class_weights.T, colors=colors, labels=data.class_labels(), lw=0
    )
    for poly in stacks:
        poly.set_rasterized(True)  # an SVG keeps its size; the image is the same
    handles, labels = ax_classes.get_legend_handles_labels()
    ax_classes.legend(
        handles[::-1],
        labels[::-1],
        loc="center left",
        bbox_to_anchor=(1.005, 0.5),
        fontsize=8,
        frameon=False,
        title=f"{k} ImageNet class{'es' if k != 1 else ''}\n(driving pitch)",
        title_fontsize=8,
    )
    ax_classes.set_ylabel("class weights\n(stacked)")
    ax_classes.set_ylim(0, max(1e-6, float(data.class_weights.sum(axis=1).max())) * 1.02)
    ax_classes.set_title("class mixture: what the picture is made of", fontsize=9, loc="left")

    ax_drive.fill_between(
        data.times, data.volume, color="#9ecae1", lw=0, label="volume (mean mel power)"
    )
    ax_drive.plot(data.times, data.rise, color="#08519c", lw=0.6, label="rise (volume going up)")
    ax_drive.set_ylim(0, 1.05)
    ax_drive.set_ylabel("noise drive\n(0-1)")
    ax_speed = ax_drive.twinx()
    ax_speed.plot(data.times, data.noise_speed, color="#d62728", lw=0.6, label="noise speed")
    ax_speed.set_ylabel("noise speed\n(|Δz| per s)", color="#d62728")
    ax_speed.tick_params(axis="y", colors="#d62728")
    ax_speed.set_ylim(0, max(1e-6, float(data.noise_speed.max())) * 1.05)
    lines = ax_drive.get_legend_handles_labels()
    speed = ax_speed.get_legend_handles_labels()
    ax_drive.legend(
        lines[0] + speed[0], lines[1] + speed[1], loc="center left", bbox_to_anchor=(1.06, 0.5),
        fontsize=8, frameon=False,
    )  # fmt: skip
    ax_drive.set_title("motion: volume and its rise push the noise vector", fontsize=9, loc="left")

    jitter = data.settings.get("jitter")
    blocks = len(data.jitter)
    ax_jitter.imshow(
        data.jitter.T,
        aspect="auto",
        origin="lower",
        extent=(0.0, blocks * JITTER_PERIOD / float(data.fps), 0, data.jitter.shape[1]),
        cmap="Greys_r",
        vmin=0.0,
        vmax=1.0,
        interpolation="nearest",
    )
    ax_jitter.set_ylabel("noise unit")
    what = f"1 - jitter = {1 - jitter:g}" if jitter is not None else "1 - jitter"
    ax_jitter.set_title(
        f"jitter: dark units move at {what} of the speed, redrawn every {JITTER_PERIOD} frames",
        fontsize=9,
        loc="left",
    )
    ax_jitter.set_xlabel("time (s)")
    ax_jitter.set_xlim(0.0, end)
    return fig


def figure_bytes(fig: Any, fmt: str = "png") -> bytes:
    """The figure as a ``png`` or ``svg`` file's bytes.

    An SVG keeps its text as text (searchable, editable, a third of the size) and carries no
    creation date, so the same song and settings give the same file.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not hasattr(fig.canvas, "print_figure"):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    svg = fmt == "svg"
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "dmv-fast"}):
        fig.savefig(buffer, format=fmt, dpi=fig.dpi, metadata={"Date": None} if svg else {})
    return buffer.getvalue()
