"""Peak memory is flat in song length: a 7-minute song vs a 20-second clip.

Both are rendered with ``dmv_fast.render.api.render`` at the same settings (128 px, random
weights, CPU, x264) in their own Python process; each reports its peak RSS (``VmHWM``).
A large frame length (8192 samples: 2.7 frames per second of audio) keeps the run short
while every stage (decode, analysis, vectors, generation, encode, audio mux) still sees the
whole song, and still gives the short clip many generator batches (the plan's batch, capped
at 4 on the CPU): ONNX Runtime's CPU memory arena reaches its steady size only at the second
call, so a one-batch clip would understate the baseline. Target: the long song's peak within 1.15x of the short clip's.
Results: memory.json and memory.md.

    python benchmarks/bench_memory.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET = 1.15
SEED = 99
CLASSES = (1, 22, 94, 130, 309, 323, 327, 340, 388, 417, 980, 985)


def _maxrss_mb() -> float:
    from dmv_fast.bench import peak_rss_mb

    return peak_rss_mb()


def child_analysis(args: argparse.Namespace) -> dict:
    """Decode and analysis alone: their share of the peak."""
    from dmv_fast.audio.decode import load_audio
    from dmv_fast.audio.features import analyze

    y = load_audio(args.song)
    after_decode = _maxrss_mb()
    del y
    features = analyze(args.song, args.frame_length)
    return {
        "frames": features.n_frames,
        "decode_peak_mb": after_decode,
        "peak_rss_mb": _maxrss_mb(),
    }


def child(args: argparse.Namespace) -> dict:
    if args.analysis_only:
        return child_analysis(args)
    from dmv_fast.render.api import render
    from dmv_fast.settings.options import RenderOptions

    options = RenderOptions(
        song=args.song,
        frame_length=args.frame_length,
        classes=CLASSES,
        # The default smoothing spans 20 x 512 samples, less than one frame at a frame length
        # above 10240: no smoothing then (smooth_factor 20 would be refused).
        smooth_factor=20 if args.frame_length <= 20 * 512 else 1,
        output_file=args.output,
        seed=SEED,
        encoder="x264",
    )
    t0 = time.perf_counter()
    result = render(options, _spec(args), overwrite=True)
    return {
        "frames": result.frames,
        "video_s": round(float(result.frames / result.fps), 3),
        "render_s": round(time.perf_counter() - t0, 2),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "peak_rss_mb": _maxrss_mb(),
    }


def _spec(args: argparse.Namespace):
    """The model settings of both renders (the plan caps the batch on the CPU)."""
    from dmv_fast.settings.spec import ModelSpec

    return ModelSpec(
        resolution=args.resolution,
        weights="random",
        backend="cpu",
        precision="fp32",
        batch_size=args.batch_size,
    )


def run(song: Path, output: Path, args: argparse.Namespace, analysis_only: bool = False) -> dict:
    result_file = output.with_suffix(".json")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--song", str(song)]
    if analysis_only:
        cmd.append("--analysis-only")
    cmd += ["--output", str(output), "--result", str(result_file)]
    cmd += ["--resolution", str(args.resolution), "--frame-length", str(args.frame_length)]
    cmd += ["--batch-size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"render of {song.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(result_file.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--short", type=float, default=20.0, help="short clip, seconds")
    parser.add_argument("--long", type=float, default=420.0, help="long song, seconds")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--frame-length", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=30)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--analysis-only", action="store_true")
    parser.add_argument("--song")
    parser.add_argument("--output")
    parser.add_argument("--result")
    args = parser.parse_args()
    if args.child:
        Path(args.result).write_text(json.dumps(child(args)))
        return

    from dmv_fast.bench import environment, write_song
    from dmv_fast.model.cache import ensure_graph
    from dmv_fast.settings.plan import resolve

    args.out.mkdir(parents=True, exist_ok=True)
    plan = resolve(_spec(args), encoder="x264")
    ensure_graph(plan)
    with tempfile.TemporaryDirectory(prefix="dmv-fast-memory-") as tmp:
        work = Path(tmp)
        short_song = write_song(work / "short.wav", args.short)
        long_song = write_song(work / "long.wav", args.long)
        songs = {
            "short": (short_song, args.short),
            "long": (long_song, args.long),
        }
        # Warm caches (numba, page cache) so neither run pays a first-run cost.
        run(short_song, work / "warmup.mp4", args)
        results = {}
        for name, (song, seconds) in songs.items():
            print(f"rendering the {seconds:g} s song", file=sys.stderr)
            results[name] = run(song, work / f"{name}.mp4", args)
            results[name]["song_s"] = seconds
            results[name]["analysis_only"] = run(song, work / f"{name}-a.mp4", args, True)
            results[name]["song_wav_mb"] = round(song.stat().st_size / 2**20, 1)

    ratio = results["long"]["peak_rss_mb"] / results["short"]["peak_rss_mb"]
    env = environment()
    report = {
        "environment": env,
        "settings": {
            "resolution": args.resolution,
            "frame_length": args.frame_length,
            "batch_size": args.batch_size,
            "plan": plan.to_dict(),
            "weights": "random",
            "backend": "cpu",
            "encoder": "x264",
            "song": "dmv_fast.render.demo.synthesize_song, 44.1 kHz stereo WAV",
        },
        "short": results["short"],
        "long": results["long"],
        "ratio": round(ratio, 3),
        "target": TARGET,
        "target_met": ratio <= TARGET,
    }
    (args.out / "memory.json").write_text(json.dumps(report, indent=2) + "\n")
    s, g = results["short"], results["long"]
    text = "\n".join(
        [
            "# Peak memory vs song length",
            "",
            f"{env['date']} · {env['cpu']} · {env['cores_usable']} cores · onnxruntime "
            f"{env['versions']['onnxruntime']} · load average {env['load_average_1m']} (other "
            "jobs shared the machine; memory is not affected by load)",
            "",
            f"`dmv_fast.render.api.render`, {args.resolution} px, random weights, CPU, x264, frame"
            f" length {args.frame_length}, batch {plan.batch_size} (asked {args.batch_size}, the"
            " plan's CPU cap applies); each song in its own process.",
            "",
            "| song | frames | render s | peak RSS MiB | decode alone, peak MiB "
            "| decode + analysis alone, peak MiB |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {r['song_s']:g} s | {r['frames']} | {r['render_s']:.1f} "
                f"| {r['peak_rss_mb']:.0f} | {r['analysis_only']['decode_peak_mb']:.0f} "
                f"| {r['analysis_only']['peak_rss_mb']:.0f} |"
                for r in (s, g)
            ),
            "",
            f"Ratio long/short: **{ratio:.3f}** (target ≤ {TARGET}: "
            f"{'met' if ratio <= TARGET else 'NOT met'}).",
            "",
            "The last two columns come from separate processes that only decode (and analyse)"
            " the song: they show how much of the peak the audio stages would set on their own"
            " if the generator's share shrank.",
            "",
            "Reproduce: `python benchmarks/bench_memory.py`",
        ]
    )
    (args.out / "memory.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
