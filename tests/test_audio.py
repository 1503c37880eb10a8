"""Decoding and the SPEC §1 features."""

from __future__ import annotations

import av
import librosa
import numpy as np
import pytest
import soundfile as sf

from dmv_fast.audio.decode import load_audio, probe_audio
from dmv_fast.audio.features import analyze
from dmv_fast.settings.choices import SAMPLE_RATE


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [
        ("a.wav", 44100, 2),
        ("b.flac", 48000, 1),
        ("c.ogg", 32000, 2),
        ("d.mp3", 44100, 2),
        ("e.wav", 8000, 6),
        ("f.wav", 22050, 1),
    ],
)
def test_decoding_matches_librosa_load(make_song, name, rate, channels):
    path = make_song(name, seconds=1.5, rate=rate, channels=channels)
    y = load_audio(path)
    expected, sr = librosa.load(path)  # librosa's defaults: mono, 22050 Hz
    assert sr == SAMPLE_RATE
    assert y.dtype == np.float32 and y.ndim == 1
    np.testing.assert_array_equal(y, expected)
    info = probe_audio(path)
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert info.duration == pytest.approx(1.5, abs=0.06)


def _write_aac(path, rate=48000, seconds=1.0):
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        for start in range(0, len(tone), 1024):
            chunk = np.stack([tone[start : start + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_formats_libsndfile_cannot_read_go_through_pyav(tmp_path):
    path = tmp_path / "song.m4a"
    _write_aac(path)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))
    y = load_audio(path)
    assert abs(len(y) / SAMPLE_RATE - 1.0) < 0.05
    # A 440 Hz tone at the right pitch after resampling.
    spectrum = np.abs(np.fft.rfft(y[2048:18432]))
    assert np.fft.rfftfreq(16384, 1 / SAMPLE_RATE)[spectrum.argmax()] == pytest.approx(440, abs=3)
    assert probe_audio(path).sample_rate == 48000


@pytest.mark.parametrize("frame_length", [512, 2048, 64])
def test_features_are_spec_section_1(real_song, frame_length):
    f = analyze(real_song, frame_length)
    # SPEC §1 written out with librosa directly.
    y, sr = librosa.load(real_song)
    spec = librosa.feature.melspectrogram(
        y=y, sr=sr, n_mels=128, fmax=8000, hop_length=frame_length
    )
    specm = np.mean(spec, axis=0)
    gradm = np.gradient(specm)
    gradm = (gradm / np.max(gradm)).clip(min=0)
    specm = (specm - np.min(specm)) / np.ptp(specm)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr, hop_length=frame_length)
    chromasort = np.argsort(np.mean(chroma, axis=1))[::-1]
    n = 1 + len(y) // frame_length
    assert f.n_frames == n and f.n_samples == len(y)
    assert f.specm.shape == (n,) and f.gradm.shape == (n,) and f.chroma.shape == (12, n)
    np.testing.assert_array_equal(f.specm, specm)
    np.testing.assert_array_equal(f.gradm, gradm)
    np.testing.assert_array_equal(f.chroma, chroma)
    np.testing.assert_array_equal(f.chromasort, chromasort)
    assert f.duration == pytest.approx(8.87, abs=0.01)


def test_analyze_accepts_an_array(make_song):
    path = make_song(seconds=2.0)
    y = load_audio(path)
    a, b = analyze(y, 1024), analyze(path, 1024)
    np.testing.assert_array_equal(a.chroma, b.chroma)
    np.testing.assert_array_equal(a.specm, b.specm)


@pytest.mark.parametrize(
    "signal",
    [
        np.zeros(SAMPLE_RATE * 2, dtype=np.float32),  # silence
        np.full(SAMPLE_RATE, 0.25, dtype=np.float32),  # constant (DC)
        (0.3 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32),
        np.full(100, 0.1, dtype=np.float32),  # shorter than one frame
    ],
    ids=["silent", "dc", "tone", "100-samples"],
)
def test_degenerate_audio_gives_finite_features(signal):
    f = analyze(signal, 512)
    assert f.n_frames == 1 + len(signal) // 512
    for a in (f.specm, f.gradm, f.chroma):
        assert np.all(np.isfinite(a))
    assert f.specm.min() >= 0 and f.specm.max() <= 1
    assert f.gradm.min() >= 0 and f.gradm.max() <= 1
    assert sorted(f.chromasort.tolist()) == list(range(12))


def test_silent_file_has_zero_features(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    f = analyze(path)
    assert not f.specm.any() and not f.gradm.any() and not f.chroma.any()


def test_a_tenth_of_a_second(make_song):
    f = analyze(make_song("short.wav", seconds=0.1, rate=44100))
    assert f.n_frames == 1 + 2205 // 512


def test_unreadable_files_are_one_line_value_errors(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("these are not the droids you are looking for\n" * 20)
    for path, needle in ((empty, "empty"), (text, "not a readable audio file"),
                         (tmp_path / "missing.wav", "does not exist")):  # fmt: skip
        for call in (load_audio, probe_audio, analyze):
            with pytest.raises(ValueError) as info:
                call(path)
            assert needle in str(info.value) and "\n" not in str(info.value)


def test_frame_length_must_be_a_multiple_of_64():
    with pytest.raises(ValueError, match="frame_length"):
        analyze(np.zeros(1000, dtype=np.float32), 500)
