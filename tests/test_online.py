"""Online trajectory engine: kernels against the reference, features against librosa, the
offline engine's rules, seeds, hysteresis, causal normalisation and bad input."""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
from _media import synth_music

from dmv_fast.audio.features import analyze
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.online import OnlineTrajectory
from dmv_fast.vectors.online_reference import reference_vectors
from dmv_fast.vectors.trajectory import compute_vectors, draw_random, jitter_factors, noise_kernel

SR = 22050


def _opts(**kw) -> RenderOptions:
    base = dict(song="unused.wav", frame_length=512, seed=5)
    base.update(kw)
    return RenderOptions(**base)


def _random_features(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    specm = rng.gamma(2.0, 1.0, n) * (1 + np.sin(np.arange(n) / 40.0))
    chroma = rng.random((n, 12)) ** 3
    chroma[n // 3 : n // 3 + 20] = 0.0  # a silent stretch
    top = chroma.max(axis=1, keepdims=True)
    return specm, np.divide(chroma, top, out=np.zeros_like(chroma), where=top > 0)


def _advance_in_blocks(engine: OnlineTrajectory, specm, chroma, seed: int = 1):
    rng = np.random.default_rng(seed)
    noise, weights, starts, i = [], [], [], 0
    while i < len(specm):
        n = int(rng.integers(1, 60))
        step = engine.advance(specm[i : i + n], chroma[i : i + n])
        starts.append(step.start)
        noise.append(step.noise)
        weights.append(step.weights)
        i += n
    return np.concatenate(noise), np.concatenate(weights), starts


def _jitters(seed: int, n: int, jitter: float) -> np.ndarray:
    return jitter_factors(draw_random(seed, n).jitter_uniform, jitter)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"num_classes": 4, "depth": 0.6, "jitter": 0.9},
        {"frame_length": 1024, "smooth_factor": 1, "truncation": 0.4},
        {"num_classes": 9, "tempo_sensitivity": 0.8, "pitch_sensitivity": 290},
    ],
)
def test_kernels_match_the_reference_over_any_block_split(kw):
    options = _opts(**kw)
    specm, chroma = _random_features(650)
    engine = OnlineTrajectory(options, hysteresis=0.05, halflife=3.0, rank_halflife=2.0)
    noise, weights, _ = _advance_in_blocks(engine, specm, chroma)
    ref_noise, ref_classes = reference_vectors(
        specm, chroma, engine.classes, engine.nv0, _jitters(5, 650, options.jitter), engine.params
    )
    assert noise.shape == (650, 128) and weights.shape == (650, len(engine.classes))
    np.testing.assert_allclose(noise, ref_noise, atol=1e-5)
    np.testing.assert_allclose(weights, ref_classes[:, list(engine.classes)], atol=1e-6)
    others = np.delete(ref_classes, list(engine.classes), axis=1)
    assert not others.any()
    assert engine.rank_changes > 0  # the ranking did move, so the test covers it


def test_lookahead_delays_by_its_frames_and_keeps_every_frame():
    options = _opts(smooth_factor=10)  # sf = 10
    specm, chroma = _random_features(300)
    engine = OnlineTrajectory(options, lookahead=4)
    noise, weights, starts = _advance_in_blocks(engine, specm, chroma)
    assert len(noise) == 296 and starts[0] == 0
    ref_noise, ref_classes = reference_vectors(
        specm, chroma, engine.classes, engine.nv0, _jitters(5, 300, 0.5), engine.params
    )
    np.testing.assert_allclose(noise, ref_noise[:296], atol=1e-5)
    np.testing.assert_allclose(weights, ref_classes[:296, list(engine.classes)], atol=1e-6)
    assert engine.latency == pytest.approx((1024 + 4 * 512) / SR)
    with pytest.raises(ValueError, match="lookahead must be an integer in 0..10"):
        OnlineTrajectory(options, lookahead=11)


def test_noise_follows_the_offline_update_rules():
    # Same drive, nv0 and jitter: online row i is offline row i + 1 (no one-frame lag).
    options = _opts(tempo_sensitivity=0.6, truncation=0.7)
    specm, chroma = _random_features(450)
    engine = OnlineTrajectory(options)
    noise, _, _ = _advance_in_blocks(engine, specm, chroma)
    probe = OnlineTrajectory(options)
    drive = np.zeros(451)  # the online drive frame by frame, then one more for the offline row
    for i in range(450):
        drive[i] = _drive_of(probe, specm, i)
    offline = noise_kernel(drive, engine.nv0, _jitters(5, 451, 0.5), options.tempo_scale, 0.7)
    np.testing.assert_allclose(noise, offline[1:], atol=1e-5)


def _drive_of(engine: OnlineTrajectory, specm: np.ndarray, i: int) -> float:
    from dmv_fast.vectors.online import _drive_kernel

    return float(_drive_kernel(specm[i : i + 1], engine._drive_state, engine.params.decay, 1e-3)[0])


