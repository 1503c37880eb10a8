"""Winograd against direct 3x3 convolutions on this CPU: per layer, and for the whole graph.

- Per layer: every 3x3 convolution of BigGAN-deep's exported graph (the plain ones and the
  up-sampling phase groups, :func:`dmv_fast_export.winograd.find_sites`) is cut out of the
  real graph with what surrounds it there (the per-sample BatchNorm scale, shift and ReLU
  before and after, fed as inputs) and timed direct and as F(2x2, 3x3), F(4x4, 3x3) and
  F(6x6, 3x3) (:func:`dmv_fast_export.winograd.rewrite`), repetitions alternating between the
  forms in one process. The rule :func:`dmv_fast_export.winograd.tile_for` is checked against
  these figures.
- Whole graph: today's graph (direct convolutions) against the CPU plan's Winograd graph
  (:func:`dmv_fast_export.winograd.apply`), alternating, at the CPU plan's batch 4 (renders)
  and batch 1 (live), with the largest pixel difference between the two.

Each figure is the best of the repetitions (other jobs only ever add time) with the median
beside it; the ratios are direct / Winograd time, so > 1 means Winograd is faster. The
machine's flags, load averages and sgemm peak are recorded with them.

    python benchmarks/bench_winograd.py [--resolution 128] [--batches 4,1] [--threads 2,1]
        [--reps 15] [--graph-reps 12] [--out benchmarks/results]

Writes ``winograd_cpu.json`` and ``winograd_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from dmv_fast_export import winograd
from dmv_fast_export.fold import fold
from dmv_fast_export.graph import build_graph
from dmv_fast_export.weights import load_model
from onnx import TensorProto, helper

from dmv_fast.bench.machine import cpu_flags, environment, sgemm_peak
from dmv_fast.model.truncation import bn_inputs
from dmv_fast.model.weights import resolve_weights

TILES = winograd.TILES
TRUNCATION = 0.4


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    """A CPU session as the generator builds it (full optimisation, no memory pattern)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = False
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def alternate(sessions: dict, feeds: dict, reps: int) -> dict[str, dict[str, float]]:
    """Seconds per run of each session, repetitions alternating: best and median."""
    for s in sessions.values():
        s.run(None, feeds)  # warm-up
    times: dict = {k: [] for k in sessions}
    for _ in range(reps):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feeds)
            times[k].append(time.perf_counter() - t0)
    return {k: {"best": min(v), "median": statistics.median(v)} for k, v in times.items()}


def layer_model(graph: onnx.ModelProto, site: winograd.Site) -> onnx.ModelProto:
    """The site's nodes cut out of ``graph``, between the BatchNorm scale, shift and ReLU the
    graph has around it (per-sample coefficients as inputs ``a1, b1, a2, b2``)."""
    producer = {n.output[0]: n for n in graph.graph.node}
    nodes = [producer[out] for out in site.nodes]
    order = {n.output[0]: k for k, n in enumerate(graph.graph.node)}
    nodes.sort(key=lambda n: order[n.output[0]])
    names = {i for n in nodes for i in n.input}
    inits = [t for t in graph.graph.initializer if t.name in names]
    b, c, h, w = site.shape
    o = site.channels_out
    x = "site_input"
    body = [onnx.NodeProto() for _ in nodes]
    for copy, node in zip(body, nodes, strict=True):
        copy.CopyFrom(node)
        for k, name in enumerate(copy.input):
            if name == site.x:
                copy.input[k] = x
    before = [
        helper.make_node("Mul", ["x", "a1"], ["xa"]),
        helper.make_node("Add", ["xa", "b1"], ["xb"]),
        helper.make_node("Relu", ["xb"], [x]),
    ]
    after = [
        helper.make_node("Mul", [site.y, "a2"], ["ya"]),
        helper.make_node("Add", ["ya", "b2"], ["yb"]),
        helper.make_node("Relu", ["yb"], ["y"]),
    ]
    s = 2 if site.kind == "upsample" else 1
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, c, h, w])]
    for name, ch in (("a1", c), ("b1", c), ("a2", o), ("b2", o)):
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [b, ch, 1, 1]))
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [b, o, s * h, s * w])
    g = helper.make_graph(before + body + after, site.name, inputs, [out], inits)
    model = helper.make_model(g, opset_imports=list(graph.opset_import))
    model.ir_version = graph.ir_version
    return model


