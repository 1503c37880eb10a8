"""The record beside the video: written atomically, read back, refused for another song."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import dmv_fast
from dmv_fast.audio.features import analyze
from dmv_fast.render.record import read_record, record_paths, write_record
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.trajectory import compute_vectors


@pytest.fixture
def run(make_song, tmp_path):
    song = make_song("song.wav", seconds=2.0, rate=44100, channels=2)
    options = RenderOptions(song=str(song), output_file=str(tmp_path / "clip.mp4"), num_classes=5,
                            classes=(1, 980, 555, 2, 7), seed=42)  # fmt: skip
    features = analyze(song)
    vectors = compute_vectors(features, options, seed=options.seed)
    return options, features, vectors


def test_record_round_trip(run, tmp_path):
    options, features, vectors = run
    npz = write_record(options.output_file, vectors, options, features)
    assert npz == tmp_path / "clip.dmv.npz" and (tmp_path / "clip.dmv.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.dmv.json",
        "clip.dmv.npz",
        "song.wav",
    ]  # fmt: skip  (no temporary files left behind)
    with np.load(npz) as data:
        assert data["class_vectors"].shape == (features.n_frames, 1000)
        assert data["noise_vectors"].shape == (features.n_frames, 128)
        assert tuple(data["classes"]) == (1, 980, 555, 2, 7)
    meta = json.loads((tmp_path / "clip.dmv.json").read_text())
    assert meta["seed"] == 42 and meta["dmv_fast_version"] == dmv_fast.__version__
    assert meta["frame_length"] == 512 and meta["frames"] == features.n_frames
    assert meta["song_size"] == (tmp_path / "song.wav").stat().st_size
    assert meta["settings"]["num_classes"] == 5 and meta["settings"]["jitter"] == 0.5
    assert [c["class"] for c in meta["classes"]] == [1, 980, 555, 2, 7]
    assert meta["classes"][1]["name"] == "volcano" and meta["classes"][0]["pitch"] in (
        "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"
    )  # fmt: skip

    back = read_record(options.output_file, options, features)
    np.testing.assert_array_equal(back.noise, vectors.noise)
    np.testing.assert_array_equal(back.class_vectors, vectors.class_vectors)
    assert back.classes == vectors.classes and back.seed == 42


def test_previous_classes_drive_the_same_pitches_under_another_seed(run):
    options, features, vectors = run
    write_record(options.output_file, vectors, options, features)
    previous = read_record(options.output_file, options, features).classes
    again = compute_vectors(features, dataclasses.replace(options, classes=None), seed=7,
                            classes=previous)  # fmt: skip
    assert again.classes == previous == (1, 980, 555, 2, 7)
    np.testing.assert_array_equal(again.class_vectors, vectors.class_vectors)
    assert not np.array_equal(again.noise, vectors.noise)


def test_a_record_from_another_song_or_frame_length_is_refused(run, make_song):
    options, features, vectors = run
    write_record(options.output_file, vectors, options, features)
    other = make_song("other.wav", seconds=2.5, rate=44100, seed=3)
    other_options = dataclasses.replace(options, song=str(other))
    with pytest.raises(ValueError, match="another song"):
        read_record(options.output_file, other_options, analyze(other))
    with pytest.raises(ValueError, match="frame_length 512"):
        read_record(options.output_file, options, analyze(options.song, 1024))


def test_a_missing_record_is_a_clear_error(run, tmp_path):
    options, features, _ = run
    with pytest.raises(ValueError, match="clip.dmv.json"):
        read_record(tmp_path / "clip.mp4", options, features)


def test_record_paths_sit_beside_the_video(tmp_path):
    assert record_paths(tmp_path / "my.video.mp4") == (
        tmp_path / "my.video.dmv.npz",
        tmp_path / "my.video.dmv.json",
    )
