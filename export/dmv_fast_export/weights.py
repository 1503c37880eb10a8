"""BigGAN-deep configs, checkpoint loading (strict) and seeded random weights."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_pretrained_biggan import BigGAN, BigGANConfig
from pytorch_pretrained_biggan.model import BigGANBatchNorm, GenBlock, SelfAttn

from dmv_fast.model.weights import CONFIG_NAME, RANDOM_SEED, WEIGHTS_NAME, WeightsSource

logger = logging.getLogger("dmv_fast")

# (up-sample, input channels / channel_width, output channels / channel_width) per block; the
# self-attention block sits before block 8 in all three (64 x 64 pixels).
_LAYERS = {
    128: [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
          (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)],
    256: [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
          (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
          (False, 2, 2), (True, 2, 1)],
    512: [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
          (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
          (False, 2, 2), (True, 2, 1), (False, 1, 1), (True, 1, 1)],
}  # fmt: skip


def standard_config(resolution: int) -> BigGANConfig:
    """The published BigGAN-deep config for 128, 256 or 512 pixels."""
    if resolution not in _LAYERS:
        raise ValueError(f"resolution must be one of {tuple(_LAYERS)}, got {resolution!r}")
    return BigGANConfig(
        output_dim=resolution,
        z_dim=128,
        class_embed_dim=128,
        channel_width=128,
        num_classes=1000,
        layers=[tuple(layer) for layer in _LAYERS[resolution]],
        attention_layer_position=8,
        eps=1e-4,
        n_stats=51,
    )


def read_config(path: str | os.PathLike[str]) -> BigGANConfig:
    """Read a pytorch-pretrained-biggan ``config.json`` and check that dmv-fast can run it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{os.fspath(path)!r} is not a readable JSON config: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{os.fspath(path)!r} is not a BigGAN config (not a JSON object)")
    config = BigGANConfig.from_dict(data)
    config.layers = [tuple(layer) for layer in config.layers]
    check_config(config, os.fspath(path))
    return config