def layer_feeds(site: winograd.Site) -> dict[str, np.ndarray]:
    b, c, h, w = site.shape
    o = site.channels_out
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((b, c, h, w)).astype(np.float32)}
    for name, ch in (("a1", c), ("b1", c), ("a2", o), ("b2", o)):
        base = 1.0 if name[0] == "a" else 0.0
        feeds[name] = (base + 0.2 * rng.standard_normal((b, ch, 1, 1))).astype(np.float32)
    return feeds


def bench_layers(graph: onnx.ModelProto, threads: int, reps: int) -> list[dict]:
    rows = []
    for site in winograd.find_sites(graph):
        direct = layer_model(graph, site)
        models = {"direct": direct}
        for m in TILES:
            models[f"F{m}"] = winograd.rewrite(direct, {site.name: m})
        sessions = {k: session(v, threads) for k, v in models.items()}
        feeds = layer_feeds(site)
        ref = sessions["direct"].run(None, feeds)[0]
        err = {
            k: float(np.abs(s.run(None, feeds)[0] - ref).max() / np.abs(ref).max())
            for k, s in sessions.items()
            if k != "direct"
        }
        times = alternate(sessions, feeds, reps)
        base = times["direct"]["best"]
        row = {
            "threads": threads,
            "layer": site.name,
            "kind": site.kind,
            "shape": list(site.shape),
            "channels_out": site.channels_out,
            "rule_tile": winograd.tile_for(site),
            "direct_ms": round(base * 1e3, 3),
            "direct_median_ms": round(times["direct"]["median"] * 1e3, 3),
            "speedup": {k: round(base / v["best"], 3) for k, v in times.items() if k != "direct"},
            "speedup_median": {
                k: round(times["direct"]["median"] / v["median"], 3)
                for k, v in times.items()
                if k != "direct"
            },
            "relative_error": err,
        }
        best = max(row["speedup"], key=row["speedup"].get)
        print(
            f"  t{threads} b{site.shape[0]} {site.name:18s} {site.kind:8s} {site.shape[1]:4d}ch "
            f"{site.shape[2]:3d}x{site.shape[3]:<3d} direct {row['direct_ms']:7.2f} ms  "
            + "  ".join(f"{k} {v:4.2f}x" for k, v in row["speedup"].items())
            + f"  (rule: {'F' + str(row['rule_tile']) if row['rule_tile'] else 'direct'}, "
            f"best {best if row['speedup'][best] > 1 else 'direct'})",
            flush=True,
        )
        rows.append(row)
    return rows


def bench_graph(direct: onnx.ModelProto, threads: int, reps: int) -> dict:
    """Today's graph against its Winograd form, whole, at ``threads`` ONNX Runtime threads."""
    wino, report = winograd.apply(direct)
    sessions = {"direct": session(direct, threads), "winograd": session(wino, threads)}
    batch = direct.graph.input[0].type.tensor_type.shape.dim[0].dim_value
    rng = np.random.default_rng(1)
    noise = (np.clip(rng.standard_normal((batch, 128)), -2, 2) * TRUNCATION).astype(np.float32)
    classes = np.zeros((batch, 1000), np.float32)
    for i in range(batch):
        classes[i, rng.choice(1000, 12, replace=False)] = rng.dirichlet(np.ones(12))
    idx, w = bn_inputs(TRUNCATION)
    feeds = {"noise": noise, "classes": classes, "bn_idx": idx, "bn_w": w}
    frames = {k: s.run(None, feeds)[0] for k, s in sessions.items()}
    diff = int(np.abs(frames["direct"].astype(int) - frames["winograd"].astype(int)).max())
    times = alternate(sessions, feeds, reps)
    layers = report["layers"].values()
    return {
        "threads": threads,
        "batch": batch,
        "frames_per_s": {k: round(batch / v["best"], 2) for k, v in times.items()},
        "frames_per_s_median": {k: round(batch / v["median"], 2) for k, v in times.items()},
        "speedup": round(times["direct"]["best"] / times["winograd"]["best"], 3),
        "speedup_median": round(times["direct"]["median"] / times["winograd"]["median"], 3),
        "max_pixel_diff": diff,
        "conv3x3_gmac": {
            "direct": round(sum(v["direct_gmac"] for v in layers), 3),
            "winograd": round(sum(v["gmac"] for v in layers), 3),
        },
        "tiles": {k: v["tile"] for k, v in report["layers"].items()},
    }


