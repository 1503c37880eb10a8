"""The ONNX graph cache: one exported graph per (weights, graph settings, exporter version).

Cache layout (under :func:`dmv_fast.model.weights.cache_dir`)::

    <cache>/onnx/<model>-<res>-<precision>-b<batch>-x<scaling>-<pixels>-<key>.onnx
    <cache>/onnx/<same>.json              what the graph is, its SHA-256, its size, and the
                                          exporter's check (against PyTorch; int8: the
                                          quality against fp32)
    <cache>/onnx/<same>.ort-<key>.onnx    ONNX Runtime's CPU-optimised form of the graph, for
                                          one ONNX Runtime version and CPU (:func:`optimized_path`)
    <cache>/tensorrt/                     TensorRT engine and timing caches

A cached graph is re-hashed against its sidecar before use; a damaged or stale one is
rebuilt, never trusted. The cache owns its files: it names them, writes them under temporary
names and publishes the graph and its sidecar.

The one seam to the export package: on a miss, :func:`ensure_onnx` asks
:func:`dmv_fast_export.make_graph` to write the graph to a temporary path it gives, and
records what the exporter returns. The export package never imports this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmv_fast.files import publish, read_json, sha256_file, sweep, temporary, write_json
from dmv_fast.model.weights import Progress, WeightsSource, cache_dir, resolve_weights
from dmv_fast.settings.spec import GraphSpec

if TYPE_CHECKING:  # pragma: no cover
    from dmv_fast.settings.plan import Plan

logger = logging.getLogger("dmv_fast")

_EXPORT_HINT = (
    "install with `pip install 'dmv-fast[export]'` (the CPU build of PyTorch is enough: "
    "`pip install torch --index-url https://download.pytorch.org/whl/cpu`)"
)


def graph_key(source: WeightsSource, graph: GraphSpec) -> dict[str, Any]:
    """Everything an exported graph depends on (an int8 graph: also the quantizer's version).

    ``pixel_format="yuv420p"``: the graph also outputs YUV 4:2:0 planes (made on the GPU for
    the encoder), checked against the host conversion at export.
    """
    import dmv_fast_export

    key: dict[str, Any] = {
        **graph.to_dict(),
        "model": source.slug,
        "weights_sha256": source.sha256,
        "resolution": source.resolution,
        "exporter_version": dmv_fast_export.EXPORTER_VERSION,
    }
    if graph.precision == "int8":
        key["quantizer_version"] = dmv_fast_export.QUANTIZER_VERSION
    return key


def onnx_key(
    source: WeightsSource,
    precision: str,
    batch_size: int,
    scaling: int,
    pixels: str,
    pixel_format: str = "rgb24",
    frame: tuple[int, int] | None = None,
    fill: str = "wide",
    conv_form: str = "direct",
) -> dict[str, Any]:
    """:func:`graph_key` from loose settings (checked as a :class:`GraphSpec`)."""
    graph = GraphSpec(
        source.resolution,
        precision,
        batch_size,
        scaling,
        pixels,
        pixel_format,
        frame,
        fill,
        conv_form,
    )
    return graph_key(source, graph)


def onnx_path(key: dict[str, Any]) -> Path:
    """Cache path of the graph described by ``key`` (its sidecar is ``.json`` beside it)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    height, width = key["frame_size"]
    side = key["resolution"] * key["scaling"]
    # A frame of another size or shape is named by it (``-1280x720-wide``).
    shape = "" if (height, width) == (side, side) else f"-{width}x{height}-{key.get('fill')}"
    name = (
        f"{key['model']}-{key['resolution']}-{key['precision']}-b{key['batch_size']}"
        f"-x{key['scaling']}-{key['pixels']}{'-yuv' if key['pixel_format'] != 'rgb24' else ''}"
        f"{shape}{'-wino' if key.get('conv_form') == 'winograd' else ''}-{digest}.onnx"
    )
    return cache_dir() / "onnx" / name


def cached_onnx(key: dict[str, Any]) -> Path | None:
    """The cached graph for ``key`` if it is intact, else None (a damaged entry is removed)."""
    path = onnx_path(key)
    sidecar = path.with_suffix(".json")
    if not path.exists() and not sidecar.exists():
        return None
    record = read_json(sidecar)
    ok = (
        record is not None
        and record.get("key") == key
        and path.is_file()
        and path.stat().st_size == record.get("onnx_size")
        and sha256_file(path) == record.get("onnx_sha256")
    )
    if ok:
        return path
    logger.warning("cached graph %s is damaged or stale: exporting it again", path.name)
    drop_optimized(path)
    for p in (path, sidecar):
        with contextlib.suppress(OSError):
            p.unlink()
    return None


def optimized_path(graph: str | os.PathLike[str]) -> Path | None:
    """Where ONNX Runtime's CPU-optimised form of a cached graph is kept, or None for a graph
    outside the cache.

    Building a session optimises the graph (fusions, the CPU's blocked convolution layout)
    before it can run; the optimised graph, saved once, loads with no optimisation at all.
    It depends on the graph (its SHA-256 from the sidecar), the ONNX Runtime version and the
    CPU (the blocked layout follows the vector width), so all three are in its name: a
    change of any gives another file, and the graph's own is rebuilt on first use.
    """
    graph = Path(graph)
    if graph.parent != cache_dir() / "onnx":
        return None
    record = onnx_record(graph)
    if not record or not record.get("onnx_sha256"):
        return None
    import onnxruntime as ort

    from dmv_fast.settings.machine import cpu_flags

    ident = json.dumps([record["onnx_sha256"], ort.__version__, sorted(cpu_flags())])
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return graph.with_name(f"{graph.stem}.ort-{digest}.onnx")


def drop_optimized(graph: str | os.PathLike[str], keep: Path | None = None) -> None:
    """Remove the optimised forms of ``graph`` (all but ``keep``): stale versions or CPUs."""
    graph = Path(graph)
    for p in graph.parent.glob(f"{graph.stem}.ort-*.onnx"):
        if p != keep:
            with contextlib.suppress(OSError):
                p.unlink()


def onnx_record(path: Path) -> dict[str, Any] | None:
    """The sidecar of a cached or exported graph (None when there is none)."""
    return read_json(Path(path).with_suffix(".json"))


def torch_available() -> bool:
    return all(
        importlib.util.find_spec(m) is not None for m in ("torch", "pytorch_pretrained_biggan")
    )


def ensure_onnx(
    resolution: int,
    weights: str | os.PathLike[str] | None = None,
    precision: str = "fp32",
    batch_size: int = 30,
    scaling: int = 1,
    pixels: str = "stretch",
    output: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    *,
    pixel_format: str = "rgb24",
    frame: tuple[int, int] | None = None,
    fill: str = "wide",
    conv_form: str = "direct",
    force: bool = False,
) -> Path:
    """The exported generator graph for these settings, exported on first use.

    Renders reach it through :func:`ensure_graph` (the plan's settings); the settings here
    are checked as a :class:`~dmv_fast.settings.spec.GraphSpec`.

    The cache is checked first (by weights hash, graph settings and exporter version; a
    damaged entry is rebuilt). Exporting needs the ``[export]`` extra. An int8 graph is
    quantized from the fp32 graph of the same settings, which is exported first when it is
    not cached (no PyTorch needed when it is).

    Args:
        resolution: the generator's output size (a local model: its ``output_dim``).
        weights: see :func:`dmv_fast.model.weights.resolve_weights`.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (CPU provider only).
        batch_size: the graph's static batch size.
        scaling: integer Lanczos upscaling inside the graph (1 = none).
        pixels: ``"stretch"`` or ``"fixed"``.
        output: also copy the graph (and its ``.json`` sidecar) here.
        progress: ``progress(done, total)``.
        pixel_format: ``"rgb24"``, or ``"yuv420p"`` for a graph that also outputs the
            encoder's YUV 4:2:0 planes.
        frame: ``(height, width)`` of the frames (None: square, ``resolution * scaling``).
        fill: ``"wide"``, ``"crop"`` or ``"pad"`` for a frame that is not square.
        conv_form: ``"direct"``, or ``"winograd"`` (fp32 CPU graphs, see
            :func:`dmv_fast.settings.plan.conv_form_for`).
        force: export again even when an intact cached graph exists.

    Returns:
        Path of the ``.onnx`` file: ``output`` when given, else the cached file. The graph
        takes ``noise`` float32 ``[B, 128]``, ``classes`` float32 ``[B, 1000]``, ``bn_idx``
        int64 ``[2]`` and ``bn_w`` float32 ``[2]`` and returns ``frames`` uint8
        ``[B, H, W, 3]`` (``(H, W)`` = ``frame``).

    Raises:
        ValueError: bad settings or weights. RuntimeError: torch is needed and missing.
    """
    graph = GraphSpec(
        resolution, precision, batch_size, scaling, pixels, pixel_format, frame, fill, conv_form
    )
    path = _ensure(weights, graph, progress, force)
    return path if output is None else copy_onnx(path, output)


def ensure_graph(plan: Plan, progress: Progress | None = None, *, force: bool = False) -> Path:
    """The cached graph a :class:`~dmv_fast.settings.plan.Plan` runs (exported on first use)."""
    return _ensure(plan.spec.weights, plan.graph, progress, force)


def cached_graph(plan: Plan) -> Path | None:
    """The plan's graph when it is in the cache and intact, else None: nothing is downloaded
    or exported (a session can be built from it on a helper thread meanwhile)."""
    try:
        source = resolve_weights(plan.spec.weights, plan.graph.resolution, download=False)
    except (OSError, ValueError):  # weights to download, or a bad value the render reports
        return None
    key = graph_key(source, plan.graph)
    sweep(onnx_path(key).parent)  # exports and optimised graphs killed before they finished
    return cached_onnx(key)


def _ensure(
    weights: str | os.PathLike[str] | None,
    graph: GraphSpec,
    progress: Progress | None,
    force: bool,
) -> Path:
    source = resolve_weights(weights, graph.resolution, progress=progress)
    key = graph_key(source, graph)
    sweep(onnx_path(key).parent)  # exports killed before they finished
    path = None if force else cached_onnx(key)
    if path is not None:
        return path
    fp32 = None
    if graph.precision == "int8":
        # Quantized from the fp32 graph of the same settings (exported first if needed), with
        # direct convolutions: integer kernels run those, not Winograd's transformed products.
        fp32_graph = dataclasses.replace(graph, precision="fp32", conv_form="direct")
        fp32 = _ensure(weights, fp32_graph, progress, force)
    elif not torch_available():
        raise RuntimeError(f"exporting the generator needs PyTorch: {_EXPORT_HINT}")
    return _make(source, key, fp32, progress)


def _make(
    source: WeightsSource, key: dict[str, Any], fp32: Path | None, progress: Progress | None
) -> Path:
    """Ask the exporter for the graph of ``key``, publish it and write its sidecar."""
    path = onnx_path(key)
    try:
        return _make_at(path, source, key, fp32, progress)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # named: the cache, not the video, is full
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise


def _make_at(
    path: Path,
    source: WeightsSource,
    key: dict[str, Any],
    fp32: Path | None,
    progress: Progress | None,
) -> Path:
    import dmv_fast_export

    path.parent.mkdir(parents=True, exist_ok=True)
    drop_optimized(path)
    started = time.perf_counter()
    with temporary(path) as tmp:
        made = dmv_fast_export.make_graph(source, key, tmp, progress=progress, fp32=fp32)
        publish(tmp, path, overwrite=True)
    record = {
        "key": key,
        "weights": _weights_label(source),
        "weights_kind": source.kind,
        "onnx_sha256": sha256_file(path),
        "onnx_size": path.stat().st_size,
        **made,
        "seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        write_json(path.with_suffix(".json"), record)
    except BaseException:
        # A graph without its sidecar would be rebuilt anyway; do not leave it in the cache.
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path


def _weights_label(source: WeightsSource) -> str:
    """What the sidecar says the weights were: a pretrained name, ``random``, or the file."""
    if source.kind == "local" and source.weights_file is not None:
        return os.fspath(source.weights_file)
    return source.name


def copy_onnx(path: Path, output: str | os.PathLike[str]) -> Path:
    """Copy a graph and its sidecar to ``output`` (a file path, or a folder to copy into)."""
    out = Path(output).expanduser()
    if out.is_dir():
        out = out / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.resolve() != path.resolve():
        sidecar = path.with_suffix(".json")
        for src, dest in ((path, out), (sidecar, out.with_suffix(".json"))):
            if src.exists():
                with temporary(dest) as tmp:
                    shutil.copyfile(src, tmp)
                    publish(tmp, dest, overwrite=True)
    return out
