"""The fault table: bad inputs, unwritable outputs, damaged files, full disks, signals, races.

Every row runs the real CLI (in-process where no signal is involved, a subprocess where one
is) with a tiny BigGAN-deep model and checks what a user would see: the exit code, exactly
one line on stderr naming the problem, no traceback, and the exact files left in the output
folder and in the model cache.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from _faults import (  # noqa: F401  (fixtures)
    _CHILD,
    ENOSPC,
    OUT,
    RESULT,
    SONG,
    Outcome,
    _finish,
    _spawn,
    _wait_for,
    _write_song,
    args,
    audio_of,
    cache,
    cli,
    empty_cache,
    failed,
    files,
    frames_in,
    run,
    succeeded,
    tiny,
    tree,
    warm_cache,
)

pytest.importorskip("torch")

# ---------------------------------------------------------------------------------------------
# Bad songs


def _noise(n: int, channels: int) -> np.ndarray:
    return (np.random.default_rng(0).random((n, channels)) * 0.2 - 0.1).astype(np.float32)


BAD_SONGS: dict[str, tuple[Callable[[Path], None], str | None]] = {
    # name: (make the song at path, None = renders fine, else a word of the error)
    "empty file": (lambda p: p.write_bytes(b""), "empty"),
    "text renamed .wav": (lambda p: p.write_text("not music\n" * 50), "not a readable audio"),
    "random bytes": (
        lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)),
        "not a readable audio",
    ),
    "header only": (lambda p: p.write_bytes(_wav_bytes(p)[:44]), "no audio samples"),
    "truncated mid-data": (lambda p: p.write_bytes(_wav_bytes(p)[:20000]), None),
    "silent": (lambda p: sf.write(p, np.zeros(44100, np.float32), 22050), None),
    "one sample": (lambda p: sf.write(p, np.full(1, 0.1, np.float32), 22050), None),
    "nine channels": (lambda p: sf.write(p, _noise(22050, 9), 22050), "9 channels"),
    "one hertz": (lambda p: sf.write(p, _noise(3, 1), 1), "1 Hz"),
    "a folder": (lambda p: p.mkdir(), "not a file"),
    "missing": (lambda p: None, "does not exist"),
    "an image": (
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100)),
        "no audio stream",
    ),
}


def _wav_bytes(p: Path) -> bytes:
    tmp = p.with_name("full.wav")
    _write_song(tmp)
    data = tmp.read_bytes()
    tmp.unlink()
    return data


@pytest.mark.parametrize("case", list(BAD_SONGS))
def test_bad_song(case, tmp_path, tiny, cache, warm_cache):
    make, problem = BAD_SONGS[case]
    folder = tmp_path / "run"
    folder.mkdir()
    make(folder / SONG)
    before = files(folder)
    result = cli(*args(folder, tiny))
    if problem is None:
        succeeded(result)
        assert files(folder) == before | {OUT, "o.dmv.npz", "o.dmv.json"}
        assert frames_in(folder / OUT) >= 1
        assert audio_of(folder / OUT)[0] == 1
    else:
        failed(result, 1, problem)
        assert files(folder) == before
    assert tree(cache) == tree(warm_cache)


@pytest.mark.parametrize("channels", [6, 8])
def test_many_channel_song_keeps_its_channels(channels, run, tiny, cache):
    """8-channel planar audio used to crash the interpreter in the audio encoder."""
    _write_song(run / SONG, channels=channels)
    succeeded(cli(*args(run, tiny)))
    assert files(run) == RESULT
    got_channels, rate, seconds = audio_of(run / OUT)
    assert (got_channels, rate) == (channels, 22050)
    assert abs(seconds - frames_in(run / OUT) * 2048 / 22050) < 0.1


# ---------------------------------------------------------------------------------------------
# Bad option values: each fails in one line before any work


BAD_OPTIONS = [
    (["--duration", "0"], 1, "duration"),
    (["--duration", "-1"], 1, "duration"),
    (["--duration", "nan"], 1, "duration"),
    (["--duration", "inf"], 1, "duration"),
    (["--duration", "two"], 2, "--duration"),
    (["--pitch_sensitivity", "0"], 1, "pitch_sensitivity"),
    (["--pitch_sensitivity", "300"], 1, "pitch_sensitivity"),
    (["--pitch_sensitivity", "nan"], 1, "pitch_sensitivity"),
    (["--tempo_sensitivity", "0"], 1, "tempo_sensitivity"),
    (["--tempo_sensitivity", "-0.5"], 1, "tempo_sensitivity"),
    (["--tempo_sensitivity", "inf"], 1, "tempo_sensitivity"),
    (["--depth", "0"], 1, "depth"),
    (["--depth", "1e300"], 1, "depth"),
    (["--depth", "abc"], 2, "--depth"),
    (["--jitter", "-0.1"], 1, "jitter"),
    (["--jitter", "nan"], 1, "jitter"),
    (["--frame_length", "0"], 1, "frame_length"),
    (["--frame_length", "100"], 1, "frame_length"),
    (["--frame_length", "-512"], 1, "frame_length"),
    (["--frame_length", "1.5"], 2, "--frame_length"),
    (["--truncation", "0"], 1, "truncation"),
    (["--truncation", "1.5"], 1, "truncation"),
    (["--truncation", "-inf"], 1, "truncation"),
    (["--smooth_factor", "0"], 1, "smooth_factor"),
    (["--smooth_factor", "-3"], 1, "smooth_factor"),
    (["--batch_size", "0"], 1, "batch_size"),
    (["--batch_size", "-4"], 1, "batch_size"),
    (["--batch_size", "100000"], 1, "batch_size"),
    (["--num_classes", "0"], 1, "num_classes"),
    (["--num_classes", "13"], 1, "num_classes"),
    (["--classes", "1", "2", "3"], 1, "3 given, must be 12 (--num_classes is 12)"),
    (["--classes", "1000"], 1, "999"),
    (["--classes", "not_a_class"], 1, "not_a_class"),
    (["--classes", "--num_classes", "3"], 2, "--classes needs at least one value"),
    (["--crf", "-1"], 1, "crf"),
    (["--crf", "52"], 1, "crf"),
    (["--scaling", "0"], 1, "scaling"),
    (["--scaling", "1000"], 1, "scaling"),
    (["--seed", "-1"], 1, "seed"),
    (["--seed", str(2**64)], 1, "seed"),
    (["--preset", "warp"], 2, "--preset"),
    (["--resolution", "64"], 2, "--resolution"),
    (["--backend", "tpu"], 2, "--backend"),
    (["--use_previous_vectors", "2"], 2, "--use_previous_vectors"),
    (["--no-such-option"], 2, "no such option"),
]


@pytest.mark.parametrize(
    ("extra", "code", "needle"), BAD_OPTIONS, ids=[" ".join(r[0]) for r in BAD_OPTIONS]
)
def test_bad_option(extra, code, needle, run, tiny, cache):
    failed(cli(*args(run, tiny, *extra)), code, needle)
    assert files(run) == {SONG}


def test_help_keeps_brackets_and_long_names():
    result = cli("render", "--help")
    assert result.code == 0
    assert "--sort-classes-by-power, --sort_classes_by_power" in result.stdout
    assert "[required]" in result.stdout and "…" not in result.stdout


# ---------------------------------------------------------------------------------------------
# Outputs that cannot be written


def _read_only(folder: Path, monkeypatch) -> None:
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: show it the folder as other users see it
        import builtins

        real = builtins.open

        def refuse(path, *a, **k):
            if Path(path).parent == folder:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real(path, *a, **k)

        monkeypatch.setattr("dmv_fast.render.preflight.open", refuse, raising=False)


OUTPUTS: dict[str, tuple[Callable[[Path, pytest.MonkeyPatch], str], list[str]]] = {
    # name: (prepare, return the -o value), (error words)
    "missing folder": (lambda f, mp: str(f / "nope" / OUT), ["does not exist"]),
    "read-only folder": (
        lambda f, mp: (_read_only(f, mp), str(f / OUT))[1],
        ["does not take a new file"],
    ),
    "under /proc": (lambda f, mp: "/proc/dmv-fast-out.mp4", ["does not take a new file"]),
    "a folder": (lambda f, mp: ((f / "dir.mp4").mkdir(), str(f / "dir.mp4"))[1], ["a folder"]),
    "name too long": (lambda f, mp: str(f / ("x" * 300 + ".mp4")), ["too long"]),
    "temporary name too long": (lambda f, mp: str(f / ("x" * 240 + ".mp4")), ["too long"]),
    "the song itself": (lambda f, mp: str(_mkv_song(f)), ["the song itself"]),
    "the song through a symlink": (
        lambda f, mp: ((f / "link.mkv").symlink_to(_mkv_song(f)), str(f / "link.mkv"))[1],
        ["the song itself"],
    ),
    "the song through a hard link": (
        lambda f, mp: (os.link(_mkv_song(f), f / "hard.mkv"), str(f / "hard.mkv"))[1],
        ["the song itself"],
    ),
    "not a video suffix": (lambda f, mp: str(f / "o.avi"), ["must end in one of"]),
    "exists already": (
        lambda f, mp: ((f / OUT).write_bytes(b"keep me"), str(f / OUT))[1],
        ["already exists"],
    ),
}


def _mkv_song(folder: Path) -> Path:
    """The song as Matroska audio (a container that is also a valid output suffix)."""
    path = folder / "song.mkv"
    if not path.exists():
        with av.open(str(folder / SONG)) as inp, av.open(str(path), "w") as out:
            stream = out.add_stream("flac", rate=22050, layout="mono")
            for frame in inp.decode(audio=0):
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    return path


@pytest.mark.parametrize("overwrite", [False, True], ids=["", "-y"])
@pytest.mark.parametrize("case", list(OUTPUTS))
def test_unwritable_output(case, overwrite, run, tiny, cache, monkeypatch):
    prepare, needles = OUTPUTS[case]
    if overwrite and case == "exists already":
        pytest.skip("-y replaces it: not a failure")
    target = prepare(run, monkeypatch)
    before = {p: p.read_bytes() for p in run.iterdir() if p.is_file()}
    extra = ["-y"] if overwrite else []
    song = "song.mkv" if (run / "song.mkv").exists() else SONG
    failed(cli(*args(run, tiny, *extra, out=target, song=song)), 1, *needles)
    run.chmod(0o755)
    assert {p: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


# ---------------------------------------------------------------------------------------------
# Damaged records (--use_previous_vectors / --use_previous_classes)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny, warm_cache) -> Path:
    """A folder with a song, its video and its record, made once."""
    folder = tmp_path_factory.mktemp("recorded")
    _write_song(folder / SONG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMV_FAST_CACHE", str(warm_cache))
        succeeded(cli(*args(folder, tiny)))
    return folder


def _edit_json(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _same_size_other_song(folder: Path) -> None:
    """Another song of the same length and byte size."""
    t = np.arange(44100) / 22050
    other = np.sin(2 * np.pi * 500 * t).astype(np.float32) * 0.2
    sf.write(folder / SONG, other, 22050)


RECORDS: dict[str, tuple[Callable[[Path], None], str]] = {
    "npz truncated": (lambda f: _truncate(f / "o.dmv.npz", 0.5), "damaged"),
    "npz empty": (lambda f: (f / "o.dmv.npz").write_bytes(b""), "damaged"),
    "npz random bytes": (
        lambda f: (f / "o.dmv.npz").write_bytes(np.random.default_rng(2).bytes(4000)),
        "damaged",
    ),
    "npz missing": (lambda f: (f / "o.dmv.npz").unlink(), "is missing"),
    "json not json": (lambda f: (f / "o.dmv.json").write_text("{{{"), "damaged"),
    "json empty": (lambda f: (f / "o.dmv.json").write_bytes(b""), "damaged"),
    "json odd types": (
        lambda f: _edit_json(f / "o.dmv.json", duration="long", song_sha256="x"),
        "another song",
    ),
    "json not a record": (lambda f: (f / "o.dmv.json").write_text("[1, 2]"), "not a dmv-fast"),
    "another song, same size": (_same_size_other_song, "another song"),
}


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("flag", ["--use_previous_vectors", "--use_previous_classes"])
@pytest.mark.parametrize("case", list(RECORDS))
def test_damaged_record(case, flag, recorded, tmp_path, tiny, cache):
    folder = tmp_path / "run"
    shutil.copytree(recorded, folder)
    damage, needle = RECORDS[case]
    if case == "another song, same size":
        song_size = (folder / SONG).stat().st_size
        damage(folder)
        assert (folder / SONG).stat().st_size == song_size
    else:
        damage(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    line = failed(cli(*args(folder, tiny, "-y", flag, "1")), 1, needle)
    assert "allow_pickle" not in line and "format code" not in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# ---------------------------------------------------------------------------------------------
# Damaged frames folders (-d resumes and repairs, -s refuses)


@pytest.fixture(scope="module")
def framed(tmp_path_factory, tiny, warm_cache) -> Path:
    """A folder whose -d render finished: song, video, record and o.frames/."""
    folder = tmp_path_factory.mktemp("framed")
    _write_song(folder / SONG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMV_FAST_CACHE", str(warm_cache))
        succeeded(cli(*args(folder, tiny, "-d")))
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


FRAMES: dict[str, tuple[Callable[[Path], None], str, int, str | None]] = {
    # name: (damage o.frames/), flag, exit code, error words
    "-d truncated png": (lambda d: _truncate(d / "000003.png", 0.5), "-d", 0, None),
    "-d garbage png": (lambda d: (d / "000001.png").write_bytes(b"garbage" * 9), "-d", 0, None),
    "-d wrong size png": (lambda d: _png(d / "000002.png", 64), "-d", 0, None),
    "-d missing png": (lambda d: (d / "000004.png").unlink(), "-d", 0, None),
    "-d stale temporary": (
        lambda d: (d / f".000005.png.tmp-{_dead_pid()}-0123abcd").write_bytes(b"x"),
        "-d",
        0,
        None,
    ),
    "-d manifest damaged": (
        lambda d: (d / "manifest.json").write_text("{"),
        "-d",
        1,
        "manifest",
    ),
    "-d pngs without manifest": (
        lambda d: (d / "manifest.json").unlink(),
        "-d",
        1,
        "no manifest.json",
    ),
    "-d folder is a file": (
        lambda d: (shutil.rmtree(d), d.write_bytes(b"x")),
        "-d",
        1,
        "is a file",
    ),
    "-s truncated png": (lambda d: _truncate(d / "000003.png", 0.5), "-s", 1, "frame 3 is"),
    "-s missing folder": (lambda d: shutil.rmtree(d), "-s", 1, "does not exist"),
    "-s other settings": (
        lambda d: _edit_json(d / "manifest.json", truncation=0.5),
        "-s",
        1,
        "other settings",
    ),
}


def _png(path: Path, side: int) -> None:
    from PIL import Image

    Image.new("RGB", (side, side)).save(path)


@pytest.mark.parametrize("case", list(FRAMES))
def test_damaged_frames_folder(case, framed, tmp_path, tiny, cache):
    folder = tmp_path / "run"
    shutil.copytree(framed, folder)
    (folder / OUT).unlink()
    damage, flag, code, needle = FRAMES[case]
    frames_dir = folder / "o.frames"
    reference = frames_in(framed / OUT)
    good = {p.name: p.read_bytes() for p in (framed / "o.frames").iterdir()}
    damage(frames_dir)
    before = tree(folder)
    result = cli(*args(folder, tiny, "-y", flag))
    if code == 0:
        succeeded(result)
        assert files(folder) == RESULT | {"o.frames"}
        assert frames_in(folder / OUT) == reference
        # Repaired: the same frames as the undamaged run, nothing else in the folder.
        assert {p.name: p.read_bytes() for p in frames_dir.iterdir()} == good
    else:
        failed(result, code, needle)
        assert tree(folder) == before


def test_save_only_reads_frames_in_bounded_batches(framed, tmp_path, tiny, cache, monkeypatch):
    """-s with a huge --batch_size reads at most READ_BATCH_BYTES of frames at once."""
    from dmv_fast.render import folders as frames

    folder = tmp_path / "run"
    shutil.copytree(framed, folder)
    monkeypatch.setattr(frames, "READ_BATCH_BYTES", 1 * 128 * 128 * 3)  # below every batch
    real = frames.FrameStore.read
    sizes: list[int] = []

    def read(self, start, stop):
        sizes.append(stop - start)
        return real(self, start, stop)

    monkeypatch.setattr(frames.FrameStore, "read", read)
    succeeded(cli(*args(folder, tiny, "-y", "-s", "--batch_size", "1024")))
    assert max(sizes) == 1 and sum(sizes) == frames_in(folder / OUT) == frames_in(framed / OUT)
    assert files(folder) == RESULT | {"o.frames"}


# ---------------------------------------------------------------------------------------------
# Damaged model caches: rebuilt, never trusted


CACHES: dict[str, Callable[[Path], None]] = {
    "graph truncated": lambda c: _truncate(_only(c, ".onnx"), 0.5),
    "graph empty": lambda c: _only(c, ".onnx").write_bytes(b""),
    "sidecar damaged": lambda c: _only(c, ".json").write_text("{"),
    "sidecar missing": lambda c: _only(c, ".json").unlink(),
    "optimised graph truncated": lambda c: _truncate(_only(c, ".onnx", ".ort-"), 0.5),
    "optimised graph missing": lambda c: _only(c, ".onnx", ".ort-").unlink(),
    "stale export temporary": lambda c: (
        _only(c, ".onnx").parent / f".x.onnx.tmp-{_dead_pid()}-0123abcd"
    ).write_bytes(b"x" * 1000),
}


def _only(cache: Path, suffix: str, kind: str = "") -> Path:
    """The one file ending in ``suffix``: the graph's own (``kind=""``) or, with
    ``kind=".ort-"``, ONNX Runtime's optimised form of it."""
    (found,) = [
        p
        for p in cache.rglob("*" + suffix)
        if not p.name.startswith(".") and (kind in p.name if kind else ".ort-" not in p.name)
    ]
    return found


