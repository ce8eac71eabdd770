"""Exact 2x max-pooling that stays fast on channels-first CPU tensors with few channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaxPool2x(nn.Module):
    """Max-pooling with kernel 2 and stride 2 (floor mode) over every spatial axis, for any number of axes.

    The result equals ``nn.MaxPool{1,2,3}d(kernel_size=2, stride=2)`` exactly (NaN included), but each axis is
    reduced by an element-wise maximum of its even and odd samples. On CPU, PyTorch's pooling kernels for
    channels-first tensors are slow when there are few channels and many voxels (8 channels at 256x256:
    about 40x slower than this), which is the case in the first stages of small networks. ONNX exports get
    the pooling operator itself, which ONNX Runtime runs faster than the maxima.

    Example::

        >>> MaxPool2x()(torch.randn(1, 8, 33, 64)).shape
        torch.Size([1, 8, 16, 32])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if torch.onnx.is_in_onnx_export():
                return _max_pool(x)
        for axis in range(2, x.dim()):
            even = x.shape[axis] // 2 * 2
            # (.., 2k, ..) -> (.., k, 2, ..): the maximum over the pair axis, as a view without copies
            pairs = x.narrow(axis, 0, even).unflatten(axis, (even // 2, 2))
            x = torch.maximum(pairs.select(axis + 1, 0), pairs.select(axis + 1, 1))
        return x


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        return F.max_pool1d(x, 2, 2)
    if x.dim() == 4:
        return F.max_pool2d(x, 2, 2)
    return F.max_pool3d(x, 2, 2)
