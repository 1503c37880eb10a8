"""`dmv-fast bench`: the CPU row is measured, unavailable GPU rows are skipped with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmv_fast.bench import provider_problem, run_bench
from dmv_fast.cli import app

runner = CliRunner()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """The ONNX cache shared by the whole session, so the 128 px graph is exported once."""
    return str(tmp_path_factory.getbasetemp() / "dmv-cache")


@pytest.fixture(scope="session")
def bench_run(tmp_path_factory, model_cache):
    """`dmv-fast bench` at 128 px, batch 1, with the CPU and the CUDA fp16 backends."""
    pytest.importorskip("torch", reason="exporting the 128 px graph needs torch")
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMV_FAST_CACHE", model_cache)
        result = runner.invoke(
            app,
            [
                "bench",
                "--out", str(out),
                "--resolutions", "128",
                "--batch-sizes", "1",
                "--backends", "ort-cpu,ort-cuda-fp16",
                "--seconds", "1",
                "--song-seconds", "1.5",
                # Measure the end-to-end row however slow this machine is right now.
                "--e2e-limit", "0",
            ],
        )  # fmt: skip
    return result, out


def test_bench_measures_the_cpu_row(bench_run):
    result, out = bench_run
    assert result.exit_code == 0, result.output
    data = json.loads((out / "bench.json").read_text())
    rows = {r["backend"]: r for r in data["rows"]}
    cpu = rows["ort-cpu"]
    assert cpu["status"] == "ok", cpu
    assert (cpu["resolution"], cpu["batch_size"]) == (128, 1)
    assert "CPUExecutionProvider" in cpu["providers"]
    assert cpu["frames_per_s"] > 0
    assert cpu["calls"] >= 3
    assert 0 < cpu["call_ms_p50"] <= cpu["call_ms_p99"]
    assert cpu["peak_rss_mb"] > 50  # a BigGAN session holds far more than an empty interpreter
    e2e = cpu["e2e"]
    assert "failed" not in e2e, e2e
    assert e2e["frames"] > 0 and e2e["realtime_factor"] > 0
    assert e2e["encoder"]
    env = data["environment"]
    assert env["cpu"] and env["cores_logical"] >= 1
    for package in ("python", "numpy", "onnxruntime", "av"):
        assert env["versions"][package], package


def test_a_slow_machine_skips_the_end_to_end_row_only_under_a_limit(monkeypatch):
    """The skip rule depends on the measured speed; the test fixes the speed, not the clock."""
    from dmv_fast import bench

    row = {"backend": "ort-cpu", "resolution": 128, "batch_size": 1, "frames_per_s": 0.5}
    skipped = bench._e2e_row(row, {}, ("cpu", "fp32"), 1.5, 1.0, {}, Path("."), 10.0)
    assert "over 10x the 1 s budget" in skipped["skipped"]
    calls = []
    monkeypatch.setattr(bench, "write_song", lambda path, seconds: calls.append(seconds))
    monkeypatch.setattr(bench, "end_to_end", lambda *a, **k: {"frames": 43})
    measured = bench._e2e_row(row, {}, ("cpu", "fp32"), 1.5, 1.0, {}, Path("."), 0.0)
    assert measured["frames"] == 43 and calls == [1.0]


def test_bench_skips_unavailable_gpu_rows_with_the_reason(bench_run):
    result, out = bench_run
    problem = provider_problem("cuda")
    if problem is None:
        pytest.skip("CUDA is available here: the GPU row is measured, not skipped")
    rows = {r["backend"]: r for r in json.loads((out / "bench.json").read_text())["rows"]}
    gpu = rows["ort-cuda-fp16"]
    assert gpu["status"] == "skipped"
    assert "CUDAExecutionProvider" in gpu["reason"]
    table = (out / "bench.md").read_text()
    assert "| ort-cpu | 128 | 1 |" in table
    assert "skipped: CUDAExecutionProvider" in table
    # The CLI echoes the same table.
    assert "skipped: CUDAExecutionProvider" in result.stdout


def test_bench_writes_a_png_plot(bench_run):
    _, out = bench_run
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 1000


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"backends": ["ort-gpu"]}, "ort-gpu"),
        ({"resolutions": [64]}, "64"),
        ({"batch_sizes": [0]}, "batch size 0"),
        ({"seconds": 0}, "seconds"),
    ],
)
def test_bench_rejects_bad_settings_before_any_work(tmp_path, kwargs, needle):
    settings = {
        "resolutions": [128],
        "batch_sizes": [1],
        "backends": ["ort-cpu"],
        "seconds": 1.0,
        "song_seconds": 0.0,
    }
    settings.update(kwargs)
    with pytest.raises(ValueError, match=needle):
        run_bench(tmp_path / "out", **settings)
    assert not (tmp_path / "out").exists()
