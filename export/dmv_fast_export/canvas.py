"""The wide canvas: the generator's first feature map for a frame that is not square, made
from the frame's own vectors.

BigGAN-deep's first linear layer (``gen_z``) turns ``[z, embed(y)]`` into a 4x4 map; every
later layer works on a map of any shape. A wide canvas needs a first map of ``4 x L`` cells
(``L x 4`` for a tall one). It is made the way widened and panoramic pictures are made from
generators trained on squares (spatially varying latents, as in ALIS and InfinityGAN,
without their training; or widening the first map, as maua-stylegan2 answers requests for
wide output): several 4x4 maps ("tiles") are laid along the long side and blended where they
overlap, in feature space, before the first convolution:

- tile ``k`` is ``gen_z([z_k, embed(y)])``: the frame's class vector and a noise vector made
  from the frame's own one, ``z_k = cos(a) z + sin(a) S_k z`` with ``S_k`` a fixed signed
  permutation (each unit of ``z_k`` is a unit of ``z`` mixed with another, so ``z_k`` keeps
  the trajectory's range and moves as smoothly as ``z``). The middle tile is the frame's own
  ``z``. Other tiles differ from each other (no repeat) and from ``z`` mirrored (no mirror);
- tiles step by at most 2 cells, so neighbours overlap by 2 cells or more; each cell of the
  canvas is the weighted mean of the tiles that cover it, with weights falling linearly from
  a tile's centre (a partition of unity), so the layout changes smoothly across a join and
  the convolutions that follow paint one scene;
- the conditional BatchNorms keep the frame's own ``[z, embed(y)]`` (one style for the whole
  canvas).

The same vectors always give the same canvas: the permutations come from a fixed seed.
Everything here is NumPy; :mod:`dmv_fast_export.graph` writes it as two MatMuls (the tiles'
noise, the placement) and :func:`first_map_reference` is its yardstick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Cells of one tile (gen_z's square map) along each side.
TILE = 4
#: Tiles overlap by at least this many cells (their step is ``TILE - OVERLAP`` at most).
OVERLAP = 2
#: Angle between a tile's noise vector and the frame's own: 90 degrees is unrelated noise,
#: 0 the frame's own (a repeat). Chosen by ``benchmarks/bench_aspect.py``.
RELATED_DEGREES = 60.0
#: Seed of the fixed signed permutations (changing it changes every wide frame).
PERMUTATION_SEED = 0x5EED_A5
#: A tile's weight falls linearly to 0 at this distance (in cells) from its centre.
FEATHER = 2.5

BLENDS = ("feather", "hard")
NOISES = ("related", "same", "independent")


@dataclass(frozen=True)
class Canvas:
    """How a wide first map is made from a frame's vectors.

    Attributes:
        first_map: ``(h0, w0)`` cells.
        offsets: each tile's first cell along the long side.
        noise_maps: ``np.ndarray [shape=(128, K * 128)]`` float32: ``z @ noise_maps`` gives
            every tile's noise vector side by side.
        placement: ``np.ndarray [shape=(K * 4, L)]`` float32: tile cells (tile-major) to canvas
            cells along the long side; each column sums to 1.
        own: the tile whose noise is the frame's own.
    """

    first_map: tuple[int, int]
    offsets: tuple[int, ...]
    noise_maps: np.ndarray
    placement: np.ndarray
    own: int

    @property
    def wide(self) -> bool:
        """The long side is the width (else the height)."""
        return self.first_map[1] > self.first_map[0]

    @property
    def tiles(self) -> int:
        return len(self.offsets)

    @property
    def length(self) -> int:
        """Cells along the long side."""
        return max(self.first_map)

    def joins(self) -> list[float]:
        """Where one tile takes over from the next, in cells along the long side (the middle
        of their overlap): where a seam would show."""
        return [(a + b + TILE) / 2 for a, b in zip(self.offsets, self.offsets[1:], strict=False)]


def tile_offsets(length: int) -> list[int]:
    """First cells of the tiles along a side of ``length`` cells: ends at both edges, evenly
    spread, stepping by at most ``TILE - OVERLAP``."""
    if length <= TILE:
        return [0]
    count = 1 + math.ceil((length - TILE) / (TILE - OVERLAP))
    step = (length - TILE) / (count - 1)
    return [math.floor(k * step + 0.5) for k in range(count)]


def signed_permutation(rng: np.random.Generator, n: int = 128) -> np.ndarray:
    """A random signed permutation matrix ``[n, n]``: ``z @ m`` reorders z's units and
    flips some of their signs."""
    m = np.zeros((n, n), np.float64)
    m[rng.permutation(n), np.arange(n)] = rng.choice([-1.0, 1.0], size=n)
    return m


def noise_maps(tiles: int, own: int, noise: str = "related", dim: int = 128) -> np.ndarray:
    """``[dim, tiles * dim]``: the tiles' noise vectors from the frame's own, ``z @ maps``.

    ``"related"``: ``cos(a) z + sin(a) S_k z`` (a = :data:`RELATED_DEGREES`); ``"same"``:
    ``z`` for every tile (a repeat, for comparison); ``"independent"``: ``S_k z``.
    """
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {', '.join(NOISES)}, got {noise!r}")
    rng = np.random.default_rng(PERMUTATION_SEED)
    angle = math.radians({"related": RELATED_DEGREES, "same": 0.0, "independent": 90.0}[noise])
    eye = np.eye(dim)
    blocks = []
    for k in range(tiles):
        perm = signed_permutation(rng, dim)  # drawn for every tile, so tiles keep theirs
        blocks.append(eye if k == own else math.cos(angle) * eye + math.sin(angle) * perm)
    return np.concatenate(blocks, axis=1).astype(np.float32)


def placement(length: int, offsets: list[int], blend: str = "feather") -> np.ndarray:
    """``[K * 4, length]``: how much each tile cell gives each canvas cell (columns sum to 1).

    ``"feather"``: weights fall linearly from each tile's centre (:data:`FEATHER`);
    ``"hard"``: each canvas cell from the tile whose centre is nearest (a cut, for comparison).
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    k = len(offsets)
    weights = np.zeros((k, length))
    for t, o in enumerate(offsets):
        for c in range(o, o + TILE):
            distance = abs(c + 0.5 - (o + TILE / 2))
            weights[t, c] = max(0.0, 1.0 - distance / FEATHER)
    if blend == "hard":
        centres = np.array([o + TILE / 2 for o in offsets])
        nearest = np.argmin(np.abs(np.arange(length)[None, :] + 0.5 - centres[:, None]), axis=0)
        weights = (np.arange(k)[:, None] == nearest[None, :]).astype(np.float64)
    weights /= weights.sum(axis=0, keepdims=True)
    out = np.zeros((k * TILE, length))
    for t, o in enumerate(offsets):
        for i in range(TILE):
            out[t * TILE + i, o + i] = weights[t, o + i]
    return out.astype(np.float32)


