"""RenderOptions: the original's defaults, derived settings, one-line errors."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.spec import ModelSpec


def test_defaults_are_the_originals(song_wav):
    o = RenderOptions(song=str(song_wav))
    assert (o.pitch_sensitivity, o.tempo_sensitivity, o.depth) == (220, 0.25, 1)
    assert (o.num_classes, o.jitter, o.frame_length, o.truncation) == (12, 0.5, 512, 1.0)
    assert (o.smooth_factor, o.output_file) == (20, "output.mp4")
    assert o.classes is None and o.duration is None and o.seed is None
    m = ModelSpec()
    assert (m.resolution, m.batch_size, m.scaling, m.backend, m.precision) == (
        512,
        30,
        1,
        "auto",
        "auto",
    )


def test_derived_settings():
    o = RenderOptions(song="x.mp3")
    assert o.fps == Fraction(22050, 512) and float(o.fps) == 43.06640625
    assert o.pitch_scale == 80 and o.tempo_scale == 0.25 and o.smooth_frames == 20
    o = dataclasses.replace(o, frame_length=2048, pitch_sensitivity=280, tempo_sensitivity=0.5)
    assert o.fps == Fraction(22050, 2048)
    assert o.pitch_scale == 20 * 512 / 2048
    assert o.tempo_scale == 0.5 * 4
    assert o.smooth_frames == 5  # int(20 * 512 / 2048)
    assert dataclasses.replace(o, smooth_factor=1).smooth_frames == 1
    assert dataclasses.replace(o, smooth_factor=0.5).smooth_frames == 1


def test_frozen_and_classes_stored_as_tuple():
    o = RenderOptions(song="x.mp3", classes=[1, 2, 3], num_classes=3)
    assert o.classes == (1, 2, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.depth = 0.5  # type: ignore[misc]
    assert hash(o) == hash(RenderOptions(song="x.mp3", classes=(1, 2, 3), num_classes=3))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"frame_length": 500}, "frame_length"),
        ({"frame_length": 0}, "frame_length"),
        ({"pitch_sensitivity": 300}, "pitch_sensitivity"),
        ({"pitch_sensitivity": 0}, "pitch_sensitivity"),
        ({"tempo_sensitivity": 0}, "tempo_sensitivity"),
        ({"tempo_sensitivity": float("inf")}, "tempo_sensitivity"),
        ({"depth": 0}, "depth"),
        ({"depth": 1.5}, "depth"),
        ({"num_classes": 13}, "num_classes"),
        ({"num_classes": 0}, "num_classes"),
        ({"classes": (1, 2, 1000), "num_classes": 3}, "1000"),
        ({"classes": (1, 2, -1), "num_classes": 3}, "-1"),
        ({"classes": (1, 2, 2), "num_classes": 3}, "distinct"),
        ({"classes": (1, 2, 3, 4), "num_classes": 3}, "classes"),
        ({"jitter": 1.5}, "jitter"),
        ({"truncation": 0}, "truncation"),
        ({"truncation": 1.5}, "truncation"),
        ({"smooth_factor": 0}, "smooth_factor"),
        ({"smooth_factor": 1.5, "frame_length": 2048}, "smooth_factor"),
        ({"duration": 0}, "duration"),
        ({"duration": float("nan")}, "duration"),
        ({"tempo_sensitivity": 1e308}, "tempo_sensitivity"),
        ({"encoder": "hevc"}, "encoder"),
        ({"crf": 52}, "crf"),
        ({"preset": "bogus"}, "preset"),
        ({"output_file": "x.avi"}, "output_file"),
        ({"output_file": "x"}, "output_file"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_value(song_wav, change, needle):
    with pytest.raises(ValueError) as info:
        RenderOptions(song=str(song_wav), **change)
    message = str(info.value)
    assert needle in message and "\n" not in message
    bad = next(iter(change.values()))
    if not isinstance(bad, tuple):
        assert repr(bad) in message or str(bad) in message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1025}, "batch_size"),
        ({"scaling": 0}, "scaling"),
        ({"scaling": 1.5}, "scaling"),
        ({"scaling": 9}, "scaling"),
        ({"resolution": 300}, "resolution"),
        ({"backend": "tpu"}, "backend"),
        ({"precision": "int4"}, "precision"),
        ({"precision": "int8", "backend": "cuda"}, "int8"),
        ({"pixels": "clip"}, "pixels"),
        ({"weights": ""}, "weights"),
    ],
)
def test_bad_model_settings_are_one_line_errors(change, needle):
    with pytest.raises(ValueError) as info:
        ModelSpec(**change)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_edges_of_the_ranges_are_accepted(song_wav):
    for change in (
        {"pitch_sensitivity": 1},
        {"pitch_sensitivity": 299},
        {"depth": 0.01},
        {"jitter": 0},
        {"jitter": 1},
        {"truncation": 1},
        {"truncation": 0.05},
        {"num_classes": 1, "classes": (5,)},
        {"num_classes": 4, "classes": tuple(range(12))},
        {"frame_length": 64},
        {"smooth_factor": 4, "frame_length": 2048},
        {"smooth_factor": 0.5},
        {"crf": 0},
    ):
        RenderOptions(song=str(song_wav), **change)


def test_song_is_checked_cheaply(tmp_path):
    from dmv_fast.render.preflight import preflight

    with pytest.raises(ValueError, match="does not exist"):
        preflight(RenderOptions(song=str(tmp_path / "missing.mp3")), overwrite=False)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        preflight(RenderOptions(song=str(empty)), overwrite=False)


def test_from_kwargs_validates_and_rejects_unknown_names(song_wav):
    o = RenderOptions.from_kwargs(song=str(song_wav), jitter=0.0)
    assert o.jitter == 0.0
    with pytest.raises(ValueError, match="jitter"):
        RenderOptions.from_kwargs(song=str(song_wav), jitter=2)
    with pytest.raises(ValueError, match="colour"):
        RenderOptions.from_kwargs(song=str(song_wav), colour=3)
