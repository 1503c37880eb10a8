"""Winograd forms of the CPU graph's 3x3 convolutions: a pass over the built ONNX graph.

A stride-1 3x3 convolution computed as Winograd's F(m x m, 3 x 3) takes ``(m + 2)^2``
multiply-adds per input and output channel pair for every ``m x m`` output tile, where the
direct form takes ``9 m^2``: 2.25x fewer for m = 2, 4x for m = 4. The pass rewrites chosen
``Conv`` nodes of the graph :func:`dmv_fast_export.graph.build_graph` wrote into three steps of
plain ONNX operators that ONNX Runtime's CPU provider runs well:

1. input transform: the input seen as ``B * C`` one-channel images, one ``Conv`` with the
   ``(m+2)^2`` transform kernels (``B^T d B`` of every ``(m+2) x (m+2)`` tile, stride ``m``;
   the zero padding is the ``Conv``'s own), then one ``Transpose`` to ``[(m+2)^2, C, B * T]``;
2. one batched ``MatMul`` over the ``(m+2)^2`` tile positions with the transformed weights
   ``G g G^T`` (computed once here, in float64);
3. output transform: ``A^T M A`` of every tile as one ``ConvTranspose`` (kernel ``m``, stride
   ``m``, one group per output channel, the bias folded in), which also puts every tile's
   ``m x m`` pixels in place.

An up-sampling block's nearest up-sampling + 3x3 convolution, which the graph computes as four
2x2 phase convolutions on the small image (:func:`dmv_fast_export.graph._subpixel_kernels`),
is one 3x3 convolution of the small image with ``4 * O`` outputs (each phase's 2x2 kernel
placed in a 3x3 window): its Winograd form shares one input transform between the four phases
and its output transform (kernel ``2m``, stride ``2m``) interleaves them.

Which layers take which tile is :func:`tile_for`, measured on the machine class the plan
chooses this form for (``benchmarks/bench_winograd.py``); a layer it leaves at 0 stays a
direct convolution. The transform matrices come from :func:`transforms` (interpolation points
0, ±1, ±2, ...). GPU plans never take this pass (cuDNN and TensorRT choose their own
algorithms).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

#: The tile sizes ``m`` of F(m x m, 3 x 3) the pass can write.
TILES = (2, 4, 6)
#: Interpolation points of the transforms, in the order they are used (infinity last).
_POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
_UPSAMPLE_OPS = ("Unsqueeze", "Concat", "Reshape")


def transforms(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matrices of Winograd's F(m, r): ``y = A^T [(G g) * (B^T d)]`` for a 1-D tile.

    Args:
        m: output tile length; r: kernel length.

    Returns:
        ``A^T`` float64 ``[m, n]``, ``G`` ``[n, r]``, ``B^T`` ``[n, n]`` with ``n = m + r - 1``:
        for an input tile ``d [n]`` and a kernel ``g [r]``, ``y[k] = sum_j d[k + j] g[j]``.
    """
    n = m + r - 1
    if n - 1 > len(_POINTS):
        raise ValueError(f"F({m}, {r}) needs {n - 1} points, have {len(_POINTS)}")
    points = _POINTS[: n - 1]
    at = np.zeros((m, n))
    g = np.zeros((n, r))
    for i, p in enumerate(points):
        at[:, i] = [p**k for k in range(m)]
        f = np.prod([p - q for j, q in enumerate(points) if j != i])
        g[i] = [p**k / f for k in range(r)]
    at[m - 1, n - 1] = 1.0  # the point at infinity
    g[n - 1, r - 1] = 1.0
    # B^T follows from A^T and G: sum_i A^T[k, i] G[i, j] B^T[i, l] = [l == k + j].
    rows = np.zeros((m * r * n, n * n))
    rhs = np.zeros(m * r * n)
    for row, (k, j, col) in enumerate(itertools.product(range(m), range(r), range(n))):
        coef = np.zeros((n, n))
        coef[:, col] = at[k] * g[:, j]
        rows[row] = coef.ravel()
        rhs[row] = 1.0 if col == k + j else 0.0
    bt = np.linalg.lstsq(rows, rhs, rcond=None)[0].reshape(n, n)
    bt = np.round(bt * 64) / 64  # exact dyadic entries (the solve leaves ~1e-15 noise)
    return at, g, bt


