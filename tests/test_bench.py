"""`dmv-fast bench`: the CPU row is measured with its plan, its sgemm fraction and an
end-to-end render; rows that cannot run are skipped with the reason the plan gives."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dmv_fast.bench import Row, backend_plan, measure_row, run_bench
from dmv_fast.bench.e2e import MIN_E2E_SECONDS, e2e_length
from dmv_fast.bench.machine import peak_fraction, sgemm_peak
from dmv_fast.bench.measure import call_stats, time_calls
from dmv_fast.bench.report import markdown_table
from dmv_fast.cli.app import app
from dmv_fast.settings import plan as plan_module

runner = CliRunner()
SONG_SECONDS = MIN_E2E_SECONDS  # the end-to-end song is then never shortened


def _cuda_loads() -> bool:
    return "CUDAExecutionProvider" in plan_module.loadable_providers()


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, tiny_weights):
    """`run_bench` at 128 px, batch 1, the CPU and the CUDA fp16 backends, with the narrow
    model (real layout, fast to export and run); the end-to-end row is rendered whatever the
    machine's speed (``e2e_limit=0``)."""
    out = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DMV_FAST_CACHE", str(tmp_path_factory.getbasetemp() / "dmv-cache"))
        table = run_bench(
            out,
            resolutions=[128],
            batch_sizes=[1],
            backends=["ort-cpu", "ort-cuda-fp16"],
            seconds=0.5,
            song_seconds=SONG_SECONDS,
            e2e_limit=0,
            weights=str(tiny_weights),
        )
    return table, out


def test_bench_measures_the_cpu_row_and_its_end_to_end_render(bench_run):
    _, out = bench_run
    data = json.loads((out / "bench.json").read_text())
    cpu = {r["backend"]: r for r in data["rows"]}["ort-cpu"]
    assert cpu["status"] == "ok", cpu
    assert (cpu["resolution"], cpu["batch_size"]) == (128, 1)
    assert cpu["plan"]["backend"] == "cpu" and cpu["plan"]["precision"] == "fp32"
    assert cpu["plan"]["providers"] == ["CPUExecutionProvider"] == cpu["providers"]
    assert "auto" not in json.dumps(cpu["plan"])
    assert cpu["frames_per_s"] > 0 and cpu["calls"] >= 3
    assert 0 < cpu["call_ms_p50"] <= cpu["call_ms_p99"]
    assert cpu["peak_rss_mb"] > 50  # an ONNX Runtime session holds more than an interpreter
    e2e = cpu["e2e"]
    assert set(e2e) >= {"frames", "realtime_factor", "encoder", "plan"}, e2e
    assert e2e["frames"] == 1 + int(SONG_SECONDS * 22050) // 512  # one frame per hop
    assert e2e["realtime_factor"] > 0 and e2e["encoder"] == "x264"
    assert e2e["plan"]["backend"] == "cpu"
    env = data["environment"]
    assert env["cpu"] and env["cores_logical"] >= 1
    for package in ("python", "numpy", "onnxruntime", "av"):
        assert env["versions"][package], package
    assert data["settings"]["e2e_limit"] == 0


def test_every_cpu_result_records_the_sgemm_peak(bench_run):
    _, out = bench_run
    data = json.loads((out / "bench.json").read_text())
    sgemm = data["environment"]["sgemm"]
    assert sgemm["gflops"] > 0 and "openblas_coretype" in sgemm
    cpu = {r["backend"]: r for r in data["rows"]}["ort-cpu"]
    assert cpu["sgemm_gflops"] > 0  # measured again beside the row's own timed calls
    # A small model: its multiply-adds per frame are not the full model's, so no fraction.
    assert cpu["gmac_per_frame"] is None and cpu["sgemm_fraction"] is None
    assert "sgemm peak" in (out / "bench.md").read_text()


def test_bench_skips_unavailable_gpu_rows_with_the_reason(bench_run):
    table, out = bench_run
    if _cuda_loads():
        pytest.skip("CUDA loads here: the GPU row is measured, not skipped")
    rows = {r["backend"]: r for r in json.loads((out / "bench.json").read_text())["rows"]}
    gpu = rows["ort-cuda-fp16"]
    assert gpu["status"] == "skipped"
    assert gpu["reason"].startswith("backend 'cuda'")
    assert "| ort-cpu | 128 | 1 |" in table
    assert "| ort-cuda-fp16 | 128 | 1 | skipped: backend 'cuda'" in table
    assert table in (out / "bench.md").read_text()


def test_bench_writes_a_png_plot(bench_run):
    _, out = bench_run
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 1000


def _offering_only_the_cpu(monkeypatch, **kwargs):
    """Make :func:`dmv_fast.settings.plan.resolve` see a machine whose onnxruntime offers the CPU only."""
    real = plan_module.resolve

    def resolve(spec, **kw):
        if kwargs.get("auto"):
            import dataclasses

            spec = dataclasses.replace(spec, backend="auto")
        return real(spec, **{**kw, "offered": (plan_module.CPU,), "loadable": (plan_module.CPU,)})

    monkeypatch.setattr(plan_module, "resolve", resolve)


def test_a_backend_the_plan_refuses_is_a_skipped_row(monkeypatch):
    _offering_only_the_cpu(monkeypatch)
    row = measure_row("ort-cuda-fp16", 128, 1, 0.1)
    assert isinstance(row, Row) and row.status == "skipped"
    assert row.reason.startswith("backend 'cuda' needs onnxruntime-gpu")
    assert row.frames_per_s is None and row.e2e is None
    assert row.to_dict() == {
        "backend": "ort-cuda-fp16",
        "resolution": 128,
        "batch_size": 1,
        "status": "skipped",
        "reason": row.reason,
    }


