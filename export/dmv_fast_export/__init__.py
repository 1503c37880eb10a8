"""Export BigGAN-deep to ONNX (needs the [export] extra: torch + pytorch-pretrained-biggan).

:func:`dmv_fast.models.ensure_onnx` (the graph cache) calls :func:`export.export_source` when a
graph is missing: it folds spectral norm, prunes ``conv_to_rgb`` to its 3 used channels, makes
the BatchNorm statistics a host-fed input (one graph serves every truncation), appends the
pixel conversion (and, for GPU plans, the YUV 4:2:0 tail) and checks the graph against PyTorch
before the cache takes it. Importing this package does not import torch; the submodules do.

Command line: ``dmv-fast export`` (``python -m dmv_fast_export`` runs the same command).
"""

from __future__ import annotations

#: Bump when the graph changes: cached graphs of another version are rebuilt.
EXPORTER_VERSION = "3"

__all__ = ["EXPORTER_VERSION"]
