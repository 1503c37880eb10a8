"""Segmented rendering without Ray: cut, encode apart, join by remuxing, resume, workers."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from _media import gradient_frames, probe, write_song

from dmv_fast.render.api import render
from dmv_fast.render.segment_folder import segments_folder
from dmv_fast.render.workers import LocalPool, WorkerModel
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.plan import default_workers, resolve
from dmv_fast.settings.spec import ModelSpec
from dmv_fast.video.segments import (
    Segment,
    VideoSettings,
    encode_segment,
    join_segments,
    plan_segments,
)

FPS = Fraction(22050, 2048)


def _timestamps(path: Path) -> tuple[list[int], list[int], list[bytes]]:
    """Video packets' pts and dts in frames (decode order) and their payloads."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        tb = Fraction(s.time_base.numerator, s.time_base.denominator)
        rate = Fraction(s.average_rate.numerator, s.average_rate.denominator)
        packets = [p for p in c.demux(s) if p.size]
        pts = [int(Fraction(p.pts) * tb * rate) for p in packets]
        dts = [int(Fraction(p.dts) * tb * rate) for p in packets]
        return pts, dts, [bytes(p) for p in packets]


def _check_timing(path: Path, frames: int, fps: Fraction) -> None:
    """What a player relies on: frame count, exact rate, increasing timestamps, A/V sync."""
    info = probe(path)
    assert info.frames == len(info.decoded) == frames
    assert info.average_rate == fps
    assert info.video_start == 0 and abs(info.audio_start) < 1e-3
    assert abs(info.audio_duration - info.video_duration) <= 1 / fps
    pts, dts, _ = _timestamps(path)
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))  # strictly increasing
    assert sorted(pts) == list(range(frames))
    assert all(d <= p for p, d in zip(pts, dts, strict=True))


def test_plan_segments_cut_on_exact_frame_boundaries():
    segs = plan_segments(33, 8)
    assert [(s.start, s.stop) for s in segs] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 33)]
    assert [s.name for s in segs[:2]] == ["00000.mp4", "00001.mp4"]
    assert plan_segments(5, 250) == [Segment(0, 0, 5)]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="segment_frames"):
            plan_segments(10, bad)
    with pytest.raises(ValueError, match="at least 1 frame"):
        plan_segments(0, 8)
    assert segments_folder("out/video.mp4") == Path("out/video.segments")


