"""Lanes: batches generated side by side on the CPU against one batch at a time.

A render on the CPU generates its frames through :meth:`dmv_fast.render.engine.Engine.frames`.
Earlier renders ran one batch at a time on one ONNX Runtime session using every core. The
plan now runs ``lanes`` batches side by side, each on its own thread calling the same session
(its weights held once) with the cores shared out: on 2 cores, two lanes of one thread each,
and one thread per session is where the Winograd graph wins (benchmarks/results/winograd_cpu.md).

In one process, repetitions alternating, over the same vectors (128 px random weights, the
plan's batch 4):

- ``one batch at a time, direct``: the earlier render (one lane, every core, direct graph);
- ``lanes, direct``: the plan's lanes with the direct graph;
- ``lanes, plan's graph``: the plan's lanes and convolution form (Winograd on AVX-512);

with each one's frames/s, the ratio to the first (best of repetitions, and the median of the
per-repetition ratios) and the largest pixel difference between them. CPU flags, sgemm peak
and load averages are recorded. (Memory: the lanes share one session, so the weights are held
once; the end-to-end benchmark reports a render's peak RSS.)

    python benchmarks/bench_lanes.py [--frames 48] [--reps 7] [--resolution 128]
        [--out benchmarks/results]

Writes ``lanes_cpu.json`` and ``lanes_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from dmv_fast.bench.machine import cpu_flags, environment, sgemm_peak
from dmv_fast.render.engine import Engine
from dmv_fast.settings.plan import resolve
from dmv_fast.settings.spec import ModelSpec

TRUNCATION = 0.6


def vectors(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise as a render's (|z| within the truncation) and one-hot-ish class mixtures."""
    rng = np.random.default_rng(seed)
    noise = np.clip(rng.standard_normal((n, 128)), -2, 2).astype(np.float32) * TRUNCATION
    classes = np.zeros((n, 1000), np.float32)
    for i in range(n):
        picks = rng.choice(1000, 3, replace=False)
        classes[i, picks] = rng.dirichlet(np.ones(3))
    return noise, classes


def engines(spec: ModelSpec) -> dict[str, Engine]:
    """The three ways, each with its session built (graphs exported into the cache first)."""
    plan = resolve(spec, encoder="x264")
    ways = {
        "one batch at a time, direct": resolve(spec, encoder="x264", conv_form="direct", lanes=1),
        "lanes, direct": resolve(spec, encoder="x264", conv_form="direct"),
        "lanes, plan's graph": plan,
    }
    out = {}
    for name, p in ways.items():
        engine = Engine(p)
        _ = engine.generator
        out[name] = engine
    return out


def timed(engine: Engine, noise: np.ndarray, classes: np.ndarray) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    frames = np.concatenate(list(engine.frames(noise, classes, TRUNCATION)))
    return len(noise) / (time.perf_counter() - t0), frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    spec = ModelSpec(
        resolution=args.resolution, weights="random", backend="cpu", precision="fp32", batch_size=4
    )
    load_before = [round(x, 2) for x in os.getloadavg()]
    sgemm = sgemm_peak()
    ways = engines(spec)
    noise, classes = vectors(args.frames)
    first: dict[str, np.ndarray] = {}
    for name, engine in ways.items():  # untimed: first runs allocate ONNX Runtime's buffers
        first[name] = timed(engine, noise, classes)[1]
    fps: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.reps):
        for name, engine in ways.items():
            fps[name].append(timed(engine, noise, classes)[0])
    load_after = [round(x, 2) for x in os.getloadavg()]

    base_name = "one batch at a time, direct"
    base = fps[base_name]
    rows = []
    for name, engine in ways.items():
        ratios = [a / b for a, b in zip(fps[name], base, strict=True)]
        diff = int(np.abs(first[name].astype(np.int16) - first[base_name]).max())
        rows.append(
            {
                "way": name,
                "lanes": engine.plan.lanes,
                "threads_per_lane": engine.plan.lane_threads or os.cpu_count(),
                "conv_form": engine.plan.conv_form,
                "fps_best": round(max(fps[name]), 2),
                "fps_median": round(statistics.median(fps[name]), 2),
                "ratio_best": round(max(fps[name]) / max(base), 3),
                "ratio_median": round(statistics.median(ratios), 3),
                "max_pixel_difference": diff,
                "fps_all": [round(x, 2) for x in fps[name]],
            }
        )
    report = {
        "environment": environment(),
        "cpu_flags": cpu_flags(),
        "sgemm": sgemm,
        "load_before": load_before,
        "load_after": load_after,
        "settings": {
            "resolution": args.resolution,
            "frames": args.frames,
            "reps": args.reps,
            "batch_size": 4,
            "truncation": TRUNCATION,
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lanes_cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "lanes_cpu.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    env, s = report["environment"], report["settings"]
    lines = [
        "# Lanes: batches side by side on the CPU",
        "",
        f"{env['date']} · {env['cpu']} · {env['cores_usable']} cores · flags "
        f"{', '.join(report['cpu_flags'])} · NumPy sgemm {report['sgemm']['gflops']} GFLOP/s · "
        f"load average {report['load_before']} before, {report['load_after']} after · "
        f"onnxruntime {env['versions']['onnxruntime']}",
        "",
        f"{s['resolution']} px, random weights, batch {s['batch_size']}, {s['frames']} frames per "
        f"repetition through `Engine.frames`, {s['reps']} repetitions alternating between the "
        "ways in one process. Ratios against one batch at a time (the earlier render): best "
        "against best, and the median of the per-repetition ratios.",
        "",
        "| way | lanes | threads each | convolutions | frames/s best | median | × earlier (best) "
        "| × earlier (median) | max pixel difference |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['way']} | {r['lanes']} | {r['threads_per_lane']} | {r['conv_form']} | "
            f"{r['fps_best']:.2f} | {r['fps_median']:.2f} | **{r['ratio_best']:.2f}×** | "
            f"{r['ratio_median']:.2f}× | {r['max_pixel_difference']} |"
        )
    lines += [
        "",
        "Reproduce: `python benchmarks/bench_lanes.py --frames "
        f"{s['frames']} --reps {s['reps']} --resolution {s['resolution']}`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
