"""Analysis benchmark: decode + features of a 10-minute song, and the trajectory kernels
against the plain-Python reference of SPEC §4 (the original's per-frame loop), in one run.

    .venv/bin/python benchmarks/bench_analysis.py [--minutes 10] [--repeats 3]

Writes benchmarks/results/analysis.json and analysis.md and prints a short table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Measure a cold numba compile: point the cache at an empty folder before numba is imported.
_CACHE = tempfile.TemporaryDirectory(prefix="dmv-bench-numba-")
os.environ["NUMBA_CACHE_DIR"] = _CACHE.name

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RATE = 44100
# I - vi - IV - V: MIDI root and intervals, one chord per 2-second bar at 120 bpm.
CHORDS = [(60, (0, 4, 7)), (57, (0, 3, 7)), (53, (0, 4, 7)), (55, (0, 4, 7))]


def synthesize(minutes: float, seed: int = 0) -> np.ndarray:
    """Chords, bass, drums and noise, bar by bar. Returns ``[n_samples, 2]`` float32."""
    rng = np.random.default_rng(seed)
    bar_len = 2 * RATE
    n_bars = int(np.ceil(minutes * 60 / 2))
    local = np.arange(bar_len) / RATE
    env = np.minimum(local / 0.02, 1) * np.exp(-1.2 * local)
    beat = np.arange(bar_len // 8) / RATE
    kick = np.sin(2 * np.pi * (55 * beat + 3 * (1 - np.exp(-30 * beat)))) * np.exp(-20 * beat)
    out = np.empty((n_bars * bar_len, 2), dtype=np.float32)
    for b in range(n_bars):
        root, intervals = CHORDS[b % 4]
        root += 12 * ((b // 16) % 2) - 5 * ((b // 32) % 2)  # move around every 32 / 64 s
        y = np.zeros(bar_len)
        for iv in intervals:
            f = 440 * 2 ** ((root + iv - 69) / 12)
            y += 0.1 * env * (np.sin(2 * np.pi * f * local) + 0.3 * np.sin(4 * np.pi * f * local))
        y += 0.2 * env * np.sin(2 * np.pi * 440 * 2 ** ((root - 24 - 69) / 12) * local)
        for k in range(8):  # eighths: kick on 1 and 3, snare on 2 and 4, hats throughout
            i0 = k * len(beat)
            if k % 4 == 0:
                y[i0 : i0 + len(beat)] += 0.5 * kick
            elif k % 4 == 2:
                y[i0 : i0 + len(beat)] += 0.25 * rng.standard_normal(len(beat)) * np.exp(-25 * beat)
            y[i0 : i0 + len(beat)] += 0.05 * rng.standard_normal(len(beat)) * np.exp(-90 * beat)
        y += 0.003 * rng.standard_normal(bar_len)
        out[b * bar_len : (b + 1) * bar_len, 0] = y
        out[b * bar_len : (b + 1) * bar_len, 1] = 0.8 * y
    n = int(minutes * 60 * RATE)
    return np.clip(out[:n], -1, 1)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frame-length", type=int, default=512)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    import librosa
    import numba
    import soundfile as sf

    from dmv_fast.audio.decode import load_audio
    from dmv_fast.audio.features import _features, analyze
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.vectors.reference import reference_trajectory
    from dmv_fast.vectors.trajectory import (
        compute_vectors,
        draw_random,
        drive_signal,
        first_class_vector,
        jitter_factors,
        kernel_trajectory_columns,
    )

    fl = args.frame_length
    minutes = args.minutes
    with tempfile.TemporaryDirectory(prefix="dmv-bench-") as tmp:
        song = Path(tmp) / "song.wav"
        t_synth, audio = timed(synthesize, minutes)
        sf.write(song, audio, RATE, subtype="PCM_16")
        del audio

        # Warm-up on a short file: imports and librosa's lazy setup are not per-song costs.
        sf.write(Path(tmp) / "warm.wav", synthesize(0.1), RATE, subtype="PCM_16")
        t_first_use, _ = timed(analyze, Path(tmp) / "warm.wav", fl)

        decode, features_t, total = [], [], []
        for _ in range(args.repeats):
            t, y = timed(load_audio, song)
            decode.append(t)
            t, features = timed(_features, y, fl)
            features_t.append(t)
            t, _ = timed(analyze, song, fl)
            total.append(t)
        # Where the feature time goes.
        t_mel, _ = timed(librosa.feature.melspectrogram, y=y, sr=22050, n_mels=128, fmax=8000,
                         hop_length=fl)  # fmt: skip
        t_chroma, _ = timed(librosa.feature.chroma_cqt, y=y, sr=22050, hop_length=fl)

    n = features.n_frames
    options = RenderOptions(song=str(song), frame_length=fl)
    draws = draw_random(1, n)
    classes = draws.classes
    traj_args = (
        drive_signal(features),
        features.chroma,
        features.chromasort,
        classes,
        first_class_vector(features.chroma, features.chromasort, classes),
        options.truncation * draws.unit_noise,
        jitter_factors(draws.jitter_uniform, options.jitter),
    )
    traj_kw = dict(tempo_scale=options.tempo_scale, pitch_scale=options.pitch_scale,
                   truncation=options.truncation, depth=options.depth,
                   smooth_frames=options.smooth_frames)  # fmt: skip
    t_compile, _ = timed(kernel_trajectory_columns, *traj_args, **traj_kw)
    kernel_runs = []
    for _ in range(max(5, args.repeats)):
        t, (k_noise, k_weights) = timed(kernel_trajectory_columns, *traj_args, **traj_kw)
        kernel_runs.append(t)
    vectors_runs = []
    for _ in range(args.repeats):
        t, vectors = timed(compute_vectors, features, options, seed=1)
        vectors_runs.append(t)
    t_reference, (r_noise, r_cv) = timed(reference_trajectory, *traj_args, **traj_kw)
    max_diff = max(
        float(np.abs(r_noise - k_noise).max()),
        float(np.abs(r_cv[:, list(classes)] - k_weights).max()),
        float(np.abs(vectors.class_vectors - r_cv).max()),
    )

    t_kernel = statistics.median(kernel_runs)
    t_vectors = statistics.median(vectors_runs)
    t_decode, t_features, t_total = min(decode), min(features_t), min(total)
    analysis = t_total + t_vectors
    result = {
        "song": {
            "minutes": minutes,
            "rate": RATE,
            "channels": 2,
            "format": "WAV PCM_16",
            "frames": n,
            "frame_length": fl,
        },  # fmt: skip
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "librosa": librosa.__version__,
            "numba": numba.__version__,
        },
        "seconds": {
            "synthesize_song": t_synth,
            "first_use_warmup": t_first_use,
            "decode": t_decode,
            "features": t_features,
            "features_melspectrogram": t_mel,
            "features_chroma_cqt": t_chroma,
            "decode_plus_features": t_total,
            "numba_compile_first_call": t_compile,
            "kernels": t_kernel,
            "compute_vectors": t_vectors,
            "reference_python_loop": t_reference,
            "analysis_total": analysis,
        },
        "runs": {
            "decode": decode,
            "features": features_t,
            "decode_plus_features": total,
            "kernels": kernel_runs,
            "compute_vectors": vectors_runs,
        },  # fmt: skip
        "ratios": {
            "reference_over_kernels": t_reference / t_kernel,
            "reference_over_compute_vectors": t_reference / t_vectors,
        },
        "analysis_seconds_per_audio_minute": analysis / minutes,
        "max_abs_diff_kernels_vs_reference": max_diff,
        "targets": {"kernels_speedup_min": 100, "analysis_seconds_per_minute_max": 1.0},
    }

    rows = [
        ("decode (soundfile + mono + soxr_hq resample)", t_decode),
        ("features (mel + gradient + chroma_cqt)", t_features),
        ("  of which melspectrogram", t_mel),
        ("  of which chroma_cqt", t_chroma),
        ("decode + features (analyze)", t_total),
        ("numba compile, first call (cold cache)", t_compile),
        ("trajectory kernels (numba)", t_kernel),
        ("compute_vectors (draws + kernels + [F,1000] float32)", t_vectors),
        ("reference: per-frame Python loop of NumPy ops", t_reference),
        ("whole analysis (analyze + compute_vectors)", analysis),
    ]
    md = [
        f"# Analysis benchmark: a {minutes:g}-minute song",
        "",
        f"{minutes:g} min synthesized chords + drums, 44100 Hz stereo WAV, frame_length {fl} "
        f"({n} frames). {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
        f"librosa {librosa.__version__}, numba {numba.__version__}, numpy {np.__version__}. "
        f"Best of {args.repeats} for decode/features, median for the kernels.",
        "",
        "| stage | seconds |",
        "| --- | ---: |",
        *[f"| {name} | {sec:.4f} |" for name, sec in rows],
        "",
        f"- kernels vs reference: **{t_reference / t_kernel:.0f}x** faster "
        f"(compute_vectors as a whole: {t_reference / t_vectors:.0f}x); "
        f"max |difference| {max_diff:.1e}.",
        f"- whole analysis: **{analysis / minutes:.3f} s per minute of audio** (target <= 1).",
        "",
        "Regenerate with `.venv/bin/python benchmarks/bench_analysis.py`.",
        "",
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'stage':<{width}}  seconds")
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:8.4f}")
    print(f"kernels vs reference: {t_reference / t_kernel:.0f}x; "
          f"analysis: {analysis / minutes:.3f} s per audio minute")  # fmt: skip
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "analysis.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "analysis.md").write_text("\n".join(md))
        print(f"wrote {RESULTS / 'analysis.json'} and {RESULTS / 'analysis.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
