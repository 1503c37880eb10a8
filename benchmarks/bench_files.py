"""What the file guarantees cost: fsynced atomic frame writes, verified resumes, the song hash.

Three comparisons, each measured side by side in one run, the variants alternating:

- ``-d`` frame writes: a PNG written through :func:`dmv_fast.files.atomic_write` (temporary
  name and rename, with and without fsync) against a plain ``Image.save`` to the final name.
- ``-d`` resume: :meth:`FrameStore.complete_frames` verifying every PNG against listing the
  names only (what it did before).
- the song's identity: SHA-256 of the file's bytes against decoding and analysing the song
  (the work a render does anyway before it).

    .venv/bin/python benchmarks/bench_files.py [--frames 200] [--side 512] [--rounds 5]

Writes benchmarks/results/files.json and files.md and prints the table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from dmv_fast.audio.features import analyze
from dmv_fast.files import atomic_write
from dmv_fast.render.folders import FrameStore
from dmv_fast.render.record import song_sha256

RESULTS = Path(__file__).resolve().parent / "results"


def _frames(n: int, side: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    # Smooth-ish content like a generator's (pure noise would not compress at all).
    out = []
    for k in range(n):
        img = np.roll(base, k, axis=1)
        img = ((img.astype(np.uint16) + np.arange(side)[None, :, None]) // 2).astype(np.uint8)
        out.append(Image.fromarray(img, "RGB"))
    return out


def _write_plain(folder: Path, images: list[Image.Image]) -> float:
    t0 = time.perf_counter()
    for i, im in enumerate(images):
        im.save(folder / f"{i:06d}.png", format="PNG", compress_level=1)
    return time.perf_counter() - t0


def _write_atomic(folder: Path, images: list[Image.Image], sync: bool) -> float:
    t0 = time.perf_counter()
    for i, im in enumerate(images):
        atomic_write(
            folder / f"{i:06d}.png",
            lambda f, im=im: im.save(f, "PNG", compress_level=1),
            sync=sync,
        )
    return time.perf_counter() - t0


def _resume_names(store: FrameStore) -> float:
    t0 = time.perf_counter()
    names = {p.name for p in store.folder.iterdir()}
    n = 0
    while store.path(n).name in names:
        n += 1
    return time.perf_counter() - t0


def _resume_verified(store: FrameStore) -> float:
    t0 = time.perf_counter()
    store.complete_frames()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--song-seconds", type=float, default=180.0)
    a = parser.parse_args()

    images = _frames(a.frames, a.side)
    writers = ("plain", "atomic", "atomic+fsync")
    times: dict[str, list[float]] = {k: [] for k in (*writers, "names", "verified")}
    song_times: dict[str, list[float]] = {"sha256": [], "analysis": []}
    with tempfile.TemporaryDirectory(prefix="dmv-bench-files-", dir=".") as tmp:
        root = Path(tmp)
        song = root / "song.wav"
        t = np.arange(int(a.song_seconds * 44100)) / 44100
        sf.write(
            song, np.stack([np.sin(2 * np.pi * 220 * t)] * 2, 1).astype(np.float32) * 0.3, 44100
        )
        for r in range(a.rounds):
            for variant in writers if r % 2 == 0 else writers[::-1]:
                folder = root / f"{variant}-{r}"
                folder.mkdir()
                if variant == "plain":
                    times[variant].append(_write_plain(folder, images))
                else:
                    sync = variant == "atomic+fsync"
                    times[variant].append(_write_atomic(folder, images, sync))
            store = FrameStore(root / f"atomic-{r}", {"frames": a.frames})
            for variant in ("names", "verified") if r % 2 == 0 else ("verified", "names"):
                fn = _resume_names if variant == "names" else _resume_verified
                times[variant].append(fn(store))
            for variant in ("sha256", "analysis") if r % 2 == 0 else ("analysis", "sha256"):
                t0 = time.perf_counter()
                if variant == "sha256":
                    song_sha256(song)
                else:
                    analyze(song, 512)
                song_times[variant].append(time.perf_counter() - t0)
        song_mb = song.stat().st_size / 1e6

    med = {k: statistics.median(v) for k, v in {**times, **song_times}.items()}
    rows = [
        ("-d frame write, ms/frame", "plain save", med["plain"] / a.frames * 1e3,
         "atomic_write, no fsync (what -d does)", med["atomic"] / a.frames * 1e3),
        ("-d frame write, ms/frame", "plain save", med["plain"] / a.frames * 1e3,
         "atomic_write with fsync", med["atomic+fsync"] / a.frames * 1e3),
        ("-d resume scan, ms/frame", "names only", med["names"] / a.frames * 1e3,
         "verify every PNG", med["verified"] / a.frames * 1e3),
        (f"song identity, s ({song_mb:.0f} MB WAV)", "decode + analysis", med["analysis"],
         "SHA-256 of the file", med["sha256"]),
    ]  # fmt: skip
    result = {
        "settings": vars(a),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": sys.version},
        "medians_s": med,
        "rows": [
            {"what": w, "before": b, "before_value": bv, "after": af, "after_value": av}
            for w, b, bv, af, av in rows
        ],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "files.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# File guarantees: cost ({a.frames} frames of {a.side} px, {a.rounds} rounds,"
        " medians, variants alternating)",
        "",
        "| measure | baseline | value | with the guarantee | value | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for w, b, bv, af, av in rows:
        lines.append(f"| {w} | {b} | {bv:.3g} | {af} | {av:.3g} | {av / bv:.2f}x |")
    table = "\n".join(lines) + "\n"
    (RESULTS / "files.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
