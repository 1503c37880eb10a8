"""VideoWriter: exact rate and frame count, the song's audio, safe output, NVENC plumbing."""

from __future__ import annotations

import logging
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from _media import fake_pynvvideocodec, gradient_frames, probe, write_song

from dmv_fast.files import is_temporary
from dmv_fast.settings.machine import CPU, CUDA
from dmv_fast.settings.plan import resolve
from dmv_fast.settings.spec import ModelSpec
from dmv_fast.video import nvenc
from dmv_fast.video.nvenc import probe_nvenc, rgb_to_nv12
from dmv_fast.video.writer import VideoWriter

N = 40  # frames per test video


@pytest.fixture(autouse=True)
def _fresh_probe(monkeypatch):
    """Each test sees its own PyNvVideoCodec (real, missing or fake), never a cached probe."""
    monkeypatch.setattr(nvenc, "_probe_cache", {})


@pytest.fixture
def no_nvenc(monkeypatch):
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # import raises ImportError


def _write(path, frames, fps, audio=None, batch=7, **kw):
    with VideoWriter(path, frames.shape[1:3], fps, audio, **kw) as w:
        for i in range(0, len(frames), batch):
            w.write(frames[i : i + batch])
    return w


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if is_temporary(p))


@pytest.mark.parametrize(
    ("frame_length", "rate", "channels"),
    [(512, 44100, 2), (1024, 8000, 1), (2048, 48000, 2)],
)
def test_rate_frames_and_audio_track(tmp_path, frame_length, rate, channels):
    fps = Fraction(22050, frame_length)
    song = write_song(tmp_path / "song.wav", float(N / fps) + 0.7, rate, channels, tones=True)
    frames = gradient_frames(N)
    out = tmp_path / "out.mp4"
    w = _write(out, frames, fps, song, encoder="x264")
    assert w.frames_written == N and w.encoder_name == "x264"

    p = probe(out)
    assert p.frames == N and len(p.decoded) == N
    assert p.average_rate == Fraction(22050, frame_length)  # exact, never rounded
    assert p.audio_codec == "aac"
    assert (p.audio_rate, p.audio_channels) == (rate, channels)
    assert p.video_start == 0 and p.audio_start == 0
    one_frame = float(1 / fps)
    assert abs(p.video_duration - float(N / fps)) < 1e-6
    assert abs(p.audio_duration - p.video_duration) < one_frame  # trimmed to the video
    # Colours survive the encode (yuv420p, crf 20).
    assert np.abs(p.decoded.astype(int) - frames).mean() < 4


def test_surround_audio_keeps_its_channels(tmp_path):
    song = write_song(tmp_path / "song.wav", 2.0, 48000, channels=6, tones=True)
    out = tmp_path / "out.mp4"
    _write(out, gradient_frames(N), Fraction(22050, 512), song, encoder="x264")
    p = probe(out)
    assert (p.audio_codec, p.audio_rate, p.audio_channels) == ("aac", 48000, 6)


def test_audio_shorter_than_video_just_ends(tmp_path):
    fps = Fraction(22050, 512)
    song = write_song(tmp_path / "short.wav", 0.3, 44100, 2, tones=True)
    out = tmp_path / "out.mp4"
    _write(out, gradient_frames(N), fps, song, encoder="x264")
    p = probe(out)
    assert p.frames == N
    assert abs(p.audio_duration - 0.3) < 0.03  # no silence appended


def test_audio_start_skips_the_song_head(tmp_path):
    fps = Fraction(22050, 512)
    song = write_song(tmp_path / "song.wav", 1.5, 8000, 1, tones=True)
    out = tmp_path / "out.mp4"
    _write(out, gradient_frames(N), fps, song, encoder="x264", audio_start=1.0)
    p = probe(out)
    assert abs(p.audio_duration - 0.5) < 0.03  # what was left after 1.0 s


def test_video_without_audio_and_single_frames(tmp_path):
    out = tmp_path / "silent.mp4"
    frames = gradient_frames(5, 32, 48)
    with VideoWriter(out, (32, 48), Fraction(22050, 512), encoder="x264") as w:
        for f in frames:  # [H, W, 3] is accepted as a batch of one
            w.write(f)
    p = probe(out)
    assert p.frames == 5 and p.audio_codec is None
    assert p.decoded.shape == (5, 32, 48, 3)


