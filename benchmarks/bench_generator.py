"""Generator frames/s on this machine: ONNX Runtime CPU (fp32) vs pytorch-pretrained-biggan.

Both run the same random-weight BigGAN-deep (``--weights random``), the same batch, the same
thread count, in one process, repetitions alternating between the two so that machine noise
hits both alike. PyTorch runs the way the original does: eager, eval mode, ``no_grad``, the
frame converted to 8-bit afterwards (ORT does that inside the graph). The outputs are checked
against each other first. On a 2-core machine only the ratio is worth quoting.

Also measured: the fp16 graph against the fp32 graph (PSNR, CPU provider), and, with
``--profile``, where ONNX Runtime's time goes per operator type.

    python benchmarks/bench_generator.py [--resolutions 128,256] [--batches 4,8] [--threads 2]
        [--reps 5] [--out benchmarks/results] [--profile] [--max-seconds 120]

Writes ``generator_cpu.json`` and ``generator_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from dmv_fast_export.export import psnr, reference_pixels
from dmv_fast_export.weights import load_model

from dmv_fast.model import cache as models
from dmv_fast.model import weights as model_weights
from dmv_fast.model.runtime import Generator
from dmv_fast.model.truncation import bn_inputs

TRUNCATION = 0.4
#: A repetition during which other processes used more than this many cores is dropped.
MAX_FOREIGN_CPU = 0.15


def trajectory_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise and class vectors shaped like a render's (|z| <= 2T, a few mixed classes)."""
    rng = np.random.default_rng(seed)
    noise = (np.clip(rng.standard_normal((n, 128)), -2, 2) * TRUNCATION).astype(np.float32)
    classes = np.zeros((n, 1000), np.float32)
    for i in range(n):
        picks = rng.choice(1000, size=12, replace=False)
        classes[i, picks] = rng.dirichlet(np.ones(12))
    return noise, classes


