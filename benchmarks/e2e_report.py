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
    dd = report["dmv_fast_direct"]
    r = report["ratios"]
    ot, dt = o["timings"], d["timings"]
    su = report["startup"]
    so, sd, sdd = su["original"], su["dmv_fast"], su["dmv_fast_direct"]
    sot, sdt = so["timings"], sd["timings"]
    first = su["first_run_wall_s"]
    pf = report["generator_peak_fraction"]
    sg = report["sgemm"]["runs"][0]
    plan = report["dmv_fast_plan"]
    form, lanes = plan.get("conv_form", "direct"), plan.get("lanes", 1)

    def runs(table: dict, kind: str) -> str:
        return ", ".join(f"{w:.1f} s" for w in table[kind])

    def row(label: str, a: float, b: float, c: float, fmt: str = ".1f") -> str:
        return f"| {label} | {a:{fmt}} | {b:{fmt}} | {c:{fmt}} | {a / c:.2f}× | **{b / c:.2f}×** |"

    lines = [
        "# End to end on the CPU: the original's way vs dmv-fast",
        "",
        f"{env['date']} · {env['cpu']} · {env['cores_usable']} cores · flags "
        f"{', '.join(report.get('cpu_flags', [])) or '?'} · load average "
        f"{report['load_before']} before, {report['load_after']} after (other jobs shared the "
        "machine) · torch "
        f"{env['versions']['torch']} · onnxruntime {env['versions']['onnxruntime']}",
        "",
        f"{report['settings']['song_seconds']:g} s synthesized song, "
        f"{report['settings']['resolution']} px, batch {report['settings']['batch_size']}, "
        f"frame length {report['settings']['frame_length']}, random weights, same vectors; each "
        "side in its own process (wall time includes imports and model setup), the sides "
        "alternating. dmv-fast runs twice: as its plan renders on this machine (the new "
        f"render: {lanes} batch(es) side by side, each on its share of the cores, {form} "
        "convolutions) and as the earlier renders did (today's render: one batch at a time on "
        "every core, direct convolutions everywhere).",
        "",
        "| | original's way | dmv-fast, today's render | dmv-fast, new render | new vs original "
        "| new vs today's render |",
        "|---|---:|---:|---:|---:|---:|",
        row("wall time, s", o["wall_s"], dd["wall_s"], d["wall_s"]),
        row(
            f"start-up: a {su['song_seconds']:g} s song in a fresh process, s",
            so["wall_s"],
            sdd["wall_s"],
            sd["wall_s"],
        ),
        row(
            "wall time less start-up, s",
            o["wall_s"] - so["wall_s"],
            dd["wall_s"] - sdd["wall_s"],
            d["wall_s"] - sd["wall_s"],
        ),
        row(
            "generator alone, s",
            ot["torch_generate"],
            report["ort_generate_direct_s"],
            report["ort_generate_s"],
        ),
        f"| peak RSS, MiB | {o['peak_rss_mb']:.0f} | {dd['peak_rss_mb']:.0f} | "
        f"{d['peak_rss_mb']:.0f} | {r['memory']:.2f}× (target ≤ {TARGET_MEMORY:.2f}×) | |",
        f"| frames in the MP4 | {o['video']['frames']} | {dd['video']['frames']} | "
        f"{d['video']['frames']} | | |",
        f"| cores busy with other jobs meanwhile | {o['other_cores_busy']:.2f} | "
        f"{dd['other_cores_busy']:.2f} | {d['other_cores_busy']:.2f} | | |",
        "",
        f"Target: {TARGET_SPEEDUP:g}× the original's way end to end; measured "
        f"**{r['speedup']:.2f}×** with the new render, {r['direct_speedup']:.2f}× with today's.",
        "",
        f"Wall times of every run (the fastest is shown above): original "
        f"{runs(report['all_runs'], 'original')}; dmv-fast, today's render "
        f"{runs(report['all_runs'], 'dmv-fast-direct')}; new render "
        f"{runs(report['all_runs'], 'dmv-fast')}. Start-up runs: original "
        f"{runs(su['all_runs'], 'original')}; today's render "
        f"{runs(su['all_runs'], 'dmv-fast-direct')}; new render {runs(su['all_runs'], 'dmv-fast')}"
        + (
            " (the very first, untimed warm-ups: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in first.items())
            + ")."
            if first
            else "."
        )
        + " Generator alone, every run: new render "
        + ", ".join(f"{t:.1f} s" for t in report["generate_all_runs"]["generate"])
        + "; today's render "
        + ", ".join(f"{t:.1f} s" for t in report["generate_all_runs"]["generate-direct"])
        + ".",
        "",
        f"Start-up of dmv-fast with the new render ({su['song_seconds']:g} s song, "
        f"{sd['frames']} frames): imports {sdt['imports']:.1f} s, analysis "
        f"{sdt.get('analysis', 0):.1f} s (the ONNX Runtime session loads meanwhile, on a helper "
        f"thread), vectors (numba kernels from their cache) {sdt.get('vectors', 0):.1f} s, "
        f"generate + encode {sdt.get('render', 0):.1f} s; the original's: imports "
        f"{sot['imports']:.1f} s, torch model {sot['model']:.1f} s.",
        "",
        "Where the time goes (s):",
        "",
        "| stage | original's way | dmv-fast, new render |",
        "|---|---:|---:|",
        f"| imports | {ot['imports']:.1f} | {dt['imports']:.1f} |",
        f"| analysis + vectors | {ot['analysis+vectors']:.1f} | "
        f"{dt.get('analysis', 0) + dt.get('vectors', 0):.1f} (the session loads meanwhile) |",
        f"| model setup | {ot['model']:.1f} (build torch model) | overlapped with the analysis "
        "(ONNX Runtime session, cached graph) |",
        f"| generate | {ot['torch_generate']:.1f} (torch eager) | "
        f"{report['ort_generate_s']:.1f} (ONNX Runtime alone, separate run) |",
        f"| uint8 conversion | {ot['convert']:.1f} (NumPy per frame) | in the graph |",
        f"| encode | {ot['encode']:.1f} (after all frames, x264 medium) | overlapped "
        "(x264 veryfast) |",
        f"| generate + convert + encode | {ot['torch_generate'] + ot['convert'] + ot['encode']:.1f}"
        f" | {dt.get('render', 0):.1f} (overlapped) |",
        "",
        f"Generator alone: torch eager {r['torch_fps']:.2f} frames/s, ONNX Runtime in today's "
        f"render {r['ort_direct_fps']:.2f} frames/s, with the new render {r['ort_fps']:.2f} "
        f"frames/s ({r['graph_generator_speedup']:.2f}× today's render, "
        f"{r['generator_speedup']:.2f}× torch; dmv-fast at batch "
        f"{report['dmv_fast_plan']['batch_size']}, the plan's CPU cap).",
        "",
        f"This machine's fp32 peak, measured in the same run: NumPy sgemm {report['sgemm']['gflops']}"
        f" GFLOP/s (best of {sg['repeats']} products, n={sg['n']}, {sg.get('blas', 'BLAS ?')}, "
        f"best of the two measurements: {', '.join(str(x['gflops']) for x in report['sgemm']['runs'])}"
        " GFLOP/s, at the start and right after the generator-alone runs). ONNX Runtime with the "
        f"new render reaches {pf['ort_gflops']} GFLOP/s of direct-convolution work "
        f"({pf['ort_gmac_per_frame']} GMAC per frame x 2 x frames/s): {pf['ort']:.0%} of the "
        "peak (a Winograd graph does fewer multiplies for the same frames, so this can pass "
        f"100%); torch eager {pf['torch_gflops']} GFLOP/s ({pf['torch_gmac_per_frame']} GMAC per "
        f"frame, its full-size graph): {pf['torch']:.0%}.",
        "",
        *_extra_lines(report),
        "The original itself measured 343 s and 3.0 GB peak for this on a 2-core machine.",
        "",
        "Reproduce: `python benchmarks/bench_e2e.py --seconds "
        f"{report['settings']['song_seconds']:g} --repeat {report['settings']['repeat']}`",
    ]
    return "\n".join(lines) + "\n"
