"""Multiply-accumulates per frame of BigGAN-deep at 128/256/512: original, pruned, exported.

Counted, not quoted:

- ``original``: forward hooks on every Conv2d and Linear of pytorch-pretrained-biggan's model
  plus the attention's two ``torch.bmm`` calls, one frame, eval mode;
- ``pruned``: the same with ``conv_to_rgb`` cut to the 3 output channels the model keeps
  (SPEC §5);
- ``exported``: read off the exported ONNX graph (Conv, ConvTranspose, MatMul and Gemm nodes,
  shapes from ONNX shape inference), which also computes an up-sampling block's nearest
  up-sampling + 3x3 convolution as four 2x2 convolutions on the small image;
- ``winograd``: the same graph in the CPU plan's Winograd form
  (:mod:`dmv_fast_export.winograd`), at the CPU graph's batch 4 (a render) and batch 1 (live):
  the batched products of the transformed convolutions and their input and output transforms
  (a Conv and a ConvTranspose each) all counted.

Weights do not change the count, so the model is built without loading or calibrating any.
Writes ``benchmarks/results/macs.json`` and ``macs.md``.

    python benchmarks/macs.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import onnx
import torch
from dmv_fast_export.fold import fold
from dmv_fast_export.graph import build_graph
from dmv_fast_export.weights import standard_config
from dmv_fast_export.winograd import apply as winograd
from pytorch_pretrained_biggan import BigGAN

from dmv_fast.bench.measure import count_macs

RESOLUTIONS = (128, 256, 512)


def count_torch(model: BigGAN) -> dict[str, int]:
    """MACs of one frame through the PyTorch model, by layer kind."""
    counts = {"conv": 0, "linear": 0, "bmm": 0, "conv_to_rgb": 0}

    def hook(name: str):
        def record(module, args, out):
            if isinstance(module, torch.nn.Conv2d):
                k = module.weight.shape  # the spectral-norm weight, [O, I, kh, kw]
                macs = out.numel() * k[1] * k[2] * k[3]
                counts["conv"] += macs
                if name.endswith("conv_to_rgb"):
                    counts["conv_to_rgb"] += macs
            else:
                counts["linear"] += out.numel() * module.in_features

        return record

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    real_bmm = torch.bmm

    def bmm(a, b):
        counts["bmm"] += a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return real_bmm(a, b)

    torch.bmm = bmm
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 128), torch.zeros(1, 1000), 0.5)
    finally:
        torch.bmm = real_bmm
        for h in handles:
            h.remove()
    return counts


def count_onnx(model: onnx.ModelProto, batch: int) -> dict[str, int]:
    """MACs per frame of the Conv / MatMul / Gemm nodes of a graph with static shapes."""
    return count_macs(model, batch)


def measure(resolution: int) -> dict[str, float]:
    config = standard_config(resolution)
    torch.manual_seed(0)
    with torch.no_grad():
        model = BigGAN(config)
    torch_counts = count_torch(model)
    original = sum(v for k, v in torch_counts.items() if k != "conv_to_rgb")
    rgb = torch_counts["conv_to_rgb"]
    pruned = original - rgb + rgb * 3 // config.channel_width
    folded = fold(model)
    onnx_counts = count_onnx(_bare(build_graph(folded, batch_size=1)), 1)
    exported = onnx_counts["conv"] + onnx_counts["matmul"]
    wino = {}
    for batch in (4, 1):
        graph, _ = winograd(build_graph(folded, batch_size=batch))
        counted = count_onnx(_bare(graph), batch)
        wino[batch] = counted["conv"] + counted["matmul"]
    return {
        "original_gmac": original / 1e9,
        "pruned_gmac": pruned / 1e9,
        "exported_gmac": exported / 1e9,
        "conv_to_rgb_gmac": rgb / 1e9,
        "attention_bmm_gmac": torch_counts["bmm"] / 1e9,
        "exported_conv_gmac": onnx_counts["conv"] / 1e9,
        "exported_matmul_gmac": onnx_counts["matmul"] / 1e9,
        "winograd_b4_gmac": wino[4] / 1e9,
        "winograd_b1_gmac": wino[1] / 1e9,
        "params_millions": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def _bare(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The graph without its weights' bytes: shape inference needs only their shapes (small
    constants, which carry shapes and axes, are kept)."""
    for t in graph.graph.initializer:
        if t.data_type != onnx.TensorProto.INT64 and len(t.raw_data) > 4096:
            t.raw_data = b""
            t.data_location = onnx.TensorProto.DEFAULT
    return graph


def write_markdown(results: dict[str, dict[str, float]], path: Path) -> None:
    lines = [
        "# BigGAN-deep multiply-accumulates per frame",
        "",
        "Counted by `benchmarks/macs.py` (hooks on the PyTorch model; shapes of the exported "
        "ONNX graph).",
        "",
        "| resolution | original (GMAC) | conv_to_rgb pruned to 3 (GMAC) | exported graph (GMAC) "
        "| exported / original | CPU Winograd graph, batch 4 (GMAC) | batch 1 (GMAC) |",
        "|---|---|---|---|---|---|---|",
    ]
    for res, r in results.items():
        lines.append(
            f"| {res} | {r['original_gmac']:.1f} | {r['pruned_gmac']:.1f} | "
            f"{r['exported_gmac']:.1f} | {r['exported_gmac'] / r['original_gmac']:.2f} | "
            f"{r['winograd_b4_gmac']:.1f} | {r['winograd_b1_gmac']:.1f} |"
        )
    lines += [
        "",
        "The exported graph also computes each up-sampling block's nearest up-sampling + 3x3 "
        "convolution as four 2x2 convolutions on the small image (one per output phase): the "
        "same sums, 16 instead of 36 multiply-adds per input pixel and channel pair.",
        "",
        "The CPU Winograd graph (AVX-512 plans) computes its wide 3x3 convolutions as "
        "F(4x4, 3x3) or F(2x2, 3x3) (`dmv_fast_export.winograd.tile_for`): the batched "
        "products in the transformed domain plus the input transform (a Conv) and the output "
        "transform (a ConvTranspose), all counted per frame. The tile depends on the batch, so "
        "the count does too.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--resolutions", default="128,256,512")
    args = parser.parse_args()
    results = {}
    for res in (int(r) for r in args.resolutions.split(",")):
        results[str(res)] = measure(res)
        r = results[str(res)]
        print(
            f"{res}: original {r['original_gmac']:.1f} GMAC, pruned {r['pruned_gmac']:.1f}, "
            f"exported {r['exported_gmac']:.1f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "results": results,
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }
    (args.out / "macs.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    write_markdown(results, args.out / "macs.md")


if __name__ == "__main__":
    main()
