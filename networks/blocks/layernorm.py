"""Layer normalisation over the channel axis of channels-first tensors."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Norm
from torch import nn

from .utils import is_pointwise_conv

# positions (batch x spatial) from which a GPU takes the channel statistics from var_mean. Measured on an H200
# with float16 inputs of 8 channels: var_mean 0.30 ms against F.layer_norm's 2.69 ms at 2 x 96^3, 0.13 against
# 0.20 at 8 x 128^2, but 0.13 against 0.10 at 1 x 256^2 and 0.13 against 0.05 at 2 x 6^3 (64 channels), where the
# extra kernel launches of var_mean and the affine steps cost more than layer_norm's slow path; across a whole 3D
# EGE-UNet (2 x 1 x 96^3), whose norms work at the coarse levels, var_mean everywhere took 1.17x the time
_STATISTICS_POSITIONS = 1 << 17


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an (N, C, *spatial) tensor, for any number of spatial dimensions.

    Each position is normalised across its C channels, then scaled and shifted per channel. This is the
    "channels_first" LayerNorm of ConvNeXt-style networks. On the CPU it runs as one fused ``F.layer_norm`` on
    the channels-last view of the input. For a channels-first input that view costs one copy, still cheaper on
    CPU than separate mean, variance, normalisation and affine kernels; for a ``channels_last`` input it costs
    nothing. The result keeps the strides of that view (channels last): use ``reshape`` rather than ``view``
    on it, or call ``.contiguous()`` first. On a GPU, ``F.layer_norm`` over a few channels of a strided view
    takes a slow path on large tensors (84% of EGE-UNet's time on an H200 at batch 256), so there the statistics
    of inputs with at least 2^17 positions (batch x spatial) come from one ``torch.var_mean`` over the channel
    axis instead (in float32 for half-precision inputs, as autocast runs ``F.layer_norm``), and the result keeps
    the input's layout (5x the network's throughput at batch 256). Smaller inputs keep ``F.layer_norm``, whose
    fewer kernel launches cost less there.
    MONAI's norm factory knows it as ``"channel_layer"``:
    ``get_norm_layer("channel_layer", spatial_dims, channels)``. ONNX exports get the same computation as
    matrix products and element-wise operations (at 256 voxels or fewer: one LayerNormalization between two
    transposes).

    Args:
        num_channels: number of channels C.
        eps: added to the variance for numerical stability.

    Example::

        >>> norm = ChannelLayerNorm(16)
        >>> norm(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps
        self.statistics_positions = _STATISTICS_POSITIONS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if torch.onnx.is_in_onnx_export():
                return self._reductions(x)
        if x.device.type != "cpu" and x.numel() // max(x.shape[1], 1) >= self.statistics_positions:
            return self._statistics(x)
        return self._layer_norm(x)

    def _layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        # one fused F.layer_norm on the channels-last view. Non-negative axes: the legacy ONNX exporter writes
        # negative ones into Transpose, which is invalid
        last = x.dim() - 1
        return F.layer_norm(x.movedim(1, last), self.weight.shape, self.weight, self.bias, self.eps).movedim(last, 1)

    def _statistics(self, x: torch.Tensor) -> torch.Tensor:
        # one reduction over the channel axis, read in the input's own layout; the result keeps that layout.
        # Half-precision inputs (autocast) are normalised in float32, as autocast runs F.layer_norm: a float16
        # variance overflows once activations pass about 256
        values = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        var, mean = torch.var_mean(values, dim=1, keepdim=True, correction=0)
        shape = [1, -1] + [1] * (x.dim() - 2)
        out = (values - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)

    def _reductions(self, x: torch.Tensor) -> torch.Tensor:
        # channel means as a (1, C) x (C, voxels) product per image: ONNX Runtime runs that GEMV several times
        # faster than a ReduceMean over the channel axis of a channels-first tensor (EGE-UNet at 1x3x256x256:
        # 1.4x in all), and the graph keeps the input's layout, where transposes around a LayerNormalization
        # node cost more than they save. At 256 voxels or fewer the node count costs more than the data: there
        # the export is Transpose -> LayerNormalization -> Transpose, 3 nodes instead of 11 (EGE-UNet's 8x8 and
        # 16x16 levels: 1.04x in all at batch 1)
        if math.prod(int(s) for s in x.shape[2:]) <= 256:
            return self._layer_norm(x)
        centred, std = _centred(x.flatten(2), self.eps)
        shape = [1, -1] + [1] * (x.dim() - 2)
        return self.weight.view(shape) * (centred / std).view(x.shape) + self.bias.view(shape)

    def export_then_pointwise(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``conv(self(x))`` for a 1x1 convolution ``conv``, in the form the ONNX export takes.

        The norm's scale is folded into the convolution's weights and its shift into the bias; the division by the
        standard deviation, one value per voxel, comes after the projection, on its (fewer) output channels. This
        takes 2 of the 5 element-wise passes over the norm's channels and runs the rest on the projection's
        channels (EGE-UNet's bridges: 20 -> 8 at the finest level). Equal to ``conv(self(x))`` up to float32
        rounding. For anything but a 1x1 convolution it is ``conv(self(x))``.
        """
        if not is_pointwise_conv(conv):
            return conv(self(x))
        weight = conv.weight
        projection = weight.flatten(1)  # (out, C)
        bias = torch.matmul(projection, self.bias)
        if conv.bias is not None:
            bias = bias + conv.bias
        centred, std = _centred(x.flatten(2), self.eps)
        out = torch.matmul(projection * self.weight, centred) / std + bias.unsqueeze(-1)
        return out.reshape([x.shape[0], weight.shape[0]] + list(x.shape[2:]))


