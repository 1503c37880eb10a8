"""Frame shapes: --aspect / --size / --fill settled once, the wide canvas's layout, the pixel
tail against PIL, and bad values refused in one line by every command."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dmv_fast.cli.app import app
from dmv_fast.model import cache as models
from dmv_fast.settings.machine import CPU
from dmv_fast.settings.plan import resolve
from dmv_fast.settings.shape import frame_shape, shape_of
from dmv_fast.settings.spec import GraphSpec, ModelSpec

runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})

# -- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "frame", "native", "cells"),
    [
        ({}, (128, 128), (128, 128), (4, 4)),
        ({"aspect": "1:1"}, (128, 128), (128, 128), (4, 4)),
        ({"aspect": "16:9"}, (128, 228), (128, 224), (4, 7)),
        ({"aspect": "9:16"}, (228, 128), (224, 128), (7, 4)),
        ({"aspect": "32:18"}, (128, 228), (128, 224), (4, 7)),
        ({"aspect": "4:3"}, (128, 170), (128, 160), (4, 5)),
        ({"aspect": "2.39:1"}, (128, 306), (128, 320), (4, 10)),
        ({"aspect": "4:1"}, (128, 512), (128, 512), (4, 16)),
        ({"aspect": "16:9", "scaling": 2}, (256, 456), (128, 224), (4, 7)),
        ({"size": "1280x720"}, (720, 1280), (128, 224), (4, 7)),
        ({"size": "1080x1920"}, (1920, 1080), (224, 128), (7, 4)),
        ({"size": "1920x1080", "aspect": "16:9"}, (1080, 1920), (128, 224), (4, 7)),
        ({"size": "300x300"}, (300, 300), (128, 128), (4, 4)),
        ({"aspect": "16:9", "fill": "crop"}, (128, 228), (128, 128), (4, 4)),
        ({"aspect": "9:16", "fill": "pad"}, (228, 128), (128, 128), (4, 4)),
    ],
)
def test_frame_sizes(kwargs, frame, native, cells):
    spec = ModelSpec(resolution=128, **kwargs)
    shape = spec.shape
    assert spec.frame_size == shape.frame == frame
    assert (shape.native, shape.first_map) == (native, cells)
    assert frame[0] % 2 == 0 and frame[1] % 2 == 0  # yuv420p / NVENC
    if (
        "size" not in kwargs
    ):  # the short side is resolution x scaling, the aspect within even rounding
        short, long_ = sorted(frame)
        assert short == 128 * kwargs.get("scaling", 1)
        w, h = (float(x) for x in kwargs.get("aspect", "1:1").split(":"))
        assert abs(long_ - short * max(w, h) / min(w, h)) <= 1


def test_aspect_and_size_are_stored_in_one_spelling():
    spec = ModelSpec(resolution=128, aspect="32:18", size=" 1280 x 720 ")
    assert (spec.aspect, spec.size) == ("16:9", "1280x720")
    assert ModelSpec(aspect="2.39:1").aspect == "239:100"
    assert ModelSpec().aspect is None and ModelSpec().fill == "wide"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"aspect": "0:9"}, "aspect must be W:H"),
        ({"aspect": "abc"}, "aspect must be W:H"),
        ({"aspect": 1.5}, "aspect must be W:H"),
        ({"aspect": "5:1"}, "outside 1:4 .. 4:1"),
        ({"size": "100x50"}, "too small"),
        ({"size": "1279x720"}, "refused rather than rounded (use 1280x720)"),
        ({"size": "4098x2304"}, "too large"),
        ({"size": "2000x400"}, "outside the aspects"),
        ({"size": (1280, 720)}, "WIDTHxHEIGHT"),
        ({"size": "1280x720", "scaling": 2}, "not both"),
        ({"size": "1280x720", "aspect": "9:16"}, "not the aspect 9:16"),
        ({"fill": "tile"}, "fill must be one of wide, crop, pad"),
    ],
)
def test_bad_shapes_are_one_line_errors(kwargs, needle):
    with pytest.raises(ValueError) as info:
        ModelSpec(resolution=128, **kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_square_frame_keeps_its_graph_key_and_any_other_adds_its_shape():
    square = GraphSpec(128, batch_size=4).to_dict()
    assert square == {
        "resolution": 128, "precision": "fp32", "batch_size": 4, "scaling": 1,
        "pixels": "stretch", "pixel_format": "rgb24", "frame_size": [128, 128],
        "conv_form": "direct",
    }  # fmt: skip
    # fill means nothing for a square frame: it never splits the cache.
    assert GraphSpec(128, batch_size=4, fill="pad").to_dict() == square
    plan = resolve(ModelSpec(resolution=128, aspect="16:9"), offered=(CPU,))
    key = plan.graph.to_dict()
    assert key["frame_size"] == [128, 228] and key["fill"] == "wide"
    assert key["native_size"] == [128, 224] and key["first_map"] == [4, 7]
    crop = resolve(ModelSpec(resolution=128, aspect="16:9", fill="crop"), offered=(CPU,))
    assert crop.graph.to_dict()["native_size"] == [128, 128]
    assert plan.to_dict()["frame_size"] == [128, 228]  # the record and manifests carry it
    assert plan.frame_size == (128, 228)


def test_graph_cache_names_say_the_frame(monkeypatch, tmp_path):
    monkeypatch.setenv("DMV_FAST_CACHE", str(tmp_path))
    from dmv_fast.model.weights import resolve_weights

    source = resolve_weights("random", 128)
    square = models.onnx_path(models.onnx_key(source, "fp32", 4, 1, "stretch"))
    wide = models.onnx_path(models.onnx_key(source, "fp32", 4, 1, "stretch", "rgb24", (720, 1280)))
    crop = models.onnx_key(source, "fp32", 4, 1, "stretch", "rgb24", (720, 1280), "crop")
    assert "-x1-stretch-" in square.name and "x720" not in square.name
    assert "-1280x720-wide-" in wide.name
    assert models.onnx_path(crop) != wide


def test_workers_follow_the_frame_pixels():
    from dmv_fast.settings.plan import default_workers

    square = default_workers(True, "x264", 512, cores=256)
    wide = default_workers(True, "x264", 512, cores=256, frame_size=(512, 910), canvas=(512, 896))
    big = default_workers(True, "x264", 512, cores=256, frame_size=(1080, 1920), canvas=(512, 896))
    assert square < big and wide <= big


# -- the wide canvas ---------------------------------------------------------------------------


def test_canvas_layout():
    canvas_mod = pytest.importorskip("dmv_fast_export.canvas")
    assert canvas_mod.tile_offsets(4) == [0]
    assert canvas_mod.tile_offsets(7) == [0, 2, 3]
    assert canvas_mod.tile_offsets(16) == [0, 2, 4, 6, 8, 10, 12]
    for length in range(5, 17):
        offsets = canvas_mod.tile_offsets(length)
        assert offsets[0] == 0 and offsets[-1] == length - 4
        assert all(0 < b - a <= 2 for a, b in zip(offsets, offsets[1:], strict=False))
    c = canvas_mod.make_canvas((4, 7))
    assert c.wide and c.tiles == 3 and c.placement.shape == (12, 7)
    np.testing.assert_allclose(c.placement.sum(axis=0), 1, atol=1e-6)  # a partition of unity
    assert (c.placement >= 0).all()
    maps = c.noise_maps.reshape(128, 3, 128)
    np.testing.assert_array_equal(maps[:, c.own], np.eye(128))  # the middle tile: z itself
    z = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    tiles = [z @ maps[:, k] for k in range(3)]
    # Related, not equal: same length, correlated with z by cos(60 degrees), and the two side
    # tiles differ from each other and from a mirror (reversed units) of z.
    for k in (0, 2):
        np.testing.assert_allclose(np.linalg.norm(tiles[k], axis=1),
                                   np.linalg.norm(z, axis=1), rtol=0.25)  # fmt: skip
        assert 0.35 < np.mean(np.sum(tiles[k] * z, 1) / np.sum(z * z, 1)) < 0.65
    assert np.abs(tiles[0] - tiles[2]).mean() > 0.5
    # The same vectors always give the same canvas.
    np.testing.assert_array_equal(canvas_mod.make_canvas((4, 7)).noise_maps, c.noise_maps)
    tall = canvas_mod.make_canvas((7, 4))
    assert not tall.wide and np.array_equal(tall.placement, c.placement)
    with pytest.raises(ValueError):
        canvas_mod.make_canvas((5, 7))


# -- the pixel tail against PIL ------------------------------------------------------------


def _pil(frames, size, box=None):
    return np.stack(
        [np.asarray(Image.fromarray(f).resize(size, Image.LANCZOS, box=box)) for f in frames]
    )


@pytest.mark.parametrize(
    ("native", "frame", "fill"),
    [
        ((64, 112), (64, 114), "wide"),  # one pass: 1.8 % wider
        ((64, 112), (360, 640), "wide"),  # non-integer upscaling, both passes
        ((112, 64), (96, 54), "wide"),  # downscaling
        ((64, 64), (64, 114), "crop"),
        ((64, 64), (114, 64), "crop"),
        ((64, 64), (150, 150), "wide"),  # a square of another size
    ],
)
def test_tail_resize_is_pil_exact(native, frame, fill):
    pixels = pytest.importorskip("dmv_fast_export.pixels")
    rng = np.random.default_rng(5)
    smooth = (np.cumsum(rng.integers(-9, 10, (2, *native, 3)), axis=2) % 256).astype(np.uint8)
    shape = dataclasses.replace(shape_of(64, frame, fill), native=native)
    tail = pixels.frame_tail(shape)
    ours = pixels.tail_reference(smooth, tail)
    box = None
    if fill == "crop":
        (h, w), (fh, fw) = native, frame
        keep_h, keep_w = min(h, w * fh / fw), min(w, h * fw / fh)
        box = ((w - keep_w) / 2, (h - keep_h) / 2, (w + keep_w) / 2, (h + keep_h) / 2)
    np.testing.assert_array_equal(ours, _pil(smooth, frame[::-1], box))


def test_pad_puts_the_square_on_its_blurred_cover():
    pixels = pytest.importorskip("dmv_fast_export.pixels")
    rng = np.random.default_rng(1)
    square = rng.integers(0, 256, (1, 64, 64, 3)).astype(np.uint8)
    for frame in ((64, 114), (114, 64)):
        tail = pixels.frame_tail(frame_shape(64, f"{frame[1]}:{frame[0]}", fill="pad"))
        out = pixels.tail_reference(square, tail)
        assert out.shape == (1, *frame, 3)
        top, left = tail.offset
        np.testing.assert_array_equal(out[:, top : top + 64, left : left + 64], square)
        cover = np.delete(out[0], np.s_[left : left + 64] if left else np.s_[top : top + 64],
                          axis=1 if left else 0)  # fmt: skip
        # Blurred: far smoother than the square's noise, and of its colours.
        assert np.abs(np.diff(cover.astype(int), axis=0)).mean() < 8
        assert abs(cover.mean() - square.mean()) < 20


# -- every command refuses a bad shape in one line ------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["render", "--song", "{song}", "-o", "{out}"],
        ["batch", "{song}", "--out-dir", "{dir}"],
        ["live", "--song", "{song}", "-o", "{out}"],
        ["export"],
        ["bench", "--out", "{dir}", "--backends", "ort-cpu", "--resolutions", "128"],
    ],
)
@pytest.mark.parametrize(("args", "needle"), [(["--aspect", "0:9"], "aspect"),
                                              (["--size", "100x50"], "too small")])  # fmt: skip
def test_every_command_refuses_a_bad_shape(tmp_path, monkeypatch, song_wav, command, args, needle):
    monkeypatch.setenv("DMV_FAST_CACHE", str(tmp_path / "cache"))
    names = {"song": song_wav, "out": tmp_path / "v.mp4", "dir": tmp_path / "results"}
    argv = [a.format(**names) for a in command] + ["--weights", "random", *args]
    if command[0] == "bench":
        argv = argv[: -len(args) - 2] + args  # bench takes no --weights
    before = set(tmp_path.rglob("*"))
    result = runner.invoke(app, argv)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
    assert set(tmp_path.rglob("*")) == before
