"""Winograd convolutions in the CPU graph: exact transforms, the same pixels as the direct
graph and as PyTorch, the plan's choice by CPU flags, the cache key and the export's fallback."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_pretrained_biggan")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from _models import (  # noqa: E402
    TINY_RESOLUTION,
    TRUNCATIONS,
    _library_logging,  # noqa: E402, F401 (autouse fixture)
    inputs,
    max_diff,
    tiny_model,
    torch_reference,
    write_tiny_folder,
)
from dmv_fast_export import winograd  # noqa: E402
from dmv_fast_export.fold import fold  # noqa: E402
from dmv_fast_export.graph import build_graph  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dmv_fast.model import cache as models  # noqa: E402
from dmv_fast.model import weights as model_weights  # noqa: E402
from dmv_fast.model.runtime import Generator  # noqa: E402
from dmv_fast.model.truncation import bn_inputs  # noqa: E402
from dmv_fast.settings import machine, plan  # noqa: E402
from dmv_fast.settings.machine import CPU, CUDA  # noqa: E402
from dmv_fast.settings.plan import resolve  # noqa: E402
from dmv_fast.settings.spec import GraphSpec, ModelSpec  # noqa: E402


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=[CPU])


def _frames(model: onnx.ModelProto, noise, classes, truncation: float) -> np.ndarray:
    idx, w = bn_inputs(truncation)
    feeds = {"noise": noise, "classes": classes, "bn_idx": idx, "bn_w": w}
    return _session(model).run(["frames"], feeds)[0]


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.fixture(scope="module")
def tiny_direct():
    """A tiny BigGAN-deep (PyTorch) and its direct graph at batch 3."""
    model = tiny_model()
    return model, build_graph(fold(model), 3)


# -- the transforms -------------------------------------------------------------------------


@pytest.mark.parametrize("m", winograd.TILES)
def test_transforms_compute_a_correlation_exactly(m):
    at, g, bt = winograd.transforms(m)
    assert at.shape == (m, m + 2) and g.shape == (m + 2, 3) and bt.shape == (m + 2, m + 2)
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, k = rng.standard_normal(m + 2), rng.standard_normal(3)
        direct = np.array([d[i : i + 3] @ k for i in range(m)])
        assert np.allclose(at @ ((g @ k) * (bt @ d)), direct, rtol=0, atol=1e-12)


def test_transforms_refuse_a_tile_without_points():
    with pytest.raises(ValueError, match="points"):
        winograd.transforms(9)


# -- the pass on graphs ---------------------------------------------------------------------


def _conv_graph(b, c, o, h, w, seed=0):
    """x -> one 3x3 convolution (padding 1, bias) -> y, and its weights."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(o).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="layer.conv/Conv", pads=[1] * 4)
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, o, h, w])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model, weight, bias


@pytest.mark.parametrize("m", winograd.TILES)
@pytest.mark.parametrize("shape", [(2, 5, 7, 6, 9), (1, 3, 4, 4, 4), (3, 8, 2, 11, 5)])
def test_any_frame_shape_matches_pytorch_conv(m, shape):
    """Non-square maps, sizes that are not a multiple of the tile (cropped), any channels."""
    b, c, o, h, w = shape
    model, weight, bias = _conv_graph(b, c, o, h, w)
    (site,) = winograd.find_sites(model)
    assert (site.kind, site.shape, site.channels_out) == ("conv3x3", (b, c, h, w), o)
    rewritten = winograd.rewrite(model, {site.name: m})
    onnx.checker.check_model(rewritten, full_check=True)
    assert "Conv" in _ops(rewritten) and "MatMul" in _ops(rewritten)
    x = np.random.default_rng(1).standard_normal((b, c, h, w)).astype(np.float32)
    ours = _session(rewritten).run(None, {"x": x})[0]
    ref = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias), padding=1
    ).numpy()
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 2e-4 * np.abs(ref).max()


def test_sites_of_the_tiny_graph(tiny_direct):
    _, direct = tiny_direct
    sites = winograd.find_sites(direct)
    kinds = [s.kind for s in sites]
    # Every block has one plain 3x3 (conv_2); the blocks that up-sample have a phase group.
    assert kinds.count("upsample") == 3 and kinds.count("conv3x3") == 9
    up = next(s for s in sites if s.kind == "upsample")
    assert up.weight.shape == (4 * up.channels_out, up.shape[1], 3, 3)
    assert len(up.nodes) > 4  # the four phase convolutions and their interleave


