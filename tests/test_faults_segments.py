"""Fault rows of segmented renders, the folders beside an output, ``batch`` and the model
cache: what a user would notice (exit code, the one line, the exact files left, durations
read back from the file)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
from _faults import (  # noqa: F401  (fixtures)
    ENOSPC,
    OUT,
    RESULT,
    SONG,
    _write_song,
    args,
    cache,
    cli,
    empty_cache,
    failed,
    files,
    run,
    succeeded,
    tiny,
    tree,
    warm_cache,
)

from dmv_fast.render.segment_folder import SegmentFolder
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.spec import ModelSpec
from dmv_fast.video.segments import plan_segments

SEGMENT_FRAMES = 8


def _spec(tiny: Path) -> ModelSpec:
    return ModelSpec(resolution=128, weights=str(tiny), batch_size=4, backend="cpu")


def _opts(folder: Path, out: str = OUT, seed: int | None = 1, **kw) -> RenderOptions:
    return RenderOptions(
        song=str(folder / SONG),
        output_file=str(folder / out),
        frame_length=2048,
        seed=seed,
        encoder="x264",
        **kw,
    )


def _segmented(opts: RenderOptions, tiny: Path, **kw):
    from dmv_fast.render.segmented import render_segmented

    return render_segmented(opts, _spec(tiny), workers=1, segment_frames=SEGMENT_FRAMES, **kw)


def _no_analysis(monkeypatch) -> None:
    """The row fails the run if the song's analysis starts."""

    def analysis(*a, **k):
        raise AssertionError("the analysis started")

    monkeypatch.setattr("dmv_fast.render.job.analyze", analysis)


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _durations(path: Path) -> tuple[float, float, float, int]:
    """(container, video, audio) seconds and the video's frame count, read back by PyAV."""
    with av.open(str(path)) as c:
        container = c.duration / av.time_base
    with av.open(str(path)) as c:
        times = [f.time for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        audio = sum(f.samples for f in c.decode(a)) / a.rate
    step = times[1] - times[0]
    return container, times[-1] + step, audio, len(times)


# ---------------------------------------------------------------------------------------------
# Segmented Matroska: the audio keeps its timing


def test_segmented_mkv_has_the_duration_of_its_song(run, tiny, cache):
    """A 2 s song gives a 2 s container, as the one-process render of the same .mkv does."""
    from dmv_fast.render.api import render

    seen = {}
    for out in ("seg.mkv", "seg.mp4"):
        result = _segmented(_opts(run, out), tiny)
        seen[out] = _durations(result.output)
    one = render(_opts(run, "one.mkv"), _spec(tiny))
    seen["one.mkv"] = _durations(one.output)
    frames = one.frames
    for name, (container, video, audio, n) in seen.items():
        assert n == frames, name
        assert abs(video - frames / float(one.fps)) < 1e-3, name
        assert abs(audio - video) < 0.01, (name, audio, video)
        assert container < 2.2, (name, container)  # not 44 s
    assert abs(seen["seg.mkv"][0] - seen["one.mkv"][0]) < 1e-3
    assert files(run) == {SONG} | {
        f"{stem}{ext}" for stem in ("seg", "one") for ext in (".dmv.npz", ".dmv.json")
    } | {"seg.mkv", "seg.mp4", "one.mkv"}


# ---------------------------------------------------------------------------------------------
# User data beside the output is never touched


@pytest.mark.parametrize(
    ("name", "extra"), [("o.dmv.json", []), ("o.dmv.npz", ["-y"]), ("o.plot.png", ["-y"])]
)
def test_a_song_named_like_a_record_file_is_refused(name, extra, run, tiny, cache, monkeypatch):
    (run / SONG).rename(run / name)
    before = _contents(run)
    _no_analysis(monkeypatch)
    failed(cli(*args(run, tiny, *extra, song=name)), 1, name, "rename the song")
    assert _contents(run) == before


def _foreign_folder(run: Path, with_manifest: bool) -> None:
    folder = run / "o.segments"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "00000.mp4").write_bytes(b"my own video")
    if with_manifest:
        (folder / "manifest.json").write_text(json.dumps({"format": "dmv-fast-segments"}))


@pytest.mark.parametrize("extra", [["-q"], ["-y", "-q"]], ids=["", "-y"])
@pytest.mark.parametrize("with_manifest", [False, True], ids=["foreign", "manifest+foreign"])
def test_a_users_segments_folder_is_never_reused_or_removed(
    extra, with_manifest, run, tiny, cache, monkeypatch
):
    _foreign_folder(run, with_manifest)
    before = _contents(run)
    _no_analysis(monkeypatch)
    line = failed(cli(*args(run, tiny, "--workers", "2", *extra)), 1, "o.segments")
    assert "did not write" in line
    assert _contents(run) == before


