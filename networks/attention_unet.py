"""Attention U-Net with grid attention gates (Oktay et al., MIDL 2018), for 2D and 3D."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional, Tuple, Union

import torch
from monai.networks.blocks import Convolution, UnetOutBlock
from monai.networks.layers.factories import Pool
from monai.networks.nets.basic_unet import TwoConv
from torch import nn

from .blocks.attention import AttentionGate, SelfAttentionBlock
from .blocks.groupnorm import accurate_group_norms
from .blocks.utils import MinimumInputSize, check_network_arguments, he_normal_init, resize_to

__all__ = ["AttentionGateUNet", "AttentionGateUnet"]


class AttentionGateUNet(MinimumInputSize, nn.Module):
    """Attention U-Net whose skips are filtered by additive grid attention gates driven by the coarser level.

    Oktay, Schlemper, Le Folgoc, Lee, Heinrich, Misawa, Mori, McDonagh, Hammerla, Kainz, Glocker, Rueckert:
    "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018, https://arxiv.org/abs/1804.03999.

    This follows the authors' 3D CT network (``unet_CT_multi_att_dsv_3D``):

    - encoder levels of 2 x (conv-BN-ReLU) (MONAI's ``TwoConv``) separated by 2x max-pooling; default widths
      (16, 32, 64, 128, 256), the paper's 64-1024 divided by 4;
    - a gating signal (1x1 conv-BN-ReLU) computed from the bottleneck;
    - on every skip except the finest, ``num_gates`` :class:`~monai_unets.networks.blocks.attention.AttentionGate`
      blocks gated by the coarser level (the gating signal, then the decoder output one level below), with
      theta a 2x2(x2) stride-2 conv; their outputs are merged by a 1x1 conv-BN-ReLU when there are several;
    - decoder levels: (bi/tri)linear up-sampling of the coarser map to the skip's size, concatenation (no
      channel halving) and a double conv;
    - with ``deep_supervision``: a 1x1 head on every decoder level, up-sampled to the input size,
      concatenated and fused by a 1x1 conv into the output; otherwise a 1x1 head on the finest level.

    The optional ``self_attention`` adds a :class:`~monai_unets.networks.blocks.attention.SelfAttentionBlock`
    after the bottleneck (zero-initialised, so training starts from the plain attention-gated network).

    How it differs from ``monai.networks.nets.AttentionUnet``: MONAI gates the skip with the decoder feature
    *after* it was up-sampled to the skip's resolution (1x1 convs on both inputs, no strided theta), uses
    F_int = C/2, batch norm on psi and no output transform W, and one gate per level; it downsamples with
    strided convs instead of max-pooling, up-samples with transposed convs (+BN+ReLU), merges with a single
    conv followed by instance norm and PReLU, and has no deep supervision. Here the gate runs on a grid twice
    as coarse as the skip, as in the original.

    Outputs follow the package's deep-supervision contract (see :mod:`monai_unets.networks`): in training mode
    with ``deep_supervision``, a list of logits at the input size, the fused output then the per-level head
    outputs from finest to coarsest; in eval mode (or without deep supervision) the logits tensor only. Any
    input size works (odd, non-square) as long as every spatial size is >= 2 ** (len(channels) - 1): coarse
    maps are resized to the skip's size.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels (logits; apply softmax or sigmoid outside).
        channels: width of each level, finest first; ``len(channels) - 1`` poolings.
        deep_supervision: fuse per-level heads into the output and return them in training mode.
        self_attention: add a self-attention block after the bottleneck.
        num_gates: attention gates per gated skip (2 in the published network).
        act: activation of the conv blocks and inside the attention gates (MONAI ``Act`` spelling; ReLU as
            published); ``None`` for none.
        norm: norm used everywhere (MONAI ``Norm`` spelling; batch norm as published); ``None`` for none.
        dropout: dropout of the encoder and decoder convs (MONAI ``Dropout`` spelling: a probability or a
            (name, kwargs) tuple); ``None`` for none, as published.

    Example::

        >>> net = AttentionGateUNet(spatial_dims=3, in_channels=1, out_channels=3).eval()
        >>> net(torch.randn(1, 1, 48, 40, 33)).shape
        torch.Size([1, 3, 48, 40, 33])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        deep_supervision: bool = True,
        self_attention: bool = False,
        num_gates: int = 2,
        act: str | tuple | None = ("relu", {"inplace": True}),
        norm: str | tuple | None = "batch",
        dropout: str | tuple | float | None = None,
    ) -> None:
        super().__init__()
        check_network_arguments(
            spatial_dims,
            in_channels,
            out_channels,
            channels,
            deep_supervision=deep_supervision,
            self_attention=self_attention,
        )
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two widths, got {tuple(channels)}.")
        if num_gates < 1:
            raise ValueError(f"num_gates must be >= 1, got {num_gates}.")
        self.spatial_dims = spatial_dims
        self.deep_supervision = deep_supervision
        self._state_size_rule(2 ** (len(channels) - 1), in_channels)
        f = list(channels)
        pool = Pool[Pool.MAX, spatial_dims]

        def double_conv(c_in: int, c_out: int) -> TwoConv:
            return TwoConv(spatial_dims, c_in, c_out, act=act, norm=norm, bias=True, dropout=dropout)

        def conv1x1_norm_act(c_in: int, c_out: int) -> Convolution:
            return Convolution(spatial_dims, c_in, c_out, kernel_size=1, act=act, norm=norm)

        self.encoders = nn.ModuleList([double_conv(in_channels, f[0])])
        for i in range(1, len(f)):
            self.encoders.append(nn.Sequential(pool(kernel_size=2, stride=2), double_conv(f[i - 1], f[i])))
        self.bottleneck_attention = SelfAttentionBlock(spatial_dims, f[-1]) if self_attention else nn.Identity()
        self.gating = conv1x1_norm_act(f[-1], f[-1])

        self.decoders = nn.ModuleList()
        for i in reversed(range(len(f) - 1)):
            gate: nn.Module | None = None
            if i > 0:  # the finest skip is not gated
                gates = [AttentionGate(spatial_dims, f[i], f[i + 1], act=act, norm=norm) for _ in range(num_gates)]
                merge = conv1x1_norm_act(num_gates * f[i], f[i]) if num_gates > 1 else None
                gate = _GatedSkip(gates, merge)
            head = UnetOutBlock(spatial_dims, f[i], out_channels) if deep_supervision else None
            self.decoders.append(_UpConcat(double_conv(f[i] + f[i + 1], f[i]), gate, head))
        if deep_supervision:
            self.head = UnetOutBlock(spatial_dims, out_channels * (len(f) - 1), out_channels)
        else:
            self.head = UnetOutBlock(spatial_dims, f[0], out_channels)
        self.apply(he_normal_init)
        accurate_group_norms(self)
        self._state_norm_rules(2 ** (len(channels) - 1))

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:  # noqa: UP006,UP007
        size = x.shape[2:]
        problem = self._shape_problem(list(x.shape))
        if problem:
            raise ValueError(problem)
        skips: List[torch.Tensor] = []  # noqa: UP006
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = self.bottleneck_attention(skips.pop())
        g = self.gating(x)
        sides: List[torch.Tensor] = []  # noqa: UP006
        for k, decoder in enumerate(self.decoders):
            x, side = decoder(x, skips[len(skips) - 1 - k], g)
            g = x
            if side is not None:
                sides.append(resize_to(side, size))
        if not self.deep_supervision:
            return self.head(x)
        sides = sides[::-1]  # finest first
        out = self.head(torch.cat(sides, dim=1))
        if self.training:
            return [out] + sides
        return out


