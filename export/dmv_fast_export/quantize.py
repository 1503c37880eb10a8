"""int8 generator for the CPU: static QDQ quantization of an exported fp32 graph.

The fp32 graph (:mod:`dmv_fast_export.graph`) is quantized with ONNX Runtime's own
quantization tool: weights int8, symmetric, one scale per output channel; activations uint8,
asymmetric, with ranges calibrated on the vectors a render really feeds the generator
(:func:`dmv_fast.vectors.trajectory.compute_vectors` on synthesized music, at several truncations, the
graph's ``bn_idx``/``bn_w`` from :func:`dmv_fast.model.truncation.bn_inputs`). ONNX Runtime's CPU
provider fuses each ``DequantizeLinear -> Conv -> QuantizeLinear`` into an integer convolution.

Only convolutions and matrix products are quantized; the BatchNorm scale-and-shift, residual
sums, softmax and the pixel tail (stretch, rounding, Lanczos) stay float32. Some layers are kept
in float32 on purpose, by node-name group (:data:`GROUPS`): the conditioning matmuls (``first
linear``: class embedding, every BatchNorm's gain and bias, ``gen_z``), self-attention, and the
last convolution (``conv_to_rgb``). Which ones is measured by ``benchmarks/bench_int8.py``.

How the graph is quantized is a :class:`Recipe` (format, op types, activation type, extra
options of ONNX Runtime's quantizer); :data:`RECIPE` is the default. ``bench_int8.py
--recipes`` compares the others: QOperator instead of QDQ, the blocks' BatchNorm scale/shift,
ReLU, skip path and residual sums in int8 as well (fewer Q/DQ steps, but the per-sample
BatchNorm gains share one uint8 range and the pictures lose about 4 dB), and symmetric int8
activations (s8 x s8, slower than u8 x s8 on AVX2 without VNNI).

No torch here: quantizing needs onnx and onnxruntime only (an fp32 graph must exist, which
takes the export step once). The quality check against fp32 is :mod:`dmv_fast_export.quality`.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from dmv_fast.files import sha256_file
from dmv_fast.model.weights import Progress
from dmv_fast.version import __version__
from dmv_fast_export.feeds import calibration_feeds
from dmv_fast_export.quality import compare

logger = logging.getLogger("dmv_fast")

#: Under this PSNR against fp32 (dB) on any check truncation, quantizing logs a warning.
WARN_PSNR_DB = 30.0

#: Node-name patterns of the layer groups that may be kept in float32.
GROUPS: dict[str, str] = {
    "first_linear": r"^(embed|bn\.gamma_beta|gen_z\.matmul|canvas\.\w+)/",
    "attention": r"^layers\.\d+\.(theta_phi_g|logits|attn_g|o_conv)/",
    "last_conv": r"^conv_to_rgb/",
}
#: Kept in float32 by default (see benchmarks/results/int8_cpu.md for the measurement).
DEFAULT_KEEP = ("first_linear", "attention", "last_conv")
# Never quantized: the pixel tail (Lanczos matmuls of ``--scaling`` and frame sizes, pad).
_PIXEL_TAIL = r"^(lanczos|stretch|pixels|fixed|pad)\."
_OP_TYPES = ("Conv", "MatMul")


def layer_nodes(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Names of the graph's quantizable nodes (Conv, MatMul) per group of :data:`GROUPS`,
    plus ``"pixel_tail"`` and ``"body"`` (everything else)."""
    groups: dict[str, list[str]] = {name: [] for name in (*GROUPS, "pixel_tail", "body")}
    for node in model.graph.node:
        if node.op_type not in _OP_TYPES:
            continue
        if re.match(_PIXEL_TAIL, node.name):
            groups["pixel_tail"].append(node.name)
            continue
        group = next((g for g, pat in GROUPS.items() if re.match(pat, node.name)), "body")
        groups[group].append(node.name)
    return groups


def check_keep(keep: Iterable[str]) -> tuple[str, ...]:
    """Validate group names to keep in float32; returns them sorted."""
    keep = tuple(sorted(set(keep)))
    bad = [k for k in keep if k not in GROUPS]
    if bad:
        raise ValueError(f"unknown layer group {bad[0]!r}: expected some of {', '.join(GROUPS)}")
    return keep


# ---------------------------------------------------------------------------------------------
# Quantization


def equalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Normalise each channel of every convolution that feeds a conditional BatchNorm, in place.

    A convolution's output channels differ in mean and spread by orders of magnitude (the
    BatchNorm after it evens them out), and one uint8 range per tensor would leave the narrow
    channels a handful of levels. The convolution's weights and bias are shifted and scaled
    per channel by the BatchNorm's own standing statistics (averaged over the truncation
    steps) so that its channels come out near zero mean and unit spread, and the BatchNorm's
    per-sample scale and shift are corrected to match (``a / k`` and ``b + m * a``): the same
    function, up to float rounding, for every truncation.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {out: node for node in g.node for out in node.output}
    nodes = {node.name: node for node in g.node}
    split = nodes["bn.a_split/Split"]
    sizes = numpy_helper.to_array(inits[split.input[1]]).astype(int)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    part = {name: k for k, name in enumerate(split.output)}
    eps = float(numpy_helper.to_array(inits[nodes["bn.var_eps/Add"].input[1]]).reshape(-1)[0])
    n_cond = int(sizes.sum())
    var = numpy_helper.to_array(inits["bn.var.table"])[:, :n_cond].astype(np.float64)
    mean = numpy_helper.to_array(inits["bn.mean.table"])[:, :n_cond].astype(np.float64)
    k_all = np.ones(n_cond)
    m_all = np.zeros(n_cond)

    def convs_before(tensor: str) -> list[onnx.NodeProto] | None:
        node = producer.get(tensor)
        if node is None:
            return None
        if node.op_type == "Conv":
            return [node]
        if node.op_type in ("Reshape", "Unsqueeze"):
            return convs_before(node.input[0])
        if node.op_type == "Concat":
            found = [convs_before(x) for x in node.input]
            return None if any(f is None for f in found) else [c for f in found for c in f]
        return None

    def replace(name: str, value: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))

    for node in g.node:
        if node.op_type != "Mul" or len(node.input) != 2 or node.input[1] not in part:
            continue
        convs = convs_before(node.input[0])
        if not convs:
            continue
        lo = offsets[part[node.input[1]]]
        hi = lo + sizes[part[node.input[1]]]
        k = 1.0 / np.sqrt(var[:, lo:hi].mean(axis=0) + eps)
        m = mean[:, lo:hi].mean(axis=0)
        k_all[lo:hi], m_all[lo:hi] = k, m
        for conv in convs:
            w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
            replace(conv.input[1], w * k[:, None, None, None])
            if len(conv.input) > 2 and conv.input[2]:
                bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
            else:
                bias = np.zeros(len(k))
                name = f"{conv.name.split('/')[0]}.bias_eq"
                g.initializer.append(numpy_helper.from_array(np.zeros(len(k), np.float32), name))
                inits[name] = g.initializer[-1]
                del conv.input[2:]
                conv.input.append(name)
            replace(conv.input[2], (bias - m) * k)
    inv_k = numpy_helper.from_array((1.0 / k_all).astype(np.float32), "bn.equalize.inv_k")
    shift = numpy_helper.from_array(m_all.astype(np.float32), "bn.equalize.mean")
    g.initializer.extend([inv_k, shift])
    a, b = nodes["bn.a4/Reshape"], nodes["bn.b4/Reshape"]
    a32, b32 = a.input[0], b.input[0]
    extra = [
        onnx.helper.make_node("Mul", [a32, inv_k.name], ["bn.a32_eq"], name="bn.a32_eq/Mul"),
        onnx.helper.make_node("Mul", [a32, shift.name], ["bn.ma_eq"], name="bn.ma_eq/Mul"),
        onnx.helper.make_node("Add", [b32, "bn.ma_eq"], ["bn.b32_eq"], name="bn.b32_eq/Add"),
    ]
    a.input[0], b.input[0] = "bn.a32_eq", "bn.b32_eq"
    # Keep the node list topologically sorted: the new nodes go right before the reshapes.
    at = min(list(g.node).index(a), list(g.node).index(b))
    for i, node in enumerate(extra):
        g.node.insert(at + i, node)
    return model


def _graph_batch(model: onnx.ModelProto) -> int:
    for value in model.graph.input:
        if value.name == "noise":
            return int(value.type.tensor_type.shape.dim[0].dim_value)
    raise ValueError("not a dmv-fast generator graph (no 'noise' input)")


