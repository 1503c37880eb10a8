"""Fault rows of segmented renders' worker processes and Ray: workers live and die with their
driver, a signal stops the render at once, a dead worker's segment is rendered again, a Ray
address that cannot work fails in one line before any analysis.

Each row runs the CLI in a subprocess (``render --workers 2`` on the tiny model, a 2 s song in
8-frame segments: three segments) and checks what a user would see: the exit code, the one
line on stderr, the files left, the frames read back, and the process table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from _faults import (  # noqa: F401
    OUT,
    SONG,
    args,
    cache,
    frames_in,
    run,
    tiny,
    tree,
    warm_cache,
)

FRAMES = 22  # a 2 s song at 22050 / 2048 fps
SEGMENTS = "o.segments"

# The driver's script. At its top level (which spawned workers run too, as ``__mp_main__``)
# it cuts segments of 8 frames and, with DMV_TEST_HOLD, makes the first worker that writes a
# segment other than 00000 hold it (its temporary written) until it is stopped; the held
# worker's pid goes to DMV_TEST_HOLD.pid. With DMV_TEST_CRASH, segment 00001 kills its worker
# every time. With DMV_TEST_ANALYSIS, a file marks the analysis; with DMV_TEST_HOLD_RAY, the
# driver holds once its Ray actors are there.
_DRIVER = r"""
import os, signal, sys, time
from pathlib import Path

from dmv_fast.render import job, segmented, workers

segmented.render_many.__kwdefaults__["segment_frames"] = 8
segmented.render_segmented.__kwdefaults__["segment_frames"] = 8
HOLD = os.environ.get("DMV_TEST_HOLD")
ANALYSIS = os.environ.get("DMV_TEST_ANALYSIS")
CRASH = os.environ.get("DMV_TEST_CRASH")

if HOLD or CRASH:
    real_writer = workers.segment_writer

    def writer(path, *a, **k):
        if CRASH and Path(path).name == "00001.mp4":
            os._exit(1)  # every time: the worker dies as a crash would
        w = real_writer(path, *a, **k)
        if not HOLD or Path(path).name == "00000.mp4":
            return w
        write = w.write

        def held(batch):
            write(batch)
            try:
                os.rename(HOLD, HOLD + ".taken")  # one worker only, once
            except FileNotFoundError:
                return
            Path(HOLD + ".tmp").write_text(str(os.getpid()))
            os.rename(HOLD + ".tmp", HOLD + ".pid")
            time.sleep(600)

        w.write = held
        return w

    workers.segment_writer = writer

if os.environ.get("DMV_TEST_HOLD_RAY"):
    from dmv_fast.render import ray_pool

    def hold_ray(self, tasks):
        Path(os.environ["DMV_TEST_HOLD_RAY"]).write_text("joined")
        time.sleep(600)
        yield from ()

    ray_pool.RayPool.run = hold_ray

if ANALYSIS:
    real_analyze = job.analyze

    def analyze(*a, **k):
        Path(ANALYSIS).write_text("analysed")
        return real_analyze(*a, **k)

    job.analyze = analyze

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    from dmv_fast.cli.app import main

    main(sys.argv[1:])
