"""Helpers that match feature sizes across a skip connection, and the conv padding modes of the classic U-Net."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F

__all__ = ["PADDING_MODES", "center_crop_to", "center_pad_to", "match_size"]

PADDING_MODES = ("same", "valid")


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
