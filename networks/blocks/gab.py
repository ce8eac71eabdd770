"""Group Aggregation Bridge (GAB), the skip connection of EGE-UNet."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer
from torch import nn

from .dilated_conv import DilatedDepthwiseConv3d
from .ghpa import split_sizes
from .utils import resize_to


class GAB(nn.Module):
    """Group Aggregation Bridge (Ruan et al., EGE-UNet, MICCAI 2023).

    Fuses a coarse decoder feature ``x_high``, the encoder skip ``x_low`` and a deep-supervision mask. The
    coarse feature is projected to ``low_channels`` by a 1x1 conv and resized to the skip's size; both are
    split into ``len(dilations)`` channel groups; group i concatenates (x_high_i, x_low_i, mask) and goes
    through a channels-first LayerNorm and a depthwise 3x3 conv of dilation ``dilations[i]``. The groups are
    concatenated, normalised and projected back to ``low_channels`` by a 1x1 conv. In 3D the dilated convs are
    :class:`DilatedDepthwiseConv3d` (same parameters, computed without dilation on the CPU).

    The published block takes a one-channel mask (binary segmentation). Here ``mask_channels`` is free, so a
    multi-class network passes its K-channel side output, and ``mask_channels=0`` gives a bridge without
    mask for networks trained without deep supervision.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        high_channels: channels of the coarse feature ``x_high``.
        low_channels: channels of the skip feature ``x_low`` and of the output.
        mask_channels: channels of the mask (0: no mask).
        dilations: dilation of each group's depthwise conv.
        norm: the norm of each group and of the merged groups (MONAI ``Norm`` spelling; the published
            channels-first LayerNorm, ``"channel_layer"``).

    Example::

        >>> gab = GAB(spatial_dims=2, high_channels=32, low_channels=24, mask_channels=1)
        >>> gab(torch.randn(1, 32, 16, 16), torch.randn(1, 24, 32, 32), torch.randn(1, 1, 32, 32)).shape
        torch.Size([1, 24, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        high_channels: int,
        low_channels: int,
        mask_channels: int = 1,
        dilations: Sequence[int] = (1, 2, 5, 7),
        norm: str | tuple = "channel_layer",
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.mask_channels = mask_channels
        self.sizes = split_sizes(low_channels, len(dilations))
        self.pre_project = conv(high_channels, low_channels, kernel_size=1)
        self.groups = nn.ModuleList()
        for size, dilation in zip(self.sizes, dilations):
            c = 2 * size + mask_channels
            if spatial_dims == 3:
                depthwise = DilatedDepthwiseConv3d(c, kernel_size=3, dilation=dilation)
            else:
                depthwise = conv(c, c, kernel_size=3, padding=dilation, dilation=dilation, groups=c)
            self.groups.append(nn.Sequential(get_norm_layer(norm, spatial_dims, c), depthwise))
        merged = 2 * low_channels + len(dilations) * mask_channels
        self.tail = nn.Sequential(get_norm_layer(norm, spatial_dims, merged), conv(merged, low_channels, kernel_size=1))

    def forward(self, x_high: torch.Tensor, x_low: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if (mask is None) != (self.mask_channels == 0):
            raise ValueError(
                "this GAB was built for " + str(self.mask_channels) + " mask channels; pass a mask exactly then"
            )
        x_high = resize_to(self.pre_project(x_high), x_low.shape[2:])
        highs = torch.split(x_high, self.sizes, dim=1)
        lows = torch.split(x_low, self.sizes, dim=1)
        outs = []
        for i, group in enumerate(self.groups):
            parts = [highs[i], lows[i]]
            if mask is not None:
                parts.append(mask)
            outs.append(group(torch.cat(parts, dim=1)))
        return self.tail(torch.cat(outs, dim=1))
