"""The fault table of ``dmv-fast live``: short inputs that end the session by themselves, signals
that keep what was played, raw PCM on stdin cut anywhere, and settings that fail before the
model is loaded.

Every row runs the real CLI (in-process where no signal is involved and stdin is not fed, a
subprocess otherwise) with a tiny BigGAN-deep model and checks what a user would see: the exit
code, the one line on stderr, no traceback, the exact files left (no ``.live-`` temporaries),
the frames read back from the MP4, and no thread of the session left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _faults import (  # noqa: F401  (fixtures)
    OUT,
    SONG,
    _write_song,
    cli,
    failed,
    files,
    frames_in,
    run,
    succeeded,
    tiny,
)

pytest.importorskip("torch")

SR = 22050
HOP = 1024
FRAME_BYTES = 128 * 128 * 3


def _live(tiny: Path, *extra: str) -> list[str]:
    """A tiny live session (128 px, the tiny model, one frame per 1024 samples)."""
    return [
        "live", "--resolution", "128", "--weights", str(tiny), "--frame_length", str(HOP),
        "--backend", "cpu", "--seed", "1", "-q", *extra,
    ]  # fmt: skip


def _frames(samples: int) -> int:
    """Frames of a live session on ``samples`` samples at 22050 Hz: one per hop, and the first."""
    return 1 + samples // HOP


@pytest.fixture(scope="module")
def live_cache(tmp_path_factory, tiny) -> Path:
    """A model cache holding the tiny model's batch-1 graph, which live sessions run."""
    cache = tmp_path_factory.mktemp("live-cache")
    work = tmp_path_factory.mktemp("live-warm-up")
    _write_song(work / SONG, 0.2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMV_FAST_CACHE", str(cache))
        succeeded(cli(*_live(tiny, "--song", str(work / SONG), "-o", str(work / OUT))))
    return cache


@pytest.fixture
def lcache(live_cache, tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(live_cache, copy)
    monkeypatch.setenv("DMV_FAST_CACHE", str(copy))
    return copy


@pytest.fixture
def no_model(monkeypatch) -> None:
    """The graph and the generator session become unreachable: a row that gets there fails."""
    from dmv_fast.render import engine

    def unreachable(*args, **kwargs):
        raise AssertionError("reached the model before refusing a bad setting")

    monkeypatch.setattr(engine, "ensure_graph", unreachable)
    monkeypatch.setattr(engine, "cached_graph", unreachable)
    monkeypatch.setattr(engine.Engine, "generator", property(unreachable))


def _no_session_threads() -> None:
    """The session's worker, its input and its sinks have all ended."""
    deadline = time.monotonic() + 10  # a thread's last instructions after its join
    while True:
        left = [t.name for t in threading.enumerate() if t.name.startswith("dmv-fast-")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, left


def _pcm(seconds: float, channels: int) -> bytes:
    """A tone as raw little-endian float32 PCM at 22050 Hz, ``channels`` interleaved."""
    t = np.arange(round(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 330 * t)
    return np.stack([tone] * channels, axis=1).astype("<f4").tobytes()


# Signals and stdin: the CLI in a child process; SIGINT raises KeyboardInterrupt as in a terminal.
_CHILD = r"""
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
slow = float(sys.argv[1])
if slow:  # a slow machine: each generator call after the first few takes this long
    import time
    from dmv_fast.model import runtime
    real, calls = runtime.Generator.generate, [0]
    def generate(self, *a, **k):
        calls[0] += 1
        if calls[0] > 3:
            time.sleep(slow)
        return real(self, *a, **k)
    runtime.Generator.generate = generate
from dmv_fast.cli.app import main
main(sys.argv[2:])
"""


def _spawn(argv: list[str], slow: float = 0.0, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(slow), *argv],
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )


def _ends(proc: subprocess.Popen, data: bytes | None = None) -> tuple[int, str, bytes]:
    """Feed ``data`` (then end stdin); the child must end by itself within a generous time."""
    try:
        out, err = proc.communicate(data, timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the live session never ended by itself")
    return proc.returncode, err.decode(), out or b""


def _playing(folder: Path, proc: subprocess.Popen) -> None:
    """Until the MP4's recording of the audio played exists: the session is playing (it is
    made at the first block pushed)."""
    deadline = time.monotonic() + 120
    while not any(".live-" in name and name.endswith(".wav") for name in files(folder)):
        if proc.poll() is not None:
            pytest.fail(f"the child ended early: {proc.returncode} {proc.stderr.read()}")
        assert time.monotonic() < deadline, "the session never started"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# A last flush longer than the queue ends by itself (the worker is woken as it fills)


def test_short_song_with_a_long_lookahead_ends(run, tiny, lcache):
    _write_song(run / SONG, 0.2)
    argv = _live(tiny, "--song", str(run / SONG), "--lookahead", "5", "-o", str(run / OUT))
    rc, err, _ = _ends(_spawn(argv))
    assert rc == 0 and "Traceback" not in err, err
    assert files(run) == {SONG, OUT}
    assert frames_in(run / OUT) == _frames(round(0.2 * SR))


def test_a_few_stdin_blocks_with_a_long_lookahead_end(run, tiny, lcache):
    argv = _live(tiny, "--stdin", "--rate", str(SR), "--lookahead", "5", "-o", str(run / OUT))
    rc, err, _ = _ends(_spawn(argv), _pcm(3 * HOP / SR, 1))
    assert rc == 0 and "Traceback" not in err, err
    assert files(run) == {SONG, OUT}
    assert frames_in(run / OUT) == _frames(3 * HOP)


# ---------------------------------------------------------------------------------------------
# Signals: the first keeps what was played and says so; a second stops at once


@pytest.mark.parametrize(
    ("sig", "code", "by"),
    [(signal.SIGTERM, 143, " by SIGTERM"), (signal.SIGINT, 130, "")],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_keeps_what_was_played(sig, code, by, run, tiny, lcache):
    stats = run / "stats.json"
    argv = _live(tiny, "--stdin", "--rate", str(SR), "-o", str(run / OUT), "--stats", str(stats))
    proc = _spawn(argv)
    assert proc.stdin is not None
    proc.stdin.write(_pcm(1.0, 1))  # stdin stays open: only the signal ends the input
    proc.stdin.flush()
    _playing(run, proc)
    proc.send_signal(sig)
    rc, err, out = _ends(proc)
    assert rc == code, err
    assert err.strip().splitlines() == [
        f"error: interrupted{by}; the video of the audio played so far is in {str(run / OUT)!r}"
    ]
    assert files(run) == {SONG, OUT, stats.name}
    total = int(out.decode().split(" of ")[1].split(";")[0])  # "N frames shown, ... of TOTAL;"
    assert 1 <= total <= _frames(SR) and frames_in(run / OUT) == total


def test_a_second_signal_stops_at_once_and_keeps_nothing(run, tiny, lcache):
    argv = _live(tiny, "--stdin", "--rate", str(SR), "-o", str(run / OUT))
    proc = _spawn(argv, slow=0.5)  # the frames of the audio so far take a while
    assert proc.stdin is not None
    proc.stdin.write(_pcm(1.0, 1))
    proc.stdin.flush()
    _playing(run, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    rc, err, _ = _ends(proc)
    assert rc == 143, err
    assert err.strip().splitlines() == [
        "error: interrupted by SIGTERM; no partial video was written"
    ]
    assert files(run) == {SONG}


def test_a_killed_session_leaves_what_the_next_one_removes(run, tiny, lcache):
    proc = _spawn(_live(tiny, "--stdin", "--rate", str(SR), "-o", str(run / OUT)))
    assert proc.stdin is not None
    proc.stdin.write(_pcm(1.0, 1))
    proc.stdin.flush()
    _playing(run, proc)
    proc.kill()
    assert _ends(proc)[0] == -signal.SIGKILL
    assert OUT not in files(run) and any(".live-" in name for name in files(run))
    second = "second.mp4"
    succeeded(cli(*_live(tiny, "--song", str(run / SONG), "-o", str(run / second))))
    assert files(run) == {SONG, second}
    _no_session_threads()


# ---------------------------------------------------------------------------------------------
# Raw PCM on stdin: only a last partial sample frame is dropped; no audio is one line


def test_stdin_keeps_every_whole_sample_frame(run, tiny, lcache):
    import av

    argv = _live(tiny, "--stdin", "--rate", str(SR), "--channels", "2", "-o", str(run / OUT))
    rc, err, _ = _ends(_spawn(argv), _pcm(2.0, 2) + b"xyz")
    assert rc == 0, err
    assert err.strip().splitlines() == [
        "WARNING: stdin ended inside a sample frame (8 bytes each): its last 3 bytes were ignored"
    ]
    assert files(run) == {SONG, OUT}
    assert frames_in(run / OUT) == _frames(2 * SR)
    with av.open(str(run / OUT)) as c:
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    tail = audio[:, 2 * SR - 100 : 2 * SR - 10]  # the last whole sample frames were played
    assert audio.shape[0] == 2 and np.sqrt(np.mean(tail**2)) > 0.1


def test_stdin_with_many_channels_to_raw_frames(run, tiny, lcache):
    argv = _live(tiny, "--stdin", "--rate", str(SR), "--channels", "64", "--raw")
    rc, err, out = _ends(_spawn(argv), _pcm(0.5, 64) + b"xyz")
    assert rc == 0 and "Traceback" not in err, err
    assert "its last 3 bytes were ignored" in err
    assert len(out) == _frames(round(0.5 * SR)) * FRAME_BYTES
    assert files(run) == {SONG}


@pytest.mark.parametrize("output", [["-o", OUT], ["--raw"]], ids=["mp4", "raw"])
def test_empty_stdin_is_one_line(output, run, tiny, lcache, monkeypatch):
    monkeypatch.chdir(run)
    result = cli(*_live(tiny, "--stdin", "--rate", str(SR), *output))  # stdin is empty here
    failed(result, 1, "no audio on stdin")
    assert result.stdout == ""  # not one frame
    assert files(run) == {SONG}
    _no_session_threads()


# ---------------------------------------------------------------------------------------------
# Settings that fail in one line before the model is loaded, leaving no file


BAD = [
    # (arguments, words of the one line); {run} is the row's folder
    (["--stdin", "--rate", "0", "-o", OUT], "--rate must be a positive"),
    (["--stdin", "--rate", "500", "-o", OUT], "--rate must be a positive sample rate from 1000"),
    (["--stdin", "--rate", "1000000000", "-o", OUT], "768000 hz, got 1000000000"),
    (["--stdin", "--rate", str(SR), "--channels", "64", "-o", OUT], "carries 1 to 8 channels"),
    (["--stdin", "--rate", str(SR), "--channels", "65", "--raw"], "--channels must be"),
    (["--song", SONG, "--duration", "inf", "-o", OUT], "positive finite number of seconds"),
    (["--song", SONG, "--duration", "nan", "-o", OUT], "positive finite number of seconds"),
    (["--song", SONG, "--queue", "0", "-o", OUT], "--queue must be at least 1"),
    (["--song", SONG, "--threads", "0", "-o", OUT], "--threads must be at least 1"),
    (["--song", SONG, "--batch_size", "4", "-o", OUT], "--batch_size must be from 1 to --queue"),
    (["--song", SONG, "--stats", "{run}", "-o", OUT], "is a folder"),
    (["--song", SONG, "--stats", "/proc/dmv-fast.json", "-o", OUT], "does not take a new file"),
    (["--song", SONG, "--stats", SONG, "-o", OUT], "is the song or the video"),
]


@pytest.mark.parametrize(
    ("extra", "needle"), BAD, ids=[" ".join(a[:-2] if a[-2] == "-o" else a) for a, _ in BAD]
)
def test_bad_live_setting_fails_before_the_model(extra, needle, run, tiny, no_model, monkeypatch):
    monkeypatch.chdir(run)
    song = (run / SONG).read_bytes()
    result = cli(*_live(tiny, *[a.format(run=run) for a in extra]))
    failed(result, 1, needle)
    assert files(run) == {SONG} and (run / SONG).read_bytes() == song