@pytest.mark.parametrize("case", list(CACHES))
def test_damaged_cache(case, run, tiny, cache, warm_cache):
    CACHES[case](cache)
    succeeded(cli(*args(run, tiny)))
    assert files(run) == RESULT
    assert tree(cache) == tree(warm_cache)


# ---------------------------------------------------------------------------------------------
# A full disk at each write (the write fails with ENOSPC)


def _fail_on_call(n: int, real: Callable, exc: BaseException = ENOSPC) -> Callable:
    calls = {"n": 0}

    def wrapper(*a, **k):
        calls["n"] += 1
        if calls["n"] >= n:
            raise exc
        return real(*a, **k)

    return wrapper


def _full_disk(target: str, n: int = 1) -> Callable[[pytest.MonkeyPatch], None]:
    def apply(mp: pytest.MonkeyPatch) -> None:
        import importlib

        module_name, _, attr = target.rpartition(".")
        try:
            owner = importlib.import_module(module_name)
        except ModuleNotFoundError:  # a class attribute: module.Class.method
            mod, _, cls = module_name.rpartition(".")
            owner = getattr(importlib.import_module(mod), cls)
        mp.setattr(owner, attr, _fail_on_call(n, getattr(owner, attr)))

    return apply


DISK_FULL = {
    # name: (patch, extra flags, files left in the output folder)
    "record vectors": (_full_disk("dmv_fast.render.record.np.savez_compressed"), [], {SONG}),
    "record json": (_full_disk("dmv_fast.render.record.json.dumps"), [], {SONG}),
    "video frames": (_full_disk("dmv_fast.video.writer._X264Video.encode", 5), [], {SONG}),
    "video flush": (_full_disk("dmv_fast.video.writer._X264Video.flush"), [], {SONG}),
    "audio track": (_full_disk("dmv_fast.audio.track.AudioTrack.feed", 2), [], {SONG}),
    "video fsync": (_full_disk("dmv_fast.files._fsync"), [], {SONG}),
    "record rename": (_full_disk("dmv_fast.render.record.publish"), [], {SONG}),
    "frame png": (_full_disk("PIL.Image.Image.save", 6), ["-d"], {SONG, "o.frames"}),
    "frames manifest": (_full_disk("dmv_fast.render.folders.write_json"), ["-d"], {SONG}),
}


