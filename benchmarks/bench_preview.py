"""See-before-you-render benchmark: `dmv-fast plot` and `dmv-fast preview` on a 3-minute song.

    .venv/bin/python benchmarks/bench_preview.py [--seconds 180] [--repeats 3] [--frames 12]

Each command runs as a user runs it (a fresh process: imports, analysis, vectors, drawing or
12 generated frames, files written), alternating with the same commands on a 1-second song
(the start-up every run pays), after one untimed warm-up of each (numba's cache, the exported
graph of the random-weights model). Then the same calls in this process
give the split by stage. The preview's generator rate gives what the whole song would cost
through the same generator: the ratio a preview saves. Records the CPU, its vector flags, the
NumPy sgemm peak and the other processes' load. Writes benchmarks/results/preview.json and
preview.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CLI = Path(sys.executable).with_name("dmv-fast")


def run(args: list[str], program: str | Path = CLI) -> float:
    """Wall seconds of one command in a fresh process (it must succeed)."""
    t0 = time.perf_counter()
    subprocess.run([str(program), *args], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    import soundfile as sf

    from dmv_fast.audio.synth import DEMO_RATE, synthesize_song
    from dmv_fast.bench.machine import OtherLoad, cpu_summary, environment
    from dmv_fast.render.preview import plot_song, preview_song
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.settings.spec import ModelSpec

    model = ["--resolution", str(args.resolution), "--weights", "random", "--backend", "cpu"]
    with tempfile.TemporaryDirectory(prefix="dmv-bench-preview-") as tmp:
        song = Path(tmp) / "song.wav"
        sf.write(song, synthesize_song(args.seconds), DEMO_RATE, subtype="PCM_16")
        plot_cmd = ["plot", "--song", str(song), "--seed", "1", "-o", f"{tmp}/s.plot.png"]
        preview_cmd = ["preview", "--song", str(song), "--seed", "1", *model,
                       "--frames", str(args.frames), "-o", f"{tmp}/s.preview.png"]  # fmt: skip
        run([*plot_cmd, "-q", "-y"])  # warm-up: numba cache, fonts
        run([*preview_cmd, "-q", "-y"])  # warm-up: the graph exported once, cached

        # The same commands on a 1-second song: what every run pays whatever the song's
        # length (imports, librosa's and numba's lazy set-up, fonts, the ONNX Runtime session).
        short = Path(tmp) / "short.wav"
        sf.write(short, synthesize_song(1.0), DEMO_RATE, subtype="PCM_16")
        walls: dict[str, list[float]] = {
            k: [] for k in ("plot", "preview", "plot_1s", "preview_1s")
        }
        with OtherLoad() as load:
            for _ in range(args.repeats):
                walls["plot"].append(run([*plot_cmd, "-q", "-y"]))
                walls["preview"].append(run([*preview_cmd, "-q", "-y"]))
                walls["plot_1s"].append(run([*plot_cmd, "-q", "-y", "--song", str(short)]))
                walls["preview_1s"].append(run([*preview_cmd, "-q", "-y", "--song", str(short)]))

        # The same calls in this process (imports paid): where the time goes.
        options = RenderOptions(song=str(song), seed=1, output_file=f"{tmp}/s.mp4")
        spec = ModelSpec(resolution=args.resolution, weights="random", backend="cpu")
        splits: dict[str, list[dict[str, float]]] = {"plot": [], "preview": []}
        svg: list[float] = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            shown = plot_song(options, f"{tmp}/p.png", overwrite=True)
            splits["plot"].append({**shown.timings, "total": time.perf_counter() - t0})
            t0 = time.perf_counter()
            plot_song(options, f"{tmp}/p.svg", overwrite=True)
            svg.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = preview_song(
                options, spec, frames=args.frames, sheet=f"{tmp}/p.preview.png", overwrite=True
            )
            splits["preview"].append({**result.timings, "total": time.perf_counter() - t0})
        n_frames = shown.data.n_frames
        fps = float(shown.data.fps)
    machine = cpu_summary()
    env = environment()

    def median(stage: str, key: str) -> float:
        return statistics.median(s[key] for s in splits[stage])

    generate = median("preview", "generate")
    per_frame = generate / args.frames
    whole_song = per_frame * n_frames
    out = {
        "song": {"seconds": args.seconds, "frames": n_frames, "fps": fps},
        "settings": {"frames": args.frames, "resolution": args.resolution, "weights": "random"},
        "commands": {
            "plot": "dmv-fast " + " ".join(plot_cmd).replace(tmp + "/", ""),
            "preview": "dmv-fast " + " ".join(preview_cmd).replace(tmp + "/", ""),
        },
        "wall_s": {k: [round(x, 3) for x in v] for k, v in walls.items()},
        "wall_median_s": {k: round(statistics.median(v), 3) for k, v in walls.items()},
        "in_process_s": {
            stage: {key: round(median(stage, key), 4) for key in splits[stage][0]}
            for stage in splits
        },
        "plot_svg_in_process_s": round(statistics.median(svg), 4),
        "generate_per_frame_s": round(per_frame, 4),
        "whole_song_generation_estimate_s": round(whole_song, 1),
        "other_load_cores": load.cores,
        "machine": machine,
        "environment": env,
    }
    text = report(out)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "preview.json").write_text(json.dumps(out, indent=2) + "\n")
        (RESULTS / "preview.md").write_text(text)
    return 0


def runs(r: dict, key: str) -> str:
    return ", ".join(f"{x:.2f}" for x in r["wall_s"][key])


def report(r: dict) -> str:
    m = r["machine"]
    song = r["song"]
    ip = r["in_process_s"]
    wall = r["wall_median_s"]
    frames = r["settings"]["frames"]
    lines = [
        f"# See before you render: plot and preview of a {song['seconds'] / 60:g}-minute song",
        "",
        f"{song['seconds']:g} s synthesized chords + drums (`dmv_fast.audio.synth`), "
        f"{song['frames']} frames at {song['fps']:.6g} frames/s. {m['cpu']}, {m['cores']} "
        f"logical cores, flags {' '.join(m['cpu_flags']) or 'none of note'}, NumPy sgemm peak "
        f"{m['sgemm']['gflops']} GFLOP/s; other processes kept {r['other_load_cores']} cores "
        f"busy during the timed commands. Preview: {frames} frames at "
        f"{r['settings']['resolution']} px, random weights (the full architecture, the same "
        "cost per frame as the pretrained ones).",
        "",
        "A fresh process per run, as typed; median wall seconds (the runs in brackets). The "
        "1-second song gives what every run pays whatever the song's length (imports, "
        "librosa's and numba's lazy set-up, fonts; for the preview also the ONNX Runtime "
        f"session and its {frames} frames): the rest is the song's own analysis.",
        "",
        f"| command | {song['seconds']:g} s song | 1 s song (start-up) | the song's own part |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| `{r['commands'][k]}` | {wall[k]:.2f} ({runs(r, k)}) | "
            f"{wall[k + '_1s']:.2f} ({runs(r, k + '_1s')}) | {wall[k] - wall[k + '_1s']:.2f} |"
            for k in ("plot", "preview")
        ),
        "",
        "In one process (imports paid), median seconds per stage:",
        "",
        "| stage | plot | preview |",
        "| --- | ---: | ---: |",
        f"| analysis (decode + features) | {ip['plot']['analysis']:.3f} | "
        f"{ip['preview']['analysis']:.3f} |",
        f"| vectors (trajectory kernels) | {ip['plot']['vectors']:.4f} | "
        f"{ip['preview']['vectors']:.4f} |",
        f"| drawing + PNG | {ip['plot']['plot']:.3f} | |",
        f"| graph loaded (ONNX Runtime session) | | {ip['preview']['load']:.3f} |",
        f"| {frames} frames generated | | {ip['preview']['generate']:.3f} |",
        f"| total | {ip['plot']['total']:.3f} | {ip['preview']['total']:.3f} |",
        "",
        f"- The plot as SVG, in one process: {r['plot_svg_in_process_s']:.3f} s.",
        f"- Generation: {r['generate_per_frame_s']:.3f} s per frame; the whole song's "
        f"{song['frames']} frames through the same generator would take about "
        f"{r['whole_song_generation_estimate_s'] / 60:.1f} min, "
        f"{r['whole_song_generation_estimate_s'] / wall['preview']:.0f}x the preview's wall "
        "time.",
        "",
        "Regenerate with `.venv/bin/python benchmarks/bench_preview.py`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
