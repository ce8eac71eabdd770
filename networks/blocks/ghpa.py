"""Grouped multi-axis Hadamard Product Attention (GHPA), the encoder/decoder block of EGE-UNet."""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from . import layernorm  # noqa: F401  (registers the default norm, "channel_layer", in MONAI's factory)
from .utils import act_layer, linear_interp_mode, norm_layer


def split_sizes(channels: int, groups: int) -> list[int]:
    """Sizes of ``torch.tensor_split(x, groups, dim=1)`` for ``channels`` channels (the first groups get the extra).

    Args:
        channels: the channels split.
        groups: the number of groups, at most ``channels``.

    Raises:
        ValueError: more groups than channels, which would leave a group empty.

    Example::

        >>> split_sizes(10, 4)
        [3, 3, 2, 2]
    """
    if channels < groups:
        raise ValueError(f"{channels} channels cannot be split into {groups} non-empty groups.")
    base, extra = divmod(channels, groups)
    return [base + 1 if i < extra else base for i in range(groups)]


class _AxisMap(nn.Module):
    """A learnable (channel, axis) attention map: ``channels`` x ``param_size`` values resized to any length."""

    def __init__(self, channels: int, param_size: int, act: str | tuple | None = "gelu") -> None:
        super().__init__()
        conv1d = Conv[Conv.CONV, 1]
        self.params = nn.Parameter(torch.ones(1, channels, param_size))
        self.conv = nn.Sequential(
            conv1d(channels, channels, kernel_size=3, padding=1, groups=channels),
            act_layer(act),
            conv1d(channels, channels, kernel_size=1),
        )

    def forward(self, length: int) -> torch.Tensor:
        return self.conv(F.interpolate(self.params, size=[length], mode="linear", align_corners=True))


