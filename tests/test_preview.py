"""See before you render: the plot of the vectors and the preview sheet.

The plot's data are the vectors a render records; the preview's frames are the frames a
render makes (read from its ``-d`` frames folder: lossless PNGs); a preview's record makes
the next render reproduce them. Bad choices fail in one line before any work.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from _media import write_song
from PIL import Image
from typer.testing import CliRunner

from dmv_fast.cli.app import app
from dmv_fast.cli.terminal import expand_multi_value
from dmv_fast.preview.figure import DPI, FIGURE_SIZE, noise_speed, plot_data
from dmv_fast.preview.sheet import sheet_columns, tile, time_label
from dmv_fast.render import api as pipeline
from dmv_fast.render import preview as look
from dmv_fast.render.folders import frames_folder
from dmv_fast.render.record import plot_path, record_paths
from dmv_fast.settings.options import RenderOptions
from dmv_fast.settings.spec import ModelSpec

runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
CLASSES = (1, 22, 94, 130, 309, 323, 327, 340, 388, 417, 980, 985)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DMV_FAST_CACHE", str(tmp_path_factory.getbasetemp() / "dmv-cache"))


@pytest.fixture
def song(tmp_path) -> Path:
    return write_song(tmp_path / "song.wav", 3.0, 22050, 1)


def _options(song: Path, out: Path, **kw) -> RenderOptions:
    base = dict(song=str(song), output_file=str(out), frame_length=1024, seed=11, encoder="x264")
    return RenderOptions(**{**base, **kw})


def _spec(weights: Path) -> ModelSpec:
    return ModelSpec(resolution=128, weights=str(weights), batch_size=4, backend="cpu")


def _frames_on_disk(out: Path, indices) -> np.ndarray:
    folder = frames_folder(out)
    return np.stack(
        [np.asarray(Image.open(folder / f"{k:06d}.png").convert("RGB")) for k in indices]
    )


def _invoke(*args: str):
    return runner.invoke(app, expand_multi_value([str(a) for a in args]))


# The plot -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_render_plot_data_equal_the_recorded_vectors(tmp_path, song, tiny_weights):
    """``render --plot``: the plot is beside the video, named by the record, and its data
    are the recorded vectors (class weights column by column, the noise vector's speed)."""
    pytest.importorskip("torch")
    out = tmp_path / "v.mp4"
    options = _options(song, out, plot=True, pitch_sensitivity=250, jitter=0.3)
    result = pipeline.render(options, _spec(tiny_weights))
    assert result.plot == plot_path(out) == tmp_path / "v.plot.png"
    with Image.open(result.plot) as im:
        assert im.size == (round(FIGURE_SIZE[0] * DPI), round(FIGURE_SIZE[1] * DPI))
    npz, meta_path = record_paths(out)
    meta = json.loads(meta_path.read_text())
    assert meta["plot"] == "v.plot.png"
    with np.load(npz) as rec:
        class_vectors, noise = rec["class_vectors"], rec["noise_vectors"]
        classes = tuple(int(c) for c in rec["classes"])

    plot = look.plot_song(dataclasses.replace(options, plot=False, seed=result.seed))
    data = plot.data
    assert data.classes == classes
    assert data.n_frames == result.frames == len(noise)
    np.testing.assert_array_equal(data.class_weights, class_vectors[:, list(classes)])
    # Every other entry of the class vectors is 0: the plot shows all of the mixture.
    assert not np.delete(class_vectors, list(classes), axis=1).any()
    steps = np.linalg.norm(np.diff(noise.astype(np.float64), axis=0), axis=1)
    np.testing.assert_allclose(data.noise_speed[1:], steps * float(result.fps), rtol=1e-12)
    assert data.noise_speed[0] == 0
    assert data.jitter.shape == (1, 128)
    assert set(np.unique(data.jitter)) == {0.7, 1.0}  # 1 - jitter where the jitter acts


def test_plot_covers_the_video_of_duration_seconds(song):
    from dmv_fast.audio.features import analyze
    from dmv_fast.vectors.trajectory import compute_vectors

    options = _options(song, "v.mp4", duration=1.5, frame_length=512)
    features = analyze(song, 512)
    vectors = compute_vectors(features, options)
    data = plot_data(features, vectors, options)
    n = round(1.5 * 22050 / 512)
    assert data.n_frames == n and data.chroma.shape == (12, n)
    assert data.times[-1] == pytest.approx((n - 1) * 512 / 22050)
    np.testing.assert_array_equal(
        data.class_weights, vectors.class_vectors[:n, list(vectors.classes)]
    )
    np.testing.assert_array_equal(data.noise_speed, noise_speed(vectors.noise[:n], options.fps))
    assert data.jitter.shape == (1, 128)
    assert data.class_labels()[0].endswith(")")  # "name (pitch)"


def test_plot_command_writes_a_png_and_an_svg_that_read_without_the_readme(tmp_path, song):
    png, svg = tmp_path / "s.png", tmp_path / "s.svg"
    args = ["plot", "--song", song, "--seed", "5", "--classes", *map(str, CLASSES), "-q"]
    result = _invoke(*args, "-o", png)
    assert result.exit_code == 0, result.output
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape == (round(FIGURE_SIZE[1] * DPI), round(FIGURE_SIZE[0] * DPI), 3)
    assert pixels.std() > 20  # a drawing, not a blank page
    assert _invoke(*args, "-o", svg).exit_code == 0
    text = " ".join(t.strip() for t in ET.parse(svg).getroot().itertext() if t.strip())
    # What a reader needs: the axes and their units, the classes by name, the seed and rate.
    for needle in (
        "time (s)",
        "chromagram",
        "class weights",
        "goldfish (",
        "volcano (",
        "noise speed",
        "per s",
        "volume",
        "jitter",
        "seed 5",
        "43.0664 frames/s",
        "pitch_sensitivity 220",
    ):
        assert needle in text, needle
    # The same settings give the same file.
    again = tmp_path / "again.svg"
    assert _invoke(*args, "-o", again).exit_code == 0
    assert again.read_bytes() == svg.read_bytes()


def test_plot_refuses_an_existing_file_and_a_bad_suffix_before_any_analysis(
    tmp_path, song, monkeypatch
):
    from dmv_fast.render import job

    monkeypatch.setattr(job, "analyze", lambda *a, **k: pytest.fail("analysis ran"))
    existing = tmp_path / "s.png"
    existing.write_bytes(b"keep")
    for out, needle in (
        (existing, "already exists"),
        (tmp_path / "s.pdf", ".png, .svg"),
        (tmp_path / "missing" / "s.png", "does not exist"),
        ("/proc/s.png", "/proc"),
    ):
        result = _invoke("plot", "--song", song, "-o", out)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert existing.read_bytes() == b"keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "song.wav"]


def test_without_matplotlib_plots_fail_in_one_line_naming_the_extra(tmp_path, song, monkeypatch):
    from dmv_fast.render import job

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr(job, "analyze", lambda *a, **k: pytest.fail("analysis ran"))
    for args in (
        ["plot", "--song", song, "-o", tmp_path / "s.png"],
        ["render", "--song", song, "--plot", "--weights", "random", "-o", tmp_path / "v.mp4"],
    ):
        result = _invoke(*args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'dmv-fast[plot]'" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


# The preview --------------------------------------------------------------------------------


@pytest.mark.slow
def test_preview_frames_are_the_render_frames_and_its_record_reproduces_them(
    tmp_path, song, tiny_weights
):
    """A preview without a seed draws one and records it beside the video to come; a render
    that reuses the record makes the very frames of the preview (read from its lossless
    ``-d`` folder), and ``--seed`` alone gives the same vectors."""
    pytest.importorskip("torch")
    spec = _spec(tiny_weights)
    sheet = tmp_path / "v.preview.png"
    video = look.video_for(sheet)
    assert video == tmp_path / "v.mp4"
    options = _options(song, video, seed=None, truncation=0.6, depth=0.8)
    shown = look.preview_song(options, spec, frames=5, sheet=sheet)
    assert shown.sheet == sheet and shown.record == record_paths(video)[0]
    n = shown.frames.shape[0]
    assert n == 5 and shown.frames.shape[1:] == (128, 128, 3)
    assert shown.indices[0] == 0 and shown.indices[-1] == 1 + 3 * 22050 // 1024 - 1
    meta = json.loads(record_paths(video)[1].read_text())
    assert meta["seed"] == shown.seed and meta["preview"] == "v.preview.png"
    assert [c["class"] for c in meta["classes"]] == list(shown.classes)

    rendered = pipeline.render(
        dataclasses.replace(options, use_previous_vectors=True, use_disk=True), spec
    )
    assert rendered.seed == shown.seed and rendered.classes == shown.classes
    made = _frames_on_disk(video, shown.indices).astype(int)
    assert np.abs(made - shown.frames.astype(int)).max() <= 1

    # At chosen times: the frame shown at each time (floor(t * fps)), in the order given.
    reuse = dataclasses.replace(options, use_previous_vectors=True)
    at = look.preview_song(reuse, spec, at=[2.0, 0.0, 0.5])
    assert at.indices == (int(2.0 * 22050 / 1024), 0, int(0.5 * 22050 / 1024))
    assert at.sheet is None and at.record is None
    made = _frames_on_disk(video, at.indices).astype(int)
    assert np.abs(made - at.frames.astype(int)).max() <= 1

    again = pipeline.render(
        dataclasses.replace(options, seed=shown.seed, output_file=str(tmp_path / "s.mp4")), spec
    )
    with np.load(record_paths(video)[0]) as a, np.load(again.record) as b:
        np.testing.assert_array_equal(a["noise_vectors"], b["noise_vectors"])
        np.testing.assert_array_equal(a["class_vectors"], b["class_vectors"])
        recorded = a["class_vectors"][:, list(shown.classes)]

    # The plot of the recorded vectors: what the preview showed and the render made.
    plotted = look.plot_song(reuse)
    assert plotted.seed == shown.seed and plotted.data.classes == shown.classes
    np.testing.assert_array_equal(plotted.data.class_weights, recorded)


@pytest.mark.slow
def test_a_wide_preview_shows_the_frames_of_the_wide_render(tmp_path, song, tiny_weights):
    """``--aspect`` reaches the preview: its frames are the wide render's, tiled as they are."""
    pytest.importorskip("torch")
    spec = dataclasses.replace(_spec(tiny_weights), aspect="16:9")
    video = tmp_path / "w.mp4"
    options = _options(song, video, seed=5)
    shown = look.preview_song(options, spec, at=[0.5, 2.0])
    assert shown.frames.shape[1:] == (128, 228, 3)
    pipeline.render(dataclasses.replace(options, use_disk=True), spec)
    made = _frames_on_disk(video, shown.indices).astype(int)
    assert np.abs(made - shown.frames.astype(int)).max() <= 1
    sheet = tmp_path / "other.preview.png"  # w.mp4 exists now: its record is not replaced
    args = ["preview", "--song", song, "--weights", tiny_weights, "--resolution", "128"]
    result = _invoke(*args, "--backend", "cpu", "--aspect", "16:9", "--at", "0.5,2", "-o", sheet)
    assert result.exit_code == 0, result.output
    with Image.open(sheet) as im:
        cols = sheet_columns(2, (128, 228))
        assert im.size[0] == cols * 228 + (cols + 1) * 2


@pytest.mark.slow
def test_preview_command_writes_a_labelled_sheet(tmp_path, song, tiny_weights):
    pytest.importorskip("torch")
    sheet = tmp_path / "s.preview.png"
    args = ["preview", "--song", song, "--weights", tiny_weights, "--resolution", "128"]
    result = _invoke(*args, "--backend", "cpu", "--at", "0,1.5,2.9", "-o", sheet, "-q")
    assert result.exit_code == 0, result.output
    with Image.open(sheet) as im:
        width, height = im.size
    cols = sheet_columns(3, (128, 128))
    assert width == cols * 128 + (cols + 1) * 2 and height > 128
    assert (tmp_path / "s.dmv.json").is_file() and (tmp_path / "s.dmv.npz").is_file()
    # A second preview to the same name needs --overwrite, like a render.
    again = _invoke(*args, "--backend", "cpu", "-o", sheet, "-q")
    assert again.exit_code == 1 and "already exists" in again.stderr


BAD_PREVIEWS = [
    (["--at", "1,abc"], 2, "abc"),
    (["--at", "-1"], 1, ">= 0"),
    (["--at", "2,99"], 1, "past the end of the song"),
    (["--at", "2", "--duration", "1"], 1, "past the end of the video (--duration)"),
    (["--at", "1", "--frames", "3"], 1, "not both"),
    (["--frames", "0"], 1, "--frames"),
    (["--frames", "101"], 1, "--frames"),
    (["-o", "{out}/missing/s.png"], 1, "does not exist"),
    (["-o", "/proc/s.png"], 1, "/proc"),
    (["-o", "{out}/s.jpg"], 1, "must end in .png"),
    (["-o", "{out}/exists.preview.png"], 1, "already exists"),
    (["-o", "{out}/rendered.preview.png"], 1, "would replace its record"),
    (["--truncation", "0"], 1, "truncation"),
    (["--backend", "cuda"], 1, "cuda"),
]


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="GPU backends can run here",
)
@pytest.mark.parametrize(
    ("args", "code", "needle"), BAD_PREVIEWS, ids=[" ".join(c[0]) for c in BAD_PREVIEWS]
)
def test_bad_preview_fails_in_one_line_before_any_work(
    tmp_path, song, monkeypatch, args, code, needle
):
    from dmv_fast.render import engine, job

    monkeypatch.setattr(job, "analyze", lambda *a, **k: pytest.fail("analysis ran"))
    monkeypatch.setattr(engine, "ensure_graph", lambda *a, **k: pytest.fail("the model loaded"))
    (tmp_path / "exists.preview.png").write_bytes(b"keep")
    (tmp_path / "rendered.mp4").write_bytes(b"a video")
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    base = ["preview", "--song", song, "--weights", "random", "--resolution", "128"]
    result = _invoke(
        *base, "-o", tmp_path / "s.preview.png", *[a.format(out=tmp_path) for a in args]
    )
    assert result.exit_code == code, result.output
    if code == 1:  # our own one-line error (2: a usage error, shown by click)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    else:
        assert needle in result.stderr
    assert "Traceback" not in result.output
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


# Pieces -------------------------------------------------------------------------------------


def test_frames_are_picked_across_the_video_or_at_times():
    fps = 22050 / 512
    assert look.pick_frames(100, fps, 5, None) == [0, 25, 50, 74, 99]
    assert look.pick_frames(3, fps, 12, None) == [0, 1, 2]  # never more frames than the video
    assert look.pick_frames(100, fps, 3, [0.0, 1.0, 100 / fps]) == [0, 43, 99]
    with pytest.raises(ValueError, match="past the end of the video"):
        look.pick_frames(100, fps, 1, [3.0])
    assert look.check_picks(None, None) == (12, None)
    assert look.check_picks(None, [1, 2.5]) == (2, [1.0, 2.5])
    for frames, at in ((3, [1.0]), (None, []), (None, [float("nan")]), (True, None)):
        with pytest.raises(ValueError):
            look.check_picks(frames, at)


def test_video_for_names_the_video_an_image_is_for():
    assert look.video_for("a/song.preview.png") == Path("a/song.mp4")
    assert look.video_for("song.plot.svg") == Path("song.mp4")
    assert look.video_for("song.png") == Path("song.mp4")
    assert look.video_for(".preview.png") == Path(".preview.mp4")


def test_tile_lays_out_non_square_frames_with_labels():
    frames = np.zeros((5, 36, 64, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(5)[:, None, None] * 50
    cols = sheet_columns(5, (36, 64))
    sheet = tile(frames, labels=[time_label(k * 1.5, k) for k in range(5)], header="a song", gap=2)
    rows = -(-5 // cols)
    assert sheet.size[0] == cols * 64 + (cols + 1) * 2
    assert sheet.size[1] > rows * 36
    pixels = np.asarray(sheet)
    plain = tile(frames, labels=[str(k) for k in range(5)], gap=2)
    assert plain.size[0] == sheet.size[0] and sheet.size[1] > plain.size[1] > rows * 36
    # Each frame is pasted whole, in order: its red level shows up in the sheet.
    for k in range(5):
        assert (pixels[..., 0] == k * 50).any()
    assert sheet_columns(12, (128, 128)) == 4 and sheet_columns(12, (72, 128)) == 3
    assert time_label(75.5, 3) == "1:15.50  #3" and time_label(2.0) == "2.00 s"
    with pytest.raises(ValueError, match="labels"):
        tile(frames, labels=["one"])
    with pytest.raises(ValueError, match="one size"):
        tile([frames[0], frames[0, :10]])


def test_demo_contact_sheet_reads_frames_back_from_the_video(tmp_path):
    import av

    video = tmp_path / "v.mp4"
    with av.open(str(video), "w") as c:
        stream = c.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(20):
            frame = np.full((48, 64, 3), k * 12, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    from dmv_fast.render.demo import contact_sheet

    sheet = contact_sheet(video, tmp_path / "v.png", columns=3, rows=2)
    with Image.open(sheet) as im:
        assert im.size[0] == 3 * 64 + 4 * 2 and im.size[1] > 2 * 48


def test_at_takes_seconds_and_minutes_seconds():
    import typer

    from dmv_fast.cli.preview import parse_times

    assert parse_times("10, 42.5,1:30") == [10.0, 42.5, 90.0]
    assert parse_times(None) is None
    for bad in ("1,,2", "1:xx", "inf", "ten"):
        with pytest.raises(typer.BadParameter):
            parse_times(bad)


def test_plot_runs_no_model(tmp_path, song):
    """The plot needs the analysis and the vectors only: no ONNX Runtime, no torch."""
    import subprocess

    code = (
        "import sys\n"
        "from dmv_fast.cli.app import main\n"
        "try:\n"
        f"    main(['plot', '--song', {str(song)!r}, '-o', {str(tmp_path / 's.png')!r}, '-q'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print(','.join(m for m in ('onnxruntime', 'torch', 'dmv_fast_export') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
    assert (tmp_path / "s.png").is_file()
