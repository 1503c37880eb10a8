"""libx264 throughput for segmented rendering: 1, 2, 4 ... encoder processes side by side.

Each encoder is a separate process encoding one segment exactly as a segment worker does
(:func:`dmv_fast.video.segments.encode_segment`: libx264, preset veryfast, crf 20, one thread,
into an MP4 on disk). Frames are made before the clock starts and are realistic to encode:
smooth colour fields drifting a few pixels per frame under a fine texture that turns into
an unrelated one and back every 50 frames (not constant or merely moving frames, which
motion compensation predicts almost for free);
1024x1024 frames are such 512-px frames upscaled 2x with Lanczos, as ``--scaling 2`` makes. The
frames go in as YUV 4:2:0 planes, as the GPU path hands them over (the graph makes them);
one reference row feeds RGB (the CPU path: swscale converts) and one lets a single encoder
use x264's own threads.

Every configuration runs ``--reps`` times, the configurations alternating within each
repetition so that machine load hits them alike; the table gives medians. From the single
one-thread encoder it predicts how many encoders a generator at ``--target-fps`` frames/s
needs (the figure :func:`dmv_fast.settings.plan.default_workers` uses).

    python benchmarks/bench_encoders.py [--out benchmarks/results] [--encoders 1,2,4]

Where the plan runs on a GPU it then renders a 3.5-minute song at 512 px end to end (random
weights, backend auto, workers chosen by :func:`dmv_fast.settings.plan.default_workers`) and
records the wall time against the 30 s target (elsewhere that row says why it was skipped):

    python benchmarks/bench_encoders.py --out benchmarks/results/gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FPS = Fraction(22050, 512)
BATCH = 30


#: Frames over which the texture turns into an unrelated one and back: motion compensation
#: cannot predict it, as it cannot predict a generator's frames. Content decides x264's speed:
#: at 512x512 a texture that only drifts encodes at about 2.5x the rate of one that changes
#: every 20 frames (1.5 against 16.5 KiB per frame); 50 frames gives about 11 KiB per frame.
TEXTURE_PERIOD = 50


def make_frames(side: int, n: int, seed: int, pixel_format: str) -> np.ndarray:
    """``n`` frames: drifting smooth colour under a texture that keeps changing.

    Above 512 px the frames are 512-px frames upscaled with Lanczos, as ``--scaling`` makes
    them (the texture is the generator's, not finer).
    """
    rng = np.random.default_rng(seed)
    base = min(side, 512)
    pad = 4 * n + base
    y, x = np.mgrid[0:base, 0:pad].astype(np.float32) / base
    field = np.zeros((base, pad, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
            field[..., c] += np.sin(2 * np.pi * (fx * x + fy * y) + ph)
    tex_a = rng.normal(0, 10, field.shape).astype(np.float32)
    tex_b = rng.normal(0, 10, field.shape).astype(np.float32)
    out = np.empty((n, side, side, 3), np.uint8)
    for k in range(n):
        turn = 2 * np.pi * k / TEXTURE_PERIOD
        window = slice(4 * k, 4 * k + base)
        texture = np.cos(turn) * tex_a[:, window] + np.sin(turn) * tex_b[:, window]
        frame = np.clip(128 + 28 * field[:, window] + texture, 0, 255).astype(np.uint8)
        if side != base:
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize((side, side), Image.LANCZOS))
        out[k] = frame
    if pixel_format == "yuv420p":
        from dmv_fast.video.yuv import rgb_to_yuv420

        return rgb_to_yuv420(out)
    return out


def _encoder(side, frames, fmt, threads, seed, ready, go, results) -> None:
    from dmv_fast.video.segments import VideoSettings, encode_segment

    data = make_frames(side, frames, seed, fmt)
    settings = VideoSettings(crf=20, preset="veryfast", threads=threads)
    with tempfile.TemporaryDirectory(prefix="dmv-fast-enc-") as tmp:
        ready.put(os.getpid())
        go.wait()
        t0 = time.time()
        batches = (data[i : i + BATCH] for i in range(0, len(data), BATCH))
        written = encode_segment(batches, Path(tmp) / "s.mp4", (side, side), FPS, settings, fmt)
        t1 = time.time()
        size = (Path(tmp) / "s.mp4").stat().st_size
    results.put({"start": t0, "end": t1, "frames": written, "bytes": size})


def run_config(side: int, n: int, frames: int, fmt: str, threads: int, seed: int) -> dict:
    """``n`` encoder processes started together; aggregate and per-encoder frames/s."""
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=_encoder, args=(side, frames, fmt, threads, seed + i, ready, go, results)
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)
    go.set()
    rows = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"an encoder process failed (exit code {p.exitcode})")
    span = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return {
        "aggregate_fps": sum(r["frames"] for r in rows) / span,
        "per_encoder_fps": statistics.median(r["frames"] / (r["end"] - r["start"]) for r in rows),
        "kbytes_per_frame": statistics.median(r["bytes"] / r["frames"] / 1024 for r in rows),
    }


def bench(sides, counts, reps, frames_512, target_fps) -> dict:
    configs = []
    for side in sides:
        frames = max(10, round(frames_512 * (512 / side) ** 2))
        for n in counts:
            configs.append({"side": side, "encoders": n, "frames": frames, "pixels": "yuv420p",
                            "threads": 1})  # fmt: skip
        configs.append({"side": side, "encoders": 1, "frames": frames, "pixels": "yuv420p",
                        "threads": 0})  # fmt: skip
        configs.append({"side": side, "encoders": 1, "frames": frames, "pixels": "rgb24",
                        "threads": 1})  # fmt: skip
    samples: list[list[dict]] = [[] for _ in configs]
    for rep in range(reps):
        order = list(range(len(configs)))
        order = order[rep % len(order) :] + order[: rep % len(order)]  # rotate each repetition
        for i in order:
            c = configs[i]
            r = run_config(c["side"], c["encoders"], c["frames"], c["pixels"], c["threads"], 7)
            samples[i].append(r)
            print(f"rep {rep + 1}/{reps} {c} -> {r['aggregate_fps']:.1f} fps", file=sys.stderr)
    rows = []
    for c, s in zip(configs, samples, strict=True):
        rows.append(
            {
                **c,
                "aggregate_fps": round(statistics.median(r["aggregate_fps"] for r in s), 1),
                "per_encoder_fps": round(statistics.median(r["per_encoder_fps"] for r in s), 1),
                "kbytes_per_frame": round(statistics.median(r["kbytes_per_frame"] for r in s), 1),
                "samples": [round(r["aggregate_fps"], 1) for r in s],
            }
        )
    predictions = {}
    for side in sides:
        single = next(
            r for r in rows
            if r["side"] == side and r["encoders"] == 1 and r["threads"] == 1
            and r["pixels"] == "yuv420p"
        )  # fmt: skip
        predictions[str(side)] = {
            "per_encoder_fps": single["per_encoder_fps"],
            "encoders_for_target": math.ceil(target_fps / single["per_encoder_fps"]),
        }
    return {"rows": rows, "predictions": predictions, "target_fps": target_fps}


def gpu_e2e(out: Path, seconds: float) -> dict:
    """A 3.5-minute song at 512 px end to end on a GPU, workers chosen by the plan."""
    from dmv_fast.bench import write_song
    from dmv_fast.render.segmented import render_segmented
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.settings.plan import default_workers, resolve
    from dmv_fast.settings.spec import ModelSpec

    spec = ModelSpec(resolution=512, weights="random")
    plan = resolve(spec, encoder="x264")
    if not plan.on_gpu:
        return {"skipped": plan.notes[0]}
    workers = default_workers(True, "x264", spec.resolution, spec.scaling)
    with tempfile.TemporaryDirectory(prefix="dmv-fast-gpu-e2e-") as tmp:
        song = write_song(Path(tmp) / "song.wav", seconds)
        options = RenderOptions(
            song=str(song), output_file=str(Path(tmp) / "song.mp4"), seed=1, encoder="x264"
        )
        # Warm-up: export the graph and fill the caches once.
        short = dataclasses.replace(options, duration=5.0)
        render_segmented(short, plan, workers=workers)
        t0 = time.perf_counter()
        result = render_segmented(options, plan, workers=workers, overwrite=True)
        wall = time.perf_counter() - t0
    return {
        "song_s": seconds,
        "frames": result.frames,
        "workers": workers,
        "plan_workers": plan.workers,
        "plan": result.plan,
        "wall_s": round(wall, 2),
        "frames_per_s": round(result.frames / wall, 1),
        "target_s": 30.0,
        "target_met": wall <= 30.0,
        "providers": result.providers,
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
    }


GPU_COMMAND = "python benchmarks/bench_encoders.py --out benchmarks/results/gpu"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# libx264 throughput for segmented rendering",
        "",
        f"{env['date']} · {env['cpu']} · {env['cores_usable']} cores · load average "
        f"{env['load_average_1m']} (a shared machine: compare rows of one run, not runs)",
        "",
        "Each encoder is its own process encoding one segment as a segment worker does "
        "(libx264 veryfast, crf 20, into an MP4); frames are drifting smooth colour under a "
        f"texture that keeps changing (see the script). Medians of {report['reps']} alternating repetitions.",
        "",
    ]
    load, cores = env.get("load_average_1m") or 0, env.get("cores_usable") or 1
    if load > cores:
        lines += [
            f"The machine was oversubscribed by other jobs (load {load} on {cores} cores): "
            "extra encoder processes competed with them for the same cores, so the rows with "
            "more encoders than free cores show contention, not how x264 scales with free "
            "cores; that needs a machine with a core per encoder (the GPU run below).",
            "",
        ]
    lines += [
        "| frame size | encoders | input | x264 threads | frames/s, all encoders "
        "| frames/s per encoder | vs 1 encoder | KiB/frame |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        base = next(
            b["aggregate_fps"] for b in report["rows"]
            if b["side"] == r["side"] and b["encoders"] == 1 and b["threads"] == 1
            and b["pixels"] == "yuv420p"
        )  # fmt: skip
        threads = "auto" if r["threads"] == 0 else r["threads"]
        lines.append(
            f"| {r['side']}x{r['side']} | {r['encoders']} | {r['pixels']} | {threads} "
            f"| {r['aggregate_fps']:.1f} | {r['per_encoder_fps']:.1f} "
            f"| {r['aggregate_fps'] / base:.2f}x | {r['kbytes_per_frame']:.1f} |"
        )
    lines += ["", f"Encoders a generator at {report['target_fps']:g} frames/s needs "
              "(one single-threaded encoder per core, at the per-encoder rate above):", ""]  # fmt: skip
    for side, p in report["predictions"].items():
        lines.append(
            f"- {side}x{side}: {report['target_fps']:g} / {p['per_encoder_fps']:.1f} "
            f"= **{p['encoders_for_target']} encoders**"
        )
    gpu = report.get("gpu_e2e")
    lines += ["", "## On a GPU: a 3.5-minute song at 512 px end to end", ""]
    if gpu is None or "skipped" in gpu:
        why = gpu["skipped"] if gpu else "not run"
        lines += [
            f"| GPU | workers | wall s | frames/s | target |\n|---|---:|---:|---:|---|\n"
            f"| no GPU was available for this run ({why}) | | | | ≤ 30 s |",
            "",
            f"On a GPU server: `{GPU_COMMAND}`",
        ]
    else:
        lines += [
            "| GPU | workers | wall s | frames/s | target |",
            "|---|---:|---:|---:|---|",
            f"| {env['device']} | {gpu['workers']} | {gpu['wall_s']} "
            f"| {gpu['frames_per_s']} | ≤ 30 s: {'met' if gpu['target_met'] else 'NOT met'} |",
        ]
    lines += ["", "Reproduce: `python benchmarks/bench_encoders.py`"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--sides", default="512,1024", help="frame sizes (512 = --scaling 1)")
    parser.add_argument("--encoders", default="1,2,4", help="concurrent encoder processes")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--frames", type=int, default=150, help="frames per encoder at 512")
    parser.add_argument("--target-fps", type=float, default=1500.0)
    parser.add_argument(
        "--no-e2e", action="store_true", help="skip the end-to-end row (run where a GPU plan is)"
    )
    parser.add_argument("--from-json", type=Path, help="only rewrite the tables from a JSON")
    parser.add_argument("--song-seconds", type=float, default=210.0)
    args = parser.parse_args()

    from dmv_fast.bench import environment

    sides = [int(s) for s in args.sides.split(",") if s]
    counts = [int(n) for n in args.encoders.split(",") if n]
    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        report = {"environment": environment(), "reps": args.reps}
        report.update(bench(sides, counts, args.reps, args.frames, args.target_fps))
    if not args.no_e2e and not report.get("gpu_e2e", {}).get("wall_s"):
        report["gpu_e2e"] = gpu_e2e(args.out, args.song_seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "encoders_gpu" if "wall_s" in report.get("gpu_e2e", {}) else "encoders_cpu"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / f"{name}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
