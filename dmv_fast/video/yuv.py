"""RGB -> YUV 4:2:0 (BT.601, limited range): the host reference.

libx264 takes planar YUV 4:2:0. Converting RGB frames with swscale on the CPU costs about as
much as an ultrafast x264 encode at 512x512, so for a GPU plan the exporter appends the same
conversion to the generator graph (``dmv_fast_export.yuv_tail``, checked against
:func:`rgb_to_yuv420` at export) and the encoder receives ready planes. The layout is PyAV's ``yuv420p``
ndarray: ``[H * 3 // 2, W]`` per frame, the Y plane then U then V (each chroma plane is
``H/2 x W/2``, stored as ``H/4`` rows of ``W``).
"""

from __future__ import annotations

import numpy as np

# Rows: Y, Cb, Cr; columns: R, G, B (inputs 0..255, outputs before the offsets).
BT601 = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168736, -0.331264, 0.5],
        [0.5, -0.418688, -0.081312],
    ],
    dtype=np.float64,
) * np.array([[219.0 / 255.0], [224.0 / 255.0], [224.0 / 255.0]])
OFFSETS = np.array([16.0, 128.0, 128.0])


def check_even(height: int, width: int) -> None:
    if height % 2 or width % 2:
        raise ValueError(f"YUV 4:2:0 needs an even frame size, got {width}x{height}")


def rgb_to_yuv420(frames: np.ndarray) -> np.ndarray:
    """Convert RGB frames to planar YUV 4:2:0.

    Args:
        frames: ``np.ndarray [shape=(B, H, W, 3)]`` uint8 RGB.

    Returns:
        ``np.ndarray [shape=(B, H * 3 // 2, W)]`` uint8, PyAV's ``yuv420p`` layout per frame.
    """
    b, h, w, _ = frames.shape
    check_even(h, w)
    ycc = frames.astype(np.float32) @ BT601.T.astype(np.float32) + OFFSETS.astype(np.float32)
    y = ycc[..., 0]
    chroma = ycc[..., 1:].reshape(b, h // 2, 2, w // 2, 2, 2).mean(axis=(2, 4))
    uv = chroma.transpose(0, 3, 1, 2).reshape(b, h // 2, w)
    out = np.concatenate([y, uv], axis=1)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
