"""The preview window under Xvfb, used as a person would: frames on the screen (a screenshot of
the display), keys that steer, closing it ends the session cleanly; and every optional part
(window, OSC, NDI) missing gives one line naming what to install."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _media import probe, synth_music
from _models import _library_logging as _library_logging  # autouse fixture

from dmv_fast.live.sinks import Timeline
from dmv_fast.model import weights as model_weights
from dmv_fast.settings.options import RenderOptions
from dmv_fast.vectors.online import OnlineTrajectory

SR = 22050
TITLE = "dmv-fast live"


@pytest.fixture(scope="module")
def display():
    """An Xvfb display for this module (skipped, saying why, where none can start)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    pytest.importorskip("pygame", reason="pygame (the window extra) is not installed")
    pytest.importorskip("Xlib", reason="python-xlib (a dev dependency) is not installed")
    from _xvfb import xvfb

    try:
        with xvfb() as name:
            yield name
    except RuntimeError as e:
        pytest.skip(f"no X server for the window tests: {e}")


@pytest.fixture
def x(display):
    from _xvfb import X

    client = X(display)
    yield client
    client.close()


def _wait(condition, what: str, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while (result := condition()) is None or result is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return result


def _region(display: str, x, window) -> np.ndarray:
    from _xvfb import screenshot

    left, top, width, height = x.geometry(window)
    return screenshot(display)[top : top + height, left : left + width]


def test_window_shows_frames_scaled_takes_keys_and_closes(display, x, monkeypatch):
    from dmv_fast.live.control import Controls
    from dmv_fast.live.window import WindowSink

    monkeypatch.setenv("DISPLAY", display)
    controls = Controls(OnlineTrajectory(RenderOptions(song="-", seed=1, truncation=0.5)))
    closed = threading.Event()
    sink = WindowSink(controls=controls, on_close=closed.set, overlay=lambda: ["ok"], side=320)
    timeline = Timeline([sink])
    size = (90, 160)  # a wide frame: (height, width)
    timeline.open(size, Fraction(SR, 1024))
    try:
        frame = np.zeros((*size, 3), np.uint8)
        frame[:, :80] = (230, 20, 20)  # red | blue
        frame[:, 80:] = (20, 20, 230)
        window = x.find(TITLE)
        assert window is not None
        assert x.geometry(window)[2:] == (320, 180)  # twice the frame, aspect kept
        timeline.frame(0, frame)

        def shown():
            seen = _region(display, x, window)
            return seen if seen[90, 40, 0] > 200 else None

        seen = _wait(shown, "the frame on the screen")
        assert seen.shape == (180, 320, 3)
        np.testing.assert_allclose(seen[20:160, 10:150].mean(axis=(0, 1)), (230, 20, 20), atol=6)
        np.testing.assert_allclose(seen[20:160, 170:310].mean(axis=(0, 1)), (20, 20, 230), atol=6)

        x.key(window, "space")
        x.key(window, "Down")
        x.key(window, "Down")
        x.key(window, "n")
        _wait(lambda: controls.settings()["freeze"], "the space key")
        _wait(lambda: controls.settings()["truncation"] == 0.4, "two steps down")
        _wait(lambda: controls.settings()["classes"] != controls.initial["classes"], "n")
        x.key(window, "o")  # the overlay: text drawn over the frame's corner
        timeline.frame(1, frame)
        _wait(lambda: sink.show_overlay, "the o key")

        x.ask_to_close(window)
        _wait(closed.is_set, "on_close")
        assert sink.closed and x.find(TITLE, seconds=1.0) is None
        timeline.frame(2, frame)  # after closing: ignored, nothing fails
    finally:
        timeline.close(3)
    assert timeline.stats()[0].failed is None


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song.wav"
    sf.write(path, synth_music(30.0, 44100, 2), 44100)
    return path


def _start(args: list[str], display: str, cache: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DISPLAY": display,
        model_weights.ENV_CACHE: str(cache),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "dmv_fast.cli.app", "live", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _live_args(song: Path, tiny_weights: Path, out: Path, stats: Path) -> list[str]:
    return [
        "--song", str(song), "--window", "--overlay", "-o", str(out), "--stats", str(stats),
        "--weights", str(tiny_weights), "--resolution", "128", "--frame_length", "1024",
        "--backend", "cpu", "--seed", "2",
    ]  # fmt: skip


@pytest.mark.parametrize("how", ["close button", "ctrl-c", "end of song"])
def test_dmv_fast_live_plays_in_a_window_and_ends_cleanly(
    display, x, song, tiny_weights, tmp_path, tmp_path_factory, how
):
    out, stats_file = tmp_path / "live.mp4", tmp_path / "stats.json"
    cache = tmp_path_factory.getbasetemp() / "window-cache"
    args = _live_args(song, tiny_weights, out, stats_file)
    if how == "end of song":
        args += ["--duration", "6"]
    proc = _start(args, display, cache)
    try:
        window = x.find(TITLE, seconds=180)
        assert window is not None, proc.stderr.read().decode() if proc.poll() is not None else ""

        def a_frame():
            seen = _region(display, x, window)
            return seen if seen[100:].std() > 5 else None  # below the overlay, not black

        seen = _wait(a_frame, "a frame in the window", 120)
        assert seen.shape == (512, 512, 3) and seen[100:].mean() > 20
        x.key(window, "space")  # freeze, from the keyboard
        time.sleep(1.0)
        if how == "close button":
            x.ask_to_close(window)
        elif how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in ((0,) if how == "close button" else (0, 130)), stderr.decode()
    assert x.find(TITLE, seconds=1.0) is None
    stats = json.loads(stats_file.read_text())
    total = stats["frames_total"]
    if how == "end of song":
        assert total == 1 + round(6 * 44100) * SR // 44100 // 1024
    else:
        assert 0 < total < 1 + 30 * SR // 1024  # ended before the song did
    assert [s["name"] for s in stats["sinks"]] == ["file", "window"]
    window_stats = stats["sinks"][1]
    assert window_stats["frames"] > 0 and window_stats["latency_p50_ms"] > 0
    assert ("freeze", True, "key") in [
        (c["setting"], c["value"], c["source"]) for c in stats["controls"]["changes"]
    ]
    video = probe(out)  # the MP4 of what was played, whole
    assert video.frames == total and video.average_rate == Fraction(SR, 1024)
    assert abs(video.audio_duration - total * 1024 / SR) <= 1024 / SR
    assert "window:" in stdout.decode()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


# Optional parts missing -----------------------------------------------------------------------


@pytest.fixture
def live(monkeypatch, tmp_path_factory):
    from typer.testing import CliRunner

    from dmv_fast.cli.app import app
    from dmv_fast.cli.terminal import expand_multi_value

    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path_factory.getbasetemp() / "x-cache"))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, expand_multi_value(["live", *args]))


