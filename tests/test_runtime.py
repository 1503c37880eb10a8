"""Runtime: Generator batching, input checks, provider honesty, truncation logic, weights cache."""

from __future__ import annotations

import http.server
import json
import logging
import math
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from _models import (
    TINY_RESOLUTION,
    _library_logging,  # noqa: E402, F401 (autouse fixture)
    inputs,
    max_diff,
    psnr,
)

from dmv_fast.files import sha256_file
from dmv_fast.model import cache as models
from dmv_fast.model import weights as model_weights
from dmv_fast.model.runtime import Generator
from dmv_fast.model.truncation import bn_inputs, bn_mix
from dmv_fast.settings import machine

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
HAS_TENSORRT = "TensorrtExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """A tiny exported generator graph (static batch 3)."""
    pytest.importorskip("torch")
    from _models import export_tiny

    return export_tiny(tmp_path_factory, 3)


@pytest.fixture(scope="module")
def yuv_graph(tmp_path_factory):
    """The same tiny model exported for a GPU plan: RGB frames and YUV 4:2:0 planes."""
    pytest.importorskip("torch")
    from _models import export_tiny

    return export_tiny(tmp_path_factory, 3, pixel_format="yuv420p")


@pytest.fixture(scope="module")
def gen(graph):
    return Generator(graph, backend="cpu", threads=2)


# -- truncation ------------------------------------------------------------------------------


def test_bn_mix_keeps_the_originals_float_logic():
    # coef, idx = math.modf(T / (1.0 / 50)): 0.14 / 0.02 = 7.000000000000001
    assert bn_mix(0.14) == (7, 8, 8.881784197001252e-16, 1 - 8.881784197001252e-16)
    assert bn_mix(0.58)[:2] == (28, 29) and bn_mix(0.58)[2] == pytest.approx(1.0)
    assert bn_mix(0.405) == (20, 21, 0.25, 0.75)  # swapped weights: S[20]*0.25 + S[21]*0.75
    assert bn_mix(0.4) == (20, 20, 1.0, 0.0)
    assert bn_mix(1.0) == (50, 50, 1.0, 0.0)
    for t in np.linspace(0.01, 1.0, 200):
        coef, idx = math.modf(float(t) / (1.0 / 50))
        i0, i1, w0, w1 = bn_mix(float(t))
        assert (i0, w0) == ((int(idx), coef) if coef != 0 else (int(idx), 1.0))
    idx, w = bn_inputs(0.405)
    assert idx.dtype == np.int64 and w.dtype == np.float32 and list(idx) == [20, 21]


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, math.nan, math.inf, "high", None])
def test_bad_truncation(bad):
    with pytest.raises(ValueError, match=r"truncation must be"):
        bn_mix(bad)


# -- generate ----------------------------------------------------------------------------------


def test_generator_describes_its_graph(gen):
    assert gen.resolution == TINY_RESOLUTION and gen.batch_size == 3
    assert gen.precision == "fp32" and gen.pixels == "stretch" and gen.scaling == 1
    assert gen.providers == ["CPUExecutionProvider"]


def test_any_batch_size_gives_the_same_frames(gen):
    noise, classes = inputs(7, seed=3)
    whole = gen.generate(noise, classes, 0.8)
    assert whole.shape == (7, TINY_RESOLUTION, TINY_RESOLUTION, 3) and whole.dtype == np.uint8
    for n in (1, 2, 3, 4):
        part = gen.generate(noise[-n:], classes[-n:], 0.8)
        np.testing.assert_array_equal(part, whole[-n:])  # padding and position change nothing
    assert gen.generate(noise[:0], classes[:0], 0.8).shape == (0, 32, 32, 3)
    assert not np.array_equal(gen.generate(noise, classes, 0.3), whole)  # truncation matters
    frames64 = gen.generate(noise.astype(np.float64), classes.astype(np.float64), 0.8)
    np.testing.assert_array_equal(frames64, whole)


@pytest.mark.parametrize(
    ("noise_shape", "classes_shape", "dtype", "message"),
    [
        ((2, 100), (2, 1000), np.float32, r"noise must have shape \[B, 128\], got \[2, 100\]"),
        ((2, 128), (2, 10), np.float32, r"classes must have shape \[B, 1000\]"),
        ((128,), (1, 1000), np.float32, r"noise must have shape"),
        ((2, 128), (3, 1000), np.float32, "same batch size"),
        ((2, 128), (2, 1000), np.int64, "must be a float array"),
    ],
)
def test_bad_shapes_and_dtypes(gen, noise_shape, classes_shape, dtype, message):
    with pytest.raises(ValueError, match=message):
        gen.generate(np.zeros(noise_shape, dtype), np.zeros(classes_shape, dtype), 0.5)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs(gen, value):
    noise, classes = inputs(2)
    noise[1, 5] = value
    with pytest.raises(ValueError, match="noise has 1 non-finite values"):
        gen.generate(noise, classes, 0.5)
    noise, classes = inputs(2)
    classes[0, 0] = value
    with pytest.raises(ValueError, match="classes has 1 non-finite"):
        gen.generate(noise, classes, 0.5)


@pytest.mark.parametrize("truncation", [0, 1.5])
def test_generate_refuses_truncation_out_of_range(gen, truncation):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        gen.generate(*inputs(1), truncation)


def test_flat_frame_is_black_not_nan(tmp_path):
    """ptp == 0: the in-graph stretch gives a defined 0 like scipy's bytescale."""
    import onnx
    from onnx import TensorProto, helper

    # The post-processing alone, on a constant image: build it from the exporter's graph.
    pytest.importorskip("torch")
    from dmv_fast_export.graph import _Builder, _Generator

    class Stub:
        resolution = 4

    gen = _Generator.__new__(_Generator)
    gen.f, gen.batch, gen.fp16, gen.g = Stub(), 1, False, _Builder(TensorProto.FLOAT)
    out = gen.pixels("image", "stretch", 1)
    model = helper.make_model(
        helper.make_graph(
            gen.g.nodes, "p",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])],
            [helper.make_tensor_value_info(out, TensorProto.UINT8, [1, 4, 4, 3])],
            gen.g.inits,
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )  # fmt: skip
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    flat = np.full((1, 3, 4, 4), 0.25, np.float32)
    assert (session.run(None, {"image": flat})[0] == 0).all()
    ramp = np.linspace(-1, 1, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    frame = session.run(None, {"image": ramp})[0]
    assert frame.min() == 0 and frame.max() == 255


# -- providers -------------------------------------------------------------------------------


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime-gpu is installed")
@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_explicit_gpu_backend_without_onnxruntime_gpu_is_an_error(graph, backend):
    with pytest.raises(ValueError) as info:
        Generator(graph, backend=backend)
    message = str(info.value)
    assert "onnxruntime-gpu" in message and "pip install 'dmv-fast[gpu]'" in message
    assert "\n" not in message


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime-gpu is installed")
def test_auto_warns_once_and_runs_on_the_cpu(graph, caplog):
    with caplog.at_level(logging.WARNING, logger="dmv_fast"):
        gen = Generator(graph, backend="auto")
        gen.generate(*inputs(2), 0.5)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "runs on the CPU" in warnings[0].getMessage()
    assert gen.providers == ["CPUExecutionProvider"]


def test_cpu_backend_does_not_warn(graph, caplog):
    with caplog.at_level(logging.WARNING, logger="dmv_fast"):
        Generator(graph, backend="cpu")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime-gpu is installed")
def test_cuda_offered_but_not_loading(graph, monkeypatch, caplog):
    """onnxruntime offers CUDA, the session silently falls back: we must not."""
    offered = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: offered)
    machine.reset_probe()
    with pytest.raises(ValueError, match="did not load") as info:
        Generator(graph, backend="cuda")
    assert "cuDNN 9 libraries" in str(info.value) and "\n" not in str(info.value)
    with caplog.at_level(logging.WARNING, logger="dmv_fast"):
        gen = Generator(graph, backend="auto")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "CUDAExecutionProvider did not load" in warnings[0]
    assert gen.providers == ["CPUExecutionProvider"]