def test_segments_without_a_dmv_fast_manifest_are_not_dmv_fasts(run, tiny, cache, monkeypatch):
    folder = run / "o.segments"
    folder.mkdir()
    (folder / "00000.mp4").write_bytes(b"my own video")
    before = _contents(run)
    _no_analysis(monkeypatch)
    failed(cli(*args(run, tiny, "--workers", "2")), 1, "o.segments", "no dmv-fast manifest")
    assert _contents(run) == before


def test_removal_after_the_join_keeps_files_dmv_fast_did_not_write(tmp_path):
    folder = tmp_path / "o.segments"
    store = SegmentFolder.open(folder, {"frames": 3})
    seg = plan_segments(3, 8)[0]
    store.finished(seg, b"segment bytes")
    (folder / "late.txt").write_text("appeared meanwhile")
    store.remove()
    assert tree(folder) == {"late.txt"}


# ---------------------------------------------------------------------------------------------
# One run at a time in a segments folder


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_a_second_run_into_a_held_segments_folder_fails_in_one_line(
    run, tiny, cache, monkeypatch, live_pid
):
    folder = run / "o.segments"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": "dmv-fast-segments"}))
    (folder / "lock").write_text(f"{live_pid}\n")
    before = _contents(run)
    _no_analysis(monkeypatch)
    failed(cli(*args(run, tiny, "--workers", "2")), 1, f"another run (pid {live_pid})")
    assert _contents(run) == before


@pytest.mark.parametrize("case", ["dead pid", "pid reused"])
def test_a_stale_lock_is_swept(case, run, tiny, cache, live_pid):
    if case == "dead pid":
        proc = subprocess.Popen(["true"])
        proc.wait()
        lock = f"{proc.pid}\n"
    else:  # a live process that started at another time than the one that wrote the lock
        lock = f"{live_pid} 1\n"
    folder = run / "o.segments"
    folder.mkdir()
    (folder / "lock").write_text(lock)
    _segmented(_opts(run), tiny)
    assert files(run) == RESULT


def test_two_segmented_renders_to_one_output_one_wins(run, tiny, cache):
    """Two processes render the same new output with two workers each: one exits 0, the
    other 1 in one line (it found the folder held, or the video made)."""
    code = "import sys; from dmv_fast.cli.app import main; main(sys.argv[1:])"
    argv = args(run, tiny, "--workers", "2")[:]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    assert sorted(c for c, _ in outcomes) == [0, 1], outcomes
    loser = next(err for c, err in outcomes if c == 1).strip()
    assert len(loser.splitlines()) == 1 and loser.startswith("error: "), loser
    assert "another run" in loser or "already exists" in loser, loser
    assert "Errno" not in loser
    assert files(run) == RESULT


