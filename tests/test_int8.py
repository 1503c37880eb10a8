"""int8 generator: quality against fp32, the cache entry, CPU-only, the quantization recipe."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pytorch_pretrained_biggan")

import onnx  # noqa: E402
from _models import (  # noqa: E402
    TINY_RESOLUTION,
    _library_logging,  # noqa: F401 (autouse fixture)
    inputs,
    psnr,
    write_tiny_folder,
)
from dmv_fast_export import feeds as feeds_module  # noqa: E402
from dmv_fast_export import quality, quantize  # noqa: E402

from dmv_fast.files import sha256_file
from dmv_fast.model import cache as models  # noqa: E402
from dmv_fast.model import weights as model_weights
from dmv_fast.model.runtime import Generator  # noqa: E402
from dmv_fast.settings.spec import ModelSpec

BATCH = 2
#: The tiny model's bar (the full models' is 35 dB, see benchmarks/results/int8_cpu.md). Its
#: layers have 2 to 16 channels, so a per-tensor activation range is set by a few channels,
#: and each frame has only 1024 pixels whose stretch to 0..255 follows its own extremes; it
#: measures 28-33 dB. 25 dB (about 14 levels rms) is still the same picture, while a wrong
#: scale, a swapped channel or a broken fusion lands under 15 dB.
TINY_PSNR_DB = 25.0


@pytest.fixture(scope="module", autouse=True)
def _module_cache(module_cache):
    """One cache for the module's exports (tests that need a fresh one set their own)."""
    return module_cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    write_tiny_folder(folder)
    return folder


@pytest.fixture(scope="module")
def graphs(tiny):
    """(fp32 path, int8 path) of the tiny model, both through the cache."""
    fp32 = models.ensure_onnx(TINY_RESOLUTION, tiny, "fp32", BATCH)
    int8 = models.ensure_onnx(TINY_RESOLUTION, tiny, "int8", BATCH)
    return fp32, int8


def _in_range(truncation: float, frames: int, seed: int):
    return inputs(frames, seed=seed, truncation=truncation)


def test_int8_frames_are_within_the_bar_of_fp32(graphs, tmp_path):
    """Calibrated and checked on vectors inside the range the tiny random model's BatchNorm
    statistics were set for (``inputs``: |z| <= 2T, class mixtures summing to 1). Render
    vectors mix up to 12 classes at full weight and drive its random layers into a saturated
    tanh (a quarter to 40 % of pixels at +-1), where every frame is a sign pattern and any
    rounding flips whole pixels: that measures the random weights, not the quantization."""
    fp32 = graphs[0]
    batches = [
        feed
        for k, t in enumerate((0.2, 0.4, 0.6, 0.8, 1.0))
        for feed in feeds_module.feeds(*_in_range(t, 2 * BATCH, 100 + k), t, BATCH)
    ]
    ranges = quantize.calibrate(fp32, tmp_path / "ranges.json", batches)
    int8 = quantize.quantize(fp32, tmp_path / "int8.onnx", ranges_path=ranges)
    figures = quality.compare(int8, fp32, (0.2, 0.5, 1.0), frames=4, vectors=_in_range)
    for truncation, q in figures.items():
        assert q["psnr_db"] >= TINY_PSNR_DB, (truncation, q)
        assert q["ssim"] >= 0.85, (truncation, q)
    gen8, gen32 = Generator(int8, backend="cpu"), Generator(fp32, backend="cpu")
    assert gen8.precision == "int8" and gen8.batch_size == BATCH
    noise, classes = inputs(3, seed=2, truncation=0.7)  # one full batch and one padded
    ours = gen8.generate(noise, classes, 0.7)
    assert ours.shape == (3, TINY_RESOLUTION, TINY_RESOLUTION, 3) and ours.dtype == np.uint8
    assert psnr(ours, gen32.generate(noise, classes, 0.7)) >= TINY_PSNR_DB
    assert ours.std() > 20  # a picture, not a flat frame


