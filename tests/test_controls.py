"""The live control surface: changes made while a session plays take effect at the next frame,
glide where a jump would flash, are recorded with their frame, and bad ones change nothing."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from _media import synth_music
from _models import _library_logging as _library_logging  # autouse fixture

from dmv_fast.live.session import LiveSession
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.classes import find_class
from dmv_fast.vectors.online import OnlineTrajectory

SR = 22050
GOLDFISH = find_class("goldfish")


@pytest.fixture(scope="module")
def tiny_gen(tmp_path_factory):
    """A tiny exported BigGAN-deep graph (32 px, batch 1) on ONNX Runtime's CPU provider."""
    pytest.importorskip("torch")
    from _models import export_tiny

    from dmv_fast.model.runtime import Generator

    return Generator(export_tiny(tmp_path_factory, 1), backend="cpu")


class Recorder:
    """The real generator, remembering what each frame was made from."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.truncations: list[float] = []
        self.classes: list[np.ndarray] = []
        self.noise: list[np.ndarray] = []

    def generate(self, noise, classes, truncation):
        self.truncations += [truncation] * len(noise)
        self.classes += list(classes.copy())
        self.noise += list(noise.copy())
        return self.inner.generate(noise, classes, truncation)


def _opts(**kw) -> RenderOptions:
    base = dict(song="-", frame_length=512, seed=3, truncation=1.0)
    base.update(kw)
    return RenderOptions(**base)


def _session(gen, **kw) -> tuple[LiveSession, Recorder]:
    recorder = Recorder(gen)
    session = LiveSession(recorder, OnlineTrajectory(_opts(**kw)), queue=4, threaded=False)
    return session, recorder


def _play(session: LiveSession, seconds: float, shown: dict[int, np.ndarray], seed: int = 0):
    """Push ``seconds`` of music one hop at a time, making and pulling every frame."""
    audio = synth_music(seconds, SR, 1, seed=seed)[:, 0]
    for i in range(0, len(audio), 512):
        session.push(audio[i : i + 512], SR)
        while session.step():
            pass
        while (frame := session.pull(newest=False)) is not None:
            shown[frame.index] = frame.image.copy()


def test_api_change_takes_effect_at_the_next_frame_and_truncation_glides(tiny_gen):
    session, rec = _session(tiny_gen)
    twin, twin_rec = _session(tiny_gen)
    shown: dict[int, np.ndarray] = {}
    twin_shown: dict[int, np.ndarray] = {}
    _play(session, 1.0, shown)
    _play(twin, 1.0, twin_shown)
    first = len(shown)  # the next frame to be made
    session.set(truncation=0.6, classes=["goldfish", 97])
    _play(session, 1.5, shown, seed=1)
    _play(twin, 1.5, twin_shown, seed=1)

    glide = session.controls.glide_frames
    assert glide == round(0.5 * SR / 512)
    changes = session.controls.changes()
    assert [(c["frame"], c["setting"], c["value"], c["source"]) for c in changes] == [
        (first, "truncation", 0.6, "api"),
        (first, "classes", [GOLDFISH, 97], "api"),
    ]
    assert changes[0]["glide_frames"] == glide and changes[1]["glide_frames"] == 0
    # Before the change: the same frames as a session nobody touched.
    for k in range(first):
        np.testing.assert_array_equal(shown[k], twin_shown[k])
    t = np.array(rec.truncations)
    assert (t[:first] == 1.0).all()
    ramp = t[first : first + glide]
    assert (np.diff(ramp) < 0).all() and ramp[0] < 1.0 and ramp[-1] == 0.6
    assert (t[first + glide :] == 0.6).all()  # exactly 0.6: the BatchNorm statistics of 0.6
    # The classes switch at once: only the two new columns carry weight from then on.
    for row in rec.classes[first:]:
        assert set(np.flatnonzero(row)) <= {GOLDFISH, 97}
    assert {GOLDFISH, 97} <= set(np.flatnonzero(rec.classes[-1]))
    assert session.trajectory.classes == (GOLDFISH, 97)
    assert not np.array_equal(shown[len(shown) - 1], twin_shown[len(shown) - 1])
    settings = session.controls.settings()
    assert (settings["truncation"], settings["num_classes"]) == (0.6, 2)


def test_freeze_holds_the_picture_and_unfreeze_moves_on_from_there(tiny_gen):
    session, rec = _session(tiny_gen)
    shown: dict[int, np.ndarray] = {}
    _play(session, 0.6, shown)
    frozen_at = len(shown)
    session.controls.toggle_freeze("key")
    _play(session, 0.8, shown, seed=1)
    thawed_at = len(shown)
    session.set(freeze=False)
    _play(session, 0.6, shown, seed=2)

    held = [shown[k] for k in range(frozen_at, thawed_at)]
    assert len(held) > 10
    for image in held:  # the music goes on, the picture does not move
        np.testing.assert_array_equal(image, held[0])
    np.testing.assert_array_equal(rec.noise[frozen_at], rec.noise[frozen_at - 1])
    # Unfrozen, it moves again, from where it stopped (no jump back to where the music is).
    after = [shown[k] for k in range(thawed_at, len(shown))]
    assert any(not np.array_equal(a, b) for a, b in zip(after, after[1:], strict=False))
    step = np.abs(rec.noise[thawed_at] - rec.noise[thawed_at - 1]).max()
    assert 0 < step < 0.5
    sources = [(c["setting"], c["value"], c["source"]) for c in session.controls.changes()]
    assert sources == [("freeze", True, "key"), ("freeze", False, "api")]


def test_depth_glides_and_every_setting_reaches_the_engine(tiny_gen):
    session, rec = _session(tiny_gen, num_classes=3, classes=(1, 2, 3), smooth_factor=1)
    shown: dict[int, np.ndarray] = {}
    _play(session, 0.5, shown)
    first = len(shown)
    session.set(depth=0.5, jitter=0.1, pitch_sensitivity=100, tempo_sensitivity=0.5)
    _play(session, 1.0, shown, seed=1)
    glide = session.controls.glide_frames
    # K <= 6: each class vector is normalised to its maximum, times the depth of its frame.
    peaks = np.array([row.max() for row in rec.classes])
    np.testing.assert_allclose(peaks[:first], 1.0, atol=1e-6)
    assert (np.diff(peaks[first : first + glide]) < 0).all()
    np.testing.assert_allclose(peaks[first + glide :], 0.5, atol=1e-6)
    o = session.trajectory.options
    assert (o.depth, o.jitter, o.pitch_sensitivity, o.tempo_sensitivity) == (0.5, 0.1, 100, 0.5)
    assert session.trajectory.params.pitch_scale == o.pitch_scale
    assert session.trajectory.params.tempo_scale == o.tempo_scale


def test_num_classes_seed_and_next_classes(tiny_gen):
    session, _ = _session(tiny_gen, num_classes=3, classes=(10, 20, 30))
    candidates = session.trajectory.drawn
    shown: dict[int, np.ndarray] = {}
    _play(session, 0.3, shown)
    session.set(num_classes=5)  # the given classes, then the seed's candidates
    _play(session, 0.2, shown)
    extra = tuple(c for c in candidates if c not in (10, 20, 30))[:2]
    assert session.trajectory.classes == (10, 20, 30, *extra)

    session.set(seed=99)  # given classes stay; the noise cuts to the new seed's
    _play(session, 0.2, shown)
    assert session.trajectory.seed == 99 and session.trajectory.classes[:3] == (10, 20, 30)

    session.set(next_classes=True)
    _play(session, 0.2, shown)
    rolled = session.trajectory.classes
    assert len(rolled) == 5 and len(set(rolled)) == 5 and rolled[:3] != (10, 20, 30)

    drawn, _ = _session(tiny_gen)  # classes of the seed: a new seed draws new ones
    drawn.set(seed=7, num_classes=4)
    _play(drawn, 0.2, {})
    assert drawn.trajectory.classes == OnlineTrajectory(_opts(seed=7)).drawn[:4]
    assert drawn.controls.settings()["seed"] == 7


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"truncation": 0.0}, "truncation must be in (0, 1]"),
        ({"truncation": float("nan")}, "truncation must be"),
        ({"truncation": "high"}, "truncation must be"),
        ({"depth": 2.0}, "depth must be in 0.01..1"),
        ({"jitter": -0.1}, "jitter must be in 0..1"),
        ({"pitch_sensitivity": 300}, "pitch_sensitivity must be in 1..299"),
        ({"tempo_sensitivity": float("inf")}, "tempo_sensitivity must be"),
        ({"num_classes": 13}, "num_classes must be an integer in 1..12"),
        ({"num_classes": True}, "num_classes must be"),
        ({"classes": list(range(13))}, "classes must be 1..12"),
        ({"classes": []}, "classes must be 1..12"),
        ({"classes": [5, 5]}, "classes must be distinct"),
        ({"classes": ["no such animal"]}, "unknown ImageNet class name"),
        ({"classes": [1000]}, "class index must be in 0..999"),
        ({"classes": [1.5]}, "class must be an ImageNet index"),
        ({"classes": ["x" * 5000]}, "class must be an ImageNet index"),
        ({"freeze": 2}, "freeze must be True/False"),
        ({"seed": -1}, "seed must be an integer"),
        ({"truncation": 0.5, "depth": 7}, "depth must be"),  # all or nothing
        ({"smooth_factor": 3}, "unknown live setting(s) smooth_factor"),
    ],
)
def test_a_bad_change_raises_and_changes_nothing(tiny_gen, change, needle):
    session, _ = _session(tiny_gen)
    before = session.controls.settings()
    with pytest.raises(ValueError) as info:
        session.set(**change)
    assert needle in str(info.value)
    assert session.controls.settings() == before
    shown: dict[int, np.ndarray] = {}
    _play(session, 0.2, shown)
    assert session.controls.changes() == [] and len(shown) > 0


def test_offered_bad_changes_are_logged_once_each_within_a_rate(tiny_gen, caplog):
    session, _ = _session(tiny_gen)
    controls = session.controls
    with caplog.at_level(logging.WARNING, logger="dmv_fast"):
        assert controls.offer("osc", depth=0.5)
        assert not controls.offer("osc", depth="deep")
        for _ in range(40):  # a flood
            controls.offer("osc", truncation=-1)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("osc: ignored: depth must be in 0.01..1")
    assert len(lines) == 20  # LIVE_REJECT_LOG_RATE lines a second, the rest summed up later
    assert controls.rejected == 41
    assert controls.settings()["depth"] == 0.5


def test_window_key_steps_stay_in_range(tiny_gen):
    session, _ = _session(tiny_gen, truncation=0.1)
    for _ in range(5):
        session.controls.step_truncation(-1)
    assert session.controls.settings()["truncation"] == 0.05
    for _ in range(30):
        session.controls.step_truncation(+1)
    assert session.controls.settings()["truncation"] == 1.0
