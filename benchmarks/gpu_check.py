"""Check and time the GPU side in one run: parity, throughput, latency, end to end, memory.

    python benchmarks/gpu_check.py OUTDIR [--quick] [--deadline 540]

On a machine with an NVIDIA GPU and onnxruntime-gpu it:

1. compares the ONNX Runtime CUDA EP (fp32 and fp16) and, if it loads, the TensorRT EP with
   the CPU EP on the same fresh random inputs: max pixel difference and PSNR of the uint8
   frames, at 128, 256 and 512 px;
2. renders a song (3.5 minutes at 512 px by default) from audio to MP4 with libx264
   (real-time factor; target: <= 30 s on 16 cores);
3. times frames/s per backend and batch size (median of timed calls after warm-up, fresh
   inputs each call), batch-1 latency p50/p99, peak host RSS and GPU memory, for torch eager,
   ORT CPU (batch 1 only), ORT CUDA fp32/fp16 and ORT TensorRT fp16.

Whatever is missing (no GPU, no onnxruntime-gpu, no exporter, no librosa/PyAV) is skipped
with the reason. The JSON (OUTDIR/gpu_check.json) is rewritten after every step, so a run cut
short still leaves what it measured; a short table is printed last (also gpu_check.md).
``--quick`` runs a small version (128 px, short song) that also works on a CPU-only machine.
``--aspect 16:9`` (or ``--size WxH``, ``--fill``) runs every check at that frame instead of the
square one: the wide canvas's parity, frames/s and end to end on the GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "export"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from dmv_fast import bench  # noqa: E402

#: The frame of every check (``--aspect``, ``--size``, ``--fill``); None: square.
SHAPE: dict[str, Any] | None = None

MODULES = (
    "numpy",
    "onnxruntime",
    "onnx",
    "torch",
    "pytorch_pretrained_biggan",
    "onnxscript",
    "librosa",
    "soundfile",
    "numba",
    "av",
    "psutil",
    "matplotlib",
)


class Check:
    """Accumulates the report and rewrites the JSON after every step."""

    def __init__(self, out: Path, deadline: float) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.deadline = deadline
        self.report: dict[str, Any] = {"parity": [], "rows": [], "e2e": None, "skipped": []}

    def left(self) -> float:
        return self.deadline - (time.perf_counter() - self.t0)

    def save(self) -> None:
        self.report["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        (self.out / "gpu_check.json").write_text(json.dumps(self.report, indent=2) + "\n")

    def skip(self, what: str, reason: str) -> None:
        print(f"skip {what}: {reason}", file=sys.stderr)
        self.report["skipped"].append({"what": what, "reason": reason})
        self.save()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def modules_present() -> dict[str, bool]:
    return {m: importlib.util.find_spec(m) is not None for m in MODULES}


def _visualizer(resolution: int, backend_name: str, batch: int, plan: Any = None) -> Any:
    """A :class:`dmv_fast.render.api.Visualizer` on the row's plan (``plan``: one already
    prepared), graph exported, session loaded and on the row's backend (raises
    bench.Unavailable when the plan says it cannot run here or the session settled
    elsewhere)."""
    if plan is None:
        plan = bench.prepare_row(backend_name, resolution, batch, shape=SHAPE)
    if plan is None:
        raise bench.Unavailable(f"{backend_name} does not run on ONNX Runtime")
    from dmv_fast.render.api import Visualizer

    vis = Visualizer(plan)
    _ = vis.generator
    if vis.plan.backend != plan.backend:
        raise bench.Unavailable(f"{backend_name}: the session settled on {vis.plan.backend}")
    return vis


def _generator(resolution: int, backend_name: str, batch: int) -> Any:
    """A loaded :class:`dmv_fast.model.runtime.Generator` on the row's backend."""
    return _visualizer(resolution, backend_name, batch).generator


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def parity(check: Check, resolution: int, n_frames: int, backends: list[str]) -> None:
    """Each GPU backend's frames vs the CPU EP's on the same inputs (batch-1 graphs)."""
    rng = np.random.default_rng(resolution)
    noise, classes = bench.random_inputs(rng, n_frames)
    try:
        ref_gen = _generator(resolution, "ort-cpu", 1)
    except bench.Unavailable as exc:
        check.skip(f"parity {resolution}", f"no CPU reference: {exc}")
        return
    except Exception as exc:
        check.skip(f"parity {resolution}", f"no CPU reference: {bench.first_line(exc)}")
        return
    t0 = time.perf_counter()
    ref = np.concatenate(
        [ref_gen.generate(noise[i : i + 1], classes[i : i + 1], 1.0) for i in range(n_frames)]
    )
    log(f"parity {resolution}: CPU reference {n_frames} frames in {time.perf_counter() - t0:.1f} s")
    del ref_gen
    for name in backends:
        if name == "ort-cpu" or bench.BACKENDS[name].backend is None:
            continue
        entry: dict[str, Any] = {"backend": name, "resolution": resolution, "frames": n_frames}
        if check.left() < 30:
            entry.update(status="skipped", reason="out of time")
        else:
            try:
                gen = _generator(resolution, name, 1)
                out = np.concatenate(
                    [
                        gen.generate(noise[i : i + 1], classes[i : i + 1], 1.0)
                        for i in range(n_frames)
                    ]
                )
                diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
                entry.update(
                    status="ok",
                    providers=list(gen.providers),
                    max_pixel_diff=int(diff.max()),
                    mean_pixel_diff=round(float(diff.mean()), 4),
                    psnr_db=round(psnr(out, ref), 2),
                    constant_output=bool(out.min() == out.max()),
                )
                del gen
            except bench.Unavailable as exc:
                entry.update(status="skipped", reason=str(exc))
            except Exception as exc:
                entry.update(status="failed", reason=bench.first_line(exc))
        log(f"parity {resolution} {name}: {entry}")
        check.report["parity"].append(entry)
        check.save()


