"""int8 against fp32 on the CPU provider: frames/s side by side, and the pictures.

For each resolution the fp32 graph and its int8 graph (``--precision int8``, quantized and
cached like any graph) run the same render vectors at the same batch, repetitions alternating
between the two in one process so that machine noise hits both alike. Quality: the final uint8
frames of the int8 graph against the fp32 graph's on fresh render vectors (another piece,
other classes and draws than the calibration's) at truncations 0.2, 0.5 and 1.0: PSNR, SSIM
and the worst frame. Every result carries this machine's fp32 peak (NumPy sgemm, measured in
the same run) and the share of it each graph reaches.

``--winograd`` also times the fp32 graph in the form the plan gives AVX-512 CPUs (Winograd
convolutions, :mod:`dmv_fast_export.winograd`) in the same alternating loop: int8 graphs are
quantized from the direct fp32 graph, so this says which of the two is faster here.
``--in-range`` also calibrates and checks the 128-px graph on vectors inside the range the
random weights were made for (see :func:`in_range_vectors`). ``--groups`` also quantizes the
128-px graph with each layer group kept in float32 alone (none, first linear, attention, last
conv, all three) to show what each buys. ``--recipes`` quantizes the 128-px graph by each
recipe of ``int8_recipes.RECIPES`` (QDQ or QOperator, which op types, u8 or s8 activations, extra
options) and runs them all against fp32 in one alternating loop.

    python benchmarks/bench_int8.py [--resolutions 128,256] [--batches 1,4] [--reps 5]
        [--threads 2] [--frames 8] [--groups] [--recipes] [--in-range] [--winograd]
        [--weights random|pretrained]
        [--out benchmarks/results]
        [--from-json benchmarks/results/int8_cpu.json]

Writes ``int8_cpu.json`` and ``int8_cpu.md``. Weights: ``--weights random`` (the full
architecture, converged random weights; the default), ``pretrained`` (``biggan-deep-<R>``,
cached or downloaded) or a folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from dmv_fast_export import feeds as feeds_module
from dmv_fast_export import quality, quantize
from int8_recipes import recipe_lines, recipe_study

from dmv_fast.bench.machine import GRAPH_GMAC, OtherLoad, Sgemm, cpu_summary, peak_fraction
from dmv_fast.model import cache as models
from dmv_fast.model.runtime import Generator

TRUNCATION = 1.0  # the speed does not depend on it
QUALITY_TRUNCATIONS = (0.2, 0.5, 1.0)
PSNR_BAR_DB = 35.0
#: A pixel at 0 or 255 after the stretch: the image's own minimum or maximum.
EXTREME = (1, 254)


def int8_generator(
    resolution: int, batch: int, weights: str = "random", threads: int | None = None
) -> Generator:
    """The ``ort-cpu-int8`` backend: the int8 graph (quantized and cached on first use) on the
    CPU provider."""
    path = models.ensure_onnx(resolution, weights, "int8", batch)
    return Generator(path, backend="cpu", threads=threads)


def extreme_share(frames: np.ndarray) -> float:
    """Share of pixels at the ends of the stretched range (saturated tanh shows up here)."""
    return float(np.mean((frames <= EXTREME[0]) | (frames >= EXTREME[1])))


def quality_figures(int8: Path, fp32: Path, frames: int, threads: int) -> dict[str, Any]:
    per_t = quality.compare(int8, fp32, QUALITY_TRUNCATIONS, frames=frames, threads=threads)
    # How saturated the fp32 pictures are (random weights drive tanh to +-1 on render vectors).
    session = quality.cpu_session(fp32, threads)
    batch = session.get_inputs()[0].shape[0]
    for k, truncation in enumerate(QUALITY_TRUNCATIONS):
        noise, classes = feeds_module.render_vectors(
            truncation, frames, seed=101 + k, piece=quality.CHECK_PIECE
        )
        out = np.concatenate(
            [
                session.run(["frames"], f)[0]
                for f in feeds_module.feeds(noise, classes, truncation, batch)
            ]
        )[:frames]
        per_t[str(truncation)]["fp32_extreme_pixels"] = round(extreme_share(out), 3)
    return per_t


def speed(
    paths: dict[str, Path], batch: int, threads: int, reps: int, max_seconds: float
) -> dict[str, Any]:
    """Alternating repetitions of each graph on the same vectors; best and median frames/s."""
    gens = {name: Generator(p, backend="cpu", threads=threads) for name, p in paths.items()}
    noise, classes = feeds_module.render_vectors(
        TRUNCATION, batch, seed=7, piece=quality.CHECK_PIECE
    )
    for gen in gens.values():
        gen.generate(noise, classes, TRUNCATION)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in gens}
    foreign: list[float] = []
    sgemm, peaks = Sgemm(), []
    deadline = time.monotonic() + max_seconds
    while min(len(t) for t in times.values()) < reps and time.monotonic() < deadline:
        for name, gen in gens.items():
            with OtherLoad() as load:
                t0 = time.perf_counter()
                gen.generate(noise, classes, TRUNCATION)
                times[name].append(time.perf_counter() - t0)
            if load.cores is not None:
                foreign.append(load.cores)
        peaks.append(sgemm.gflops())  # the fp32 peak, under the same conditions
    out: dict[str, Any] = {"reps": min(len(t) for t in times.values())}
    out["sgemm_gflops_best"] = round(max(peaks), 1)
    out["sgemm_gflops_median"] = round(statistics.median(peaks), 1)
    for name, t in times.items():
        out[name] = {
            "fps_best": round(batch / min(t), 3),
            "fps_median": round(batch / statistics.median(t), 3),
            "seconds": [round(x, 4) for x in t],
        }
    for name, t in times.items():
        if name != "fp32":  # each graph against fp32: "ratio_best" is the int8 graph's
            suffix = "" if name == "int8" else f"_{name}"
            out[f"ratio_best{suffix}"] = round(min(times["fp32"]) / min(t), 3)
            out[f"ratio_median{suffix}"] = round(
                statistics.median(times["fp32"]) / statistics.median(t), 3
            )
    out["foreign_cpu_cores_median"] = round(statistics.median(foreign), 2) if foreign else None
    return out


def group_study(fp32: Path, batch: int, threads: int, frames: int, reps: int) -> list[dict]:
    """Quality and speed of the 128-px graph with each layer group kept in float32."""
    variants = {
        "none": (),
        **{g: (g,) for g in quantize.GROUPS},
        "all three": quantize.DEFAULT_KEEP,
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="dmv-int8-groups-") as tmp:
        ranges = Path(tmp) / "ranges.json"
        quantize.calibrate(fp32, ranges)
        paths = {"fp32": fp32}
        for name, keep in variants.items():
            path = Path(tmp) / f"{name.replace(' ', '_')}.onnx"
            quantize.quantize(fp32, path, keep=keep, ranges_path=ranges)
            paths[name] = path
        for name in variants:
            q = quality.compare(
                paths[name], fp32, QUALITY_TRUNCATIONS, frames=frames, threads=threads
            )
            s = speed({"fp32": fp32, "int8": paths[name]}, batch, threads, reps, 120)
            rows.append({
                "fp32_groups": name,
                "psnr_db": {t: v["psnr_db"] for t, v in q.items()},
                "ssim": {t: v["ssim"] for t, v in q.items()},
                "ratio_best": s["ratio_best"],
                "ratio_median": s["ratio_median"],
            })  # fmt: skip
            logging.info("group study: %s %s", name, rows[-1])
    return rows


def in_range_vectors(truncation: float, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors inside the range the random weights' BatchNorm statistics were set for:
    |z| <= 2T and a mixture of 4 classes summing to 1 (render vectors mix up to 12 classes at
    full weight, which drives the random layers far beyond their statistics)."""
    rng = np.random.default_rng(seed)
    noise = (np.clip(rng.standard_normal((frames, 128)), -2, 2) * truncation).astype(np.float32)
    classes = np.zeros((frames, 1000), np.float32)
    for i in range(frames):
        classes[i, rng.choice(1000, size=4, replace=False)] = rng.dirichlet(np.ones(4))
    return noise, classes


