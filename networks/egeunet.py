"""EGE-UNet: an efficient group-enhanced U-Net for skin lesion segmentation (Ruan et al., MICCAI 2023)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from .blocks import GAB, GHPA
from .blocks.pool import MaxPool2x
from .blocks.utils import resize_to

__all__ = ["EGEUNet", "EGEUnet"]


class EGEUNet(nn.Module):
    """EGE-UNet, a 53 K-parameter U-Net built from GHPA blocks and Group Aggregation Bridges.

    Ruan, Xie, Gao, Liu, Fu: "EGE-UNet: an Efficient Group Enhanced UNet for skin lesion segmentation",
    MICCAI 2023, https://arxiv.org/abs/2307.08473.

    Six encoder stages (three 3x3 convs then three GHPA blocks, GroupNorm, 2x max-pooling after the first
    five, GELU) and a mirrored decoder. With ``deep_supervision``, every decoder stage has a 1x1 side head;
    with ``bridge``, each skip goes through a GAB fed by the bridge output of the level below and by that
    stage's side output, and is added to the decoder feature.

    Compared with the published code this version

    - returns logits (apply sigmoid or softmax outside) and supports ``out_channels > 1``: the side heads
      and the bridges' mask inputs then have ``out_channels`` channels;
    - works without deep supervision while keeping the bridges (they then take no mask), and without bridges;
    - accepts any input with every spatial size >= 32: decoder features are resized to the skip's size instead
      of being upsampled by a fixed factor, so sizes need not be multiples of 32;
    - has a 3D variant (``spatial_dims=3``, trilinear resizing, 3D GHPA with one attention group per axis).

    In training mode with ``deep_supervision`` the forward pass returns a list of logits, all at the input
    size: the main output then the side outputs from finest to coarsest. In eval mode (or without deep
    supervision) it returns the main logits only, so it works with sliding-window inference and exports.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels (classes; 1 for binary segmentation with a sigmoid).
        channels: the six stage widths; each must be divisible by 4 (GroupNorm with 4 groups).
        bridge: use Group Aggregation Bridges on the skips (otherwise plain additive skips).
        deep_supervision: add side heads, return them in training and feed them to the bridges.

    Example::

        >>> net = EGEUNet(spatial_dims=2, in_channels=3, out_channels=1).eval()
        >>> net(torch.randn(1, 3, 256, 192)).shape
        torch.Size([1, 1, 256, 192])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (8, 16, 24, 32, 48, 64),
        bridge: bool = True,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        if len(channels) != 6:
            raise ValueError(f"channels must have 6 stage widths, got {tuple(channels)}.")
        if any(c % 4 for c in channels):
            raise ValueError(
                f"every width in channels must be divisible by 4 (GroupNorm groups), got {tuple(channels)}."
            )
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        self.spatial_dims = spatial_dims
        # five 2x poolings: the coarsest level needs at least one voxel
        self.min_size = 2**5
        self.bridge = bridge
        self.deep_supervision = deep_supervision
        conv = Conv[Conv.CONV, spatial_dims]
        c = list(channels)

        ops: list[nn.Module] = [
            conv(in_channels, c[0], kernel_size=3, padding=1),
            conv(c[0], c[1], kernel_size=3, padding=1),
            conv(c[1], c[2], kernel_size=3, padding=1),
            GHPA(spatial_dims, c[2], c[3]),
            GHPA(spatial_dims, c[3], c[4]),
        ]
        # each of the first five stages: op -> GroupNorm -> 2x max-pool (GELU in forward)
        self.encoders = nn.ModuleList(
            nn.Sequential(op, nn.GroupNorm(4, width), MaxPool2x()) for op, width in zip(ops, c[:5])
        )
        self.bottom = GHPA(spatial_dims, c[4], c[5])

        mask_channels = out_channels if deep_supervision else 0
        self.decoders = nn.ModuleList()
        for level in reversed(range(5)):  # level 4 (coarsest skip) up to level 0
            op = (
                GHPA(spatial_dims, c[level + 1], c[level]) if level >= 2 else conv(c[level + 1], c[level], 3, padding=1)
            )
            self.decoders.append(
                _DecoderStage(
                    op=op,
                    norm=nn.GroupNorm(4, c[level]),
                    side_head=conv(c[level], out_channels, kernel_size=1) if deep_supervision else None,
                    bridge=GAB(spatial_dims, c[level + 1], c[level], mask_channels) if bridge else None,
                )
            )
        self.final = conv(c[0], out_channels, kernel_size=1)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:  # noqa: UP006,UP007
        size = x.shape[2:]
        if min(size) < self.min_size:
            raise ValueError(
                "EGEUNet needs every spatial size >= " + str(self.min_size) + " (five 2x poolings); got " + str(size)
            )

        # 2D inference on CPU: channels-last memory makes the depthwise convolutions and the channel LayerNorms
        # cheaper (10-25% in all); training keeps the default layout, whose backward kernels are faster
        channels_last = (
            self.spatial_dims == 2 and not self.training and not torch.is_grad_enabled() and x.device.type == "cpu"
        )
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        skips: List[torch.Tensor] = []  # noqa: UP006
        for encoder in self.encoders:
            x = F.gelu(encoder(x))
            skips.append(x)
        x = F.gelu(self.bottom(x))

        bridge_in = x
        sides: List[torch.Tensor] = []  # noqa: UP006
        for k, decoder in enumerate(self.decoders):
            x, bridge_in, side = decoder(x, skips[4 - k], bridge_in)
            if side is not None:
                sides.append(side)
        out = resize_to(self.final(x), size)
        if channels_last:
            out = out.contiguous()

        if self.training and self.deep_supervision:
            return [out] + [resize_to(side, size) for side in sides[::-1]]
        return out


class _DecoderStage(nn.Module):
    """One EGE-UNet decoder stage: op -> GroupNorm -> resize to the skip -> GELU, then side head and bridge."""

    def __init__(self, op: nn.Module, norm: nn.Module, side_head: nn.Module | None, bridge: nn.Module | None) -> None:
        super().__init__()
        self.op = op
        self.norm = norm
        self.side_head = side_head
        self.bridge = bridge

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, bridge_in: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:  # noqa: UP006,UP007
        x = F.gelu(resize_to(self.norm(self.op(x)), skip.shape[2:]))
        side: Optional[torch.Tensor] = None  # noqa: UP007
        if self.side_head is not None:
            side = self.side_head(x)
        if self.bridge is not None:
            # the bridge output replaces the skip and feeds the bridge of the next, finer stage
            skip = self.bridge(bridge_in, skip, side)
            bridge_in = skip
        return x + skip, bridge_in, side


def _init_weights(module: nn.Module) -> None:
    """He-normal (fan-out) initialisation of the published EGE-UNet."""
    if isinstance(module, nn.Conv1d):
        fan_out = module.kernel_size[0] * module.out_channels
        module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
    elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
        fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
        module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            module.bias.data.zero_()


EGEUnet = EGEUNet
