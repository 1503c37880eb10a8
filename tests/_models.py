"""Model helpers for the export and runtime tests: tiny BigGAN-deep configs and references.

The tiny config keeps every kind of block of the real architecture (up-sampling with and
without channel drop, a channel drop without up-sampling, self-attention) at 32 pixels and a
channel width of 8, so a forward pass takes milliseconds.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

TINY_RESOLUTION = 32
TINY_CONFIG = {
    "output_dim": TINY_RESOLUTION,
    "z_dim": 128,
    "class_embed_dim": 128,
    "channel_width": 8,
    "num_classes": 1000,
    "layers": [
        [False, 16, 16],
        [True, 16, 8],
        [True, 8, 8],
        [False, 8, 4],
        [True, 4, 2],
        [False, 2, 1],
    ],
    "attention_layer_position": 3,
    "eps": 1e-4,
    "n_stats": 51,
}
TRUNCATIONS = (0.14, 0.4, 0.405, 0.58, 1.0)


@pytest.fixture(autouse=True)
def _library_logging():
    """Give each test the library logger's defaults back (the CLI reconfigures it)."""
    log = logging.getLogger("dmv_fast")
    saved = (log.handlers[:], log.propagate, log.level)
    log.handlers[:], log.propagate = [], True
    log.setLevel(logging.NOTSET)
    yield
    log.handlers[:], log.propagate = saved[0], saved[1]
    log.setLevel(saved[2])


def tiny_model(seed: int = 3, **overrides):
    """A tiny random BigGAN-deep (PyTorch, eval mode)."""
    from dmv_fast_export.weights import random_model
    from pytorch_pretrained_biggan import BigGANConfig

    config = BigGANConfig.from_dict({**TINY_CONFIG, **overrides})
    config.layers = [tuple(layer) for layer in config.layers]
    return random_model(config, seed)


def write_tiny_folder(folder: Path, seed: int = 3, **overrides):
    """A folder in pytorch-pretrained-biggan's format (pytorch_model.bin + config.json)."""
    from dmv_fast_export.weights import save_pretrained

    model = tiny_model(seed, **overrides)
    save_pretrained(model, folder)
    return model


def export_tiny(tmp_path_factory, batch: int, seed: int = 3, **ensure_kwargs) -> Path:
    """A tiny model written to disk and exported (fp32 unless ``precision`` says otherwise)
    into a cache of its own; returns the graph's path."""
    from dmv_fast.model import cache as models
    from dmv_fast.model import weights as model_weights

    precision = ensure_kwargs.pop("precision", "fp32")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(model_weights.ENV_CACHE, str(tmp_path_factory.mktemp("cache")))
        folder = tmp_path_factory.mktemp("tiny")
        write_tiny_folder(folder, seed)
        return models.ensure_onnx(TINY_RESOLUTION, folder, precision, batch, **ensure_kwargs)


def write_narrow_folder(folder: Path, seed: int = 3) -> Path:
    """BigGAN-deep-128's real layout at 4 channels wide, saved in pytorch-pretrained-biggan's
    format: what end-to-end tests render with."""
    from dmv_fast_export.weights import random_model, save_pretrained, standard_config

    config = standard_config(128)
    config.channel_width = 4
    save_pretrained(random_model(config, seed=seed), folder)
    return folder


def inputs(batch: int, seed: int = 7, truncation: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Noise like the trajectories make it (|z| <= 2T) and class mixtures (sum <= 1)."""
    rng = np.random.default_rng(seed)
    noise = (np.clip(rng.standard_normal((batch, 128)), -2, 2) * truncation).astype(np.float32)
    classes = np.zeros((batch, 1000), np.float32)
    for i in range(batch):
        picks = rng.choice(1000, size=4, replace=False)
        classes[i, picks] = rng.dirichlet(np.ones(4))
    return noise, classes


def stretch(image: np.ndarray) -> np.ndarray:
    """SPEC §5, written out here: per frame min..max over all channels and pixels to 0..255,
    ``uint8(clip((x - min) * 255 / ptp, 0, 255) + 0.5)``, float32 ``[B, 3, H, W]`` in,
    uint8 ``[B, H, W, 3]`` out."""
    out = []
    for frame in image.astype(np.float32):
        lo, hi = frame.min(), frame.max()
        ptp = hi - lo if hi > lo else np.float32(1.0)
        scaled = (frame - lo) * np.float32(255.0) / ptp
        out.append((np.clip(scaled, 0, 255) + np.float32(0.5)).astype(np.uint8))
    return np.stack(out).transpose(0, 2, 3, 1)


def torch_reference(model, noise: np.ndarray, classes: np.ndarray, truncation: float):
    """pytorch-pretrained-biggan's own forward pass in eval mode, then :func:`stretch`."""
    import torch

    with torch.no_grad():
        image = model.eval()(torch.from_numpy(noise), torch.from_numpy(classes), truncation)
    return stretch(image.numpy())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