def test_bad_backend_and_model(graph, tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        Generator(graph, backend="gpu")
    with pytest.raises(ValueError, match="neither an .onnx file nor"):
        Generator(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(graph.read_bytes()[:5000])
    with pytest.raises(RuntimeError, match="could not load broken.onnx") as info:
        Generator(broken, backend="cpu")
    assert "\n" not in str(info.value)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_cuda_matches_cpu_with_device_buffers(graph, gen):
    cuda = Generator(graph, backend="cuda")
    assert cuda.providers[0] == "CUDAExecutionProvider" and cuda._io is not None
    noise, classes = inputs(5, seed=8)
    for truncation in (0.4, 1.0):
        assert max_diff(cuda.generate(noise, classes, truncation),
                        gen.generate(noise, classes, truncation)) <= 2  # fmt: skip


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_cuda_fp16_close_to_fp32(tmp_path, monkeypatch, gen):
    pytest.importorskip("torch")
    from _models import write_tiny_folder

    from dmv_fast.model.cache import ensure_onnx as export_model

    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path / "cache"))
    write_tiny_folder(tmp_path / "tiny")
    gen16 = Generator(export_model(TINY_RESOLUTION, tmp_path / "tiny", "fp16", 3), "cuda")
    noise, classes = inputs(3)
    assert psnr(gen16.generate(noise, classes, 0.7), gen.generate(noise, classes, 0.7)) >= 30


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs the TensorRT execution provider")
def test_tensorrt_matches_cpu(graph, gen, tmp_path, monkeypatch):
    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path / "cache"))
    trt = Generator(graph, backend="tensorrt")
    assert trt.providers[0] == "TensorrtExecutionProvider"
    noise, classes = inputs(3)
    assert max_diff(trt.generate(noise, classes, 0.5), gen.generate(noise, classes, 0.5)) <= 2
    assert any((tmp_path / "cache" / "tensorrt").iterdir())  # engine cache written


