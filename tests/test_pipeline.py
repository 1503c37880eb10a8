"""End to end: song -> MP4 with audio, read back with PyAV.

A BigGAN-deep-128 of the real layout but 4 channels wide keeps these fast; the pixels are
the real exported graph's, run by ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from _media import write_song

from dmv_fast.audio.features import analyze
from dmv_fast.render import api as pipeline
from dmv_fast.render.folders import FrameStore, frames_folder
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.spec import ModelSpec

pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DMV_FAST_CACHE", str(tmp_path_factory.getbasetemp() / "dmv-cache"))


def _song(path: Path, seconds: float, rate: int, channels: int) -> Path:
    return write_song(path, seconds, rate, channels)


_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}


def _opts(song: Path, out: Path, weights: Path, **kw) -> tuple[RenderOptions, ModelSpec]:
    """The render's options and model spec (tiny weights, CPU, batch 4)."""
    base = dict(
        song=str(song),
        output_file=str(out),
        frame_length=2048,
        seed=11,
        encoder="x264",
    )
    model = dict(resolution=128, weights=str(weights), batch_size=4, backend="cpu")
    for k, v in kw.items():
        (model if k in _MODEL_FIELDS else base)[k] = v
    return RenderOptions(**base), ModelSpec(**model)


def render(job: tuple[RenderOptions, ModelSpec], **kw):
    options, spec = job
    if "visualizer" in kw:
        spec = None
    return pipeline.render(options, spec, **kw)


