"""The classic U-Net of Ronneberger et al. (MICCAI 2015), for 2D and 3D."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional, Tuple, Union

import torch
from monai.networks.blocks import Convolution, UnetOutBlock
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from .blocks.conv import PADDING_MODES, center_crop_to, match_size
from .blocks.groupnorm import accurate_group_norms
from .blocks.utils import MinimumInputSize, check_network_arguments, he_normal_init, resize_to

__all__ = ["ClassicUNet", "ClassicUnet"]

UPSAMPLE_MODES = ("deconv", "linear")


class ClassicUNet(MinimumInputSize, nn.Module):
    """The original U-Net: double-conv levels, max-pooling, up-convolutions and concatenated skips.

    Ronneberger, Fischer, Brox: "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, https://arxiv.org/abs/1505.04597.

    Each level is two MONAI :class:`~monai.networks.blocks.Convolution` blocks (3x3 conv, norm, dropout,
    activation); the encoder halves the size by 2x max-pooling between levels (four times with the default five
    widths). Each decoder level up-samples by 2 while halving the channels, concatenates the skip of the same
    level and applies two convs; a 1x1 conv (:class:`~monai.networks.blocks.UnetOutBlock`) gives the logits.

    - ``padding="valid"`` is the paper's network: unpadded convs, skips centre-cropped to the up-sampled size,
      so a 572x572 tile gives a 388x388 output (see :meth:`output_size`). Valid-mode 3D works the same way.
    - ``padding="same"`` keeps the input size for any input (odd and non-square included, every spatial size
      >= 2**(len(channels) - 1)): the up-sampled map is padded to the skip's size (``upsample="deconv"``) or
      interpolated straight to it (``upsample="linear"``).
    - ``upsample="deconv"`` uses a 2x2 transposed conv with stride 2 (the paper's "up-convolution");
      ``upsample="linear"`` uses a 1x1 conv and (bi/tri)linear interpolation, which has fewer parameters.
    - ``deep_supervision`` (not in the paper, off by default) adds a 1x1 head on every decoder level but the
      finest; outputs then follow the package's deep-supervision contract (see :mod:`monai_unets.networks`):
      in training mode a list [main, side outputs finest to coarsest] at the input size, in eval mode the main
      logits only. It needs ``padding="same"``.

    MONAI's ``BasicUNet`` has the same topology but defaults to 3D, instance norm, LeakyReLU and 32-256 widths,
    and pads/interpolates differently; ``monai.networks.nets.UNet`` uses strided convs instead of pooling.

    With ``spatial_dims=2, in_channels=1, out_channels=1`` and the defaults the network has 31,042,369
    parameters (conv biases, batch norm, 2x2 transposed convs, 1x1 output conv); ``out_channels=2`` and no
    norm gives the paper's 31,030,658.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels (logits; apply softmax or sigmoid outside).
        channels: width of each level, finest first; ``len(channels) - 1`` poolings.
        upsample: ``"deconv"`` (transposed conv) or ``"linear"`` (1x1 conv + (bi/tri)linear interpolation).
        padding: ``"same"`` (padded convs, output size = input size) or ``"valid"`` (unpadded, as in the paper).
        deep_supervision: add side heads and return their outputs in training mode.
        act: activation of the convs (MONAI ``Act`` spelling; ReLU as published).
        norm: norm of the convs (MONAI ``Norm`` spelling); ``None`` for none (paper).
        dropout: dropout of the convs of the two coarsest levels, where the paper drops out (MONAI ``Dropout``
            spelling: a probability or a (name, kwargs) tuple); ``None`` for none.
        bias: whether the 3x3 convs have biases.

    Example::

        >>> net = ClassicUNet(spatial_dims=2, in_channels=1, out_channels=1, padding="valid").eval()
        >>> net(torch.randn(1, 1, 572, 572)).shape
        torch.Size([1, 1, 388, 388])
        >>> ClassicUNet(2, 3, 2, channels=(8, 16, 32, 64, 128))(torch.randn(1, 3, 97, 130)).shape
        torch.Size([1, 2, 97, 130])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (64, 128, 256, 512, 1024),
        upsample: str = "deconv",
        padding: str = "same",
        deep_supervision: bool = False,
        act: str | tuple | None = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: str | tuple | float | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_network_arguments(
            spatial_dims, in_channels, out_channels, channels, deep_supervision=deep_supervision, bias=bias
        )
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two widths, got {tuple(channels)}.")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}.")
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}.")
        if deep_supervision and padding == "valid":
            raise ValueError("deep_supervision needs padding='same': valid-mode side outputs cover other regions.")
        self.spatial_dims = spatial_dims
        self.valid = padding == "valid"
        self.deep_supervision = deep_supervision
        self.depth = len(channels) - 1
        self._state_size_rule(self._min_input_size(), in_channels)
        f = list(channels)
        pad = 0 if self.valid else 1

        def double_conv(c_in: int, c_out: int, drop: str | tuple | float | None = None) -> nn.Sequential:
            return nn.Sequential(
                *(
                    Convolution(spatial_dims, a, c_out, act=act, norm=norm, dropout=drop, bias=bias, padding=pad)
                    for a in (c_in, c_out)
                )
            )

        pool = Pool[Pool.MAX, spatial_dims]
        self.encoders = nn.ModuleList([double_conv(in_channels, f[0])])
        for i in range(1, len(f)):
            drop = dropout if i >= len(f) - 2 else None
            self.encoders.append(nn.Sequential(pool(kernel_size=2, stride=2), double_conv(f[i - 1], f[i], drop)))
        self.decoders = nn.ModuleList(
            _UpBlock(
                spatial_dims,
                f[i + 1],
                f[i],
                double_conv(2 * f[i], f[i]),
                upsample,
                self.valid,
                UnetOutBlock(spatial_dims, f[i], out_channels) if deep_supervision and i > 0 else None,
            )
            for i in reversed(range(len(f) - 1))
        )
        self.head = UnetOutBlock(spatial_dims, f[0], out_channels)
        self.apply(he_normal_init)
        accurate_group_norms(self)
        if not self.valid:  # valid convolutions shrink the coarsest maps further: the size rule covers them
            self._state_norm_rules(2**self.depth)

    def output_size(self, input_size: Sequence[int]) -> tuple[int, ...]:
        """Spatial output size for ``input_size``: the input size in "same" mode, smaller in "valid" mode.

        In valid mode labels must be centre-cropped to this size (e.g. 572 -> 388); sizes for which every
        pooled map has an even size avoid half-voxel shifts between the input and the output.
        """
        if not self.valid:
            return tuple(int(s) for s in input_size)
        return tuple(_valid_output_length(int(s), self.depth) for s in input_size)

    def _min_input_size(self) -> int:
        if not self.valid:
            return 2**self.depth
        s = 1
        while _valid_output_length(s, self.depth) < 1:
            s += 1
        return s

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:  # noqa: UP006,UP007
        size = x.shape[2:]
        problem = self._shape_problem(list(x.shape))
        if problem:
            raise ValueError(problem)
        skips: List[torch.Tensor] = []  # noqa: UP006
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = skips.pop()
        sides: List[torch.Tensor] = []  # noqa: UP006  (coarsest first)
        for k, decoder in enumerate(self.decoders):
            x, side = decoder(x, skips[len(skips) - 1 - k])
            if side is not None:
                sides.append(side)
        out = self.head(x)
        if self.training and self.deep_supervision:
            return [out] + [resize_to(side, size) for side in sides[::-1]]
        return out