def make_canvas(
    first_map: tuple[int, int], *, blend: str = "feather", noise: str = "related"
) -> Canvas:
    """The :class:`Canvas` of a first map of ``first_map`` cells (one side 4, the other >= 4).

    ``blend`` and ``noise`` other than the defaults exist to measure the choice against
    (``benchmarks/bench_aspect.py``); renders always use the defaults.
    """
    h0, w0 = first_map
    if min(h0, w0) != TILE or max(h0, w0) < TILE:
        raise ValueError(f"a canvas is {TILE} cells on its short side, got {h0}x{w0}")
    length = max(h0, w0)
    offsets = tile_offsets(length)
    own = len(offsets) // 2
    return Canvas(
        first_map=(h0, w0),
        offsets=tuple(offsets),
        noise_maps=noise_maps(len(offsets), own, noise),
        placement=placement(length, offsets, blend),
        own=own,
    )


def first_map_reference(canvas: Canvas, tiles: np.ndarray) -> np.ndarray:
    """The canvas's first map from its tiles' maps, in NumPy (the graph's yardstick).

    Args:
        tiles: ``np.ndarray [shape=(B, K, C, 4, 4)]``: ``gen_z`` of every tile's condition.

    Returns:
        ``np.ndarray [shape=(B, C, h0, w0)]``.
    """
    b, k, c = tiles.shape[:3]
    if canvas.wide:  # [B, C, 4, K*4] @ [K*4, L]
        cells = tiles.transpose(0, 2, 3, 1, 4).reshape(b, c, TILE, k * TILE)
        return cells @ canvas.placement
    cells = tiles.transpose(0, 2, 1, 3, 4).reshape(b, c, k * TILE, TILE)
    return np.einsum("jl,bcjw->bclw", canvas.placement, cells)
