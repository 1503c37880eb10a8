"""dmv-fast: BigGAN-deep music videos, rendered as fast as the hardware allows.

The public names are imported lazily so that ``import dmv_fast`` stays cheap (no librosa,
numba or ONNX Runtime until they are used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dmv_fast.version import __version__

_EXPORTS = {
    "ModelSpec": "dmv_fast.settings.spec",
    "Plan": "dmv_fast.settings.plan",
    "resolve": "dmv_fast.settings.plan",
    "RenderOptions": "dmv_fast.settings.options",
    "AudioFeatures": "dmv_fast.audio.features",
    "analyze": "dmv_fast.audio.features",
    "Vectors": "dmv_fast.vectors.trajectory",
    "compute_vectors": "dmv_fast.vectors.trajectory",
    "Generator": "dmv_fast.model.runtime",
    "LiveSession": "dmv_fast.live.session",
    "OnlineTrajectory": "dmv_fast.vectors.online",
    "Visualizer": "dmv_fast.render.api",
    "render": "dmv_fast.render.api",
    "render_many": "dmv_fast.render.segmented",
    "render_segmented": "dmv_fast.render.segmented",
    "PlotData": "dmv_fast.preview.figure",
    "plot_song": "dmv_fast.render.preview",
    "preview_song": "dmv_fast.render.preview",
}

__all__ = [
    "AudioFeatures",
    "Generator",
    "LiveSession",
    "ModelSpec",
    "OnlineTrajectory",
    "Plan",
    "PlotData",
    "RenderOptions",
    "Vectors",
    "Visualizer",
    "__version__",
    "analyze",
    "compute_vectors",
    "plot_song",
    "preview_song",
    "render",
    "render_many",
    "render_segmented",
    "resolve",
]
assert set(__all__) == {"__version__", *_EXPORTS}

if TYPE_CHECKING:  # pragma: no cover
    from dmv_fast.audio.features import AudioFeatures, analyze
    from dmv_fast.live.session import LiveSession
    from dmv_fast.model.runtime import Generator
    from dmv_fast.preview.figure import PlotData
    from dmv_fast.render.api import Visualizer, render
    from dmv_fast.render.preview import plot_song, preview_song
    from dmv_fast.render.segmented import render_many, render_segmented
    from dmv_fast.settings.options import RenderOptions
    from dmv_fast.settings.plan import Plan, resolve
    from dmv_fast.settings.spec import ModelSpec
    from dmv_fast.vectors.online import OnlineTrajectory
    from dmv_fast.vectors.trajectory import Vectors, compute_vectors


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dmv_fast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
