"""Group Aggregation Bridge (GAB), the skip connection of EGE-UNet."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from .dilated_conv import DilatedDepthwiseConv3d
from .ghpa import split_sizes
from .layernorm import ChannelLayerNorm, export_grouped_norms
from .utils import norm_layer, resize_to

#: ONNX exports of bridges up to this many voxels normalise all groups together (see GAB._export_forward).
GROUPED_NORMS_VOXELS = 64 * 64


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
        norm: str | tuple | None = "channel_layer",
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
            self.groups.append(nn.Sequential(norm_layer(norm, spatial_dims, c), depthwise))
        merged = 2 * low_channels + len(dilations) * mask_channels
        self.tail = nn.Sequential(norm_layer(norm, spatial_dims, merged), conv(merged, low_channels, kernel_size=1))

    def forward(self, x_high: torch.Tensor, x_low: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if (mask is None) != (self.mask_channels == 0):
            raise ValueError(
                "this GAB was built for " + str(self.mask_channels) + " mask channels; pass a mask exactly then"
            )
        x_high = resize_to(self.pre_project(x_high), x_low.shape[2:])
        highs = torch.split(x_high, self.sizes, dim=1)
        lows = torch.split(x_low, self.sizes, dim=1)
        if not torch.jit.is_scripting():
            if torch.onnx.is_in_onnx_export():
                return self._export_forward(highs, lows, mask)
        return self.tail(self._groups_outputs(highs, lows, mask))

    def _groups_outputs(
        self, highs: list[torch.Tensor], lows: list[torch.Tensor], mask: torch.Tensor | None
    ) -> torch.Tensor:
        # each group on its high and low channels (and the mask), concatenated for the tail
        outs = []
        for i, group in enumerate(self.groups):
            parts = [highs[i], lows[i]]
            if mask is not None:
                parts.append(mask)
            outs.append(group(torch.cat(parts, dim=1)))
        return torch.cat(outs, dim=1)

    def _export_forward(self, highs: list, lows: list, mask: torch.Tensor | None) -> torch.Tensor:
        # The same computation in fewer or cheaper ONNX Runtime nodes. Up to 64x64 voxels, where the node count
        # outweighs the data, the groups' norms run together on one tensor (above, four small groups stay in the
        # cache better than one large tensor); the tail's norm is folded into its 1x1 convolution
        norms = [group[0] for group in self.groups]
        voxels = math.prod(int(s) for s in highs[0].shape[2:])
        if voxels <= GROUPED_NORMS_VOXELS and all(isinstance(norm, ChannelLayerNorm) for norm in norms):
            parts = []
            for high, low in zip(highs, lows):
                parts += [high, low] + ([mask] if mask is not None else [])
            widths = [int(norm.weight.shape[0]) for norm in norms]
            normalised = torch.split(export_grouped_norms(norms, torch.cat(parts, dim=1)), widths, dim=1)
            merged = torch.cat([group[1](part) for group, part in zip(self.groups, normalised)], dim=1)
        else:
            merged = self._groups_outputs(highs, lows, mask)
        if isinstance(self.tail[0], ChannelLayerNorm):
            return self.tail[0].export_then_pointwise(self.tail[1], merged)
        return self.tail(merged)