@pytest.mark.parametrize(
    ("args", "missing", "needle"),
    [
        (("--window",), "pygame", "--window needs pygame: pip install 'dmv-fast[window]'"),
        (("--osc", "9000"), "pythonosc", "--osc needs python-osc: pip install 'dmv-fast[osc]'"),
        (("--ndi", "stage"), "NDIlib", "--ndi needs ndi-python (the NDI runtime): pip install"),
        (("--window",), "DISPLAY", "--window needs a display, and neither DISPLAY nor"),
        (("--overlay",), None, "--overlay needs --window"),
        (("--osc", "port"), None, "--osc must be PORT or HOST:PORT"),
        (("--ndi", ""), None, "--ndi needs a source name of 1-200 characters"),
    ],
)
def test_a_missing_part_fails_in_one_line_before_any_work(
    live, monkeypatch, tmp_path, args, missing, needle
):
    if missing == "DISPLAY":
        pytest.importorskip("pygame")
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        if not sys.platform.startswith("linux"):
            pytest.skip("the display check is Linux's")
    elif missing is not None:
        monkeypatch.setitem(sys.modules, missing, None)  # as when it is not installed
        if missing == "pythonosc":
            monkeypatch.setitem(sys.modules, "pythonosc.osc_message", None)
    out = tmp_path / "never.mp4"
    result = live("--stdin", "--rate", "8000", *args, "-o", str(out))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
