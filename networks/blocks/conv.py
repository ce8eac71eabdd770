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

    Args:
        x: a batch (N, C, *spatial).
        size: the target size of each spatial axis, in order; where the difference is odd, the extra voxel is cut
            at the end. An axis already of its size is left as it is.

    Raises:
        ValueError: when a target is larger than ``x``'s size (:func:`match_size` also pads).

    Example::

        >>> center_crop_to(torch.arange(5.0).view(1, 1, 5), [2])
        tensor([[[1., 2.]]])
    """
    for d in range(len(size)):
        extra = x.shape[d + 2] - size[d]
        if extra < 0:
            raise ValueError("cannot crop axis " + str(d) + " of size " + str(x.shape[d + 2]) + " to " + str(size[d]))
        if extra > 0:
            x = x.narrow(d + 2, extra // 2, size[d])
    return x


def center_pad_to(x: torch.Tensor, size: List[int]) -> torch.Tensor:  # noqa: UP006
    """Zero-pad the spatial axes of ``x`` evenly on both sides (the extra voxel after) to ``size`` (each no smaller).

    Args:
        x: a batch (N, C, *spatial).
        size: the target size of each spatial axis, in order. ``x`` itself is returned when nothing is padded.

    Raises:
        ValueError: when a target is smaller than ``x``'s size (:func:`match_size` also crops).

    Example::

        >>> center_pad_to(torch.ones(1, 1, 2), [5])
        tensor([[[0., 1., 1., 0., 0.]]])
    """
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
    """Centre-crop the spatial axes of ``x`` that are larger than ``size`` and zero-pad those that are smaller.

    Args:
        x: a batch (N, C, *spatial).
        size: the target size of each spatial axis, in order (the classic U-Net's ``same`` mode fits a 2x up-sampled
            feature to its skip feature, a voxel larger on an axis whose odd size floor pooling halved).

    Example::

        >>> match_size(torch.ones(1, 1, 6, 2), [4, 4]).shape
        torch.Size([1, 1, 4, 4])
        >>> match_size(torch.arange(6.0).view(1, 1, 6), [3])
        tensor([[[1., 2., 3.]]])
    """
    crop: List[int] = []  # noqa: UP006
    for d in range(len(size)):
        crop.append(min(int(x.shape[d + 2]), size[d]))
    return center_pad_to(center_crop_to(x, crop), size)