def _centred(values: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``values`` (..., C, voxels) minus their means over C, and the standard deviations (..., 1, voxels).

    The means are (1, C) x (C, voxels) products, the form ONNX Runtime runs fast (see ``_reductions``).
    """
    channels = values.shape[-2]
    average = torch.full((1, channels), 1.0 / channels, dtype=values.dtype, device=values.device)
    centred = values - torch.matmul(average, values)
    return centred, torch.sqrt(torch.matmul(average, centred * centred) + eps)


def export_grouped_norms(norms: list[ChannelLayerNorm], x: torch.Tensor) -> torch.Tensor:
    """Each of ``norms`` applied to its own consecutive channels of ``x``, for an ONNX export.

    For norms of equal width (and eps), all groups are normalised by the same few nodes on ``x`` viewed as
    (N, groups, width, voxels), instead of one graph of a dozen nodes per group; the scales and shifts are then
    one multiply and one add. Other norms are applied group by group.

    Args:
        norms: the norms, in the order of their channel groups.
        x: the feature maps, whose channels are the groups' channels one after the other.

    Example::

        >>> norms = [ChannelLayerNorm(4), ChannelLayerNorm(4)]
        >>> x = torch.randn(1, 8, 5, 5)
        >>> grouped = export_grouped_norms(norms, x)
        >>> torch.allclose(grouped, torch.cat([norms[0](x[:, :4]), norms[1](x[:, 4:])], 1), atol=1e-5)
        True
    """
    widths = [int(norm.weight.shape[0]) for norm in norms]
    eps = norms[0].eps
    if len(set(widths)) > 1 or any(norm.eps != eps for norm in norms):
        return torch.cat([norm(part) for norm, part in zip(norms, torch.split(x, widths, dim=1))], dim=1)
    centred, std = _centred(x.reshape([x.shape[0], len(norms), widths[0], -1]), eps)
    normalised = (centred / std).reshape(x.shape)
    shape = [1, -1] + [1] * (x.dim() - 2)
    weight = torch.cat([norm.weight for norm in norms]).view(shape)
    bias = torch.cat([norm.bias for norm in norms]).view(shape)
    return normalised * weight + bias


# registered in MONAI's norm factory so that ``norm="channel_layer"`` works wherever a MONAI norm spec is taken
# (``get_norm_layer``, ``Convolution``, the networks' ``norm`` arguments, bundle configs)
Norm.add_factory_callable("channel_layer", lambda _spatial_dims: ChannelLayerNorm)