@pytest.mark.parametrize("case", list(DISK_FULL))
def test_disk_full(case, run, tiny, cache, warm_cache, monkeypatch):
    patch, extra, left = DISK_FULL[case]
    patch(monkeypatch)
    failed(cli(*args(run, tiny, *extra)), 1, "disk full", OUT)
    assert files(run) == left
    assert tree(cache) == tree(warm_cache)
    if "o.frames" in left:
        names = files(run / "o.frames")
        assert names == {"manifest.json"} | {f"{i:06d}.png" for i in range(5)}
        monkeypatch.undo()
        monkeypatch.setenv("DMV_FAST_CACHE", str(cache))
        succeeded(cli(*args(run, tiny, *extra)))  # the rerun resumes
        assert files(run) == RESULT | {"o.frames"}


def test_weights_that_are_not_a_plain_state_dict_are_refused(run, tiny, empty_cache, tmp_path):
    """A checkpoint carrying Python objects is refused, never loaded with weights_only=False."""
    import torch

    bad = tmp_path / "bad-weights"
    bad.mkdir()
    shutil.copy(tiny / "config.json", bad / "config.json")
    torch.save({"weight": torch.zeros(1), "hook": print}, bad / "pytorch_model.bin")
    line = failed(cli(*args(run, bad)), 1, "not a plain state dict", "refused", "pytorch_model.bin")
    assert "weights_only" not in line
    assert files(run) == {SONG}
    assert not [p for p in tree(empty_cache) if (empty_cache / p).is_file()]


