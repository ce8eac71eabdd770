"""Helpers shared by the blocks and networks of this package."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from torch import nn


def check_network_arguments(
    spatial_dims: object, in_channels: object, out_channels: object, channels: object, **switches: object
) -> None:
    """The arguments every network of this package takes, checked when it is built, each named where it is wrong:
    a zero or a string there had built a network that failed deep in torch (or at once with a ZeroDivisionError
    of the weight initialisation), and ``deep_supervision="no"`` had turned deep supervision on.

    Args:
        spatial_dims: 2 or 3.
        in_channels: the input channels, a whole number >= 1.
        out_channels: the output channels, a whole number >= 1.
        channels: the stage widths, whole numbers >= 1; ``None`` for a network's default.
        switches: the network's options that are on or off (``deep_supervision=...``), each a bool.

    Raises:
        ValueError: ``spatial_dims`` not 2 or 3, a channel count or width that is no whole number >= 1, or a switch
            that is no bool.

    Example::

        >>> check_network_arguments(2, 3, 0, (8, 16), deep_supervision=False)
        Traceback (most recent call last):
        ...
        ValueError: out_channels must be a whole number >= 1, got 0.
    """

    def whole(value: object) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1

    if not whole(spatial_dims) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not whole(value):
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}.")
    if channels is not None and (
        not isinstance(channels, (Sequence, np.ndarray)) or isinstance(channels, str) or not all(map(whole, channels))
    ):
        raise ValueError(f"channels must be a sequence of whole numbers >= 1, got {channels!r}.")
    for name, value in switches.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {value!r}.")


def he_normal_init(module: nn.Module) -> None:
    """He (fan-in) initialisation of a convolution, for ``network.apply``: Gaussian weights with standard deviation
    sqrt(2 / fan-in) and zero biases, as the U-Net and Attention U-Net papers' code initialises them; other modules
    are left alone. A transposed convolution's fan-in is the inputs each output sums over, ``in * prod(kernel) /
    prod(stride)``, where its weight's layout ``(in, out, *kernel)`` would give torch's ``kaiming_normal_`` another.

    Args:
        module: any module; only 2D and 3D (transposed) convolutions are initialised.

    Example::

        >>> conv = nn.Conv2d(32, 64, 3)
        >>> he_normal_init(conv)
        >>> round(float(conv.weight.std() / (2 / (32 * 3 * 3)) ** 0.5), 1), float(conv.bias.abs().sum())
        (1.0, 0.0)
    """
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        fan_in = module.weight.shape[1] * math.prod(module.kernel_size)
        if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
            fan_in = module.weight.shape[0] * math.prod(module.kernel_size) // math.prod(module.stride)
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_in))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def act_layer(act: str | tuple | None) -> nn.Module:
    """MONAI's ``get_act_layer(act)``, or ``nn.Identity()`` for ``act`` ``None`` (no activation).

    Args:
        act: a MONAI activation name or ``(name, arguments)``, or ``None``.

    Example::

        >>> act_layer(None), act_layer("relu")
        (Identity(), ReLU())
    """
    return nn.Identity() if act is None else get_act_layer(act)


def norm_layer(norm: str | tuple | None, spatial_dims: int, channels: int) -> nn.Module:
    """MONAI's ``get_norm_layer(norm, spatial_dims, channels)``, or ``nn.Identity()`` for ``norm`` ``None``.

    Args:
        norm: a MONAI norm name or ``(name, arguments)``, or ``None``.
        spatial_dims: 1, 2 or 3.
        channels: the channels normalised.

    Example::

        >>> norm_layer(None, 2, 8)
        Identity()
    """
    return nn.Identity() if norm is None else get_norm_layer(norm, spatial_dims, channels)


def linear_interp_mode(spatial_dims: int) -> str:
    """The (multi-)linear interpolation mode of ``F.interpolate`` for 1, 2 or 3 spatial dimensions.

    Args:
        spatial_dims: 1, 2 or 3.

    Raises:
        ValueError: any other number.

    Example::

        >>> linear_interp_mode(3)
        'trilinear'
    """
    if spatial_dims == 1:
        return "linear"
    if spatial_dims == 2:
        return "bilinear"
    if spatial_dims == 3:
        return "trilinear"
    raise ValueError("spatial_dims must be 1, 2 or 3, got " + str(spatial_dims))


def resize_to(x: torch.Tensor, size: List[int], align_corners: bool = True) -> torch.Tensor:  # noqa: UP006
    """Resize ``x`` (N, C, *spatial) to ``size`` with (bi/tri)linear interpolation; a no-op when sizes match.

    Args:
        x: the feature maps.
        size: the spatial size wanted.
        align_corners: ``F.interpolate``'s argument.

    Example::

        >>> resize_to(torch.ones(1, 2, 4, 4), [8, 6]).shape
        torch.Size([1, 2, 8, 6])
    """
    if x.shape[2:] == size:
        return x
    return F.interpolate(x, size=size, mode=linear_interp_mode(x.dim() - 2), align_corners=align_corners)


def is_pointwise_conv(module: nn.Module) -> bool:
    """Whether ``module`` is a plain 1x1 convolution (one group, stride 1, no padding): a matrix product per voxel.

    Args:
        module: any module.

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


