"""Noise and class vectors per video frame (SPEC §3-4): numba kernels beside their reference.

Two implementations of the same algorithm live here:

* :func:`dmv_fast.vectors.reference.reference_trajectory`: the original's way, a per-frame Python loop of NumPy
  operations on 128-unit noise vectors and 1000-entry class vectors. It is the specification
  in code and the yardstick of the tests and benchmarks.
* :func:`kernel_trajectory` (used by :func:`compute_vectors`): numba kernels that work on the
  ``K`` class columns only (every other entry of a class vector is zero in every frame), with
  the same arithmetic in float64.

Where the original divides by zero or indexes an empty array, both define a finite result:

* class normalisation with ``K > 6`` when no class weight is non-zero: ``m = 0``; when the
  weights do not vary (``ptp == 0``): the normalised weights are all 0;
* with ``K <= 6`` when the largest weight is 0: the weights stay 0;
* the "nudge" of step 7 also applies when no weight is non-zero (the standard deviation of an
  empty set counts as 0), so the first class gets ``0.01``;
* ``cv0`` takes column 0 when no chroma column has a non-zero pitch.

Every random draw comes from one ``np.random.Generator`` seeded with the run's seed, in a fixed
order: the 12 candidate classes, the 128 units of ``nv0``, then one row of 128 jitter draws per
200 frames. Later draws never change earlier ones, so a longer song or a longer ``--duration``
only appends vectors.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numba import njit

from dmv_fast.audio.features import AudioFeatures
from dmv_fast.settings.choices import MAX_CLASSES, MAX_SEED, N_IMAGENET, N_PITCHES, NOISE_DIM
from dmv_fast.settings.options import RenderOptions

logger = logging.getLogger("dmv_fast")

JITTER_PERIOD = 200  # frames between jitter redraws (SPEC §4 step 1)
TRUNCNORM_BOUND = 2.0  # nv0 is truncation * truncnorm(-2, 2)
NUDGE_STD = 1e-7  # step 7: below this spread the first class gets +0.01
NUDGE = 0.01


@dataclass(frozen=True)
class Vectors:
    """The inputs of BigGAN for every video frame of the whole song.

    Attributes:
        noise: ``np.ndarray [shape=(F, 128)]`` float32 noise vectors; row ``k`` = video frame
            ``k``, ``F = features.n_frames``.
        class_vectors: ``np.ndarray [shape=(F, 1000)]`` float32 class weights (smoothed).
        classes: the ``K`` ImageNet classes in pitch-rank order: ``classes[j]`` follows the
            ``j``-th strongest pitch.
        seed: the seed of the random draws (drawn when none was given).
        pitches: pitch class (0 = C ... 11 = B) driving each of ``classes``; empty when unknown.
    """

    noise: np.ndarray
    class_vectors: np.ndarray
    classes: tuple[int, ...]
    seed: int
    pitches: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        f = self.noise.shape[0]
        if self.noise.shape != (f, NOISE_DIM) or self.class_vectors.shape != (f, N_IMAGENET):
            raise ValueError(
                f"Vectors need noise (F, {NOISE_DIM}) and class_vectors (F, {N_IMAGENET}), got "
                f"{self.noise.shape} and {self.class_vectors.shape}"
            )

    @property
    def n_frames(self) -> int:
        return int(self.noise.shape[0])


# Random draws -------------------------------------------------------------------------------


def new_seed() -> int:
    """A fresh 63-bit seed from the operating system's entropy."""
    return secrets.randbits(63)


def truncated_normal(gen: np.random.Generator, size: int, bound: float = TRUNCNORM_BOUND):
    """``size`` draws of a standard normal truncated to ``[-bound, bound]``.

    Inverse-CDF sampling: one uniform draw per value, so the generator's stream advances by
    exactly ``size`` doubles.

    Returns:
        ``np.ndarray [shape=(size,)]`` float64.
    """
    nd = NormalDist()
    lo, hi = nd.cdf(-bound), nd.cdf(bound)
    u = gen.random(size)
    return np.array([nd.inv_cdf(lo + x * (hi - lo)) for x in u], dtype=np.float64)


@dataclass(frozen=True)
class RandomDraws:
    """Everything a run draws at random, from one generator in a fixed order."""

    classes: tuple[int, ...]  # 12 distinct candidate classes
    unit_noise: np.ndarray  # [128] truncnorm(-2, 2), not yet scaled by the truncation
    jitter_uniform: np.ndarray  # [ceil(N / 200), 128] uniform draws in [0, 1)


