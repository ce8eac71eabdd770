"""The double convolution of the classic U-Net and helpers that match feature sizes across a skip connection."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from torch import nn

__all__ = ["DoubleConv", "center_crop_to", "center_pad_to", "match_size"]

PADDING_MODES = ("same", "valid")


class DoubleConv(nn.Sequential):
    """Two (conv -> norm -> activation) layers, the building block of every U-Net level.

    Ronneberger, Fischer, Brox: "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, https://arxiv.org/abs/1505.04597. The paper uses unpadded 3x3 convs and ReLU without
    normalisation; batch norm after each conv is the common modern form (and the default here).

    With ``padding="valid"`` each conv trims ``kernel_size - 1`` voxels per axis, as in the paper
    (572 -> 570 -> 568 for the first block); with ``padding="same"`` the spatial size is kept.

    Args:
        spatial_dims: number of spatial dimensions (1, 2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels.
        mid_channels: channels between the two convs; defaults to ``out_channels``.
        kernel_size: odd kernel size of both convs.
        padding: ``"same"`` (zero padding, size kept) or ``"valid"`` (no padding).
        norm: a MONAI norm name or (name, kwargs) tuple such as ``"batch"`` or ``("group", {"num_groups": 8})``;
            ``None`` for no normalisation.
        act: a MONAI activation name or (name, kwargs) tuple.
        bias: whether the convs have a bias (the 31,042,369-parameter U-Net counts them even with batch norm).
        dropout: dropout probability after each activation (0 for none).

    Example::

        >>> block = DoubleConv(spatial_dims=2, in_channels=1, out_channels=64, padding="valid")
        >>> block(torch.randn(1, 1, 572, 572)).shape
        torch.Size([1, 64, 568, 568])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        kernel_size: int = 3,
        padding: str = "same",
        norm: str | tuple | None = "batch",
        act: str | tuple | None = ("relu", {"inplace": True}),
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}.")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}.")
        conv = Conv[Conv.CONV, spatial_dims]
        pad = (kernel_size - 1) // 2 if padding == "same" else 0
        mid = out_channels if mid_channels is None else mid_channels
        for i, (c_in, c_out) in enumerate(((in_channels, mid), (mid, out_channels)), start=1):
            self.add_module(f"conv{i}", conv(c_in, c_out, kernel_size=kernel_size, padding=pad, bias=bias))
            if norm is not None:
                self.add_module(f"norm{i}", get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=c_out))
            if act is not None:
                self.add_module(f"act{i}", get_act_layer(name=act))
            if dropout > 0:
                self.add_module(f"drop{i}", nn.Dropout(dropout))


def center_crop_to(x: torch.Tensor, size: List[int]) -> torch.Tensor:  # noqa: UP006
    """Crop the spatial axes of ``x`` (N, C, *spatial) around their centre to ``size`` (each no larger than x's).

    This is how the paper's unpadded U-Net fits a skip feature to the smaller up-sampled feature.
    """
    for d in range(len(size)):
        extra = x.shape[d + 2] - size[d]
        if extra < 0:
            raise ValueError("cannot crop axis " + str(d) + " of size " + str(x.shape[d + 2]) + " to " + str(size[d]))
        if extra > 0:
            x = x.narrow(d + 2, extra // 2, size[d])
    return x


def center_pad_to(x: torch.Tensor, size: List[int]) -> torch.Tensor:  # noqa: UP006
    """Zero-pad the spatial axes of ``x`` evenly on both sides (the extra voxel after) to ``size`` (each no smaller)."""
    pads: List[int] = []  # noqa: UP006
    # F.pad lists (before, after) pairs starting from the last axis
    for d in range(len(size) - 1, -1, -1):
        extra = size[d] - x.shape[d + 2]
        if extra < 0:
            raise ValueError("cannot pad axis " + str(d) + " of size " + str(x.shape[d + 2]) + " to " + str(size[d]))
        pads += [extra // 2, extra - extra // 2]
    if max(pads) == 0:
        return x
    return F.pad(x, pads)


def match_size(x: torch.Tensor, size: List[int]) -> torch.Tensor:  # noqa: UP006
    """Centre-crop the spatial axes of ``x`` that are larger than ``size`` and zero-pad those that are smaller."""
    crop: List[int] = []  # noqa: UP006
    for d in range(len(size)):
        crop.append(min(int(x.shape[d + 2]), size[d]))
    return center_pad_to(center_crop_to(x, crop), size)