def input_rank_rule(name: str, spatial_dims: int) -> str:
    """The sentence a network's error for an input of the wrong rank starts with (the shape it takes).

    Args:
        name: the network's class name.
        spatial_dims: 2 or 3.

    Example::

        >>> input_rank_rule("EGEUNet", 3)
        'EGEUNet (3D) takes inputs of shape (batch, channels, D, H, W)'
    """
    axes = ", ".join(["D", "H", "W"][-spatial_dims:])
    return f"{name} ({spatial_dims}D) takes inputs of shape (batch, channels, {axes})"


def channels_rule(name: str, in_channels: int) -> str:
    """The start of a network's error for an input of other channels than it was built for (its shape follows).

    Args:
        name: the network's class name.
        in_channels: the input channels it was built for.

    Example::

        >>> channels_rule("EGEUNet", 3) + "[1, 1, 64, 64]"
        'EGEUNet was built for 3 input channels (in_channels); got shape [1, 1, 64, 64]'
    """
    return f"{name} was built for {in_channels} input channels (in_channels); got shape "


def _coarsest_voxels(size: List[int], scale: int) -> int:  # noqa: UP006
    """Voxels of the coarsest maps of an input of spatial ``size``, each side divided by ``scale`` (rounded down)."""
    voxels = 1
    for s in size:
        voxels *= s // scale
    return voxels


class MinimumInputSize:
    """Mixin of networks that take every spatial size from ``min_size`` up (odd and non-square sizes included).

    The network states its rule in its constructor (:meth:`_state_size_rule`, after setting ``spatial_dims``) and
    calls ``_shape_problem`` at the start of ``forward`` (TorchScript compiles it with the network): an input of
    the wrong rank or too small is refused there, in words, instead of failing deep inside a layer.
    ``input_size_problem`` states the same rule without running the network, so that
    :func:`~monai_unets.networks.input_shape_problem` needs no trace on the meta device (about a second when a
    bundle starts, most of it importing ``torch._dynamo``). Tests check the rule against such a trace.

    Example::

        >>> from monai_unets import EGEUNet
        >>> EGEUNet(2, 3, 1).input_size_problem([16, 64])
        'EGEUNet needs every spatial size >= 32 (five 2x poolings); got [16, 64]'
    """

    def _state_size_rule(self, min_size: int, in_channels: int, reason: str = "") -> None:
        name = type(self).__name__
        self.min_size = min_size
        # an image of other channels (RGB into a grey network) had failed in the first convolution's own words
        self.expected_channels = in_channels
        self.channels_rule = channels_rule(name, in_channels)
        self.size_rule = f"{name} needs every spatial size >= {min_size}{reason}"
        self.rank_rule = input_rank_rule(name, self.spatial_dims)
        self.coarsest_scale = 0
        self.batch_norm_scale = 0
        self.batch_norm_rule = ""

    def _state_norm_rules(self, coarsest_scale: int) -> None:
        """Adds the rules of the built network's norms on its coarsest maps, the input's size divided by
        ``coarsest_scale``: instance norms (without running statistics) take their statistics over a map's voxels
        and refuse a single one, in eval mode too; batch norms in training take them over the batch's voxels too,
        and refuse a batch of one coarsest voxel (a batch of 1 at the smallest size), where torch's error named no
        size."""
        instance_norms = (
            isinstance(m, nn.modules.instancenorm._InstanceNorm) and not m.track_running_stats for m in self.modules()
        )
        self.coarsest_scale = coarsest_scale if any(instance_norms) else 0
        batch_norms = (isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())
        self.batch_norm_scale = coarsest_scale if any(batch_norms) else 0
        self.batch_norm_rule = (
            f"{type(self).__name__} in training with batch norm needs more than one value per channel in its "
            f"coarsest maps (the size divided by {coarsest_scale}, times the batch): train with a batch of 2 or "
            "more, or larger inputs; got shape "
        )

    def _shape_problem(self, shape: List[int]) -> str:  # noqa: UP006
        if len(shape) != self.spatial_dims + 2:
            return self.rank_rule + "; got shape " + str(shape)
        if shape[1] != self.expected_channels:
            return self.channels_rule + str(shape)
        problem = self._size_problem(shape[2:])
        if problem or not self.training or self.batch_norm_scale == 0:
            return problem
        if shape[0] * _coarsest_voxels(shape[2:], self.batch_norm_scale) < 2:
            return self.batch_norm_rule + str(shape)
        return ""

    def _size_problem(self, size: List[int]) -> str:  # noqa: UP006
        if min(size) < self.min_size:
            return self.size_rule + "; got " + str(size)
        if self.coarsest_scale > 0:
            if _coarsest_voxels(size, self.coarsest_scale) < 2:
                return (
                    self.size_rule
                    + ", and with instance norm more than one voxel in its coarsest maps (the size divided by "
                    + str(self.coarsest_scale)
                    + "); got "
                    + str(size)
                )
        return ""

    @torch.jit.unused
    def input_size_problem(self, spatial_size: Sequence[int]) -> Optional[str]:  # noqa: UP007
        """Why an input of ``spatial_size`` cannot go through the network in eval mode, or ``None`` when it can.

        Args:
            spatial_size: the input's spatial shape (no batch or channel axis).
        """
        if len(spatial_size) != self.spatial_dims:
            return self.rank_rule + "; got spatial size " + str(list(spatial_size))
        return self._size_problem([int(s) for s in spatial_size]) or None