def test_an_interrupted_render_gives_its_folder_up(run, tiny, cache, monkeypatch):
    """Interrupted after its first segment: the segments stay, the lock goes, so any other
    process may resume them at once; the rerun renders the rest."""
    real = SegmentFolder.finished
    calls = []

    def interrupted(self, *a, **k):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(SegmentFolder, "finished", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _segmented(_opts(run), tiny)
    names = files(run / "o.segments")
    assert {"manifest.json", "00000.mp4", "00000.sha256"} <= names and "lock" not in names
    monkeypatch.setattr(SegmentFolder, "finished", real)
    _segmented(_opts(run), tiny)
    assert files(run) == RESULT


# ---------------------------------------------------------------------------------------------
# A damaged segment is rendered again


def _flip(path: Path, offset: int = 600, size: int = 2048) -> None:
    data = bytearray(path.read_bytes())
    end = min(len(data), offset + size)
    data[offset:end] = bytes(b ^ 0xFF for b in data[offset:end])
    path.write_bytes(bytes(data))


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def test_a_bit_flipped_segment_is_rendered_again(run, tiny, cache, caplog):
    first = _segmented(_opts(run), tiny, keep_segments=True)
    reference = _packets(first.output)
    folder = run / "o.segments"
    names = files(folder)
    assert names == {"manifest.json"} | {
        f"{i:05d}.{ext}" for i in range(len(names) // 2) for ext in ("mp4", "sha256")
    }
    damaged = folder / "00000.mp4"
    _flip(damaged)
    for name in ("o.mp4", "o.dmv.npz", "o.dmv.json"):
        (run / name).unlink()
    again = _segmented(_opts(run), tiny)
    assert "is not the file recorded" in caplog.text
    assert _packets(again.output) == reference
    assert files(run) == RESULT


def test_a_segment_changed_before_the_join_is_refused(tmp_path):
    folder = tmp_path / "o.segments"
    store = SegmentFolder.open(folder, {"frames": 10})
    segs = plan_segments(10, 8)
    for seg in segs:
        store.finished(seg, bytes(range(256)) * 20)
    _flip(folder / "00001.mp4", 10, 100)
    with pytest.raises(RuntimeError, match="00001.mp4.*run the same command again"):
        store.verify(segs)
    assert not (folder / "00001.mp4").exists() and not (folder / "00001.sha256").exists()
    assert store.missing(segs) == [segs[1]]


def test_a_segment_without_its_checksum_is_rendered_again(tmp_path):
    """A worker published it after its driver had stopped: nothing vouches for it."""
    folder = tmp_path / "o.segments"
    store = SegmentFolder.open(folder, {"frames": 10})
    segs = plan_segments(10, 8)
    store.finished(segs[0], b"first")
    (folder / "00001.mp4").write_bytes(b"second, never recorded")
    assert store.missing(segs) == [segs[1]]
    assert files(folder) == {"manifest.json", "lock", "00000.mp4", "00000.sha256"}


# ---------------------------------------------------------------------------------------------
# A one-process rerun of an interrupted segmented render


def test_a_one_process_rerun_continues_the_seed_and_removes_the_segments(run, tiny, cache):
    from dmv_fast.render.api import render

    first = _segmented(_opts(run, seed=None), tiny, keep_segments=True)
    manifest = json.loads((run / "o.segments" / "manifest.json").read_text())
    assert manifest["seed"] == first.seed
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / "o.segments" / "lock").write_text(f"{dead.pid}\n")  # its run was killed
    for name in ("o.mp4", "o.dmv.npz", "o.dmv.json"):
        (run / name).unlink()
    again = render(_opts(run, seed=None), _spec(tiny))
    assert again.seed == first.seed
    assert files(run) == RESULT


# ---------------------------------------------------------------------------------------------
# batch: resume with the same command, no leftovers


def _batch(run: Path, tiny: Path, *songs: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        "batch", *(str(run / s) for s in songs), "--out-dir", str(run / "out"),
        "--resolution", "128", "--weights", str(tiny), "--batch_size", "4",
        "--frame_length", "2048", "--backend", "cpu", "--seed", "1", "--workers", "1",
        *extra,
    ]  # fmt: skip


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_batch_rerun_skips_finished_songs_and_renders_the_rest(run, tiny, cache):
    _write_song(run / "s2.wav", seconds=1.0)
    (run / SONG).rename(run / "s1.wav")
    out = run / "out"
    succeeded(cli(*_batch(run, tiny, "s1.wav", "s2.wav", extra=("-q",))))
    done = {f"{s}{ext}" for s in ("s1", "s2") for ext in (".mp4", ".dmv.npz", ".dmv.json")}
    assert files(out) == done
    # Song 2 did not finish (as after a SIGTERM between the songs).
    for ext in (".mp4", ".dmv.npz", ".dmv.json"):
        (out / f"s2{ext}").unlink()
    kept = _stamps(out)
    result = cli(*_batch(run, tiny, "s1.wav", "s2.wav"))
    succeeded(result)
    assert "s1.mp4 is already rendered with these settings: skipping it" in result.stderr
    assert files(out) == done
    assert {n: t for n, t in _stamps(out).items() if n in kept} == kept
    # Nothing left: the same command renders nothing; another setting is refused; -y renders
    # every song again.
    kept = _stamps(out)
    succeeded(cli(*_batch(run, tiny, "s1.wav", "s2.wav", extra=("-q",))))
    assert _stamps(out) == kept
    failed(
        cli(*_batch(run, tiny, "s1.wav", "s2.wav", extra=("-q", "--truncation", "0.5"))),
        1,
        "s1.mp4",
        "already exists",
    )
    assert _stamps(out) == kept
    succeeded(cli(*_batch(run, tiny, "s1.wav", "s2.wav", extra=("-q", "-y"))))
    assert all(t != kept[n] for n, t in _stamps(out).items())


def _junk_mp3(path: Path) -> Path:
    """An MP3 whose header reads (one valid frame) and whose audio does not decode."""
    rate = 22050
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libmp3lame", rate=rate, layout="mono")
        for i in range(8):
            tone = (0.3 * np.sin(np.arange(1152) * 0.1)).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, i * 1152
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    data = path.read_bytes()[:600] + np.random.default_rng(0).bytes(20000)
    path.write_bytes(data)
    return path


def test_batch_checks_every_song_before_analysing_any(run, tiny, cache, monkeypatch):
    from dmv_fast.render.preflight import check_song

    check_song(_junk_mp3(run / "garbage.mp3"))  # its header reads: only decoding tells
    _write_song(run / "s2.wav", seconds=1.0)
    before = _contents(run)
    _no_analysis(monkeypatch)
    result = cli(*_batch(run, tiny, SONG, "garbage.mp3", "s2.wav", extra=("-q",)))
    failed(result, 1, "garbage.mp3")
    assert _contents(run) == before and not (run / "out").exists()


@pytest.mark.parametrize("fault", [ValueError("song 2 cannot be analysed"), KeyboardInterrupt()])
def test_a_failure_while_preparing_leaves_no_segments_folder(fault, run, tiny, cache, monkeypatch):
    """Song 1 is prepared (its folder and manifest made), song 2's analysis fails."""
    from dmv_fast.audio.features import analyze
    from dmv_fast.render.segmented import render_many

    _write_song(run / "s2.wav", seconds=1.0)
    calls = []

    def analysis(*a, **k):
        calls.append(a)
        if len(calls) == 2:
            raise fault
        return analyze(*a, **k)

    monkeypatch.setattr("dmv_fast.render.job.analyze", analysis)
    songs = [_opts(run), replace(_opts(run, "s2.mp4"), song=str(run / "s2.wav"))]
    with pytest.raises(type(fault)):
        render_many(songs, _spec(tiny), workers=1, segment_frames=SEGMENT_FRAMES)
    assert len(calls) == 2
    assert files(run) == {SONG, "s2.wav"}


BATCH_ERRORS = {
    "missing song": (["nope.wav"], (), "nope.wav"),
    "weights typo": ([SONG], ("--weights", "biggan-deep-999"), "unknown weights"),
    "output exists": ([SONG], (), "already exists"),
    "a user's segments folder": ([SONG], (), "did not write"),
}


@pytest.mark.parametrize("case", list(BATCH_ERRORS))
@pytest.mark.parametrize("nested", [False, True], ids=["", "nested"])
def test_batch_failures_leave_no_out_dir(case, nested, run, tiny, cache, monkeypatch):
    songs, extra, needle = BATCH_ERRORS[case]
    argv = _batch(run, tiny, *songs, extra=("-q", *extra))
    if case == "weights typo":
        argv[argv.index(str(tiny))] = "biggan-deep-999"
    out = run / "out" / "videos" if nested else run / "out"
    argv[argv.index("--out-dir") + 1] = str(out)
    if case in ("output exists", "a user's segments folder"):
        out.mkdir(parents=True)
        if case == "output exists":
            (out / "song.mp4").write_bytes(b"keep")
        else:
            (out / "song.segments").mkdir()
            (out / "song.segments" / "mine.txt").write_text("keep")
    before = _contents(run)
    _no_analysis(monkeypatch)
    failed(cli(*argv), 1, needle)
    assert _contents(run) == before
    if case in ("missing song", "weights typo"):
        assert files(run) == {SONG}


# ---------------------------------------------------------------------------------------------
# Late checks made early: weights, export --output, a full cache


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "segmented"])
@pytest.mark.parametrize("case", ["typo", "empty folder", "folder without config"])
def test_bad_weights_fail_before_analysis(case, workers, run, tiny, cache, monkeypatch, tmp_path):
    argv = args(run, tiny, *workers)
    bad = tmp_path / "weights"
    if case == "typo":
        value, needle = "biggan-deep-999", "unknown weights"
    else:
        bad.mkdir()
        if case == "folder without config":
            (bad / "pytorch_model.bin").write_bytes((tiny / "pytorch_model.bin").read_bytes())
        value, needle = str(bad), "has no"
    argv[argv.index(str(tiny))] = value
    _no_analysis(monkeypatch)
    failed(cli(*argv), 1, needle)
    assert files(run) == {SONG}