class GHPA(nn.Module):
    """Grouped multi-axis Hadamard Product Attention block (Ruan et al., EGE-UNet, MICCAI 2023).

    The input is layer-normalised and its channels split into ``spatial_dims + 2`` groups:

    - group 0 is multiplied by a learnable map over all spatial axes,
    - group ``1 + a`` (one per spatial axis ``a``) by a learnable map over (channel, axis ``a``), broadcast over
      the other axes,
    - the last group goes through a 1x1 conv, GELU and a depthwise 3x3 conv.

    Each learnable map is a small parameter tensor (``param_size`` per axis, initialised to ones) resized to
    the feature size, followed by a depthwise conv, GELU and 1x1 conv, so any input size works. The groups
    are concatenated, normalised, and mixed by a depthwise 3x3 conv, GELU and a 1x1 conv to ``out_channels``.

    In 2D this is exactly the published block (4 groups of C/4 channels). In 3D there are 5 groups; when C
    is not divisible by the group count, the first groups take one channel more.

    The maps depend on the parameters and the input size only. In eval mode without autograd (``torch.no_grad``
    or ``torch.inference_mode``) they are computed once per input size and reused while the parameters they
    come from keep their values; any change to those values (an optimiser step, an EMA update through
    ``param.data``, ``load_state_dict``), moving the block to another device or dtype, or ``train()`` makes them
    be computed anew.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels.
        param_size: side of the learnable attention maps before resizing.
        act: the activation inside the block (MONAI ``Act`` spelling; GELU as published); ``None`` for none.
        norm: the two norms around the groups (MONAI ``Norm`` spelling; the published channels-first LayerNorm,
            ``"channel_layer"``).

    Example::

        >>> block = GHPA(spatial_dims=2, in_channels=24, out_channels=32)
        >>> block(torch.randn(1, 24, 32, 48)).shape
        torch.Size([1, 32, 32, 48])
    """

    # the eager-only map cache stays out of TorchScript, which cannot type its (size..., dtype or None) keys and
    # computes the maps on each call anyway
    __jit_ignored_attributes__ = ["_maps_cache", "_maps_snapshot"]

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        param_size: int = 8,
        act: str | tuple | None = "gelu",
        norm: str | tuple | None = "channel_layer",
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.mode = linear_interp_mode(spatial_dims)
        conv = Conv[Conv.CONV, spatial_dims]
        self.sizes = split_sizes(in_channels, spatial_dims + 2)

        c = self.sizes[0]
        self.params_space = nn.Parameter(torch.ones((1, c) + (param_size,) * spatial_dims))
        self.conv_space = nn.Sequential(
            conv(c, c, kernel_size=3, padding=1, groups=c), act_layer(act), conv(c, c, kernel_size=1)
        )
        self.axis_maps = nn.ModuleList(_AxisMap(c, param_size, act) for c in self.sizes[1:-1])
        c = self.sizes[-1]
        self.conv_local = nn.Sequential(
            conv(c, c, kernel_size=1), act_layer(act), conv(c, c, kernel_size=3, padding=1, groups=c)
        )
        self.norm_in = norm_layer(norm, spatial_dims, in_channels)
        self.norm_out = norm_layer(norm, spatial_dims, in_channels)
        self.mix = nn.Sequential(
            conv(in_channels, in_channels, kernel_size=3, padding=1, groups=in_channels),
            act_layer(act),
            conv(in_channels, out_channels, kernel_size=1),
        )
        # eval-time maps per input size, valid while the map parameters equal the snapshot taken with them
        self._maps_cache: Dict[tuple, List[torch.Tensor]] = {}
        self._maps_snapshot: Optional[torch.Tensor] = None  # noqa: UP007

    def train(self, mode: bool = True) -> GHPA:
        self._maps_cache = {}
        self._maps_snapshot = None
        return super().train(mode)

    def attention_maps(self, spatial: List[int]) -> List[torch.Tensor]:  # noqa: UP006
        """The learnable maps at feature size ``spatial``: the space map, then one map per axis, broadcastable."""
        maps = [self.conv_space(F.interpolate(self.params_space, size=spatial, mode=self.mode, align_corners=True))]
        for axis, axis_map in enumerate(self.axis_maps):
            length = spatial[axis]
            # (1, c, L) -> (1, c, 1, .., L, .., 1): varies over channels and this axis, broadcast over the others
            shape = [1, -1] + [length if a == axis else 1 for a in range(self.spatial_dims)]
            maps.append(axis_map(length).view(shape))
        return maps

    def _eval_maps(self, spatial: List[int]) -> List[torch.Tensor]:  # noqa: UP006
        # autograd, traced and compiled graphs must see the maps computed from the parameters
        if self.training or torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return self.attention_maps(spatial)
        # compare values, not versions: in-place updates through .data (EMA, mean teacher) and parameters made
        # under torch.inference_mode() leave no version to check, and the few thousand values of the maps'
        # parameters are compared far faster than the maps are computed
        values = torch.cat([p.reshape(-1) for p in self._map_parameters()])
        snapshot = self._maps_snapshot
        if (
            snapshot is None
            or snapshot.shape != values.shape
            or snapshot.dtype != values.dtype
            or snapshot.device != values.device
            or not torch.equal(snapshot, values)
        ):
            self._maps_cache = {}
            self._maps_snapshot = values
        # maps made under autocast are in its dtype: one entry per precision, so that a float32 call after a
        # mixed-precision one never multiplies by half-precision maps
        device_type = self.params_space.device.type
        mixed = torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)
        precision = torch.get_autocast_dtype(device_type) if mixed else None
        key = (*spatial, precision)
        maps = self._maps_cache.get(key)
        if maps is None:
            if len(self._maps_cache) >= 8:  # many input sizes (e.g. whole images): keep the latest few
                self._maps_cache.pop(next(iter(self._maps_cache)))
            maps = self._maps_cache[key] = self.attention_maps(spatial)
        return maps

    def _map_parameters(self) -> List[nn.Parameter]:  # noqa: UP006
        return [self.params_space, *self.conv_space.parameters(), *self.axis_maps.parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(x)
        spatial = list(x.shape[2:])
        if torch.jit.is_scripting():
            maps = self.attention_maps(spatial)
        else:
            maps = self._eval_maps(spatial)
        groups = list(torch.split(x, self.sizes, dim=1))
        for i, attention in enumerate(maps):
            groups[i] = groups[i] * attention
        groups[-1] = self.conv_local(groups[-1])
        return self.mix(self.norm_out(torch.cat(groups, dim=1)))
