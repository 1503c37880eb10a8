"""Frames that are not square: what they cost and how the wide canvas looks, side by side.

1. Cost (``--resolutions``): the graphs ``dmv-fast render --aspect 16:9`` runs on the CPU
   (``--fill wide``, ``crop`` and ``pad``) and the square one, random weights, batch 4,
   each exported through the graph cache (so checked against PyTorch), timed in one process
   with repetitions alternating between them; GMAC per frame counted off each graph.
2. Looks (``--looks``): frames of render vectors (synthesized music through the trajectory
   kernels) through the square graph, the wide canvas as shipped, three other ways of making
   the wide first map (a hard cut between tiles instead of feathering, every tile the frame's
   own noise, unrelated noise), crop, pad, and the simple ways made from the square frames
   (stretched, mirrored, tiled). Scored by :mod:`dmv_fast.bench.seams`: gradient energy at
   the joins against elsewhere and against the same place in the generator's cell grid,
   repeat, mirror and stretch scores beside their nulls (two different frames).
3. Contact sheets (``--sheets``): wide 16:9 frames beside the square frames from the same
   vectors, and the three fills and 9:16, as PNGs under ``docs/``.

    python benchmarks/bench_aspect.py [--resolutions 128,256] [--looks 128,256] [--frames 24]
        [--reps 5] [--threads 2] [--sheets docs] [--out benchmarks/results]

Writes ``aspect_cpu.json`` and ``aspect_cpu.md``. On a shared 2-core machine quote ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from dmv_fast_export.canvas import make_canvas
from dmv_fast_export.feeds import feeds, render_vectors
from dmv_fast_export.fold import fold
from dmv_fast_export.graph import build_graph
from dmv_fast_export.weights import load_model
from PIL import Image, ImageDraw

from dmv_fast.bench import seams
from dmv_fast.bench.machine import OtherLoad, cpu_summary, environment
from dmv_fast.bench.measure import graph_gmac
from dmv_fast.model import weights as model_weights
from dmv_fast.model.cache import ensure_graph
from dmv_fast.model.runtime import Generator
from dmv_fast.settings.plan import resolve
from dmv_fast.settings.shape import shape_of
from dmv_fast.settings.spec import ModelSpec

TRUNCATION = 0.6
BATCH = 4
ASPECT = "16:9"
#: The graphs timed, as ModelSpec frame settings.
COST_VARIANTS: dict[str, dict[str, Any]] = {
    "square": {},
    "wide 16:9": {"aspect": ASPECT, "fill": "wide"},
    "crop 16:9": {"aspect": ASPECT, "fill": "crop"},
    "pad 16:9": {"aspect": ASPECT, "fill": "pad"},
}


# 1. Cost ----------------------------------------------------------------------------------


def cost(resolution: int, reps: int, threads: int) -> list[dict[str, Any]]:
    """Frames/s of each variant's graph, repetitions alternating; GMAC per frame."""
    gens, gmac = {}, {}
    for name, shape in COST_VARIANTS.items():
        spec = ModelSpec(resolution, "random", "cpu", "fp32", BATCH, **shape)
        plan = resolve(spec, encoder="x264", workers=1)
        path = ensure_graph(plan)
        gens[name] = Generator(path, plan=plan, threads=threads)
        gmac[name] = graph_gmac(path)
    noise, classes = render_vectors(TRUNCATION, BATCH, seed=resolution)
    for gen in gens.values():
        gen.generate(noise, classes, TRUNCATION)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in gens}
    cpu: dict[str, list[float]] = {name: [] for name in gens}
    other: list[float] = []
    for _ in range(reps):
        for name, gen in gens.items():
            with OtherLoad() as load:
                t0, c0 = time.perf_counter(), time.process_time()
                gen.generate(noise, classes, TRUNCATION)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            if load.cores is not None:
                other.append(load.cores)
    square, square_best = statistics.median(times["square"]), min(times["square"])
    square_cpu = statistics.median(cpu["square"])
    rows = []
    for name, gen in gens.items():
        median = statistics.median(times[name])
        rows.append(
            {
                "resolution": resolution,
                "variant": name,
                "frame_size": list(gen.frame_size),
                "gmac_per_frame": gmac[name],
                "frames_per_s_median": round(BATCH / median, 3),
                "frames_per_s_best": round(BATCH / min(times[name]), 3),
                "time_vs_square": round(median / square, 3),
                "time_vs_square_best": round(min(times[name]) / square_best, 3),
                # CPU seconds of this process (all its threads): less swayed by other jobs.
                "cpu_s_per_frame_median": round(statistics.median(cpu[name]) / BATCH, 4),
                "cpu_vs_square": round(statistics.median(cpu[name]) / square_cpu, 3),
                "gmac_vs_square": round(gmac[name] / gmac["square"], 3),
                "seconds_per_batch": [round(t, 4) for t in times[name]],
            }
        )
    rows[0]["other_cores_busy_median"] = round(statistics.median(other), 2) if other else None
    return rows