def test_join_with_b_frames_keeps_every_frame_and_the_audio_in_sync(tmp_path):
    """crf 20 (B-frames: each segment's first dts is negative) and a 1-frame last segment."""
    frames = gradient_frames(30, 64, 64)
    song = write_song(tmp_path / "song.wav", 3.5)
    parts = []
    settings = VideoSettings(crf=20)
    for seg in plan_segments(30, 29 // 3 + 4):  # 13, 13, 4
        path = tmp_path / seg.name
        written = encode_segment([frames[seg.start : seg.stop]], path, (64, 64), FPS, settings)
        assert written == seg.frames
        parts.append((seg, path))
    parts.append((Segment(3, 30, 31), tmp_path / "last.mp4"))
    encode_segment([gradient_frames(1, 64, 64, start=30)], parts[-1][1], (64, 64), FPS, settings)
    with av.open(str(parts[0][1])) as c:  # the segment really has reordered frames
        first = next(p for p in c.demux(video=0) if p.size)
        assert first.dts < first.pts
    out = tmp_path / "joined.mp4"
    assert join_segments(parts, out, FPS, song) == 31
    _check_timing(out, 31, FPS)
    info = probe(out)
    assert info.audio_codec == "aac" and (info.audio_rate, info.audio_channels) == (44100, 2)
    assert abs(info.audio_duration - 31 / FPS) <= 1 / FPS  # trimmed to the video
    assert set(info.keyframes) >= {0, 13, 26, 30}  # every segment starts on a keyframe
    # Remuxing changes no pixel: the joined video decodes to the segments' own frames.
    pieces = np.concatenate([probe(p).decoded for _, p in parts])
    assert np.array_equal(info.decoded, pieces)
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_join_refuses_gaps_and_leaves_no_file(tmp_path):
    path = tmp_path / "a.mp4"
    encode_segment([gradient_frames(4, 64, 64)], path, (64, 64), FPS, VideoSettings())
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="starts at frame 8, not 4"):
        join_segments([(Segment(0, 0, 4), path), (Segment(1, 8, 12), path)], out, FPS, None)
    with pytest.raises(RuntimeError, match="holds 4 frames instead of 5"):
        join_segments([(Segment(0, 0, 5), path)], out, FPS, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_default_workers_keep_up_with_the_generator():
    from dmv_fast.settings.plan import GPU_FPS_512, X264_FPS_512, encoder_fps

    # The CPU: the generator is the bottleneck; NVENC: one hardware stream keeps up.
    assert default_workers(False, "x264", 512, 1, cores=16) == 1
    assert default_workers(True, "nvenc", 512, 1, cores=16) == 1
    # A GPU with libx264: enough single-threaded encoders for the generator's rate...
    needed = math.ceil(GPU_FPS_512 / X264_FPS_512)
    assert needed > 1
    assert default_workers(True, "x264", 512, 1, cores=256) == needed
    assert default_workers(True, "x264", 512, 1, cores=256, generator_fps=X264_FPS_512) == 1
    # ... at most one per core, and more for bigger frames.
    assert default_workers(True, "x264", 512, 1, cores=2) == 2
    assert default_workers(True, "x264", 512, 2, cores=256) > needed
    assert encoder_fps(1024) < encoder_fps(512) < encoder_fps(256)


# ---------------------------------------------------------------------------------------
# End to end with a tiny model

pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DMV_FAST_CACHE", str(tmp_path_factory.getbasetemp() / "dmv-cache"))


@pytest.fixture
def song(make_song) -> Path:
    return make_song("song.wav", seconds=3.0, rate=44100, channels=2)


def _opts(song: Path, out: Path, **kw) -> RenderOptions:
    base = dict(song=str(song), output_file=str(out), frame_length=2048, seed=11, encoder="x264")
    base.update(kw)
    return RenderOptions(**base)


@pytest.fixture(scope="module")
def spec(tiny_weights) -> ModelSpec:
    """The tiny model on the CPU, graph batch 4."""
    return ModelSpec(resolution=128, weights=str(tiny_weights), batch_size=4, backend="cpu")


def _pool(spec: ModelSpec, workers: int) -> LocalPool:
    return LocalPool(WorkerModel(resolve(spec, encoder="x264"), threads=1), workers)


class _Recording:
    """A pool that records the tasks it is given, and can be interrupted after some."""

    def __init__(self, inner, stop_after: int | None = None):
        self.inner, self.stop_after = inner, stop_after
        self.local = inner.local
        self.keys: list = []

    def run(self, tasks):
        tasks = list(tasks)
        self.keys = [t.key for t in tasks]
        # A crash after ``stop_after`` segments: only those are handed out, then it stops.
        yield from self.inner.run(tasks[: self.stop_after])
        if self.stop_after is not None:
            raise KeyboardInterrupt

    def close(self):
        self.inner.close()


def test_segmented_render_equals_the_one_process_render(tmp_path, spec, song):
    from dmv_fast.render.segmented import render_segmented

    one = render(_opts(song, tmp_path / "one.mp4", crf=0), spec)
    calls = []
    seg = render_segmented(
        _opts(song, tmp_path / "seg.mp4", crf=0),
        spec,
        workers=2,
        segment_frames=8,
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    # Progress counts the frames of both workers, batch by batch, up to the whole video.
    frames = [done for stage, done, total in calls if stage == "render"]
    assert frames == sorted(frames) and frames[-1] == 33 and len(set(frames)) > 5
    assert seg.frames == one.frames == 33 and seg.fps == one.fps == FPS
    _check_timing(tmp_path / "seg.mp4", one.frames, FPS)
    a, b = probe(tmp_path / "one.mp4"), probe(tmp_path / "seg.mp4")
    # Lossless settings: the decoded frames are identical.
    assert np.array_equal(a.decoded, b.decoded)
    assert abs(a.audio_duration - b.audio_duration) < 1e-3
    assert (b.audio_rate, b.audio_channels) == (44100, 2)
    # The record beside the video, and no segments folder left behind.
    rec_a, rec_b = np.load(tmp_path / "one.dmv.npz"), np.load(tmp_path / "seg.dmv.npz")
    assert np.array_equal(rec_a["noise_vectors"], rec_b["noise_vectors"])
    assert not segments_folder(tmp_path / "seg.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_two_workers_give_the_same_video_as_one(tmp_path, spec, song):
    """At crf 20 (B-frames, lossy) the bitstreams are byte for byte the same."""
    from dmv_fast.render.segmented import render_segmented

    for workers in (1, 2):
        out = tmp_path / f"w{workers}.mp4"
        render_segmented(_opts(song, out), spec, workers=workers, segment_frames=8)
        _check_timing(out, 33, FPS)
    assert _timestamps(tmp_path / "w1.mp4") == _timestamps(tmp_path / "w2.mp4")
    # As good as the one-process render at the same settings: both lie about as far from
    # the generator's own frames (a lossless render).
    one = render(_opts(song, tmp_path / "one.mp4"), spec)
    exact = render(_opts(song, tmp_path / "exact.mp4", crf=0), spec)
    ref = probe(exact.output).decoded.astype(int)
    a, b = probe(one.output).decoded.astype(int), probe(tmp_path / "w2.mp4").decoded.astype(int)
    assert len(a) == len(b) == len(ref) == one.frames
    err_one, err_seg = np.abs(a - ref).mean(), np.abs(b - ref).mean()
    assert 0 < err_seg < 1.2 * err_one


def test_rerun_after_an_interrupt_renders_only_the_missing_segments(tmp_path, spec, song):
    out = tmp_path / "v.mp4"
    opts = _opts(song, out, seed=None)
    folder = segments_folder(out)
    with _pool(spec, 1) as inner:
        crashing = _Recording(inner, stop_after=2)
        with pytest.raises(KeyboardInterrupt):
            render_segmented_with(opts, crashing)
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]
    kept = sorted(p.name for p in folder.glob("*.mp4"))
    assert kept == ["00000.mp4", "00001.mp4"]  # what finished before the interrupt

    stamps = {name: (folder / name).stat().st_mtime_ns for name in kept}
    with _pool(spec, 1) as inner:
        again = _Recording(inner)
        result = render_segmented_with(opts, again, keep_segments=True)
    redone = sorted(f"{i:05d}.mp4" for _, i in again.keys)
    assert redone == sorted(set(f"{i:05d}.mp4" for i in range(5)) - set(kept))
    assert all((folder / n).stat().st_mtime_ns == t for n, t in stamps.items())
    _check_timing(out, result.frames, FPS)

    # Delete one segment and damage another: only they are rendered again, and the video
    # does not change.
    before = _timestamps(out)
    (folder / "00002.mp4").unlink()
    damaged = folder / "00003.mp4"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    with _pool(spec, 1) as inner:
        once = _Recording(inner)
        render_segmented_with(opts, once, overwrite=True, keep_segments=True)
    assert sorted(once.keys) == [(0, 2), (0, 3)]
    assert _timestamps(out) == before

    # Other settings: the old segments are not reused.
    with _pool(spec, 1) as inner:
        fresh = _Recording(inner)
        render_segmented_with(_opts(song, out, seed=None, truncation=0.5), fresh, overwrite=True)
    assert len(fresh.keys) == 5
    assert not folder.exists()


def render_segmented_with(opts, pool, **kw):
    from dmv_fast.render.segmented import render_many

    spec = pool.inner.model.spec
    return render_many([opts], spec, pool=pool, segment_frames=8, **kw)[0]


def test_render_many_serves_every_song_with_the_same_workers(tmp_path, spec, make_song):
    from dmv_fast.render.segmented import render_many

    songs = [make_song(f"s{i}.wav", seconds=1.5 + i, seed=i) for i in range(2)]
    options = [_opts(s, tmp_path / f"{s.stem}.mp4", crf=0) for s in songs]
    with _pool(spec, 2) as inner:
        pool = _Recording(inner)
        results = render_many(options, spec, pool=pool, segment_frames=8)
    assert sorted({k[0] for k in pool.keys}) == [0, 1]
    for opts, result in zip(options, results, strict=True):
        ref = render(replace(opts, output_file=str(tmp_path / "ref.mp4")), spec, overwrite=True)
        assert result.frames == ref.frames
        _check_timing(Path(opts.output_file), ref.frames, FPS)
        assert np.array_equal(probe(Path(opts.output_file)).decoded, probe(ref.output).decoded)


def test_bad_requests_fail_in_one_line_before_any_work(tmp_path, spec, song, monkeypatch):
    from dmv_fast.audio import features as audio
    from dmv_fast.render.segmented import render_many, render_segmented

    def no_analysis(*a, **k):
        raise AssertionError("analysis must not start")

    monkeypatch.setattr(audio, "analyze", no_analysis)
    out = tmp_path / "v.mp4"
    opts = _opts(song, out)
    for kw, match in [
        ({"workers": 0}, "workers must be an integer in 1..256"),
        ({"workers": 1.5}, "workers must be an integer in 1..256"),
        ({"segment_frames": 0}, "segment_frames"),
        ({"ray_address": ""}, "ray_address"),
    ]:
        with pytest.raises(ValueError, match=match):
            render_segmented(opts, spec, **kw)
    with pytest.raises(ValueError, match="use_disk"):
        render_segmented(_opts(song, out, use_disk=True), spec)
    with pytest.raises(ValueError, match="same output"):
        render_many([opts, opts], spec)
    with pytest.raises(ValueError, match="model must be"):
        render_many([opts], model="biggan-deep-128")
    with pytest.raises(ValueError, match="does not exist"):
        render_segmented(_opts(tmp_path / "nope.wav", out), spec)
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        render_segmented(opts, spec)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(RuntimeError, match=r"Ray is not installed.*dmv-fast\[ray\]"):
        render_segmented(opts, spec, ray_address="local", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav", "v.mp4"]
    assert out.read_bytes() == b"old"


def test_a_bare_ray_flag_means_a_local_instance():
    from dmv_fast.cli.terminal import expand_bare_ray

    assert expand_bare_ray(["render", "--ray"]) == ["render", "--ray", "local"]
    assert expand_bare_ray(["batch", "a.mp3", "--ray", "-q"]) == [
        "batch", "a.mp3", "--ray", "local", "-q",
    ]  # fmt: skip
    assert expand_bare_ray(["--ray", "10.0.0.1:6379", "-q"]) == ["--ray", "10.0.0.1:6379", "-q"]


def test_batch_command_renders_every_song_into_the_folder(tmp_path, spec, make_song):
    from typer.testing import CliRunner

    from dmv_fast.cli.app import app

    songs = [make_song(f"song{i}.wav", seconds=1.0 + i, seed=i) for i in range(2)]
    out = tmp_path / "videos"
    common = ["--resolution", "128", "--weights", spec.weights, "--batch-size", "4",
              "--frame-length", "2048", "--backend", "cpu", "--seed", "5", "-q"]  # fmt: skip
    args = ["batch", *map(str, songs), "--out-dir", str(out), "--workers", "1", *common]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for i, s in enumerate(songs):
        video = out / f"{s.stem}.mp4"
        _check_timing(video, 1 + int((1.0 + i) * 22050) // 2048, FPS)
    # The same command again has nothing left to render; other settings refuse to overwrite,
    # in one line, and change nothing.
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert CliRunner().invoke(app, args).exit_code == 0
    result = CliRunner().invoke(app, [*args, "--truncation", "0.5"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "already exists" in result.output
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    bad = CliRunner().invoke(app, ["batch", str(songs[0]), "--out-dir", str(out), "--workers",
                                   "0", *common])  # fmt: skip
    assert bad.exit_code == 1 and "workers must be an integer in 1..256" in bad.output


def test_render_command_with_two_workers_gives_the_one_process_video(tmp_path, spec, song):
    """`dmv-fast render --workers 2` (segments on two processes) against `--workers 1`."""
    from dmv_fast.cli.app import main

    common = ["render", "--song", str(song), "--resolution", "128", "--weights", spec.weights,
              "--batch-size", "4", "--frame-length", "2048", "--backend", "cpu", "--seed", "5",
              "--crf", "0", "-q"]  # fmt: skip
    videos = {}
    for n in (1, 2):
        videos[n] = tmp_path / f"w{n}.mp4"
        with pytest.raises(SystemExit) as done:
            main([*common, "--workers", str(n), "-o", str(videos[n])])
        assert done.value.code == 0
    assert not (tmp_path / "w2.segments").exists()  # removed after the join

    def decoded(path: Path) -> np.ndarray:
        with av.open(str(path)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])

    one, two = decoded(videos[1]), decoded(videos[2])
    assert one.shape == two.shape and len(one) == 1 + int(3.0 * 22050) // 2048
    assert np.array_equal(one, two)  # lossless: the same pixels
    _check_timing(videos[2], len(one), FPS)
