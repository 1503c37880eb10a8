"""The original's way of making frames: pytorch-pretrained-biggan eager + per-frame uint8.

The ``torch`` rows of ``dmv-fast bench`` and ``benchmarks/bench_e2e.py`` measure it against
the exported graph. torch is imported only when a model is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmv_fast.bench.measure import TRUNCATION
from dmv_fast.settings.choices import RESOLUTIONS


def stretch_to_uint8(frame: np.ndarray) -> np.ndarray:
    """One frame ``[3, H, W]`` float in [-1, 1] to ``[H, W, 3]`` uint8, stretching its own
    min..max to 0..255 and rounding half up (scipy ``toimage``'s look, SPEC §5)."""
    lo = float(frame.min())
    span = float(frame.max()) - lo
    scale = 255.0 / span if span > 0 else 1.0
    pixels = np.clip((frame - lo) * scale, 0, 255) + 0.5
    return pixels.astype(np.uint8).transpose(1, 2, 0)


def torch_biggan(resolution: int, *, device: str = "cpu") -> Any:
    """pytorch-pretrained-biggan's BigGAN-deep with the seeded random weights that
    ``--weights random`` exports (:func:`dmv_fast_export.weights.random_model`), in eval mode."""
    from dmv_fast_export.weights import random_model, standard_config

    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution {resolution} is not one of {RESOLUTIONS}")
    return random_model(standard_config(resolution)).eval().to(device)


def torch_frames(resolution: int) -> tuple[Any, str]:
    """``call(noise [B, 128], classes [B, 1000]) -> list of [H, W, 3] uint8`` on torch eager
    (CUDA when torch sees a GPU), and the device name (``"cpu"`` or ``"cuda"``)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch_biggan(resolution, device=device)

    def call(noise: np.ndarray, classes: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            out = model(
                torch.from_numpy(noise).to(device),
                torch.from_numpy(classes).to(device),
                TRUNCATION,
            )
        return [stretch_to_uint8(f) for f in out.cpu().numpy()]

    return call, device