@pytest.mark.parametrize("m", winograd.TILES)
def test_every_site_rewritten_keeps_the_pixels(tiny_direct, m):
    """Every 3x3 and every up-sampling convolution of the tiny graph in Winograd form:
    within 1 level of PyTorch at every truncation, no 3x3 or phase convolution left."""
    model, direct = tiny_direct
    sites = winograd.find_sites(direct)
    rewritten = winograd.rewrite(direct, {s.name: m for s in sites})
    onnx.checker.check_model(rewritten, full_check=True)
    kernels = [
        tuple(numpy_helper.to_array(t).shape[2:])
        for t in rewritten.graph.initializer
        if t.name in {n.input[1] for n in rewritten.graph.node if n.op_type == "Conv"}
    ]
    assert (3, 3) not in kernels and (2, 2) not in kernels
    assert winograd.find_sites(rewritten) == []
    noise, classes = inputs(3, seed=5)
    for truncation in TRUNCATIONS:
        ours = _frames(rewritten, noise, classes, truncation)
        assert max_diff(ours, torch_reference(model, noise, classes, truncation)) <= 1
        assert max_diff(ours, _frames(direct, noise, classes, truncation)) <= 1


def test_rewrite_refuses_unknown_layers_and_tiles(tiny_direct):
    _, direct = tiny_direct
    with pytest.raises(ValueError, match="no 3x3 convolution named"):
        winograd.rewrite(direct, {"layers.99.conv_1": 4})
    name = winograd.find_sites(direct)[0].name
    with pytest.raises(ValueError, match="expected one of"):
        winograd.rewrite(direct, {name: 3})
    assert winograd.rewrite(direct, {name: 0}).graph.node[0] == direct.graph.node[0]


def _site(kind="conv3x3", b=4, c=512, o=512, h=8, w=8):
    p = 4 if kind == "upsample" else 1
    return winograd.Site("l", kind, "x", "y", (b, c, h, w), np.zeros((p * o, c, 3, 3)),
                         np.zeros(o, np.float32), ("y",))  # fmt: skip


def test_tile_rule_is_wide_layers_with_enough_tiles():
    assert winograd.tile_for(_site(h=8, w=8, b=4)) == 4  # 16 tiles of 4x4
    assert winograd.tile_for(_site(h=8, w=8, b=1)) == 2  # 4 of 4x4, 16 of 2x2
    assert winograd.tile_for(_site(h=4, w=4, b=4)) == 2
    assert winograd.tile_for(_site(h=4, w=4, b=1)) == 0  # the weights would dominate
    assert winograd.tile_for(_site(c=64, o=64, h=64, w=64)) == 0  # transforms dominate
    assert winograd.tile_for(_site(h=16, w=40, b=1)) == 4  # non-square maps too
    assert winograd.tile_for(_site("upsample", h=16, w=16)) == 0


# -- the plan, the key, the export ----------------------------------------------------------


@pytest.fixture
def _fresh_probe():
    machine.reset_probe()
    yield
    machine.reset_probe()


def test_plan_chooses_by_cpu_flags_and_threads(_fresh_probe, monkeypatch):
    spec = ModelSpec(resolution=128, batch_size=4)
    avx512, avx2 = frozenset({"avx2", "avx512f"}), frozenset({"avx2", "fma"})
    assert plan.conv_form_for("cpu", "fp32", avx512, threads=1)[0] == "winograd"
    form, why = plan.conv_form_for("cpu", "fp32", avx512, threads=2)
    assert form == "direct" and "2 threads" in why  # measured no faster there
    form, why = plan.conv_form_for("cpu", "fp32", avx2, threads=1)
    assert form == "direct" and "avx512f" in why  # no measurement without AVX-512
    assert plan.conv_form_for("cuda", "fp16", avx512, threads=1)[0] == "direct"
    assert plan.conv_form_for("cpu", "int8", avx512, threads=1)[0] == "direct"

    monkeypatch.setitem(machine._probe, "cpu_flags", ("avx2", "fma"))
    p = resolve(spec, offered=(CPU,), threads=1)
    assert p.conv_form == "direct" and p.to_dict()["conv_form"] == "direct"
    machine.reset_probe()
    monkeypatch.setitem(machine._probe, "cpu_flags", ("avx2", "avx512f"))
    p = resolve(spec, offered=(CPU,), threads=1)
    assert p.conv_form == "winograd" and p.graph.conv_form == "winograd"
    assert any(n.startswith("conv winograd") for n in p.notes)
    assert p.for_threads(2).conv_form == "direct" and p.for_threads(1) is p
    assert resolve(spec, offered=(CPU,), threads=2).conv_form == "direct"
    assert resolve(spec, offered=(CPU,), threads=2, conv_form="winograd").conv_form == "winograd"
    assert resolve(ModelSpec(precision="int8"), offered=(CPU,), threads=1).conv_form == "direct"
    gpu = resolve(spec, offered=(CUDA, CPU), loadable=(CUDA, CPU), encoder="x264", threads=1)
    assert gpu.conv_form == "direct" and gpu.for_threads(1) is gpu
    assert gpu.on_cpu("test").for_threads(1).conv_form == "winograd"


