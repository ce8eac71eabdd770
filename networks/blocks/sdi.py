"""Semantics and Detail Infusion (SDI), the skip connection of U-Net v2."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from .utils import act_layer, linear_interp_mode, norm_layer

__all__ = ["SDI", "SDIChannelAttention", "SDIReduction", "SDISkip", "SDISpatialAttention", "resample_to"]


class SDIChannelAttention(nn.Module):
    """CBAM channel attention as used by U-Net v2: ``x * sigmoid(mlp(avgpool(x)) + mlp(maxpool(x)))``.

    Woo, Park, Lee, Kweon: "CBAM: Convolutional Block Attention Module", ECCV 2018; the variant of U-Net v2
    (Peng et al., https://arxiv.org/abs/2311.17791). The shared MLP is two 1x1 convs without bias,
    ``channels -> channels // reduction -> channels``, with an activation (ReLU) in between. The published code
    hard-codes the reduction to 16; here it is an argument (default 16) and the hidden width is at least 1 so
    that narrow encoders work.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        channels: number of input (and output) channels.
        reduction: channel reduction of the shared MLP.
        act: activation of the shared MLP (MONAI ``Act`` spelling; ReLU as published).

    Example::

        >>> SDIChannelAttention(2, 64)(torch.randn(1, 64, 32, 32)).shape
        torch.Size([1, 64, 32, 32])
    """

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16, act: str | tuple | None = "relu") -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        hidden = max(1, channels // reduction)
        self.avg_pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.max_pool = Pool[Pool.ADAPTIVEMAX, spatial_dims](1)
        self.mlp = nn.Sequential(
            conv(channels, hidden, kernel_size=1, bias=False),
            act_layer(act),
            conv(hidden, channels, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mlp(self.avg_pool(x)) + self.mlp(self.max_pool(x)))


class SDISpatialAttention(nn.Module):
    """CBAM spatial attention: ``x * sigmoid(conv(concat(mean_c(x), max_c(x))))`` with a bias-free k x k conv.

    Woo et al., "CBAM", ECCV 2018, as used in U-Net v2 (Peng et al., https://arxiv.org/abs/2311.17791).

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        kernel_size: odd size of the conv on the two pooled maps (7 in U-Net v2).

    Example::

        >>> SDISpatialAttention(3)(torch.randn(1, 8, 8, 8, 8)).shape
        torch.Size([1, 8, 8, 8, 8])
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size output), got {kernel_size}.")
        self.conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class SDIReduction(nn.Module):
    """Per-level refinement before SDI: channel attention, spatial attention, then 1x1 conv + BatchNorm.

    Peng et al., U-Net v2, https://arxiv.org/abs/2311.17791, Eq. 1 and the channel reduction to ``c``. The
    reduction conv has no bias; the published code defines a ReLU after the BatchNorm but never applies it, so
    there is none here either (the output is affine in the attended features); ``act`` is the channel
    attention's.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: channels of the encoder feature.
        out_channels: the SDI width ``c`` (32 in the paper).
        reduction: channel reduction of the channel attention's MLP.
        kernel_size: kernel size of the spatial attention's conv.
        act: activation of the channel attention (MONAI ``Act`` spelling; ReLU as published).
        norm: norm after the reduction conv (MONAI ``Norm`` spelling; batch norm as published).

    Example::

        >>> SDIReduction(2, 320, 32)(torch.randn(2, 320, 16, 16)).shape
        torch.Size([2, 32, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int = 32,
        reduction: int = 16,
        kernel_size: int = 7,
        act: str | tuple | None = "relu",
        norm: str | tuple | None = "batch",
    ) -> None:
        super().__init__()
        self.channel_attention = SDIChannelAttention(spatial_dims, in_channels, reduction, act)
        self.spatial_attention = SDISpatialAttention(spatial_dims, kernel_size)
        self.conv = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1, bias=False)
        self.norm = norm_layer(norm, spatial_dims, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.spatial_attention(self.channel_attention(x))))


class SDI(nn.Module):
    """One SDI_i: resample every level to the anchor's size, smooth each with its own 3x3 conv, multiply.

    Peng et al., U-Net v2, https://arxiv.org/abs/2311.17791, Eqs. 2-4. Level j is adaptive-average-pooled
    when larger than the anchor, (bi/tri)linearly upsampled (``align_corners=True``) when smaller and left as
    it is when equal; then smoothed by a 3x3 conv θ_ij (with bias) and the results are multiplied element-wise
    (Hadamard product), with no residual, norm or activation.

    The target is the anchor's full spatial shape. The published code reads only the last dimension and
    resizes to a square, which fails for non-square inputs (e.g. 256x192) and for sides that are not
    multiples of 32 (e.g. 112x112); this version works for any shape, in 2D and 3D.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        channels: width of every level (``c``).
        num_levels: number of levels multiplied together.

    Example::

        >>> sdi = SDI(2, 32)
        >>> feats = [torch.randn(1, 32, 64 // 2**j, 48 // 2**j) for j in range(4)]
        >>> sdi(feats, [32, 24]).shape
        torch.Size([1, 32, 32, 24])
    """

    def __init__(self, spatial_dims: int, channels: int = 32, num_levels: int = 4) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.num_levels = num_levels
        self.convs = nn.ModuleList(conv(channels, channels, kernel_size=3, padding=1) for _ in range(num_levels))

    def forward(self, features: List[torch.Tensor], size: List[int]) -> torch.Tensor:  # noqa: UP006
        if len(features) != self.num_levels:
            raise ValueError("SDI expects " + str(self.num_levels) + " features, got " + str(len(features)))
        out = torch.ones(1, dtype=features[0].dtype, device=features[0].device)
        for j, conv in enumerate(self.convs):
            out = out * conv(resample_to(features[j], size))
        return out


class SDISkip(nn.Module):
    """The complete U-Net v2 skip module: per-level attention and reduction, then SDI_i for every level i.

    Peng et al., U-Net v2, https://arxiv.org/abs/2311.17791. Given encoder features f_1..f_L (finest first,
    any widths and any spatial shapes), each goes through :class:`SDIReduction` (channel attention, spatial
    attention, 1x1 conv to ``channels``, BatchNorm); then output i is :class:`SDI` anchored at level i, so it
    has ``channels`` channels and f_i's spatial shape, and carries the semantics of the coarser levels and
    the details of the finer ones.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: width of each encoder level, finest first.
        channels: the SDI width ``c`` (32 in the paper).
        reduction: channel reduction of the channel attention's MLP (16 in the paper).
        act: activation of the channel attention (MONAI ``Act`` spelling; ReLU as published).
        norm: norm of the reductions (MONAI ``Norm`` spelling; batch norm as published).

    Example::

        >>> skip = SDISkip(2, (64, 128, 320, 512))
        >>> feats = [torch.randn(1, c, 64 // 2**j, 48 // 2**j) for j, c in enumerate((64, 128, 320, 512))]
        >>> [tuple(o.shape) for o in skip(feats)]
        [(1, 32, 64, 48), (1, 32, 32, 24), (1, 32, 16, 12), (1, 32, 8, 6)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: Sequence[int],
        channels: int = 32,
        reduction: int = 16,
        act: str | tuple | None = "relu",
        norm: str | tuple | None = "batch",
    ) -> None:
        super().__init__()
        self.num_levels = len(in_channels)
        self.reductions = nn.ModuleList(
            SDIReduction(spatial_dims, c, channels, reduction, act=act, norm=norm) for c in in_channels
        )
        self.sdis = nn.ModuleList(SDI(spatial_dims, channels, self.num_levels) for _ in in_channels)

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:  # noqa: UP006
        if len(features) != self.num_levels:
            raise ValueError("SDISkip expects " + str(self.num_levels) + " features, got " + str(len(features)))
        reduced: List[torch.Tensor] = []  # noqa: UP006
        for i, reduction in enumerate(self.reductions):
            reduced.append(reduction(features[i]))
        outs: List[torch.Tensor] = []  # noqa: UP006
        for i, sdi in enumerate(self.sdis):
            outs.append(sdi(reduced, reduced[i].shape[2:]))
        return outs


def resample_to(x: torch.Tensor, size: List[int]) -> torch.Tensor:  # noqa: UP006
    """Resample ``x`` (N, C, *spatial) to ``size`` as SDI does: adaptive average pooling when every side is at
    least the target (and the shape differs), (bi/tri)linear interpolation with ``align_corners=True``
    otherwise, nothing when the shapes are equal.

    Args:
        x: a batch (N, C, *spatial), 1 to 3 spatial axes.
        size: the target size of each spatial axis, as many as ``x`` has. In an ONNX export the pooling is
            :func:`box_average`, which gives the same values.

    Raises:
        ValueError: when ``size`` has another number of axes than ``x``.

    Example::

        >>> resample_to(torch.arange(16.0).view(1, 1, 4, 4), [2, 2])
        tensor([[[[ 2.5000,  4.5000],
                  [10.5000, 12.5000]]]])
        >>> resample_to(torch.tensor([[[0.0, 3.0]]]), [4])
        tensor([[[0., 1., 2., 3.]]])
    """
    shape: List[int] = list(x.shape[2:])  # noqa: UP006
    target: List[int] = list(size)  # noqa: UP006
    if len(shape) != len(target):
        raise ValueError("size has " + str(len(target)) + " dims, x has " + str(len(shape)) + " spatial dims")
    if shape == target:
        return x
    larger = True
    for s, t in zip(shape, target):
        if s < t:
            larger = False
    if larger:
        if _exporting_to_onnx():
            return box_average(x, target)
        if x.dim() == 3:
            return F.adaptive_avg_pool1d(x, target)
        if x.dim() == 4:
            return F.adaptive_avg_pool2d(x, target)
        return F.adaptive_avg_pool3d(x, target)
    return F.interpolate(x, size=target, mode=linear_interp_mode(x.dim() - 2), align_corners=True)


def _exporting_to_onnx() -> bool:
    if torch.jit.is_scripting():
        return False
    else:
        return torch.onnx.is_in_onnx_export()


def box_average(x: torch.Tensor, size: List[int]) -> torch.Tensor:  # noqa: UP006
    """Adaptive average pooling of ``x`` (N, C, *spatial) to ``size`` (each side at most ``x``'s), one axis at a
    time as matrix products.

    Output index ``i`` of an axis of length ``L`` averages the inputs ``floor(i L / T)`` to ``ceil((i + 1) L / T)
    - 1``, as ``adaptive_avg_pool`` does; a box average is the product of its axis averages, so the result is the
    same up to float rounding. ONNX exports use it: the dynamo exporter has no 3D adaptive pooling, and the
    TorchScript exporter none where a side is not a multiple of the target.

    Example::

        >>> x = torch.arange(5.0).view(1, 1, 5)
        >>> box_average(x, [2])
        tensor([[[1., 3.]]])
    """
    rank = x.dim() - 2
    for axis in range(rank):
        length, count = x.shape[axis + 2], size[axis]
        if length == count:
            continue
        index = torch.arange(count, device=x.device)
        start = torch.div(index * length, count, rounding_mode="floor")
        stop = torch.div((index + 1) * length + count - 1, count, rounding_mode="floor")
        source = torch.arange(length, device=x.device)
        inside = (source[None, :] >= start[:, None]) & (source[None, :] < stop[:, None])
        weights = inside.to(x.dtype) / (stop - start).to(x.dtype)[:, None]
        last = x.dim() - 1  # a non-negative index: the TorchScript exporter writes -1 into Transpose as it is
        x = torch.movedim(torch.movedim(x, axis + 2, last) @ weights.T, last, axis + 2)
    return x