def test_a_seed_draws_the_offline_classes_and_first_noise(song_wav):
    options = _opts(song=str(song_wav), truncation=0.5, num_classes=7)
    offline = compute_vectors(analyze(song_wav, 512), options)
    engine = OnlineTrajectory(options)
    assert engine.classes == offline.classes
    np.testing.assert_allclose(engine.nv0, offline.noise[0], atol=1e-6)
    assert OnlineTrajectory(options, seed=6).classes != offline.classes


def test_streamed_mel_power_equals_librosa_for_any_block_size():
    y = synth_music(3.0, SR)[:, 0]
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_mels=128, fmax=8000, hop_length=512)
    engine = OnlineTrajectory(_opts())
    feats = engine._features
    rng = np.random.default_rng(2)
    parts, pos = [], 0
    while pos < len(y):
        n = int(rng.integers(1, 4000))
        feats.add(y[pos : pos + n], SR)
        parts.append(feats.take()[0])
        pos += n
    feats.flush()
    parts.append(feats.take()[0])
    specm = np.concatenate(parts)
    assert len(specm) == mel.shape[1] == 1 + len(y) // 512
    np.testing.assert_allclose(specm, mel.mean(axis=0), rtol=1e-4, atol=1e-6 * mel.max())


def test_a_whole_file_at_its_own_rate_gives_the_offline_frame_count(song_wav):
    import soundfile as sf

    audio, rate = sf.read(song_wav, dtype="float32")  # 44100 Hz stereo
    engine = OnlineTrajectory(_opts(frame_length=1024))
    total = 0
    for start in range(0, len(audio), 777):
        total += engine.push(audio[start : start + 777], rate).n_frames
    last = engine.finish()
    total += last.n_frames
    offline = analyze(song_wav, 1024)
    assert abs(total - offline.n_frames) <= 1
    assert last.start + last.n_frames == total


def test_hysteresis_keeps_two_close_pitches_from_flickering():
    n = 2000
    chroma = np.zeros((n, 12))
    chroma[:, 0] = 1.0
    chroma[:, 7] = 0.97 + 0.06 * (np.arange(n) // 50 % 2)  # G above and below C in turns
    specm = np.ones(n)
    steady = OnlineTrajectory(_opts(), rank_halflife=0.5, hysteresis=0.1)
    steady.advance(specm, chroma)
    flicker = OnlineTrajectory(_opts(), rank_halflife=0.5, hysteresis=0.0)
    flicker.advance(specm, chroma)
    assert flicker.rank_changes > 30
    assert steady.rank_changes <= 12  # only the first settling from the chromatic order
    assert steady.pitch_order[:2] in ((0, 7), (7, 0))


def test_a_loud_intro_does_not_flatten_the_rest():
    fl, n = 512, 1800  # about 42 s
    t = np.arange(n)
    specm = np.where(t < 200, 100.0, 1.0 + 0.5 * np.sin(t / 5.0))  # loud intro, quiet verse
    engine = OnlineTrajectory(_opts(frame_length=fl), halflife=5.0)
    from dmv_fast.vectors.online import _drive_kernel

    drive = _drive_kernel(specm, engine._drive_state, engine.params.decay, 1e-3)
    offline = (specm - specm.min()) / np.ptp(specm)
    late = slice(1200, None)
    assert np.ptp(offline[late]) < 0.02  # offline: the verse is flat
    assert np.ptp(drive[late]) > 0.9  # online: it spans the range again


@pytest.mark.parametrize(
    ("block", "rate", "message"),
    [
        (np.zeros((4, 2, 2), np.float32), 22050, "must be \\[n\\] or \\[n, channels\\]"),
        (np.zeros(100, np.int16), 22050, "must be float samples"),
        (np.array([0.0, np.nan], np.float32), 22050, "non-finite"),
        (np.zeros(100, np.float32), 0, "sample rate must be a positive integer"),
    ],
)
def test_bad_blocks_are_one_line_errors(block, rate, message):
    engine = OnlineTrajectory(_opts())
    with pytest.raises(ValueError, match=message):
        engine.push(block, rate)


def test_bad_settings_and_a_rate_change_are_errors():
    with pytest.raises(ValueError, match="pitch_sensitivity"):
        OnlineTrajectory(_opts(pitch_sensitivity=300))
    with pytest.raises(ValueError, match="halflife must be"):
        OnlineTrajectory(_opts(), halflife=0)
    with pytest.raises(ValueError, match="chroma_fft must be a power of two"):
        OnlineTrajectory(_opts(), chroma_fft=3000)
    engine = OnlineTrajectory(_opts())
    engine.push(np.zeros(1000, np.float32), 44100)
    with pytest.raises(ValueError, match="sample rate changed from 44100 to 48000"):
        engine.push(np.zeros(1000, np.float32), 48000)
    engine.finish()
    with pytest.raises(RuntimeError, match="finished"):
        engine.push(np.zeros(10, np.float32), 44100)


def test_silence_gives_finite_vectors():
    engine = OnlineTrajectory(dataclasses.replace(_opts(), num_classes=12))
    step = engine.push(np.zeros(22050, np.float32), 22050)
    last = engine.finish()
    assert step.n_frames + last.n_frames == 1 + 22050 // 512
    assert np.isfinite(step.noise).all() and np.isfinite(step.weights).all()