# 2. Looks ---------------------------------------------------------------------------------


def _frames(model: Any, noise: np.ndarray, classes: np.ndarray, threads: int) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    out = [session.run(None, f)[0] for f in feeds(noise, classes, TRUNCATION, BATCH)]
    return np.concatenate(out)[: len(noise)]


def render_looks(resolution: int, n_frames: int, threads: int) -> dict[str, np.ndarray]:
    """Frames of every way of filling a 16:9 frame, from the same render vectors."""
    model, _ = load_model(model_weights.resolve_weights("random", resolution))
    folded = fold(model)
    noise, classes = render_vectors(TRUNCATION, n_frames, seed=3, seconds=20.0)
    wide = ModelSpec(resolution, aspect=ASPECT).frame_size
    tall = wide[::-1]
    cells = shape_of(resolution, wide, "wide").first_map
    graphs = {
        "square": {},
        "wide": {"frame": wide},
        "wide, hard cut": {"frame": wide, "canvas": make_canvas(cells, blend="hard")},
        "wide, same noise": {"frame": wide, "canvas": make_canvas(cells, noise="same")},
        "wide, unrelated noise": {"frame": wide, "canvas": make_canvas(cells, noise="independent")},
        "crop": {"frame": wide, "fill": "crop"},
        "pad": {"frame": wide, "fill": "pad"},
        "wide 9:16": {"frame": tall},
    }
    frames = {}
    for name, kwargs in graphs.items():
        t0 = time.perf_counter()
        frames[name] = _frames(build_graph(folded, BATCH, **kwargs), noise, classes, threads)
        print(f"  {resolution} px {name}: {len(noise)} frames in {time.perf_counter() - t0:.0f} s")
    square = frames["square"]
    frames["stretched square"] = seams.stretched(square, wide)
    frames["mirrored square"] = seams.mirrored(square, wide[1])
    frames["tiled square"] = seams.tiled(square, wide[1])
    return frames