def test_int8_graph_is_quantized_and_keeps_the_sensitive_layers(graphs):
    model = onnx.load(str(graphs[1]))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 10 and ops.count("DequantizeLinear") >= 20
    inits = {t.name: t.data_type for t in model.graph.initializer}
    int8_weights = [n for n, t in inits.items() if t == onnx.TensorProto.INT8]
    assert any(".conv_1." in n for n in int8_weights)  # the block convolutions are int8
    assert inits["conv_to_rgb.weight"] == onnx.TensorProto.FLOAT  # the last conv is not
    assert inits["gen_z.weight"] == onnx.TensorProto.FLOAT  # nor the first linear
    assert not any("theta_phi_g" in n or "o_conv" in n for n in int8_weights)  # nor attention
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["dmv_fast.precision"] == "int8"


def test_cache_keeps_int8_apart_from_fp32(tiny, graphs):
    fp32, int8 = graphs
    assert fp32 != int8 and fp32.parent == int8.parent
    assert "-int8-" in int8.name and "-fp32-" in fp32.name
    source = model_weights.resolve_weights(tiny, TINY_RESOLUTION)
    key8 = models.onnx_key(source, "int8", BATCH, 1, "stretch")
    key32 = models.onnx_key(source, "fp32", BATCH, 1, "stretch")
    assert models.cached_onnx(key8) == int8 and models.cached_onnx(key32) == fp32
    assert key8["quantizer_version"] and "quantizer_version" not in key32
    record = json.loads(int8.with_suffix(".json").read_text())
    assert record["key"] == key8
    assert record["quantized_from"]["sha256"] == sha256_file(fp32)
    assert set(record["validation"]["truncations"]) == {"0.2", "0.5", "1.0"}
    assert sha256_file(fp32) != sha256_file(int8)


def test_damaged_int8_entry_is_rebuilt_without_exporting_again(tiny, graphs, monkeypatch, caplog):
    fp32, int8 = graphs
    noise, classes = inputs(2)
    before = Generator(int8, backend="cpu").generate(noise, classes, 0.5)
    data = int8.read_bytes()
    int8.write_bytes(data[: len(data) // 3])  # cut short, e.g. by a full disk

    import dmv_fast_export.export as export

    def refuse(*args, **kwargs):
        raise AssertionError("the intact fp32 graph must be quantized, not exported again")

    monkeypatch.setattr(export, "export_graph", refuse)
    with caplog.at_level(logging.WARNING, logger="dmv_fast"):
        again = models.ensure_onnx(TINY_RESOLUTION, tiny, "int8", BATCH)
    assert again == int8 and "damaged or stale" in caplog.text
    record = json.loads(again.with_suffix(".json").read_text())
    assert record["onnx_sha256"] == sha256_file(again)
    # The same recipe on the same fp32 graph: the same frames as before the damage.
    assert np.array_equal(Generator(again, backend="cpu").generate(noise, classes, 0.5), before)


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_int8_on_a_gpu_backend_is_a_one_line_error_before_any_work(
    tiny, graphs, backend, tmp_path, monkeypatch
):
    with pytest.raises(ValueError) as info:
        ModelSpec(resolution=128, weights="random", precision="int8", backend=backend)
    message = str(info.value)
    assert "\n" not in message and "int8" in message and backend in message
    # A name or an int8 graph: refused before anything is exported or loaded.
    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="int8"):
        Generator("biggan-deep-128", backend=backend, precision="int8")
    with pytest.raises(ValueError, match="int8"):
        Generator(graphs[1], backend=backend)
    assert not (tmp_path / "empty").exists()


def test_int8_graph_on_auto_runs_on_the_cpu(graphs):
    assert Generator(graphs[1], backend="auto").providers == ["CPUExecutionProvider"]


def test_equalization_keeps_the_function(graphs, tmp_path):
    fp32 = graphs[0]
    path = tmp_path / "equalized.onnx"
    onnx.save(quantize.equalize(onnx.load(str(fp32))), str(path))
    figures = quality.compare(path, fp32, truncations=(0.2, 1.0), frames=2)
    assert all(q["psnr_db"] >= 60 for q in figures.values()), figures


def test_layer_groups_name_the_sensitive_layers(graphs):
    groups = quantize.layer_nodes(onnx.load(str(graphs[0])))
    assert groups["first_linear"] == ["embed/MatMul", "bn.gamma_beta/MatMul", "gen_z.matmul/MatMul"]
    assert groups["last_conv"] == ["conv_to_rgb/Conv"]
    assert len(groups["attention"]) == 4 and groups["pixel_tail"] == []
    assert groups["body"] and all("/Conv" in n for n in groups["body"])
    with pytest.raises(ValueError, match="unknown layer group 'tail'"):
        quantize.check_keep(["tail"])


def test_ssim_and_psnr():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (24, 24, 3)).astype(np.uint8)
    assert quality.ssim(a, a) == pytest.approx(1.0)
    assert quality.psnr(a, a) == float("inf")
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert 0.3 < quality.ssim(a, noisy) < 0.99
    assert 20 < quality.psnr(a, noisy) < 25  # rms 20 levels: 22.1 dB before clipping
    assert quality.ssim(a, 255 - a) < 0


