"""The fault tables' harness: a tiny model, a warm cache, the CLI run in-process, and the
checks every row makes (exit code, one line on stderr, no traceback, the files left)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dmv_fast.cli.app import main

SONG = "song.wav"
OUT = "o.mp4"
RESULT = {SONG, OUT, "o.dmv.npz", "o.dmv.json"}
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ---------------------------------------------------------------------------------------------
# Harness


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A local weights folder of a narrow (4-channel) BigGAN-deep-128."""
    from dmv_fast_export.weights import random_model, save_pretrained, standard_config

    config = standard_config(128)
    config.channel_width = 4
    folder = tmp_path_factory.mktemp("tiny-weights")
    save_pretrained(random_model(config, seed=5), folder)
    return folder


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory, tiny) -> Path:
    """A model cache holding the tiny model's exported graph (exported once here)."""
    cache = tmp_path_factory.mktemp("faults-cache")
    work = tmp_path_factory.mktemp("warm-up")
    _write_song(work / SONG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMV_FAST_CACHE", str(cache))
        result = cli(*args(work, tiny))
    assert result.code == 0, result.stderr
    # The graph, its sidecar and ONNX Runtime's optimised form of it.
    assert len(tree(cache) - {"onnx"}) == 3
    return cache


@pytest.fixture
def cache(warm_cache, tmp_path, monkeypatch) -> Path:
    """A copy of the warm cache for this row (rows may damage it)."""
    copy = tmp_path / "cache"
    shutil.copytree(warm_cache, copy)
    monkeypatch.setenv("DMV_FAST_CACHE", str(copy))
    return copy


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    """An empty model cache: the row exports the graph."""
    path = tmp_path / "empty-cache"
    path.mkdir()
    monkeypatch.setenv("DMV_FAST_CACHE", str(path))
    return path


@pytest.fixture
def run(tmp_path) -> Path:
    """The output folder of a row, holding the song."""
    folder = tmp_path / "run"
    folder.mkdir()
    _write_song(folder / SONG)
    return folder


def _write_song(path: Path, seconds: float = 2.0, rate: int = 22050, channels: int = 1) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    y = np.stack([tone * (1 - 0.1 * c) for c in range(channels)], axis=1)
    sf.write(path, y.astype(np.float32), rate)
    return path


def args(folder: Path, tiny: Path, *extra: str, song: str = SONG, out: str = OUT) -> list[str]:
    """A tiny, fast render of ``folder/song`` into ``folder/out``."""
    return [
        "render", "--song", str(folder / song), "-o", str(folder / out), "-q",
        "--resolution", "128", "--weights", str(tiny), "--batch_size", "4",
        "--frame_length", "2048", "--backend", "cpu", "--encoder", "x264", "--seed", "1",
        *extra,
    ]  # fmt: skip


def cli(*argv: str) -> Outcome:
    """Run the console entry point in-process, as a user's shell would."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        try:
            main(list(argv))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        return Outcome(code, out.getvalue().decode(), err.getvalue().decode())


def tree(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, as relative paths."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def failed(result: Outcome, code: int, *needles: str) -> str:
    """Assert one handled failure: the code, one line on stderr naming it, no traceback."""
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


def succeeded(result: Outcome) -> None:
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def audio_of(path: Path) -> tuple[int, int, float]:
    """(channels, rate, seconds) of the video's audio track."""
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(a))
        return a.codec_context.channels, a.codec_context.sample_rate, samples / a.rate


# Signals (a subprocess running the CLI; a marker file says the chosen point is reached)

_CHILD = r"""
import signal, sys, time
from pathlib import Path

point, marker = sys.argv[1], Path(sys.argv[2])
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal


def hold(run_options=None):
    # A long call: a signal to the main thread ends it there; on a render's lane (another
    # thread) it ends, like an ONNX Runtime call, once its RunOptions say terminate.
    marker.write_text("reached")
    for _ in range(600):
        if run_options is not None and run_options.terminate:
            return
        time.sleep(0.1)


def hold_at(owner, name, call=1):
    real = getattr(owner, name)
    calls = [0]

    def wrapper(*a, **k):
        calls[0] += 1
        if calls[0] == call:
            hold(k.get("run_options"))
        return real(*a, **k)

    setattr(owner, name, wrapper)


if point == "analysis":
    from dmv_fast.audio import features as audio
    hold_at(audio, "analyze")
elif point in ("encode", "frames"):
    from dmv_fast.model import runtime
    hold_at(runtime.Generator, "generate", 3)
elif point == "export":
    import onnx.checker
    hold_at(onnx.checker, "check_model")
elif point == "record":
    from dmv_fast.render import record
    hold_at(record.StagedRecord, "publish")

from dmv_fast.cli.app import main
main(sys.argv[3:])
"""


def _spawn(run: Path, tiny: Path, point: str, marker: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, point, str(marker), *args(run, tiny, *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _wait_for(marker: Path, proc: subprocess.Popen) -> None:
    """Until the child has reached the chosen point (or died, which fails the row)."""
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the child ended early: {proc.returncode} {proc.stderr.read()}")
        assert time.monotonic() < deadline, "the child never reached the point"
        time.sleep(0.05)