def check_config(config: BigGANConfig, where: str = "config") -> None:
    """ValueError unless the config is a BigGAN-deep the runtime can drive."""
    if config.z_dim != 128 or config.class_embed_dim != config.z_dim:
        raise ValueError(f"{where}: z_dim and class_embed_dim must be 128")
    if config.num_classes != 1000:
        raise ValueError(f"{where}: num_classes must be 1000, got {config.num_classes}")
    if config.n_stats != 51:
        raise ValueError(f"{where}: n_stats must be 51, got {config.n_stats}")
    try:
        ups = sum(bool(layer[0]) for layer in config.layers)
        channels = [(int(layer[1]), int(layer[2])) for layer in config.layers]
    except (TypeError, IndexError, ValueError) as e:
        raise ValueError(f"{where}: layers must be [up_sample, in, out] triples") from e
    if 4 * 2**ups != config.output_dim:
        raise ValueError(
            f"{where}: output_dim {config.output_dim} does not match {ups} up-sampling layers"
        )
    ch = config.channel_width
    if not channels or channels[-1][1] != 1:
        raise ValueError(f"{where}: the last layer must end with 1 x channel_width channels")
    for i, (c_in, c_out) in enumerate(channels):
        if i and channels[i - 1][1] != c_in:
            raise ValueError(f"{where}: layer {i} takes {c_in} but gets {channels[i - 1][1]}")
        if (ch * c_in) % 4 or c_out > c_in or (c_in != c_out and c_in != 2 * c_out):
            raise ValueError(f"{where}: unsupported channels in layer {i}: {c_in} -> {c_out}")
    pos = config.attention_layer_position
    if pos is not None and 0 <= pos < len(channels) and (ch * channels[pos][0]) % 8:
        raise ValueError(f"{where}: attention needs a multiple of 8 channels")


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` on the CPU, with a one-line error for a bad file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged or foreign file
        # Never pass on torch's advice to load it with weights_only=False: that runs
        # whatever code the file carries.
        if "Unsupported global" in str(e):
            raise ValueError(
                f"{os.fspath(path)!r} is not a plain state dict of tensors (it holds other"
                " Python objects) and was refused"
            ) from e
        if isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e):
            raise ValueError(
                f"{os.fspath(path)!r} is not a readable PyTorch checkpoint (damaged, or not a"
                " state dict)"
            ) from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{os.fspath(path)!r} is not a readable PyTorch checkpoint: {first}"
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{os.fspath(path)!r} does not hold a state dict of tensors")
    return state


def _fit_report(model: BigGAN, state: dict[str, torch.Tensor]) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" and {len(items) - 2} more" if len(items) > 2 else ""
            parts.append(f"{len(items)} {label} ({', '.join(items[:2])}{more})")
    return "; ".join(parts) or None


def build_model(config: BigGANConfig, state: dict[str, torch.Tensor], where: str) -> BigGAN:
    """The BigGAN model with ``state`` loaded by strict key and shape matching, in eval mode.

    Spectral norm's own load hooks still convert checkpoints saved by older PyTorch versions.
    """
    with torch.no_grad():
        model = BigGAN(config)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as e:
        problem = _fit_report(model, state) or str(e).strip().splitlines()[0]
        raise ValueError(
            f"weights in {where!r} do not fit the BigGAN-deep architecture: {problem}"
        ) from e
    return model.eval()


def load_model(source: WeightsSource) -> tuple[BigGAN, BigGANConfig]:
    """Load the model a :class:`WeightsSource` describes (no network)."""
    if source.kind == "random":
        config = standard_config(source.resolution)
        return random_model(config, RANDOM_SEED), config
    assert source.weights_file is not None
    if source.config_file is not None:
        config = read_config(source.config_file)
    else:
        config = standard_config(source.resolution)
    if config.output_dim != source.resolution:
        raise ValueError(
            f"{source.name!r} is a {config.output_dim}-pixel model, not {source.resolution}"
        )
    state = load_checkpoint(source.weights_file)
    return build_model(config, state, source.name), config


def save_pretrained(model: BigGAN, folder: str | os.PathLike[str]) -> Path:
    """Write ``pytorch_model.bin`` + ``config.json`` in pytorch-pretrained-biggan's format."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / WEIGHTS_NAME)
    (out / CONFIG_NAME).write_text(model.config.to_json_string(), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------------------
# Random weights


def _power_iteration(mat: np.ndarray, u: np.ndarray, steps: int = 20) -> tuple[np.ndarray, ...]:
    """Left/right singular vector estimates of ``mat`` (float64), as spectral norm keeps them.

    Exact convergence is not needed: eval mode divides by ``u . (W v)`` with whatever vectors
    are stored, and after a few steps that is close to the largest singular value.
    """
    for _ in range(steps):
        v = mat.T @ u
        v /= max(np.linalg.norm(v), 1e-12)
        u = mat @ v
        u /= max(np.linalg.norm(u), 1e-12)
    return u, v


def _round_log2(x: float, steps: int = 8) -> float:
    """Round to a coarse log2 grid so calibrated values agree on every machine."""
    return float(2.0 ** (round(math.log2(max(x, 1e-12)) * steps) / steps))


def random_model(config: BigGANConfig, seed: int = RANDOM_SEED) -> BigGAN:
    """The full architecture with seeded random weights that give finite, varied images.

    Every tensor is drawn from NumPy's PCG64 stream in state-dict order, so the weights are the
    same on every machine. Spectral-norm vectors are set by power iteration (a fresh model's
    random ``u``/``v`` give NaN in eval mode). The BatchNorm standing statistics are calibrated
    layer by layer on a few random inputs, so every residual branch contributes at a sane
    scale, rounded to a coarse grid, and given small per-channel and per-truncation variations
    so that the 51 truncation steps really differ.
    """
    check_config(config)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        model = BigGAN(config)
        state = model.state_dict()
        new: dict[str, np.ndarray] = {}
        for key, tensor in state.items():
            shape = tuple(tensor.shape)
            leaf = key.rsplit(".", 1)[-1]
            if leaf == "weight_orig":
                fan_in = int(np.prod(shape[1:]))
                arr = rng.standard_normal(shape, dtype=np.float32) / np.float32(math.sqrt(fan_in))
            elif leaf == "weight_u":
                arr = rng.standard_normal(shape)
            elif leaf == "weight_v":
                arr = np.zeros(shape)  # set by power iteration below
            elif leaf == "bias" and key.endswith("bn.bias"):
                arr = 0.1 * rng.standard_normal(shape)
            elif leaf == "weight" and key.endswith("bn.weight"):
                arr = 1.0 + 0.1 * rng.standard_normal(shape)
            elif leaf == "bias":
                arr = 0.02 * rng.standard_normal(shape)
            elif leaf == "gamma":
                arr = np.full(shape, 0.5)
            elif key == "embeddings.weight":
                arr = rng.standard_normal(shape)
            elif leaf == "running_means":
                arr = np.zeros(shape)
            elif leaf == "running_vars":
                arr = np.ones(shape)
            else:  # pragma: no cover - the architecture has no other tensors
                raise AssertionError(f"unexpected tensor {key}")
            new[key] = arr
        for key in new:
            if key.endswith("weight_orig"):
                prefix = key[: -len("weight_orig")]
                mat = new[key].reshape(new[key].shape[0], -1).astype(np.float64)
                u = new[prefix + "weight_u"]
                u, v = _power_iteration(mat, u / np.linalg.norm(u))
                new[prefix + "weight_u"], new[prefix + "weight_v"] = u, v
        model.load_state_dict(
            {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in new.items()},
            strict=True,
        )
        _calibrate(model, config, rng)
    return model.eval()


def _calibrate(model: BigGAN, config: BigGANConfig, rng: np.random.Generator) -> None:
    """Set each BatchNorm's statistics from the activations it sees, in forward order."""
    n_stats = config.n_stats
    batch = 2
    z = np.clip(rng.standard_normal((batch, config.z_dim)), -2, 2) * 0.5
    classes = np.zeros((batch, config.num_classes))
    classes[np.arange(batch), rng.integers(0, config.num_classes, batch)] = 1.0
    # Per-truncation variation: a smooth trend plus a small random wobble per step.
    steps = np.linspace(-1.0, 1.0, n_stats)[:, None]

    def hook(module: BigGANBatchNorm, args: tuple[Any, ...]) -> None:
        x = args[0].double()
        mean = _round_grid(float(x.mean()), float(x.std()))
        var = _round_log2(float(x.var()))
        c = module.num_features
        spread_m = 0.1 * rng.standard_normal((1, c)) + 0.05 * rng.standard_normal((n_stats, c))
        spread_v = 0.1 * rng.standard_normal((1, c)) + 0.05 * rng.standard_normal((n_stats, c))
        means = mean + math.sqrt(var) * (spread_m + 0.1 * steps)
        variances = var * np.exp(spread_v - 0.1 * steps)
        module.running_means.copy_(torch.from_numpy(means.astype(np.float32)))
        module.running_vars.copy_(torch.from_numpy(variances.astype(np.float32)))

    handles = [
        m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, BigGANBatchNorm)
    ]
    try:
        model.eval()
        model(
            torch.from_numpy(z.astype(np.float32)),
            torch.from_numpy(classes.astype(np.float32)),
            0.5,
        )
    finally:
        for h in handles:
            h.remove()


def _round_grid(mean: float, std: float) -> float:
    step = max(_round_log2(std), 1e-6) / 8
    return round(mean / step) * step


def count_blocks(model: BigGAN) -> tuple[int, int]:
    """(GenBlocks, attention blocks) of a model: for log lines."""
    layers = model.generator.layers
    return (
        sum(isinstance(m, GenBlock) for m in layers),
        sum(isinstance(m, SelfAttn) for m in layers),
    )
