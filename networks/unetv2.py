"""U-Net v2: a U-Net whose skip connections are Semantics and Detail Infusion (SDI) modules (Peng et al., 2023)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import List, Union

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from torch import nn

from .blocks.pvt import PVT_V2_VARIANTS, PVTv2Encoder
from .blocks.sdi import SDISkip
from .blocks.utils import linear_interp_mode

__all__ = ["UNetV2", "UNetV2ConvEncoder", "UnetV2"]


class UNetV2ConvEncoder(nn.Module):
    """A plain convolutional four-level encoder for U-Net v2, in 2D or 3D, with features at strides 4/8/16/32.

    Level 1 is a stem of two stride-2 3x3 convs and one stride-1 3x3 conv; levels 2-4 are a stride-2 3x3 conv
    then a stride-1 3x3 conv. Every conv is followed by a norm and an activation (MONAI
    :class:`~monai.networks.blocks.Convolution`). The padded strided convs give ceil(size / 2) at every step,
    so any input size works. It gives U-Net v2 a backbone where no pretrained transformer exists, notably in
    3D; the strides match PVTv2's so the SDI and decoder are unchanged.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        channels: widths of the four levels.
        norm: feature normalisation type and arguments (MONAI ``Norm`` factory spelling).
        act: activation type and arguments (MONAI ``Act`` factory spelling).
        dropout: dropout ratio (MONAI ``Dropout`` factory spelling); ``None`` for none.

    Example::

        >>> enc = UNetV2ConvEncoder(spatial_dims=3, in_channels=1)
        >>> [tuple(f.shape) for f in enc(torch.randn(1, 1, 33, 40, 24))]
        [(1, 32, 9, 10, 6), (1, 64, 5, 5, 3), (1, 128, 3, 3, 2), (1, 256, 2, 2, 1)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        norm: tuple | str | None = ("instance", {"affine": True}),
        act: tuple | str | None = ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        dropout: tuple | str | float | None = None,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"channels must have 4 level widths, got {tuple(channels)}.")
        self.out_channels = tuple(int(c) for c in channels)
        self.strides = (4, 8, 16, 32)

        def conv(cin: int, cout: int, stride: int) -> Convolution:
            return Convolution(
                spatial_dims, cin, cout, strides=stride, kernel_size=3, act=act, norm=norm, dropout=dropout
            )

        c = self.out_channels
        self.levels = nn.ModuleList(
            [nn.Sequential(conv(in_channels, c[0], 2), conv(c[0], c[0], 2), conv(c[0], c[0], 1))]
            + [nn.Sequential(conv(c[i - 1], c[i], 2), conv(c[i], c[i], 1)) for i in range(1, 4)]
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:  # noqa: UP006
        features: List[torch.Tensor] = []  # noqa: UP006
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class UNetV2(nn.Module):
    """U-Net v2: an encoder, SDI skip connections and a light linear decoder with deep supervision.

    Peng, Sonka, Chen: "U-Net v2: Rethinking the Skip Connections of U-Net for Medical Image Segmentation",
    arXiv 2311.17791, https://arxiv.org/abs/2311.17791.

    The encoder gives four features at strides 4/8/16/32 (PVTv2-b2 in the paper, or a convolutional encoder).
    Each goes through channel and spatial attention and a 1x1 conv + BatchNorm to ``channels`` (c = 32), and
    SDI_i multiplies all four levels, resampled to level i and smoothed by 3x3 convs (see
    :class:`~monai_unets.networks.blocks.sdi.SDISkip`). The decoder is linear, as published: starting from
    SDI_4, ``y = ConvTranspose(y) + SDI_i`` (4x4 kernel, stride 2, padding 1, no bias) for i = 3, 2, 1, with a
    1x1 conv head after SDI_4 and after each sum.

    Compared with the published code this version

    - works for any input size, square or not: SDI resamples to the anchor's full shape (the original took
      only the last side and crashed on 256x192 or 112x112), the transposed-conv output is cropped or padded
      to the skip's shape, and the heads are resized to the input size (bilinear, ``align_corners=False``,
      identical to the original x4 upsampling when the size is a multiple of 32);
    - omits the original's ``deconv5``, which is built but never used (16,384 parameters): with PVTv2-b2
      and c = 32 the network has 25,128,652 parameters instead of 25,145,036;
    - has a convolutional encoder (``encoder="conv"``) that also works in 3D, and accepts any encoder module
      returning four feature maps;
    - takes the PVTv2 ImageNet weights from a local file and raises on a missing or mismatched file instead
      of warning and training from random weights.

    Outputs are logits (apply sigmoid or softmax outside). In eval mode, or without ``deep_supervision``, the
    forward pass returns the finest head's logits at the input size, so it works with sliding-window
    inference and exports. In training mode with ``deep_supervision`` it returns the four heads' logits,
    finest first, all at the input size. The ISIC recipe (nnU-Net) supervises all four with weights
    [8, 4, 2, 1] / 15; the polyp recipe (``PolypSeg``) uses only the two finest (``outputs[:2]``), and
    predicts ``sigmoid(outputs[0] + outputs[1])`` at test time.

    Args:
        spatial_dims: number of spatial dimensions (2, or 3 with ``encoder="conv"``).
        in_channels: number of input channels (3 to use the ImageNet PVTv2 weights).
        out_channels: number of output channels (classes; 1 for binary segmentation with a sigmoid).
        encoder: ``"pvt_v2_b2"`` (the paper's backbone; other keys of ``PVT_V2_VARIANTS`` work too),
            ``"conv"`` (:class:`UNetV2ConvEncoder`), or an ``nn.Module`` mapping the input to a list of four
            feature maps, finest first (then ``encoder_channels`` gives their widths).
        channels: the SDI and decoder width ``c`` (32 in the paper).
        deep_supervision: return all four heads in training mode.
        pretrained: local path of PVTv2 ImageNet weights (e.g. ``pvt_v2_b2.pth``) to load into the encoder;
            ``None`` for random initialisation. Only for the PVTv2 encoders.
        encoder_channels: the four level widths of the ``"conv"`` encoder (default (32, 64, 128, 256)) or of
            a custom encoder module; ignored by the PVTv2 encoders.
        norm: normalisation of the ``"conv"`` encoder (MONAI ``Norm`` spelling).
        act: activation of the ``"conv"`` encoder (MONAI ``Act`` spelling).
        drop_path_rate: stochastic-depth rate of the PVTv2 encoder (0.1 in the paper).

    Example::

        >>> net = UNetV2(spatial_dims=2, in_channels=3, out_channels=1).eval()  # PVTv2-b2, random weights
        >>> net(torch.randn(1, 3, 256, 192)).shape
        torch.Size([1, 1, 256, 192])
        >>> net3d = UNetV2(spatial_dims=3, in_channels=1, out_channels=3, encoder="conv").eval()
        >>> net3d(torch.randn(1, 1, 48, 40, 33)).shape
        torch.Size([1, 3, 48, 40, 33])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        encoder: str | nn.Module = "pvt_v2_b2",
        channels: int = 32,
        deep_supervision: bool = True,
        pretrained: str | os.PathLike | None = None,
        encoder_channels: Sequence[int] | None = None,
        norm: tuple | str | None = ("instance", {"affine": True}),
        act: tuple | str | None = ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        self.spatial_dims = spatial_dims
        self.deep_supervision = deep_supervision

        if isinstance(encoder, nn.Module):
            if pretrained is not None:
                raise ValueError("pretrained is only for the PVTv2 encoders; load a custom encoder's weights yourself.")
            widths = encoder_channels if encoder_channels is not None else getattr(encoder, "out_channels", None)
            if widths is None:
                raise ValueError("a custom encoder needs encoder_channels (or an out_channels attribute).")
            self.encoder = encoder
        elif encoder in PVT_V2_VARIANTS:
            if spatial_dims != 2:
                raise ValueError(
                    f"the PVTv2 encoder ('{encoder}') is 2D only; use encoder='conv' for spatial_dims={spatial_dims}."
                )
            self.encoder = PVTv2Encoder.from_variant(
                encoder, in_channels=in_channels, drop_path_rate=drop_path_rate, pretrained=pretrained
            )
            widths = self.encoder.out_channels
        elif encoder == "conv":
            if pretrained is not None:
                raise ValueError("pretrained weights exist only for the PVTv2 encoders, not for encoder='conv'.")
            widths = tuple(encoder_channels) if encoder_channels is not None else (32, 64, 128, 256)
            self.encoder = UNetV2ConvEncoder(spatial_dims, in_channels, widths, norm=norm, act=act)
        else:
            raise ValueError(
                f"encoder must be 'conv', one of {sorted(PVT_V2_VARIANTS)} or an nn.Module, got {encoder!r}."
            )
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4:
            raise ValueError(f"U-Net v2 needs four encoder levels, got widths {widths}.")
        self.encoder_channels = widths

        self.skip = SDISkip(spatial_dims, widths, channels)
        up = Conv[Conv.CONVTRANS, spatial_dims]
        conv = Conv[Conv.CONV, spatial_dims]
        # ups[i] brings level i + 1 to level i; heads[i] reads level i (0 = finest, stride 4)
        self.ups = nn.ModuleList(
            up(channels, channels, kernel_size=4, stride=2, padding=1, bias=False) for _ in range(3)
        )
        self.heads = nn.ModuleList(conv(channels, out_channels, kernel_size=1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:  # noqa: UP006,UP007
        size: List[int] = list(x.shape[2:])  # noqa: UP006
        skips = self.skip(self.encoder(x))
        all_heads = self.training and self.deep_supervision

        coarse: List[torch.Tensor] = []  # noqa: UP006  (heads 4, 3, 2, coarsest first)
        y = skips[3]
        if all_heads:
            coarse.append(self.heads[3](y))
        y = _crop_or_pad(self.ups[2](y), skips[2].shape[2:]) + skips[2]
        if all_heads:
            coarse.append(self.heads[2](y))
        y = _crop_or_pad(self.ups[1](y), skips[1].shape[2:]) + skips[1]
        if all_heads:
            coarse.append(self.heads[1](y))
        y = _crop_or_pad(self.ups[0](y), skips[0].shape[2:]) + skips[0]
        out = self._to_input_size(self.heads[0](y), size)

        if all_heads:
            return [out] + [self._to_input_size(h, size) for h in coarse[::-1]]
        return out

    def _to_input_size(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:  # noqa: UP006
        # align_corners=False reproduces the original's x4 bilinear upsampling when size is a multiple of 32
        return F.interpolate(x, size=size, mode=linear_interp_mode(self.spatial_dims), align_corners=False)


def _crop_or_pad(x: torch.Tensor, size: List[int]) -> torch.Tensor:  # noqa: UP006
    """Crop (or zero-pad) ``x`` at the high end of each spatial axis to ``size``.

    The strided encoders give ceil(n / 2) at each step, so the doubled coarse map is at most one voxel larger
    than the finer skip; its extra last row lies past the image edge, and cropping it keeps the voxels
    aligned. Negative padding crops. A no-op for sizes that are multiples of 32.
    """
    pad: List[int] = []  # noqa: UP006
    shape = x.shape[2:]
    for d in range(len(size) - 1, -1, -1):  # F.pad lists the last axis first
        pad += [0, size[d] - shape[d]]
    for p in pad:
        if p != 0:
            return F.pad(x, pad)
    return x


UnetV2 = UNetV2