@pytest.mark.parametrize("interrupt", [RuntimeError("generator failed"), KeyboardInterrupt()])
def test_failure_leaves_no_file_and_keeps_the_old_one(tmp_path, interrupt):
    song = write_song(tmp_path / "song.wav", 2.0, tones=True)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous render")
    with (
        pytest.raises(type(interrupt)),
        VideoWriter(out, (64, 64), Fraction(22050, 512), song, encoder="x264") as w,
    ):
        w.write(gradient_frames(10))
        assert _leftovers(tmp_path)  # work in progress lives beside the output
        raise interrupt
    assert out.read_bytes() == b"previous render"
    assert _leftovers(tmp_path) == []

    fresh = tmp_path / "fresh.mp4"
    with (
        pytest.raises(RuntimeError),
        VideoWriter(fresh, (64, 64), Fraction(22050, 512), encoder="x264") as w,
    ):
        w.write(gradient_frames(3))
        raise RuntimeError("boom")
    assert not fresh.exists() and _leftovers(tmp_path) == []


def test_bad_frames_abort_cleanly(tmp_path):
    out = tmp_path / "out.mp4"
    with (
        pytest.raises(ValueError, match=r"\(B, 64, 64, 3\)"),
        VideoWriter(out, (64, 64), Fraction(22050, 512), encoder="x264") as w,
    ):
        w.write(gradient_frames(2))
        w.write(gradient_frames(2, 32, 32))
    with (
        pytest.raises(ValueError, match="uint8"),
        VideoWriter(out, (64, 64), Fraction(22050, 512), encoder="x264") as w,
    ):
        w.write(gradient_frames(2).astype(np.float32))
    assert not out.exists() and _leftovers(tmp_path) == []


def test_no_frames_is_an_error_not_an_empty_file(tmp_path):
    out = tmp_path / "out.mp4"
    with (
        pytest.raises(RuntimeError, match="no frames"),
        VideoWriter(out, (64, 64), Fraction(22050, 512), encoder="x264"),
    ):
        pass
    assert not out.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 65}, "width must be even"),
        ({"height": 0}, "height must be a positive"),
        ({"fps": 43.06640625}, "exact fractions.Fraction"),
        ({"fps": Fraction(0)}, "fps must be > 0"),
        ({"encoder": "auto"}, "encoder must be the plan's x264 or nvenc"),
        ({"encoder": "ffv1"}, "encoder must be the plan's x264 or nvenc"),
        ({"threads": -1}, "threads must be"),
        ({"audio_start": -1.0}, "audio_start"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"width": 64, "height": 64, "fps": Fraction(22050, 512)} | kwargs
    w, h, fps = args.pop("width"), args.pop("height"), args.pop("fps")
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / "o.mp4", (h, w), fps, **args)
    assert list(tmp_path.iterdir()) == []


def test_destination_checks(tmp_path):
    fps = Fraction(22050, 512)
    with pytest.raises(ValueError, match="does not exist"):
        VideoWriter(tmp_path / "missing" / "o.mp4", (64, 64), fps)
    existing = tmp_path / "o.mp4"
    existing.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="already exists"):
        VideoWriter(existing, (64, 64), fps, overwrite=False)
    with pytest.raises(ValueError, match="must end in one of"):
        VideoWriter(tmp_path / "o.gif", (64, 64), fps)
    with pytest.raises(ValueError, match="audio file"):
        VideoWriter(tmp_path / "a.mp4", (64, 64), fps, audio=tmp_path / "nope.wav")
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    with pytest.raises(ValueError, match="cannot read audio"):
        VideoWriter(tmp_path / "a.mp4", (64, 64), fps, audio=text)
    assert existing.read_bytes() == b"keep"


