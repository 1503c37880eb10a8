"""The frame's shape: aspect ratio, exact output size and fill, and the canvas the generator
paints for them. All sizes are ``(height, width)`` in pixels.

BigGAN-deep paints squares: its first linear layer makes a 4x4 feature map, and every later
layer is a convolution, an up-sampling or a self-attention over the whole map, none of which
cares about the map's shape. So a first map of ``h0 x w0`` cells paints a picture of
``h0 * R/4 x w0 * R/4`` pixels (R the model's resolution): 4x7 cells give 128x224 at 128 px,
256x448 at 256 and 512x896 at 512. How those cells are made from one frame's vectors is the
export's business (:mod:`dmv_fast_export.canvas`); this module only sizes things:

- ``fill="wide"``: the generator paints the whole canvas (the first map widened along the long
  side to the nearest whole number of cells), then the canvas is resampled to the frame;
- ``fill="crop"``: the square picture, centre-cropped to the aspect and scaled to the frame;
- ``fill="pad"``: the square picture scaled to the frame's short side, on a blurred copy of
  itself that covers the frame.

The frame size is ``--size`` exactly (even sides, for yuv420p and NVENC), or from ``--aspect``:
the short side is ``resolution * scaling`` and the long side the nearest even number of pixels
to the aspect. A square frame of the native size is today's render, unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from dmv_fast.settings.choices import (
    FILLS,
    MAX_ASPECT,
    MAX_FRAME_SIDE,
    MIN_FRAME_SIDE,
    choice,
    invalid,
    is_int,
)

#: Cells of the generator's first feature map along each side of a square picture.
BASE_CELLS = 4

_NUMBER = r"\s*(\d+(?:\.\d+)?)\s*"
_ASPECT = re.compile(_NUMBER + r"[:/]" + _NUMBER)
_SIZE = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")


def _round(x: float | Fraction) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return math.floor(x + 0.5)


def parse_aspect(value: Any) -> Fraction:
    """``"16:9"`` (or ``"16/9"``, ``"2.39:1"``) as the width / height ratio.

    Raises:
        ValueError: not two positive numbers, or a ratio outside 1:4 .. 4:1.
    """
    text = str(getattr(value, "value", value))
    match = _ASPECT.fullmatch(text)
    valid = "W:H with two positive numbers (16:9, 9:16, 4:3, 2.39:1)"
    if not isinstance(value, str) or match is None:
        raise invalid("aspect", value, valid)
    width, height = Fraction(match.group(1)), Fraction(match.group(2))
    if width <= 0 or height <= 0:
        raise invalid("aspect", value, valid)
    ratio = width / height
    if not 1 / MAX_ASPECT <= ratio <= MAX_ASPECT:
        raise ValueError(
            f"aspect {text.strip()} is outside 1:{MAX_ASPECT} .. {MAX_ASPECT}:1 "
            f"(the widest canvas the generator paints)"
        )
    return ratio


def format_aspect(ratio: Fraction) -> str:
    """``Fraction(16, 9)`` -> ``"16:9"``."""
    return f"{ratio.numerator}:{ratio.denominator}"


def parse_size(value: Any) -> tuple[int, int]:
    """``"1280x720"`` (width x height, as video sizes are written) as ``(height, width)``.

    Raises:
        ValueError: not ``WxH``, a side under :data:`MIN_FRAME_SIDE` or over
            :data:`MAX_FRAME_SIDE`, an odd side (refused, not rounded: the size is exact), or
            an aspect outside 1:4 .. 4:1.
    """
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise invalid("size", value, "WIDTHxHEIGHT in pixels (1920x1080, 1080x1920, 1280x720)")
    width, height = int(match.group(1)), int(match.group(2))
    text = f"{width}x{height}"
    if min(width, height) < MIN_FRAME_SIDE:
        raise ValueError(
            f"size {text} is too small: each side must be at least {MIN_FRAME_SIDE} pixels"
        )
    if max(width, height) > MAX_FRAME_SIDE:
        raise ValueError(f"size {text} is too large: each side must be at most {MAX_FRAME_SIDE}")
    if width % 2 or height % 2:
        even = f"{width + width % 2}x{height + height % 2}"
        raise ValueError(
            f"size {text} has an odd side: H.264 in yuv420p (and NVENC) needs even sizes, "
            f"so it is refused rather than rounded (use {even})"
        )
    if not 1 / MAX_ASPECT <= Fraction(width, height) <= MAX_ASPECT:
        raise ValueError(
            f"size {text} is outside the aspects 1:{MAX_ASPECT} .. {MAX_ASPECT}:1 "
            f"(the widest canvas the generator paints)"
        )
    return height, width


def format_size(frame: tuple[int, int]) -> str:
    """``(720, 1280)`` -> ``"1280x720"``."""
    return f"{frame[1]}x{frame[0]}"


def even(x: float | Fraction) -> int:
    """The nearest even integer (halves up)."""
    return 2 * _round(x / 2)


def frame_from_aspect(side: int, ratio: Fraction) -> tuple[int, int]:
    """The frame of an aspect: the short side ``side``, the long side to the nearest even pixel."""
    if ratio >= 1:
        return side, even(side * ratio)
    return even(side / ratio), side


@dataclass(frozen=True)
class FrameShape:
    """Where a frame's pixels come from (every size ``(height, width)`` in pixels).

    Attributes:
        resolution: the model's square output side R.
        frame: the video frame.
        fill: ``"wide"``, ``"crop"`` or ``"pad"`` (``"wide"`` for every square frame: there
            all three are the same picture).
        native: what the generator paints before the frame is resampled from it.
        first_map: cells of the generator's first feature map, ``(4, 4)`` unless the fill is
            wide and the frame is not square.
    """

    resolution: int
    frame: tuple[int, int]
    fill: str
    native: tuple[int, int]
    first_map: tuple[int, int]

    @property
    def square(self) -> bool:
        return self.frame[0] == self.frame[1]

    @property
    def resampled(self) -> bool:
        """The frame is not the generator's picture as it is (scaled, cropped or padded)."""
        return self.frame != self.native

    def describe(self) -> str:
        """One line: ``"1280x720 (wide: the generator paints 512x896)"``."""
        what = f"{format_size(self.frame)}"
        if not self.resampled:
            return what
        fill = "" if self.square else f"{self.fill}: "
        return f"{what} ({fill}the generator paints {format_size(self.native)})"


