"""The resolved plan: `auto` settled once, from the providers that really load."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from dmv_fast.settings import machine
from dmv_fast.settings.machine import CPU, CUDA, TENSORRT
from dmv_fast.settings.plan import CPU_BATCH_CAP, cpu_batch_cap, resolve, settle
from dmv_fast.settings.spec import ModelSpec

GPU_OFFERED = (TENSORRT, CUDA, CPU)


@pytest.fixture(autouse=True)
def _fresh_probe():
    machine.reset_probe()
    yield
    machine.reset_probe()


def test_cpu_machine_gets_the_cpu_plan():
    p = resolve(ModelSpec(resolution=128, batch_size=30), offered=(CPU,))
    assert (p.backend, p.providers, p.precision) == ("cpu", (CPU,), "fp32")
    assert (p.batch_size, p.pixel_format, p.encoder, p.workers) == (
        cpu_batch_cap(p.lanes),  # CPU_BATCH_CAP frames in flight, shared by the lanes
        "rgb24",
        "x264",
        1,
    )
    assert "auto" not in p.to_dict().values()
    assert p.warning.startswith("generator runs on the CPU")


def test_gpu_offered_but_not_loading_runs_the_cpu_plan():
    """onnxruntime-gpu installed, no usable GPU: the real load probe (a one-node session)
    finds that CUDA does not load, and auto runs the CPU plan: capped batch, fp32, RGB."""
    p = resolve(ModelSpec(resolution=256, batch_size=30), offered=(CUDA, CPU), encoder="x264")
    assert (p.backend, p.providers, p.precision) == ("cpu", (CPU,), "fp32")
    assert (p.batch_size, p.pixel_format) == (cpu_batch_cap(p.lanes), "rgb24")
    assert p.batch_size * p.lanes == CPU_BATCH_CAP
    assert "did not load" in p.warning


def test_gpu_that_loads_gets_the_gpu_plan():
    p = resolve(
        ModelSpec(resolution=512, batch_size=30),
        offered=GPU_OFFERED,
        loadable=(CUDA, CPU),
        encoder="x264",
        workers=3,
    )
    assert (p.backend, p.providers, p.precision) == ("cuda", (CUDA, CPU), "fp16")
    assert (p.batch_size, p.pixel_format, p.workers) == (30, "yuv420p", 3)
    assert not p.warning
    trt = resolve(ModelSpec(), offered=GPU_OFFERED, loadable=GPU_OFFERED, encoder="x264")
    assert (trt.backend, trt.providers) == ("tensorrt", GPU_OFFERED)


@pytest.mark.parametrize("backend", ["cuda", "tensorrt"])
def test_explicit_gpu_backend_fails_at_resolve(backend):
    with pytest.raises(ValueError, match="onnxruntime-gpu") as info:
        resolve(ModelSpec(backend=backend), offered=(CPU,))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="did not load"):
        resolve(ModelSpec(backend=backend), offered=GPU_OFFERED, loadable=(CPU,))


def test_int8_is_cpu_only():
    p = resolve(ModelSpec(precision="int8"), offered=GPU_OFFERED, loadable=GPU_OFFERED)
    assert (p.backend, p.precision, p.pixel_format) == ("cpu", "int8", "rgb24")
    with pytest.raises(ValueError, match="int8"):
        ModelSpec(precision="int8", backend="cuda")


def test_nvenc_without_nvenc_fails_at_resolve():
    with pytest.raises(ValueError, match="nvenc") as info:
        resolve(ModelSpec(), offered=(CPU,), encoder="nvenc")
    assert "\n" not in str(info.value)


def test_settle_redoes_a_contradicted_gpu_plan_once(caplog):
    gpu = resolve(
        ModelSpec(batch_size=16), offered=GPU_OFFERED, loadable=GPU_OFFERED, encoder="x264"
    )
    assert settle(gpu, [TENSORRT, CUDA, CPU]) is gpu
    with caplog.at_level(logging.WARNING, logger="dmv_fast"):
        cuda = settle(gpu, [CUDA, CPU])
        cpu = settle(gpu, [CPU])
    assert (cuda.backend, cuda.providers, cuda.precision) == ("cuda", (CUDA, CPU), "fp16")
    assert (cpu.backend, cpu.precision, cpu.batch_size, cpu.pixel_format) == (
        "cpu",
        "fp32",
        cpu_batch_cap(cpu.lanes),
        "rgb24",
    )
    assert len(caplog.records) == 2
    explicit = dataclasses.replace(gpu, spec=dataclasses.replace(gpu.spec, backend="tensorrt"))
    with pytest.raises(RuntimeError, match="TensorRT execution provider did not load"):
        settle(explicit, [CPU])


def test_workers_are_checked():
    with pytest.raises(ValueError, match="workers"):
        resolve(ModelSpec(), offered=(CPU,), workers=0)
    assert resolve(ModelSpec(), offered=(CPU,)).workers == 1


def test_choice_lists_are_defined_once():
    """The CLI's choices are the settings'."""
    from dmv_fast.cli import params
    from dmv_fast.settings import choices

    assert [e.value for e in params.BackendChoice] == list(choices.BACKENDS)
    assert [e.value for e in params.PrecisionChoice] == list(choices.PRECISIONS)
    assert [e.value for e in params.EncoderChoice] == list(choices.ENCODERS)
    assert [e.value for e in params.PixelsChoice] == list(choices.PIXELS)
    assert [e.value for e in params.PresetChoice] == list(choices.X264_PRESETS)
    assert [e.value for e in params.ResolutionChoice] == [str(r) for r in choices.RESOLUTIONS]