# -- models: cache dir, weights download, export hint ----------------------------------------


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path / "c"))
    assert model_weights.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(model_weights.ENV_CACHE)
    assert model_weights.cache_dir().name == "dmv-fast"


def test_export_without_torch_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path))
    monkeypatch.setattr(models, "torch_available", lambda: False)
    with pytest.raises(RuntimeError) as info:
        models.ensure_onnx(128, "random", "fp32", 2)
    message = str(info.value)
    assert "install with `pip install 'dmv-fast[export]'`" in message and "\n" not in message


def test_runtime_modules_do_not_import_torch():
    # The exporter and the benchmark toolkit are importable here (the tests put export/ on
    # the path), so only the library's own imports keep them out.
    report = (
        "mods = [m for m in sys.modules if m.split('.')[0] in ('torch', 'dmv_fast_export')"
        " or m.startswith('dmv_fast.bench')]; print(','.join(mods))"
    )
    library = (
        "import sys, dmv_fast, dmv_fast.render.engine, dmv_fast.settings.plan, dmv_fast.model.runtime, "
        "dmv_fast.model.cache, dmv_fast.model.truncation, dmv_fast.cli.app;"
    )

    def loaded(code: str) -> str:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip()

    assert loaded(library + report) == "", "imported with the library"
    # The same probe sees them once they are imported: it is not blind.
    seen = loaded(library + "import dmv_fast_export, dmv_fast.bench;" + report)
    assert "dmv_fast_export" in seen and "dmv_fast.bench" in seen


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` with HTTP Range support and counts requests."""

    files: dict[str, bytes] = {}
    requests: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        data = self.files.get(self.path)
        self.requests.append((self.path, self.headers.get("Range")))
        if data is None:
            self.send_error(404)
            return
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    files = {"/w.bin": rng.bytes(300_000)}
    _RangeHandler.files, _RangeHandler.requests = files, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    mirrors = {128: [base + "/missing.bin", base + "/w.bin"]}  # the first mirror fails
    monkeypatch.setattr(model_weights, "_MIRRORS", mirrors)
    yield files
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_records_hashes_and_then_stays_offline(server, monkeypatch):
    folder = model_weights.weights_dir("biggan-deep-128")
    folder.mkdir(parents=True)
    (folder / "pytorch_model.bin.part").write_bytes(server["/w.bin"][:100_000])
    seen = []
    path = model_weights.fetch_weights("biggan-deep-128", progress=lambda d, t: seen.append((d, t)))
    assert (path / model_weights.WEIGHTS_NAME).read_bytes() == server["/w.bin"]
    assert ("/w.bin", "bytes=100000-") in _RangeHandler.requests  # resumed, not restarted
    assert seen[-1] == (300_000, 300_000)
    record = json.loads((path / model_weights.SIDECAR_NAME).read_text())
    assert record["files"][model_weights.WEIGHTS_NAME]["sha256"] == sha256_file(
        path / model_weights.WEIGHTS_NAME
    )

    def offline(*args, **kwargs):
        raise AssertionError("the network must not be touched when the cache serves")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert model_weights.fetch_weights("biggan-deep-128") == path
    source = model_weights.resolve_weights(None, 128)
    assert source.kind == "pretrained" and source.weights_file == path / model_weights.WEIGHTS_NAME


def test_damaged_cached_weights_are_fetched_again(server, caplog):
    path = model_weights.fetch_weights("biggan-deep-128")
    (path / model_weights.WEIGHTS_NAME).write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="dmv_fast"):
        model_weights.fetch_weights("biggan-deep-128")
    assert "does not match its recorded SHA-256" in caplog.text
    assert (path / model_weights.WEIGHTS_NAME).read_bytes() == server["/w.bin"]


def test_offline_without_cached_weights_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv(model_weights.ENV_CACHE, str(tmp_path))

    def unreachable(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(OSError) as info:
        Generator("biggan-deep-256", backend="cpu")
    message = str(info.value)
    assert "could not download biggan-deep-256" in message and "--weights random" in message
    assert "\n" not in message
    assert not list(Path(tmp_path).rglob("*.onnx"))


# -- frames in the encoder's format ------------------------------------------------------------


def test_yuv420_planes_from_the_graph_equal_the_host_conversion(yuv_graph, gen):
    from dmv_fast.video.yuv import rgb_to_yuv420

    record = models.onnx_record(yuv_graph)
    assert record["key"]["pixel_format"] == "yuv420p"  # cached apart from the RGB graph
    assert record["validation"]["yuv_max_diff"] <= 1  # checked at export
    both = Generator(yuv_graph, backend="cpu", threads=2)
    noise, classes = inputs(4, seed=9)
    rgb = both.generate(noise, classes, 0.7)
    yuv = both.generate(noise, classes, 0.7, pixel_format="yuv420p")
    r = both.resolution
    assert yuv.shape == (4, r * 3 // 2, r) and yuv.dtype == np.uint8
    np.testing.assert_array_equal(rgb, gen.generate(noise, classes, 0.7))
    np.testing.assert_array_equal(yuv, rgb_to_yuv420(rgb))
    with pytest.raises(ValueError, match="pixel_format"):
        gen.generate(noise, classes, 0.7, pixel_format="yuv420p")


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_cuda_yuv420_planes_match_the_cpu(yuv_graph, gen):
    from dmv_fast.video.yuv import rgb_to_yuv420

    cuda = Generator(yuv_graph, backend="cuda")
    noise, classes = inputs(5, seed=10)
    yuv = cuda.generate(noise, classes, 0.5, pixel_format="yuv420p")
    ref = rgb_to_yuv420(gen.generate(noise, classes, 0.5)).astype(int)
    assert np.abs(yuv.astype(int) - ref).max() <= 3