def shape_of(resolution: int, frame: tuple[int, int], fill: str) -> FrameShape:
    """The :class:`FrameShape` of a settled frame size and fill.

    The first map is widened along the frame's long side to the nearest whole number of cells
    (at least 4): 16:9 gives 4x7 cells, 9:16 7x4, 2:1 4x8; the canvas is then resampled to
    the frame (a 16:9 frame at 128 px: 128x224 painted, 128x228 shown, 1.8 % wider).
    """
    fill = choice("fill", fill, FILLS)
    height, width = frame
    if height == width:
        fill = FILLS[0]
    native = (resolution, resolution)
    cells = (BASE_CELLS, BASE_CELLS)
    if fill == "wide" and height != width:
        long_cells = max(BASE_CELLS, _round(BASE_CELLS * max(height, width) / min(height, width)))
        cells = (BASE_CELLS, long_cells) if width > height else (long_cells, BASE_CELLS)
        step = resolution // BASE_CELLS
        native = (cells[0] * step, cells[1] * step)
    return FrameShape(resolution, (height, width), fill, native, cells)


def frame_shape(
    resolution: int,
    aspect: str | None = None,
    size: str | None = None,
    fill: str = "wide",
    scaling: int = 1,
) -> FrameShape:
    """The frame of ``--aspect`` / ``--size`` / ``--fill`` / ``--scaling`` (each checked).

    Args:
        resolution: the model's resolution R.
        aspect: ``"W:H"``; None: 1:1, or the ratio of ``size``.
        size: ``"WxH"`` exactly; None: the short side is ``R * scaling``.
        fill: ``"wide"``, ``"crop"`` or ``"pad"``.
        scaling: integer upscaling of the native picture (1 with ``size``).

    Raises:
        ValueError: a bad value, or ``size`` together with ``scaling`` or with another aspect.
    """
    fill = choice("fill", fill, FILLS)
    ratio = Fraction(1) if aspect is None else parse_aspect(aspect)
    if size is None:
        return shape_of(resolution, frame_from_aspect(resolution * scaling, ratio), fill)
    frame = parse_size(size)
    if scaling != 1:
        raise ValueError(
            f"give size or scaling, not both: size {format_size(frame)} sets the output "
            f"exactly (scaling {scaling})"
        )
    if aspect is not None:
        height, width = frame
        # The size must be the aspect within its even rounding (a pixel per side).
        if abs(width - height * ratio) > 1 and abs(height - width / ratio) > 1:
            raise ValueError(
                f"size {format_size(frame)} is not the aspect {aspect} (give one of them; "
                f"size alone implies its own aspect)"
            )
    return shape_of(resolution, frame, fill)


def check_frame(frame: Any) -> tuple[int, int]:
    """A settled ``(height, width)``: two even integers of at least 2 pixels."""
    if (
        not isinstance(frame, tuple | list)
        or len(frame) != 2
        or not all(is_int(v) and v >= 2 and v % 2 == 0 for v in frame)
    ):
        raise invalid("frame size", frame, "(height, width), two even numbers of pixels")
    return int(frame[0]), int(frame[1])