class _UpBlock(nn.Module):
    """One decoder level: up-sample by 2 to ``out_channels``, fit to the skip, concatenate, two convs, side head."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        conv: nn.Module,
        upsample: str,
        valid: bool,
        side_head: nn.Module | None,
    ) -> None:
        super().__init__()
        self.linear = upsample == "linear"
        self.valid = valid
        if self.linear:
            # a 1x1 conv commutes with linear interpolation, so it runs on the coarse map (4x/8x cheaper)
            self.up = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1)
        else:
            self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = conv
        self.side_head = side_head

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:  # noqa: UP006,UP007
        x = self.up(x)
        if self.linear:
            if self.valid:
                x = resize_to(x, [2 * s for s in x.shape[2:]])
            else:
                x = resize_to(x, skip.shape[2:])
        if self.valid:
            skip = center_crop_to(skip, x.shape[2:])
        else:
            # odd sizes lose a voxel to floor pooling: pad the 2x up-sampled map back to the skip's size
            x = match_size(x, skip.shape[2:])
        x = self.conv(torch.cat([skip, x], dim=1))
        side: Optional[torch.Tensor] = None  # noqa: UP007
        if self.side_head is not None:
            side = self.side_head(x)
        return x, side


def _valid_output_length(size: int, depth: int, trim: int = 4) -> int:
    """Output length of the valid-mode U-Net along one axis (0 or less when the input is too small)."""
    for _ in range(depth):
        size = size - trim
        if size < 2:
            return 0
        size //= 2
    size -= trim
    for _ in range(depth):
        if size < 1:
            return 0
        size = 2 * size - trim
    return max(size, 0)


ClassicUnet = ClassicUNet
