"""Fold a pytorch-pretrained-biggan model into plain NumPy arrays for the graph builder.

Eval-mode spectral norm divides each weight by ``sigma = u . (W v)`` with the stored vectors;
the folded weights are computed by spectral norm's own code with power iteration off, so they
are exactly the weights the model uses in eval mode.
Everything else is rearranged for the graph, never approximated:

- the class embedding and ``gen_z`` become MatMul weights; ``gen_z``'s rows are permuted so
  its output reshapes straight to NCHW (the original reshapes to NHWC and transposes);
- the scale/offset linears of every conditional BatchNorm are concatenated into one matrix,
  and the 51 standing statistics of every BatchNorm into two ``[51, channels]`` tables;
- the attention's ``gamma`` is folded into its output convolution, and its theta/phi/g
  convolutions are stacked into one;
- ``conv_to_rgb`` is cut to the 3 channels the model keeps, after folding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pytorch_pretrained_biggan import BigGAN
from pytorch_pretrained_biggan.model import GenBlock, SelfAttn
from torch.nn.utils.spectral_norm import SpectralNorm


@dataclass
class Block:
    """One GenBlock: BatchNorm column offsets and plain conv weights (OIHW)."""

    up: bool
    c_in: int
    c_out: int
    bn: list[tuple[int, int]]  # (offset, channels) of bn_0..bn_3 in the stacked tables
    conv: list[tuple[np.ndarray, np.ndarray]]  # (weight, bias) of conv_0..conv_3


@dataclass
class Attention:
    """Self-attention: stacked theta/phi/g 1x1 weights and gamma * o_conv."""

    channels: int
    w_tpg: np.ndarray  # [C/8 + C/8 + C/2, C, 1, 1]
    w_out: np.ndarray  # [C, C/2, 1, 1]


@dataclass
class Folded:
    """The whole generator as arrays (float32), ready for the ONNX graph builder."""

    resolution: int
    channel_width: int
    eps: float
    embed: np.ndarray  # [1000, 128]: classes @ embed
    gen_z_w: np.ndarray  # [256, 16 * ch * 16]: output reshapes to [B, 16 ch, 4, 4]
    gen_z_b: np.ndarray
    cond_w: np.ndarray  # [256, 2 * n_cond]: gamma columns, then beta columns
    n_cond: int
    stats_mean: np.ndarray  # [51, n_cond + ch]: conditional BNs, then the final BN
    stats_var: np.ndarray
    final_bn: tuple[int, int]
    final_weight: np.ndarray  # [ch]
    final_bias: np.ndarray
    rgb_w: np.ndarray  # [3, ch, 3, 3]
    rgb_b: np.ndarray  # [3]
    layers: list[Block | Attention] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _weight(module: torch.nn.Module) -> np.ndarray:
    """A module's weight as eval mode uses it: spectral norm applied with the stored u, v."""
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm):
            return _np(hook.compute_weight(module, do_power_iteration=False))
    return _np(module.weight)


@torch.no_grad()
def fold(model: BigGAN) -> Folded:
    """Fold a BigGAN (any config) into :class:`Folded` arrays."""
    config = model.config
    model = model.eval()
    gen = model.generator
    ch = config.channel_width
    c16 = 16 * ch

    # gen_z's output index is (h * 4 + w) * c16 + c (NHWC); reorder rows to c * 16 + h * 4 + w.
    c, h, w = np.meshgrid(np.arange(c16), np.arange(4), np.arange(4), indexing="ij")
    perm = ((h * 4 + w) * c16 + c).reshape(-1)
    gen_z_w = _weight(gen.gen_z)[perm].T
    gen_z_b = _np(gen.gen_z.bias)[perm]

    scale_w, offset_w, means, variances = [], [], [], []
    offset = 0
    eps_values = set()

    def add_bn(bn: Any) -> tuple[int, int]:
        nonlocal offset
        n = bn.num_features
        eps_values.add(float(bn.eps))
        means.append(_np(bn.running_means))
        variances.append(_np(bn.running_vars))
        if bn.conditional:
            scale_w.append(_weight(bn.scale))
            offset_w.append(_weight(bn.offset))
        pos = (offset, n)
        offset += n
        return pos

    layers: list[Block | Attention] = []
    for layer in gen.layers:
        if isinstance(layer, GenBlock):
            bns = [add_bn(getattr(layer, f"bn_{i}")) for i in range(4)]
            convs = [
                (_weight(getattr(layer, f"conv_{i}")), _np(getattr(layer, f"conv_{i}").bias))
                for i in range(4)
            ]
            layers.append(
                Block(
                    up=bool(layer.up_sample),
                    c_in=int(layer.conv_0.in_channels),
                    c_out=int(layer.conv_3.out_channels),
                    bn=bns,
                    conv=convs,
                )
            )
        elif isinstance(layer, SelfAttn):
            w_tpg = np.concatenate(
                [
                    _weight(layer.snconv1x1_theta),
                    _weight(layer.snconv1x1_phi),
                    _weight(layer.snconv1x1_g),
                ]
            )
            gamma = float(layer.gamma.item())
            w_out = (_weight(layer.snconv1x1_o_conv).astype(np.float64) * gamma).astype(np.float32)
            layers.append(Attention(channels=int(layer.in_channels), w_tpg=w_tpg, w_out=w_out))
        else:  # pragma: no cover
            raise AssertionError(f"unexpected layer {type(layer).__name__}")
    n_cond = offset
    final = add_bn(gen.bn)
    if len(eps_values) != 1:
        raise ValueError(f"all BatchNorms must share one eps, got {sorted(eps_values)}")

    rgb = gen.conv_to_rgb
    return Folded(
        resolution=int(config.output_dim),
        channel_width=ch,
        eps=eps_values.pop(),
        embed=_np(model.embeddings.weight).T.copy(),
        gen_z_w=np.ascontiguousarray(gen_z_w),
        gen_z_b=gen_z_b,
        cond_w=np.concatenate(scale_w + offset_w).T.copy(),
        n_cond=n_cond,
        stats_mean=np.concatenate(means, axis=1),
        stats_var=np.concatenate(variances, axis=1),
        final_bn=final,
        final_weight=_np(gen.bn.weight),
        final_bias=_np(gen.bn.bias),
        rgb_w=_weight(rgb)[:3].copy(),
        rgb_b=_np(rgb.bias)[:3].copy(),
        layers=layers,
    )