"""


def _driver(run: Path, argv: list[str], **env: str) -> subprocess.Popen:
    """The CLI in its own session (process group), as a terminal's job."""
    script = run.parent / "driver.py"
    script.write_text(_DRIVER)
    return subprocess.Popen(
        [sys.executable, str(script), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )


def _until(condition, what: str, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``condition()`` (generously: only a hang fails here)."""
    deadline = time.monotonic() + 240
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the render ended first: {proc.returncode} {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def _held(
    run: Path, tiny: Path, argv: list[str] | None = None, folder: str = SEGMENTS
) -> tuple[subprocess.Popen, int, list[psutil.Process]]:
    """A ``--workers 2`` render (or ``argv``) with one worker holding segment 1 or 2 and the
    other two segments finished in ``run/folder``: (the driver, the held worker's pid, every
    process of the render)."""
    hold = run.parent / "hold"
    hold.write_text("")
    argv = argv or args(run, tiny, "--workers", "2")
    proc = _driver(run, argv, DMV_TEST_HOLD=str(hold))
    pid_file = Path(f"{hold}.pid")
    _until(pid_file.exists, "a worker holds a segment", proc)
    held = int(pid_file.read_text())
    path = run / folder
    _until(lambda: len(_segments(path)) == 2, "the other two segments are done", proc)
    assert _segments(path) < {"00000.mp4", "00001.mp4", "00002.mp4"}
    processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert held in {p.pid for p in processes}
    return proc, held, processes


def _segments(folder: Path) -> set[str]:
    """The finished segments in ``folder``."""
    return {p.name for p in folder.glob("0*.mp4")} if folder.exists() else set()


def _only_finished(folder: Path) -> None:
    """Two finished segments (with their checksums, for those the driver had taken in) and the
    manifest: no temporary, no lock, nothing of the held one."""
    sums = {f"{Path(name).stem}.sha256" for name in _segments(folder)}
    left = tree(folder) - sums
    assert left == {*_segments(folder), "manifest.json"}
    assert len(_segments(folder)) == 2


def _gone(processes: list[psutil.Process]) -> bool:
    def alive(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return not any(alive(p) for p in processes)


def _one_line(err: str, *needles: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Local workers


@pytest.mark.parametrize(
    ("sig", "code", "says"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "interrupted by SIGTERM")],
)
def test_a_signal_to_the_process_group_stops_the_render_at_once(run, cache, tiny, sig, code, says):
    """A terminal's Ctrl-C (or SIGTERM to the job) reaches the driver and its workers: one
    line, the exit code of the signal, only finished segments kept, no process left."""
    proc, _, processes = _held(run, tiny)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)  # the held segment would take 600 s
    assert proc.returncode == code, err
    _one_line(err, says)
    _only_finished(run / SEGMENTS)
    assert sorted(p.name for p in run.iterdir()) == [SEGMENTS, SONG]
    _until(lambda: _gone(processes), "every process of the render has ended")


def test_sigterm_to_a_batch_driver_alone_stops_its_workers_at_once(run, cache, tiny):
    """Only the driver gets the signal: it ends its workers itself, at once."""
    argv = ["batch", str(run / SONG), "--out-dir", str(run), "-q", "--workers", "2",
            "--resolution", "128", "--weights", str(tiny), "--batch_size", "4",
            "--frame_length", "2048", "--backend", "cpu", "--seed", "1"]  # fmt: skip
    proc, _, processes = _held(run, tiny, argv, folder="song.segments")
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)  # the held segment would take 600 s
    assert proc.returncode == 143, err
    _one_line(err, "interrupted by SIGTERM")
    _only_finished(run / "song.segments")
    assert sorted(p.name for p in run.iterdir()) == ["song.segments", SONG]
    _until(lambda: _gone(processes), "every process of the batch has ended")


def test_sigkill_of_the_driver_ends_its_workers(run, cache, tiny):
    proc, held, processes = _held(run, tiny)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    _until(lambda: _gone(processes), "every worker has ended")
    # The held worker cleaned up as it went: no temporary and no new segment. The killed
    # driver's lock stays (it could not release it); the next run sweeps it.
    (run / SEGMENTS / "lock").unlink()
    _only_finished(run / SEGMENTS)


def test_a_worker_killed_mid_render_is_replaced_and_the_video_is_complete(run, cache, tiny):
    proc, held, _ = _held(run, tiny)
    os.kill(held, signal.SIGKILL)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "died (killed by SIGKILL)" in err  # said once, as a warning
    assert frames_in(run / OUT) == FRAMES
    assert sorted(p.name for p in run.iterdir()) == sorted([SONG, OUT, "o.dmv.npz", "o.dmv.json"])


def test_a_segment_whose_workers_keep_dying_fails_in_one_line(run, cache, tiny):
    """Three fresh workers in a row die on it too: the render gives up in one line (after a
    warning per death) and keeps the segments finished."""
    proc = _driver(run, args(run, tiny, "--workers", "2"), DMV_TEST_CRASH="1")
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err
    warnings, error = err.strip().splitlines()[:-1], err.strip().splitlines()[-1:]
    assert len(warnings) == 3 and all("died (exit code 1)" in w for w in warnings), err
    _one_line(error[0], "died 4 times")
    sums = {f"{Path(name).stem}.sha256" for name in _segments(run / SEGMENTS)}
    assert tree(run / SEGMENTS) == {*_segments(run / SEGMENTS), *sums, "manifest.json"}
    assert "00001.mp4" not in tree(run / SEGMENTS)


@pytest.mark.parametrize("backend", ["cpu", "auto"])
def test_workers_follow_the_drivers_quiet(run, cache, tiny, backend):
    """``-q`` reaches the workers, and what the plan has to say is said once, by the driver:
    ``--backend cpu`` prints nothing, ``auto`` on a machine without a GPU one warning."""
    from dmv_fast.settings.plan import resolve
    from dmv_fast.settings.spec import ModelSpec

    warning = resolve(ModelSpec(resolution=128, backend=backend), encoder="x264").warning
    proc = _driver(run, [*args(run, tiny, "--workers", "2"), "--backend", backend])
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert out == ""
    assert err.splitlines() == ([f"WARNING: {warning}"] if warning else [])
    assert frames_in(run / OUT) == FRAMES


# ---------------------------------------------------------------------------------------------
# Ray


@pytest.mark.parametrize(
    ("address", "says"),
    [("127.0.0.1:1", "127.0.0.1:1"), ("abc", "'abc'"), ("ray://127.0.0.1:1", "127.0.0.1:1")],
)
@pytest.mark.parametrize("command", ["render", "batch"])
def test_a_ray_address_that_cannot_work_fails_before_the_analysis(
    run, cache, tiny, address, says, command
):
    pytest.importorskip("ray")
    marker = run.parent / "analysed"
    if command == "render":
        argv = args(run, tiny, "--ray", address)
    else:
        argv = ["batch", str(run / SONG), "--out-dir", str(run), "-q", "--ray", address,
                "--resolution", "128", "--weights", str(tiny), "--backend", "cpu"]  # fmt: skip
    proc = _driver(run, argv, DMV_TEST_ANALYSIS=str(marker))
    _, err = proc.communicate(timeout=120)  # a cluster that never answers would hang
    assert proc.returncode == 1, err
    _one_line(err, "ray", says)
    assert not marker.exists()
    assert sorted(p.name for p in run.iterdir()) == [SONG]


def test_no_ray_cluster_to_join_says_how_to_start_one(run, cache, tiny):
    pytest.importorskip("ray")
    from ray._private.services import get_ray_address_from_environment

    try:  # `auto` finds any cluster running on this machine, another test run's included
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if found:
        pytest.skip(f"a Ray cluster already runs on this machine ({found}): auto would join it")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    script = run.parent / "driver.py"
    script.write_text(_DRIVER)
    proc = subprocess.run(
        [sys.executable, str(script), *args(run, tiny, "--ray", "auto")],
        capture_output=True,
        text=True,
        env={**env, "TMPDIR": str(run.parent), "RAY_TMPDIR": str(run.parent / "ray")},
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    line = _one_line(proc.stderr, "no Ray cluster", "ray start --head", "--ray local")
    assert "--address" not in line
    assert sorted(p.name for p in run.iterdir()) == [SONG]


def test_sigterm_to_a_ray_driver_exits_143_in_one_line(run, cache, tiny):
    """Ray's own SIGTERM handler (exit 1 and a stack dump) does not replace the render's."""
    pytest.importorskip("ray")
    marker = run.parent / "joined"
    proc = _driver(run, args(run, tiny, "--ray", "local"), DMV_TEST_HOLD_RAY=str(marker))
    _until(marker.exists, "the driver has its Ray actors", proc)
    processes = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    _one_line(err, "interrupted by SIGTERM")
    assert sorted(p.name for p in run.iterdir()) == [SEGMENTS, SONG]  # with its manifest
    _until(lambda: _gone(processes), "the driver's Ray instance has ended")
