"""U-Net v2: a U-Net whose skip connections are Semantics and Detail Infusion (SDI) modules (Peng et al., 2023)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import List, Union

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetOutBlock
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_dropout_layer
from torch import nn

from .blocks.conv_encoder import UNetV2ConvEncoder
from .blocks.groupnorm import accurate_group_norms
from .blocks.pvt import PVT_V2_VARIANTS, PVTv2Encoder
from .blocks.sdi import SDISkip
from .blocks.utils import channels_rule, check_network_arguments, input_rank_rule, linear_interp_mode

__all__ = ["UNetV2", "UnetV2", "warn_if_random_encoder"]

logger = logging.getLogger(__name__)


class UNetV2(nn.Module):
    """U-Net v2: an encoder, SDI skip connections and a light linear decoder with deep supervision.

    Peng, Sonka, Chen: "U-Net v2: Rethinking the Skip Connections of U-Net for Medical Image Segmentation",
    arXiv 2311.17791, https://arxiv.org/abs/2311.17791.

    The encoder gives four features at strides 4/8/16/32 (PVTv2-b2 in the paper, or a convolutional encoder),
    of widths ``channels``. Each goes through channel and spatial attention and a 1x1 conv + BatchNorm to
    ``decoder_channels`` (c = 32), and
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

    Outputs are logits (apply sigmoid or softmax outside) and follow the package's deep-supervision contract
    (see :mod:`monai_unets.networks`): in eval mode, or without ``deep_supervision``, the finest head's logits
    at the input size; in training mode with ``deep_supervision`` the four heads' logits, finest (main) first,
    all at the input size. The ISIC recipe (nnU-Net) supervises all four with weights
    [8, 4, 2, 1] / 15; the polyp recipe (``PolypSeg``) uses only the two finest (``outputs[:2]``), and
    predicts ``sigmoid(outputs[0] + outputs[1])`` at test time.

    Args:
        spatial_dims: number of spatial dimensions (2, or 3 with ``encoder="conv"``).
        in_channels: number of input channels (3 to use the ImageNet PVTv2 weights).
        out_channels: number of output channels (classes; 1 for binary segmentation with a sigmoid).
        channels: the widths of the four encoder stages, finest first: those of the ``"conv"`` encoder
            (default (32, 64, 128, 256)) or of a custom encoder module (default: its ``out_channels``
            attribute). A PVTv2 encoder has its variant's widths ((64, 128, 320, 512) for b2); ``None`` takes
            them, other values are an error.
        encoder: ``"pvt_v2_b2"`` (the paper's backbone; other keys of ``PVT_V2_VARIANTS`` work too),
            ``"conv"`` (:class:`~monai_unets.networks.blocks.conv_encoder.UNetV2ConvEncoder`), or an
            ``nn.Module`` mapping the input to a list of four feature maps, finest first.
        decoder_channels: the SDI and decoder width ``c`` (32 in the paper).
        deep_supervision: build a head on each of the four levels and return all four in training mode;
            without it only the main head (``heads[0]``, the same state-dict key) is built.
        pretrained: local path of PVTv2 ImageNet weights (e.g. ``pvt_v2_b2.pth``) to load into the encoder;
            ``None`` for random initialisation. Only for the PVTv2 encoders.
        act: activation of the SDI channel attention and of the ``"conv"`` encoder (MONAI ``Act`` spelling;
            ReLU as published; ``None`` for none). The PVTv2 transformer keeps its own GELU.
        norm: norm of the SDI reductions and of the ``"conv"`` encoder (MONAI ``Norm`` spelling; batch norm as
            published; ``None`` for none). The PVTv2 transformer keeps its own LayerNorm.
        dropout: dropout before each head and in the ``"conv"`` encoder (MONAI ``Dropout`` spelling: a
            probability or a (name, kwargs) tuple); ``None`` for none, as published.
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
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] | None = None,
        encoder: str | nn.Module = "pvt_v2_b2",
        decoder_channels: int = 32,
        deep_supervision: bool = True,
        pretrained: str | os.PathLike | None = None,
        act: tuple | str | None = "relu",
        norm: tuple | str | None = "batch",
        dropout: tuple | str | float | None = None,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        check_network_arguments(spatial_dims, in_channels, out_channels, channels, deep_supervision=deep_supervision)
        self.spatial_dims = spatial_dims
        self.deep_supervision = deep_supervision
        self.rank_rule = input_rank_rule("UNetV2", spatial_dims)
        self.expected_channels = in_channels
        self.channels_rule = channels_rule("UNetV2", in_channels)

        if isinstance(encoder, nn.Module):
            if pretrained is not None:
                raise ValueError("pretrained is only for the PVTv2 encoders; load a custom encoder's weights yourself.")
            widths = channels if channels is not None else getattr(encoder, "out_channels", None)
            if widths is None:
                raise ValueError("a custom encoder needs channels (or an out_channels attribute).")
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
            if channels is not None and tuple(channels) != tuple(widths):
                raise ValueError(f"the {encoder} encoder has stage widths {tuple(widths)}, got channels={channels}.")
        elif encoder == "conv":
            if pretrained is not None:
                raise ValueError("pretrained weights exist only for the PVTv2 encoders, not for encoder='conv'.")
            widths = tuple(channels) if channels is not None else (32, 64, 128, 256)
            self.encoder = UNetV2ConvEncoder(spatial_dims, in_channels, widths, act=act, norm=norm, dropout=dropout)
        else:
            raise ValueError(
                f"encoder must be 'conv', one of {sorted(PVT_V2_VARIANTS)} or an nn.Module, got {encoder!r}."
            )
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4:
            raise ValueError(f"U-Net v2 needs four encoder levels, got widths {widths}.")
        self.channels = widths

        c = decoder_channels
        self.skip = SDISkip(spatial_dims, widths, c, act=act, norm=norm)
        up = Conv[Conv.CONVTRANS, spatial_dims]
        # ups[i] brings level i + 1 to level i; heads[i] reads level i (0 = finest, stride 4). Without deep
        # supervision only the main head exists: unused heads would get no gradient, which DistributedDataParallel
        # rejects, and heads[0] keeps its name so that the main head loads from either kind of checkpoint
        self.ups = nn.ModuleList(up(c, c, kernel_size=4, stride=2, padding=1, bias=False) for _ in range(3))
        self.head_dropout = nn.Identity() if dropout is None else get_dropout_layer(dropout)
        self.heads = nn.ModuleList(
            UnetOutBlock(spatial_dims, c, out_channels) for _ in range(4 if deep_supervision else 1)
        )
        accurate_group_norms(self)
        # batch norm (the conv encoder) has one value per channel at the coarsest level, 1/32 of the input, for a
        # training batch of one image of at most 32 per side: torch's own error names no size nor remedy
        self.batch_norm_encoder = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.encoder.modules())

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:  # noqa: UP006,UP007
        # in words, where the encoder's first layer would name its own expectations
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(self.rank_rule + "; got shape " + str(list(x.shape)))
        if x.shape[1] != self.expected_channels:
            raise ValueError(self.channels_rule + str(list(x.shape)))
        size: List[int] = list(x.shape[2:])  # noqa: UP006
        if self.training and self.batch_norm_encoder and x.shape[0] == 1 and max(size) <= 32:
            raise ValueError(
                "UNetV2's conv encoder trains with batch norm, which needs more than one value per channel at its "
                "coarsest level (1/32 of the input): a batch of one image of " + str(size) + " has one there; "
                "train with batches of 2 or more, or images larger than 32 on a side"
            )
        skips = self.skip(self.encoder(x))
        all_heads = self.training and self.deep_supervision

        coarse: List[torch.Tensor] = []  # noqa: UP006  (levels 3, 2, 1, coarsest first, for the side heads)
        y = skips[3]
        if all_heads:
            coarse.append(y)
        y = _crop_or_pad(self.ups[2](y), skips[2].shape[2:]) + skips[2]
        if all_heads:
            coarse.append(y)
        y = _crop_or_pad(self.ups[1](y), skips[1].shape[2:]) + skips[1]
        if all_heads:
            coarse.append(y)
        y = _crop_or_pad(self.ups[0](y), skips[0].shape[2:]) + skips[0]
        out = self._to_input_size(self.heads[0](self.head_dropout(y)), size)
        if not all_heads:
            return out

        outputs = [out]
        # TorchScript indexes a ModuleList only by constants or in a loop over it, and heads[1:] exist only with
        # deep supervision
        for level, head in enumerate(self.heads):
            if level > 0:
                outputs.append(self._to_input_size(head(self.head_dropout(coarse[3 - level])), size))
        return outputs

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


def warn_if_random_encoder(pretrained: str | os.PathLike | None, checkpoint_path: str | os.PathLike | None) -> bool:
    """Warns that a training starts U-Net v2's PVTv2 encoder from random weights.

    The encoder's ImageNet weights speed up training a lot, and they are a file the user downloads: a training
    without them (the polyp bundle's default) learnt far more slowly with nothing in its log to say why. Nothing
    is logged where a resumed training takes its weights from its checkpoint.

    Args:
        pretrained: the encoder's weights file given to :class:`UNetV2` (``None``: none).
        checkpoint_path: the checkpoint a resumed training loads its weights from; ``None`` when not resuming.

    Returns:
        whether the warning was logged.

    Example::

        >>> warn_if_random_encoder("pvt_v2_b2.pth", None)
        False
    """
    if pretrained is not None or (checkpoint_path is not None and os.path.isfile(checkpoint_path)):
        return False
    logger.warning(
        "the PVTv2 encoder starts from random weights (no pretrained_encoder), so the training learns far more "
        "slowly; give its ImageNet weights with --pretrained_encoder /path/to/pvt_v2_b2.pth (see the bundle's docs)."
    )
    return True


UnetV2 = UNetV2