# ---------------------------------------------------------------------------------------------
# Where the pass can work


@dataclass(frozen=True)
class Site:
    """A convolution the pass can rewrite.

    Attributes:
        name: the layer, e.g. ``layers.2.conv_1``.
        kind: ``"conv3x3"`` (a stride-1 3x3 convolution, padding 1) or ``"upsample"`` (the
            four 2x2 phase convolutions of a nearest up-sampling + 3x3 convolution and the
            nodes that interleave them).
        x: the input tensor ``[B, C, H, W]``; y: the output tensor (``[B, O, H, W]``, or
            ``[B, O, 2H, 2W]`` for ``upsample``), which keeps its name.
        shape: ``(B, C, H, W)`` of ``x``.
        weight: float64 ``[P * O, C, 3, 3]``, ``P = 4`` phases (in DepthToSpace order) for
            ``upsample``, else 1.
        bias: float32 ``[O]`` (zeros when the convolution has none).
        nodes: the first output of each node the rewrite replaces (node names may be empty).
    """

    name: str
    kind: str
    x: str
    y: str
    shape: tuple[int, int, int, int]
    weight: np.ndarray
    bias: np.ndarray
    nodes: tuple[str, ...]

    @property
    def phases(self) -> int:
        return 4 if self.kind == "upsample" else 1

    @property
    def channels_out(self) -> int:
        return self.weight.shape[0] // self.phases

    def direct_macs(self) -> int:
        """Multiply-adds of the direct form (batch included)."""
        b, c, h, w = self.shape
        per_pixel = 16 if self.kind == "upsample" else 9  # 4 phases x 2x2, or 3x3
        return b * h * w * c * self.channels_out * per_pixel

    def winograd_macs(self, m: int) -> int:
        """Multiply-adds of the batched MatMul of F(m x m, 3 x 3) (transforms excluded)."""
        b, c, h, w = self.shape
        tiles = -(-h // m) * -(-w // m)
        return (m + 2) ** 2 * self.phases * self.channels_out * c * b * tiles


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _plain(node: onnx.NodeProto, kernel: int) -> bool:
    """A Conv with a ``kernel x kernel`` window, stride 1, no dilation, one group."""
    return (
        list(_attr(node, "strides", [1, 1])) == [1, 1]
        and list(_attr(node, "dilations", [1, 1])) == [1, 1]
        and _attr(node, "group", 1) == 1
        and _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        and list(_attr(node, "kernel_shape", [kernel, kernel])) == [kernel, kernel]
    )


# Padding (top, left, bottom, right) of each phase's 2x2 convolution and, from it, where its
# kernel sits in the 3x3 window around the small image's pixel: phase (i, j) reads rows
# m - 1 + i .. m + i and columns n - 1 + j .. n + j.
_PHASE_PADS = {
    (1, 1, 0, 0): (0, 0),
    (1, 0, 0, 1): (0, 1),
    (0, 1, 1, 0): (1, 0),
    (0, 0, 1, 1): (1, 1),
}


def find_sites(model: onnx.ModelProto) -> list[Site]:
    """Every stride-1 3x3 convolution (padding 1) and every set of four 2x2 phase
    convolutions of a nearest up-sampling, in graph order, with static shapes."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    shapes = _shapes(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    sites: list[Site] = []
    phase_groups: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        if node.op_type != "Conv" or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        pads = tuple(_attr(node, "pads", [0, 0, 0, 0]))
        if w.shape[2:] == (3, 3) and _plain(node, 3) and pads == (1, 1, 1, 1):
            bias = _bias(node, inits, w.shape[0])
            sites.append(
                Site(_base(node), "conv3x3", node.input[0], node.output[0],
                     shapes[node.input[0]], w.astype(np.float64), bias, (node.output[0],))
            )  # fmt: skip
        elif w.shape[2:] == (2, 2) and _plain(node, 2) and _to_phase(pads) is not None:
            phase_groups.setdefault(node.input[0], []).append(node)
    for x, convs in phase_groups.items():
        site = _upsample_site(x, convs, inits, shapes, consumers)
        if site is not None:
            sites.append(site)
    order = {node.output[0]: k for k, node in enumerate(g.node)}
    return sorted(sites, key=lambda s: order[s.nodes[0]])


def _to_phase(pads: tuple[int, ...]) -> tuple[int, int] | None:
    """(top, left, bottom, right) of a phase convolution -> its phase (i, j)."""
    if len(pads) != 4:
        return None
    top, left, bottom, right = pads
    return _PHASE_PADS.get((top, left, bottom, right))


def _upsample_site(
    x: str,
    convs: list[onnx.NodeProto],
    inits: dict[str, onnx.TensorProto],
    shapes: dict[str, tuple[int, ...]],
    consumers: dict[str, list[onnx.NodeProto]],
) -> Site | None:
    """The four phase convolutions of ``x`` and the data-movement nodes that interleave them
    into one ``[B, O, 2H, 2W]`` tensor, or None if they are not exactly that."""
    phases = {_to_phase(tuple(_attr(c, "pads", []))): c for c in convs}
    if len(convs) != 4 or len(phases) != 4:
        return None
    b, c, h, w = shapes[x]
    first = numpy_helper.to_array(inits[phases[(0, 0)].input[1]])
    o = first.shape[0]
    # Follow the phase outputs through Unsqueeze/Concat/Reshape to the one tensor they make.
    seen: set[str] = set()
    frontier = [conv.output[0] for conv in convs]
    moved: list[onnx.NodeProto] = []
    ends: set[str] = set()
    while frontier:
        name = frontier.pop()
        users = consumers.get(name, [])
        if users and all(u.op_type in _UPSAMPLE_OPS for u in users):
            for u in users:
                if u.output[0] not in seen:
                    seen.add(u.output[0])
                    moved.append(u)
                    frontier.extend(u.output)
        else:
            ends.add(name)
    if len(ends) != 1:
        return None
    y = ends.pop()
    if tuple(shapes.get(y, ())) != (b, o, 2 * h, 2 * w):
        return None
    inputs = {i for node in moved for i in node.input if i not in inits}
    outputs = {out for node in moved for out in node.output} | {conv.output[0] for conv in convs}
    if not inputs <= outputs:  # the interleave takes nothing else (constants aside)
        return None
    weight = np.zeros((4, o, c, 3, 3))
    for (i, j), conv in phases.items():
        k = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        if k.shape != (o, c, 2, 2):
            return None
        weight[2 * i + j, :, :, i : i + 2, j : j + 2] = k
    bias = _bias(phases[(0, 0)], inits, o)
    for conv in phases.values():
        if not np.array_equal(_bias(conv, inits, o), bias):
            return None
    first_conv = phases[(0, 0)]
    nodes = (first_conv.output[0], *(cv.output[0] for cv in convs if cv is not first_conv))
    base = _base(first_conv).rsplit(".phase", 1)[0]
    return Site(base, "upsample", x, y, (b, c, h, w), weight.reshape(4 * o, c, 3, 3), bias,
                nodes + tuple(n.output[0] for n in moved))  # fmt: skip


def _base(node: onnx.NodeProto) -> str:
    return node.name.split("/")[0] if node.name else node.output[0]


def _bias(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto], n: int) -> np.ndarray:
    if len(node.input) > 2 and node.input[2]:
        return numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
    return np.zeros(n, np.float32)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Static shapes of the graph's tensors (ONNX shape inference on the structure only)."""
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    for t in bare.graph.initializer:  # shapes only: drop large weights' bytes
        if t.data_type != TensorProto.INT64 and len(t.raw_data) > 4096:
            t.raw_data = b""
    inferred = shape_inference.infer_shapes(bare, strict_mode=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        shapes[v.name] = tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
    return shapes


# ---------------------------------------------------------------------------------------------
# The choice per layer


#: Narrower convolutions stay direct: their transforms cost more than the products save.
MIN_CHANNELS = 128
#: A tile size pays only when the batch holds at least this many tiles: the transformed
#: weights are ``(m + 2)^2 / 9`` times the direct ones and are read once per call.
MIN_TILES = 16


def tile_for(site: Site) -> int:
    """The tile ``m`` this layer takes, or 0 to keep it direct.

    Plain 3x3 convolutions of at least :data:`MIN_CHANNELS` channels take F(4x4, 3x3) where
    the batch holds :data:`MIN_TILES` tiles of 4x4, else F(2x2, 3x3) where it holds that
    many of 2x2, else stay direct. Up-sampling convolutions stay direct: their shared
    transform does save 1.78x of the products at m = 4, but the transformed weights are
    9x the four 2x2 kernels and the output transform must interleave four phases, and
    every form measured lost to the direct phase convolutions. Measured side by side with
    the direct form at batch 1 and 4 on an AVX-512 CPU (``benchmarks/bench_winograd.py``,
    ``benchmarks/results/winograd_cpu.md``).
    """
    b, c, h, w = site.shape
    if site.kind != "conv3x3" or min(c, site.channels_out) < MIN_CHANNELS:
        return 0
    for m in (4, 2):
        if b * -(-h // m) * -(-w // m) >= MIN_TILES:
            return m
    return 0


# ---------------------------------------------------------------------------------------------
# The rewrite


class _Nodes:
    """New nodes and initializers with names unique in the graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.taken = {n.name for n in g.node} | {t.name for t in g.initializer}
        self.taken |= {o for n in g.node for o in n.output} | {i.name for i in g.input}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def name(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def init(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name=name))
        return name

    def ints(self, base: str, *values: int) -> str:
        return self.init(base, np.asarray(values, np.int64))

    def op(self, op_type: str, inputs: list[str], base: str, out: str | None = None,
           **attrs: Any) -> str:  # fmt: skip
        out = out or self.name(base)
        self.nodes.append(
            helper.make_node(op_type, inputs, [out], name=self.name(f"{base}/{op_type}"), **attrs)
        )
        return out


def _winograd_nodes(nb: _Nodes, site: Site, m: int) -> None:
    """Append the F(m x m, 3 x 3) form of ``site`` to ``nb``, writing ``site.y``."""
    at, g, bt = transforms(m)
    n = m + 2
    b, c, h, w = site.shape
    p, o = site.phases, site.channels_out
    th, tw = -(-h // m), -(-w // m)
    base = f"{site.name}.winograd{m}"
    # Input transform: every n x n tile of every (sample, channel) image -> n^2 values.
    kin = np.einsum("ir,js->ijrs", bt, bt).reshape(n * n, 1, n, n).astype(np.float32)
    x = nb.op(
        "Reshape", [site.x, nb.ints(f"{base}.images_shape", b * c, 1, h, w)], f"{base}.images"
    )
    pads = [1, 1, th * m + 1 - h, tw * m + 1 - w]
    v = nb.op("Conv", [x, nb.init(f"{base}.bt", kin)], f"{base}.input", strides=[m, m], pads=pads)
    v = nb.op("Reshape", [v, nb.ints(f"{base}.v4_shape", b, c, n * n, th * tw)], f"{base}.v4")
    v = nb.op("Transpose", [v], f"{base}.v_t", perm=[2, 1, 0, 3])  # [n^2, C, B, T]
    v = nb.op("Reshape", [v, nb.ints(f"{base}.v_shape", n * n, c, b * th * tw)], f"{base}.v")
    # The products: [n^2, P * O, C] @ [n^2, C, B * T].
    u = np.einsum("ik,ockl,jl->ijoc", g, site.weight, g).reshape(n * n, p * o, c)
    mm = nb.op("MatMul", [nb.init(f"{base}.u", u.astype(np.float32)), v], f"{base}.m")
    # Output transform: [n^2, P, O, B, T] -> [B, O * P * n^2, th, tw] -> ConvTranspose.
    mm = nb.op("Reshape", [mm, nb.ints(f"{base}.m5_shape", n * n, p, o, b, th * tw)], f"{base}.m5")
    mm = nb.op("Transpose", [mm], f"{base}.m_t", perm=[3, 2, 1, 0, 4])
    mm = nb.op("Reshape", [mm, nb.ints(f"{base}.m4_shape", b, o * p * n * n, th, tw)], f"{base}.m4")
    # One ConvTranspose puts every tile's m x m pixels in place (one group per output
    # channel and phase, the bias folded in); an up-sampling site's four phases are then
    # interleaved by DepthToSpace.
    tile = np.einsum("ir,js->rsij", at, at).reshape(n * n, 1, m, m)
    kout = np.tile(tile, (o * p, 1, 1, 1)).astype(np.float32)
    bias = np.repeat(site.bias, p)
    exact = th * m == h and tw * m == w
    y = nb.op(
        "ConvTranspose",
        [mm, nb.init(f"{base}.at", kout), nb.init(f"{base}.bias", bias)],
        f"{base}.output", site.y if exact and p == 1 else None,
        strides=[m, m], group=o * p,
    )  # fmt: skip
    if not exact:
        starts, ends = nb.ints(f"{base}.crop_start", 0, 0), nb.ints(f"{base}.crop_end", h, w)
        y = nb.op("Slice", [y, starts, ends, nb.ints(f"{base}.crop_axes", 2, 3)], f"{base}.crop",
                  site.y if p == 1 else None)  # fmt: skip
    if p == 4:  # channel (o, i, j) of [B, 4 * O, H, W] -> pixel (2y + i, 2x + j) of channel o
        nb.op("DepthToSpace", [y], f"{base}.interleave", site.y, blocksize=2, mode="CRD")


def rewrite(model: onnx.ModelProto, tiles: dict[str, int]) -> onnx.ModelProto:
    """The graph with each named site (:func:`find_sites`) in its Winograd form.

    Args:
        model: the graph (not modified).
        tiles: site name -> tile ``m`` (one of :data:`TILES`); 0 or absent: left direct.

    Returns:
        A new model computing the same function, nodes in topological order.
    """
    sites = {s.name: s for s in find_sites(model)}
    unknown = sorted(set(tiles) - set(sites))
    if unknown:
        raise ValueError(f"no 3x3 convolution named {unknown[0]!r} in the graph")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    nb = _Nodes(out)
    replaced: dict[str, list[onnx.NodeProto]] = {}  # first replaced node -> the new nodes
    drop: set[str] = set()
    for name, m in tiles.items():
        if not m:
            continue
        if m not in TILES:
            raise ValueError(f"tile {m} for {name!r}: expected one of {TILES}")
        site = sites[name]
        start = len(nb.nodes)
        _winograd_nodes(nb, site, m)
        replaced[site.nodes[0]] = nb.nodes[start:]
        drop.update(site.nodes)
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        if node.output[0] in replaced:
            nodes.extend(replaced[node.output[0]])
        if node.output[0] not in drop:
            nodes.append(node)
    # The interleave nodes of an up-sampling site may come after other nodes; the new
    # nodes sit where the first phase convolution was, which precedes every use of site.y.
    g.initializer.extend(nb.inits)
    available = {i.name for i in g.input} | {t.name for t in g.initializer}
    del g.node[:]
    g.node.extend(_toposort(nodes, available))
    used = {i for node in g.node for i in node.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return out


def _toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every input is made before it is used (stable)."""
    ready = set(available) | {""}
    pending = list(nodes)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"the graph has a cycle or a missing input at {rest[0].name!r}")
        pending = rest
    return ordered


def apply(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The CPU graph's Winograd form: every site :func:`tile_for` chooses, rewritten.

    Returns:
        The new model and a report: per rewritten layer its tile and its multiply-adds per
        frame before and after, and the layers kept direct.
    """
    sites = find_sites(model)
    tiles = {s.name: tile_for(s) for s in sites}
    layers = {}
    for s in sites:
        m = tiles[s.name]
        b = s.shape[0]
        layers[s.name] = {
            "kind": s.kind,
            "tile": m,
            "shape": list(s.shape[1:]),
            "channels_out": s.channels_out,
            "direct_gmac": round(s.direct_macs() / b / 1e9, 4),
            "gmac": round((s.winograd_macs(m) if m else s.direct_macs()) / b / 1e9, 4),
        }
    return rewrite(model, tiles), {"layers": layers}
