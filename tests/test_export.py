"""Export: parity with pytorch-pretrained-biggan, pixels, scaling, fp16, caches, bad weights."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_pretrained_biggan")

import onnx  # noqa: E402
from _models import (  # noqa: E402
    TINY_CONFIG,
    TINY_RESOLUTION,
    TRUNCATIONS,
    _library_logging,  # noqa: E402, F401 (autouse fixture)
    inputs,
    max_diff,
    psnr,
    stretch,
    tiny_model,
    torch_reference,
    write_tiny_folder,
)
from dmv_fast_export.pixels import lanczos_reference  # noqa: E402
from PIL import Image  # noqa: E402

from dmv_fast.files import sha256_file  # noqa: E402
from dmv_fast.model import cache as models  # noqa: E402
from dmv_fast.model import weights as model_weights  # noqa: E402
from dmv_fast.model.cache import ensure_onnx as export_model  # noqa: E402
from dmv_fast.model.runtime import Generator  # noqa: E402
from dmv_fast.model.truncation import bn_inputs  # noqa: E402
from dmv_fast.settings import plan as plan_rules  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _module_cache(module_cache):
    """One cache for the module's exports (tests that need a fresh one set their own)."""
    return module_cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder, PyTorch model) of a tiny random BigGAN-deep written to disk."""
    folder = tmp_path_factory.mktemp("tiny")
    model = write_tiny_folder(folder)
    return folder, model


@pytest.fixture(scope="module")
def tiny_graph(tiny):
    return export_model(TINY_RESOLUTION, tiny[0], "fp32", 3)


@pytest.fixture(scope="module")
def full128(tmp_path_factory):
    """The full 128-pixel architecture with random weights: (Generator, PyTorch model)."""
    from dmv_fast_export.export import export_graph
    from dmv_fast_export.weights import load_model

    source = model_weights.resolve_weights("random", 128)
    model, _ = load_model(source)
    key = models.onnx_key(source, "fp32", 2, 1, "stretch")
    path = tmp_path_factory.mktemp("full128") / "graph.onnx"
    export_graph(source, key, path, model=model)
    return Generator(path, backend="cpu"), model


# -- parity ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_128_matches_pytorch_within_one_level(full128):
    gen, model = full128
    noise, classes = inputs(3, seed=11)  # graph batch 2: one full batch and one padded
    for truncation in TRUNCATIONS:
        ours = gen.generate(noise, classes, truncation)
        ref = torch_reference(model, noise, classes, truncation)
        assert ours.shape == (3, 128, 128, 3) and ours.dtype == np.uint8
        assert max_diff(ours, ref) <= 1, truncation
        assert ours.std() > 20  # a real picture, not a flat frame


def test_tiny_matches_pytorch_within_one_level(tiny, tiny_graph):
    gen = Generator(tiny_graph, backend="cpu")
    noise, classes = inputs(4, seed=5)  # graph batch 3: one full batch and one padded
    for truncation in TRUNCATIONS:
        ours = gen.generate(noise, classes, truncation)
        assert max_diff(ours, torch_reference(tiny[1], noise, classes, truncation)) <= 1


def test_fixed_pixels_map_minus_one_to_one_onto_0_255(tiny):
    gen = Generator(export_model(TINY_RESOLUTION, tiny[0], "fp32", 2, pixels="fixed"))
    noise, classes = inputs(2)
    with torch.no_grad():
        image = tiny[1](torch.from_numpy(noise), torch.from_numpy(classes), 0.7).numpy()
    ref = np.clip((image + np.float32(1)) * np.float32(127.5), 0, 255) + np.float32(0.5)
    ref = ref.astype(np.uint8).transpose(0, 2, 3, 1)
    assert max_diff(gen.generate(noise, classes, 0.7), ref) <= 1


def test_truncation_is_an_input_and_follows_the_float_logic(tiny, tiny_graph):
    """0.14 / 0.02 = 7.000000000000001: the statistics are (almost exactly) set 8, not 7."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_graph), providers=["CPUExecutionProvider"])
    noise, classes = inputs(3)

    def run(idx, w):
        feeds = {"noise": noise, "classes": classes, "bn_idx": np.array(idx, np.int64),
                 "bn_w": np.array(w, np.float32)}  # fmt: skip
        return session.run(None, feeds)[0]

    idx, w = bn_inputs(0.14)
    at_014 = run(idx, w)
    assert max_diff(at_014, run([8, 8], [1, 0])) <= 1
    assert max_diff(at_014, run([7, 7], [1, 0])) > 10  # the naive round(T * 50) differs
    assert max_diff(at_014, torch_reference(tiny[1], noise, classes, 0.14)) <= 1


# -- fp16, scaling ----------------------------------------------------------------------------