def draw_random(seed: int, n_frames: int) -> RandomDraws:
    """Draw the candidate classes, ``nv0``'s units and the jitter for ``n_frames`` frames."""
    gen = np.random.default_rng(seed)
    classes = tuple(int(c) for c in gen.choice(N_IMAGENET, size=MAX_CLASSES, replace=False))
    unit_noise = truncated_normal(gen, NOISE_DIM)
    n_blocks = -(-n_frames // JITTER_PERIOD)
    jitter_uniform = gen.random((n_blocks, NOISE_DIM))
    return RandomDraws(classes, unit_noise, jitter_uniform)


def jitter_factors(jitter_uniform: np.ndarray, jitter: float) -> np.ndarray:
    """Each unit is 1 with probability 0.5, else ``1 - jitter`` (SPEC §4 step 1).

    Returns:
        ``np.ndarray [shape=(n_blocks, 128)]`` float64, block ``b`` serves frames
        ``200 b .. 200 b + 199``.
    """
    return np.where(jitter_uniform < 0.5, 1.0, 1.0 - float(jitter))


# Setup shared by both implementations -------------------------------------------------------


def first_chroma_column(chroma: np.ndarray) -> int:
    """First frame where any pitch is > 0; 0 when there is none (silence)."""
    active = np.flatnonzero(np.any(chroma > 0, axis=0))
    return int(active[0]) if active.size else 0


def first_class_vector(
    chroma: np.ndarray,
    chromasort: np.ndarray,
    classes: tuple[int, ...],
    *,
    sort_by_power: bool = False,
) -> np.ndarray:
    """``cv0`` of SPEC §3: ``np.ndarray [shape=(1000,)]`` float64, not normalised.

    With 12 classes the original assigns ``cv0`` in chromatic order (``classes[p]`` gets pitch
    ``p``), while every later frame pairs ``classes[j]`` with the ``j``-th strongest pitch
    (visualize.py L299-301). That quirk is kept unless ``sort_by_power`` asks for the
    documented intent ("the first class I list gets the strongest pitch"), where the
    pitch-rank pairing holds from the first frame on. (The original's own
    ``sort_classes_by_power`` reorders the classes in a way that defeats that intent,
    L160-162; it is not reproduced.)
    """
    k = len(classes)
    col = first_chroma_column(chroma)
    cv0 = np.zeros(N_IMAGENET, dtype=np.float64)
    for r in range(k):
        p = int(chromasort[r])
        if k < N_PITCHES or sort_by_power:
            cv0[classes[r]] = chroma[p, col]
        else:
            cv0[classes[p]] = chroma[p, col]
    return cv0


def drive_signal(features: AudioFeatures) -> np.ndarray:
    """``gradm + specm`` per frame (added in the features' own precision, as the original)."""
    return np.asarray(features.gradm + features.specm, dtype=np.float64)


# The numba kernels --------------------------------------------------------------------------


@njit(cache=True)
def noise_kernel(drive, nv0, jitters, ts, truncation):  # pragma: no cover - compiled
    n = drive.shape[0]
    out = np.empty((n, nv0.shape[0]))
    nv = nv0.copy()
    direction = np.empty_like(nv0)
    last = np.zeros_like(nv0)
    for u in range(nv.shape[0]):
        direction[u] = 1.0 if nv0[u] < 0 else -1.0
    upper = 2 * truncation - ts
    lower = -2 * truncation + ts
    for i in range(n):
        out[i] = nv
        noise_step(nv, direction, last, jitters[i // 200], drive[i], ts, upper, lower)
    return out


@njit(cache=True)
def noise_step(nv, direction, last, jit, g, ts, upper, lower):  # pragma: no cover - compiled
    # SPEC §4 steps 2-3 for one frame, in place: the update, its smoothing, the bounce. The
    # offline and the online engines both step the noise through this one function.
    for u in range(nv.shape[0]):
        update = ((ts * g) * direction[u]) * jit[u]
        update = (update + 3 * last[u]) / 4
        last[u] = update
        v = nv[u] + update
        nv[u] = v
        if v >= upper:
            direction[u] = -1.0
        elif v < lower:
            direction[u] = 1.0


@njit(cache=True)
def class_kernel(chroma_ranked, cv0, ps, depth):  # pragma: no cover - compiled
    # chroma_ranked [N, K]: column j = chroma of the j-th strongest pitch. Returns [N+1, K].
    n, k = chroma_ranked.shape
    out = np.empty((n + 1, k))
    cv = cv0.copy()
    out[0] = cv
    new = np.empty(k)
    inv = 1 + 1 / ps
    for i in range(n):
        for j in range(k):
            new[j] = (cv[j] + chroma_ranked[i, j] / ps) / inv
        if k > 6:
            # The other 1000 - K entries are 0 and become m too, so min = m and ptp = max - m.
            m = np.inf
            for j in range(k):
                if new[j] != 0 and new[j] < m:
                    m = new[j]
            if m == np.inf:
                m = 0.0
            top = m
            for j in range(k):
                if new[j] == 0:
                    new[j] = m
                if new[j] > top:
                    top = new[j]
            spread = top - m
            for j in range(k):
                new[j] = (new[j] - m) / spread if spread > 0 else 0.0
        else:
            top = 0.0  # the max over 1000 entries includes the zeros
            for j in range(k):
                if new[j] > top:
                    top = new[j]
            if top > 0:
                for j in range(k):
                    new[j] = new[j] / top
        count = 0
        total = 0.0
        for j in range(k):
            new[j] = new[j] * depth
            if new[j] != 0:
                count += 1
                total += new[j]
        nudge = count == 0
        if count > 0:
            mean = total / count
            var = 0.0
            for j in range(k):
                if new[j] != 0:
                    var += (new[j] - mean) ** 2
            nudge = np.sqrt(var / count) < 1e-7
        if nudge:
            new[0] += 0.01
        for j in range(k):
            cv[j] = new[j]
        out[i + 1] = cv
    return out


@njit(cache=True)
def _smooth_kernel(cv, sf, n_out):  # pragma: no cover - compiled
    length, k = cv.shape
    out = np.empty((n_out, k))
    if sf == 1:
        for r in range(n_out):
            out[r] = cv[r]
        return out
    n_bins = (length + sf - 1) // sf
    means = np.zeros((n_bins, k))
    for c in range(n_bins):
        start = c * sf
        stop = min(length, start + sf)
        for r in range(start, stop):
            for j in range(k):
                means[c, j] += cv[r, j]
        for j in range(k):
            means[c, j] /= stop - start
    for r in range(n_out):
        c = r // sf
        if c < n_bins - 1:
            w = (r - c * sf) / (sf - 1)
            for j in range(k):
                out[r, j] = means[c, j] * (1 - w) + means[c + 1, j] * w
        else:
            for j in range(k):
                out[r, j] = means[n_bins - 1, j]
    return out


def kernel_trajectory_columns(
    drive: np.ndarray,
    chroma: np.ndarray,
    chromasort: np.ndarray,
    classes: tuple[int, ...],
    cv0: np.ndarray,
    nv0: np.ndarray,
    jitters: np.ndarray,
    *,
    tempo_scale: float,
    pitch_scale: float,
    truncation: float,
    depth: float,
    smooth_frames: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The numba kernels; arguments as :func:`dmv_fast.vectors.reference.reference_trajectory`.

    Returns:
        ``(noise [N, 128], weights [N, K])`` float64: column ``j`` of ``weights`` is the class
        vector's entry ``classes[j]`` (every other entry is 0).
    """
    k = len(classes)
    n = len(drive)
    chroma_ranked = np.ascontiguousarray(chroma[np.asarray(chromasort[:k])].T, dtype=np.float64)
    noise = noise_kernel(
        np.ascontiguousarray(drive, dtype=np.float64),
        np.ascontiguousarray(nv0, dtype=np.float64),
        np.ascontiguousarray(jitters, dtype=np.float64),
        float(tempo_scale),
        float(truncation),
    )
    cv0_k = np.ascontiguousarray(cv0[list(classes)], dtype=np.float64)
    weights = class_kernel(chroma_ranked, cv0_k, float(pitch_scale), float(depth))
    return noise, _smooth_kernel(weights, int(smooth_frames), n)


def kernel_trajectory(*args, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The numba kernels with the reference's arguments and full-width result."""
    classes = args[3] if len(args) > 3 else kwargs["classes"]
    noise, weights = kernel_trajectory_columns(*args, **kwargs)
    class_vectors = np.zeros((len(weights), N_IMAGENET))
    class_vectors[:, list(classes)] = weights
    return noise, class_vectors


# The public entry point ---------------------------------------------------------------------


def pick_classes(
    options: RenderOptions, random_classes: tuple[int, ...], classes: tuple[int, ...] | None
) -> tuple[int, ...]:
    """The ``K`` classes of a run: explicit ones, else the options', else the random draw."""
    k = options.num_classes
    chosen = classes if classes is not None else options.classes
    if chosen is None:
        return tuple(random_classes[:k])
    chosen = tuple(int(c) for c in chosen)
    if len(chosen) not in (MAX_CLASSES, k):
        wanted = f"{MAX_CLASSES}" if k == MAX_CLASSES else f"{MAX_CLASSES} or {k}"
        raise ValueError(f"classes: {len(chosen)} given, must be {wanted} (num_classes is {k})")
    for c in chosen:
        if not 0 <= c < N_IMAGENET:
            raise ValueError(f"class index must be in 0..{N_IMAGENET - 1}, got {c}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"classes must be distinct, got {list(chosen)}")
    return chosen[:k]


def compute_vectors(
    features: AudioFeatures,
    options: RenderOptions,
    *,
    seed: int | None = None,
    classes: tuple[int, ...] | None = None,
    nv0: np.ndarray | None = None,
) -> Vectors:
    """Noise and class vectors for every frame of the whole song (SPEC §3-4).

    Vectors are always computed for the whole song: a ``--duration`` run uses a prefix of them,
    which is therefore exactly a prefix of the full-length run.

    Args:
        features: the song's :class:`~dmv_fast.audio.features.AudioFeatures`; its ``frame_length`` must
            equal ``options.frame_length``.
        options: pitch/tempo sensitivity, depth, classes, num_classes, sort_classes_by_power,
            jitter, truncation, smooth_factor are used (validated here, the song is not read).
        seed: seed of the random draws; ``None`` uses ``options.seed``, and when that is
            ``None`` too a fresh seed is drawn and returned in :attr:`Vectors.seed`.
        classes: ImageNet indices in pitch-rank order, overriding ``options.classes`` (12 or
            ``num_classes`` of them); ``None`` uses the options', else 12 random ones.
        nv0: ``np.ndarray [shape=(128,)]`` the first noise vector itself (already scaled by the
            truncation); ``None`` draws ``truncation * truncnorm(-2, 2)``.

    Returns:
        :class:`Vectors` with ``F = features.n_frames`` rows.
    """
    if features.frame_length != options.frame_length:
        raise ValueError(
            f"features were computed with frame_length {features.frame_length}, "
            f"options ask for {options.frame_length}"
        )
    if seed is None:
        seed = options.seed if options.seed is not None else new_seed()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    seed = int(seed)
    n = features.n_frames
    draws = draw_random(seed, n)
    chosen = pick_classes(options, draws.classes, classes)
    if nv0 is None:
        first_noise = options.truncation * draws.unit_noise
    else:
        first_noise = np.asarray(nv0, dtype=np.float64)
        if first_noise.shape != (NOISE_DIM,) or not np.all(np.isfinite(first_noise)):
            raise ValueError(
                f"nv0 must be {NOISE_DIM} finite numbers, got shape {first_noise.shape}"
            )
    chroma = np.asarray(features.chroma)
    chromasort = np.asarray(features.chromasort)
    cv0 = first_class_vector(
        chroma, chromasort, chosen, sort_by_power=options.sort_classes_by_power
    )
    noise, weights = kernel_trajectory_columns(
        drive_signal(features),
        chroma,
        chromasort,
        chosen,
        cv0,
        first_noise,
        jitter_factors(draws.jitter_uniform, options.jitter),
        tempo_scale=options.tempo_scale,
        pitch_scale=options.pitch_scale,
        truncation=options.truncation,
        depth=options.depth,
        smooth_frames=options.smooth_frames,
    )
    class_vectors = np.zeros((n, N_IMAGENET), dtype=np.float32)
    class_vectors[:, list(chosen)] = weights
    logger.debug("vectors: %d frames, seed %d, classes %s", n, seed, chosen)
    return Vectors(
        noise=noise.astype(np.float32),
        class_vectors=class_vectors,
        classes=chosen,
        seed=seed,
        pitches=tuple(int(p) for p in chromasort[: len(chosen)]),
    )
