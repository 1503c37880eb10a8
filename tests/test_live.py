"""Live sessions: streamed frames, dropping under a slow generator, the pacer, real-time file
input, and the ``dmv-fast live`` command read back from its output."""

from __future__ import annotations

import json
import threading
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
from _media import synth_music
from _models import TINY_RESOLUTION
from _models import _library_logging as _library_logging  # autouse fixture

from dmv_fast.live.pacer import Pacer
from dmv_fast.live.session import LiveSession
from dmv_fast.model import weights as model_weights
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.online import OnlineTrajectory

SR = 22050


class SimClock:
    """Simulated seconds; ``sleep`` advances them (plus an optional overshoot)."""

    def __init__(self, overshoot=None) -> None:
        self.t = 100.0
        self.overshoot = overshoot

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds + (self.overshoot() if self.overshoot else 0.0)


class SlowGenerator:
    """A real generator that takes ``seconds`` of simulated time per call."""

    def __init__(self, inner, clock: SimClock, seconds: float) -> None:
        self.inner, self.clock, self.seconds = inner, clock, seconds

    def generate(self, noise, classes, truncation):
        self.clock.t += self.seconds
        return self.inner.generate(noise, classes, truncation)


@pytest.fixture(scope="module")
def tiny_gen(tmp_path_factory):
    """A tiny exported BigGAN-deep graph (32 px, batch 1) on ONNX Runtime's CPU provider."""
    pytest.importorskip("torch")
    from _models import export_tiny

    from dmv_fast.model.runtime import Generator

    return Generator(export_tiny(tmp_path_factory, 1), backend="cpu")


def _opts(**kw) -> RenderOptions:
    base = dict(song="unused.wav", frame_length=512, seed=3, truncation=0.6)
    base.update(kw)
    return RenderOptions(**base)


def _blocks(seconds: float, size: int, rate: int = 44100, channels: int = 2):
    audio = synth_music(seconds, rate, channels)
    return [audio[i : i + size] for i in range(0, len(audio), size)], rate


@pytest.mark.parametrize(("batch", "block"), [(1, 700), (3, 2600)])
def test_streamed_frames_equal_generate_on_the_same_vectors(tiny_gen, batch, block):
    blocks, rate = _blocks(2.0, block)
    session = LiveSession(tiny_gen, OnlineTrajectory(_opts()), queue=6, batch=batch, threaded=False)
    shown: dict[int, np.ndarray] = {}

    def drain() -> None:
        while session.step():
            pass
        while (frame := session.pull(newest=False)) is not None:
            shown[frame.index] = frame.image.copy()

    for b in blocks:
        session.push(b, rate)
        drain()
    session.finish()
    drain()
    assert session.done

    twin = OnlineTrajectory(_opts())
    steps = [twin.push(b, rate) for b in blocks] + [twin.finish()]
    noise = np.concatenate([s.noise for s in steps])
    classes = twin.class_vectors(np.concatenate([s.weights for s in steps]))
    expected = tiny_gen.generate(noise, classes, 0.6)
    assert sorted(shown) == list(range(len(noise)))
    assert len(noise) == 1 + round(2.0 * SR) // 512
    np.testing.assert_array_equal(np.stack([shown[k] for k in sorted(shown)]), expected)
    stats = session.stats()
    assert (stats.frames_shown, stats.frames_dropped) == (len(noise), 0)


@pytest.mark.parametrize("queue", [1, 2])
def test_a_slow_generator_drops_frames_and_latency_stays_bounded(tiny_gen, queue):
    clock = SimClock()
    period = 512 / SR  # one frame per block
    cost = 3.5 * period  # the generator is 3.5 times too slow
    session = LiveSession(
        SlowGenerator(tiny_gen, clock, cost),
        OnlineTrajectory(_opts()),
        queue=queue,
        clock=clock,
        threaded=False,
    )
    audio = synth_music(6.0, SR)[:, 0]
    blocks = [audio[i : i + 512] for i in range(0, len(audio), 512)]
    start, i, latencies = clock.t, 0, []
    while True:
        while i < len(blocks) and start + (i + 1) * period <= clock.t:
            session.push(blocks[i], SR, time=start + (i + 1) * period)
            i += 1
        if session.step() == 0:
            if i == len(blocks):
                break
            clock.t = start + (i + 1) * period  # idle until the next block
            continue
        latencies.append(session.pull().latency)
    stats = session.stats()
    assert stats.frames_total >= len(blocks) - 2
    assert 0.6 < stats.dropped_fraction < 0.8  # about 1 - 1 / 3.5
    assert stats.frames_shown + stats.frames_dropped == stats.frames_total
    # Never older than the call in progress, the queue ahead of it and its own call.
    bound = (queue + 1) * cost + period
    assert max(latencies) <= bound + 1e-9
    assert stats.latency_p99_ms <= 1000 * bound
    # No growth over the run: the last frames are as fresh as the first ones.
    assert np.mean(latencies[-20:]) <= np.mean(latencies[:20]) + period


