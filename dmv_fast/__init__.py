"""dmv-fast: BigGAN-deep music videos, rendered as fast as the hardware allows.

The public names are imported lazily so that ``import dmv_fast`` stays cheap (no librosa,
numba or ONNX Runtime until they are used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelSpec": "dmv_fast.plan",
    "Plan": "dmv_fast.plan",
    "resolve": "dmv_fast.plan",
    "RenderOptions": "dmv_fast.options",
    "AudioFeatures": "dmv_fast.audio",
    "analyze": "dmv_fast.audio",
    "Vectors": "dmv_fast.trajectory",
    "compute_vectors": "dmv_fast.trajectory",
    "Generator": "dmv_fast.runtime",
    "LiveSession": "dmv_fast.live",
    "OnlineTrajectory": "dmv_fast.online",
    "Visualizer": "dmv_fast.pipeline",
    "render": "dmv_fast.pipeline",
    "render_many": "dmv_fast.segmented",
    "render_segmented": "dmv_fast.segmented",
}

__all__ = [
    "AudioFeatures",
    "Generator",
    "LiveSession",
    "ModelSpec",
    "OnlineTrajectory",
    "Plan",
    "RenderOptions",
    "Vectors",
    "Visualizer",
    "__version__",
    "analyze",
    "compute_vectors",
    "render",
    "render_many",
    "render_segmented",
    "resolve",
]
assert set(__all__) == {"__version__", *_EXPORTS}

if TYPE_CHECKING:  # pragma: no cover
    from dmv_fast.audio import AudioFeatures, analyze
    from dmv_fast.live import LiveSession
    from dmv_fast.online import OnlineTrajectory
    from dmv_fast.options import RenderOptions
    from dmv_fast.pipeline import Visualizer, render
    from dmv_fast.plan import ModelSpec, Plan, resolve
    from dmv_fast.runtime import Generator
    from dmv_fast.segmented import render_many, render_segmented
    from dmv_fast.trajectory import Vectors, compute_vectors


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dmv_fast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
