"""How frames that are not square are judged: seam visibility and left/right independence.

Every measure works on the frames' *content*: grayscale, less the fixed pattern (the mean
frame of the set: with random weights BigGAN-deep paints a grid of its first map's cells at
the same place in every frame) and less its local mean (a 15-pixel box), so that what is
compared is what differs from frame to frame, at the scale of textures and edges.

- :func:`seam_ratio`: gradient energy (mean ``|dI/dx|`` over frames and rows) within 2 pixels
  of the joins, against elsewhere, or against given reference columns (the same place in the
  generator's cell grid away from any join). 1 means a join is no more visible than the rest.
- :func:`repeat_score`: the best correlation of a frame with itself shifted sideways (lags
  from 16 pixels to all but 32 columns): a tiling or repeat scores near 1.
- :func:`mirror_score`: the best correlation of the columns left of an axis with those right
  of it, reflected (axes anywhere, up to 64 columns a side): a mirror scores near 1.
- :func:`stretch_score`: correlation of the wide frame squeezed to a square with the square
  frame from the same vectors: a stretch scores near 1.

Each of the last three takes ``null=True``: the same measure between two *different* frames
(frame ``i`` against frame ``i + 1``), the level chance alone reaches with the same geometry
and as many tries; a frame whose sides are independent scores near its null.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

#: The box (pixels) whose mean is taken off each pixel.
LOCAL = 15
#: Half-width (pixels) of the columns counted as a join.
JOIN_HALF_WIDTH = 2
#: Columns nearer than this to a join or to a border are not "elsewhere".
MARGIN = 6


def content(frames: np.ndarray) -> np.ndarray:
    """``[N, H, W, 3]`` uint8 -> ``[N, H, W]`` float64: grayscale less the set's mean frame and
    less its local mean (see the module's docstring)."""
    g = frames.astype(np.float64).mean(axis=-1)
    g -= g.mean(axis=0, keepdims=True)
    return g - uniform_filter(g, size=(1, LOCAL, LOCAL), mode="reflect")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def column_energy(frames: np.ndarray) -> np.ndarray:
    """Mean ``|I(x + 1) - I(x)|`` per column gap, ``[W - 1]`` (frames less their mean frame)."""
    g = frames.astype(np.float64).mean(axis=-1)
    g -= g.mean(axis=0, keepdims=True)
    return np.abs(np.diff(g, axis=2)).mean(axis=(0, 1))


def _around(energy: np.ndarray, x: float) -> float:
    c = round(x)
    return float(energy[max(c - JOIN_HALF_WIDTH, 0) : c + JOIN_HALF_WIDTH - 1].mean())


def seam_ratio(
    frames: np.ndarray, joins: list[float], reference: list[float] | None = None
) -> float:
    """Gradient energy at the ``joins`` (pixel columns) over that at ``reference`` columns, or
    (None) over every column at least :data:`MARGIN` pixels from a join and from the borders."""
    energy = column_energy(frames)
    at = float(np.mean([_around(energy, x) for x in joins]))
    if reference:
        return at / float(np.mean([_around(energy, x) for x in reference]))
    mask = np.ones(len(energy), bool)
    mask[:MARGIN] = mask[-MARGIN:] = False
    for x in joins:
        mask[max(round(x) - MARGIN - 1, 0) : round(x) + MARGIN] = False
    return at / float(energy[mask].mean())


def _pairs(c: np.ndarray, null: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    if not null:
        return [(x, x) for x in c]
    return [(c[i], c[(i + 1) % len(c)]) for i in range(len(c))]


def repeat_score(frames: np.ndarray, null: bool = False) -> float:
    """The best mean correlation of frames with themselves shifted sideways (see above)."""
    pairs = _pairs(content(frames), null)
    width = frames.shape[2]
    return max(
        float(np.mean([_corr(a[:, : width - d], b[:, d:]) for a, b in pairs]))
        for d in range(16, width - 31)
    )


def mirror_score(frames: np.ndarray, null: bool = False, reach: int = 64) -> float:
    """The best mean correlation of the columns left of an axis with those right of it,
    reflected, over every axis at least 16 columns from the borders (see above)."""
    pairs = _pairs(content(frames), null)
    width = frames.shape[2]
    best = -1.0
    for axis in range(16, width - 15):
        m = min(axis, width - axis, reach)
        score = np.mean([_corr(a[:, axis - m : axis], b[:, axis : axis + m][:, ::-1])
                         for a, b in pairs])  # fmt: skip
        best = max(best, float(score))
    return best


def stretch_score(frames: np.ndarray, square: np.ndarray, null: bool = False) -> float:
    """Mean correlation of each frame squeezed to ``square``'s size with ``square``'s frame
    from the same vectors (``null``: with the next frame's)."""
    height, width = square.shape[1:3]
    small = np.stack(
        [
            np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BICUBIC))
            for f in frames
        ]
    )
    a, b = content(small), content(square)
    if null:
        b = np.roll(b, -1, axis=0)
    return float(np.mean([_corr(x, y) for x, y in zip(a, b, strict=True)]))


def stretched(square: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """The square frames stretched to ``frame`` (a simple way, for comparison)."""
    height, width = frame
    return np.stack(
        [
            np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.LANCZOS))
            for f in square
        ]
    )


def mirrored(square: np.ndarray, width: int) -> np.ndarray:
    """The square frames widened by their own mirror images on both sides (for comparison)."""
    side = (width - square.shape[2]) // 2
    left = square[:, :, :side][:, :, ::-1]
    right = square[:, :, square.shape[2] - side :][:, :, ::-1]
    return np.concatenate([left, square, right], axis=2)


def tiled(square: np.ndarray, width: int) -> np.ndarray:
    """The square frames followed by a copy of their own left part (for comparison)."""
    return np.concatenate([square, square[:, :, : width - square.shape[2]]], axis=2)