def test_a_plan_that_settles_on_another_backend_is_a_skipped_row(monkeypatch):
    _offering_only_the_cpu(monkeypatch, auto=True)  # asked for CUDA, planned on the CPU
    row = measure_row("ort-trt-fp16", 256, 8, 0.1)
    assert row.status == "skipped"
    assert row.reason == "asked for tensorrt fp16, the plan runs cpu fp16"


def test_the_cpu_row_runs_the_cpu_plan():
    plan = backend_plan("ort-cpu", 256, 8)
    assert plan is not None
    assert (plan.backend, plan.precision, plan.pixel_format) == ("cpu", "fp32", "rgb24")
    assert plan.batch_size == plan_module.CPU_BATCH_CAP  # asked 8: the graph batch is capped
    assert plan.to_dict()["weights"] == "random"


def test_end_to_end_length_depends_on_the_measured_speed_only_under_a_limit():
    # 43.07 frames per second of video: 1 s of video needs 10.8 s at 4 frames/s.
    seconds, skip = e2e_length(20.0, frames_per_s=4.0, budget=1.0, limit=10.0)
    assert (
        seconds == 1.0
        and skip == "1 s of video needs ~11 s at 4.00 frames/s, over 10x the 1 s budget"
    )
    assert e2e_length(20.0, frames_per_s=4.0, budget=1.0, limit=0.0) == (1.0, None)
    assert e2e_length(20.0, frames_per_s=4.0, budget=2.0, limit=10.0) == (1.0, None)
    # Fast enough: the song fits the budget (10 s budget at 129 frames/s = 30 s of video).
    assert e2e_length(20.0, frames_per_s=129.2, budget=10.0) == (20.0, None)
    assert e2e_length(20.0, frames_per_s=43.07, budget=5.0) == (5.0, None)
    assert e2e_length(0.5, frames_per_s=1.0, budget=1.0, limit=0) == (0.5, None)


def test_time_calls_stops_after_the_budget_on_a_simulated_clock():
    ticks = iter(range(1000))
    clock = lambda: 0.5 * next(ticks)  # noqa: E731 - every call takes 0.5 s
    calls = []
    times = time_calls(lambda n, c: calls.append(n.shape), 2, 1.9, warmup=1, clock=clock)
    assert times == [0.5, 0.5, 0.5, 0.5]  # 4 calls pass 1.9 s
    assert calls == [(2, 128)] * 5  # one untimed warm-up call, batch-sized inputs
    few = time_calls(lambda n, c: None, 1, 0.1, warmup=0, clock=lambda: 0.5 * next(ticks))
    assert len(few) == 3  # min_calls, however long each takes
    stats = call_stats([0.1, 0.2, 0.4], batch=4)
    assert stats["frames_per_s"] == 20.0 and stats["call_ms_p50"] == 200.0
    assert stats["call_ms_p50"] <= stats["call_ms_p99"] <= 400.0 and stats["calls"] == 3


def test_sgemm_peak_records_the_openblas_core_type(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    peak = sgemm_peak(n=64, repeats=2)
    assert peak["gflops"] > 0 and peak["openblas_coretype"] == "Haswell"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert sgemm_peak(n=64, repeats=1)["openblas_coretype"] is None
    # 20 frames/s of 7.5 GMAC is 300 GFLOP/s: half of a 600 GFLOP/s peak.
    assert peak_fraction(20.0, 7.5, 600.0) == 0.5


def test_markdown_rows_all_have_the_header_s_columns():
    ok = Row("ort-cpu", 128, 1, frames_per_s=20.0, call_ms_p50=50.0, call_ms_p99=60.0)
    ok.peak_rss_mb, ok.sgemm_fraction, ok.e2e = 500.0, 0.25, {"skipped": "song_seconds is 0"}
    skipped = Row("ort-cuda-fp16", 128, 1, status="skipped", reason="no | GPU")
    table = markdown_table([ok.to_dict(), skipped.to_dict()])
    lines = table.strip().splitlines()
    assert len({line.count("|") for line in lines}) == 1, table
    assert lines[2].startswith("| ort-cpu | 128 | 1 | 20.00 | 50.0 | 60.0 | 500 |")
    assert lines[2].endswith("| 25.0 |") and "| skipped |" in lines[2]
    assert lines[3].startswith("| ort-cuda-fp16 | 128 | 1 | skipped: no / GPU |")


def test_cli_bench_echoes_the_table(tmp_path):
    if _cuda_loads():
        pytest.skip("CUDA loads here: the row would be measured")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["bench", "--out", str(out), "--resolutions", "128", "--batch-sizes", "1",
         "--backends", "ort-cuda-fp16", "--seconds", "1", "--song-seconds", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| ort-cuda-fp16 | 128 | 1 | skipped: backend 'cuda'" in result.stdout
    assert json.loads((out / "bench.json").read_text())["rows"][0]["status"] == "skipped"


def test_cli_bench_fails_in_one_line_on_a_bad_backend(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["bench", "--out", str(out), "--backends", "ort-gpu"])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "ort-gpu" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"backends": ["ort-gpu"]}, "ort-gpu"),
        ({"resolutions": [64]}, "64"),
        ({"batch_sizes": [0]}, "batch size 0"),
        ({"seconds": 0}, "seconds"),
        ({"song_seconds": -1.0}, "song_seconds"),
        ({"e2e_limit": -1.0}, "e2e_limit"),
        ({"weights": "/no/such/folder"}, "/no/such/folder"),
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
