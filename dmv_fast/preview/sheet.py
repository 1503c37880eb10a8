"""Contact sheets: frames tiled into one image, a label under each and a header line.

The preview (:func:`dmv_fast.render.preview.preview_song`) tiles freshly generated frames,
the demo (:func:`dmv_fast.render.demo.contact_sheet`) frames read back from its MP4; both go
through :func:`tile`. Frames may be any ``(height, width)``, square or not.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The sheet's colours: a dark background (frames stand out) and light text.
BACKGROUND = (18, 18, 18)
TEXT = (235, 235, 235)
#: Aimed width / height of a sheet: a landscape screen.
SHEET_ASPECT = 4 / 3


def sheet_columns(count: int, frame_size: tuple[int, int], aspect: float = SHEET_ASPECT) -> int:
    """Columns for ``count`` frames of ``(height, width)`` so the sheet is about ``aspect``.

    12 square frames: 4 columns of 3; 12 frames of 16:9: 3 columns of 4.
    """
    h, w = frame_size
    if count < 1 or h < 1 or w < 1:
        raise ValueError(f"a sheet needs frames, got {count} of {h}x{w}")
    return max(1, min(count, round(math.sqrt(count * aspect * h / w))))


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit(draw: Any, text: str, size: int, width: int) -> tuple[Any, str]:
    """The font (at most ``size``, at least 8) that fits ``text`` in ``width`` pixels; the
    text is cut with an ellipsis when even the smallest does not fit."""
    for s in range(size, 7, -1):
        font = _font(s)
        if draw.textlength(text, font=font) <= width:
            return font, text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return font, text + "…"


def tile(
    frames: Sequence[np.ndarray] | np.ndarray,
    *,
    columns: int | None = None,
    labels: Sequence[str] | None = None,
    header: str | None = None,
    gap: int = 2,
) -> Any:
    """Tile frames into one image, row by row.

    Args:
        frames: ``np.ndarray [shape=(n, H, W, 3)]`` uint8 RGB frames (or a sequence of
            ``[H, W, 3]`` arrays of one size).
        columns: frames per row (default :func:`sheet_columns`).
        labels: one line under each frame (for example its time), or None for none.
        header: one line above the sheet, or None.
        gap: pixels between frames.

    Returns:
        A ``PIL.Image.Image`` in RGB.

    Raises:
        ValueError: no frames, frames of different sizes or not uint8 RGB, or a label count
            that is not the frame count.
    """
    from PIL import Image, ImageDraw

    images = [np.asarray(f) for f in frames]
    if not images:
        raise ValueError("a sheet needs at least one frame")
    h, w = images[0].shape[:2]
    for im in images:
        if im.shape != (h, w, 3) or im.dtype != np.uint8:
            raise ValueError(
                f"sheet frames must be uint8 [H, W, 3] of one size, got {im.dtype} {im.shape}"
                f" beside {(h, w, 3)}"
            )
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} frames")
    cols = columns or sheet_columns(len(images), (h, w))
    rows = -(-len(images) // cols)
    label_size = max(9, min(22, w // 10))
    label_band = label_size + 8 if labels is not None else 0
    cell_h = h + label_band
    width = cols * w + (cols + 1) * gap
    header_size = max(11, min(24, width // 45))
    header_band = header_size + 12 if header else 0
    height = header_band + rows * cell_h + (rows + 1) * gap
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if header:
        font, text = _fit(draw, header, header_size, width - 2 * gap - 8)
        draw.text((gap + 4, header_band // 2), text, fill=TEXT, font=font, anchor="lm")
    for k, im in enumerate(images):
        x = gap + (k % cols) * (w + gap)
        y = header_band + gap + (k // cols) * (cell_h + gap)
        sheet.paste(Image.fromarray(im), (x, y))
        if labels is not None:
            font, text = _fit(draw, labels[k], label_size, w - 4)
            centre = (x + w // 2, y + h + label_band // 2)
            draw.text(centre, text, fill=TEXT, font=font, anchor="mm")
    return sheet


def image_bytes(image: Any, fmt: str = "PNG") -> bytes:
    """A PIL image as the bytes of a ``fmt`` file (PNG by default)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def time_label(seconds: float, frame: int | None = None) -> str:
    """``"1:02.35"`` (minutes past the first), or ``"42.35 s"``; with the frame number."""
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60.0)
        text = f"{int(minutes)}:{rest:05.2f}"
    else:
        text = f"{seconds:.2f} s"
    return text if frame is None else f"{text}  #{frame}"
