"""The results of ``dmv-fast bench`` for people: the markdown table, its header, the PNG plot.

Everything here reads rows as written to ``bench.json`` (:meth:`~dmv_fast.bench.rows.Row.to_dict`),
so a results file can be re-rendered without measuring again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger("dmv_fast")

COLUMNS = (
    "backend",
    "res",
    "batch",
    "frames/s",
    "call p50 ms",
    "call p99 ms",
    "peak RSS MiB",
    "GPU MiB",
    "e2e × real time",
    "e2e song s",
    "other jobs' cores",
    "% of sgemm peak",
)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _e2e_cell(e2e: dict[str, Any]) -> str:
    rtf = e2e.get("realtime_factor")
    if rtf is not None:
        return _fmt(rtf, 2)
    return "skipped" if "skipped" in e2e else "failed" if "failed" in e2e else "–"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The measured rows as a markdown table; skipped rows are grouped by backend and reason.

    Args:
        rows: rows as in ``bench.json``.
    """
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    skipped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] != "ok":
            key = (row["backend"], f"{row['status']}: {row.get('reason', '')}")
            skipped.setdefault(key, []).append(row)
            continue
        e2e = row.get("e2e") or {}
        fraction = row.get("sgemm_fraction")
        frame = row.get("frame_size")
        fill = (row.get("plan") or {}).get("fill")
        res = row["resolution"]
        cells = [
            row["backend"],
            f"{res} → {frame[1]}x{frame[0]}{f' {fill}' if fill else ''}" if frame else res,
            row["batch_size"],
            _fmt(row["frames_per_s"], 2),
            _fmt(row["call_ms_p50"]),
            _fmt(row["call_ms_p99"]),
            _fmt(row["peak_rss_mb"], 0),
            _fmt(row.get("gpu_mem_mb"), 0),
            _e2e_cell(e2e),
            _fmt(e2e.get("audio_s")),
            _fmt(row.get("other_cores_busy"), 2),
            _fmt(None if fraction is None else 100 * fraction, 1),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    for (backend, reason), group in skipped.items():
        res = ",".join(str(r) for r in dict.fromkeys(g["resolution"] for g in group))
        batch = ",".join(str(b) for b in dict.fromkeys(g["batch_size"] for g in group))
        reason = reason.replace("|", "/")
        lines.append(f"| {backend} | {res} | {batch} | {reason} " + "|" * (len(COLUMNS) - 3))
    return "\n".join(lines) + "\n"


def command_line(settings: dict[str, Any]) -> str:
    """The ``dmv-fast bench`` command that reproduces a run with these settings."""
    return (
        f"dmv-fast bench --resolutions {','.join(map(str, settings['resolutions']))}"
        f" --batch-sizes {','.join(map(str, settings['batch_sizes']))}"
        f" --backends {','.join(settings['backends'])} --seconds {settings['seconds']:g}"
        f" --song-seconds {settings['song_seconds']:g}"
        + "".join(f" --{k} {v}" for k, v in (settings.get("shape") or {}).items())
    )


def report_header(env: dict[str, Any], settings: dict[str, Any]) -> str:
    """The title, machine and method lines above the table in ``bench.md``."""
    v = env["versions"]
    w = settings.get("weights", "random")
    weights = "Random weights (same cost as pretrained)" if w == "random" else f"Weights {w!r}"
    sgemm = env.get("sgemm") or {}
    peak = (
        f" · NumPy sgemm peak {sgemm['gflops']:g} GFLOP/s at the start"
        f" ({sgemm.get('blas', 'BLAS')}, "
        f"OPENBLAS_CORETYPE={sgemm.get('openblas_coretype') or 'unset'})"
        if sgemm.get("gflops")
        else ""
    )
    return (
        f"# dmv-fast bench\n\n{env['date']} · {env['device']} · {env['cpu']} "
        f"({env['cores_usable']} cores usable, load {env['load_average_1m']}) · "
        f"onnxruntime {v['onnxruntime']} · torch {v['torch']} · numpy {v['numpy']}{peak}\n\n"
        f"Reproduce: `{command_line(settings)}`\n\n"
        f"{weights}, truncation 1.0, fresh random inputs per call;"
        " frames/s = batch / median call time after warm-up; call p50/p99 = latency of one call"
        " at that batch (the batch-1 rows give the batch-1 latency); peak RSS of the process"
        " that measured the row; e2e = `dmv_fast.render.api.render` of a synthesized song with"
        " libx264, in seconds of video per second of wall time; other jobs' cores = CPU"
        " cores kept busy by other processes during the timed calls (a timing is only as good"
        " as the machine was quiet); % of sgemm peak (CPU rows) = 2 × multiply-adds per frame"
        " × frames/s over the best of 5 float32 NumPy products of 2048 × 2048 matrices, measured"
        " by the row's process right after its timed calls (7.5/24.6/31.9"
        " GMAC per frame for the exported graph at 128/256/512 px, 11.3/38.8/75.7 for torch)."
        " The torch rows include the original's per-frame uint8 conversion in NumPy; the ONNX"
        " graphs make uint8 inside. Each row stores the resolved plan it ran in `bench.json`"
        " (the CPU graph batch is capped at 4: a larger batch runs as several calls).\n\n"
    )


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Bar chart of the best frames/s (over batch sizes) per backend and resolution.

    Returns the path written, or None without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot written (pip install matplotlib)")
        return None
    ok = [r for r in rows if r["status"] == "ok"]
    backends = list(dict.fromkeys(r["backend"] for r in ok))
    missing = [b for b in dict.fromkeys(r["backend"] for r in rows) if b not in backends]
    resolutions = sorted({r["resolution"] for r in rows})
    width_in = min(14.0, 2.5 + 0.6 * len(resolutions) * max(1, len(backends)))
    fig, ax = plt.subplots(figsize=(width_in, 4))
    width = 0.8 / max(1, len(backends))
    for k, backend in enumerate(backends):
        xs, ys, labels = [], [], []
        for i, res in enumerate(resolutions):
            cands = [r for r in ok if r["backend"] == backend and r["resolution"] == res]
            if not cands:
                continue
            best = max(cands, key=lambda r: r["frames_per_s"])
            xs.append(i + (k - (len(backends) - 1) / 2) * width)
            ys.append(best["frames_per_s"])
            labels.append(f"b{best['batch_size']}")
        bars = ax.bar(xs, ys, width, label=backend)
        for bar, label in zip(bars, labels, strict=True):
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(range(len(resolutions)), [f"{r} px" for r in resolutions])
    ax.set_ylabel("generator frames/s (best batch size)")
    if any(r["frames_per_s"] > 0 for r in ok):
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    if backends:
        ax.legend(fontsize=8)
    if missing:
        ax.set_xlabel("not run here: " + ", ".join(missing), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
