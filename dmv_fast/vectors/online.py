"""Online trajectories: noise and class vectors from audio blocks as they arrive.

:class:`OnlineTrajectory` takes audio blocks of any size, rate and channel count, averages the
channels, resamples incrementally to 22050 Hz (``soxr.ResampleStream``: the soxr HQ filter of
``librosa.load``) and emits, per hop of ``frame_length`` samples, one noise and one class
vector in the manner of the offline engine (:mod:`dmv_fast.vectors.trajectory`, SPEC §1-4), in
constant memory. Features per hop are NumPy; numba kernels turn them into vectors, and
:func:`dmv_fast.vectors.online_reference.reference_vectors` is the same algorithm as a plain
per-frame loop beside them.

Where it differs from the offline engine (everything else is SPEC §4 as written):

* **Mel power** ``specm``: librosa's centred 2048-point frames (Hann, 128 mels to 8 kHz), so
  the raw values equal the offline ones; a frame needs the 1024 samples after its centre:
  **46 ms of analysis latency**.
* **Normalisation** is causal: a running floor and ceiling that jump to a new extreme and relax
  towards the signal with a half-life (``halflife``, 20 s), instead of the song's min and
  range, so a loud intro does not flatten the rest. The range never drops below ``1e-3`` of
  the loudest frame so far (near-silence is not blown up to full scale).
* **Rise** ``gradm``: ``specm[i] - specm[i - 1]`` (the offline central gradient needs the next
  frame) over a running maximum with the same half-life, negatives set to 0.
* **Chroma**: a 12-bin STFT chromagram (``librosa.filters.chroma``, power, tuning 0) of the
  ``chroma_fft`` samples (4096) ending where the mel frame ends, strongest pitch scaled to 1.
  The offline ``chroma_cqt`` needs about 0.8 s of look-ahead in its lowest octave and tunes
  on the whole song. The window was chosen with ``benchmarks/bench_live.py`` (4096 is within
  0.01 of 8192 on the class mixture and reacts twice as fast).
* **Pitch ranking** by running means (half-life ``rank_halflife``, 60 s) with hysteresis: a
  pitch overtakes the one ranked above only when its mean is ``hysteresis`` (10 %) higher,
  so classes do not flicker. Before any sound the ranking is chromatic (C first).
* **No one-frame lag**: online frame ``i`` is the state after feature frame ``i``, i.e. the
  offline row ``i + 1``; the first class vector is the first update from zero weights, not
  ``cv0``.
* **Smoothing**: offline, bins of ``sf`` frames interpolate towards the next bin's mean (up to
  ``2 sf - 1`` frames of look-ahead). Online, class vector ``i`` is the mean of the ``sf``
  rows ending at frame ``i + lookahead``, ``0 <= lookahead <= sf``: at most one bin of
  look-ahead, costing ``lookahead`` frames of latency (default 0). The last ``lookahead``
  frames of a finished stream hold the final window.
* **Random draws**: the offline generator and order (12 candidate classes, ``nv0``, then 128
  jitter draws per 200 frames, drawn when reached): a seed gives the same classes, ``nv0`` and
  jitter online and offline.

While it plays, :meth:`~OnlineTrajectory.steer` changes the settings from the next frame on
(sensitivities, depth, jitter, truncation, the classes and their number),
:meth:`~OnlineTrajectory.reseed` starts a new random stream and ``hold`` freezes the vectors;
the live control surface (:mod:`dmv_fast.live.control`) drives them between pushes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from numba import njit

from dmv_fast.settings.choices import (
    MAX_CLASSES,
    MAX_SEED,
    N_IMAGENET,
    N_PITCHES,
    NOISE_DIM,
    SAMPLE_RATE,
)
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors import trajectory as offline
from dmv_fast.vectors.trajectory import JITTER_PERIOD

N_FFT = 2048  # mel frames, as librosa.feature.melspectrogram
N_MELS = 128
FMAX = 8000.0
CHROMA_FFT = 4096
RANGE_FLOOR = 1e-3  # the normalisation range never drops below this share of the loudest frame


class Step(NamedTuple):
    """Vectors of the frames completed by one call: frames ``start .. start + n - 1`` (frame
    ``k`` shows the audio at ``k * frame_length / 22050`` s); ``noise`` ``[n, 128]`` float32;
    ``weights`` ``[n, K]`` float32, column ``j`` = the class vector's entry ``classes[j]`` (every
    other entry is 0)."""

    start: int
    noise: np.ndarray
    weights: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.noise.shape[0])


@dataclass(frozen=True)
class OnlineParams:
    """Settings of the online kernels, per frame (derived from the options and half-lives)."""

    tempo_scale: float  # ts of SPEC §2
    pitch_scale: float  # ps
    truncation: float
    depth: float
    smooth_frames: int  # sf
    lookahead: int  # frames of smoothing look-ahead, 0..sf
    decay: float  # per-frame factor of the normalisation (0.5 ** (1 / half-life in frames))
    rank_decay: float  # per-frame factor of the pitch means
    hysteresis: float  # relative margin a pitch needs to overtake the one ranked above


def _check_int(name: str, value: object, lo: int, hi: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}{unit}, got {value!r}")


def _decay(halflife: float, fps: float, name: str) -> float:
    if not isinstance(halflife, (int, float)) or not np.isfinite(halflife) or halflife <= 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {halflife!r}")
    return float(0.5 ** (1.0 / (halflife * fps)))


# The numba kernels --------------------------------------------------------------------------


@njit(cache=True)
def _drive_kernel(raw, state, decay, floor):  # pragma: no cover - compiled
    # state = [lo, hi, gmax, prev, peak, seen]; returns specm + gradm per frame.
    n = raw.shape[0]
    out = np.empty(n)
    lo, hi, gmax, prev, peak, seen = state[0], state[1], state[2], state[3], state[4], state[5]
    for i in range(n):
        x = raw[i]
        if seen == 0:
            lo = hi = prev = x
        hi = max(x, x + (hi - x) * decay)
        lo = min(x, x + (lo - x) * decay)
        peak = max(peak, x)
        g = x - prev
        gmax = max(g, gmax * decay)
        spread = max(hi - lo, floor * peak)
        spec = (x - lo) / spread if spread > 0 else 0.0
        grad = g / gmax if g > 0 and gmax > 0 else 0.0
        out[i] = spec + grad
        prev = x
        seen += 1.0
    state[0], state[1], state[2], state[3], state[4], state[5] = lo, hi, gmax, prev, peak, seen
    return out


@njit(cache=True)
def _rank_kernel(chroma, means, order, swaps, decay, hysteresis, k):  # pragma: no cover
    # chroma [n, 12]; means [12] and order [12] are updated in place. Returns [n, k]: column j
    # is the chroma of the j-th ranked pitch.
    n = chroma.shape[0]
    out = np.empty((n, k))
    for i in range(n):
        for p in range(12):
            means[p] = means[p] * decay + chroma[i, p] * (1.0 - decay)
        for r in range(1, 12):
            s = r
            while s > 0 and means[order[s]] > means[order[s - 1]] * (1.0 + hysteresis):
                tmp = order[s]
                order[s] = order[s - 1]
                order[s - 1] = tmp
                swaps[0] += 1
                s -= 1
        for j in range(k):
            out[i, j] = chroma[i, order[j]]
    return out


@njit(cache=True)
def _noise_kernel(drive, nv, direction, last, jit_rows, first, ts, truncation):  # pragma: no cover
    # SPEC §4 steps 1-3 with the state carried between calls; row i is the state after update
    # i. jit_rows[b] holds the jitter of frames 200 * (first // 200 + b) onwards.
    n = drive.shape[0]
    out = np.empty((n, nv.shape[0]))
    upper = 2 * truncation - ts
    lower = -2 * truncation + ts
    base = first // 200
    for i in range(n):
        jit = jit_rows[(first + i) // 200 - base]
        offline.noise_step(nv, direction, last, jit, drive[i], ts, upper, lower)
        out[i] = nv
    return out


@njit(cache=True)
def _smooth_kernel(rows, ring, count):  # pragma: no cover - compiled
    # Mean of the last ring.shape[0] rows up to and including each row; ring and count[0]
    # carry the history between calls.
    n, k = rows.shape
    sf = ring.shape[0]
    out = np.empty((n, k))
    for i in range(n):
        ring[count[0] % sf] = rows[i]
        count[0] += 1
        m = min(count[0], sf)
        for j in range(k):
            total = 0.0
            for r in range(m):
                total += ring[r, j]
            out[i, j] = total / m
    return out


# Features of each hop -----------------------------------------------------------------------


class _Features:
    """Resample, buffer and cut the mono 22050 Hz signal into the features of each hop.

    Frame ``i`` ends at sample ``i * fl + N_FFT // 2``: the mel frame is the ``N_FFT`` samples
    before that point (centred on ``i * fl``, as librosa's centred STFT with zero padding),
    the chroma frame the ``chroma_fft`` samples before it.
    """

    def __init__(self, frame_length: int, chroma_fft: int) -> None:
        import librosa

        self.fl, self.chroma_fft, self.window = frame_length, chroma_fft, max(N_FFT, chroma_fft)
        hann = librosa.filters.get_window
        self.mel_window = hann("hann", N_FFT, fftbins=True)
        self.chroma_window = hann("hann", chroma_fft, fftbins=True)
        self.mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmax=FMAX)
        self.chroma_basis = librosa.filters.chroma(sr=SAMPLE_RATE, n_fft=chroma_fft, tuning=0.0)
        # Samples from absolute position self.origin on; zeros stand for the time before 0.
        self.origin = N_FFT // 2 - self.window
        self.buffer = np.zeros(self.window - N_FFT // 2, dtype=np.float32)
        self.total = self.next_frame = 0  # samples received (at 22050 Hz); next frame to cut
        self.rate: int | None = None
        self.resampler = None

    def add(self, block: np.ndarray, rate: int) -> None:
        if self.rate is None:
            self.rate = rate
            if rate != SAMPLE_RATE:
                import soxr

                self.resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        elif rate != self.rate:
            raise ValueError(f"sample rate changed from {self.rate} to {rate} Hz mid-stream")
        mono = block if block.ndim == 1 else block.mean(axis=1, dtype=np.float32)
        if self.resampler is not None:
            mono = self.resampler.resample_chunk(mono)
        self.total += mono.size
        self._append(mono)

    def flush(self) -> None:
        """End of the stream: drain the resampler and pad like librosa's centred frames."""
        if self.resampler is not None:
            tail = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self.total += tail.size
            self._append(tail)
            self.resampler = None
        # Offline: 1 + n // fl frames; the last one ends at (n // fl) * fl + N_FFT // 2.
        end = (self.total // self.fl) * self.fl + N_FFT // 2
        self._append(np.zeros(max(0, end - self.total), np.float32))

    def _append(self, samples: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, samples.astype(np.float32, copy=False)])

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """Features of every hop now complete: ``(specm_raw [n], chroma [n, 12])`` float64."""
        available = self.origin + self.buffer.size  # absolute end of the buffered samples
        n = max(0, (available - N_FFT // 2) // self.fl + 1 - self.next_frame)
        if n == 0:
            return np.zeros(0), np.zeros((0, N_PITCHES))
        ends = (self.next_frame + np.arange(n)) * self.fl + N_FFT // 2 - self.origin
        specm = (self._power(ends, self.mel_window) @ self.mel_basis.T).mean(axis=1)
        chroma = self._power(ends, self.chroma_window) @ self.chroma_basis.T
        top = chroma.max(axis=1, keepdims=True)
        chroma = np.divide(chroma, top, out=np.zeros_like(chroma), where=top > 1e-12)
        self.next_frame += n
        # Keep what the next frame's longest window needs.
        keep_from = self.next_frame * self.fl + N_FFT // 2 - self.window - self.origin
        if keep_from > 0:
            self.buffer = self.buffer[keep_from:]
            self.origin += keep_from
        return specm, chroma

    def _power(self, ends: np.ndarray, window: np.ndarray) -> np.ndarray:
        """Power spectra ``[n, size // 2 + 1]`` of the ``size`` samples before each end."""
        frames = self.buffer[ends[:, None] - window.size + np.arange(window.size)]
        return np.abs(np.fft.rfft(frames.astype(np.float64) * window, axis=1)) ** 2


# The engine ---------------------------------------------------------------------------------


class OnlineTrajectory:
    """Noise and class vectors from audio blocks as they arrive (see the module docstring).

    Args:
        options: :class:`RenderOptions` (default: the defaults); frame_length, the
            sensitivities, depth, classes, num_classes, jitter, truncation, smooth_factor and
            seed keep their offline meanings (song and output are not used).
        seed: seed of the random draws; ``None``: ``options.seed``, else a fresh one
            (:attr:`seed` tells which).
        classes: ImageNet indices overriding ``options.classes``.
        halflife: seconds over which the normalisation forgets a louder (or quieter) past.
        rank_halflife: seconds of memory of the pitch means that rank the pitches.
        hysteresis: relative margin a pitch's mean needs to overtake the one ranked above.
        lookahead: frames of smoothing look-ahead, ``0..sf`` (each costs one frame of latency).
        chroma_fft: STFT size of the chroma frames (a power of two, >= 2048).

    Raises:
        ValueError: a bad option or setting, before any audio is read.
    """

    def __init__(
        self,
        options: RenderOptions | None = None,
        *,
        seed: int | None = None,
        classes: tuple[int, ...] | None = None,
        halflife: float = 20.0,
        rank_halflife: float = 60.0,
        hysteresis: float = 0.1,
        lookahead: int = 0,
        chroma_fft: int = CHROMA_FFT,
    ) -> None:
        options = options if options is not None else RenderOptions(song="-")
        if seed is None:
            seed = options.seed if options.seed is not None else offline.new_seed()
        sf = options.smooth_frames
        _check_int("seed", seed, 0, MAX_SEED)
        _check_int("lookahead", lookahead, 0, sf, " (frames)")
        _check_int("chroma_fft", chroma_fft, N_FFT, 1 << 16, ", a power of two")
        if chroma_fft & (chroma_fft - 1):
            raise ValueError(f"chroma_fft must be a power of two >= {N_FFT}, got {chroma_fft!r}")
        if not isinstance(hysteresis, (int, float)) or not 0 <= hysteresis < 10:
            raise ValueError(f"hysteresis must be in 0..10, got {hysteresis!r}")
        fps = SAMPLE_RATE / options.frame_length
        self.options = options
        self.seed = int(seed)
        decays = _decay(halflife, fps, "halflife"), _decay(rank_halflife, fps, "rank_halflife")
        o = options
        self.params = OnlineParams(
            o.tempo_scale, o.pitch_scale, o.truncation, o.depth, sf, lookahead, *decays, hysteresis
        )
        # Same generator and order of draws as trajectory.draw_random.
        self._gen = np.random.default_rng(self.seed)
        self.nv0 = self._draw()  # also the 12 candidate classes of the seed: self.drawn
        self.classes = offline.pick_classes(options, self.drawn, classes)
        self.hold = False  # True: the vectors stay where they are (the picture is frozen)
        self._jitter: list[np.ndarray] = []  # rows of jitter draws, from block _jitter_base
        self._jitter_base = 0
        self._features = _Features(options.frame_length, chroma_fft)
        k = len(self.classes)
        # Kernel state, updated in place: drive [lo, hi, gmax, prev, peak, seen]; ranking
        # (pitch means, order, swap count); noise (nv, direction, last update); smoothing.
        self._drive_state = np.zeros(6)
        self._rank = (np.zeros(N_PITCHES), np.arange(N_PITCHES), np.zeros(1, np.int64))
        self._noise = (self.nv0.copy(), np.where(self.nv0 < 0, 1.0, -1.0), np.zeros(NOISE_DIM))
        self._cv = np.zeros(k)
        self._smooth = (np.zeros((sf, k)), np.zeros(1, np.int64))
        self._delay_noise = np.zeros((0, NOISE_DIM))  # noise rows waiting for their look-ahead
        self._frames_in = self._frames_out = 0
        self._last_weights = np.zeros(k)
        self._finished = False

    @property
    def fps(self) -> float:
        """Frames per second, ``22050 / frame_length``."""
        return SAMPLE_RATE / self.options.frame_length

    @property
    def latency(self) -> float:
        """Seconds of audio a frame waits for after its own instant: the half mel frame plus
        ``lookahead`` frames (resampling adds soxr's short filter delay)."""
        return (N_FFT // 2 + self.params.lookahead * self.options.frame_length) / SAMPLE_RATE

    @property
    def rank_changes(self) -> int:
        """How often two pitches swapped ranks so far."""
        return int(self._rank[2][0])

    @property
    def pitch_order(self) -> tuple[int, ...]:
        """The current pitch ranking, strongest first (0 = C ... 11 = B)."""
        return tuple(int(p) for p in self._rank[1])

    def push(self, block: np.ndarray, rate: int) -> Step:
        """Add an audio block; returns the vectors of the frames it completed (maybe none).

        Args:
            block: ``np.ndarray [shape=(n,)]`` or ``[shape=(n, channels)]`` float samples in
                [-1, 1], any ``n``.
            rate: its sample rate in Hz (the same for the whole stream).
        """
        if self._finished:
            raise RuntimeError("the stream is finished; start a new OnlineTrajectory")
        arr = np.asarray(block)
        if arr.ndim not in (1, 2) or arr.ndim == 2 and arr.shape[1] < 1:
            raise ValueError(f"audio block must be [n] or [n, channels], got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"audio block must be float samples (float32), got {arr.dtype}")
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"sample rate must be a positive integer (Hz), got {rate!r}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("audio block contains non-finite samples (NaN or infinity)")
        self._features.add(arr.astype(np.float32, copy=False), int(rate))
        return self.advance(*self._features.take())

    def finish(self) -> Step:
        """End of the stream: the remaining frames, so that a whole song gives
        ``1 + n_samples // frame_length`` frames as offline."""
        if self._finished:
            return self._empty()
        self._features.flush()
        step = self.advance(*self._features.take())
        self._finished = True
        rest, self._delay_noise = self._delay_noise, self._delay_noise[:0]
        self._frames_out += len(rest)  # the last look-ahead frames hold the final window
        held = np.repeat(self._last_weights[None], len(rest), axis=0)
        noise, weights = np.concatenate([step.noise, rest]), np.concatenate([step.weights, held])
        return Step(step.start, noise.astype(np.float32), weights.astype(np.float32))

    def advance(self, specm_raw: np.ndarray, chroma: np.ndarray) -> Step:
        """Run the kernels on the features of the next frames.

        Args:
            specm_raw: ``[n]`` raw mean mel power per frame (not normalised).
            chroma: ``[n, 12]`` chroma per frame, strongest pitch 1 (0 when silent).
        """
        n = len(specm_raw)
        start = self._frames_out
        if n == 0:
            return self._empty()
        p = self.params
        raw = np.ascontiguousarray(specm_raw, dtype=np.float64)
        drive = _drive_kernel(raw, self._drive_state, p.decay, RANGE_FLOOR)
        chroma = np.ascontiguousarray(chroma, dtype=np.float64)
        ranked = _rank_kernel(chroma, *self._rank, p.rank_decay, p.hysteresis, len(self.classes))
        if self.hold:  # the analysis goes on (normalisation, ranking), the vectors stay
            noise = np.repeat(self._noise[0][None], n, axis=0)
            smoothed = np.repeat(self._last_weights[None], n, axis=0)
        else:
            rows = offline.class_kernel(ranked, self._cv, p.pitch_scale, p.depth)[1:]  # SPEC §4
            self._cv = rows[-1].copy()
            smoothed = _smooth_kernel(rows, *self._smooth)
            jit = self._jitter_rows(self._frames_in, self._frames_in + n)
            noise = _noise_kernel(
                drive, *self._noise, jit, self._frames_in, p.tempo_scale, p.truncation
            )
            self._frames_in += n
        self._last_weights = smoothed[-1]
        if p.lookahead:
            # Frame t shows the window ending at t + lookahead: hold the noise back.
            pending = np.concatenate([self._delay_noise, noise])
            ready = max(0, len(pending) - p.lookahead)
            noise, self._delay_noise = pending[:ready], pending[ready:]
            smoothed = smoothed[len(smoothed) - ready :]
        self._frames_out += len(noise)
        return Step(start, noise.astype(np.float32), smoothed.astype(np.float32))

    def steer(self, options: RenderOptions, classes: tuple[int, ...]) -> None:
        """Play on with other settings from the next frame (between pushes, never during one).

        Args:
            options: the new sensitivities, depth, jitter and truncation (frame_length and
                smooth_factor stay as they were). The noise state is scaled by the ratio of
                the truncations, so it keeps its place within ``±2 T``.
            classes: the classes in rank order, any ``K`` in 1..12: slot ``j`` keeps its weight
                when its class changes; new slots start at weight 0 and rise with their pitch.
        """
        p = self.params
        if (options.frame_length, options.smooth_frames) != (
            self.options.frame_length,
            p.smooth_frames,
        ):
            raise ValueError("frame_length and smooth_factor cannot change while playing")
        ratio = options.truncation / p.truncation
        self._noise[0][:] *= ratio
        self._noise[2][:] *= ratio
        o = options
        self.params = replace(
            p, tempo_scale=o.tempo_scale, pitch_scale=o.pitch_scale, truncation=o.truncation,
            depth=o.depth,
        )  # fmt: skip
        self.options = options
        k, grow = len(classes), max(0, len(classes) - len(self.classes))
        if grow or k < len(self.classes):
            ring, count = self._smooth
            self._smooth = (np.pad(ring[:, :k], ((0, 0), (0, grow))), count)
            self._cv = np.pad(self._cv[:k], (0, grow))
            self._last_weights = np.pad(self._last_weights[:k], (0, grow))
        self.classes = tuple(int(c) for c in classes)

    def reseed(self, seed: int) -> None:
        """A new random stream from the next frame: new candidate classes (:attr:`drawn`), a new
        noise state ``truncation * truncnorm`` (a cut, not a glide) and new jitter draws."""
        _check_int("seed", seed, 0, MAX_SEED)
        self.seed, self._gen = int(seed), np.random.default_rng(seed)
        nv0 = self._draw()
        nv, direction, last = self._noise
        nv[:], direction[:], last[:] = nv0, np.where(nv0 < 0, 1.0, -1.0), 0.0
        self._jitter, self._jitter_base = [], self._frames_in // JITTER_PERIOD

    def _draw(self) -> np.ndarray:
        """The first draws of a seed, in the offline order: the 12 candidate classes (kept in
        :attr:`drawn`), then the first noise state (returned)."""
        choice = self._gen.choice(N_IMAGENET, MAX_CLASSES, replace=False)
        self.drawn = tuple(int(c) for c in choice)
        return self.params.truncation * offline.truncated_normal(self._gen, NOISE_DIM)

    def class_vectors(self, weights: np.ndarray) -> np.ndarray:
        """Full-width class vectors: ``[n, K]`` weights to ``[n, 1000]`` float32."""
        out = np.zeros((len(weights), N_IMAGENET), dtype=np.float32)
        out[:, list(self.classes)] = weights
        return out

    def _empty(self) -> Step:
        k = len(self.classes)
        return Step(
            self._frames_out, np.zeros((0, NOISE_DIM), np.float32), np.zeros((0, k), np.float32)
        )

    def _jitter_rows(self, first: int, stop: int) -> np.ndarray:
        """Jitter factors of frames ``first..stop-1``: rows from block ``first // 200`` on,
        drawn from the run's generator as the stream reaches them."""
        need = (stop - 1) // JITTER_PERIOD
        while self._jitter_base + len(self._jitter) <= need:
            self._jitter.append(self._gen.random(NOISE_DIM))
        drop = first // JITTER_PERIOD - self._jitter_base
        if drop > 0:  # blocks no frame will use again
            del self._jitter[:drop]
            self._jitter_base += drop
        draws = np.stack(self._jitter[: need - self._jitter_base + 1])
        return offline.jitter_factors(draws, self.options.jitter)  # the jitter of now
