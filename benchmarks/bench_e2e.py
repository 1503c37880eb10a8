"""End to end on the CPU: the original pipeline's way vs dmv-fast, side by side in one run.

Both render the same synthesized song (20 s by default) at 128 px with the same seeded random
BigGAN-deep weights' architecture and the same noise and class vectors:

- the original's way: torch eager BigGAN-deep (pytorch-pretrained-biggan, eval mode) in
  batches of 30, each frame converted to uint8 on the CPU in NumPy (stretching its own
  min..max), every frame kept in memory, then one libx264 encode of all frames through PyAV
  (x264 defaults as the original's writer used them: preset medium, crf 23) and the song's
  audio muxed as AAC;
- dmv-fast: ``dmv_fast.render.api.render`` with a :class:`~dmv_fast.settings.spec.ModelSpec` (ONNX
  Runtime on the CPU at the plan's batch, capped at 4 there; uint8 made in the graph;
  generation overlapped with a streaming libx264 encode, crf 20, preset veryfast), twice:
  as the plan renders on this machine (``dmv-fast``: on 2 cores, two batches side by side,
  each on one thread, and on AVX-512 the wide 3x3 convolutions as Winograd transforms,
  :mod:`dmv_fast_export.winograd`) and as the earlier renders did, one batch at a time on
  every core with direct convolutions everywhere (``dmv-fast-direct``), so the gain is
  measured side by side. The plan of each is recorded (``dmv_fast_plan``,
  ``dmv_fast_direct_plan``).

Each side runs in its own Python process, so its wall time includes the imports and model
setup a user waits for, and its peak RSS (``VmHWM``) is its own. A short untimed warm-up
of both sides runs first (numba's and the OS's caches). The fixed start-up cost of a render
is its own row: a 1-second song rendered in a fresh process by each side (imports, numba's
kernels from their cache, model session, encoder). The same run measures the machine's fp32
peak (NumPy sgemm, :func:`dmv_fast.bench.machine.sgemm_peak`) at the start and right after
the generator-alone run, and the share of it each generator reaches. Results: e2e_cpu.json
and e2e_cpu.md.

    python benchmarks/bench_e2e.py [--out benchmarks/results] [--seconds 20] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from e2e_report import TARGET_MEMORY, TARGET_SPEEDUP, markdown

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SEED = 1234
# A fixed class list keeps both sides on the same vectors without a random class draw.
CLASSES = (1, 22, 94, 130, 309, 323, 327, 340, 388, 417, 980, 985)
STARTUP_SONG_S = 1.0  # the song of the start-up row: its render is nearly all fixed cost


def _maxrss_mb() -> float:
    from dmv_fast.bench import peak_rss_mb

    return peak_rss_mb()


def _options(song: str, output: str, frame_length: int):
    """The per-render settings both sides share."""
    from dmv_fast.settings.options import RenderOptions

    return RenderOptions(
        song=song,
        frame_length=frame_length,
        classes=CLASSES,
        output_file=output,
        seed=SEED,
        encoder="x264",
    )


def _plan(resolution: int, batch_size: int, conv_form: str | None = None):
    """dmv-fast's plan for these settings; ``conv_form="direct"``: the earlier render (one
    batch at a time on every core, direct convolutions), None: the plan's own choice."""
    from dmv_fast.settings.plan import resolve

    spec = _spec(resolution, batch_size)
    if conv_form == "direct":
        return resolve(spec, encoder="x264", conv_form="direct", lanes=1)
    return resolve(spec, encoder="x264", conv_form=conv_form)


def _spec(resolution: int, batch_size: int):
    """dmv-fast's model settings (the plan caps the batch on the CPU)."""
    from dmv_fast.settings.spec import ModelSpec

    return ModelSpec(
        resolution=resolution,
        weights="random",
        backend="cpu",
        precision="fp32",
        batch_size=batch_size,
    )


def _vectors(options):
    """Features and vectors as the render computes them (same seed, same classes)."""
    from dmv_fast.audio.features import analyze
    from dmv_fast.vectors.trajectory import compute_vectors

    features = analyze(options.song, options.frame_length)
    vectors = compute_vectors(features, options, seed=options.seed)
    return features, vectors


# ----------------------------------------------------------------------------------------------
# The original's way