def in_range_study(fp32: Path, frames: int, threads: int) -> dict[str, Any]:
    """The same recipe calibrated and checked on :func:`in_range_vectors`."""
    batch = quality.cpu_session(fp32, threads).get_inputs()[0].shape[0]
    batches = [
        feed
        for k, t in enumerate(feeds_module.CALIBRATION_TRUNCATIONS)
        for feed in feeds_module.feeds(
            *in_range_vectors(t, feeds_module.CALIBRATION_FRAMES, 500 + k), t, batch
        )
    ]
    with tempfile.TemporaryDirectory(prefix="dmv-int8-range-") as tmp:
        ranges = quantize.calibrate(fp32, Path(tmp) / "ranges.json", batches)
        int8 = quantize.quantize(fp32, Path(tmp) / "int8.onnx", ranges_path=ranges)
        return quality.compare(
            int8,
            fp32,
            QUALITY_TRUNCATIONS,
            frames=frames,
            threads=threads,
            vectors=in_range_vectors,
        )


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    sg = m["sgemm"]
    lines = [
        "# int8 against fp32 on the CPU provider",
        "",
        f"{m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_flags']) or 'no AVX2'}), "
        f"{result['threads']} ORT threads, `--weights {result['weights']}`, one run ({result['when']}). "
        f"fp32 peak of this machine in the same run: NumPy sgemm {sg['gflops']} GFLOP/s "
        f"(best of {sg['repeats']}, n={sg['n']}, {sg.get('blas', 'BLAS unknown')}, "
        f"OPENBLAS_CORETYPE={sg['openblas_coretype'] or '(not set)'}; "
        f"{result['sgemm_end_gflops']} GFLOP/s at the end of the run). "
        "Repetitions alternate fp32 and int8; ratios are the figures to quote.",
        "",
        "## Speed",
        "",
        "| resolution | batch | fp32 frames/s | int8 frames/s | int8/fp32 (best) | (median) "
        "| sgemm GFLOP/s (best, median) | fp32 GFLOP/s (of sgemm) | int8 GOP/s (of sgemm) "
        "| other load (cores) | reps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["speed"]:
        f32, i8 = row["fp32"], row["int8"]
        lines.append(
            f"| {row['resolution']} | {row['batch']} | {f32['fps_best']:.2f} | {i8['fps_best']:.2f} "
            f"| {row['ratio_best']:.2f}x | {row['ratio_median']:.2f}x "
            f"| {row['sgemm_gflops_best']}, {row['sgemm_gflops_median']} "
            f"| {f32['gflops']} ({f32['fraction_of_sgemm']:.0%}) "
            f"| {i8['gflops']} ({i8['fraction_of_sgemm']:.0%}) "
            f"| {row['foreign_cpu_cores_median']} | {row['reps']} |"
        )
    wino = [row for row in result["speed"] if "fp32-winograd" in row]
    if wino:
        lines += [
            "",
            "The fp32 graph in its Winograd form (the plan's on AVX-512 CPUs; int8 is quantized "
            "from the direct graph) in the same alternating loop:",
            "",
            "| resolution | batch | fp32 Winograd frames/s | Winograd/fp32 (best) | (median) "
            "| int8/Winograd (best) |",
            "|---|---|---|---|---|---|",
        ]
        for row in wino:
            w = row["fp32-winograd"]
            lines.append(
                f"| {row['resolution']} | {row['batch']} | {w['fps_best']:.2f} "
                f"| {row['ratio_best_fp32-winograd']:.2f}x | {row['ratio_median_fp32-winograd']:.2f}x "
                f"| {row['int8']['fps_best'] / w['fps_best']:.2f}x |"
            )
    lines += [
        "",
        "Other processes used the median number of cores in the 'other load' column during "
        "the repetitions (the machine is shared): absolute frames/s sit far below a quiet "
        "machine's, and only the ratios of alternating repetitions are worth quoting. Without "
        "AVX-512 VNNI or AVX-VNNI (see the CPU flags above) ONNX Runtime's integer kernels use "
        "AVX2 (8-bit products summed in pairs into 16 bits).",
        "",
        "GFLOP/s = frames/s x GMAC per frame (benchmarks/results/macs.md) x 2; the int8 column "
        "counts the same multiply-adds as integer operations, against the same fp32 peak. The "
        "sgemm (n=2048) runs once per repetition pair, between the graphs, so the peak is taken "
        "under the same load as the frames/s it normalises; the run-level figure above is "
        "measured alone at the start and at the end.",
        "",
        "## Quality: int8 frames against fp32 frames (fresh render vectors)",
        "",
        "| resolution | truncation | PSNR (dB) | SSIM | worst frame PSNR | worst frame SSIM "
        "| fp32 pixels at 0/255 |",
        "|---|---|---|---|---|---|---|",
    ]
    for res, per_t in result["quality"].items():
        for t, q in per_t.items():
            lines.append(
                f"| {res} | {t} | {q['psnr_db']:.1f} | {q['ssim']:.3f} | {q['worst_psnr_db']:.1f} "
                f"(frame {q['worst_frame']}) | {q['worst_ssim']:.3f} | {q['fp32_extreme_pixels']:.0%} |"
            )
    if result.get("in_range"):
        lines += [
            "",
            "Calibrated and checked on vectors inside the range the random weights' BatchNorm "
            "statistics were set for (|z| <= 2T, 4 classes summing to 1), 128 px:",
            "",
            "| truncation | PSNR (dB) | SSIM | worst frame PSNR | worst frame SSIM |",
            "|---|---|---|---|---|",
        ]
        for t, q in result["in_range"].items():
            lines.append(
                f"| {t} | {q['psnr_db']:.1f} | {q['ssim']:.3f} | {q['worst_psnr_db']:.1f} "
                f"| {q['worst_ssim']:.3f} |"
            )
    if result.get("groups"):
        lines += [
            "",
            f"## Layers kept in float32 (128 px, batch {result['groups_batch']})",
            "",
            "Quality columns: as above (fresh render vectors). Speed columns: a few alternating "
            "repetitions each under the same shared load, so only differences well beyond the "
            "spread of the speed table above mean anything.",
            "",
            "| kept in fp32 | PSNR 0.2 / 0.5 / 1.0 (dB) | SSIM 0.2 / 0.5 / 1.0 | int8/fp32 speed (best) | (median) |",
            "|---|---|---|---|---|",
        ]
        for row in result["groups"]:
            p, s = row["psnr_db"], row["ssim"]
            lines.append(
                f"| {row['fp32_groups']} | {' / '.join(f'{v:.1f}' for v in p.values())} "
                f"| {' / '.join(f'{v:.3f}' for v in s.values())} | {row['ratio_best']:.2f}x "
                f"| {row['ratio_median']:.2f}x |"
            )
    lines += recipe_lines(result)
    lines += ["", "## Decision", "", result["decision"], ""]
    return "\n".join(lines)


def speed_verdict(result: dict[str, Any]) -> str:
    """The 2x goal at 128 px against the measured ratios (medians of alternating repetitions)."""
    rows = [r for r in result["speed"] if r["resolution"] == 128]
    if not rows:
        return ""
    text = "Speed at 128 px: int8/fp32 " + ", ".join(
        f"{r['ratio_median']:.2f}x at batch {r['batch']}" for r in rows
    )
    text += " (medians; goal 2x"
    recipes = [r for r in result.get("recipes", []) if "ratio_median" in r]
    if recipes:
        base = recipes[0]
        best = max(recipes, key=lambda r: r["ratio_median"])
        loss = min(base["psnr_db"].values()) - min(best["psnr_db"].values())
        text += (
            f"). The fastest recipe, {best['description']}, reaches {best['ratio_median']:.2f}x "
            f"and loses {loss:.1f} dB at the worst truncation, so the default stays."
        )
    else:
        text += ")."
    return (
        text + " Layers kept in float32 for quality (attention, the conditioning linears, "
        "conv_to_rgb) and the float BatchNorm, residual and up-sampling ops between the integer "
        "convolutions do not speed up at all, which bounds the whole graph well under 2x even "
        "with integer convolutions twice as fast as the float ones."
    )


def decide(result: dict[str, Any]) -> str:
    worst = min(q["psnr_db"] for per_t in result["quality"].values() for q in per_t.values())
    if worst >= PSNR_BAR_DB:
        return (
            f"int8 is within {PSNR_BAR_DB:.0f} dB of fp32 at every truncation (worst "
            f"{worst:.1f} dB): `auto` may pick it on the CPU."
        )
    text = (
        f"int8 is under the {PSNR_BAR_DB:.0f} dB bar (worst {worst:.1f} dB against fp32 on "
        "render vectors): `auto` stays fp32 on the CPU and `--precision int8` is an explicit "
        "draft choice."
    )
    if result.get("in_range"):
        low = min(q["psnr_db"] for q in result["in_range"].values())
        text += (
            f" On vectors inside the range the {result['weights']} weights were made for, the "
            f"same recipe is {low:.1f} dB or better: the gap is how far render vectors (up to 12 "
            "classes at full weight) push these weights beyond their BatchNorm statistics "
            "(outsized activations, and at truncation 1 saturated pictures: the last column of "
            "the quality table), so measure again on pretrained weights (`--weights pretrained`) "
            "before changing `auto`."
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", default="128,256")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8, help="frames per truncation (quality)")
    parser.add_argument("--max-seconds", type=float, default=240, help="per speed row")
    parser.add_argument("--groups", action="store_true", help="layer-group study at 128 px")
    parser.add_argument("--recipes", action="store_true", help="recipe study at 128 px")
    parser.add_argument(
        "--weights", default="random", help="'random' (default), 'pretrained' or a folder"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--in-range", action="store_true", help="128 px quality on in-range vectors too"
    )
    parser.add_argument("--winograd", action="store_true", help="also time the fp32 Winograd graph")
    parser.add_argument(
        "--from-json",
        default=None,
        help="recompute the derived figures of a results file (and add --in-range to it)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        for row in result["speed"]:
            add_fractions(row)
        if args.in_range:
            fp32 = models.ensure_onnx(128, result["weights"], "fp32", 4)
            result["in_range"] = in_range_study(fp32, args.frames, args.threads)
        write(result, Path(args.out))
        return 0
    resolutions = [int(r) for r in args.resolutions.split(",")]

    def weights(res: int) -> str:
        """``--weights``; ``pretrained`` means ``biggan-deep-<res>`` (cached or downloaded)."""
        return f"biggan-deep-{res}" if args.weights == "pretrained" else args.weights

    batches = [int(b) for b in args.batches.split(",")]

    machine = cpu_summary()
    logging.info("machine: %s", machine)
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "threads": args.threads,
        "weights": args.weights,
        "onnxruntime": ort.__version__,
        "machine": machine,
        "fp32_groups": list(quantize.DEFAULT_KEEP),
        "speed": [],
        "quality": {},
    }
    for res in resolutions:
        paths = {}
        for batch in batches:
            t0 = time.perf_counter()
            fp32 = models.ensure_onnx(res, weights(res), "fp32", batch)
            int8 = models.ensure_onnx(res, weights(res), "int8", batch)
            paths[batch] = {"fp32": fp32, "int8": int8}
            if args.winograd:
                paths[batch]["fp32-winograd"] = models.ensure_onnx(
                    res, weights(res), "fp32", batch, conv_form="winograd"
                )
            logging.info(
                "%d px batch %d: graphs ready in %.0f s", res, batch, time.perf_counter() - t0
            )
        fp32, int8 = paths[max(batches)]["fp32"], paths[max(batches)]["int8"]
        result["quality"][str(res)] = quality_figures(int8, fp32, args.frames, args.threads)
        logging.info("%d px quality: %s", res, result["quality"][str(res)])
        for batch in batches:
            row = speed(paths[batch], batch, args.threads, args.reps, args.max_seconds)
            row = {"resolution": res, "batch": batch, **row}
            add_fractions(row)
            result["speed"].append(row)
            logging.info(
                "%d px batch %d: %s", res, batch, {k: v for k, v in row.items() if k != "fp32"}
            )
    if args.groups:
        batch = max(batches)
        result["groups_batch"] = batch
        fp32 = models.ensure_onnx(128, weights(128), "fp32", batch)
        result["groups"] = group_study(
            fp32, batch, args.threads, args.frames, max(2, args.reps // 2)
        )
    if args.recipes:
        batch = max(batches)
        result["groups_batch"] = batch
        fp32 = models.ensure_onnx(128, weights(128), "fp32", batch)
        result["recipes"] = recipe_study(fp32, batch, args.threads, args.frames, args.reps, speed)
    if args.in_range:
        fp32 = models.ensure_onnx(128, weights(128), "fp32", max(batches))
        result["in_range"] = in_range_study(fp32, args.frames, args.threads)
    result["sgemm_end_gflops"] = cpu_summary()["sgemm"]["gflops"]
    write(result, Path(args.out))
    return 0


def add_fractions(row: dict[str, Any]) -> None:
    """GFLOP/s of each graph and its share of the sgemm peak taken in the same repetitions."""
    for name in ("fp32", "int8", "fp32-winograd"):
        if name not in row:
            continue
        gmac = GRAPH_GMAC[row["resolution"]]  # direct-convolution work, for every graph
        fps, peak = row[name]["fps_best"], row["sgemm_gflops_best"]
        row[name]["gflops"] = round(2 * gmac * fps, 1)
        row[name]["fraction_of_sgemm"] = peak_fraction(fps, gmac, peak)


def write(result: dict[str, Any], out: Path) -> None:
    result["decision"] = f"{decide(result)}\n\n{speed_verdict(result)}".strip()
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "int8_cpu.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    sys.exit(main())