def end_to_end(check: Check, resolution: int, seconds: float, batch: int) -> None:
    """Render a synthesized song with the fastest GPU backend that loads (else the CPU)."""
    for module in ("librosa", "av", "soundfile", "numba"):
        if importlib.util.find_spec(module) is None:
            check.skip("end to end", f"{module} is not installed")
            return
    chosen = plan = None
    for name in ("ort-cuda-fp16", "ort-cpu"):
        try:
            plan = bench.prepare_row(name, resolution, batch, shape=SHAPE)  # the graph exported
        except bench.Unavailable as exc:
            check.report.setdefault("e2e_notes", []).append(f"{name}: {exc}")
            continue
        except Exception as exc:
            check.report.setdefault("e2e_notes", []).append(f"{name}: {bench.first_line(exc)}")
            continue
        chosen = name
        break
    if chosen is None:
        check.skip("end to end", "no ONNX Runtime backend runs here")
        return

    with tempfile.TemporaryDirectory(prefix="dmv-fast-gpu-check-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        song = bench.write_song(work / "song.wav", seconds)
        synth_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            vis = _visualizer(resolution, chosen, batch, plan)
        except Exception as exc:
            check.skip("end to end", bench.first_line(exc))
            return
        session_s = time.perf_counter() - t0
        try:
            with bench.PeakRSS() as rss:
                result = bench.end_to_end(song, work / "e2e.mp4", vis)
        except Exception as exc:
            check.skip("end to end", bench.first_line(exc))
            traceback.print_exc()
            return
    result.update(
        backend=chosen,
        resolution=resolution,
        batch_size=batch,
        session_s=round(session_s, 2),
        wall_with_session_s=round(result["wall_s"] + session_s, 2),
        synth_s=round(synth_s, 2),
        peak_rss_mb=rss.peak_mb,
        gpu_mem_mb=bench.gpu_memory_mb(),
    )
    if resolution == 512 and seconds >= 210:
        result["target"] = "3.5-minute song at 512 px from audio to MP4 in <= 30 s"
        result["target_met"] = result["wall_s"] <= 30.0
    log(f"end to end: {result}")
    check.report["e2e"] = result
    check.save()


def throughput(
    check: Check,
    backends: list[str],
    resolutions: list[int],
    batch_sizes: list[int],
    budget: float,
) -> None:
    for name in backends:
        for res in resolutions:
            sizes = [1] if name == "ort-cpu" else batch_sizes  # the CPU is too slow for more
            for batch in sizes:
                if check.left() < 20 + 3 * budget:
                    row = {"backend": name, "resolution": res, "batch_size": batch}
                    row.update(status="skipped", reason="out of time")
                else:
                    log(f"timing {name} {res} px batch {batch}")
                    row = bench.measure_row(name, res, batch, budget, shape=SHAPE).to_dict()
                    row.pop("e2e", None)
                    if name == "torch":
                        with contextlib.suppress(Exception):
                            import torch

                            if torch.cuda.is_available():
                                torch.cuda.empty_cache()
                log(f"  -> {_short(row)}")
                check.report["rows"].append(row)
                check.save()


def _short(row: dict[str, Any]) -> str:
    if row.get("status") != "ok":
        return f"{row.get('status')}: {row.get('reason')}"
    return (
        f"{row['frames_per_s']:.1f} frames/s, p50 {row['call_ms_p50']:.1f} ms, "
        f"p99 {row['call_ms_p99']:.1f} ms, RSS {row['peak_rss_mb']} MiB, "
        f"GPU {row.get('gpu_mem_mb')} MiB"
    )


def summary(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# gpu_check: {env['device']} · {env['cpu']} ({env['cores_usable']} cores) · "
        f"onnxruntime {env['versions']['onnxruntime']} · {env['date']}",
        "",
        "| parity vs CPU EP | res | max pixel diff | PSNR dB |",
        "|---|---:|---:|---:|",
    ]
    for p in report["parity"]:
        if p["status"] == "ok":
            lines.append(
                f"| {p['backend']} | {p['resolution']} | {p['max_pixel_diff']} | {p['psnr_db']} |"
            )
        else:
            lines.append(f"| {p['backend']} | {p['resolution']} | {p['status']}: {p['reason']} | |")
    lines += ["", bench.markdown_table(report["rows"]).rstrip()]
    e2e = report.get("e2e")
    if e2e:
        met = e2e.get("target_met")
        lines += [
            "",
            f"End to end ({e2e['backend']}, {e2e['resolution']} px, batch {e2e['batch_size']}, "
            f"x264): {e2e['audio_s']:.1f} s of video in {e2e['wall_s']:.1f} s "
            f"(+{e2e['session_s']:.1f} s session) = {e2e['realtime_factor']:.2f}× real time"
            + ("" if met is None else f"; target ≤ 30 s {'met' if met else 'NOT met'}"),
        ]
    for s in report["skipped"]:
        lines.append(f"skipped {s['what']}: {s['reason']}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--quick", action="store_true", help="128 px, short song, small budget")
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds for the run")
    parser.add_argument("--resolutions", default=None, help="default 128,256,512 (quick: 128)")
    parser.add_argument("--batch-sizes", default=None, help="default 1,8,30 (quick: 1,8)")
    parser.add_argument("--budget", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--song-seconds", type=float, default=None, help="default 210")
    parser.add_argument("--e2e-resolution", type=int, default=None, help="default 512")
    parser.add_argument("--e2e-batch", type=int, default=30)
    parser.add_argument(
        "--backends", default="ort-cuda-fp16,ort-cuda-fp32,torch,ort-cpu,ort-trt-fp16"
    )
    parser.add_argument("--aspect", default=None, help="frame aspect W:H (default square)")
    parser.add_argument("--size", default=None, help="exact frame size WxH")
    parser.add_argument("--fill", default="wide", help="wide, crop or pad")
    args = parser.parse_args()
    global SHAPE
    if args.aspect or args.size:
        SHAPE = {"aspect": args.aspect, "size": args.size, "fill": args.fill}
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    q = args.quick
    resolutions = [int(r) for r in (args.resolutions or ("128" if q else "128,256,512")).split(",")]
    batch_sizes = [int(b) for b in (args.batch_sizes or ("1,8" if q else "1,8,30")).split(",")]
    budget = args.budget or (1.0 if q else 4.0)
    song_seconds = args.song_seconds or (10.0 if q else 210.0)
    e2e_res = args.e2e_resolution or (128 if q else 512)
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in bench.BACKENDS:
            parser.error(f"unknown backend {b!r}; choose from {', '.join(bench.BACKENDS)}")

    args.outdir.mkdir(parents=True, exist_ok=True)
    check = Check(args.outdir, args.deadline)
    try:
        import onnxruntime as ort

        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            try:
                preload()
                check.report["preload_dlls"] = "ok"
            except Exception as exc:
                check.report["preload_dlls"] = bench.first_line(exc)
        else:
            check.report["preload_dlls"] = "not in this onnxruntime"
    except ImportError:
        check.report["preload_dlls"] = "onnxruntime is not installed"
    check.report["environment"] = bench.environment()
    check.report["modules"] = modules_present()
    check.report["settings"] = {
        "quick": q,
        "resolutions": resolutions,
        "batch_sizes": batch_sizes,
        "budget_s": budget,
        "song_seconds": song_seconds,
        "e2e_resolution": e2e_res,
        "e2e_batch": args.e2e_batch,
        "backends": backends,
        "weights": "random",
        "truncation": bench.TRUNCATION,
        "shape": SHAPE,
    }
    check.save()
    log(f"device: {check.report['environment']['device']}")
    log(f"providers: {check.report['environment']['onnxruntime_providers']}")
    log(f"modules: {check.report['modules']}")

    # Parity first (correctness), then the headline end to end, then the grid; TensorRT, whose
    # engine builds take longest, comes last in the grid.
    gpu_backends = [b for b in backends if b.startswith("ort-") and b != "ort-cpu"]
    for res in resolutions:
        if check.left() < 60:
            check.skip(f"parity {res}", "out of time")
            continue
        parity(check, res, 2 if q else 4, [b for b in gpu_backends if b != "ort-trt-fp16"])
    if check.left() > 60:
        end_to_end(check, e2e_res, song_seconds, args.e2e_batch)
    else:
        check.skip("end to end", "out of time")
    grid = [b for b in backends if b != "ort-trt-fp16"]
    throughput(check, grid, resolutions, batch_sizes, budget)
    if "ort-trt-fp16" in backends:
        try:
            bench.backend_plan("ort-trt-fp16", resolutions[0], 1)
        except bench.Unavailable as exc:
            check.skip("ort-trt-fp16", str(exc))
        else:
            for res in resolutions:
                if check.left() > 90:
                    parity(check, res, 2, ["ort-trt-fp16"])
            throughput(check, ["ort-trt-fp16"], resolutions, batch_sizes, budget)
    text = summary(check.report)
    (args.outdir / "gpu_check.md").write_text(text)
    check.save()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