def write_markdown(payload: dict, path: Path) -> None:
    env = payload["environment"]
    lines = [
        "# Winograd against direct 3x3 convolutions (ONNX Runtime, CPU)",
        "",
        f"{env['date']} · {env['cpu']} · {env['cores_usable']} cores · flags "
        f"{', '.join(payload['cpu_flags'])} · load average {payload['load_before']} before, "
        f"{payload['load_after']} after · NumPy sgemm {payload['sgemm_gflops']} GFLOP/s · "
        f"onnxruntime {env['versions']['onnxruntime']} · ONNX Runtime threads "
        f"{payload['threads']}",
        "",
        f"BigGAN-deep-{payload['resolution']}, random weights. Ratios are direct time / "
        "Winograd time (> 1: Winograd faster), best of alternating repetitions (median in "
        "the JSON).",
        "",
        "## Whole graph",
        "",
        "| threads | batch | direct frames/s | Winograd frames/s | speedup (best) "
        "| speedup (median) | 3x3 GMAC per frame, direct → Winograd | max pixel difference |",
        "|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for g in payload["graphs"]:
        b = g["batch"]
        lines.append(
            f"| {g['threads']} | {b} | {g['frames_per_s']['direct']} | {g['frames_per_s']['winograd']} | "
            f"**{g['speedup']:.2f}×** | {g['speedup_median']:.2f}× | "
            f"{g['conv3x3_gmac']['direct']:.2f} → {g['conv3x3_gmac']['winograd']:.2f} | "
            f"{g['max_pixel_diff']} |"
        )
    lines += [
        "",
        "## Per layer",
        "",
        "| threads | batch | layer | kind | channels | map | direct ms | F2 | F4 | F6 "
        "| the rule's tile |",
        "|---:|---:|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in payload["layers"]:
        b, c, h, w = r["shape"]
        sp = r["speedup"]
        cells = " | ".join(f"{sp[f'F{m}']:.2f}×" for m in TILES)
        rule = f"F{r['rule_tile']}" if r["rule_tile"] else "direct"
        lines.append(
            f"| {r['threads']} | {b} | {r['layer']} | {r['kind']} | {c} | {h}x{w} | {r['direct_ms']:.2f} | "
            f"{cells} | {rule} |"
        )
    lines += ["", f"Reproduce: `{payload['command']}`", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batches", default="4,1")
    parser.add_argument("--threads", default="2,1", help="ONNX Runtime threads to measure")
    parser.add_argument("--reps", type=int, default=15, help="repetitions per layer form")
    parser.add_argument("--graph-reps", type=int, default=12, help="whole-graph repetitions")
    parser.add_argument("--no-layers", action="store_true", help="the whole graph only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    sgemm = [sgemm_peak()["gflops"]]
    source = resolve_weights("random", args.resolution)
    model, _ = load_model(source)
    folded = fold(model)
    del model
    layers, graphs = [], []
    for batch in (int(b) for b in args.batches.split(",")):
        direct = build_graph(folded, batch)
        for threads in (int(t) for t in args.threads.split(",")):
            print(f"batch {batch}, {threads} threads: whole graph", flush=True)
            graphs.append(bench_graph(direct, threads, args.graph_reps))
            print(f"  {graphs[-1]}", flush=True)
            if not args.no_layers:
                layers += bench_layers(direct, threads, args.reps)
    sgemm.append(sgemm_peak()["gflops"])
    payload = {
        "environment": environment(),
        "cpu_flags": cpu_flags(),
        "resolution": args.resolution,
        "threads": args.threads,
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "sgemm_gflops": round(max(sgemm), 1),
        "sgemm_runs": [round(x, 1) for x in sgemm],
        "graphs": graphs,
        "layers": layers,
        "command": "python benchmarks/bench_winograd.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("out", "no_layers")
        )
        + (" --no-layers" if args.no_layers else ""),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "winograd_cpu.json").write_text(json.dumps(payload, indent=2) + "\n")
    write_markdown(payload, args.out / "winograd_cpu.md")
    print((args.out / "winograd_cpu.md").read_text())


if __name__ == "__main__":
    main()