def test_fp16_graph_runs_on_cpu_close_to_fp32(tiny, tiny_graph):
    gen16 = Generator(export_model(TINY_RESOLUTION, tiny[0], "fp16", 3))
    gen32 = Generator(tiny_graph)
    assert gen16.precision == "fp16"
    noise, classes = inputs(3, seed=9)
    for truncation in (0.4, 1.0):
        value = psnr(gen16.generate(noise, classes, truncation),
                     gen32.generate(noise, classes, truncation))  # fmt: skip
        assert value >= 30, value
    model = onnx.load(str(gen16.model_path))
    types = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}
    assert types == {onnx.TensorProto.FLOAT16}  # every convolution weight is fp16


@pytest.mark.parametrize("scaling", [2, 3])
def test_scaling_matches_pil_lanczos_on_the_8_bit_frame(tiny, tiny_graph, scaling):
    scaled = Generator(export_model(TINY_RESOLUTION, tiny[0], "fp32", 3, scaling=scaling))
    assert scaled.resolution == TINY_RESOLUTION * scaling
    noise, classes = inputs(3, seed=4)
    frames = Generator(tiny_graph).generate(noise, classes, 0.6)
    size = TINY_RESOLUTION * scaling
    ref = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS))
                    for f in frames])  # fmt: skip
    assert max_diff(scaled.generate(noise, classes, 0.6), ref) <= 2


def test_lanczos_model_is_pil_exact_at_128():
    rng = np.random.default_rng(2)
    smooth = np.cumsum(rng.integers(-12, 13, (2, 128, 128, 3)), axis=1) % 256
    for frames in (rng.integers(0, 256, (2, 128, 128, 3)), smooth):
        frames = frames.astype(np.uint8)
        ref = np.stack([np.asarray(Image.fromarray(f).resize((256, 256), Image.LANCZOS))
                        for f in frames])  # fmt: skip
        np.testing.assert_array_equal(lanczos_reference(frames, 2), ref)


# -- the graph and its sidecar ---------------------------------------------------------------


def test_graph_is_static_folded_and_pruned(tiny_graph):
    onnx.checker.check_model(str(tiny_graph), full_check=True)
    model = onnx.load(str(tiny_graph))
    graph = model.graph

    def dims(value):
        return [d.dim_value for d in value.type.tensor_type.shape.dim]

    assert {i.name: dims(i) for i in graph.input} == {
        "noise": [3, 128], "classes": [3, 1000], "bn_idx": [2], "bn_w": [2],
    }  # fmt: skip
    assert [(o.name, dims(o)) for o in graph.output] == [("frames", [3, 32, 32, 3])]
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    inits = {t.name: list(t.dims) for t in graph.initializer}
    ch = TINY_CONFIG["channel_width"]
    assert inits["conv_to_rgb.weight"] == [3 * 9, ch, 1, 1]  # 3 outputs x 9 taps, no more
    assert not any("weight_u" in n or "weight_orig" in n for n in inits)
    ops = {n.op_type for n in graph.node}
    assert "Constant" not in ops  # nothing (truncation included) baked in as a node constant
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["dmv_fast.batch_size"] == "3" and meta["dmv_fast.precision"] == "fp32"


def test_sidecar_records_hash_and_parity(tiny_graph):
    record = json.loads(tiny_graph.with_suffix(".json").read_text())
    assert record["onnx_sha256"] == sha256_file(tiny_graph)
    assert record["validation"]["max_pixel_diff"] <= 1
    assert record["key"]["batch_size"] == 3 and record["key"]["precision"] == "fp32"


def test_cached_graph_is_reused_and_a_damaged_one_rebuilt(tiny, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path / "cache"))
    first = models.ensure_onnx(TINY_RESOLUTION, tiny[0], "fp32", 2)
    stamp = first.stat().st_mtime_ns

    import dmv_fast_export.export as export

    def refuse(*args, **kwargs):
        raise AssertionError("an intact cached graph must not be exported again")

    with monkeypatch.context() as mp:
        mp.setattr(export, "export_graph", refuse)
        assert models.ensure_onnx(TINY_RESOLUTION, tiny[0], "fp32", 2) == first
    assert first.stat().st_mtime_ns == stamp

    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])  # truncated, e.g. by a full disk
    with caplog.at_level(logging.WARNING, logger="dmv_fast"):
        again = models.ensure_onnx(TINY_RESOLUTION, tiny[0], "fp32", 2)
    assert again == first and again.read_bytes() == data
    assert "damaged or stale" in caplog.text
    Generator(again).generate(*inputs(1), 0.5)

    sidecar = first.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["onnx_sha256"] = "0" * 64  # stale or tampered record
    sidecar.write_text(json.dumps(record))
    assert models.ensure_onnx(TINY_RESOLUTION, tiny[0], "fp32", 2).read_bytes() == data