class _GatedSkip(nn.Module):
    """Several attention gates on one skip, merged by 1x1 conv-norm-act (the original "multi-attention block")."""

    def __init__(self, gates: list[AttentionGate], merge: nn.Module | None) -> None:
        super().__init__()
        self.gates = nn.ModuleList(gates)
        self.merge = merge

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        outs: List[torch.Tensor] = []  # noqa: UP006
        for gate in self.gates:
            outs.append(gate(x, g)[0])
        if self.merge is None:
            return outs[0]
        return self.merge(torch.cat(outs, dim=1))


class _UpConcat(nn.Module):
    """Decoder level: gate the skip, resize the coarser map to it, concatenate, double conv, optional head."""

    def __init__(self, conv: nn.Module, gate: nn.Module | None, head: nn.Module | None) -> None:
        super().__init__()
        self.conv = conv
        self.gate = gate
        self.head = head

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, g: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:  # noqa: UP006,UP007
        if self.gate is not None:
            skip = self.gate(skip, g)
        x = self.conv(torch.cat([skip, resize_to(x, skip.shape[2:])], dim=1))
        side: Optional[torch.Tensor] = None  # noqa: UP007
        if self.head is not None:
            side = self.head(x)
        return x, side


AttentionGateUnet = AttentionGateUNet
