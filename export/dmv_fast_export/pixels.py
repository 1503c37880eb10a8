"""Pixel post-processing done inside the graph: 8-bit conversion, Lanczos scaling to the
frame size, crop and pad.

Both follow the original's pipeline exactly (SPEC §5): each frame becomes 8-bit first
(``stretch``: the frame's own min..max over all channels and pixels to 0..255, scipy
``toimage``'s ``uint8(clip((x - min) * 255 / ptp, 0, 255) + 0.5)``; ``fixed``: [-1, 1] to
0..255 with the same rounding), then ``--scaling N`` resizes the 8-bit frame like PIL's
``Image.resize(..., Image.LANCZOS)``: a horizontal pass, an 8-bit intermediate, a vertical
pass, each with PIL's filter, support, normalisation and 22-bit fixed-point coefficients.

Frames of another size or shape (:mod:`dmv_fast.settings.shape`) take the same road, as
matrices: :func:`frame_tail` says which. The generator's picture is resized to the frame
(any factor, each side its own: PIL's ``resize``), for ``crop`` from a centred box of the
frame's aspect (PIL's ``resize(..., box=...)``); ``pad`` puts the square, resized to the
frame's short side, on a background that is the cropped picture blurred (a Gaussian of
:data:`PAD_BLUR` times the short side), computed in float and rounded once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dmv_fast.settings.shape import FrameShape

#: Standard deviation of the pad background's blur, as a fraction of the frame's short side.
PAD_BLUR = 0.05

_LANCZOS_SUPPORT = 3.0
_PRECISION_BITS = 32 - 8 - 2  # PIL's fixed-point precision for 8-bit images


def _lanczos(x: float) -> float:
    if not -_LANCZOS_SUPPORT <= x < _LANCZOS_SUPPORT:
        return 0.0

    def sinc(v: float) -> float:
        if v == 0.0:
            return 1.0
        v *= math.pi
        return math.sin(v) / v

    return sinc(x) * sinc(x / _LANCZOS_SUPPORT)


def lanczos_matrix(
    in_size: int, out_size: int, box: tuple[float, float] | None = None
) -> np.ndarray:
    """PIL's 8-bit Lanczos resampling as a matrix: ``out = floor(M @ in + 0.5)``, clipped.

    Args:
        box: ``(start, stop)`` of the input span to resize (PIL's ``box``, fractional
            allowed); None: the whole input.

    Returns:
        ``np.ndarray [shape=(out_size, in_size)]`` float32: PIL's fixed-point coefficients
        divided by ``2**22`` (exact in float32).
    """
    start, stop = (0.0, float(in_size)) if box is None else box
    # PIL keeps the box in C floats (float32): round it the same way.
    start, stop = float(np.float32(start)), float(np.float32(stop))
    scale = (stop - start) / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    mat = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = start + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        weights = [_lanczos((x + xmin - center + 0.5) / filterscale) for x in range(xmax - xmin)]
        total = sum(weights)
        if total != 0.0:
            weights = [w / total for w in weights]
        mat[xx, xmin:xmax] = weights
    one = float(1 << _PRECISION_BITS)
    # C's (int) cast truncates towards zero after PIL adds +-0.5.
    fixed = np.where(mat < 0, np.trunc(-0.5 + mat * one), np.trunc(0.5 + mat * one))
    return (fixed / one).astype(np.float32)


def lanczos_reference(frames: np.ndarray, scaling: int) -> np.ndarray:
    """NumPy model of the in-graph upscaling (for tests): uint8 ``[B, H, W, 3]`` in and out."""
    _, h, w, _ = frames.shape
    mx = lanczos_matrix(w, w * scaling).astype(np.float64)
    my = lanczos_matrix(h, h * scaling).astype(np.float64)
    x = frames.astype(np.float64)
    t = np.clip(np.floor(np.einsum("bhwc,vw->bhvc", x, mx) + 0.5), 0, 255)
    out = np.clip(np.floor(np.einsum("bhwc,uh->buwc", t, my) + 0.5), 0, 255)
    return out.astype(np.uint8)


# Frames of any size and shape -----------------------------------------------------------------


@dataclass(frozen=True)
class Resize:
    """PIL's two-pass 8-bit Lanczos resize as matrices; a pass PIL skips is None.

    Attributes:
        horizontal: ``[W, w]`` (first pass) or None.
        vertical: ``[H, h]`` (second pass) or None.
    """

    horizontal: np.ndarray | None
    vertical: np.ndarray | None


def resize(
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
) -> Resize:
    """``Image.resize((W, H), LANCZOS, box=box)`` of an ``(h, w)`` picture to ``(H, W)``.

    ``box``: ``(left, top, right, bottom)`` as PIL takes it; None: the whole picture. A pass
    runs when its size changes or the box cuts that side (PIL's rule).
    """
    (h, w), (height, width) = in_size, out_size
    left, top, right, bottom = (0.0, 0.0, float(w), float(h)) if box is None else box
    horizontal = vertical = None
    if width != w or (left, right) != (0, w):
        horizontal = lanczos_matrix(w, width, (left, right))
    if height != h or (top, bottom) != (0, h):
        vertical = lanczos_matrix(h, height, (top, bottom))
    return Resize(horizontal, vertical)


def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """``[size, size]`` Gaussian blur (3 sigma), each row renormalised inside the picture."""
    x = np.arange(size, dtype=np.float64)
    mat = np.exp(-0.5 * ((x[:, None] - x[None, :]) / sigma) ** 2)
    mat[np.abs(x[:, None] - x[None, :]) > 3 * sigma] = 0.0
    return mat / mat.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class FrameTail:
    """From the generator's 8-bit picture ``(h, w)`` to the frame ``(H, W)``.

    Attributes:
        frame: ``(H, W)``.
        main: the resize of the picture (for ``pad``: the square to the short side).
        background: for ``pad``, float ``([H, h], [W, w])``: the blurred cover, else None.
        offset: ``(top, left)`` of ``main``'s picture in the frame (``pad``), else (0, 0).
    """

    frame: tuple[int, int]
    main: Resize
    background: tuple[np.ndarray, np.ndarray] | None = None
    offset: tuple[int, int] = (0, 0)

    @property
    def identity(self) -> bool:
        """The frame is the picture as it is."""
        return self.main.horizontal is None and self.main.vertical is None and not self.background


def _crop_box(native: tuple[int, int], frame: tuple[int, int]) -> tuple[float, ...]:
    """The centred box of the frame's aspect in the picture (left, top, right, bottom)."""
    (h, w), (height, width) = native, frame
    if width * h >= height * w:  # the frame is wider than the picture: keep its width
        keep = w * height / width
        return (0.0, (h - keep) / 2, float(w), (h + keep) / 2)
    keep = h * width / height
    return ((w - keep) / 2, 0.0, (w + keep) / 2, float(h))


def frame_tail(shape: FrameShape) -> FrameTail:
    """The tail that makes ``shape.frame`` from the generator's ``shape.native`` picture."""
    native, frame = shape.native, shape.frame
    if shape.fill != "pad" or shape.square:
        box = _crop_box(native, frame) if shape.fill == "crop" else None
        return FrameTail(frame, resize(native, frame, box))
    height, width = frame
    side = min(height, width)
    left, top, right, bottom = _crop_box(native, frame)
    sigma = PAD_BLUR * side
    cover_v = blur_matrix(height, sigma) @ lanczos_matrix(native[0], height, (top, bottom))
    cover_h = blur_matrix(width, sigma) @ lanczos_matrix(native[1], width, (left, right))
    return FrameTail(
        frame,
        resize(native, (side, side)),
        (cover_v.astype(np.float32), cover_h.astype(np.float32)),
        ((height - side) // 2, (width - side) // 2),
    )


def resize_reference(frames: np.ndarray, r: Resize) -> np.ndarray:
    """NumPy model of the in-graph resize: uint8 ``[B, h, w, 3]`` in, ``[B, H, W, 3]`` out."""
    x = frames.astype(np.float64)
    if r.horizontal is not None:
        x = np.einsum("bhwc,vw->bhvc", x, r.horizontal.astype(np.float64))
        x = np.clip(np.floor(x + 0.5), 0, 255)
    if r.vertical is not None:
        x = np.einsum("bhwc,uh->buwc", x, r.vertical.astype(np.float64))
        x = np.clip(np.floor(x + 0.5), 0, 255)
    return x.astype(np.uint8)


def tail_reference(frames: np.ndarray, tail: FrameTail) -> np.ndarray:
    """NumPy model of the in-graph tail: uint8 ``[B, h, w, 3]`` in, ``[B, H, W, 3]`` out."""
    main = resize_reference(frames, tail.main)
    if tail.background is None:
        return main
    cover_v, cover_h = (m.astype(np.float64) for m in tail.background)
    x = np.einsum("bhwc,vw,uh->buvc", frames.astype(np.float64), cover_h, cover_v)
    out = np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)
    top, left = tail.offset
    out[:, top : top + main.shape[1], left : left + main.shape[2]] = main
    return out
