"""Live mode benchmark: how close the online vectors come to the offline ones, and which frame
rate runs live on this machine.

    .venv/bin/python benchmarks/bench_live.py [--seconds 20] [--rounds 2] [--skip-live] [--skip-closeness]

1. Closeness (no generator): the online engine against the offline one on real music
   (tests/data/kenney_jingles.ogg, 8.9 s) and a synthesized 60-second piece, for each chroma
   window and smoothing look-ahead, after a 2-second warm-up, online frame ``i`` against
   offline frame ``i + 1`` (the offline engine is one frame behind). Pearson correlations:
   the class mixture (per frame across the K weights, averaged over frames: which classes
   dominate), each class weight over time (averaged over classes), the motion speed
   ``|noise[i + 1] - noise[i]|`` over time, each noise unit over time (a bouncing random walk:
   small differences in its drive move it apart, so this one is low by nature) and the drive
   ``specm + gradm``.
2. Live runs: a synthesized piece played at real-time pace into a LiveSession at 128 px with
   ``--weights random`` (the full architecture, graph batch 1) for frame lengths 512, 1024
   and 2048 and 1 or 2 ONNX Runtime threads, alternating in rounds. Dropped frames, latency
   from audio block in to frame ready (p50/p99), achieved frames/s, and the load average
   around each run (the machine is shared; the figures are only as quiet as it was). A
   control run per round gives the session's own cost (a generator that returns a fixed frame).

Writes benchmarks/results/live_cpu.json and live_cpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
REAL_SONG = ROOT / "tests" / "data" / "kenney_jingles.ogg"
WARMUP_S = 2.0
FRAME_LENGTHS = (512, 1024, 2048)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.std() < 1e-12 or b.std() < 1e-12:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _online(audio: np.ndarray, rate: int, options, **kw):
    from dmv_fast.vectors.online import OnlineTrajectory

    engine = OnlineTrajectory(options, **kw)
    steps = [engine.push(audio[i : i + 1024], rate) for i in range(0, len(audio), 1024)]
    steps.append(engine.finish())
    noise = np.concatenate([s.noise for s in steps])
    weights = np.concatenate([s.weights for s in steps])
    return engine, noise, weights


def closeness(name: str, path: Path, audio: np.ndarray, rate: int) -> list[dict]:
    """Online against offline vectors for each chroma window and look-ahead."""
    from dmv_fast.audio.features import analyze
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.vectors.online import RANGE_FLOOR, OnlineTrajectory, _drive_kernel
    from dmv_fast.vectors.trajectory import compute_vectors, drive_signal

    options = RenderOptions(song=str(path), frame_length=512, seed=1)
    features = analyze(path, 512)
    offline = compute_vectors(features, options)
    skip = int(WARMUP_S * float(options.fps))
    rows = []
    offline_drive = drive_signal(features)
    sf = options.smooth_frames
    variants = [(c, la, 0.1) for c in (2048, 4096, 8192) for la in (0, sf)]
    variants += [(4096, 0, h) for h in (0.0, 0.05, 0.2)]  # the ranking's hysteresis
    for chroma_fft, lookahead, hysteresis in variants:
        t0 = time.perf_counter()
        engine, noise, weights = _online(
            audio,
            rate,
            options,
            chroma_fft=chroma_fft,
            lookahead=lookahead,
            hysteresis=hysteresis,
        )
        seconds = time.perf_counter() - t0
        n = min(len(noise), offline.n_frames) - 1
        cls = list(engine.classes)
        on_w, off_w = weights[skip:n], offline.class_vectors[skip + 1 : n + 1][:, cls]
        on_n, off_n = noise[skip:n], offline.noise[skip + 1 : n + 1]
        speed_on = np.linalg.norm(np.diff(on_n, axis=0), axis=1)
        speed_off = np.linalg.norm(np.diff(off_n, axis=0), axis=1)
        probe = OnlineTrajectory(options)  # the online drive, for the record
        mel = probe._features
        mel.add(audio.astype(np.float32), rate)
        raw = [mel.take()[0]]
        mel.flush()
        raw.append(mel.take()[0])
        drive = _drive_kernel(
            np.concatenate(raw), probe._drive_state, probe.params.decay, RANGE_FLOOR
        )
        top = set(engine.pitch_order[:3]) & {int(p) for p in features.chromasort[:3]}
        row = {
            "song": name,
            "seconds": round(features.duration, 2),
            "chroma_fft": chroma_fft,
            "lookahead": lookahead,
            "hysteresis": hysteresis,
            # which classes dominate: per frame, across the K weights
            "mixture_corr": _mean([_pearson(on_w[t], off_w[t]) for t in range(len(on_w))]),
            # each class's weight over time
            "class_corr": _mean([_pearson(on_w[:, j], off_w[:, j]) for j in range(len(cls))]),
            # how fast the picture moves: |noise[i + 1] - noise[i]| over time
            "speed_corr": _pearson(speed_on, speed_off),
            # each noise unit's position over time (a bouncing walk: it drifts apart)
            "noise_corr": _mean([_pearson(on_n[:, u], off_n[:, u]) for u in range(128)]),
            "drive_corr": _pearson(drive[skip:n], offline_drive[skip:n]),  # same feature frame
            "top3_pitches_shared": len(top),
            "rank_changes": engine.rank_changes,
            "frames": int(len(noise)),
            "offline_frames": offline.n_frames,
            "realtime_factor": features.duration / seconds,
        }
        rows.append(row)
        print(
            f"{name:8s} chroma {chroma_fft:5d} lookahead {lookahead:2d}: mixture r="
            f"{row['mixture_corr']:.3f} class r={row['class_corr']:.3f} speed r="
            f"{row['speed_corr']:.3f} noise r={row['noise_corr']:.3f}",
            flush=True,
        )
    return rows


class InstantFrames:
    """Control for the session's own cost: hands back one fixed frame at once (no model).
    Its rows are labelled "control" in the results; it stands in for nothing else."""

    def __init__(self, size: int = 128) -> None:
        self.frame = np.zeros((1, size, size, 3), np.uint8)

    def generate(self, noise: np.ndarray, classes: np.ndarray, truncation: float) -> np.ndarray:
        return self.frame


def live_run(generator, audio: np.ndarray, rate: int, frame_length: int, queue: int) -> dict:
    """Play ``audio`` at real-time pace into a session; the consumer keeps every frame."""
    from dmv_fast.live.pacer import Pacer, play
    from dmv_fast.live.session import LiveSession
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.vectors.online import OnlineTrajectory

    options = RenderOptions(song="-", frame_length=frame_length, seed=1)
    session = LiveSession(generator, OnlineTrajectory(options), queue=queue, batch=1)
    blocks = (audio[i : i + 1024] for i in range(0, len(audio), 1024))
    load_before = os.getloadavg()[0]

    def feed() -> None:
        play(blocks, rate, lambda b: session.push(b, rate), Pacer(rate))
        session.finish()

    with session:
        feeder = threading.Thread(target=feed)
        feeder.start()
        while not session.done:
            session.pull(timeout=0.1, newest=False)
        feeder.join()
    stats = session.stats().to_dict()
    stats["load_before"] = load_before
    stats["load_after"] = os.getloadavg()[0]
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per live run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument(
        "--skip-closeness", action="store_true", help="keep the closeness rows of the last run"
    )
    parser.add_argument("--queue", type=int, default=2, help="slots of the session's rings")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from dmv_fast.audio.decode import song_blocks
    from dmv_fast.audio.synth import synthesize_song

    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "live_cpu.json"
    if args.skip_closeness and previous.is_file():
        close = json.loads(previous.read_text())["closeness"]
    else:
        import soundfile as sf

        synth_path = RESULTS / ".bench_live_synth.wav"
        synth = synthesize_song(60.0, 44100)
        sf.write(synth_path, synth, 44100)
        rate, _, blocks = song_blocks(REAL_SONG)
        real = np.concatenate(list(blocks))
        try:
            close = closeness("kenney", REAL_SONG, real, rate)
            close += closeness("synth60", synth_path, synth, 44100)
        finally:
            synth_path.unlink(missing_ok=True)

    runs: list[dict] = []
    if not args.skip_live:
        from dmv_fast.render.api import Visualizer

        gens = {
            t: Visualizer(128, weights="random", backend="cpu", batch_size=1, threads=t).generator
            for t in (1, 2)
        }
        piece = synthesize_song(args.seconds, 44100)
        for gen in gens.values():  # warm both sessions
            gen.generate(np.zeros((1, 128), np.float32), np.zeros((1, 1000), np.float32), 1.0)
        for r in range(args.rounds):
            order = [(fl, t, args.queue) for fl in FRAME_LENGTHS for t in gens]
            order += [(1024, t, 1) for t in gens if args.queue != 1]  # the lowest-latency ring
            order += [(512, 0, args.queue)]  # control: the session without a model
            if r % 2:
                order.reverse()
            for fl, threads, queue in order:
                generator = gens[threads] if threads else InstantFrames()
                stats = live_run(generator, piece, 44100, fl, queue)
                stats.update(round=r, frame_length=fl, threads=threads, queue=queue)
                runs.append(stats)
                print(
                    f"round {r} fl {fl:4d} threads {threads} queue {queue}: {stats['frames_shown']}/"
                    f"{stats['frames_total']} shown, {100 * stats['dropped_fraction']:.1f} % "
                    f"dropped, p50 {stats['latency_p50_ms']:.0f} ms, p99 "
                    f"{stats['latency_p99_ms']:.0f} ms, load {stats['load_before']:.1f}",
                    flush=True,
                )
    record = {
        "summary": summarize(runs),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": list(os.getloadavg()),
        },
        "settings": {
            "resolution": 128,
            "weights": "random",
            "graph_batch": 1,
            "queue": args.queue,
            "seconds_per_run": args.seconds,
        },
        "closeness": close,
        "live": runs,
    }
    (RESULTS / "live_cpu.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / "live_cpu.md").write_text(markdown(record))
    print(markdown(record))


def summarize(runs: list[dict]) -> dict:
    """Per variant, the worst round; and the highest frame rate under 5 % dropped."""
    variants: dict[tuple, list[dict]] = {}
    for run in runs:
        variants.setdefault((run["frame_length"], run["threads"], run["queue"]), []).append(run)
    rows = [
        {
            "frame_length": fl,
            "threads": t,
            "queue": q,
            "target_fps": group[0]["target_fps"],
            "worst_dropped_fraction": max(r["dropped_fraction"] for r in group),
            "worst_p99_ms": max(r["latency_p99_ms"] for r in group),
            "median_load": float(np.median([r["load_before"] for r in group])),
        }
        for (fl, t, q), group in sorted(variants.items())
    ]
    live = [r for r in rows if r["threads"] and r["worst_dropped_fraction"] < 0.05]
    best = max(live, key=lambda r: r["target_fps"]) if live else None
    return {"variants": rows, "highest_live": best}


def markdown(record: dict) -> str:
    lines = [
        "# Live mode on this CPU",
        "",
        f"{record['machine']['cores']} cores, load average at the end "
        f"{', '.join(f'{x:.1f}' for x in record['machine']['load_average_at_end'])}. "
        "`python benchmarks/bench_live.py`.",
        "",
        "## Online against offline vectors (after a 2 s warm-up)",
        "",
        "| song | chroma window | look-ahead (frames) | hysteresis | class mixture r "
        "| class weight r "
        "| motion speed r | noise unit r | drive r | top-3 pitches shared | rank changes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["closeness"]:
        lines.append(
            f"| {row['song']} | {row['chroma_fft']} | {row['lookahead']} | {row['hysteresis']:g} | "
            f"{row['mixture_corr']:.3f} | {row['class_corr']:.3f} | {row['speed_corr']:.3f} | "
            f"{row['noise_corr']:.3f} | {row['drive_corr']:.3f} | "
            f"{row['top3_pitches_shared']}/3 | {row['rank_changes']} |"
        )
    best = record["summary"]["highest_live"]
    if record["live"]:
        loads = [r["load_before"] for r in record["live"]]
        lines += [
            "",
            f"## Live at 128 px, `--weights random`, graph batch 1, "
            f"{record['settings']['seconds_per_run']:g} s of audio per run",
            "",
            "**Highest frame rate live (< 5 % dropped in every round):** "
            + (
                f"frame length {best['frame_length']} ({best['target_fps']:.2f} frames/s), "
                f"{best['threads']} thread(s), queue {best['queue']}: p99 latency "
                f"{best['worst_p99_ms']:.0f} ms (worst round)"
                if best
                else "none of the frame lengths tried"
            )
            + f", at a median load average of {np.median(loads):.1f} on "
            f"{record['machine']['cores']} cores.",
        ]
        lines += [
            "",
            "Rows marked *control*: the same session and pacing with a generator that hands back "
            "a fixed frame at once (no model): what the online engine, the rings and the pacer "
            "cost by themselves.",
            "",
            "| round | frame length | target fps | ORT threads | queue | shown | dropped "
            "| latency p50 "
            "| p99 | achieved fps | generator fps | load before/after |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in record["live"]:
            lines.append(
                f"| {run['round']} | {run['frame_length']} | {run['target_fps']:.2f} | "
                f"{run['threads'] or 'control'} | {run['queue']} | "
                f"{run['frames_shown']}/{run['frames_total']} | "
                f"{100 * run['dropped_fraction']:.1f} % | {run['latency_p50_ms']:.0f} ms | "
                f"{run['latency_p99_ms']:.0f} ms | {run['fps']:.1f} | {run['generator_fps']:.1f} "
                f"| {run['load_before']:.1f} / {run['load_after']:.1f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
