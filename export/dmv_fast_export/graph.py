"""Build the generator's ONNX graph from folded arrays (no tracing, no torch).

Writing the graph node by node keeps it lean and keeps the traps out: the truncation is never
a constant (the host feeds ``bn_idx``/``bn_w``), shapes are static (one batch size, so CUDA
graphs and TensorRT engines stay possible), and fp16 graphs keep in float32 exactly what
needs it (inputs, the BatchNorm statistics, the pixel conversion, the output).

Inputs: ``noise`` float32 ``[B, 128]``, ``classes`` float32 ``[B, 1000]``, ``bn_idx`` int64
``[2]``, ``bn_w`` float32 ``[2]`` (see :func:`dmv_fast.model.truncation.bn_inputs`).
Output: ``frames`` uint8 ``[B, H, W, 3]`` (``H = W = resolution * scaling`` for a square
frame; any even ``(H, W)`` otherwise, see :mod:`dmv_fast.settings.shape`).

Every map is ``(h, w)``: a wide canvas widens the first map (:mod:`dmv_fast_export.canvas`)
and the layers after it take its shape as it is.

Forms that differ from the PyTorch model but compute the same function:

- conditional BatchNorm ``(x - mean) / sqrt(var + eps) * (1 + gamma) + beta`` is one
  per-sample scale and shift ``x * a + b``; all ``a``/``b`` come from one MatMul;
- an up-sampling block's nearest-neighbour up-sampling followed by a 3x3 convolution is four
  2x2 convolutions on the small image (one per output phase), then interleaved:
  2.25x fewer multiply-adds for those convolutions, the same sums up to float rounding;
- ``conv_to_rgb``, cut to its 3 used outputs, is a 1x1 convolution to its 27 taps whose
  shifted maps are summed (the same multiply-adds).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dmv_fast.settings.shape import shape_of
from dmv_fast_export.canvas import Canvas, make_canvas
from dmv_fast_export.fold import Attention, Block, Folded
from dmv_fast_export.pixels import FrameTail, frame_tail

OPSET = 18
INPUTS = ("noise", "classes", "bn_idx", "bn_w")
OUTPUT = "frames"

_F32 = TensorProto.FLOAT
_F16 = TensorProto.FLOAT16


class _Builder:
    def __init__(self, dtype: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.dtype = dtype
        self.np_dtype = np.float16 if dtype == _F16 else np.float32
        self._names: set[str] = set()
        self._consts: dict[tuple[Any, ...], str] = {}

    def name(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def init(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name=name))
        return name

    def weight(self, base: str, value: np.ndarray) -> str:
        """A weight in the graph's compute precision."""
        return self.init(base, value.astype(self.np_dtype))

    def const(self, value: Any, dtype: Any = np.float32) -> str:
        """A small shared constant (scalars, shapes, axes)."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init("const", arr)
        return self._consts[key]

    def ints(self, *values: int) -> str:
        return self.const(list(values), np.int64)

    def op(self, op_type: str, inputs: list[str], base: str, n_out: int = 1, **attrs: Any):
        outs = [self.name(f"{base}" if n_out == 1 else f"{base}_{i}") for i in range(n_out)]
        node_name = self.name(f"{base}/{op_type}")
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=node_name, **attrs))
        return outs[0] if n_out == 1 else outs


def _subpixel_kernels(w: np.ndarray) -> list[np.ndarray]:
    """2x2 kernels of a 3x3 conv applied after 2x nearest up-sampling, per output phase.

    Output row ``2m`` sees input rows ``m-1`` (tap 0) and ``m`` (taps 1+2); row ``2m+1`` sees
    ``m`` (taps 0+1) and ``m+1`` (tap 2). Same for columns. Phases in DepthToSpace (DCR)
    order: (0,0), (0,1), (1,0), (1,1).
    """
    w64 = w.astype(np.float64)
    rows = [
        [w64[:, :, 0:1, :], w64[:, :, 1:3, :].sum(axis=2, keepdims=True)],
        [w64[:, :, 0:2, :].sum(axis=2, keepdims=True), w64[:, :, 2:3, :]],
    ]
    kernels = []
    for i in range(2):
        r = np.concatenate(rows[i], axis=2)  # [O, I, 2, 3]
        cols = [
            [r[..., 0:1], r[..., 1:3].sum(axis=3, keepdims=True)],
            [r[..., 0:2].sum(axis=3, keepdims=True), r[..., 2:3]],
        ]
        for j in range(2):
            kernels.append(np.concatenate(cols[j], axis=3).astype(np.float32))
    return kernels


_PHASE_PADS = [[1, 1, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 1, 1]]


class _Generator:
    def __init__(self, f: Folded, batch: int, precision: str, canvas: Canvas | None) -> None:
        self.f = f
        self.batch = batch
        self.g = _Builder(_F16 if precision == "fp16" else _F32)
        self.fp16 = precision == "fp16"
        self.canvas = canvas
        cells = (4, 4) if canvas is None else canvas.first_map
        step = f.resolution // 4
        self.native = (cells[0] * step, cells[1] * step)  # (h, w) of the picture painted

    def cast(self, x: str, to: int, base: str) -> str:
        return self.g.op("Cast", [x], base, to=to)

    def conv(self, x: str, w: np.ndarray, b: np.ndarray | None, base: str, **attrs: Any) -> str:
        inputs = [x, self.g.weight(f"{base}.weight", w)]
        if b is not None:
            inputs.append(self.g.weight(f"{base}.bias", b))
        return self.g.op("Conv", inputs, base, **attrs)

    def bn_relu(self, x: str, bn: tuple[int, int], base: str) -> str:
        g = self.g
        a, b = self.bn_ab[bn[0]]
        y = g.op("Mul", [x, a], f"{base}.scaled")
        y = g.op("Add", [y, b], f"{base}.shifted")
        return g.op("Relu", [y], f"{base}.relu")

    def upsample(self, x: str, base: str) -> str:
        scales = self.g.const([1.0, 1.0, 2.0, 2.0])
        return self.g.op(
            "Resize", [x, "", scales], base, mode="nearest", nearest_mode="floor",
            coordinate_transformation_mode="asymmetric",
        )  # fmt: skip

    def interleave(self, phases: list[str], channels: int, size: tuple[int, int], base: str) -> str:
        """Four ``[B, C, h, w]`` phase maps -> ``[B, C, 2h, 2w]``, pixel (2m+i, 2n+j) from
        phase (i, j): DepthToSpace's result, by concatenations that copy whole rows (ONNX
        Runtime's DepthToSpace is a slow single-threaded shuffle)."""
        g, b = self.g, self.batch
        height, width = size
        rows = []
        for i in range(2):
            pair = [
                g.op("Unsqueeze", [phases[2 * i + j], g.ints(4)], f"{base}.p{i}{j}")
                for j in range(2)
            ]
            cols = g.op("Concat", pair, f"{base}.cols{i}", axis=4)  # [B, C, h, w, 2]
            shape = g.ints(b, channels, height, 1, 2 * width)
            rows.append(g.op("Reshape", [cols, shape], f"{base}.row{i}"))
        out = g.op("Concat", rows, f"{base}.rows", axis=3)  # [B, C, h, 2, 2w]
        return g.op("Reshape", [out, g.ints(b, channels, 2 * height, 2 * width)], base)

    def block(self, blk: Block, x: str, size: tuple[int, int], base: str) -> str:
        g = self.g
        h = self.bn_relu(x, blk.bn[0], f"{base}.bn_0")
        h = self.conv(h, *blk.conv[0], f"{base}.conv_0")
        h = self.bn_relu(h, blk.bn[1], f"{base}.bn_1")
        w1, b1 = blk.conv[1]
        if blk.up:
            phases = [
                self.conv(h, k, b1, f"{base}.conv_1.phase{p}", pads=_PHASE_PADS[p])
                for p, k in enumerate(_subpixel_kernels(w1))
            ]
            h = self.interleave(phases, w1.shape[0], size, f"{base}.conv_1")
        else:
            h = self.conv(h, w1, b1, f"{base}.conv_1", pads=[1, 1, 1, 1])
        h = self.bn_relu(h, blk.bn[2], f"{base}.bn_2")
        h = self.conv(h, *blk.conv[2], f"{base}.conv_2", pads=[1, 1, 1, 1])
        h = self.bn_relu(h, blk.bn[3], f"{base}.bn_3")
        h = self.conv(h, *blk.conv[3], f"{base}.conv_3")
        skip = x
        if blk.c_out != blk.c_in:
            skip = g.op(
                "Slice", [skip, g.ints(0), g.ints(blk.c_out), g.ints(1)], f"{base}.skip_drop"
            )
        if blk.up:
            skip = self.upsample(skip, f"{base}.skip_up")
        return g.op("Add", [h, skip], f"{base}.out")

    def attention(self, att: Attention, x: str, size: tuple[int, int], base: str) -> str:
        """Self-attention over the whole ``(h, w)`` map (any even size: phi and g are
        max-pooled 2x2)."""
        g = self.g
        c = att.channels
        hw = size[0] * size[1]
        tpg = self.conv(x, att.w_tpg, None, f"{base}.theta_phi_g")
        theta, pg = g.op(
            "Split", [tpg, g.ints(c // 8, c // 8 + c // 2)], f"{base}.split", n_out=2, axis=1
        )
        pg = g.op("MaxPool", [pg], f"{base}.pool", kernel_shape=[2, 2], strides=[2, 2])
        phi, gv = g.op("Split", [pg, g.ints(c // 8, c // 2)], f"{base}.split_pg", n_out=2, axis=1)
        theta = g.op("Reshape", [theta, g.ints(self.batch, c // 8, hw)], f"{base}.theta")
        phi = g.op("Reshape", [phi, g.ints(self.batch, c // 8, hw // 4)], f"{base}.phi")
        gv = g.op("Reshape", [gv, g.ints(self.batch, c // 2, hw // 4)], f"{base}.g")
        theta_t = g.op("Transpose", [theta], f"{base}.theta_t", perm=[0, 2, 1])
        attn = g.op("MatMul", [theta_t, phi], f"{base}.logits")
        attn = g.op("Softmax", [attn], f"{base}.attn", axis=-1)
        attn_t = g.op("Transpose", [attn], f"{base}.attn_t", perm=[0, 2, 1])
        out = g.op("MatMul", [gv, attn_t], f"{base}.attn_g")
        out = g.op("Reshape", [out, g.ints(self.batch, c // 2, *size)], f"{base}.attn_g4")
        out = self.conv(out, att.w_out, None, f"{base}.o_conv")
        return g.op("Add", [x, out], f"{base}.out")

    def batchnorm_coefficients(self, cond32: str) -> None:
        """Per-sample ``a``, ``b`` of every conditional BN, and the final BN's, in float32."""
        g, f = self.g, self.f
        mix = g.op("Unsqueeze", ["bn_w", g.ints(1)], "bn.mix")

        def stats(table: np.ndarray, base: str) -> str:
            rows = g.op(
                "Gather", [g.init(f"{base}.table", table), "bn_idx"], f"{base}.rows", axis=0
            )
            rows = g.op("Mul", [rows, mix], f"{base}.weighted")
            return g.op("ReduceSum", [rows, g.ints(0)], base, keepdims=0)

        mean = stats(f.stats_mean, "bn.mean")
        var = stats(f.stats_var, "bn.var")
        std = g.op("Sqrt", [g.op("Add", [var, g.const(f.eps)], "bn.var_eps")], "bn.std")
        inv = g.op("Reciprocal", [std], "bn.inv_std")
        n = f.n_cond
        gb = g.op("MatMul", [cond32, g.init("bn.cond.weight", f.cond_w)], "bn.gamma_beta")
        bias = np.concatenate([np.ones(n, np.float32), np.zeros(n, np.float32)])
        gb = g.op("Add", [gb, g.init("bn.cond.one", bias)], "bn.scale_offset")
        scale, offset = g.op("Split", [gb, g.ints(n, n)], "bn.split", n_out=2, axis=1)
        inv_c = g.op("Slice", [inv, g.ints(0), g.ints(n)], "bn.inv_cond")
        mean_c = g.op("Slice", [mean, g.ints(0), g.ints(n)], "bn.mean_cond")
        a = g.op("Mul", [scale, inv_c], "bn.a32")
        b = g.op("Sub", [offset, g.op("Mul", [mean_c, a], "bn.mean_a")], "bn.b32")
        # The final BN is not conditional: one scale and shift for every sample.
        lo, hi = f.final_bn[0], f.final_bn[0] + f.final_bn[1]
        inv_f = g.op("Slice", [inv, g.ints(lo), g.ints(hi)], "bn.inv_final")
        mean_f = g.op("Slice", [mean, g.ints(lo), g.ints(hi)], "bn.mean_final")
        af = g.op("Mul", [inv_f, g.init("bn.final.weight", f.final_weight)], "bn.final.a32")
        bf = g.op(
            "Sub",
            [g.init("bn.final.bias", f.final_bias), g.op("Mul", [mean_f, af], "bn.final.ma")],
            "bn.final.b32",
        )
        if self.fp16:
            a, b = self.cast(a, _F16, "bn.a"), self.cast(b, _F16, "bn.b")
            af, bf = self.cast(af, _F16, "bn.final.a"), self.cast(bf, _F16, "bn.final.b")
        # One Split per coefficient hands every BatchNorm its [B, C, 1, 1] slice (two nodes
        # instead of four small ones per BatchNorm).
        bns = sorted({bn for layer in f.layers if isinstance(layer, Block) for bn in layer.bn})
        sizes = [n for _, n in bns]
        assert [o for o, _ in bns] == list(np.cumsum([0, *sizes[:-1]])) and sum(sizes) == n
        parts = {}
        for name, coef in (("a", a), ("b", b)):
            coef = g.op("Reshape", [coef, g.ints(self.batch, n, 1, 1)], f"bn.{name}4")
            parts[name] = g.op(
                "Split", [coef, g.ints(*sizes)], f"bn.{name}_split", n_out=len(sizes), axis=1
            )
            if len(sizes) == 1:
                parts[name] = [parts[name]]
        self.bn_ab = {o: (parts["a"][k], parts["b"][k]) for k, (o, _) in enumerate(bns)}
        shape = g.ints(1, f.final_bn[1], 1, 1)
        self.final_a = g.op("Reshape", [af, shape], "bn.final.a4")
        self.final_b = g.op("Reshape", [bf, shape], "bn.final.b4")

    def to_rgb(self, x: str) -> str:
        """``conv_to_rgb`` (3x3, 3 outputs) as a 1x1 conv to its 27 taps, shifted and summed.

        Same multiply-adds as the 3x3 conv with 3 outputs, but a 27-channel 1x1 conv keeps
        blocked CPU kernels busy, where a 3-channel output would be padded to a whole block.
        """
        g, f = self.g, self.f
        n_out, (height, width) = f.rgb_w.shape[0], self.native
        taps = [(r, s) for r in range(3) for s in range(3)]
        w_taps = np.concatenate([f.rgb_w[:, :, r, s] for r, s in taps])[:, :, None, None]
        t = self.conv(x, w_taps, None, "conv_to_rgb")
        t = g.op("Pad", [t, g.ints(0, 0, 1, 1, 0, 0, 1, 1)], "conv_to_rgb.pad")
        # Output pixel (y, x) takes tap (r, s) from input pixel (y + r - 1, x + s - 1), which
        # sits at (y + r, x + s) in the padded map.
        parts = [
            g.op(
                "Slice",
                [
                    t,
                    g.ints(k * n_out, r, s),
                    g.ints((k + 1) * n_out, r + height, s + width),
                    g.ints(1, 2, 3),
                ],
                f"conv_to_rgb.tap{k}",
            )  # fmt: skip
            for k, (r, s) in enumerate(taps)
        ]
        y = g.op("Sum", parts, "conv_to_rgb.sum")
        bias = g.weight("conv_to_rgb.bias", f.rgb_b.reshape(1, n_out, 1, 1))
        return g.op("Add", [y, bias], "conv_to_rgb.out")

    def first_map(self, embed: str) -> str:
        """The wide canvas's first map ``[B, 16 ch, h0, w0]``: ``gen_z`` of every tile's
        condition (the frame's class embedding, the tile's noise), blended into place."""
        g, f, canvas, b = self.g, self.f, self.canvas, self.batch
        assert canvas is not None
        k, dim, ch = canvas.tiles, canvas.noise_maps.shape[0], 16 * f.channel_width
        z = g.op("MatMul", ["noise", g.init("canvas.noise_maps", canvas.noise_maps)],
                 "canvas.noise")  # fmt: skip
        z = g.op("Reshape", [z, g.ints(b, k, dim)], "canvas.noise3")
        e = g.op("Unsqueeze", [embed, g.ints(1)], "canvas.embed3")
        e = g.op("Expand", [e, g.ints(b, k, embed_dim := f.embed.shape[1])], "canvas.embed_k")
        cond = g.op("Concat", [z, e], "canvas.cond", axis=2)  # [B, K, 128 + embed_dim]
        assert dim + embed_dim == f.gen_z_w.shape[0]
        if self.fp16:
            cond = self.cast(cond, _F16, "canvas.cond16")
        z = g.op("MatMul", [cond, g.weight("gen_z.weight", f.gen_z_w)], "gen_z.matmul")
        z = g.op("Add", [z, g.weight("gen_z.bias", f.gen_z_b)], "gen_z")
        z = g.op("Reshape", [z, g.ints(b, k, ch, 4, 4)], "canvas.tiles")
        place = canvas.placement
        if canvas.wide:  # tile cells side by side along the width, then placed
            z = g.op("Transpose", [z], "canvas.tiles_w", perm=[0, 2, 3, 1, 4])
            z = g.op("Reshape", [z, g.ints(b, ch, 4, k * 4)], "canvas.cells")
            return g.op("MatMul", [z, g.weight("canvas.placement", place)], "canvas.map")
        z = g.op("Transpose", [z], "canvas.tiles_h", perm=[0, 2, 1, 3, 4])
        z = g.op("Reshape", [z, g.ints(b, ch, k * 4, 4)], "canvas.cells")
        return g.op("MatMul", [g.weight("canvas.placement", place.T), z], "canvas.map")

    def body(self) -> str:
        """noise, classes -> float32 image ``[B, 3, h, w]`` in [-1, 1] (``(h, w)`` the
        painted canvas: ``(R, R)`` unless the first map is widened)."""
        g, f = self.g, self.f
        embed = g.op("MatMul", ["classes", g.init("embeddings.weight", f.embed)], "embed")
        cond32 = g.op("Concat", ["noise", embed], "cond", axis=1)
        self.batchnorm_coefficients(cond32)
        if self.canvas is None:
            cond = self.cast(cond32, _F16, "cond16") if self.fp16 else cond32
            z = g.op("MatMul", [cond, g.weight("gen_z.weight", f.gen_z_w)], "gen_z.matmul")
            z = g.op("Add", [z, g.weight("gen_z.bias", f.gen_z_b)], "gen_z")
            shape = g.ints(self.batch, 16 * f.channel_width, 4, 4)
            x = g.op("Reshape", [z, shape], "gen_z.nchw")
            size = (4, 4)
        else:
            x = self.first_map(embed)
            size = self.canvas.first_map
        for i, layer in enumerate(f.layers):
            if isinstance(layer, Block):
                x = self.block(layer, x, size, f"layers.{i}")
                size = (size[0] * 2, size[1] * 2) if layer.up else size
            else:
                x = self.attention(layer, x, size, f"layers.{i}")
        y = g.op("Mul", [x, self.final_a], "bn.scaled")
        y = g.op("Add", [y, self.final_b], "bn.shifted")
        y = g.op("Relu", [y], "bn.relu")
        y = g.op("Tanh", [self.to_rgb(y)], "tanh")
        if self.fp16:
            y = self.cast(y, _F32, "image32")
        return y

    def pixels(self, x: str, pixels: str, tail: FrameTail | int) -> str:
        """float32 ``[B, 3, h, w]`` -> uint8 ``[B, H, W, 3]`` (SPEC §5, then the frame's
        size and fill: :func:`dmv_fast_export.pixels.frame_tail`; an integer is the
        ``--scaling`` of a square picture)."""
        if isinstance(tail, int):
            side = self.f.resolution
            tail = frame_tail(shape_of(side, (side * tail, side * tail), "wide"))
        g = self.g
        if pixels == "stretch":
            lo = g.op("ReduceMin", [x, g.ints(1, 2, 3)], "stretch.min", keepdims=1)
            hi = g.op("ReduceMax", [x, g.ints(1, 2, 3)], "stretch.max", keepdims=1)
            ptp = g.op("Sub", [hi, lo], "stretch.ptp")
            # ptp == 0 (a flat frame) gives 0 everywhere, like scipy's bytescale, not NaN.
            ptp = g.op("Max", [ptp, g.const(1e-30)], "stretch.ptp_safe")
            gain = g.op("Div", [g.const(255.0), ptp], "stretch.gain")
            y = g.op("Mul", [g.op("Sub", [x, lo], "stretch.shift"), gain], "stretch.scaled")
        else:
            y = g.op("Add", [x, g.const(1.0)], "fixed.shift")
            y = g.op("Mul", [y, g.const(127.5)], "fixed.scaled")
        y = g.op("Clip", [y, g.const(0.0), g.const(255.0)], "pixels.clip")
        y = g.op("Add", [y, g.const(0.5)], "pixels.round")
        if not tail.identity:
            y = g.op("Floor", [y], "pixels.uint8")
            picture = y
            y = self.resize(y, tail)
            if tail.background is not None:
                y = self.pad(picture, y, tail)
        # Transpose before the cast: TensorRT handles uint8 only at casts and graph outputs.
        y = g.op("Transpose", [y], "pixels.nhwc", perm=[0, 2, 3, 1])
        return g.op("Cast", [y], OUTPUT, to=TensorProto.UINT8)

    def resize(self, y: str, tail: FrameTail) -> str:
        """PIL's two-pass 8-bit Lanczos resize (horizontal, then vertical) as MatMuls."""
        g, mats = self.g, tail.main
        if mats.horizontal is not None:
            t = g.op("MatMul", [y, g.init("lanczos.horizontal", mats.horizontal.T)], "lanczos.h")
            t = g.op("Add", [t, g.const(0.5)], "lanczos.h_round")
            y = g.op("Floor", [g.op("Clip", [t, g.const(0.0), g.const(255.0)], "lanczos.h_clip")],
                     "lanczos.h_uint8")  # fmt: skip
        if mats.vertical is not None:
            t = g.op("MatMul", [g.init("lanczos.vertical", mats.vertical), y], "lanczos.v")
            t = g.op("Add", [t, g.const(0.5)], "lanczos.v_round")
            y = g.op("Clip", [t, g.const(0.0), g.const(255.0)], "lanczos.v_clip")
        return y

    def pad(self, picture: str, centre: str, tail: FrameTail) -> str:
        """``centre`` (the resized square) on the blurred cover of ``picture``."""
        g = self.g
        assert tail.background is not None
        cover_v, cover_h = tail.background
        t = g.op("MatMul", [g.init("pad.vertical", cover_v), picture], "pad.v")
        t = g.op("MatMul", [t, g.init("pad.horizontal", cover_h.T)], "pad.h")
        t = g.op("Add", [t, g.const(0.5)], "pad.round")
        cover = g.op("Floor", [g.op("Clip", [t, g.const(0.0), g.const(255.0)], "pad.clip")],
                     "pad.uint8")  # fmt: skip
        (top, left), (height, width) = tail.offset, tail.frame
        axis, start, total = (3, left, width) if left else (2, top, height)
        before = g.op("Slice", [cover, g.ints(0), g.ints(start), g.ints(axis)], "pad.before")
        after = g.op("Slice", [cover, g.ints(total - start), g.ints(total), g.ints(axis)],
                     "pad.after")  # fmt: skip
        return g.op("Concat", [before, centre, after], "pad.frame", axis=axis)


def build_graph(
    folded: Folded,
    batch_size: int,
    precision: str = "fp32",
    pixels: str = "stretch",
    scaling: int = 1,
    metadata: dict[str, str] | None = None,
    *,
    frame: tuple[int, int] | None = None,
    fill: str = "wide",
    canvas: Canvas | None = None,
) -> onnx.ModelProto:
    """The ONNX model of the generator with its pixel post-processing.

    Args:
        folded: arrays from :func:`dmv_fast_export.fold.fold`.
        batch_size: the static batch size.
        precision: ``"fp32"`` or ``"fp16"`` (convolutions and activations).
        pixels: ``"stretch"`` or ``"fixed"``.
        scaling: integer Lanczos upscaling factor (1 = none); ignored when ``frame`` is given.
        metadata: written into the model's ``metadata_props``.
        frame: ``(height, width)`` of the output frames (None: square, resolution * scaling).
        fill: ``"wide"``, ``"crop"`` or ``"pad"`` (:mod:`dmv_fast.settings.shape`).
        canvas: how a wide first map is made (default :func:`~dmv_fast_export.canvas.make_canvas`
            of the frame's first map; another one only to measure the choice against).
    """
    r = folded.resolution
    shape = shape_of(r, (r * scaling, r * scaling) if frame is None else frame, fill)
    if canvas is None and shape.first_map != (4, 4):
        canvas = make_canvas(shape.first_map)
    gen = _Generator(folded, batch_size, precision, canvas)
    image = gen.body()
    painted = shape.native if canvas is None else gen.native
    tail = frame_tail(dataclasses.replace(shape, native=painted))
    frames = gen.pixels(image, pixels, tail)
    assert frames == OUTPUT
    height, width = shape.frame
    b = batch_size
    graph = helper.make_graph(
        gen.g.nodes,
        "dmv_fast_biggan_deep",
        inputs=[
            helper.make_tensor_value_info("noise", _F32, [b, 128]),
            helper.make_tensor_value_info("classes", _F32, [b, 1000]),
            helper.make_tensor_value_info("bn_idx", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("bn_w", _F32, [2]),
        ],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.UINT8, [b, height, width, 3])],
        initializer=gen.g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="dmv-fast",
        doc_string="BigGAN-deep generator with in-graph pixel conversion (dmv-fast)",
    )
    model.ir_version = 9
    for k, v in (metadata or {}).items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=str(v)))
    return model
