"""Export BigGAN-deep to ONNX (needs the [export] extra: torch + pytorch-pretrained-biggan).

``export_model(resolution, weights, precision, batch_size, scaling=1, pixels="stretch",
output=None, progress=None) -> Path`` folds spectral norm, prunes ``conv_to_rgb`` to its 3
used channels, makes the BatchNorm statistics a host-fed input (one graph serves every
truncation), appends the pixel conversion and checks the graph against PyTorch. Importing this
package does not import torch; the submodules do.

Command line: ``python -m dmv_fast_export --resolution 128 --weights random --precision fp32
--batch-size 8``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

#: Bump when the graph changes: cached graphs of another version are rebuilt.
EXPORTER_VERSION = "2"
#: Bump when the int8 recipe changes (:mod:`dmv_fast_export.quantize`): int8 graphs are rebuilt.
QUANTIZER_VERSION = "1"

__all__ = ["EXPORTER_VERSION", "QUANTIZER_VERSION", "export_model"]

if TYPE_CHECKING:  # pragma: no cover
    from dmv_fast_export.export import export_model


def __getattr__(name: str) -> Any:
    if name == "export_model":
        from dmv_fast_export.export import export_model

        return export_model
    raise AttributeError(f"module 'dmv_fast_export' has no attribute {name!r}")
