"""Export BigGAN-deep to ONNX (needs the [export] extra: torch + pytorch-pretrained-biggan).

The graph cache (:mod:`dmv_fast.model.cache`) reaches this package through one seam,
:func:`make_graph`: given the weights, the cache key and a destination path, it writes the
graph there and returns what the cache records beside it. :func:`export.export_graph` folds
spectral norm, prunes ``conv_to_rgb`` to its 3 used channels, makes the BatchNorm statistics a
host-fed input (one graph serves every truncation), appends the pixel conversion (and, for
GPU plans, the YUV 4:2:0 tail) and checks the graph against PyTorch. int8 graphs are quantized
from the fp32 graph by :func:`quantize.quantize_graph` (no torch needed). Importing this
package does not import torch; the submodules (but ``quantize``) do. This package imports the
runtime's weights, files and settings modules, never the graph cache.

Command line: ``dmv-fast export`` (``python -m dmv_fast_export`` runs the same command).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from dmv_fast.model.weights import Progress, WeightsSource

#: Bump when the graph changes: cached graphs of another version are rebuilt.
EXPORTER_VERSION = "3"
#: Bump when the int8 recipe changes (:mod:`dmv_fast_export.quantize`): int8 graphs are rebuilt.
QUANTIZER_VERSION = "1"

__all__ = ["EXPORTER_VERSION", "QUANTIZER_VERSION", "make_graph"]


def make_graph(
    source: WeightsSource,
    key: dict[str, Any],
    destination: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    fp32: Path | None = None,
) -> dict[str, Any]:
    """Write the graph a cache ``key`` describes to ``destination``.

    Args:
        source: the resolved weights.
        key: :func:`dmv_fast.model.cache.graph_key` (precision, batch, pixels, frame size...).
        destination: where to write the ``.onnx`` (the cache publishes it afterwards).
        progress: ``progress(done, total)`` over the export's steps.
        fp32: for an int8 key, the fp32 graph of the same settings to quantize.

    Returns:
        What the cache's sidecar records beside the graph: its inputs and outputs, the
        check against PyTorch (or, for int8, the quality against fp32), the versions used.
    """
    if key["precision"] == "int8":
        if fp32 is None:
            raise ValueError("an int8 graph is quantized from its fp32 graph: give fp32")
        from dmv_fast_export.quantize import quantize_graph

        return quantize_graph(fp32, destination, progress=progress)
    from dmv_fast_export.export import export_graph

    return export_graph(source, key, destination, progress=progress)
