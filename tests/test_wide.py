"""Frames that are not square, end to end: the exported graphs against PyTorch, and MP4s read
back (sizes, frame counts, rate, A/V sync, and wide frames that are neither a stretch, nor a
mirror, nor a repeat of the square frame from the same vectors)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _media import probe
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_pretrained_biggan")

import onnxruntime as ort  # noqa: E402
from _models import (  # noqa: E402
    TINY_RESOLUTION,
    _library_logging,  # noqa: E402, F401 (autouse fixture)
    inputs,
    max_diff,
    psnr,
    write_tiny_folder,
)
from typer.testing import CliRunner  # noqa: E402

from dmv_fast.bench import seams  # noqa: E402
from dmv_fast.cli.app import app  # noqa: E402
from dmv_fast.model.cache import ensure_onnx  # noqa: E402
from dmv_fast.model.runtime import Generator  # noqa: E402
from dmv_fast.render.api import render  # noqa: E402
from dmv_fast.settings.options import RenderOptions  # noqa: E402
from dmv_fast.settings.shape import shape_of  # noqa: E402
from dmv_fast.settings.spec import ModelSpec  # noqa: E402

R = TINY_RESOLUTION
SR = 22050
runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})


@pytest.fixture(scope="module", autouse=True)
def _module_cache(module_cache):
    return module_cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    return folder, write_tiny_folder(folder)


# -- the graphs against PyTorch ---------------------------------------------------------------

SHAPES = [
    ((R, 56), "wide"),  # 16:9: a 4x7 first map
    ((56, R), "wide"),  # 9:16: 7x4
    ((R, 128), "wide"),  # 4:1: 4x16, seven tiles
    ((72, 128), "wide"),  # any size: 4x7 cells resized to 72x128
    ((R, 56), "crop"),
    ((56, R), "pad"),
]


@pytest.mark.parametrize(("frame", "fill"), SHAPES, ids=[f"{f[1]}x{f[0]}-{m}" for f, m in SHAPES])
def test_graph_matches_pytorch_on_the_same_canvas(tiny, frame, fill):
    """PyTorch runs the same canvas through the model's own layers (wide), or the square
    model with the NumPy tail (crop, pad): within one level, like the square graph."""
    from dmv_fast_export.export import torch_frames

    path = ensure_onnx(R, tiny[0], "fp32", 3, frame=frame, fill=fill)
    gen = Generator(path, backend="cpu")
    assert gen.frame_size == frame
    noise, classes = inputs(4, seed=3)  # one full batch and one padded
    shape = shape_of(R, frame, fill)
    for truncation in (0.4, 1.0):
        ours = gen.generate(noise, classes, truncation)
        assert ours.shape == (4, *frame, 3)
        ref = torch_frames(tiny[1], noise, classes, truncation, "stretch", 1, shape)
        assert max_diff(ours, ref) <= 1
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["validation"]["max_pixel_diff"] <= 1
    assert record["output"]["frames"] == ["uint8", [3, *frame, 3]]
    assert record["key"]["fill"] == fill and record["key"]["frame_size"] == list(frame)


def test_wide_graph_pieces(tiny):
    """The first map is the tiles' gen_z blended as the NumPy reference says, the middle
    tile is the frame's own gen_z, and the square graph has no canvas at all."""
    import onnx
    from dmv_fast_export.canvas import first_map_reference, make_canvas
    from dmv_fast_export.fold import fold
    from dmv_fast_export.graph import build_graph

    folded = fold(tiny[1])
    model = build_graph(folded, 2, frame=(R, 56))
    names = [o.name for o in model.graph.output]
    model.graph.output.extend(
        [
            onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
            for n in ("canvas.map", "canvas.tiles")
        ]  # fmt: skip
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    noise, classes = inputs(2, seed=8)
    feeds = {"noise": noise, "classes": classes, "bn_idx": np.array([10, 11]),
             "bn_w": np.array([0.5, 0.5], np.float32)}  # fmt: skip
    frames, first, tiles = session.run([*names, "canvas.map", "canvas.tiles"], feeds)
    canvas = make_canvas((4, 7))
    assert first.shape == (2, 16 * 8, 4, 7) and tiles.shape == (2, 3, 16 * 8, 4, 4)
    np.testing.assert_allclose(first, first_map_reference(canvas, tiles), atol=1e-5)
    with torch.no_grad():
        embed = tiny[1].embeddings(torch.from_numpy(classes))
        own = tiny[1].generator.gen_z(torch.cat((torch.from_numpy(noise), embed), 1))
    own = own.view(2, 4, 4, -1).permute(0, 3, 1, 2).numpy()
    np.testing.assert_allclose(tiles[:, canvas.own], own, atol=1e-5)
    square = build_graph(folded, 2)
    assert not [n for n in square.graph.node if n.name.startswith("canvas.")]
    # A square frame is the square graph whatever the fill says.
    for fill in ("wide", "crop", "pad"):
        same = build_graph(folded, 2, frame=(R, R), fill=fill)
        assert same.SerializeToString() == square.SerializeToString()
    assert [d.dim_value for d in square.graph.output[0].type.tensor_type.shape.dim] == [2, R, R, 3]


def test_fp16_and_yuv_graphs_of_a_wide_frame(tiny):
    """The GPU plan's graph (fp16, YUV 4:2:0 planes made in the graph), run on the CPU."""
    from dmv_fast.video.yuv import rgb_to_yuv420

    frame = (R, 56)
    fp32 = Generator(ensure_onnx(R, tiny[0], "fp32", 2, frame=frame))
    gpu = Generator(ensure_onnx(R, tiny[0], "fp16", 2, pixel_format="yuv420p", frame=frame))
    assert gpu.yuv420 and gpu.precision == "fp16" and gpu.frame_size == frame
    noise, classes = inputs(2, seed=2)
    rgb = gpu.generate(noise, classes, 0.7)
    assert psnr(rgb, fp32.generate(noise, classes, 0.7)) >= 30
    planes = gpu.generate(noise, classes, 0.7, pixel_format="yuv420p")
    assert planes.shape == (2, R * 3 // 2, 56)
    assert np.abs(planes.astype(int) - rgb_to_yuv420(rgb).astype(int)).max() <= 1


def test_int8_keeps_the_canvas_in_float(tiny):
    from dmv_fast_export.fold import fold
    from dmv_fast_export.graph import build_graph
    from dmv_fast_export.quantize import layer_nodes

    groups = layer_nodes(build_graph(fold(tiny[1]), 1, frame=(56, R), fill="wide"))
    assert "canvas.noise/MatMul" in groups["first_linear"]
    assert "canvas.map/MatMul" in groups["first_linear"]
    pad = layer_nodes(build_graph(fold(tiny[1]), 1, frame=(R, 56), fill="pad"))
    assert {"pad.v/MatMul", "pad.h/MatMul"} <= set(pad["pixel_tail"])


# -- MP4s read back ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    from _media import write_song

    return write_song(tmp_path_factory.mktemp("song") / "song.wav", 3.0, 44100, 2)


def _render(song: Path, out: Path, weights: Path, **model) -> object:
    options = RenderOptions(song=str(song), output_file=str(out), frame_length=2048, seed=11,
                            encoder="x264", crf=0)  # fmt: skip
    spec = ModelSpec(resolution=128, weights=str(weights), batch_size=4, backend="cpu", **model)
    return render(options, spec)


@pytest.fixture(scope="module")
def square(tmp_path_factory, tiny_weights, song):
    out = tmp_path_factory.mktemp("square") / "square.mp4"
    result = _render(song, out, tiny_weights)
    return result, probe(out)


def _check_like_the_square(video, square, frame):
    result, ref = square
    assert video.decoded.shape == (result.frames, *frame, 3)
    assert video.frames == ref.frames == result.frames
    assert video.average_rate == ref.average_rate == Fraction(SR, 2048)
    assert video.video_start == 0 and abs(video.audio_start) < 1e-3
    assert abs(video.audio_duration - ref.audio_duration) < 1e-3
    assert abs(video.audio_duration - video.video_duration) <= 2048 / SR  # A/V within a frame


@pytest.mark.slow
def test_wide_render_is_16_9_with_the_square_renders_frames_rate_and_sync(
    tmp_path, tiny_weights, song, square
):
    out = tmp_path / "wide.mp4"
    result = _render(song, out, tiny_weights, aspect="16:9")
    video = probe(out)
    _check_like_the_square(video, square, (128, 228))
    assert abs(228 / 128 - 16 / 9) * 128 <= 1  # 16:9 within a pixel of even rounding
    assert result.plan["frame_size"] == [128, 228] and result.plan["fill"] == "wide"
    record = json.loads(out.with_name("wide.dmv.json").read_text())
    assert record["plan"]["frame_size"] == [128, 228]
    # The same vectors as the square render.
    a, b = np.load(out.with_name("wide.dmv.npz")), np.load(square[0].output.with_suffix(".dmv.npz"))
    np.testing.assert_array_equal(a["noise_vectors"], b["noise_vectors"])
    # Neither a stretch, nor a mirror, nor a repeat of the square frames; the simple ways
    # built from the square frames are caught by the same measures (so they can fail).
    wide, sq = video.decoded, square[1].decoded
    assert (
        seams.stretch_score(wide, sq)
        < 0.6
        < seams.stretch_score(seams.stretched(sq, (128, 228)), sq)
    )
    assert seams.mirror_score(wide) < 0.6 < seams.mirror_score(seams.mirrored(sq, 228))
    assert seams.repeat_score(wide) < 0.6 < seams.repeat_score(seams.tiled(sq, 228))
    assert np.abs(np.diff(wide.astype(int), axis=0)).mean() > 0.5  # it moves with the music


@pytest.mark.slow
def test_exact_size_portrait_crop_and_pad(tmp_path, tiny_weights, song, square):
    for name, model, frame in (
        ("hd", {"size": "1280x720"}, (720, 1280)),
        ("portrait", {"aspect": "9:16"}, (228, 128)),
        ("crop", {"aspect": "16:9", "fill": "crop"}, (128, 228)),
        ("pad", {"aspect": "9:16", "fill": "pad"}, (228, 128)),
    ):
        out = tmp_path / f"{name}.mp4"
        _render(song, out, tiny_weights, **model)
        video = probe(out)
        _check_like_the_square(video, square, frame)
        if name == "pad":  # the square itself, untouched, between two blurred strips
            sq = square[1].decoded.astype(int)
            middle = video.decoded[:, 50:178].astype(int)
            assert np.abs(middle - sq).mean() < 1.5
            assert np.abs(np.diff(video.decoded[:, :40].astype(int), axis=1)).mean() < 3
        if name == "crop":  # the square's middle rows, scaled by 228/128
            rows = square[1].decoded[:, 28:100].astype(int)
            small = np.stack([np.asarray(Image.fromarray(f).resize((128, 72), Image.LANCZOS))
                              for f in video.decoded])  # fmt: skip
            assert np.abs(small.astype(int) - rows).mean() < 12


@pytest.mark.slow
def test_use_disk_save_only_and_segments_at_16_9(tmp_path, tiny_weights, song, square):
    from dmv_fast.render.segmented import render_segmented

    out = tmp_path / "disk.mp4"
    common = dict(song=str(song), frame_length=2048, seed=11, encoder="x264", crf=0)
    model = dict(resolution=128, weights=str(tiny_weights), batch_size=4, backend="cpu")
    spec = ModelSpec(aspect="16:9", **model)
    render(RenderOptions(output_file=str(out), use_disk=True, **common), spec)
    folder = out.with_name("disk.frames")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["frame_size"] == [128, 228] and manifest["fill"] == "wide"
    first = probe(out).decoded
    assert first.shape[1:] == (128, 228, 3)
    again = tmp_path / "again.mp4"
    (tmp_path / "again.frames").symlink_to(folder)
    render(RenderOptions(output_file=str(again), save_only=True, **common), spec)
    np.testing.assert_array_equal(probe(again).decoded, first)
    # A square render cannot take the wide frames: the manifest says they are another shape.
    with pytest.raises(ValueError, match="other settings"):
        render(RenderOptions(output_file=str(again), save_only=True, **common),
               ModelSpec(**model), overwrite=True)  # fmt: skip
    seg = tmp_path / "seg.mp4"
    render_segmented(RenderOptions(output_file=str(seg), **common), spec, workers=2,
                     segment_frames=8)  # fmt: skip
    np.testing.assert_array_equal(probe(seg).decoded, first)


@pytest.mark.slow
def test_live_raw_prints_the_stream_size_and_sends_wide_frames(tmp_path, tiny_weights):
    from _media import synth_music

    pcm = synth_music(1.0, 16000, 1)
    result = runner.invoke(
        app,
        [
            "live",
            "--stdin",
            "--rate",
            "16000",
            "--raw",
            "--weights",
            str(tiny_weights),
            "--resolution",
            "128",
            "--frame-length",
            "2048",
            "--backend",
            "cpu",
            "--seed",
            "1",
            "-q",
            "--aspect",
            "9:16",
        ],  # fmt: skip
        input=pcm.astype("<f4").tobytes(),
    )
    assert result.exit_code == 0, result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("raw video: rgb24 128x228 at 11025/1024 frames/s")
    frames = np.frombuffer(result.stdout_bytes, np.uint8).reshape(-1, 228, 128, 3)
    assert abs(len(frames) - (1 + round(1.0 * SR) // 2048)) <= 1


@pytest.mark.slow
def test_export_and_bench_take_the_frame_options(tmp_path, tiny_weights):
    from dmv_fast.bench import run_bench

    out = tmp_path / "g.onnx"
    result = runner.invoke(app, ["export", "--resolution", "128", "--weights", str(tiny_weights),
                                 "--backend", "cpu", "--batch-size", "2", "--size", "640x360",
                                 "--output", str(out), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    gen = Generator(out)
    assert gen.frame_size == (360, 640) and gen.batch_size == 2
    table = run_bench(tmp_path / "bench", [128], [2], ["ort-cpu", "torch"], 0.5, 0.0,
                      isolate=False, weights=str(tiny_weights),
                      shape={"aspect": "16:9", "fill": "wide"})  # fmt: skip
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]
    ort_row, torch_row = rows
    assert ort_row["status"] == "ok" and ort_row["frame_size"] == [128, 228]
    assert ort_row["plan"]["fill"] == "wide" and ort_row["frames_per_s"] > 0
    assert torch_row["status"] == "skipped" and "square" in torch_row["reason"]
    assert "128 → 228x128 wide" in table
