"""Every choice list, default, range and fixed size of dmv-fast, and the checks that use them.

This is the only place they are written down: :class:`~dmv_fast.settings.spec.ModelSpec`,
:class:`~dmv_fast.settings.options.RenderOptions`, the plan and the command line read them
from here, and every other module receives values that were checked against them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

# Fixed sizes (SPEC §1, §3, §4) ------------------------------------------------------------

#: Every analysis runs at this rate, whatever the song's own (librosa's default).
SAMPLE_RATE = 22050
#: Pitch classes of the chromagram; one ImageNet class per pitch at most.
N_PITCHES = 12
MAX_CLASSES = N_PITCHES
#: The chromagram's rows, in order.
PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: ImageNet classes: the length of a class vector.
N_IMAGENET = 1000
#: BigGAN-deep's noise vector length.
NOISE_DIM = 128
MAX_SEED = 2**63 - 1

# Choice lists ------------------------------------------------------------------------------

RESOLUTIONS = (128, 256, 512)
BACKENDS = ("auto", "cpu", "cuda", "tensorrt")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
#: Precisions an exported graph can have (``auto`` is settled by the plan).
GRAPH_PRECISIONS = ("fp32", "fp16", "int8")
#: Precisions that run only on the CPU provider (int8: ONNX Runtime's integer kernels).
CPU_ONLY_PRECISIONS = ("int8",)
ENCODERS = ("auto", "x264", "nvenc")
#: The encoders a plan settles on (``auto`` resolved).
SETTLED_ENCODERS = ENCODERS[1:]
PIXELS = ("stretch", "fixed")
#: How a frame that is not square is filled (dmv_fast.settings.shape): the generator paints
#: the whole canvas, or the square picture is centre-cropped, or padded with a blurred copy.
FILLS = ("wide", "crop", "pad")
PIXEL_FORMATS = ("rgb24", "yuv420p")
#: How an exported graph computes its 3x3 convolutions: ``direct``, or ``winograd`` (the
#: CPU's fp32 graph on CPUs where it was measured faster; the plan decides).
CONV_FORMS = ("direct", "winograd")
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
#: Container format for each accepted output suffix.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: Image formats of the plot of a song's vectors, by suffix (matplotlib's format names).
PLOT_FORMATS = {".png": "png", ".svg": "svg"}
#: Image formats of a preview sheet, by suffix (PIL's format names).
SHEET_FORMATS = {".png": "PNG"}

# Defaults and ranges -----------------------------------------------------------------------

DEFAULT_RESOLUTION = 512
DEFAULT_BATCH = 30
MAX_BATCH = 1024
MAX_SCALING = 8
MAX_WORKERS = 256
#: The widest frame, as width / height (and 1 / it the tallest): 4x16 cells of the first map.
MAX_ASPECT = 4
#: ``--size`` limits per side, in pixels. The largest is the largest square render
#: (512 px x ``--scaling 8``) and H.264's widest level-5.2 frame.
MIN_FRAME_SIDE = 64
MAX_FRAME_SIDE = 4096
MAX_CRF = 51
#: Above this the noise update overflows float32 within a few frames (README: 0.05-0.8).
MAX_TEMPO_SENSITIVITY = 100.0
MAX_DURATION = 7 * 24 * 3600.0
#: Live defaults: the lowest latency on a CPU (batch 1, a small model, 21.5 frames/s).
LIVE_RESOLUTION = 128
LIVE_FRAME_LENGTH = 1024
LIVE_BATCH = 1
LIVE_QUEUE = 2
#: Live input (--stdin, a sound card): the sample rates taken (the lowest the video's audio
#: track resamples from, the highest sound cards use) and the most channels (an MP4's AAC
#: audio carries at most 8 of them, checked when there is one).
LIVE_MIN_RATE = 1000
LIVE_MAX_RATE = 768_000
LIVE_MAX_CHANNELS = 64
#: What a live session takes while it plays (dmv_fast.live.control): the settings of
#: RenderOptions that keep their meaning and ranges, and the performer's own.
LIVE_SETTINGS = (
    "truncation",
    "classes",
    "num_classes",
    "pitch_sensitivity",
    "tempo_sensitivity",
    "depth",
    "jitter",
)
LIVE_ACTIONS = ("freeze", "seed", "next_classes")
#: Seconds over which a change of these settings glides instead of jumping (a jump flashes).
LIVE_GLIDES = ("truncation", "depth")
LIVE_GLIDE_SECONDS = 0.5
#: The window's up/down keys move the truncation by this step, never below the step itself.
LIVE_TRUNCATION_STEP = 0.05
#: Frames waiting in each sink's own queue before that sink drops its own frames: a preview
#: (window, NDI) keeps its latency low, a whole stream (MP4, raw pipe) rides out a busy encoder.
LIVE_SINK_QUEUE = 2
LIVE_STREAM_QUEUE = 16
#: The preview window opens at the frame size times a whole factor, its longer side this long.
LIVE_WINDOW_SIDE = 512
#: OSC: the addresses' prefix, and the host --osc PORT listens on (this machine only).
OSC_PREFIX = "/dmv/"
OSC_HOST = "127.0.0.1"
#: NDI source names longer than this are refused.
NDI_MAX_NAME = 200
#: Bad control messages logged per second; the rest are counted and reported once a second.
LIVE_REJECT_LOG_RATE = 20
#: Frames of a preview sheet: the default count and the most one sheet holds.
PREVIEW_FRAMES = 12
MAX_PREVIEW_FRAMES = 100


# Checks ------------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite real number that is not a bool."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def invalid(name: str, value: Any, valid: str) -> ValueError:
    """The one-line error for a bad setting: its name, the valid range, the value."""
    return ValueError(f"{name} must be {valid}, got {value!r}")


def choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` (a string or a str Enum) if it is one of ``choices``, else ValueError."""
    text = getattr(value, "value", value)
    if text not in choices:
        raise invalid(name, text, "one of " + ", ".join(choices))
    return str(text)


def int_in(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an integer in ``low..high``, else ValueError."""
    if not is_int(value) or not low <= value <= high:
        raise invalid(name, value, f"an integer in {low}..{high}")
    return int(value)


def count_or_none(name: str, value: Any, high: int = MAX_WORKERS) -> int | None:
    """None, or an integer in ``1..high`` (worker and actor counts)."""
    return None if value is None else int_in(name, value, 1, high)


def check_frame_length(frame_length: Any) -> int:
    """``frame_length`` if it is a positive multiple of 64 (the CQT's), else ValueError."""
    if not is_int(frame_length) or frame_length <= 0 or frame_length % 64 or frame_length > 1 << 20:
        raise invalid(
            "frame_length", frame_length, "a positive multiple of 64 (64, 128, ..., 512, ...)"
        )
    return int(frame_length)