def calibrate(
    fp32_path: str | os.PathLike[str],
    ranges_path: str | os.PathLike[str],
    batches: Sequence[dict[str, np.ndarray]] | None = None,
) -> Path:
    """Record activation ranges of ``fp32_path`` (MinMax over ``batches``) into a JSON file.

    One calibration serves every choice of layers kept in float32 (:func:`quantize`).
    """
    from onnxruntime.quantization import CalibrationDataReader

    ranges_path = Path(ranges_path)
    model = equalize(onnx.load(os.fspath(fp32_path)))
    if batches is None:
        batches = calibration_feeds(_graph_batch(model))

    class Reader(CalibrationDataReader):
        """One batch per ``collect_data`` call (``CalibStridedMinMax``): the intermediate
        outputs of a single batch are held at a time."""

        def __init__(self) -> None:
            self.set_range(0, len(batches))

        def __len__(self) -> int:
            return len(batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(batches[start_index:end_index])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="dmv-int8-") as tmp:
        # By path: ONNX Runtime saves a model given as a proto with external data, rewriting
        # the proto itself to point at a temporary folder it then deletes.
        equalized = Path(tmp) / "equalized.onnx"
        onnx.save_model(model, os.fspath(equalized))
        del model
        _quantize(equalized, Path(tmp) / "all.onnx", (), Reader(), ranges_path)
    return ranges_path


@dataclass(frozen=True)
class Recipe:
    """How the graph is quantized (ONNX Runtime's ``quantize_static`` settings).

    Attributes:
        fmt: ``"qdq"`` (QuantizeLinear/DequantizeLinear around float ops, fused by ONNX
            Runtime) or ``"qoperator"`` (QLinearConv and friends written out).
        op_types: op types quantized. Conv and MatMul everywhere but the kept groups; the
            others (:data:`EXTRA_OP_TYPES`) only in the body's blocks (:data:`_BODY_EXTRA`),
            never in the conditioning path or the pixel tail.
        activation: ``"uint8"`` (asymmetric; u8 x s8 is the AVX2 fast path) or ``"int8"``.
        options: ``extra_options`` of ``quantize_static`` as ``(name, value)`` pairs.
    """

    fmt: str = "qdq"
    op_types: tuple[str, ...] = ("Conv", "MatMul")
    activation: str = "uint8"
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.fmt not in ("qdq", "qoperator"):
            raise ValueError(f"recipe format {self.fmt!r}: expected 'qdq' or 'qoperator'")
        if self.activation not in ("uint8", "int8"):
            raise ValueError(f"recipe activation {self.activation!r}: expected uint8 or int8")
        bad = [t for t in self.op_types if t not in (*_OP_TYPES, *EXTRA_OP_TYPES)]
        if bad:
            raise ValueError(f"recipe op type {bad[0]!r} is not quantizable here")


#: Op types besides Conv and MatMul a recipe may quantize (calibrated in every ranges file).
EXTRA_OP_TYPES = ("Add", "Mul", "Relu", "Concat", "Resize", "Reshape", "Unsqueeze", "Slice")
#: Body nodes the extra op types are quantized in: the blocks' BatchNorm scale/shift, ReLU,
#: the phase interleave of the up-sampling convolutions, the skip path and residual sum, and
#: the final BatchNorm (the conditioning ``bn.*`` tables, attention and the tail stay float).
_BODY_EXTRA = r"^(layers\.\d+\.(bn_\d|conv_\d|skip_|out/)|bn\.(scaled|shifted|relu)/)"
#: The recipe int8 graphs are made with (see benchmarks/results/int8_cpu.md).
RECIPE = Recipe()


def recipe_exclude(model: onnx.ModelProto, recipe: Recipe, keep: Sequence[str]) -> list[str]:
    """Names of the nodes ``recipe`` must leave in float32: the kept groups' and the pixel
    tail's Conv/MatMul, and every extra-op node outside :data:`_BODY_EXTRA`."""
    groups = layer_nodes(model)
    exclude = [n for g in (*keep, "pixel_tail") for n in groups[g]]
    extra = set(recipe.op_types) - set(_OP_TYPES)
    exclude += [
        node.name
        for node in model.graph.node
        if node.op_type in extra and not re.match(_BODY_EXTRA, node.name)
    ]
    return exclude


