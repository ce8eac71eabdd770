"""Group normalisation whose statistics stay accurate on channels-last CPU tensors."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm(nn.GroupNorm):
    """:class:`torch.nn.GroupNorm` with accurate statistics for channels-last float32 tensors on the CPU.

    PyTorch's CPU kernel for a channels-last input (the layout the 3D CT bundles and EGE-UNet's 2D inference run in
    on a CPU) accumulates each group's sum and sum of squares position after position in float32 and takes the
    variance as their difference. Over the 1.7 M values of a 96^3 window's group this moves normalised values by up
    to 2e-3 (against 1e-6 for a channels-first input), and for activations whose mean is large against their spread
    the difference cancels: at a mean 100 times the standard deviation, outputs were off by 0.1 to 1. For such
    inputs the statistics come from one cascade sum per channel and matrix products giving each channel's sum of
    squares over blocks of positions (:func:`_sums_of_squares`), both reading the values where they lie, in float32
    but adding in blocks; where the mean is large against the spread, the variance is taken from the centred values
    instead. The normalisation, scale and shift are then one multiply-add per value, in the input's layout. Tensors
    of fewer than 2^19 values go through the channels-first kernel on a copy, which costs less there. This is for
    inference (autograd off); training and every other input (channels-first, a GPU, other precisions, ONNX exports)
    take ``F.group_norm``. Parameters and state dict are those of ``nn.GroupNorm``.

    Args:
        num_groups: number of groups the channels are divided into.
        num_channels: number of channels of the input.
        eps: added to the variance for numerical stability.
        affine: whether to learn a per-channel scale and shift.
        device: where the scale and shift are created (``None``: PyTorch's default device).
        dtype: their dtype (``None``: PyTorch's default, float32).
        bias: keyword only, and only in PyTorch versions whose ``nn.GroupNorm`` takes it: ``False`` learns the scale
            without a shift.

    Example::

        >>> norm = GroupNorm(4, 8)
        >>> x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last)
        >>> torch.allclose(norm(x), norm(x.contiguous()), atol=1e-5)
        True
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # training keeps PyTorch's kernels, forward and backward: a mini-batch's gradient noise dwarfs their rounding,
        # the trained bundles' figures were measured with them, and the copies below would cost 4-5% of a step
        if (
            torch.is_grad_enabled()
            # torch.jit.trace checks its graph by a second run without autograd: both runs must take one path
            or torch.jit.is_tracing()
            or x.device.type != "cpu"
            or x.dtype != torch.float32
            or (x.dim() != 4 and x.dim() != 5)
            or x.is_contiguous()
        ):
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        if not torch.jit.is_scripting():
            if torch.onnx.is_in_onnx_export():
                return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        if x.numel() < 1 << 19:
            # below half a million values a copy through the channels-first kernel and back costs less than the
            # dozen small operations of the statistics below (2 cores, AVX-512)
            return F.group_norm(x.contiguous(), self.num_groups, self.weight, self.bias, self.eps).contiguous(
                memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d
            )
        n, c = x.shape[0], x.shape[1]
        axes: List[int] = list(range(2, x.dim()))  # noqa: UP006
        per_channel: List[int] = [n, c] + [1] * len(axes)  # noqa: UP006
        width = c // self.num_groups
        count = x[0].numel() // self.num_groups
        mean = x.sum(axes).view(n, self.num_groups, width).sum(2) / count
        squares = _sums_of_squares(x.permute([0] + axes + [1]).reshape(n, -1, c))
        var = squares.reshape(n, self.num_groups, width).sum(2) / count - mean * mean
        mean_per_channel = mean.repeat_interleave(width, 1)
        if bool((mean * mean > 10.0 * var).any()):
            # a mean large against the spread: E[x^2] - mean^2 in float32 then loses more than about 1e-5 of the
            # variance; take the squares of the centred values instead (one more pass over the data)
            centred = x - mean_per_channel.view(per_channel)
            var = centred.square().sum(axes).view(n, self.num_groups, width).sum(2) / count
        scale = torch.rsqrt(var.clamp_min(0) + self.eps).repeat_interleave(width, 1)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean_per_channel * scale
        if self.bias is not None:
            shift = shift + self.bias
        return torch.addcmul(shift.view(per_channel), x, scale.view(per_channel))


def _sums_of_squares(flat: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """Each channel's sum of squares of ``flat`` (batch, positions, channels), a channels-last tensor's values where
    they lie: the diagonals of (channels x channels) matrix products over blocks of ``block`` positions, added.

    One product over all the positions of a 96^3 window added them in float32 with an error of 1.4e-4 of the sum on
    an AVX2 CPU (a CPU with AVX-512 had kept it below 1e-5): normalised values moved by 2e-4. Blocks of 4096 keep it
    near 2e-7, and took 0.75-1.1x the time of the one product.
    """
    n, positions, c = flat.shape[0], flat.shape[1], flat.shape[2]
    whole = positions // block * block
    sums: List[torch.Tensor] = []  # noqa: UP006
    for i in range(n):
        total = torch.zeros(c, dtype=flat.dtype, device=flat.device)
        if whole > 0:
            blocks = flat[i, :whole].reshape(whole // block, block, c)
            total = total + torch.bmm(blocks.transpose(1, 2), blocks).diagonal(dim1=1, dim2=2).sum(0)
        if whole < positions:
            rest = flat[i, whole:].unsqueeze(0)
            total = total + torch.bmm(rest.transpose(1, 2), rest).diagonal(dim1=1, dim2=2)[0]
        sums.append(total)
    return torch.stack(sums)


def accurate_group_norms(module: nn.Module) -> nn.Module:
    """Replace every plain ``nn.GroupNorm`` inside ``module`` by :class:`GroupNorm`, keeping its parameters.

    For networks built from MONAI's blocks and norm factory, which create ``nn.GroupNorm``; the state dict is
    unchanged. Returns ``module``.

    Args:
        module: the network, changed in place. Its submodules are replaced at every depth; ``module`` itself is not,
            nor are subclasses of ``nn.GroupNorm``. The new layers share the old ones' scale and shift parameters.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(4, 8))
        >>> type(accurate_group_norms(net)[1]).__name__
        'GroupNorm'
    """
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.GroupNorm:
                replacement = GroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
                if child.affine:
                    replacement.weight = child.weight
                    replacement.bias = child.bias
                setattr(parent, name, replacement)
    return module