def test_export_source_refuses_int8(tiny, tmp_path):
    from dmv_fast_export.export import export_graph

    source = model_weights.resolve_weights(tiny, TINY_RESOLUTION)
    with pytest.raises(ValueError, match="quantized from the fp32 graph"):
        export_graph(source, models.onnx_key(source, "int8", BATCH, 1, "stretch"), tmp_path / "g")
    with pytest.raises(ValueError, match="rgb24"):
        models.ensure_onnx(TINY_RESOLUTION, tiny, "int8", BATCH, pixel_format="yuv420p")


def test_bench_row_plans_the_int8_graph_on_the_cpu():
    from dmv_fast.bench.rows import BACKENDS, backend_plan

    assert "ort-cpu-int8" in BACKENDS
    plan = backend_plan("ort-cpu-int8", 128, 8)
    assert (plan.backend, plan.precision, plan.pixel_format) == ("cpu", "int8", "rgb24")
    assert plan.batch_size == 4  # the CPU batch cap, as for "ort-cpu"


def test_recipe_refuses_unknown_settings():
    with pytest.raises(ValueError, match="format 'qlinear'"):
        quantize.Recipe(fmt="qlinear")
    with pytest.raises(ValueError, match="activation 'int4'"):
        quantize.Recipe(activation="int4")
    with pytest.raises(ValueError, match="op type 'Softmax'"):
        quantize.Recipe(op_types=("Conv", "Softmax"))
    assert quantize.Recipe() == quantize.RECIPE  # the measured default: QDQ, Conv + MatMul


def test_body_op_recipe_keeps_the_conditioning_path_in_float(graphs, tmp_path):
    """Quantizing the blocks' BatchNorm scale/shift, ReLU, skip path and residual sums puts
    them between Q/DQ pairs, while the BatchNorm statistics and gains (``bn.*``) stay float."""
    fp32 = graphs[0]
    batches = [
        feed
        for k, t in enumerate((0.2, 0.6, 1.0))
        for feed in feeds_module.feeds(*_in_range(t, BATCH, 200 + k), t, BATCH)
    ]
    ranges = quantize.calibrate(fp32, tmp_path / "ranges.json", batches)
    recipe = quantize.Recipe(op_types=("Conv", "MatMul", *quantize.EXTRA_OP_TYPES))
    int8 = quantize.quantize(fp32, tmp_path / "body.onnx", ranges_path=ranges, recipe=recipe)
    model = onnx.load(str(int8))
    producer = {out: n for n in model.graph.node for out in n.output}

    def fed_by_dq(node):
        return any(
            producer.get(x) is not None and producer[x].op_type == "DequantizeLinear"
            for x in node.input
        )

    nodes = {n.name: n for n in model.graph.node}
    shifted = [n for name, n in nodes.items() if name.endswith("bn_1.shifted/Add")]
    assert shifted and all(fed_by_dq(n) for n in shifted)
    conditioning = [
        n for name, n in nodes.items() if name.startswith(("bn.a32", "bn.mean", "bn.var"))
    ]
    assert conditioning and not any(fed_by_dq(n) for n in conditioning)
    figures = quality.compare(int8, fp32, (0.5,), frames=2, vectors=_in_range)
    assert figures["0.5"]["psnr_db"] >= 20, figures  # the same picture, if a blurrier one