@pytest.mark.parametrize("target", ["onnx.save_model", "dmv_fast.model.cache.write_json"])
def test_disk_full_in_the_model_cache(target, run, tiny, empty_cache, monkeypatch):
    _full_disk(target)(monkeypatch)
    failed(cli(*args(run, tiny)), 1, "disk full")
    assert files(run) == {SONG}
    assert {p for p in tree(empty_cache) if not (empty_cache / p).is_dir()} == set()


# ---------------------------------------------------------------------------------------------
# Concurrent runs to the same output


def test_output_that_appears_meanwhile_is_never_replaced(run, tiny, cache, monkeypatch):
    """Another run finishes the same output while this one renders: this one loses."""
    from dmv_fast.video import writer as encode

    real = encode.VideoWriter.write

    def other_run_finishes(self, frames):
        if not self.path.exists():
            self.path.write_bytes(b"the other run's video")
        return real(self, frames)

    monkeypatch.setattr(encode.VideoWriter, "write", other_run_finishes)
    failed(cli(*args(run, tiny)), 1, "already exists", "another run")
    assert files(run) == {SONG, OUT}
    assert (run / OUT).read_bytes() == b"the other run's video"


def test_temporaries_of_a_live_run_are_left_alone(run, tiny, cache):
    live = run / f".{OUT}.tmp-{os.getppid()}-0123abcd"  # a run still in progress
    live.write_bytes(b"in progress")
    dead = run / f".{OUT}.tmp-{_dead_pid()}-89abcdef"
    dead.write_bytes(b"left by a killed run")
    succeeded(cli(*args(run, tiny)))
    assert files(run) == RESULT | {live.name}


