"""Attention blocks for U-Nets: the additive grid attention gate of Attention U-Net and a self-attention block."""

from __future__ import annotations

from typing import Tuple

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from torch import nn

from .utils import act_layer, resize_to

__all__ = ["AttentionGate", "SelfAttentionBlock"]


class AttentionGate(nn.Module):
    """Additive grid attention gate of Attention U-Net, gated by a coarser feature map.

    Oktay, Schlemper, Le Folgoc et al.: "Attention U-Net: Learning Where to Look for the Pancreas",
    MIDL 2018, https://arxiv.org/abs/1804.03999.

    For a skip feature ``x`` and a gating signal ``g`` from a coarser level:

    - theta: conv of ``x`` to ``inter_channels`` with kernel = stride = ``sub_sample`` and no bias, so the
      gate works on a grid ``sub_sample`` times coarser than ``x``;
    - phi: 1x1 conv of ``g`` to ``inter_channels``, (bi/tri)linearly resized to theta's grid;
    - alpha = sigmoid(psi(act(theta + phi))), act a ReLU, psi a 1x1 conv to one channel, resized back to
      ``x``'s size;
    - output W(x * alpha), W a 1x1 conv followed by a norm layer.

    Because ``g`` is resized to theta's grid rather than assumed to be exactly half the size of ``x``, the
    gate accepts any pair of sizes (every spatial size of ``x`` must be at least ``sub_sample``).

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3).
        in_channels: channels of the gated feature ``x`` (and of the output).
        gating_channels: channels of the gating signal ``g``.
        inter_channels: channels of theta, phi and their sum; defaults to ``in_channels`` as in the
            published 3D CT network.
        sub_sample: kernel size and stride of theta (the size ratio between ``x`` and ``g``).
        act: activation of theta + phi (MONAI ``Act`` spelling; ReLU as published); ``None`` for none.
        norm: norm of the output transform W (MONAI ``Norm`` spelling); ``None`` for none.

    Example::

        >>> gate = AttentionGate(spatial_dims=2, in_channels=32, gating_channels=64)
        >>> out, alpha = gate(torch.randn(1, 32, 40, 40), torch.randn(1, 64, 20, 20))
        >>> out.shape, alpha.shape
        (torch.Size([1, 32, 40, 40]), torch.Size([1, 1, 40, 40]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        gating_channels: int,
        inter_channels: int | None = None,
        sub_sample: int = 2,
        act: str | tuple | None = "relu",
        norm: str | tuple | None = "batch",
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        inter = in_channels if inter_channels is None else inter_channels
        self.theta = conv(in_channels, inter, kernel_size=sub_sample, stride=sub_sample, bias=False)
        self.phi = conv(gating_channels, inter, kernel_size=1)
        self.psi = conv(inter, 1, kernel_size=1)
        self.act = act_layer(act)
        self.W = Convolution(spatial_dims, in_channels, in_channels, kernel_size=1, act=None, norm=norm)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # noqa: UP006
        """Return the gated feature (same shape as ``x``) and the attention coefficients (N, 1, *x's size)."""
        theta = self.theta(x)
        phi = resize_to(self.phi(g), theta.shape[2:])
        alpha = torch.sigmoid(self.psi(self.act(theta + phi)))
        alpha = resize_to(alpha, x.shape[2:])
        return self.W(x * alpha), alpha


class SelfAttentionBlock(nn.Module):
    """Non-local self-attention over all positions with a zero-initialised residual scale.

    Zhang, Goodfellow, Metaxas, Odena: "Self-Attention Generative Adversarial Networks", ICML 2019,
    https://arxiv.org/abs/1805.08318; used at the bottleneck of attention-enhanced U-Nets.

    Query and key are 1x1 convs to ``max(in_channels // reduction, 1)`` channels, value a 1x1 conv to
    ``in_channels``. Every position attends to every position (softmax over the keys, no scaling), and the
    output is ``gamma * attended + x`` with a learnable scalar ``gamma`` initialised to 0, so the block starts
    as the identity and learns how much global context to mix in. Memory grows with the square of the number
    of positions, so use it on coarse maps only.

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3).
        in_channels: number of input (and output) channels.
        reduction: channel reduction of query and key.

    Example::

        >>> block = SelfAttentionBlock(spatial_dims=3, in_channels=64)
        >>> x = torch.randn(1, 64, 6, 10, 10)
        >>> torch.equal(block(x), x)  # gamma starts at 0
        True
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 8) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        qk_channels = max(in_channels // reduction, 1)
        self.query = conv(in_channels, qk_channels, kernel_size=1)
        self.key = conv(in_channels, qk_channels, kernel_size=1)
        self.value = conv(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query(x).flatten(2)  # (N, C', P)
        k = self.key(x).flatten(2)  # (N, C', P)
        v = self.value(x).flatten(2)  # (N, C, P)
        attn = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (N, P query, P key)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(x.shape)
        return self.gamma * out + x