def _quantize(
    model: onnx.ModelProto | Path,
    out: Path,
    exclude: Sequence[str],
    reader: Any,
    ranges_path: Path,
    reduce_range: bool = False,
    recipe: Recipe = RECIPE,
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calibrating = reader is not None
    options = {"CalibStridedMinMax": 1} if calibrating else dict(recipe.options)
    # ONNX Runtime's quantizer logs advice through the root logger; keep it out of the user's.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(
            model if isinstance(model, onnx.ModelProto) else os.fspath(model),
            os.fspath(out),
            reader,
            quant_format=QuantFormat.QOperator if recipe.fmt == "qoperator" else QuantFormat.QDQ,
            op_types_to_quantize=list(
                (*_OP_TYPES, *EXTRA_OP_TYPES) if calibrating else recipe.op_types
            ),
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8 if recipe.activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=options,
            calibration_cache_path=ranges_path,
        )
    finally:
        root.setLevel(level)


def quantize(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    keep: Iterable[str] = DEFAULT_KEEP,
    ranges_path: str | os.PathLike[str] | None = None,
    reduce_range: bool = False,
    recipe: Recipe = RECIPE,
) -> Path:
    """Write the int8 graph of ``fp32_path`` to ``out_path`` (QDQ unless ``recipe`` says).

    Args:
        fp32_path: an fp32 generator graph (inputs ``noise [B,128]``, ``classes [B,1000]``,
            ``bn_idx``, ``bn_w``; output ``frames`` uint8 ``[B,H,W,3]``).
        out_path: where to write the quantized graph (same inputs and output).
        keep: layer groups (:data:`GROUPS`) left in float32.
        ranges_path: activation ranges from :func:`calibrate`; calibrated here (on render
            vectors, :func:`calibration_feeds`) when ``None`` or missing.
        reduce_range: 7-bit weights (for CPUs whose 8-bit dot products can saturate).
        recipe: the quantization settings (:data:`RECIPE`).
    """
    keep = check_keep(keep)
    model = equalize(onnx.load(os.fspath(fp32_path)))
    exclude = recipe_exclude(model, recipe, keep)
    with tempfile.TemporaryDirectory(prefix="dmv-int8-") as tmp:
        ranges = Path(ranges_path) if ranges_path is not None else Path(tmp) / "ranges.json"
        if not ranges.is_file():
            calibrate(fp32_path, ranges)
        _quantize(model, Path(out_path), exclude, None, ranges, reduce_range, recipe)
    quantized = onnx.load(os.fspath(out_path))
    meta = {p.key: p for p in quantized.metadata_props}
    extra = {"dmv_fast.precision": "int8", "dmv_fast.int8_fp32_groups": ",".join(keep) or "-"}
    for key, value in extra.items():
        if key in meta:
            meta[key].value = value
        else:
            quantized.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save_model(quantized, os.fspath(out_path))
    return Path(out_path)


def quantize_graph(
    fp32_path: Path,
    destination: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Quantize an fp32 graph to ``destination``; returns what its sidecar records (the
    quality against fp32, on fresh render vectors at :data:`CHECK_TRUNCATIONS`)."""
    report = progress or (lambda done, total: None)
    path = Path(destination)
    logger.info("quantizing %s to int8", Path(fp32_path).name)
    report(0, 3)
    quantize(fp32_path, path)
    report(1, 3)
    onnx.checker.check_model(os.fspath(path))
    quality = compare(path, fp32_path)  # fresh render vectors, CHECK_TRUNCATIONS
    report(2, 3)
    worst = min(q["psnr_db"] for q in quality.values())
    import onnxruntime as ort

    report(3, 3)
    logger.log(
        logging.WARNING if worst < WARN_PSNR_DB else logging.INFO,
        "quantized %s; against fp32: PSNR %.1f dB at the worst truncation%s",
        Path(fp32_path).name,
        worst,
        " (a draft: expect visible differences)" if worst < WARN_PSNR_DB else "",
    )
    return {
        "quantized_from": {"path": os.fspath(fp32_path), "sha256": sha256_file(fp32_path)},
        "fp32_groups": list(DEFAULT_KEEP),
        "validation": {"against": "fp32 graph", "truncations": quality},
        "versions": {
            "dmv_fast": __version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
    }