def test_export_into_a_folder_that_takes_no_file_fails_before_exporting(tiny, empty_cache):
    def no_export(*a, **k):
        raise AssertionError("the export started")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("dmv_fast_export.make_graph", no_export)
        argv = ["export", "--resolution", "128", "--weights", str(tiny), "--batch_size", "4"]
        result = cli(*argv, "--backend", "cpu", "-q", "--output", "/proc/dmv-fast.onnx")
    failed(result, 1, "does not take a new file", "/proc")
    assert tree(empty_cache) == set()


def test_a_full_model_cache_names_the_cache_file(run, tiny, empty_cache, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("onnx.save_model", full)
    line = failed(cli(*args(run, tiny)), 1, "disk full", str(empty_cache / "onnx"), ".onnx")
    assert OUT not in line
    assert files(run) == {SONG}


# ---------------------------------------------------------------------------------------------
# Checksums are of the bytes on disk


def test_the_recorded_checksum_is_the_segments_sha256(tmp_path):
    folder = tmp_path / "o.segments"
    store = SegmentFolder.open(folder, {"frames": 4})
    seg = plan_segments(4, 8)[0]
    store.finished(seg, b"abc")
    digest = (folder / "00000.sha256").read_text().strip()
    assert digest == hashlib.sha256(b"abc").hexdigest()
    assert oct((folder / "00000.sha256").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