def _read_back(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        info = {
            "frames": frames,
            "rate": v.average_rate,
            "v_start": float(v.start_time * v.time_base),
            "v_dur": float(v.duration * v.time_base),
            "a_codec": a.codec_context.name,
            "a_rate": a.codec_context.sample_rate,
            "a_channels": a.codec_context.channels,
            "a_start": float(a.start_time * a.time_base),
            "a_dur": float(a.duration * a.time_base),
        }
    return info


@pytest.mark.parametrize(("rate", "channels", "fl"), [(44100, 2, 2048), (8000, 1, 1024)])
def test_render_covers_the_whole_song_with_its_audio(tmp_path, tiny_weights, rate, channels, fl):
    song = _song(tmp_path / "song.wav", 2.5, rate, channels)
    out = tmp_path / "video.mp4"
    result = render(_opts(song, out, tiny_weights, frame_length=fl))
    n = analyze(song, fl).n_frames
    info = _read_back(out)
    assert result.frames == n == len(info["frames"]) == 1 + int(2.5 * 22050) // fl
    assert info["rate"] == Fraction(22050, fl)
    assert info["frames"][0].shape == (128, 128, 3)
    assert info["a_codec"] == "aac"
    assert (info["a_rate"], info["a_channels"]) == (rate, channels)
    assert info["v_start"] == 0 and abs(info["a_start"]) < 1e-3
    assert abs(info["a_dur"] - info["v_dur"]) <= fl / 22050
    # Not a blank video: frames differ from each other and use the range.
    stack = np.stack(info["frames"]).astype(int)
    assert stack.std() > 10 and np.abs(np.diff(stack, axis=0)).mean() > 0.5
    # The record beside the video holds every frame of the song.
    record = np.load(out.with_name("video.dmv.npz"))
    assert record["class_vectors"].shape == (n, 1000)
    assert record["noise_vectors"].shape == (n, 128)
    assert out.with_name("video.dmv.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "song.wav", "video.dmv.json", "video.dmv.npz", "video.mp4",
    ]  # fmt: skip


def test_duration_renders_a_prefix_of_the_full_video(tmp_path, tiny_weights):
    song = _song(tmp_path / "song.wav", 3.0, 22050, 1)
    full = render(_opts(song, tmp_path / "full.mp4", tiny_weights))
    short = render(_opts(song, tmp_path / "short.mp4", tiny_weights, duration=1.5))
    assert short.frames == round(1.5 * 22050 / 2048)
    a = _read_back(tmp_path / "full.mp4")
    b = _read_back(tmp_path / "short.mp4")
    assert len(b["frames"]) == short.frames < full.frames == len(a["frames"])
    assert abs(b["a_dur"] - short.frames * 2048 / 22050) <= 2048 / 22050
    full_rec = np.load(tmp_path / "full.dmv.npz")
    short_rec = np.load(tmp_path / "short.dmv.npz")
    np.testing.assert_array_equal(full_rec["noise_vectors"], short_rec["noise_vectors"])
    # x264 at the same settings: the decoded prefix matches closely.
    diff = np.abs(
        np.stack(a["frames"][: short.frames]).astype(int) - np.stack(b["frames"]).astype(int)
    )
    assert diff.mean() < 2


def test_use_previous_vectors_reproduces_the_video(tmp_path, tiny_weights):
    song = _song(tmp_path / "song.wav", 2.0, 22050, 1)
    out = tmp_path / "v.mp4"
    first = render(_opts(song, out, tiny_weights, seed=None, duration=1.0))
    again = render(
        _opts(song, out, tiny_weights, seed=None, use_previous_vectors=True), overwrite=True
    )
    assert again.seed == first.seed
    assert again.frames > first.frames


def test_interrupt_leaves_no_partial_video_and_use_disk_resumes(
    tmp_path, tiny_weights, monkeypatch
):
    from dmv_fast.model import runtime

    song = _song(tmp_path / "song.wav", 3.0, 22050, 1)
    out = tmp_path / "v.mp4"
    opts = _opts(song, out, tiny_weights, use_disk=True)

    real = runtime.Generator.generate
    calls = {"n": 0}
    sizes: list[int] = []

    def interrupted(self, *a, **k):
        calls["n"] += 1
        sizes.append(len(a[0]))
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(runtime.Generator, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render(opts)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".mp4" or ".partial" in p.name]
    folder = frames_folder(out)
    done = FrameStore.read_manifest(folder)
    assert done is not None
    store = FrameStore.open(folder, done)
    assert store.complete_frames() == sum(sizes[:2])  # the two batches before it, on disk

    monkeypatch.setattr(runtime.Generator, "generate", real)
    made = {"n": 0}

    def counting(self, noise, *a, **k):
        made["n"] += len(noise)
        return real(self, noise, *a, **k)

    monkeypatch.setattr(runtime.Generator, "generate", counting)
    result = render(opts)
    assert made["n"] == result.frames - sum(sizes[:2])  # only the missing frames were made
    info = _read_back(out)
    assert len(info["frames"]) == result.frames

    # The resumed video equals one rendered in one go.
    fresh = render(_opts(song, tmp_path / "fresh.mp4", tiny_weights))
    assert fresh.frames == result.frames
    ref = _read_back(tmp_path / "fresh.mp4")
    diff = np.abs(np.stack(ref["frames"]).astype(int) - np.stack(info["frames"]).astype(int))
    assert diff.max() == 0


def test_save_only_builds_from_the_folder_without_generating(tmp_path, tiny_weights, monkeypatch):
    from dmv_fast.model import runtime

    song = _song(tmp_path / "song.wav", 2.0, 22050, 1)
    out = tmp_path / "v.mp4"
    render(_opts(song, out, tiny_weights, use_disk=True))
    out.unlink()

    def no_model(*a, **k):
        raise AssertionError("-s must not load the generator")

    monkeypatch.setattr(runtime.Generator, "__init__", no_model)
    result = render(_opts(song, out, tiny_weights, save_only=True, seed=None))
    assert len(_read_back(out)["frames"]) == result.frames

    with pytest.raises(ValueError, match="truncation"):
        render(_opts(song, out, tiny_weights, save_only=True, truncation=0.5), overwrite=True)


def test_sigint_in_a_cli_render_exits_cleanly(tmp_path, tiny_weights, monkeypatch):
    """A real SIGINT arriving mid-render: exit code 130, one line, no MP4."""
    from typer.testing import CliRunner

    from dmv_fast.cli.app import app
    from dmv_fast.model import runtime

    song = _song(tmp_path / "song.wav", 3.0, 22050, 1)
    out = tmp_path / "v.mp4"
    real = runtime.Generator.generate
    calls = {"n": 0}

    def slow(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT)).start()
            threading.Event().wait(1.0)
        return real(self, *a, **k)

    monkeypatch.setattr(runtime.Generator, "generate", slow)
    result = CliRunner().invoke(app, [
        "render", "--song", str(song), "--output_file", str(out), "-q", "--resolution", "128",
        "--weights", str(tiny_weights), "--batch_size", "4", "--frame_length", "2048",
        "--backend", "cpu", "--encoder", "x264",
    ])  # fmt: skip
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_planes_made_in_the_graph_give_the_same_video(tmp_path, tiny_weights, monkeypatch):
    """The GPU path (YUV 4:2:0 made inside the graph), exercised on the CPU provider."""
    song = _song(tmp_path / "song.wav", 2.0, 22050, 1)
    plain = render(_opts(song, tmp_path / "rgb.mp4", tiny_weights, crf=0))
    cpu_plan = pipeline.Visualizer(_opts(song, tmp_path / "yuv.mp4", tiny_weights)[1]).plan
    # The GPU plan's graph (batch 4, YUV planes made in the graph, direct convolutions) run by
    # the CPU provider.
    gpu_like = dataclasses.replace(cpu_plan, pixel_format="yuv420p", conv_form="direct")
    vis = pipeline.Visualizer(gpu_like)
    assert vis.encoder_format == "yuv420p"
    planes = render(_opts(song, tmp_path / "yuv.mp4", tiny_weights, crf=0), visualizer=vis)
    assert planes.frames == plain.frames

    def planes_of(path):
        with av.open(str(path)) as c:
            return np.stack([f.to_ndarray(format="yuv420p") for f in c.decode(video=0)])

    a = planes_of(tmp_path / "rgb.mp4").astype(int)
    b = planes_of(tmp_path / "yuv.mp4").astype(int)
    assert a.shape == b.shape == (plain.frames, 192, 128)
    # Luma is the same matrix product (FFmpeg rounds in fixed point); chroma filters differ.
    assert np.abs(a[:, :128] - b[:, :128]).max() <= 1
    assert np.abs(a[:, 128:] - b[:, 128:]).mean() < 3