def test_push_from_another_thread_with_the_worker_running(tiny_gen):
    blocks, rate = _blocks(1.5, 1024, rate=48000, channels=1)
    indices: list[int] = []
    with LiveSession(tiny_gen, OnlineTrajectory(_opts(frame_length=1024)), queue=4) as session:

        def feed() -> None:
            for b in blocks:
                session.push(b, rate)
            session.finish()

        feeder = threading.Thread(target=feed)
        feeder.start()
        while not session.done:
            frame = session.pull(timeout=5.0, newest=False)
            if frame is not None:
                assert frame.image.shape == (TINY_RESOLUTION, TINY_RESOLUTION, 3)
                indices.append(frame.index)
        feeder.join()
    stats = session.stats()
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert indices[-1] == stats.frames_total - 1  # the end of the audio is never dropped
    assert stats.frames_shown == len(indices) > 0
    assert stats.frames_shown + stats.frames_dropped == stats.frames_total


def test_pacer_does_not_drift_over_an_hour():
    rng = np.random.default_rng(0)
    clock = SimClock(overshoot=lambda: float(rng.uniform(0, 0.004)))  # sleeps wake up late
    pacer = Pacer(Fraction(SR, 512), clock=clock, sleep=clock.sleep)
    t0 = pacer.start()
    ticks = 3600 * SR // 512  # one hour of frames
    worst = 0.0
    for k in range(ticks):
        clock.t += 0.003  # work per frame
        worst = max(worst, pacer.wait(k))
    assert worst <= 0.004 + 1e-9
    assert clock.t - (t0 + ticks * 512 / SR) < 0.01  # an hour in, within one overshoot
    assert pacer.current() == ticks - 1


def test_pacer_refuses_a_bad_rate():
    with pytest.raises(ValueError, match="pacer rate must be"):
        Pacer(0)


def test_song_at_real_time_pace_ends_within_one_frame_of_its_length(make_song):
    from dmv_fast.audio.decode import song_blocks
    from dmv_fast.live.pacer import play

    path = make_song("jingle.ogg", seconds=3.3, rate=44100, channels=2)
    clock = SimClock(overshoot=lambda: 0.001)
    rate, channels, blocks = song_blocks(path)
    pushed: list[tuple[float, int]] = []
    pacer = Pacer(rate, clock=clock, sleep=clock.sleep)
    t0 = pacer.start()
    total = play(blocks, rate, lambda b: pushed.append((clock(), len(b))), pacer)
    length = sf.info(str(path)).frames / rate
    assert (rate, channels) == (44100, 2)
    assert total == sf.info(str(path)).frames
    assert abs((clock() - t0) - length) <= 512 / SR
    # Never ahead of the audio: each block is pushed once its last sample has played.
    played = np.cumsum([n for _, n in pushed]) / rate
    assert all(t - t0 >= p - 1e-9 for (t, _), p in zip(pushed, played, strict=True))


# The command --------------------------------------------------------------------------------


@pytest.fixture
def live(monkeypatch, tmp_path_factory):
    """Run ``dmv-fast live ARGS`` through the real app."""
    from typer.testing import CliRunner

    from dmv_fast.cli.app import app
    from dmv_fast.cli.terminal import expand_multi_value

    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path_factory.getbasetemp() / "live-cache"))
    runner = CliRunner()

    def invoke(*args: str, input: bytes | None = None):
        return runner.invoke(app, expand_multi_value(["live", *args]), input=input)

    return invoke


