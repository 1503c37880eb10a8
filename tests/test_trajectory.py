"""Noise and class vectors: kernels vs reference, exactness against SPEC §4, seeds, edge cases."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from dmv_fast.audio.features import AudioFeatures, analyze
from dmv_fast.render.job import video_frame_count
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.reference import reference_trajectory
from dmv_fast.vectors.trajectory import (
    compute_vectors,
    draw_random,
    drive_signal,
    first_class_vector,
    jitter_factors,
    kernel_trajectory,
    truncated_normal,
)


def random_features(n: int, frame_length: int = 512, seed: int = 0) -> AudioFeatures:
    """Random features with the awkward cases mixed in: zero pitches, silent and flat frames."""
    rng = np.random.default_rng(seed)
    chroma = rng.random((12, n)).astype(np.float32)
    chroma[rng.random((12, n)) < 0.15] = 0
    chroma[:, :3] = 0  # silent start: cv0 comes from a later column
    chroma[:, 50:60] = 0  # a silent stretch
    chroma[:, 100:110] = 0.5  # every pitch equal
    chroma /= np.maximum(chroma.max(axis=0), 1e-9)
    specm = rng.random(n).astype(np.float32)
    gradm = np.clip(rng.standard_normal(n), 0, None).astype(np.float32)
    gradm /= gradm.max()
    return AudioFeatures(
        specm=specm,
        gradm=gradm,
        chroma=chroma,
        chromasort=np.argsort(chroma.mean(axis=1))[::-1].copy(),
        frame_length=frame_length,
        n_samples=(n - 1) * frame_length,
    )


# Kernels vs reference -----------------------------------------------------------------------

CASES = list(itertools.product([1, 4, 6, 7, 12], [0.0, 0.5], [256, 512, 2048], [1, 2, 20]))


@pytest.mark.parametrize(("k", "jitter", "frame_length", "sf"), CASES)
def test_kernels_equal_the_reference(k, jitter, frame_length, sf):
    n = 437 + sf  # crosses two jitter redraws; the final bin is partial for sf > 1
    f = random_features(n, frame_length, seed=k * 100 + sf)
    o = RenderOptions(song="x.wav", frame_length=frame_length, num_classes=k, jitter=jitter,
                      truncation=0.7, pitch_sensitivity=250, tempo_sensitivity=0.4)  # fmt: skip
    draws = draw_random(k + sf, n)
    classes = draws.classes[:k]
    args = (
        np.asarray(f.gradm + f.specm, dtype=np.float64),
        f.chroma,
        f.chromasort,
        classes,
        first_class_vector(f.chroma, f.chromasort, classes),
        o.truncation * draws.unit_noise,
        jitter_factors(draws.jitter_uniform, jitter),
    )
    kw = dict(tempo_scale=o.tempo_scale, pitch_scale=o.pitch_scale, truncation=o.truncation,
              depth=0.8, smooth_frames=sf)  # fmt: skip
    ref_noise, ref_cv = reference_trajectory(*args, **kw)
    noise, cv = kernel_trajectory(*args, **kw)
    assert noise.shape == ref_noise.shape == (n, 128)
    assert cv.shape == ref_cv.shape == (n, 1000)
    np.testing.assert_allclose(noise, ref_noise, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cv, ref_cv, rtol=0, atol=1e-6)
    assert np.all(np.isfinite(cv)) and np.all(cv.any(axis=1))


@pytest.mark.parametrize("k", [1, 4, 7, 12])
@pytest.mark.parametrize("fill", [0.0, 0.5], ids=["silent", "flat"])
def test_kernels_equal_the_reference_where_the_original_divides_by_zero(k, fill):
    n = 250
    chroma = np.full((12, n), fill, dtype=np.float32)
    drive = np.zeros(n)
    classes = tuple(range(10, 10 + k))
    cv0 = first_class_vector(chroma, np.arange(12)[::-1], classes)
    args = (drive, chroma, np.arange(12)[::-1], classes, cv0, np.linspace(-1, 1, 128),
            np.ones((2, 128)))  # fmt: skip
    kw = dict(tempo_scale=0.25, pitch_scale=80.0, truncation=1.0, depth=1.0, smooth_frames=20)
    ref = reference_trajectory(*args, **kw)
    out = kernel_trajectory(*args, **kw)
    for a, b in zip(ref, out, strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    assert np.all(ref[1].any(axis=1))


# Exactness against SPEC §4, written out in plain Python ----------------------------------------


def spec_vectors(features, classes, nv0, ts, ps, truncation, depth, sf, sort_by_power=False):
    """SPEC §3-4 with Python lists and floats, jitter 0 (every jitter factor is 1).

    Returns the original's frames (its truncated smoothing) and dmv-fast's extension rows.
    """
    chroma = features.chroma.astype(np.float64).tolist()
    order = [int(p) for p in features.chromasort]
    drive = (features.gradm + features.specm).astype(np.float64).tolist()  # float32 sums
    n, k = len(drive), len(classes)
    col = min((c for row in chroma for c, v in enumerate(row) if v > 0), default=0)
    cv = [0.0] * 1000
    for r in range(k):
        p = order[r]
        if k < 12 or sort_by_power:
            cv[classes[r]] = chroma[p][col]
        else:
            cv[classes[p]] = chroma[p][col]
    nv = [float(x) for x in nv0]
    direction = [1.0 if x < 0 else -1.0 for x in nv]
    last = [0.0] * 128
    noise, cvs = [list(nv)], [list(cv)]
    for i in range(n):
        for u in range(128):
            update = ts * drive[i] * direction[u] * 1.0
            update = (update + 3 * last[u]) / 4
            last[u] = update
            nv[u] = nv[u] + update
        noise.append(list(nv))
        for u in range(128):
            if nv[u] >= 2 * truncation - ts:
                direction[u] = -1.0
            elif nv[u] < -2 * truncation + ts:
                direction[u] = 1.0
        new = [0.0] * 1000
        for j in range(k):
            new[classes[j]] = (cv[classes[j]] + chroma[order[j]][i] / ps) / (1 + 1 / ps)
        if k > 6:
            m = min(v for v in new if v != 0)
            new = [m if v == 0 else v for v in new]
            spread = max(new) - min(new)
            new = [(v - m) / spread for v in new]
        else:
            top = max(new)
            new = [v / top for v in new]
        new = [v * depth for v in new]
        nonzero = [v for v in new if v != 0]
        mean = sum(nonzero) / len(nonzero)
        if math.sqrt(sum((v - mean) ** 2 for v in nonzero) / len(nonzero)) < 1e-7:
            new[classes[0]] += 0.01
        cv = new
        cvs.append(cv)

    def mean_rows(rows):
        return [sum(r[e] for r in rows) / len(rows) for e in range(1000)]

    if sf == 1:
        return noise[:n], cvs[:n], []
    # The original: bins of sf, stop before the last full bin, drop the rest.
    original = []
    for c in range(len(cvs) // sf - 1):
        a, b = mean_rows(cvs[c * sf : c * sf + sf]), mean_rows(cvs[c * sf + sf : c * sf + 2 * sf])
        for j in range(sf):
            w = j / (sf - 1)
            original.append([x * (1 - w) + y * w for x, y in zip(a, b, strict=True)])
    # dmv-fast's extension: on to the (possibly partial) last bin's mean, then hold it.
    n_bins = -(-len(cvs) // sf)
    means = [mean_rows(cvs[c * sf : c * sf + sf]) for c in range(n_bins)]
    tail = []
    for r in range(len(original), n):
        c = r // sf
        if c < n_bins - 1:
            w = (r - c * sf) / (sf - 1)
            tail.append([x * (1 - w) + y * w for x, y in zip(means[c], means[c + 1], strict=True)])
        else:
            tail.append(means[-1])
    return noise[:n], original, tail


@pytest.mark.parametrize(
    ("k", "sf", "sort_by_power"), [(12, 20, False), (4, 7, False), (7, 1, False), (12, 1, True)]
)
def test_vectors_equal_spec_on_real_music(real_song, k, sf, sort_by_power):
    features = analyze(real_song, 512)
    classes = (45, 99, 567, 234, 89, 90, 105, 998, 56, 677, 884, 530)[:k]
    o = RenderOptions(song=str(real_song), classes=classes, num_classes=k, jitter=0.0,
                      smooth_factor=sf, truncation=0.8, sort_classes_by_power=sort_by_power)  # fmt: skip
    nv0 = 0.8 * truncated_normal(np.random.default_rng(11), 128)
    v = compute_vectors(features, o, seed=5, nv0=nv0)
    noise, original, tail = spec_vectors(
        features, classes, nv0, o.tempo_scale, o.pitch_scale, 0.8, 1.0, o.smooth_frames,
        sort_by_power,
    )  # fmt: skip
    n = features.n_frames
    assert v.noise.shape == (n, 128) and v.class_vectors.shape == (n, 1000)
    assert len(original) + len(tail) == n
    np.testing.assert_allclose(v.noise, np.array(noise), rtol=0, atol=1e-6)
    np.testing.assert_allclose(v.class_vectors[: len(original)], np.array(original), atol=1e-6)
    if tail:
        np.testing.assert_allclose(v.class_vectors[len(original) :], np.array(tail), atol=1e-6)
    assert v.classes == classes


def test_vectors_equal_spec_on_synthesized_music(make_song):
    features = analyze(make_song("mix.wav", seconds=4.0, rate=44100, channels=2), 1024)
    classes = (1, 22, 94, 130, 309, 323, 327, 340, 388, 417, 980, 985)
    o = RenderOptions(song="mix.wav", classes=classes, jitter=0.0, frame_length=1024,
                      pitch_sensitivity=270, tempo_sensitivity=0.6)  # fmt: skip
    nv0 = truncated_normal(np.random.default_rng(2), 128)
    v = compute_vectors(features, o, nv0=nv0)
    noise, original, tail = spec_vectors(features, classes, nv0, o.tempo_scale, o.pitch_scale,
                                         1.0, 1.0, o.smooth_frames)  # fmt: skip
    np.testing.assert_allclose(v.noise, np.array(noise), rtol=0, atol=1e-6)
    np.testing.assert_allclose(v.class_vectors, np.array(original + tail), rtol=0, atol=1e-6)


# What a user notices --------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "smooth_factor"), [(1, 20), (2, 20), (19, 20), (20, 20), (41, 20),
                                                  (400, 20), (399, 3), (77, 1)])  # fmt: skip
def test_one_vector_per_frame_to_the_end(n, smooth_factor):
    f = random_features(max(n, 120), seed=n)
    f = dataclasses.replace(f, specm=f.specm[:n], gradm=f.gradm[:n], chroma=f.chroma[:, :n])
    o = RenderOptions(song="x.wav", smooth_factor=smooth_factor)
    v = compute_vectors(f, o, seed=1)
    assert v.noise.shape == (n, 128) and v.class_vectors.shape == (n, 1000)
    assert v.noise.dtype == np.float32 and v.class_vectors.dtype == np.float32
    assert np.all(np.isfinite(v.noise)) and np.all(np.isfinite(v.class_vectors))
    assert np.all(v.class_vectors.any(axis=1)), "a frame without class weights"
    # Only the 12 classes ever carry weight.
    assert set(np.flatnonzero(v.class_vectors.any(axis=0))) <= set(v.classes)


def test_same_seed_same_vectors_and_seed_is_recorded(real_song):
    f = analyze(real_song)
    o = RenderOptions(song=str(real_song))
    a, b = compute_vectors(f, o, seed=1234), compute_vectors(f, dataclasses.replace(o, seed=1234))
    np.testing.assert_array_equal(a.noise, b.noise)
    np.testing.assert_array_equal(a.class_vectors, b.class_vectors)
    assert a.classes == b.classes and a.seed == b.seed == 1234
    c = compute_vectors(f, o, seed=1235)
    assert c.classes != a.classes and not np.array_equal(c.noise, a.noise)
    drawn = compute_vectors(f, o)  # no seed anywhere: one is drawn and reported
    again = compute_vectors(f, o, seed=drawn.seed)
    assert 0 <= drawn.seed < 2**63
    np.testing.assert_array_equal(drawn.noise, again.noise)
    assert drawn.classes == again.classes


def test_shorter_duration_is_a_prefix(real_song):
    f = analyze(real_song)
    full_options = RenderOptions(song=str(real_song), seed=99)
    full = compute_vectors(f, full_options, seed=full_options.seed)
    short_options = dataclasses.replace(full_options, duration=3.0)
    short = compute_vectors(f, short_options, seed=short_options.seed)
    n = video_frame_count(f.n_frames, short_options)
    assert n == round(3.0 * 22050 / 512) < f.n_frames
    np.testing.assert_array_equal(short.noise[:n], full.noise[:n])
    np.testing.assert_array_equal(short.class_vectors[:n], full.class_vectors[:n])
    # The random draws themselves only grow with the song: a longer one appends jitter rows.
    d_short, d_long = draw_random(99, 250), draw_random(99, 5000)
    assert d_short.classes == d_long.classes
    np.testing.assert_array_equal(d_short.unit_noise, d_long.unit_noise)
    np.testing.assert_array_equal(d_short.jitter_uniform, d_long.jitter_uniform[:2])


def test_jitter_is_redrawn_every_200_frames():
    f = random_features(600)
    o = RenderOptions(song="x.wav", jitter=1.0, smooth_factor=1)
    draws = draw_random(3, f.n_frames)
    jit = jitter_factors(draws.jitter_uniform, 1.0)
    assert jit.shape == (3, 128) and set(np.unique(jit)) == {0.0, 1.0}
    cv0 = first_class_vector(f.chroma, f.chromasort, draws.classes)
    noise, _ = kernel_trajectory(drive_signal(f), f.chroma, f.chromasort, draws.classes, cv0,
                                 draws.unit_noise, jit, tempo_scale=o.tempo_scale,
                                 pitch_scale=o.pitch_scale, truncation=1.0, depth=1.0,
                                 smooth_frames=1)  # fmt: skip
    np.testing.assert_allclose(compute_vectors(f, o, seed=3).noise, noise, atol=1e-6)
    # With jitter 1 a unit whose factor is 0 gets no push for its 200-frame block: its step
    # only decays, by 3/4 a frame. Every other unit keeps being pushed by the music.
    steps = np.diff(noise, axis=0)
    for b in range(3):
        block = steps[b * 200 : (b + 1) * 200]
        coasting = np.all(np.isclose(block[1:], 0.75 * block[:-1], rtol=1e-9, atol=1e-12), axis=0)
        np.testing.assert_array_equal(coasting, jit[b] == 0)
    assert not np.array_equal(jit[0], jit[1])


def test_truncated_normal_stays_in_range():
    x = truncated_normal(np.random.default_rng(0), 200_000)
    assert x.min() >= -2 and x.max() <= 2
    assert abs(x.mean()) < 0.01
    assert x.std() == pytest.approx(0.8796, abs=0.005)  # std of truncnorm(-2, 2)


def test_sort_classes_by_power_pairs_the_first_class_with_the_strongest_pitch(real_song):
    f = analyze(real_song)
    classes = tuple(range(100, 112))
    o = RenderOptions(song=str(real_song), classes=classes, smooth_factor=1)
    col = int(np.flatnonzero(f.chroma.any(axis=0))[0])
    default = compute_vectors(f, o, seed=0).class_vectors[0]
    by_power = compute_vectors(f, dataclasses.replace(o, sort_classes_by_power=True), seed=0)
    strongest = int(f.chromasort[0])
    # The original's first frame: chromatic order (class i <- pitch i) with 12 classes.
    assert default[classes[strongest]] == pytest.approx(f.chroma[strongest, col])
    # The documented intent: the first listed class follows the strongest pitch.
    assert by_power.class_vectors[0][classes[0]] == pytest.approx(f.chroma[strongest, col])
    assert by_power.classes == classes and by_power.pitches[0] == strongest


@pytest.mark.parametrize("k", [1, 4, 12])
@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(22050 * 2, dtype=np.float32),
        (0.3 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)).astype(np.float32),
        np.full(22050, 0.25, dtype=np.float32),
        np.random.default_rng(0).uniform(-0.5, 0.5, 2205).astype(np.float32),  # 0.1 s
    ],
    ids=["silent", "tone", "constant", "0.1s"],
)
def test_degenerate_songs_give_finite_vectors(signal, k):
    f = analyze(signal)
    v = compute_vectors(f, RenderOptions(song="x.wav", num_classes=k, smooth_factor=3), seed=4)
    assert v.noise.shape == (f.n_frames, 128) and f.n_frames >= 1
    assert np.all(np.isfinite(v.noise)) and np.all(np.isfinite(v.class_vectors))
    assert np.all(v.class_vectors.any(axis=1))


def test_bad_arguments_are_value_errors():
    f = random_features(50)
    o = RenderOptions(song="x.wav")
    with pytest.raises(ValueError, match="frame_length"):
        compute_vectors(f, dataclasses.replace(o, frame_length=1024))
    with pytest.raises(ValueError, match="pitch_sensitivity"):
        compute_vectors(f, dataclasses.replace(o, pitch_sensitivity=300))
    with pytest.raises(ValueError, match="num_classes"):
        compute_vectors(f, dataclasses.replace(o, num_classes=13))
    with pytest.raises(ValueError, match="1000"):
        compute_vectors(f, dataclasses.replace(o, num_classes=2, classes=(3, 1000)))
    with pytest.raises(ValueError, match="smooth_factor"):
        compute_vectors(f, dataclasses.replace(o, smooth_factor=0))
    with pytest.raises(ValueError, match="depth"):
        compute_vectors(f, dataclasses.replace(o, depth=0))
    with pytest.raises(ValueError, match="classes"):
        compute_vectors(f, dataclasses.replace(o, num_classes=3), classes=(1, 2))
    with pytest.raises(ValueError, match="nv0"):
        compute_vectors(f, o, nv0=np.zeros(12))