def test_output_copy_and_module_cli(tiny, tiny_weights, tmp_path, capsys):
    """``python -m dmv_fast_export`` is ``dmv-fast export``: the graph the CPU plan runs."""
    from dmv_fast_export.__main__ import main

    narrow = tiny_weights
    out = tmp_path / "g.onnx"
    with pytest.raises(SystemExit) as done:
        main(["--resolution", "128", "--weights", str(narrow), "--backend", "cpu",
              "--batch-size", "30", "--output", str(out), "--quiet"])  # fmt: skip
    assert done.value.code in (0, None)
    assert capsys.readouterr().out.strip() == str(out)
    assert out.is_file() and out.with_suffix(".json").is_file()
    gen = Generator(out)
    lanes = plan_rules.cpu_lanes(None, None)[0]
    cap = plan_rules.cpu_batch_cap(lanes)
    assert (gen.batch_size, gen.precision) == (cap, "fp32")  # the CPU plan: capped, fp32
    capsys.readouterr()

    with pytest.raises(SystemExit) as done:
        main(["--resolution", "128", "--weights", str(tiny[0]), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 1 and len(err) == 1 and err[0].startswith("error: ")
    assert "resolution 32" in err[0]


# -- weights ----------------------------------------------------------------------------------


def test_random_weights_are_seeded_and_sane():
    a, b = tiny_model(seed=1), tiny_model(seed=1)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    noise, classes = inputs(2)
    with torch.no_grad():
        image = a(torch.from_numpy(noise), torch.from_numpy(classes), 0.5).numpy()
    assert np.isfinite(image).all() and image.std() > 0.05
    assert not np.array_equal(image[0], image[1])
    stats = a.generator.layers[0].bn_0.running_means
    assert not torch.equal(stats[7], stats[8])  # truncation steps really differ


def test_pretrained_format_round_trip_with_strict_loading(tiny, tmp_path):
    from dmv_fast_export.weights import load_model

    source = model_weights.resolve_weights(tiny[0], TINY_RESOLUTION)
    assert source.kind == "local" and len(source.sha256) == 64
    model, config = load_model(source)
    assert config.channel_width == TINY_CONFIG["channel_width"]
    for (name, x), (_, y) in zip(
        model.state_dict().items(), tiny[1].state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    # The published checkpoints predate PyTorch's zip format: the legacy format loads too.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(tiny[1].state_dict(), legacy / "pytorch_model.bin",
               _use_new_zipfile_serialization=False)  # fmt: skip
    (legacy / "config.json").write_text((tiny[0] / "config.json").read_text())
    model, _ = load_model(model_weights.resolve_weights(legacy, TINY_RESOLUTION))
    assert torch.equal(model.embeddings.weight, tiny[1].embeddings.weight)


def _one_line_value_error(folder: Path, resolution: int = TINY_RESOLUTION) -> str:
    with pytest.raises(ValueError) as info:
        export_model(resolution, folder, "fp32", 1)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_corrupt_weights_file(tmp_path, tiny):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "config.json").write_text((tiny[0] / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02not a checkpoint" * 100)
    assert "not a readable PyTorch checkpoint" in _one_line_value_error(folder)


def test_weights_of_another_architecture(tmp_path):
    folder = tmp_path / "other"
    write_tiny_folder(folder, channel_width=4)
    config = json.loads((folder / "config.json").read_text())
    config["channel_width"] = 8  # the config claims the tiny architecture
    (folder / "config.json").write_text(json.dumps(config))
    message = _one_line_value_error(folder)
    assert "do not fit" in message and "shape" in message


def test_unexpected_keys_are_refused(tmp_path, tiny):
    folder = tmp_path / "extra"
    folder.mkdir()
    state = dict(tiny[1].state_dict())
    state["generator.extra.weight"] = torch.zeros(3)
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text((tiny[0] / "config.json").read_text())
    assert "1 unexpected (generator.extra.weight)" in _one_line_value_error(folder)


def test_missing_config_and_wrong_resolution(tmp_path, tiny):
    folder = tmp_path / "noconfig"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes((tiny[0] / "pytorch_model.bin").read_bytes())
    assert "has no config.json" in _one_line_value_error(folder)
    assert "for resolution 32, not 128" in _one_line_value_error(tiny[0], 128)
    with pytest.raises(ValueError, match="biggan-deep-128"):
        export_model(128, "no-such-model", "fp32", 1)
    with pytest.raises(ValueError, match="batch.size"):
        export_model(TINY_RESOLUTION, tiny[0], "fp32", 0)
    with pytest.raises(ValueError, match="precision"):
        export_model(TINY_RESOLUTION, tiny[0], "bf16", 1)


def test_stretch_reference_handles_a_flat_frame():
    flat = np.zeros((1, 3, 4, 4), np.float32)
    assert (stretch(flat) == 0).all()