def test_two_runs_in_parallel_one_wins(run, tiny, cache, tmp_path):
    """Two processes render the same new output at once: one exits 0, the other 1."""
    procs = [_spawn(run, tiny, "none", tmp_path / f"m{i}") for i in range(2)]
    outcomes = [_finish(p) for p in procs]
    # Whether the loser noticed before or after its render, it fails in one line.
    assert sorted(code for code, _ in outcomes) == [0, 1], outcomes
    loser = next(err for code, err in outcomes if code == 1)
    assert len(loser.strip().splitlines()) == 1 and "already exists" in loser, loser
    assert files(run) == RESULT


# ---------------------------------------------------------------------------------------------
# Signals (a subprocess running the CLI; a marker file says the chosen point is reached)

SIGNALS = [
    # (signal, point, flags, exit code)
    (signal.SIGINT, "encode", [], 130),
    (signal.SIGTERM, "encode", [], 143),
    (signal.SIGHUP, "encode", [], 129),
    (signal.SIGTERM, "analysis", [], 143),
    (signal.SIGTERM, "record", [], 143),
    (signal.SIGHUP, "frames", ["-d"], 129),
    (signal.SIGTERM, "export", [], 143),
    (signal.SIGKILL, "encode", [], -9),
    (signal.SIGKILL, "frames", ["-d"], -9),
    (signal.SIGKILL, "export", [], -9),
]


