"""Helpers shared by the blocks and networks of this package."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


def linear_interp_mode(spatial_dims: int) -> str:
    """The (multi-)linear interpolation mode of ``F.interpolate`` for 1, 2 or 3 spatial dimensions."""
    if spatial_dims == 1:
        return "linear"
    if spatial_dims == 2:
        return "bilinear"
    if spatial_dims == 3:
        return "trilinear"
    raise ValueError("spatial_dims must be 1, 2 or 3, got " + str(spatial_dims))


def resize_to(x: torch.Tensor, size: List[int], align_corners: bool = True) -> torch.Tensor:  # noqa: UP006
    """Resize ``x`` (N, C, *spatial) to ``size`` with (bi/tri)linear interpolation; a no-op when sizes match."""
    if x.shape[2:] == size:
        return x
    return F.interpolate(x, size=size, mode=linear_interp_mode(x.dim() - 2), align_corners=align_corners)


def is_pointwise_conv(module: nn.Module) -> bool:
    """Whether ``module`` is a plain 1x1 convolution (one group, stride 1, no padding): a matrix product per voxel.

    Example::

        >>> is_pointwise_conv(nn.Conv2d(8, 1, 1)), is_pointwise_conv(nn.Conv2d(8, 1, 3))
        (True, False)
    """
    return (
        isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        and module.groups == 1
        and all(k == 1 for k in module.kernel_size)
        and all(s == 1 for s in module.stride)
        and all(p == 0 for p in module.padding)
    )
