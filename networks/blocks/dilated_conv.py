"""Dilated depthwise convolution computed exactly as an undilated one on the dilation's interleaved sub-grids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional

import torch
import torch.nn.functional as F
from monai.utils import ensure_tuple_rep
from torch import nn

__all__ = ["DilatedDepthwiseConv3d", "dilated_depthwise_conv"]


def dilated_depthwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], dilation: List[int]
) -> torch.Tensor:
    """A "same"-padded depthwise convolution of dilation ``dilation``, computed without dilation.

    With dilation d along an axis, output voxel ``d * q + r`` only reads input voxels ``d * (q + j) + r``: each
    of the d phases r is an ordinary undilated convolution of the sub-grid ``x[r::d]``. The input is zero-padded
    at the end to a multiple of d (those zeros stand for the convolution's own zero padding), the phases of
    all axes are moved into the batch axis, one undilated depthwise convolution runs on all of them, and the
    result is interleaved back and cropped. Every output is the same sum of the same products as the dilated
    convolution's, so the two agree to rounding; on the CPU the undilated convolution has fast kernels where
    the dilated one falls back to a slow generic path (9-40x slower in 3D).

    Args:
        x: input (N, C, *spatial), 1 to 3 spatial dimensions.
        weight: depthwise kernel (C, 1, *kernel_size), odd sizes.
        bias: per-channel bias (C,) or None.
        dilation: dilation per spatial axis.

    Returns:
        the convolution's output, of the shape of ``x``.

    Example::

        >>> x, w = torch.randn(1, 4, 10, 11, 9), torch.randn(4, 1, 3, 3, 3)
        >>> ref = F.conv3d(x, w, padding=5, dilation=5, groups=4)
        >>> torch.allclose(dilated_depthwise_conv(x, w, None, [5, 5, 5]), ref, atol=1e-5)
        True
    """
    spatial = list(x.shape[2:])
    n = len(spatial)
    batch, channels = x.shape[0], x.shape[1]
    pad: List[int] = []
    for i in range(n - 1, -1, -1):
        pad += [0, (-spatial[i]) % dilation[i]]
    if any(p > 0 for p in pad):
        x = F.pad(x, pad)
    cells = [(size + (-size) % d) // d for size, d in zip(spatial, dilation)]
    split: List[int] = [batch, channels]
    for m, d in zip(cells, dilation):
        split += [m, d]
    # (N, C, m0, d0, m1, d1, ...) -> (N, d0, d1, ..., m0, m1, ..., C): the phases join the batch axis and the
    # channels go last, the layout in which the CPU's depthwise kernels are fastest
    to_phases = [0] + [3 + 2 * i for i in range(n)] + [2 + 2 * i for i in range(n)] + [1]
    phases = 1
    for d in dilation:
        phases *= d
    x = x.reshape(split).permute(to_phases).reshape([batch * phases] + cells + [channels])
    x = x.permute([0, n + 1] + [1 + i for i in range(n)])
    padding = [k // 2 for k in weight.shape[2:]]
    if n == 1:
        y = F.conv1d(x, weight, bias, padding=padding, groups=channels)
    elif n == 2:
        y = F.conv2d(x, weight, bias, padding=padding, groups=channels)
    else:
        y = F.conv3d(x, weight, bias, padding=padding, groups=channels)
    # (N * d0 * d1 ..., C, m0, ...) -> (N, C, m0, d0, m1, d1, ...), then merge each (m, d) pair into one axis
    y = y.permute([0] + [2 + i for i in range(n)] + [1]).reshape([batch] + list(dilation) + cells + [channels])
    from_phases = [0, 2 * n + 1]
    for i in range(n):
        from_phases += [n + 1 + i, 1 + i]
    y = y.permute(from_phases).reshape([batch, channels] + [m * d for m, d in zip(cells, dilation)])
    if any(p > 0 for p in pad):
        if n == 1:
            y = y[:, :, : spatial[0]]
        elif n == 2:
            y = y[:, :, : spatial[0], : spatial[1]]
        else:
            y = y[:, :, : spatial[0], : spatial[1], : spatial[2]]
    return y


class DilatedDepthwiseConv3d(nn.Conv3d):
    """A "same"-padded depthwise :class:`torch.nn.Conv3d` of any dilation that is fast on the CPU.

    A plain ``nn.Conv3d`` with the same parameters (same ``weight`` and ``bias``, same state dict), whose
    forward pass on the CPU is :func:`dilated_depthwise_conv`: PyTorch's CPU kernel for dilated 3D convolutions
    is a generic loop many times slower than its undilated depthwise kernel. Elsewhere (CUDA, the meta device
    of the MAC counter) the native convolution runs.

    Args:
        channels: input and output channels (one filter per channel).
        kernel_size: odd kernel size, one per axis or one for all.
        dilation: dilation, one per axis or one for all.

    Example::

        >>> conv = DilatedDepthwiseConv3d(8, kernel_size=3, dilation=5)
        >>> conv(torch.randn(1, 8, 20, 21, 22)).shape
        torch.Size([1, 8, 20, 21, 22])
    """

    def __init__(self, channels: int, kernel_size: Sequence[int] | int = 3, dilation: Sequence[int] | int = 1) -> None:
        kernel = ensure_tuple_rep(kernel_size, 3)
        dilations = ensure_tuple_rep(dilation, 3)
        if any(k % 2 == 0 for k in kernel):
            raise ValueError(f"kernel_size must be odd for a same-size output, got {kernel_size}.")
        padding = tuple(d * (k // 2) for d, k in zip(dilations, kernel))
        super().__init__(channels, channels, kernel, padding=padding, dilation=dilations, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cpu and (self.dilation[0] > 1 or self.dilation[1] > 1 or self.dilation[2] > 1):
            return dilated_depthwise_conv(x, self.weight, self.bias, list(self.dilation))
        return F.conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