def test_graph_spec_keeps_winograd_to_fp32_rgb():
    assert GraphSpec(128, "fp32", conv_form="winograd").to_dict()["conv_form"] == "winograd"
    for precision, fmt in (("fp16", "rgb24"), ("int8", "rgb24"), ("fp32", "yuv420p")):
        with pytest.raises(ValueError, match="winograd"):
            GraphSpec(128, precision, pixel_format=fmt, conv_form="winograd")
    with pytest.raises(ValueError, match="conv_form"):
        GraphSpec(128, conv_form="fft")


def test_the_form_is_part_of_the_cache_key():
    source = model_weights.resolve_weights("random", 128)
    direct = models.onnx_key(source, "fp32", 4, 1, "stretch")
    wino = models.onnx_key(source, "fp32", 4, 1, "stretch", conv_form="winograd")
    assert direct["conv_form"] == "direct" and wino["conv_form"] == "winograd"
    assert models.onnx_path(direct) != models.onnx_path(wino)
    assert "-wino-" in models.onnx_path(wino).name


def test_export_falls_back_to_direct_beyond_one_level(tmp_path, monkeypatch, caplog):
    """A Winograd graph further than allowed from PyTorch is not cached as such: the export
    writes the direct graph, says so in the sidecar and the metadata, and logs why."""
    import dmv_fast_export.export as export

    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)  # the tiny model's layers qualify
    folder = tmp_path / "tiny"
    write_tiny_folder(folder)
    path = models.ensure_onnx(TINY_RESOLUTION, folder, "fp32", 4, conv_form="winograd")
    record = models.onnx_record(path)
    assert record["winograd"]["applied"] is True
    assert any(v["tile"] for v in record["winograd"]["layers"].values())
    assert "MatMul" in _ops(onnx.load(path))
    gen = Generator(path, backend="cpu")
    assert gen.conv_form == "winograd" and gen.plan.conv_form == "winograd"

    monkeypatch.setattr(export, "MAX_WINOGRAD_DIFF", -1)  # nothing passes
    path = models.ensure_onnx(TINY_RESOLUTION, folder, "fp32", 4, conv_form="winograd", force=True)
    record = models.onnx_record(path)
    assert record["winograd"]["applied"] is False
    assert "exporting direct convolutions instead" in caplog.text
    gen = Generator(path, backend="cpu")
    assert gen.conv_form == "direct" and gen.plan.conv_form == "direct"
    noise, classes = inputs(4)
    ref = torch_reference(tiny_model(), noise, classes, 0.5)
    assert max_diff(gen.generate(noise, classes, 0.5), ref) <= 1


@pytest.mark.slow
def test_full_128_winograd_graph_within_one_level_of_pytorch(tmp_path_factory):
    """The CPU plan's graph at 128 pixels (batch 4): F(2x2) and F(4x4) layers, direct ones
    beside them; every truncation within 1 level of PyTorch, fewer multiply-adds."""
    from dmv_fast_export.export import export_graph
    from dmv_fast_export.weights import load_model

    source = model_weights.resolve_weights("random", 128)
    model, _ = load_model(source)
    key = models.onnx_key(source, "fp32", 4, 1, "stretch", conv_form="winograd")
    path = tmp_path_factory.mktemp("wino128") / "graph.onnx"
    made = export_graph(source, key, path, model=model)
    layers = made["winograd"]["layers"]
    assert made["winograd"]["applied"] and made["validation"]["max_pixel_diff"] <= 1
    assert {v["tile"] for v in layers.values()} == {0, 2, 4}
    assert all(v["tile"] == 0 for v in layers.values() if v["kind"] == "upsample")
    assert sum(v["gmac"] for v in layers.values()) < 0.7 * sum(
        v["direct_gmac"] for v in layers.values()
    )
    gen = Generator(path, backend="cpu")
    noise, classes = inputs(5, seed=11)  # one full batch and one padded
    for truncation in TRUNCATIONS:
        ours = gen.generate(noise, classes, truncation)
        ref = torch_reference(model, noise, classes, truncation)
        assert max_diff(ours, ref) <= 1, truncation
        assert ours.std() > 20


@pytest.mark.parametrize("frame", [(32, 56), (56, 32)])
def test_a_wide_canvas_rewritten_keeps_the_pixels(tiny_direct, frame):
    """The widened first map (16:9 and 9:16) through Winograd convolutions: the same frames
    as its direct graph, within 1 level."""
    model, _ = tiny_direct
    direct = build_graph(fold(model), 3, frame=frame, fill="wide")
    sites = winograd.find_sites(direct)
    assert sites and any(s.shape[2] != s.shape[3] for s in sites)
    rewritten = winograd.rewrite(direct, {s.name: 2 for s in sites})
    noise, classes = inputs(3, seed=9)
    for truncation in (0.4, 1.0):
        ours = _frames(rewritten, noise, classes, truncation)
        assert ours.shape[1:3] == frame
        assert max_diff(ours, _frames(direct, noise, classes, truncation)) <= 1