def test_live_song_to_mp4_has_one_frame_per_hop_and_the_audio(live, tiny_weights, tmp_path):
    from _media import probe

    song = tmp_path / "song.wav"
    sf.write(song, synth_music(2.0, 44100, 2), 44100)
    out, stats_file = tmp_path / "live.mp4", tmp_path / "stats.json"
    result = live(
        "--song", str(song), "-o", str(out), "--weights", str(tiny_weights),
        "--resolution", "128", "--frame_length", "2048", "--backend", "cpu",
        "--seed", "4", "--classes", "7", "2", "goldfish", "--num_classes", "3",
        "--stats", str(stats_file),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frames = 1 + round(2.0 * SR) // 2048
    video = probe(out)
    assert video.frames == frames and video.average_rate == Fraction(SR, 2048)
    assert video.decoded.shape == (frames, 128, 128, 3)
    assert (video.audio_rate, video.audio_channels) == (44100, 2)
    assert abs(video.audio_duration - frames * 2048 / SR) <= 2048 / SR  # within one frame
    stats = json.loads(stats_file.read_text())
    assert stats["frames_total"] == frames
    assert stats["frames_shown"] + stats["frames_dropped"] == frames
    assert stats["frames_shown"] >= 1 and stats["latency_p99_ms"] > 0
    assert "frames shown" in result.stdout
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_live_stdin_to_raw_frames_and_mp4(live, tiny_weights, tmp_path):
    from _media import probe

    from dmv_fast.video.writer import VideoWriter

    pcm = synth_music(1.5, 16000, 2)
    out = tmp_path / "stdin.mp4"
    result = live(
        "--stdin", "--rate", "16000", "--channels", "2", "--raw", "-o", str(out),
        "--weights", str(tiny_weights), "--resolution", "128", "--frame-length", "2048",
        "--backend", "cpu", "--seed", "1", "-q",
        input=pcm.astype("<f4").tobytes(),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    video = probe(out)
    assert len(result.stdout_bytes) == video.frames * 128 * 128 * 3
    raw = np.frombuffer(result.stdout_bytes, np.uint8).reshape(-1, 128, 128, 3)
    assert abs(video.frames - (1 + round(1.5 * SR) // 2048)) <= 1
    # The MP4 holds the raw frames as one libx264 pass at crf 20 would (the lossless
    # intermediate used to mux the recorded audio adds nothing).
    direct = tmp_path / "direct.mp4"
    with VideoWriter(direct, (128, 128), Fraction(SR, 2048), encoder="x264") as writer:
        writer.write(raw)
    assert np.abs(probe(direct).decoded.astype(int) - video.decoded.astype(int)).max() <= 2
    assert (video.audio_rate, video.audio_channels) == (16000, 2)
    assert abs(video.audio_duration - video.frames * 2048 / SR) <= 2048 / SR
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "give exactly one input"),
        (("--stdin", "--input-device", "0", "--rate", "8000"), "give exactly one input"),
        (("--stdin",), "--stdin needs --rate"),
        (("--stdin", "--rate", "8000", "--frame_length", "500"), "frame_length must be"),
        (("--stdin", "--rate", "8000", "--lookahead", "99"), "lookahead must be"),
        (("--input-device", "0"), "pip install 'dmv-fast[live]'"),
    ],
)
def test_bad_live_options_fail_in_one_line(live, monkeypatch, tmp_path, args, needle):
    import sys

    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as when it is not installed
    out = tmp_path / "never.mp4"
    result = live(*args, "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--backend", "gpu"), "'--backend'"),
        (("--resolution", "300"), "'--resolution'"),
    ],
)
def test_live_takes_the_same_choices_as_render(tmp_path, capsys, args, needle):
    """A choice outside the settings' list is a usage error, as for every command."""
    from dmv_fast.cli.app import main

    out = tmp_path / "never.mp4"
    with pytest.raises(SystemExit) as info:
        main(["live", "--stdin", "--rate", "8000", *args, "-o", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_live_refuses_to_replace_an_output(live, tmp_path):
    out = tmp_path / "taken.mp4"
    out.write_bytes(b"keep")
    result = live("--stdin", "--rate", "8000", "-o", str(out))
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert out.read_bytes() == b"keep"


def test_a_failing_generator_surfaces_in_pull():
    class Broken:
        def generate(self, noise, classes, truncation):
            raise MemoryError("out of device memory")

    blocks, rate = _blocks(0.5, 2048)
    with LiveSession(Broken(), OnlineTrajectory(_opts())) as session:
        for b in blocks:
            session.push(b, rate)
        with pytest.raises(RuntimeError, match="the generator failed: out of device memory"):
            session.pull(timeout=10.0)
    with pytest.raises(ValueError, match="batch \\(3\\) must not exceed queue \\(2\\)"):
        LiveSession(Broken(), OnlineTrajectory(_opts()), queue=2, batch=3)
    with pytest.raises(ValueError, match="generator must have a generate"):
        LiveSession(object(), OnlineTrajectory(_opts()))  # type: ignore[arg-type]


def test_visualizer_stream_runs_the_plan_generator(tiny_weights, tmp_path, monkeypatch):
    """`Visualizer.stream()` serves the plan's warm generator: pushed audio comes out as frames
    equal to `generate()` on the engine's vectors."""
    from dmv_fast.render.api import Visualizer
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.settings.spec import ModelSpec

    monkeypatch.setenv("DMV_FAST_CACHE", str(tmp_path / "cache"))
    vis = Visualizer(ModelSpec(resolution=128, weights=str(tiny_weights), batch_size=1,
                               backend="cpu"))  # fmt: skip
    session = vis.stream(RenderOptions(song="-", frame_length=2048, seed=3), queue=2)
    assert session.batch == 1 and session.generator is vis.generator
    rng = np.random.default_rng(0)
    with session:
        session.push((0.1 * rng.standard_normal(22050)).astype(np.float32), 22050)
        session.finish()
        frame = session.pull(timeout=5)
    assert frame is not None and frame.image.shape == (128, 128, 3)
    assert frame.image.dtype == np.uint8
