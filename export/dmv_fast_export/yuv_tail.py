"""The YUV 4:2:0 tail of a GPU graph: the host conversion of :mod:`dmv_fast.video.yuv`, as ONNX nodes.

Appended at export for plans whose pixel format is ``yuv420p``, so the tail is part of the
cached graph and of its parity check.
"""

from __future__ import annotations

import numpy as np

from dmv_fast.video.yuv import BT601, OFFSETS, check_even


def append_yuv420(
    model, rgb_output: str | None = None, name: str = "yuv420", *, keep_rgb: bool = False
):
    """Append the conversion to an ONNX model whose output is uint8 ``[B, H, W, 3]``.

    Adds the output ``name``: uint8 ``[B, H * 3 // 2, W]``; the RGB output is removed unless
    ``keep_rgb``. Shapes must be static (they are: the exported graphs have a fixed batch and
    size).

    Args:
        model: ``onnx.ModelProto``.
        rgb_output: the RGB output's name (default: the model's first output).
        keep_rgb: keep the RGB output beside the new one.

    Returns:
        A new ``onnx.ModelProto``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    out = next(o for o in graph.output if rgb_output in (None, o.name))
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[3] != 3 or not all(dims):
        raise ValueError(f"expected a static uint8 [B, H, W, 3] output, got {dims}")
    b, h, w, _ = dims
    check_even(h, w)

    def const(cname: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, name=f"{name}/{cname}"))
        return f"{name}/{cname}"

    mat = const("matrix", BT601.T.astype(np.float32))
    off = const("offsets", OFFSETS.astype(np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    lo = const("lo", np.array(0.0, dtype=np.float32))
    hi = const("hi", np.array(255.0, dtype=np.float32))
    s_y = const("shape_y", np.array([b, h, w], dtype=np.int64))
    s_c = const("shape_c", np.array([b, h // 2, 2, w // 2, 2, 2], dtype=np.int64))
    s_uv = const("shape_uv", np.array([b, h // 2, w], dtype=np.int64))
    starts0 = const("s0", np.array([0], dtype=np.int64))
    ends1 = const("e1", np.array([1], dtype=np.int64))
    ends3 = const("e3", np.array([3], dtype=np.int64))
    axis3 = const("ax3", np.array([3], dtype=np.int64))
    axes_mean = const("ax_mean", np.array([2, 4], dtype=np.int64))

    p = f"{name}/"
    nodes = [
        helper.make_node("Cast", [out.name], [p + "f"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", [p + "f", mat], [p + "m"]),
        helper.make_node("Add", [p + "m", off], [p + "ycc"]),
        helper.make_node("Slice", [p + "ycc", starts0, ends1, axis3], [p + "y4"]),
        helper.make_node("Reshape", [p + "y4", s_y], [p + "y"]),
        helper.make_node("Slice", [p + "ycc", ends1, ends3, axis3], [p + "c"]),
        helper.make_node("Reshape", [p + "c", s_c], [p + "c6"]),
        helper.make_node("ReduceMean", [p + "c6", axes_mean], [p + "cm"], keepdims=0),
        helper.make_node("Transpose", [p + "cm"], [p + "ct"], perm=[0, 3, 1, 2]),
        helper.make_node("Reshape", [p + "ct", s_uv], [p + "uv"]),
        helper.make_node("Concat", [p + "y", p + "uv"], [p + "cat"], axis=1),
        helper.make_node("Add", [p + "cat", half], [p + "r"]),
        helper.make_node("Floor", [p + "r"], [p + "fl"]),
        helper.make_node("Clip", [p + "fl", lo, hi], [p + "cl"]),
        helper.make_node("Cast", [p + "cl"], [name], to=TensorProto.UINT8),
    ]
    graph.node.extend(nodes)
    if not keep_rgb:
        graph.output.remove(out)
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.UINT8, [b, h * 3 // 2, w]))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 18:  # ReduceMean takes its axes as an input from opset 18
        raise ValueError(f"append_yuv420 needs opset >= 18, the model has {opset}")
    onnx.checker.check_model(model)
    return model
