"""Export: weights -> folded arrays -> ONNX graph -> checked against PyTorch -> the path the
graph cache gives.

A frame that is not square is checked whole too: PyTorch runs the same canvas (the tiles'
``gen_z``, blended by :func:`dmv_fast_export.canvas.first_map_reference`, then the model's own
layers on the wide map), and the pixel tail is checked against its NumPy model
(:func:`dmv_fast_export.pixels.tail_reference`; PIL's resize for the Lanczos passes).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from dmv_fast.model.truncation import bn_inputs
from dmv_fast.model.weights import Progress, WeightsSource
from dmv_fast.settings.choices import N_IMAGENET, NOISE_DIM
from dmv_fast.settings.shape import FrameShape, shape_of
from dmv_fast.version import __version__
from dmv_fast_export import EXPORTER_VERSION
from dmv_fast_export.canvas import Canvas, first_map_reference, make_canvas
from dmv_fast_export.fold import fold
from dmv_fast_export.graph import INPUTS, OUTPUT, build_graph
from dmv_fast_export.pixels import frame_tail, lanczos_reference, tail_reference
from dmv_fast_export.weights import load_model
from dmv_fast_export.yuv_tail import append_yuv420

logger = logging.getLogger("dmv_fast")

#: Truncation used by the post-export check (between two statistics steps, so the host-fed
#: interpolation is exercised).
CHECK_TRUNCATION = 0.405
#: An fp32 graph further than this from PyTorch (in 8-bit levels) is a bug, not rounding.
MAX_FP32_DIFF = 8
#: A Winograd graph further than this from PyTorch is exported with direct convolutions
#: instead (the direct graph's own rounding is within this).
MAX_WINOGRAD_DIFF = 1
#: The YUV tail computes in float32 like the host reference: rounding may differ by a level.
MAX_YUV_DIFF = 1
#: Name of the YUV 4:2:0 output of a ``yuv420p`` graph.
YUV = "yuv420"


def reference_pixels(
    image: np.ndarray, pixels: str = "stretch", scaling: int = 1, shape: FrameShape | None = None
) -> np.ndarray:
    """The original's 8-bit conversion (SPEC §5) of float images, then PIL-exact scaling
    (or, with ``shape``, the frame's tail: its size, crop or pad).

    Args:
        image: ``np.ndarray [shape=(B, 3, H, W)]`` float32 in [-1, 1] (the model's output).

    Returns:
        ``np.ndarray [shape=(B, H * scaling, W * scaling, 3)]`` uint8 (``shape.frame``).
    """
    x = image.astype(np.float32)
    if pixels == "stretch":
        lo = x.min(axis=(1, 2, 3), keepdims=True)
        ptp = x.max(axis=(1, 2, 3), keepdims=True) - lo
        ptp = np.where(ptp == 0, np.float32(1), ptp)  # scipy's bytescale: a flat frame is 0
        y = (x - lo) * np.float32(255) / ptp
    else:
        y = (x + np.float32(1)) * np.float32(127.5)
    frames = (np.clip(y, 0, 255) + np.float32(0.5)).astype(np.uint8).transpose(0, 2, 3, 1)
    if shape is not None:
        return tail_reference(frames, frame_tail(shape))
    return lanczos_reference(frames, scaling) if scaling > 1 else frames


def check_inputs(batch: int, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic noise ``[B, 128]`` and class mixtures ``[B, 1000]`` for parity checks."""
    rng = np.random.default_rng(seed)
    noise = (np.clip(rng.standard_normal((batch, 128)), -2, 2) * 0.5).astype(np.float32)
    classes = np.zeros((batch, 1000), np.float32)
    for i in range(batch):
        picks = rng.choice(1000, size=3, replace=False)
        classes[i, picks] = rng.dirichlet(np.ones(3)).astype(np.float32)
    return noise, classes


def torch_image(
    model: Any,
    noise: np.ndarray,
    classes: np.ndarray,
    truncation: float,
    canvas: Canvas | None = None,
) -> np.ndarray:
    """The PyTorch model's float picture ``[B, 3, h, w]``; with ``canvas``, the wide one:
    every tile's ``gen_z`` (the original's NHWC reshape), blended into the wide first map,
    then the model's own layers on it, conditioned on the frame's own vectors."""
    with torch.no_grad():
        z, y = torch.from_numpy(noise), torch.from_numpy(classes)
        if canvas is None:
            return model(z, y, truncation).numpy()
        gen = model.generator
        embed = model.embeddings(y)
        cond = torch.cat((z, embed), dim=1)
        b, k = len(noise), canvas.tiles
        tile_z = (z @ torch.from_numpy(canvas.noise_maps)).view(b, k, -1)
        tile_cond = torch.cat((tile_z, embed[:, None, :].expand(b, k, -1)), dim=2)
        tiles = gen.gen_z(tile_cond).view(b, k, 4, 4, -1).permute(0, 1, 4, 2, 3)
        x = torch.from_numpy(first_map_reference(canvas, tiles.numpy()).astype(np.float32))
        for layer in gen.layers:
            x = layer(x, cond, truncation) if hasattr(layer, "bn_0") else layer(x)
        x = gen.conv_to_rgb(gen.relu(gen.bn(x, truncation)))
        return gen.tanh(x[:, :3]).numpy()


def torch_frames(
    model: Any,
    noise: np.ndarray,
    classes: np.ndarray,
    truncation: float,
    pixels: str = "stretch",
    scaling: int = 1,
    shape: FrameShape | None = None,
) -> np.ndarray:
    """PyTorch reference frames, uint8 ``[B, H, W, 3]`` (``shape.frame`` when given)."""
    canvas = None
    if shape is not None and shape.first_map != (4, 4):
        canvas = make_canvas(shape.first_map)
    image = torch_image(model, noise, classes, truncation, canvas)
    return reference_pixels(image, pixels, scaling, shape)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 arrays (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def run_onnx(
    path: str | os.PathLike[str], noise, classes, truncation, threads=None, outputs=(OUTPUT,)
) -> Any:
    """Run a graph on ONNX Runtime's CPU provider for a full static batch.

    Returns the RGB frames, or a list of arrays when ``outputs`` names several.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    idx, w = bn_inputs(truncation)
    feeds = dict(zip(INPUTS, (noise, classes, idx, w), strict=True))
    result = session.run(list(outputs), feeds)
    return result[0] if len(outputs) == 1 else result


def validate(
    path: Path,
    model: Any,
    batch: int,
    precision: str,
    pixels: str,
    scaling: int,
    pixel_format: str = "rgb24",
    shape: FrameShape | None = None,
) -> dict[str, Any]:
    """Compare the exported graph (CPU provider) with the PyTorch model on fixed inputs.

    The whole static batch runs through ONNX Runtime; PyTorch checks its first and last
    frames (the batch edges) to keep the check short at 512 pixels. A ``yuv420p`` graph's
    planes must equal the host conversion of its own RGB frames. ``shape``: a frame of
    another size or shape (see :func:`torch_frames`).
    """
    noise, classes = check_inputs(batch)
    yuv_diff = None
    if pixel_format == "yuv420p":
        from dmv_fast.video.yuv import rgb_to_yuv420

        ours, yuv = run_onnx(path, noise, classes, CHECK_TRUNCATION, outputs=(OUTPUT, YUV))
        host = rgb_to_yuv420(ours).astype(np.int16)
        yuv_diff = int(np.abs(yuv.astype(np.int16) - host).max())
    else:
        ours = run_onnx(path, noise, classes, CHECK_TRUNCATION)
    picks = sorted({0, batch - 1})
    ref = torch_frames(
        model, noise[picks], classes[picks], CHECK_TRUNCATION, pixels, scaling, shape
    )
    diff = np.abs(ours[picks].astype(np.int16) - ref.astype(np.int16))
    result = {
        "truncation": CHECK_TRUNCATION,
        "frames_checked": len(picks),
        "max_pixel_diff": int(diff.max()),
        "mean_pixel_diff": float(diff.mean()),
        "psnr_db": psnr(ours[picks], ref),
        "provider": "CPUExecutionProvider",
    }
    if yuv_diff is not None:
        result["yuv_max_diff"] = yuv_diff
    return result


def _write(graph: onnx.ModelProto, path: Path) -> None:
    """Save ``graph`` and check it: shapes (strict, so an inferred shape that contradicts the
    declared static output fails) and the ONNX checker."""
    onnx.save_model(graph, path)
    # Path-based checks run in C++ without copying the model through Python.
    onnx.shape_inference.infer_shapes_path(path, path, check_type=True, strict_mode=True)
    onnx.checker.check_model(path, full_check=True)


def _metadata(
    source: WeightsSource, key: dict[str, Any], config: Any, shape: FrameShape
) -> dict[str, str]:
    extra = {}
    if shape.resampled or not shape.square:
        extra = {
            "dmv_fast.frame_size": json.dumps(list(shape.frame)),  # [height, width]
            "dmv_fast.fill": shape.fill,
            "dmv_fast.native_size": json.dumps(list(shape.native)),
        }
    return {
        **extra,
        "dmv_fast.model": source.slug,
        "dmv_fast.weights": source.name if source.kind != "local" else "local",
        "dmv_fast.weights_sha256": source.sha256,
        "dmv_fast.resolution": str(source.resolution * key["scaling"]),
        "dmv_fast.model_resolution": str(source.resolution),
        "dmv_fast.batch_size": str(key["batch_size"]),
        "dmv_fast.precision": key["precision"],
        "dmv_fast.pixel_format": key["pixel_format"],
        "dmv_fast.scaling": str(key["scaling"]),
        "dmv_fast.pixels": key["pixels"],
        "dmv_fast.conv_form": key.get("conv_form", "direct"),
        "dmv_fast.exporter_version": EXPORTER_VERSION,
        "dmv_fast.version": __version__,
        "dmv_fast.channel_width": str(config.channel_width),
    }


def export_graph(
    source: WeightsSource,
    key: dict[str, Any],
    destination: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    model: Any = None,
) -> dict[str, Any]:
    """Export the graph described by a cache ``key`` (:func:`dmv_fast.model.cache.graph_key`)
    for a resolved weights source to ``destination``; returns what its sidecar records
    (inputs, outputs, the check against PyTorch, versions).

    ``model``: the source's PyTorch model when the caller has it loaded already. An int8
    ``key`` is refused: int8 graphs are quantized from the fp32 one
    (:func:`dmv_fast_export.quantize.quantize_graph`).

    Raises:
        RuntimeError: the graph differs from PyTorch (nothing is left at ``destination``
            worth keeping: the caller discards it).
    """
    if key["precision"] == "int8":
        raise ValueError("int8 graphs are quantized from the fp32 graph, not exported directly")
    steps = 5
    report = progress or (lambda done, total: None)
    precision, batch_size = key["precision"], key["batch_size"]
    scaling, pixels, pixel_format = key["scaling"], key["pixels"], key["pixel_format"]
    path = Path(destination)
    logger.info("exporting %s (%s, batch %d)", source.name, precision, batch_size)
    report(0, steps)
    if model is None:
        model, config = load_model(source)
    else:
        config = model.config
    report(1, steps)
    folded = fold(model)
    report(2, steps)
    height, width = key["frame_size"]
    shape = shape_of(folded.resolution, (height, width), key.get("fill", "wide"))
    graph = build_graph(
        folded,
        batch_size,
        precision=precision,
        pixels=pixels,
        scaling=scaling,
        metadata=_metadata(source, key, config, shape),
        frame=shape.frame,
        fill=shape.fill,
    )
    if pixel_format == "yuv420p":
        graph = append_yuv420(graph, OUTPUT, YUV, keep_rgb=True)
    winograd: dict[str, Any] | None = None
    if key.get("conv_form") == "winograd":
        from dmv_fast_export.winograd import apply

        direct, (graph, winograd) = graph, apply(graph)
    _write(graph, path)
    del graph
    report(3, steps)
    check = validate(path, model, batch_size, precision, pixels, scaling, pixel_format, shape)
    if winograd is not None:
        winograd["max_pixel_diff"] = check["max_pixel_diff"]
        if check["max_pixel_diff"] > MAX_WINOGRAD_DIFF:
            # Rounding this far from PyTorch is not worth the speed: keep direct convolutions.
            logger.warning(
                "Winograd graph differs from PyTorch by %d levels (more than %d): exporting "
                "direct convolutions instead",
                check["max_pixel_diff"],
                MAX_WINOGRAD_DIFF,
            )
            for entry in direct.metadata_props:
                if entry.key == "dmv_fast.conv_form":
                    entry.value = "direct"
            _write(direct, path)
            check = validate(
                path, model, batch_size, precision, pixels, scaling, pixel_format, shape
            )
            winograd["applied"] = False
        else:
            winograd["applied"] = True
        del direct
    report(4, steps)
    if precision == "fp32" and check["max_pixel_diff"] > MAX_FP32_DIFF:
        raise RuntimeError(
            f"exported graph differs from PyTorch by {check['max_pixel_diff']} levels "
            f"(more than {MAX_FP32_DIFF}); not caching it"
        )
    if check.get("yuv_max_diff", 0) > MAX_YUV_DIFF:
        raise RuntimeError(
            f"the graph's YUV planes differ from the host conversion by "
            f"{check['yuv_max_diff']} levels; not caching it"
        )
    report(5, steps)
    logger.info(
        "exported %s; against PyTorch: max %d levels, PSNR %.1f dB",
        source.name,
        check["max_pixel_diff"],
        check["psnr_db"],
    )
    return {
        "inputs": {
            "noise": ["float32", [batch_size, NOISE_DIM]],
            "classes": ["float32", [batch_size, N_IMAGENET]],
            "bn_idx": ["int64", [2]],
            "bn_w": ["float32", [2]],
        },
        "output": {
            "frames": ["uint8", [batch_size, height, width, 3]],
            **(
                {YUV: ["uint8", [batch_size, height * 3 // 2, width]]}
                if pixel_format != "rgb24"
                else {}
            ),
        },
        "validation": check,
        **({"winograd": winograd} if winograd is not None else {}),
        "versions": {
            "dmv_fast": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
        },
    }
