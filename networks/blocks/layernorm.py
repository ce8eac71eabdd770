"""Layer normalisation over the channel axis of channels-first tensors."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Norm
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an (N, C, *spatial) tensor, for any number of spatial dimensions.

    Each position is normalised across its C channels, then scaled and shifted per channel. This is the
    "channels_first" LayerNorm of ConvNeXt-style networks, without a permute round-trip. MONAI's norm factory
    knows it as ``"channel_layer"``: ``get_norm_layer("channel_layer", spatial_dims, channels)``.

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = [1, -1] + [1] * (x.dim() - 2)
        return self.weight.view(shape) * x + self.bias.view(shape)


# registered in MONAI's norm factory so that ``norm="channel_layer"`` works wherever a MONAI norm spec is taken
# (``get_norm_layer``, ``Convolution``, the networks' ``norm`` arguments, bundle configs)
Norm.add_factory_callable("channel_layer", lambda _spatial_dims: ChannelLayerNorm)
