"""Lanes: a CPU render generates batches side by side on one shared session, in order, with
the same pixels as one batch at a time; failures and early stops leave no lane behind; live
sessions and callers that give a thread count keep one lane."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from dmv_fast.model.runtime import Generator
from dmv_fast.render.engine import Engine
from dmv_fast.settings import machine, plan
from dmv_fast.settings.machine import CPU, CUDA
from dmv_fast.settings.plan import resolve
from dmv_fast.settings.spec import ModelSpec

pytest.importorskip("torch")

AVX512 = ("avx2", "avx512f")


@pytest.fixture
def cores(monkeypatch):
    """Pretend this machine has ``n`` cores and the given CPU flags."""
    machine.reset_probe()

    def set_cores(n: int, flags: tuple[str, ...] = AVX512) -> None:
        monkeypatch.setattr(os, "cpu_count", lambda: n)
        monkeypatch.setitem(machine._probe, "cpu_flags", flags)

    yield set_cores
    machine.reset_probe()


def _lane_threads() -> list[threading.Thread]:
    """The lanes still alive (the frames' iterator waits for every lane to end)."""
    return [t for t in threading.enumerate() if t.name.startswith("dmv-fast-lane")]


def test_the_plan_runs_two_lanes_on_a_multicore_cpu(cores):
    spec = ModelSpec(resolution=128, batch_size=4)
    cores(2)
    p = resolve(spec, offered=(CPU,))
    assert (p.lanes, p.lane_threads, p.conv_form) == (2, 1, "winograd")
    assert p.batch_size == 2  # four frames in flight, two per lane
    assert any(n.startswith("lanes 2") for n in p.notes)
    assert "lanes" not in p.to_dict()  # how frames are scheduled is not what they are
    # One lane where the caller gives the threads or asks for one lane (live, benchmarks).
    given = resolve(spec, offered=(CPU,), threads=2)
    assert (given.lanes, given.conv_form) == (1, "direct")
    one = resolve(spec, offered=(CPU,), lanes=1)
    assert (one.lanes, one.lane_threads, one.conv_form) == (1, None, "direct")
    assert p.for_threads(1).lanes == 1 and p.for_threads(1).batch_size == 4
    assert p.for_threads(None).conv_form == "direct"
    with pytest.raises(ValueError, match="lanes"):
        resolve(spec, offered=(CPU,), lanes=3)

    cores(2, ("avx2", "fma"))  # lanes without AVX-512: direct convolutions
    p = resolve(spec, offered=(CPU,))
    assert (p.lanes, p.conv_form) == (2, "direct")
    cores(8)
    p = resolve(spec, offered=(CPU,))
    assert (p.lanes, p.lane_threads, p.conv_form) == (2, 4, "direct")
    cores(1)
    assert resolve(spec, offered=(CPU,)).lanes == 1

    cores(2)
    gpu = resolve(spec, offered=(CUDA, CPU), loadable=(CUDA, CPU), encoder="x264")
    assert (gpu.lanes, gpu.lane_threads) == (1, None)
    fallen = gpu.on_cpu("test")
    assert (fallen.lanes, fallen.lane_threads, fallen.conv_form) == (2, 1, "winograd")


def _record_calls(monkeypatch, fail_at: int | None = None) -> list[str]:
    """The threads that call ``Generator.generate``, in call order; call ``fail_at`` raises."""
    callers: list[str] = []
    real = Generator.generate

    def record(self, *args, **kwargs):
        callers.append(threading.current_thread().name)
        if len(callers) == fail_at:
            raise RuntimeError("lane failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Generator, "generate", record)
    return callers


def _vectors(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    noise = (0.4 * rng.standard_normal((n, 128))).astype(np.float32)
    classes = np.zeros((n, 1000), np.float32)
    classes[np.arange(n), rng.integers(0, 1000, n)] = 1.0
    return noise, classes


@pytest.fixture
def lanes_plan(cores, tiny_weights, module_cache):
    """The two-lane CPU plan of the narrow model (direct convolutions, so that a one-lane
    engine on two threads runs the same graph)."""
    cores(2)
    spec = ModelSpec(resolution=128, weights=str(tiny_weights), backend="cpu", batch_size=2)
    return resolve(spec, encoder="x264", conv_form="direct")


def test_lanes_give_the_frames_of_one_batch_at_a_time_in_order(lanes_plan, monkeypatch):
    assert lanes_plan.lanes == 2
    noise, classes = _vectors(7)
    one = Engine(lanes_plan, lanes=1)
    assert one.plan.lanes == 1 and one.plan.conv_form == "direct"
    expected = list(one.frames(noise, classes, 0.5))

    callers = _record_calls(monkeypatch)
    engine = Engine(lanes_plan)
    got = list(engine.frames(noise, classes, 0.5))
    assert [len(b) for b in got] == [2, 2, 2, 1]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(callers) == 4 and all(c.startswith("dmv-fast-lane") for c in callers)
    assert not _lane_threads()


def test_a_failing_lane_fails_the_frames_and_leaves_no_lane(lanes_plan, monkeypatch):
    noise, classes = _vectors(12)
    engine = Engine(lanes_plan)
    _ = engine.generator
    calls = _record_calls(monkeypatch, fail_at=3)
    frames = engine.frames(noise, classes, 0.5)
    got = []
    with pytest.raises(RuntimeError, match="lane failed"):
        for batch in frames:
            got.append(batch)
    assert len(got) == 2  # the batches before the failure, in order
    assert len(calls) <= 4  # at most one batch per lane ran past it
    assert not _lane_threads()


def test_stopping_early_starts_no_further_batch(lanes_plan, monkeypatch):
    noise, classes = _vectors(20)
    engine = Engine(lanes_plan)
    _ = engine.generator
    calls = _record_calls(monkeypatch)
    frames = engine.frames(noise, classes, 0.5)
    next(frames)
    frames.close()  # the consumer stopped (a failed encoder, a signal)
    assert len(calls) <= 3  # the first batch and one per lane in flight, never all ten
    assert not _lane_threads()


def test_a_live_session_runs_one_lane_on_every_core(lanes_plan):
    from dmv_fast.settings.options import RenderOptions

    engine = Engine(lanes_plan)
    lanes_gen = engine.generator
    session = engine.stream(RenderOptions(song="-", frame_length=2048, seed=3), queue=2)
    assert engine.plan.lanes == 1 and engine.plan.lane_threads is None
    assert session.generator is engine.generator and engine.generator is not lanes_gen
    # A thread count given to the engine is one lane on that many threads.
    assert Engine(lanes_plan, threads=1).plan.lanes == 1
    assert plan.cpu_lanes(3, None)[:2] == (1, 3)


def test_an_interrupt_terminates_the_calls_in_flight(lanes_plan):
    """Stopping early sets ``terminate`` on the lanes' RunOptions: a call still running
    returns at once with ONNX Runtime's own error instead of finishing its batch."""
    noise, classes = _vectors(8)
    engine = Engine(lanes_plan)
    gen = engine.generator
    seen: list = []
    real = gen.generate

    def slow(*args, run_options=None, **kwargs):
        seen.append(run_options)
        if len(seen) == 2:  # the second lane waits until the caller has stopped
            while not run_options.terminate:
                threading.Event().wait(0.01)
        return real(*args, run_options=run_options, **kwargs)

    gen.generate = slow
    frames = engine.frames(noise, classes, 0.5)
    next(frames)
    frames.close()
    assert seen[1].terminate and not _lane_threads()