def score_looks(resolution: int, frames: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The seam, repeat, mirror and stretch scores of every 16:9 way (and the square's)."""
    square = frames["square"]
    height, width = frames["wide"].shape[1:3]
    cells = shape_of(resolution, (height, width), "wide").first_map[1]
    canvas = make_canvas((4, cells))
    cell = width / cells
    joins = [j * cell for j in canvas.joins()]
    # The same place in the generator's cell grid, away from the joins and the borders.
    reference = [
        (c + j % 1) * cell
        for j in canvas.joins()
        for c in range(1, cells - 1)
        if min(abs(c + j % 1 - k) for k in canvas.joins()) >= 1
    ]
    side = (width - height) // 2
    seam_at = {
        "pad": [side, width - side],
        "mirrored square": [side, width - side],
        "tiled square": [height],
    }
    rows = []
    for name, f in frames.items():
        if name in ("wide 9:16",):
            continue
        row: dict[str, Any] = {"resolution": resolution, "variant": name}
        if name != "square":
            at = seam_at.get(name, joins)
            row["seam_vs_elsewhere"] = round(seams.seam_ratio(f, at), 3)
            if name.startswith("wide"):
                row["seam_vs_cell_grid"] = round(seams.seam_ratio(f, joins, reference), 3)
            row["stretch"] = round(seams.stretch_score(f, square), 3)
            row["stretch_null"] = round(seams.stretch_score(f, square, null=True), 3)
        row["repeat"] = round(seams.repeat_score(f), 3)
        row["repeat_null"] = round(seams.repeat_score(f, null=True), 3)
        row["mirror"] = round(seams.mirror_score(f), 3)
        row["mirror_null"] = round(seams.mirror_score(f, null=True), 3)
        rows.append(row)
        print(f"  {resolution} px {name}: {row}")
    return rows


# 3. Contact sheets --------------------------------------------------------------------------


def _label(image: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, 8 + 6 * len(text), 14), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(im)


def _grid(rows: list[list[np.ndarray]], gap: int = 6) -> np.ndarray:
    lines = []
    for row in rows:
        height = max(c.shape[0] for c in row)
        cells = []
        for c in row:
            pad = np.full((height - c.shape[0], c.shape[1], 3), 255, np.uint8)
            cells += [np.concatenate([c, pad]), np.full((height, gap, 3), 255, np.uint8)]
        lines.append(np.concatenate(cells[:-1], axis=1))
    width = max(line.shape[1] for line in lines)
    out = []
    for line in lines:
        pad = np.full((line.shape[0], width - line.shape[1], 3), 255, np.uint8)
        out += [np.concatenate([line, pad], axis=1), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(out[:-1])


def contact_sheets(frames: dict[str, np.ndarray], folder: Path, resolution: int) -> list[Path]:
    """``wide_16x9.png``: square and wide 16:9 frames from the same vectors, four moments;
    ``fills_16x9.png``: wide, crop and pad of one moment, and 9:16."""
    folder.mkdir(parents=True, exist_ok=True)
    picks = np.linspace(0, len(frames["square"]) - 1, 4).round().astype(int)
    rows = [
        [_label(frames["square"][k], f"square {k}"), _label(frames["wide"][k], f"wide 16:9 {k}")]
        for k in picks
    ]
    first = folder / "wide_16x9.png"
    Image.fromarray(_grid(rows)).save(first, optimize=True)
    k = picks[1]
    fills = [
        [
            _label(frames["wide"][k], "--fill wide"),
            _label(frames["crop"][k], "--fill crop"),
            _label(frames["pad"][k], "--fill pad"),
        ],
        [
            _label(frames["stretched square"][k], "not this: stretched"),
            _label(frames["mirrored square"][k], "not this: mirrored"),
            _label(frames["wide 9:16"][k], "--aspect 9:16"),
        ],
    ]
    second = folder / "fills_16x9.png"
    Image.fromarray(_grid(fills)).save(second, optimize=True)
    print(f"  contact sheets at {resolution} px: {first}, {second}")
    return [first, second]


# Report -----------------------------------------------------------------------------------


def write_markdown(payload: dict[str, Any], path: Path) -> None:
    env, cpu = payload["environment"], payload["cpu"]
    sgemm = cpu["sgemm"]
    lines = [
        "# Frames that are not square: cost and looks",
        "",
        f"`{payload['command']}` · {payload['date']} · {cpu['cpu']} ({cpu['cores']} cores, "
        f"flags {', '.join(cpu['cpu_flags']) or 'none of note'}) · NumPy sgemm peak "
        f"{sgemm['gflops']:g} GFLOP/s · onnxruntime {env['versions']['onnxruntime']} · "
        f"random weights, truncation {TRUNCATION}, batch {BATCH}, {payload['threads']} threads.",
        "",
        "## Cost per frame",
        "",
        "Each graph is the one the CPU plan runs (exported through the cache, checked against "
        "PyTorch); repetitions alternate between the graphs in one process, so the ratios are "
        "side by side. GMAC per frame counted off each graph (Conv and MatMul nodes, the pixel "
        "tail included).",
        "",
        "| px | frame | variant | GMAC/frame | × square | frames/s median (best) "
        "| time × square, median (best) | CPU s/frame | CPU × square |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    busy = []
    for r in payload["cost"]:
        h, w = r["frame_size"]
        lines.append(
            f"| {r['resolution']} | {w}x{h} | {r['variant']} | {r['gmac_per_frame']:.2f} | "
            f"{r['gmac_vs_square']:.2f} | {r['frames_per_s_median']:.2f} "
            f"({r['frames_per_s_best']:.2f}) | {r['time_vs_square']:.2f} "
            f"({r['time_vs_square_best']:.2f}) | {r['cpu_s_per_frame_median']:.3f} | "
            f"{r['cpu_vs_square']:.2f} |"
        )
        if r.get("other_cores_busy_median") is not None:
            busy.append(f"{r['other_cores_busy_median']:g} at {r['resolution']} px")
    if busy:
        lines += [
            "",
            f"Other processes kept {' and '.join(busy)} of the {cpu['cores']} cores busy "
            "during the timed calls (median): wall times are noisy; the CPU seconds this "
            "process spent per frame (all its threads, median) are steadier; the GMAC exact.",
        ]
    lines += [
        "",
        "## Seams and independence",
        "",
        f"{payload['frames']} frames of render vectors (a synthesized 20 s piece) per way. "
        "Seam: gradient energy within 2 px of the joins over that elsewhere (1 = no more "
        "visible than the rest); for the wide canvases also over that at the same place in "
        "the generator's grid of first-map cells (random weights paint that grid in every "
        "frame: square frames carry about 1.9x the energy at cell boundaries). Joins: the "
        "middle of each tile overlap (wide), the square's edges (pad, mirrored), the copy's "
        "edge (tiled). Repeat, mirror, stretch: the best correlation of the frame's content "
        "with itself shifted, with itself reflected about any axis, and (squeezed to a "
        "square) with the square frame from the same vectors; the null is the same measure "
        "between two different frames. 1 is a copy.",
        "",
        "| px | way | seam / elsewhere | seam / cell grid | repeat (null) | mirror (null) "
        "| stretch (null) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]

    def cell(r: dict[str, Any], key: str) -> str:
        if key not in r:
            return "–"
        null = r.get(f"{key}_null")
        return f"{r[key]:.2f}" + (f" ({null:.2f})" if null is not None else "")

    for r in payload["looks"]:
        lines.append(
            f"| {r['resolution']} | {r['variant']} | {cell(r, 'seam_vs_elsewhere')} | "
            f"{cell(r, 'seam_vs_cell_grid')} | {cell(r, 'repeat')} | {cell(r, 'mirror')} | "
            f"{cell(r, 'stretch')} |"
        )
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="128,256", help="cost: model resolutions")
    parser.add_argument("--looks", default="128,256", help="looks: model resolutions")
    parser.add_argument("--frames", type=int, default=24, help="looks: frames per way")
    parser.add_argument("--reps", type=int, default=5, help="cost: repetitions per graph")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheets", type=Path, default=Path("docs"), help="contact sheets here")
    parser.add_argument("--sheet-resolution", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    import sys

    command = "python benchmarks/bench_aspect.py " + " ".join(sys.argv[1:])
    payload: dict[str, Any] = {
        "command": command.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "environment": environment(),
        "cpu": cpu_summary(),
        "threads": args.threads,
        "frames": args.frames,
        "cost": [],
        "looks": [],
    }
    for res in (int(r) for r in args.resolutions.split(",") if r):
        print(f"cost at {res} px")
        payload["cost"] += cost(res, args.reps, args.threads)
    for res in (int(r) for r in args.looks.split(",") if r):
        print(f"looks at {res} px")
        frames = render_looks(res, args.frames, args.threads)
        payload["looks"] += score_looks(res, frames)
        if res == args.sheet_resolution:
            payload["sheets"] = [str(p) for p in contact_sheets(frames, args.sheets, res)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "aspect_cpu.json").write_text(json.dumps(payload, indent=2) + "\n")
    write_markdown(payload, args.out / "aspect_cpu.md")
    print((args.out / "aspect_cpu.md").read_text())


if __name__ == "__main__":
    main()