def torch_frames(model, noise: np.ndarray, classes: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        image = model(torch.from_numpy(noise), torch.from_numpy(classes), TRUNCATION)
    return reference_pixels(image.numpy())


def profile_ops(path: Path, noise, classes, threads: int) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time per operator type (one profiled run)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    idx, w = bn_inputs(TRUNCATION)
    feeds = {"noise": noise, "classes": classes, "bn_idx": idx, "bn_w": w}
    session.run(None, feeds)
    session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            per_op[op] = per_op.get(op, 0.0) + e["dur"]
    total = sum(per_op.values())
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {op: round(100 * us / total, 1) for op, us in ranked[:12]}


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def timed(fn) -> tuple[float, float]:
    """Wall seconds of ``fn()`` and the CPU other processes used meanwhile (in cores).

    The whole machine's busy time (/proc/stat) minus this process's own CPU time: on a
    shared machine a repetition that overlapped someone else's work is not a measurement.
    """
    busy0, _ = _cpu_jiffies()
    own0 = sum(os.times()[:2])
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    own = sum(os.times()[:2]) - own0
    busy = (_cpu_jiffies()[0] - busy0) / os.sysconf("SC_CLK_TCK")
    return wall, max(0.0, busy - own) / wall


def bench_resolution(
    res: int, batch: int, threads: int, reps: int, profile: bool, max_seconds: float = 180
) -> dict:
    source = model_weights.resolve_weights("random", res)
    started = time.perf_counter()
    model, _ = load_model(source)
    path = models.ensure_onnx(res, "random", "fp32", batch)
    path16 = models.ensure_onnx(res, "random", "fp16", batch)
    setup_s = time.perf_counter() - started

    gen = Generator(path, backend="cpu", threads=threads)
    noise, classes = trajectory_inputs(batch, seed=res)
    ours = gen.generate(noise, classes, TRUNCATION)  # warm-up
    ref = torch_frames(model, noise, classes)  # warm-up
    max_diff = int(np.abs(ours.astype(np.int16) - ref.astype(np.int16)).max())
    fp16 = Generator(path16, backend="cpu", threads=threads).generate(noise, classes, TRUNCATION)

    ort_s, torch_s, dropped = [], [], 0
    deadline = time.monotonic() + max_seconds
    while min(len(ort_s), len(torch_s)) < reps and time.monotonic() < deadline:
        # Alternate the engines; keep a pair only if no other process used the CPU meanwhile.
        t_ort, busy_ort = timed(lambda: gen.generate(noise, classes, TRUNCATION))
        t_torch, busy_torch = timed(lambda: torch_frames(model, noise, classes))
        if max(busy_ort, busy_torch) > MAX_FOREIGN_CPU:
            dropped += 1
            continue
        ort_s.append(t_ort)
        torch_s.append(t_torch)
    if not ort_s:
        raise RuntimeError(f"the machine was never quiet for {max_seconds} s: no clean timing")
    # Headline: the best clean repetition of each engine (timeit's rule); medians beside it.
    ort_fps = batch / min(ort_s)
    torch_fps = batch / min(torch_s)
    median_speedup = statistics.median(torch_s) / statistics.median(ort_s)
    result = {
        "resolution": res,
        "batch": batch,
        "threads": threads,
        "reps": len(ort_s),
        "reps_dropped_for_foreign_load": dropped,
        "ort_fps": round(ort_fps, 3),
        "torch_fps": round(torch_fps, 3),
        "speedup": round(ort_fps / torch_fps, 3),
        "ort_fps_median": round(batch / statistics.median(ort_s), 3),
        "torch_fps_median": round(batch / statistics.median(torch_s), 3),
        "speedup_median": round(median_speedup, 3),
        "ort_s_per_batch": [round(x, 4) for x in ort_s],
        "torch_s_per_batch": [round(x, 4) for x in torch_s],
        "max_pixel_diff_vs_torch": max_diff,
        "fp16_psnr_vs_fp32_db": round(psnr(fp16, ours), 2),
        "setup_s": round(setup_s, 1),
    }
    if profile:
        result["ort_time_share_percent"] = profile_ops(path, noise, classes, threads)
    return result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_markdown(payload: dict, path: Path) -> None:
    lines = [
        "# Generator on the CPU: ONNX Runtime vs pytorch-pretrained-biggan",
        "",
        f"{payload['cpu']}, {payload['threads']} threads for both engines, random weights, "
        f"truncation {TRUNCATION}; best of up to {payload['reps']} alternating repetitions "
        f"in one run ({payload['date']}), keeping only repetitions during which other "
        f"processes used less than {MAX_FOREIGN_CPU} of a core (read from /proc/stat). "
        "Ratios only: absolute times on a shared 2-core machine are not worth quoting.",
        "",
        "| resolution | batch | ORT fp32 frames/s | PyTorch eager frames/s | speed-up (best) "
        "| speed-up (median) | clean reps | max pixel diff | fp16 vs fp32 PSNR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        lines.append(
            f"| {r['resolution']} | {r['batch']} | {r['ort_fps']:.2f} | {r['torch_fps']:.2f} | "
            f"{r['speedup']:.2f}x | {r['speedup_median']:.2f}x | {r['reps']} | "
            f"{r['max_pixel_diff_vs_torch']} | {r['fp16_psnr_vs_fp32_db']:.1f} dB |"
        )
    for r in payload["results"]:
        if "ort_time_share_percent" in r:
            shares = ", ".join(f"{op} {p}%" for op, p in r["ort_time_share_percent"].items())
            lines += [
                "",
                f"ORT time at {r['resolution']} px, batch {r['batch']}, by operator: {shares}.",
            ]
    lines += [
        "",
        "fp16 on the CPU provider: ONNX Runtime has no fp16 convolution kernels on x86 and "
        "inserts casts, so this measures the fp16 rounding of weights and activations, not "
        "fp16 speed.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="128,256")
    parser.add_argument("--batches", default="4,8", help="static batch sizes to compare")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--profile", action="store_true", help="ORT time per operator type")
    parser.add_argument(
        "--max-seconds", type=float, default=120, help="per configuration, waiting for quiet"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    results = []
    for res in (int(r) for r in args.resolutions.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            r = bench_resolution(
                res, batch, args.threads, args.reps, args.profile, args.max_seconds
            )
            results.append(r)
            print(
                f"{res} px, batch {batch}: ORT {r['ort_fps']:.2f} frames/s, PyTorch "
                f"{r['torch_fps']:.2f} frames/s, {r['speedup']:.2f}x (median "
                f"{r['speedup_median']:.2f}x); max diff {r['max_pixel_diff_vs_torch']}, "
                f"fp16 PSNR {r['fp16_psnr_vs_fp32_db']:.1f} dB"
            )
    payload = {
        "results": results,
        "threads": args.threads,
        "reps": args.reps,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "versions": {"onnxruntime": ort.__version__, "torch": torch.__version__},
        "load_average": load,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generator_cpu.json").write_text(json.dumps(payload, indent=2) + "\n")
    write_markdown(payload, args.out / "generator_cpu.md")


if __name__ == "__main__":
    main()