def encode_all(frames: list[np.ndarray], fps: Fraction, song: str, path: str) -> None:
    """Encode every frame (uint8 [H, W, 3]) at once with libx264, then mux the song as AAC,
    trimmed to the video's length."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(path, "w") as out, av.open(song) as src:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = 1 / fps
        video.options = {"crf": "23", "preset": "medium"}
        src_audio = src.streams.audio[0]
        layout = "stereo" if src_audio.channels >= 2 else "mono"
        audio = out.add_stream("aac", rate=src_audio.rate, layout=layout)
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            out.mux(video.encode(vf))
        out.mux(video.encode())
        resampler = av.AudioResampler(
            format="fltp", layout=layout, rate=src_audio.rate, frame_size=1024
        )
        limit = int(len(frames) / fps * src_audio.rate)
        written = 0
        for packet_frame in src.decode(src_audio):
            for af in resampler.resample(packet_frame):
                if written >= limit:
                    break
                af.pts = written
                written += af.samples
                out.mux(audio.encode(af))
        for af in resampler.resample(None):
            if written < limit:
                af.pts = written
                written += af.samples
                out.mux(audio.encode(af))
        out.mux(audio.encode())


def child_original(args: argparse.Namespace) -> dict:
    """Torch eager in batches, per-frame NumPy conversion, all frames in memory, one encode."""
    t_start = time.perf_counter()
    import torch

    from dmv_fast.bench import stretch_to_uint8, torch_biggan

    t = {"imports": time.perf_counter() - t_start}
    options = _options(args.song, args.output, args.frame_length)
    t0 = time.perf_counter()
    _, vectors = _vectors(options)
    t["analysis+vectors"] = time.perf_counter() - t0
    n = len(vectors.noise)

    t0 = time.perf_counter()
    model = torch_biggan(args.resolution)
    t["model"] = time.perf_counter() - t0

    frames: list[np.ndarray] = []
    t["torch_generate"] = t["convert"] = 0.0
    for start in range(0, n, args.batch_size):
        noise = torch.from_numpy(
            np.ascontiguousarray(vectors.noise[start : start + args.batch_size])
        )
        classes = torch.from_numpy(
            np.ascontiguousarray(vectors.class_vectors[start : start + args.batch_size])
        )
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model(noise, classes, options.truncation).numpy()
        t1 = time.perf_counter()
        frames.extend(stretch_to_uint8(f) for f in out)
        t["convert"] += time.perf_counter() - t1
        t["torch_generate"] += t1 - t0

    t0 = time.perf_counter()
    encode_all(frames, options.fps, args.song, args.output)
    t["encode"] = time.perf_counter() - t0
    return {
        "frames": n,
        "timings": {k: round(v, 3) for k, v in t.items()},
        "torch_threads": torch.get_num_threads(),
    }


# ----------------------------------------------------------------------------------------------
# dmv-fast


def child_dmv_fast(args: argparse.Namespace) -> dict:
    t_start = time.perf_counter()
    from dmv_fast.render.api import Visualizer, render

    imports = time.perf_counter() - t_start
    options = _options(args.song, args.output, args.frame_length)
    vis = Visualizer(_plan(args.resolution, args.batch_size, args.conv_form))
    result = render(options, overwrite=True, visualizer=vis)
    gen = vis.generator  # loaded during the render, while the song was analysed
    timings = {"imports": imports, **result.timings}
    return {
        "frames": result.frames,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "providers": list(gen.providers),
        "encoder": result.encoder,
        "plan": result.plan,
    }


def child_generate(args: argparse.Namespace) -> dict:
    """ONNX Runtime generation alone over the same vectors (for the breakdown)."""
    from dmv_fast.render.api import Visualizer

    options = _options(args.song, args.output, args.frame_length)
    _, vectors = _vectors(options)
    vis = Visualizer(_plan(args.resolution, args.batch_size, args.conv_form))
    gen = vis.generator
    gen.generate(vectors.noise[:1], vectors.class_vectors[:1], options.truncation)  # warm-up
    t0 = time.perf_counter()
    n = 0
    for batch in vis.frames(vectors.noise, vectors.class_vectors, options.truncation):
        n += len(batch)
    return {"frames": n, "timings": {"ort_generate": round(time.perf_counter() - t0, 3)}}


CHILDREN = {"original": child_original, "dmv-fast": child_dmv_fast, "generate": child_generate}
#: The sides timed: the original's way, dmv-fast with the plan's graph and with today's graph.
SIDES = ("original", "dmv-fast", "dmv-fast-direct")


# ----------------------------------------------------------------------------------------------
# Parent


def run_child(kind: str, song: Path, output: Path, args: argparse.Namespace) -> dict:
    result_file = output.with_suffix(".json")
    form = ["--conv-form", "direct"] if kind.endswith("-direct") else []
    kind = kind.removesuffix("-direct")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        *form,
        "--child",
        kind,
        "--song",
        str(song),
        "--output",
        str(output),
        "--result",
        str(result_file),
        "--resolution",
        str(args.resolution),
        "--batch-size",
        str(args.batch_size),
        "--frame-length",
        str(args.frame_length),
    ]
    busy0, child0 = _busy_cpu_s(), _children_cpu_s()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    busy, child = _busy_cpu_s() - busy0, _children_cpu_s() - child0
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(result_file.read_text())
    result["wall_s"] = round(wall, 2)
    result["cpu_s"] = round(child, 2)
    # Cores kept busy by everything else on the machine while this run went on.
    result["other_cores_busy"] = round(max(0.0, busy - child) / wall, 2)
    return result


def _busy_cpu_s() -> float:
    from dmv_fast.bench import busy_cpu_s

    return busy_cpu_s() or 0.0


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def probe_video(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
        a = c.streams.audio[0] if c.streams.audio else None
        return {
            "frames": frames,
            "rate": str(v.average_rate),
            "size": f"{v.width}x{v.height}",
            "audio": None if a is None else f"{a.codec_context.name} {a.rate} Hz",
            "bytes": path.stat().st_size,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--seconds", type=float, default=20.0, help="song length")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=30)
    parser.add_argument("--frame-length", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs per side")
    parser.add_argument(
        "--extra-batch",
        type=int,
        action="append",
        default=[],
        help="also time dmv-fast at this batch size (repeatable)",
    )
    parser.add_argument("--no-warmup", action="store_true")
    parser.add_argument("--conv-form", choices=("direct", "winograd"), help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--song")
    parser.add_argument("--output")
    parser.add_argument("--result")
    args = parser.parse_args()

    if args.child:
        result = CHILDREN[args.child](args)
        result["peak_rss_mb"] = _maxrss_mb()
        Path(args.result).write_text(json.dumps(result))
        return

    from dmv_fast.bench import environment, write_song
    from dmv_fast.bench.machine import (
        GRAPH_GMAC,
        ORIGINAL_GMAC,
        cpu_flags,
        peak_fraction,
        sgemm_peak,
    )
    from dmv_fast.model.cache import ensure_graph

    args.out.mkdir(parents=True, exist_ok=True)
    # The ONNX graphs are exported once and cached; a user pays that once, not per render.
    plans = {}
    for batch in [args.batch_size, *args.extra_batch]:
        plans[batch] = _plan(args.resolution, batch)  # the plan's own choice, recorded
        ensure_graph(plans[batch])
    ensure_graph(_plan(args.resolution, args.batch_size, "direct"))
    load_start = [round(x, 2) for x in os.getloadavg()]
    sgemm = [sgemm_peak()]
    runs: dict[str, list[dict]] = {k: [] for k in SIDES}
    startup: dict[str, list[dict]] = {k: [] for k in SIDES}
    extra: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dmv-fast-e2e-") as tmp:
        work = Path(tmp)
        song = write_song(work / "song.wav", args.seconds)
        short = write_song(work / "short.wav", STARTUP_SONG_S)
        first: dict[str, float] = {}
        if not args.no_warmup:
            for kind in ("dmv-fast", "dmv-fast-direct", "original"):
                print(f"warm-up: {kind}", file=sys.stderr)
                first[kind] = run_child(kind, short, work / f"warmup-{kind}.mp4", args)["wall_s"]
        # The fixed cost of a render: a 1-second song in a fresh process (imports, numba's
        # compiled kernels from its cache, the model session, the encoder), alternating sides.
        for i in range(args.repeat):
            for kind in SIDES:
                print(f"start-up {kind} ({i + 1}/{args.repeat})", file=sys.stderr)
                out = work / f"short-{kind}.mp4"
                result = run_child(kind, short, out, args)
                result["video"] = probe_video(out)
                startup[kind].append(result)
        load_before = round(os.getloadavg()[0], 2)
        for i in range(args.repeat):
            for kind in SIDES:
                print(f"timing {kind} ({i + 1}/{args.repeat})", file=sys.stderr)
                out = work / f"{kind}.mp4"
                result = run_child(kind, song, out, args)
                result["video"] = probe_video(out)
                runs[kind].append(result)
        load_after = round(os.getloadavg()[0], 2)
        for batch in args.extra_batch:
            print(f"timing dmv-fast at batch {batch}", file=sys.stderr)
            out = work / f"dmv-fast-b{batch}.mp4"
            result = run_child(
                "dmv-fast", song, out, argparse.Namespace(**{**vars(args), "batch_size": batch})
            )
            result["video"] = probe_video(out)
            result["batch_size"] = batch
            extra.append(result)
        print("timing ONNX Runtime generation alone", file=sys.stderr)
        gens: dict[str, list[dict]] = {"generate": [], "generate-direct": []}
        for _ in range(args.repeat):
            for kind in gens:
                gens[kind].append(run_child(kind, song, work / f"{kind}.mp4", args))
        sgemm.append(sgemm_peak())  # right after the generator alone, under the same load

    # The fastest of the repeats: interference from other jobs only ever adds time.
    original = min(runs["original"], key=lambda r: r["wall_s"])
    fast = min(runs["dmv-fast"], key=lambda r: r["wall_s"])
    direct = min(runs["dmv-fast-direct"], key=lambda r: r["wall_s"])
    frames = original["frames"]
    gen = min(gens["generate"], key=lambda r: r["timings"]["ort_generate"])
    gen_direct = min(gens["generate-direct"], key=lambda r: r["timings"]["ort_generate"])
    ort_gen = gen["timings"]["ort_generate"]
    ort_gen_direct = gen_direct["timings"]["ort_generate"]
    torch_gen = original["timings"]["torch_generate"]
    peak = max(s["gflops"] for s in sgemm)
    ort_fps, torch_fps = gen["frames"] / ort_gen, frames / torch_gen
    start_o = min(startup["original"], key=lambda r: r["wall_s"])
    start_d = min(startup["dmv-fast"], key=lambda r: r["wall_s"])
    start_dd = min(startup["dmv-fast-direct"], key=lambda r: r["wall_s"])
    report = {
        "environment": environment(),
        "settings": {
            "song_seconds": args.seconds,
            "resolution": args.resolution,
            "batch_size": args.batch_size,
            "frame_length": args.frame_length,
            "weights": "random",
            "seed": SEED,
            "classes": list(CLASSES),
            "repeat": args.repeat,
        },
        "cpu_flags": cpu_flags(),
        "load_start": load_start,
        "load_before": load_before,
        "load_after": load_after,
        "original": original,
        "dmv_fast": fast,
        "dmv_fast_direct": direct,
        "all_runs": {k: [r["wall_s"] for r in v] for k, v in runs.items()},
        "dmv_fast_other_batches": extra,
        "dmv_fast_plan": {
            **plans[args.batch_size].to_dict(),
            "lanes": plans[args.batch_size].lanes,
        },
        "dmv_fast_direct_plan": {
            **_plan(args.resolution, args.batch_size, "direct").to_dict(),
            "lanes": 1,
        },
        "startup": {
            "song_seconds": STARTUP_SONG_S,
            "original": start_o,
            "dmv_fast": start_d,
            "dmv_fast_direct": start_dd,
            "all_runs": {k: [r["wall_s"] for r in v] for k, v in startup.items()},
            "first_run_wall_s": first,
        },
        "sgemm": {"runs": sgemm, "gflops": peak},
        "generator_peak_fraction": {
            "ort_gmac_per_frame": GRAPH_GMAC[args.resolution],
            "ort_gflops": round(2 * GRAPH_GMAC[args.resolution] * ort_fps, 1),
            "ort": peak_fraction(ort_fps, GRAPH_GMAC[args.resolution], peak),
            "torch_gmac_per_frame": ORIGINAL_GMAC[args.resolution],
            "torch_gflops": round(2 * ORIGINAL_GMAC[args.resolution] * torch_fps, 1),
            "torch": peak_fraction(torch_fps, ORIGINAL_GMAC[args.resolution], peak),
        },
        "ort_generate_s": ort_gen,
        "ort_generate_direct_s": ort_gen_direct,
        "generate_all_runs": {
            k: [r["timings"]["ort_generate"] for r in v] for k, v in gens.items()
        },
        "ratios": {
            "graph_speedup": round(direct["wall_s"] / fast["wall_s"], 3),
            "graph_generator_speedup": round(ort_gen_direct / ort_gen, 3),
            "graph_without_startup": round(
                (direct["wall_s"] - start_dd["wall_s"]) / (fast["wall_s"] - start_d["wall_s"]), 3
            ),
            "direct_speedup": round(original["wall_s"] / direct["wall_s"], 3),
            "speedup": round(original["wall_s"] / fast["wall_s"], 3),
            "memory": round(fast["peak_rss_mb"] / original["peak_rss_mb"], 3),
            "torch_fps": round(torch_fps, 3),
            "ort_fps": round(ort_fps, 3),
            "ort_direct_fps": round(gen_direct["frames"] / ort_gen_direct, 3),
            "generator_speedup": round(ort_fps / torch_fps, 3),
            "startup": round(start_o["wall_s"] / start_d["wall_s"], 3),
            "without_startup": round(
                (original["wall_s"] - start_o["wall_s"]) / (fast["wall_s"] - start_d["wall_s"]),
                3,
            ),
        },
    }
    report["targets_met"] = {
        "speedup": report["ratios"]["speedup"] >= TARGET_SPEEDUP,
        "memory": report["ratios"]["memory"] <= TARGET_MEMORY,
    }
    (args.out / "e2e_cpu.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.out / "e2e_cpu.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
