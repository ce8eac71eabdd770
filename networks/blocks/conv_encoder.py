"""A plain convolutional four-level encoder with features at strides 4/8/16/32, U-Net v2's non-transformer backbone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["UNetV2ConvEncoder"]


class UNetV2ConvEncoder(nn.Module):
    """A plain convolutional four-level encoder for U-Net v2, in 2D or 3D, with features at strides 4/8/16/32.

    Level 1 is a stem of two stride-2 3x3 convs and one stride-1 3x3 conv; levels 2-4 are a stride-2 3x3 conv
    then a stride-1 3x3 conv. Every conv is followed by a norm and an activation (MONAI
    :class:`~monai.networks.blocks.Convolution`). The padded strided convs give ceil(size / 2) at every step,
    so any input size works. It gives U-Net v2 a backbone where no pretrained transformer exists, notably in
    3D; the strides match PVTv2's so the SDI and decoder are unchanged.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        channels: widths of the four levels.
        act: activation type and arguments (MONAI ``Act`` factory spelling).
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory spelling).
        dropout: dropout ratio (MONAI ``Dropout`` factory spelling); ``None`` for none.

    Example::

        >>> enc = UNetV2ConvEncoder(spatial_dims=3, in_channels=1)
        >>> [tuple(f.shape) for f in enc(torch.randn(1, 1, 33, 40, 24))]
        [(1, 32, 9, 10, 6), (1, 64, 5, 5, 3), (1, 128, 3, 3, 2), (1, 256, 2, 2, 1)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        act: tuple | str | None = "relu",
        norm: tuple | str | None = "batch",
        dropout: tuple | str | float | None = None,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"channels must have 4 level widths, got {tuple(channels)}.")
        self.out_channels = tuple(int(c) for c in channels)
        self.strides = (4, 8, 16, 32)

        def conv(cin: int, cout: int, stride: int) -> Convolution:
            return Convolution(
                spatial_dims, cin, cout, strides=stride, kernel_size=3, act=act, norm=norm, dropout=dropout
            )

        c = self.out_channels
        self.levels = nn.ModuleList(
            [nn.Sequential(conv(in_channels, c[0], 2), conv(c[0], c[0], 2), conv(c[0], c[0], 1))]
            + [nn.Sequential(conv(c[i - 1], c[i], 2), conv(c[i], c[i], 1)) for i in range(1, 4)]
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:  # noqa: UP006
        features: List[torch.Tensor] = []  # noqa: UP006
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features
