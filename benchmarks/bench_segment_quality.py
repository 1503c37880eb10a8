"""A segmented render against a one-process render of the same song and settings: how far
apart the two encodes are at the default crf, and how far each is from the lossless frames.

The model is BigGAN-deep-128's layout at 4 channels wide with random weights (the tests'
narrow model: seconds per render on a CPU), the song a synthetic 12 s piece. Four renders:
one-process at ``--crf 0`` (the generator's own frames), one-process at crf 20, segmented at
crf 20 with one and with two workers (250-frame segments). Every frame is decoded to RGB and
compared (PSNR over the whole video, and frame by frame).

    python benchmarks/bench_segment_quality.py [--out benchmarks/results] [--seconds 12]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import av
import numpy as np
import soundfile as sf


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(float)


def _psnr(a: np.ndarray, b: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    mse = ((a - b) ** 2).mean(axis=axis)
    return 10 * np.log10(255**2 / np.maximum(mse, 1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--frame-length", type=int, default=512)
    opts = parser.parse_args()

    from dmv_fast_export.weights import random_model, save_pretrained, standard_config

    from dmv_fast.render.api import render
    from dmv_fast.render.segmented import render_segmented
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.settings.spec import ModelSpec

    with tempfile.TemporaryDirectory(prefix="dmv-segment-quality-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("DMV_FAST_CACHE", str(work / "cache"))
        config = standard_config(128)
        config.channel_width = 4
        save_pretrained(random_model(config, seed=5), work / "weights")
        rate = 22050
        t = np.arange(int(opts.seconds * rate)) / rate
        tone = np.sin(2 * np.pi * 220 * t * (1 + 0.5 * np.sin(t))) * (1 + np.sin(3 * np.pi * t))
        noise = 0.05 * np.random.default_rng(0).standard_normal(len(t))
        sf.write(work / "song.wav", (0.15 * tone + noise).astype(np.float32), rate)
        spec = ModelSpec(resolution=128, weights=str(work / "weights"), batch_size=4)

        def options(name: str, crf: int = 20) -> RenderOptions:
            return RenderOptions(
                song=str(work / "song.wav"),
                output_file=str(work / name),
                frame_length=opts.frame_length,
                seed=3,
                encoder="x264",
                crf=crf,
            )

        render(options("exact.mp4", crf=0), spec)
        render(options("one.mp4"), spec)
        render_segmented(options("seg1.mp4"), spec, workers=1)
        render_segmented(options("seg2.mp4"), spec, workers=2)
        names = ("exact", "one", "seg1", "seg2")
        exact, one, seg1, seg2 = (_frames(work / f"{n}.mp4") for n in names)
        per_frame = _psnr(one, seg2, axis=(1, 2, 3))
        result = {
            "frames": len(exact),
            "segments": -(-len(exact) // 250),
            "seconds": opts.seconds,
            "frame_length": opts.frame_length,
            "one_vs_segmented_db": round(float(_psnr(one, seg2)), 2),
            "one_vs_segmented_per_frame_db": [
                round(float(per_frame.min()), 2),
                round(float(per_frame.max()), 2),
            ],
            "one_vs_lossless_db": round(float(_psnr(one, exact)), 2),
            "segmented_vs_lossless_db": round(float(_psnr(seg2, exact)), 2),
            "segmented_1_and_2_workers_equal": bool(np.array_equal(seg1, seg2)),
            "bytes": {n: os.path.getsize(work / f"{n}.mp4") for n in names},
        }
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "segment_quality_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# A segmented render against a one-process render (crf 20)",
        "",
        f"`python benchmarks/bench_segment_quality.py`: narrow BigGAN-deep-128 (random weights),"
        f" {opts.seconds:g} s song, frame length {opts.frame_length}: {result['frames']} frames,"
        f" {result['segments']} segments of 250.",
        "",
        "| compared | PSNR, dB |",
        "|---|---|",
        f"| one-process vs segmented | {result['one_vs_segmented_db']} "
        f"(frames {result['one_vs_segmented_per_frame_db'][0]}"
        f"-{result['one_vs_segmented_per_frame_db'][1]}) |",
        f"| one-process vs lossless (crf 0) | {result['one_vs_lossless_db']} |",
        f"| segmented vs lossless (crf 0) | {result['segmented_vs_lossless_db']} |",
        "",
        f"Segmented with 1 and 2 workers decode to the same frames:"
        f" {result['segmented_1_and_2_workers_equal']}.",
        "",
    ]
    (opts.out / "segment_quality_cpu.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
