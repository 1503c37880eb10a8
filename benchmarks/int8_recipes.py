"""The recipe study of ``bench_int8.py --recipes``: the 128-px graph quantized by each
:class:`dmv_fast_export.quantize.Recipe` of :data:`RECIPES`, its quality against fp32 and its
speed, every graph and fp32 alternating in one loop."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmv_fast_export import quality, quantize

QUALITY_TRUNCATIONS = (0.2, 0.5, 1.0)

_ALL_OPS = ("Conv", "MatMul", *quantize.EXTRA_OP_TYPES)
#: The ``--recipes`` study: short name -> (description, recipe). The first is the default.
RECIPES: dict[str, tuple[str, quantize.Recipe]] = {
    "default": ("QDQ, Conv + MatMul, u8 x s8 (the recipe)", quantize.RECIPE),
    "qoperator": ("QOperator, Conv + MatMul", quantize.Recipe(fmt="qoperator")),
    "bn": (
        "QDQ, + BatchNorm Mul/Add and ReLU",
        quantize.Recipe(op_types=("Conv", "MatMul", "Add", "Mul", "Relu")),
    ),
    "body": (
        "QDQ, + every body op (Concat, Resize, Reshape...)",
        quantize.Recipe(op_types=_ALL_OPS),
    ),
    "body_force": (
        "QDQ, + every body op, ForceQuantizeNoInputCheck",
        quantize.Recipe(op_types=_ALL_OPS, options=(("ForceQuantizeNoInputCheck", True),)),
    ),
    "qoperator_body": (
        "QOperator, + every body op",
        quantize.Recipe(fmt="qoperator", op_types=_ALL_OPS),
    ),
    "s8_symmetric": (
        "QDQ, s8 x s8, ActivationSymmetric",
        quantize.Recipe(activation="int8", options=(("ActivationSymmetric", True),)),
    ),
    "dedicated": ("QDQ, DedicatedQDQPair", quantize.Recipe(options=(("DedicatedQDQPair", True),))),
}


def recipe_study(
    fp32: Path, batch: int, threads: int, frames: int, reps: int, speed: Callable[..., dict]
) -> list[dict]:
    """Quality and speed of the 128-px graph quantized by each of :data:`RECIPES` (one
    calibration; the speed of all of them and fp32 in one alternating loop by ``speed``,
    ``bench_int8.speed``)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="dmv-int8-recipes-") as tmp:
        ranges = quantize.calibrate(fp32, Path(tmp) / "ranges.json")
        paths = {}
        for name, (_, recipe) in RECIPES.items():
            paths[name] = quantize.quantize(
                fp32, Path(tmp) / f"{name}.onnx", ranges_path=ranges, recipe=recipe
            )
        s = speed({"fp32": fp32, **paths}, batch, threads, reps, 600)
        for name, (text, _) in RECIPES.items():
            q = quality.compare(
                paths[name], fp32, QUALITY_TRUNCATIONS, frames=frames, threads=threads
            )
            rows.append({
                "recipe": name,
                "description": text,
                "psnr_db": {t: v["psnr_db"] for t, v in q.items()},
                "ssim": {t: v["ssim"] for t, v in q.items()},
                "fps_best": s[name]["fps_best"],
                "ratio_best": s[f"ratio_best_{name}"],
                "ratio_median": s[f"ratio_median_{name}"],
            })  # fmt: skip
            logging.info("recipe study: %s", rows[-1])
        rows.append({"recipe": "fp32", "fps_best": s["fp32"]["fps_best"], "reps": s["reps"]})
    return rows


def recipe_lines(result: dict[str, Any]) -> list[str]:
    """The markdown section of the study (none without one)."""
    lines: list[str] = []
    if result.get("recipes"):
        *rows, f32 = result["recipes"]
        lines += [
            "",
            f"## Recipes (128 px, batch {result['groups_batch']})",
            "",
            "One calibration; quality as above; speed: every graph and fp32 in one alternating "
            f"loop ({f32['reps']} repetitions each; fp32 {f32['fps_best']:.2f} frames/s best).",
            "",
            "| recipe | PSNR 0.2 / 0.5 / 1.0 (dB) | SSIM 0.2 / 0.5 / 1.0 | frames/s (best) "
            "| int8/fp32 (best) | (median) |",
            "|---|---|---|---|---|---|",
        ]
        for row in rows:
            p, s = row["psnr_db"], row["ssim"]
            lines.append(
                f"| {row['description']} | {' / '.join(f'{v:.1f}' for v in p.values())} "
                f"| {' / '.join(f'{v:.3f}' for v in s.values())} | {row['fps_best']:.2f} "
                f"| {row['ratio_best']:.2f}x | {row['ratio_median']:.2f}x |"
            )
    return lines