@pytest.mark.parametrize(
    ("sig", "point", "extra", "code"),
    SIGNALS,
    ids=[f"{s.name}-{p}{'-d' if e else ''}" for s, p, e, _ in SIGNALS],
)
def test_signal(sig, point, extra, code, run, tiny, tmp_path, monkeypatch, warm_cache):
    cache = tmp_path / "cache"
    if point == "export":
        cache.mkdir()
    else:
        shutil.copytree(warm_cache, cache)
    monkeypatch.setenv("DMV_FAST_CACHE", str(cache))
    cache_before = tree(cache)
    marker = tmp_path / "marker"
    proc = _spawn(run, tiny, point, marker, *extra)
    _wait_for(marker, proc)
    proc.send_signal(sig)
    rc, err = _finish(proc)
    assert rc == code, err
    left = files(run) - {"o.frames"}
    if sig != signal.SIGKILL:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0] == f"error: interrupted by {sig.name}; no partial video was written" or (
            sig == signal.SIGINT and lines[0] == "error: interrupted; no partial video was written"
        )
        assert left == {SONG}  # nothing partial, no temporaries
        assert {p for p in tree(cache) if ".tmp-" not in p} == tree(cache)
        if point != "export":
            assert tree(cache) == cache_before
    else:
        assert any(".tmp-" in name for name in left | tree(cache)) or point == "frames"
    if extra:  # -d keeps the complete frames: the rerun resumes from them
        assert (run / "o.frames" / "manifest.json").exists()
        if sig != signal.SIGKILL:
            assert not [p for p in (run / "o.frames").iterdir() if ".tmp-" in p.name]
    elif sig != signal.SIGKILL:
        return
    # The next run sweeps what a killed run left and finishes the job.
    succeeded(cli(*args(run, tiny, *extra)))
    assert files(run) == RESULT | ({"o.frames"} if extra else set())
    assert not [p for p in tree(cache) if ".tmp-" in p]
    assert len(tree(cache) - {"onnx"}) == 3
