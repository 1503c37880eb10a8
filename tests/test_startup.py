"""A short start: ONNX Runtime's optimised graph kept beside the cached graph, the session
built while the song is analysed, and the kernels compiled once by the set-up."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from _models import (
    TINY_RESOLUTION,
    _library_logging,  # noqa: E402, F401 (autouse fixture)
    inputs,
    write_tiny_folder,
)
from typer.testing import CliRunner

from dmv_fast.model import cache as models
from dmv_fast.model import weights as model_weights
from dmv_fast.model.runtime import Generator
from dmv_fast.render.engine import Engine
from dmv_fast.settings.spec import ModelSpec

pytest.importorskip("torch")


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    """A cache of its own and a tiny model's weights folder: (cache, folder)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(model_weights.ENV_CACHE, str(cache))
    folder = tmp_path / "tiny"
    write_tiny_folder(folder)
    return cache, folder


def test_optimised_graph_is_kept_and_gives_the_same_frames(tiny_cache, caplog):
    _, folder = tiny_cache
    path = models.ensure_onnx(TINY_RESOLUTION, folder, "fp32", 2)
    optimized = models.optimized_path(path)
    assert optimized is not None and not optimized.exists()
    first = Generator(path, backend="cpu")
    assert first.session_graph == path and optimized.is_file()  # written by the first session
    again = Generator(path, backend="cpu")
    assert again.session_graph == optimized  # loaded as is: no optimisation
    assert again.metadata == first.metadata
    noise, classes = inputs(3)
    for truncation in (0.3, 1.0):
        a = first.generate(noise, classes, truncation)
        b = again.generate(noise, classes, truncation)
        assert np.array_equal(a, b)

    optimized.write_bytes(b"not a graph")  # damaged: optimised again, with one warning
    fixed = Generator(path, backend="cpu")
    assert fixed.session_graph == path and "optimising" in caplog.text
    assert Generator(path, backend="cpu").session_graph == optimized


def test_optimised_graph_follows_the_graph_and_the_runtime(tiny_cache, monkeypatch):
    import onnxruntime as ort

    _, folder = tiny_cache
    path = models.ensure_onnx(TINY_RESOLUTION, folder, "fp32", 2)
    Generator(path, backend="cpu")
    old = models.optimized_path(path)
    monkeypatch.setattr(ort, "__version__", "0.0.0-test")
    new = models.optimized_path(path)
    assert new != old
    Generator(path, backend="cpu")  # another runtime: its own file, the stale one removed
    assert new.is_file() and not old.exists()
    # A graph outside the cache (a copy given by path) keeps no optimised form.
    copy = models.copy_onnx(path, path.parent.parent / "copy.onnx")
    assert models.optimized_path(copy) is None
    assert Generator(copy, backend="cpu").session_graph == copy


def test_engine_preloads_the_session_on_a_helper_thread(tiny_cache, tiny_weights, monkeypatch):
    spec = ModelSpec(resolution=128, weights=str(tiny_weights), backend="cpu", batch_size=2)
    engine = Engine(spec, encoder="x264")
    engine.preload()  # nothing cached: no export on the helper thread
    assert engine._loading is not None
    engine.wait_preload()
    assert "generator" not in engine._loading[1]
    gen = engine.generator  # exported here, on the caller's thread
    assert gen.batch_size == 2

    built: list[str] = []
    real = Generator.__init__

    def record(self, *args, **kwargs):
        built.append(threading.current_thread().name)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Generator, "__init__", record)
    engine = Engine(spec, encoder="x264")
    engine.preload()
    engine.preload()  # once only
    assert engine.generator.batch_size == 2
    assert built == ["dmv-fast-session"]


def test_a_failing_preload_fails_the_render_with_its_message(tiny_cache, tiny_weights, monkeypatch):
    spec = ModelSpec(resolution=128, weights=str(tiny_weights), backend="cpu", batch_size=2)
    assert Engine(spec, encoder="x264").generator is not None  # cached

    def broken(self, *args, **kwargs):
        raise RuntimeError("ONNX Runtime could not load the graph: test")

    monkeypatch.setattr(Generator, "__init__", broken)
    engine = Engine(spec, encoder="x264")
    engine.preload()
    with pytest.raises(RuntimeError, match="could not load the graph: test"):
        _ = engine.generator


def test_warm_up_compiles_the_kernels_and_says_so(tmp_path):
    from dmv_fast.cli.app import app

    result = CliRunner().invoke(app, ["warm-up"])
    assert result.exit_code == 0, result.output
    assert "kernels compiled and cached" in result.output
    for stage in ("analysis", "vectors", "online"):
        assert stage in result.output
    import numba

    from dmv_fast.vectors import trajectory

    if not numba.config.DISABLE_JIT and not numba.config.CACHE_DIR:
        # numba keeps compiled kernels beside their module (``__pycache__``).
        folder = Path(trajectory.__file__).parent / "__pycache__"
        assert list(folder.glob("trajectory.noise_kernel-*.nbi")), "no cached kernel"