def test_rgb_to_nv12_matches_ffmpeg():
    y, x = np.mgrid[0:64, 0:96]
    rgb = np.stack([x * 255 // 95, y * 255 // 63, (x + y) * 255 // 158], -1).astype(np.uint8)
    ref = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="nv12").to_ndarray()
    mine = rgb_to_nv12(rgb)
    assert mine.shape == (96, 96)
    assert np.abs(ref.astype(int) - mine).max() <= 1


# ---------------------------------------------------------------------------------------
# NVENC plumbing, with a fake PyNvVideoCodec that runs libx264 underneath


@pytest.mark.parametrize("output", ["bytes", "ndarray", "list"])
def test_auto_uses_nvenc_when_the_probe_succeeds(tmp_path, monkeypatch, output):
    fake = fake_pynvvideocodec(output=output)
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", fake)
    monkeypatch.setattr(nvenc, "GOP", 8)
    assert probe_nvenc()[0]
    plan = _gpu_plan()
    assert plan.encoder == "nvenc" and plan.encoder_fallback
    fps = Fraction(22050, 1024)
    song = write_song(tmp_path / "song.wav", 3.0, 44100, 2, tones=True)
    frames = gradient_frames(N)
    out = tmp_path / "out.mp4"
    w = _write(out, frames, fps, song, encoder=plan.encoder)
    assert w.encoder_name == "nvenc"

    enc = fake.encoders[-1]  # [0] is the probe's
    assert enc.cpu and enc.ended
    assert enc.kwargs["rc"] == "constqp" and enc.kwargs["bf"] == 0 and enc.kwargs["gop"] == 8
    assert enc.kwargs["codec"] == "h264" and enc.kwargs["constqp"] == 20
    p = probe(out)
    assert p.frames == N
    assert p.average_rate == fps
    assert p.keyframes == list(range(0, N, 8))
    assert p.video_start == 0 and abs(p.video_duration - float(N / fps)) < 1e-6
    assert p.audio_codec == "aac" and abs(p.audio_duration - p.video_duration) < float(1 / fps)
    assert np.abs(p.decoded.astype(int) - frames).mean() < 4  # NV12 conversion is right


def _gpu_plan(encoder: str = "auto"):
    """The plan of a GPU machine (its providers given): where ``auto`` may pick NVENC."""
    return resolve(
        ModelSpec(resolution=128, backend="cuda"),
        encoder=encoder,
        offered=(CUDA, CPU),
        loadable=(CUDA, CPU),
    )


def test_auto_falls_back_to_x264_with_the_reason_in_the_plan(tmp_path, no_nvenc, caplog):
    caplog.set_level(logging.INFO, logger="dmv_fast")
    ok, reason = probe_nvenc()
    assert not ok and "PyNvVideoCodec" in reason
    plan = _gpu_plan()
    assert plan.encoder == "x264" and not plan.encoder_fallback
    (why,) = [n for n in plan.notes if n.startswith("encoder")]
    assert "x264" in why and "PyNvVideoCodec" in why
    caplog.clear()
    out = tmp_path / "out.mp4"
    w = _write(out, gradient_frames(6), Fraction(22050, 512), encoder=plan.encoder)
    assert w.encoder_name == "x264" and probe(out).frames == 6
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_explicit_nvenc_unavailable_is_an_error(tmp_path, no_nvenc):
    with pytest.raises(RuntimeError, match="NVENC is not available: PyNvVideoCodec"):
        VideoWriter(tmp_path / "o.mp4", (64, 64), Fraction(22050, 512), encoder="nvenc")
    assert list(tmp_path.iterdir()) == []


def test_probe_reports_an_encoder_that_cannot_start(tmp_path, monkeypatch):
    fake = fake_pynvvideocodec(create_error="no NVENC capable device found")
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", fake)
    ok, reason = probe_nvenc()
    assert not ok and "no NVENC capable device found" in reason
    with pytest.raises(RuntimeError, match="no NVENC capable device"):
        VideoWriter(tmp_path / "o.mp4", (64, 64), Fraction(22050, 512), encoder="nvenc")
    with pytest.raises(ValueError, match="no NVENC capable device"):
        _gpu_plan("nvenc")
    assert _gpu_plan().encoder == "x264"
