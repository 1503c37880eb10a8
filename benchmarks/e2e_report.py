"""The markdown of ``bench_e2e.py``'s results (``e2e_cpu.md``) from its JSON report."""

from __future__ import annotations

TARGET_SPEEDUP = 4.0
TARGET_MEMORY = 1 / 3


def _extra_lines(report: dict) -> list[str]:
    extra = report.get("dmv_fast_other_batches") or []
    if not extra:
        return []
    o = report["original"]
    lines = [
        "dmv-fast at other batch sizes (same song and settings otherwise):",
        "",
        "| batch | wall s | × faster than the original's way | peak RSS MiB | × original's RSS |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in extra:
        lines.append(
            f"| {r['batch_size']} | {r['wall_s']:.1f} | {o['wall_s'] / r['wall_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / o['peak_rss_mb']:.2f} |"
        )
    return [*lines, ""]


def markdown(report: dict) -> str:
    env, o, d = report["environment"], report["original"], report["dmv_fast"]
    r = report["ratios"]
    ot, dt = o["timings"], d["timings"]
    su = report["startup"]
    so, sd = su["original"], su["dmv_fast"]
    sot, sdt = so["timings"], sd["timings"]
    first = su["first_run_wall_s"]
    pf = report["generator_peak_fraction"]
    sg = report["sgemm"]["runs"][0]

    def start_runs(kind: str) -> str:
        return ", ".join(f"{w:.1f} s" for w in su["all_runs"][kind])

    wall_o = ", ".join(f"{w:.1f} s" for w in report["all_runs"]["original"])
    wall_d = ", ".join(f"{w:.1f} s" for w in report["all_runs"]["dmv-fast"])
    lines = [
        "# End to end on the CPU: the original's way vs dmv-fast",
        "",
        f"{env['date']} · {env['cpu']} · {env['cores_usable']} cores · load average "
        f"{report['load_before']} before, {report['load_after']} after (other jobs shared the "
        "machine) · torch "
        f"{env['versions']['torch']} · onnxruntime {env['versions']['onnxruntime']}",
        "",
        f"{report['settings']['song_seconds']:g} s synthesized song, "
        f"{report['settings']['resolution']} px, batch {report['settings']['batch_size']}, "
        f"frame length {report['settings']['frame_length']}, random weights, same vectors; each "
        "side in its own process (wall time includes imports and model setup).",
        "",
        "| | original's way | dmv-fast | ratio |",
        "|---|---:|---:|---:|",
        f"| wall time, s | {o['wall_s']:.1f} | {d['wall_s']:.1f} | "
        f"**{r['speedup']:.2f}× faster** (target ≥ {TARGET_SPEEDUP:g}×) |",
        f"| peak RSS, MiB | {o['peak_rss_mb']:.0f} | {d['peak_rss_mb']:.0f} | "
        f"**{r['memory']:.2f}×** (target ≤ {TARGET_MEMORY:.2f}×) |",
        f"| start-up: a {su['song_seconds']:g} s song in a fresh process, s "
        f"| {so['wall_s']:.1f} | {sd['wall_s']:.1f} | {r['startup']:.2f}× |",
        f"| wall time less start-up, s | {o['wall_s'] - so['wall_s']:.1f} "
        f"| {d['wall_s'] - sd['wall_s']:.1f} | {r['without_startup']:.2f}× |",
        f"| frames in the MP4 | {o['video']['frames']} | {d['video']['frames']} | |",
        f"| cores busy with other jobs meanwhile | {o['other_cores_busy']:.2f} | "
        f"{d['other_cores_busy']:.2f} | |",
        "",
        f"Wall times of every run (the fastest is shown above): original {wall_o}; dmv-fast "
        f"{wall_d}. Start-up runs: original {start_runs('original')}; dmv-fast "
        f"{start_runs('dmv-fast')}"
        + (
            f" (the very first, untimed warm-up: original {first['original']:.1f} s, dmv-fast "
            f"{first['dmv-fast']:.1f} s)."
            if first
            else "."
        ),
        "",
        f"Start-up of dmv-fast ({su['song_seconds']:g} s song, {sd['frames']} frames): imports "
        f"{sdt['imports']:.1f} s, ONNX Runtime session {sdt['session']:.1f} s, analysis "
        f"{sdt.get('analysis', 0):.1f} s, vectors (numba kernels from their cache) "
        f"{sdt.get('vectors', 0):.1f} s, generate + encode {sdt.get('render', 0):.1f} s; the "
        f"original's: imports {sot['imports']:.1f} s, torch model {sot['model']:.1f} s.",
        "",
        "Where the time goes (s):",
        "",
        "| stage | original's way | dmv-fast |",
        "|---|---:|---:|",
        f"| imports | {ot['imports']:.1f} | {dt['imports']:.1f} |",
        f"| analysis + vectors | {ot['analysis+vectors']:.1f} | "
        f"{dt.get('analysis', 0) + dt.get('vectors', 0):.1f} |",
        f"| model setup | {ot['model']:.1f} (build torch model) | {dt['session']:.1f} "
        "(ONNX Runtime session, cached graph) |",
        f"| generate | {ot['torch_generate']:.1f} (torch eager) | "
        f"{report['ort_generate_s']:.1f} (ONNX Runtime alone, separate run) |",
        f"| uint8 conversion | {ot['convert']:.1f} (NumPy per frame) | in the graph |",
        f"| encode | {ot['encode']:.1f} (after all frames, x264 medium) | overlapped "
        "(x264 veryfast) |",
        f"| generate + convert + encode | {ot['torch_generate'] + ot['convert'] + ot['encode']:.1f}"
        f" | {dt.get('render', 0):.1f} (overlapped) |",
        "",
        f"Generator alone: torch eager {r['torch_fps']:.2f} frames/s vs ONNX Runtime "
        f"{r['ort_fps']:.2f} frames/s ({r['generator_speedup']:.2f}×; dmv-fast at batch "
        f"{report['dmv_fast_plan']['batch_size']}, the plan's CPU cap).",
        "",
        f"This machine's fp32 peak, measured in the same run: NumPy sgemm {report['sgemm']['gflops']}"
        f" GFLOP/s (best of {sg['repeats']} products, n={sg['n']}, {sg.get('blas', 'BLAS ?')}, "
        f"best of the two measurements: {', '.join(str(x['gflops']) for x in report['sgemm']['runs'])}"
        " GFLOP/s, at the start and right after the generator-alone run). ONNX Runtime reaches "
        f"{pf['ort_gflops']} GFLOP/s ({pf['ort_gmac_per_frame']} GMAC per frame x 2 x frames/s): "
        f"**{pf['ort']:.0%} of the peak**; torch eager {pf['torch_gflops']} GFLOP/s "
        f"({pf['torch_gmac_per_frame']} GMAC per frame, its full-size graph): {pf['torch']:.0%}.",
        "",
        *_extra_lines(report),
        "The original itself measured 343 s and 3.0 GB peak for this on a 2-core machine.",
        "",
        "Reproduce: `python benchmarks/bench_e2e.py --seconds "
        f"{report['settings']['song_seconds']:g} --repeat {report['settings']['repeat']}`",
    ]
    return "\n".join(lines) + "\n"
