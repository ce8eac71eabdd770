"""EGE-UNet: an efficient group-enhanced U-Net for skin lesion segmentation (Ruan et al., MICCAI 2023)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetOutBlock
from monai.networks.layers.factories import Conv, split_args
from monai.networks.layers.utils import get_dropout_layer
from torch import nn

from .blocks import GAB, GHPA
from .blocks.groupnorm import accurate_group_norms
from .blocks.pool import MaxPool2x
from .blocks.utils import MinimumInputSize, act_layer, check_network_arguments, is_pointwise_conv, norm_layer, resize_to

__all__ = ["EGEUNet", "EGEUnet", "published_egeunet_state_dict"]


class EGEUNet(MinimumInputSize, nn.Module):
    """EGE-UNet, a 53 K-parameter U-Net built from GHPA blocks and Group Aggregation Bridges.

    Ruan, Xie, Gao, Liu, Fu: "EGE-UNet: an Efficient Group Enhanced UNet for skin lesion segmentation",
    MICCAI 2023, https://arxiv.org/abs/2307.08473.

    Six encoder stages (three 3x3 convs then three GHPA blocks, GroupNorm, 2x max-pooling after the first
    five, GELU) and a mirrored decoder. The GHPA blocks and the bridges normalise with a channels-first
    LayerNorm (``block_norm``). With ``deep_supervision``, every decoder stage has a 1x1 side head;
    with ``bridge``, each skip goes through a GAB fed by the bridge output of the level below and by that
    stage's side output, and is added to the decoder feature.

    Compared with the published code this version

    - returns logits (apply sigmoid or softmax outside) and supports ``out_channels > 1``: the side heads
      and the bridges' mask inputs then have ``out_channels`` channels;
    - works without deep supervision while keeping the bridges (they then take no mask), and without bridges;
    - accepts any input with every spatial size >= 32 (with instance norm, whose statistics need more than one
      voxel, coarsest maps of two voxels or more: e.g. 32 x 64): decoder features are resized to the skip's size
      instead of being upsampled by a fixed factor, so sizes need not be multiples of 32;
    - has a 3D variant (``spatial_dims=3``, trilinear resizing, 3D GHPA with one attention group per axis);
    - optionally predicts at full resolution (``full_resolution``).

    Outputs follow the package's deep-supervision contract (see :mod:`monai_unets.networks`): in training mode
    with ``deep_supervision``, a list of logits at the input size, the main output then the five side outputs
    from finest to coarsest; in eval mode (or without deep supervision) the main logits only.

    Args:
        spatial_dims: number of spatial dimensions (2 or 3).
        in_channels: number of input channels.
        out_channels: number of output channels (classes; 1 for binary segmentation with a sigmoid).
        channels: the six stage widths, finest first; with GroupNorm each must be divisible by its groups.
        bridge: use Group Aggregation Bridges on the skips (otherwise plain additive skips).
        deep_supervision: add side heads, return them in training and feed them to the bridges.
        act: activation of every stage and inside the GHPA blocks (MONAI ``Act`` spelling; GELU as published);
            ``None`` for none.
        norm: norm after each stage's conv or GHPA block (MONAI ``Norm`` spelling; GroupNorm with 4 groups as
            published); ``None`` for none.
        block_norm: norm inside the GHPA blocks and the bridges (MONAI ``Norm`` spelling; the published
            channels-first LayerNorm, ``"channel_layer"``); ``None`` for none.
        dropout: dropout after each stage's activation (MONAI ``Dropout`` spelling: a probability or a
            (name, kwargs) tuple); ``None`` for none, as published.
        full_resolution: add a full-resolution branch (3x3 conv of the input, then ``norm``) that is summed with
            the last decoder stage resized to the input, before the activation and the 1x1 head. The published
            network (``False``) pools before its first skip, so it predicts at half resolution and resizes the
            logits, which blurs structures one or two voxels thick (a cortex-like rim in 3D); the branch adds
            about 240 parameters for one input channel and 1-10% to a 3D training step on a CPU.

    Example::

        >>> net = EGEUNet(spatial_dims=2, in_channels=3, out_channels=1).eval()
        >>> net(torch.randn(1, 3, 256, 192)).shape
        torch.Size([1, 1, 256, 192])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (8, 16, 24, 32, 48, 64),
        bridge: bool = True,
        deep_supervision: bool = True,
        act: str | tuple | None = "gelu",
        norm: str | tuple | None = ("group", {"num_groups": 4}),
        block_norm: str | tuple | None = "channel_layer",
        dropout: str | tuple | float | None = None,
        full_resolution: bool = False,
    ) -> None:
        super().__init__()
        check_network_arguments(
            spatial_dims,
            in_channels,
            out_channels,
            channels,
            deep_supervision=deep_supervision,
            bridge=bridge,
            full_resolution=full_resolution,
        )
        if len(channels) != 6:
            raise ValueError(f"channels must have 6 stage widths, got {tuple(channels)}.")
        norm_name, norm_args = split_args(norm) if norm is not None else (None, {})
        groups = int(norm_args.get("num_groups", 1)) if str(norm_name).lower() == "group" else 1
        if any(c % groups for c in channels):
            raise ValueError(
                f"every width in channels must be divisible by {groups} (GroupNorm groups), got {tuple(channels)}."
            )
        self.spatial_dims = spatial_dims
        # five 2x poolings: the coarsest level needs at least one voxel
        self._state_size_rule(2**5, in_channels, " (five 2x poolings)")
        self.bridge = bridge
        self.deep_supervision = deep_supervision
        conv = Conv[Conv.CONV, spatial_dims]
        c = list(channels)

        def ghpa(c_in: int, c_out: int) -> GHPA:
            return GHPA(spatial_dims, c_in, c_out, act=act, norm=block_norm)

        def act_drop() -> list[nn.Module]:
            layers = [act_layer(act)]
            if dropout is not None:
                layers.append(get_dropout_layer(dropout))
            return layers

        ops: list[nn.Module] = [
            conv(in_channels, c[0], kernel_size=3, padding=1),
            conv(c[0], c[1], kernel_size=3, padding=1),
            conv(c[1], c[2], kernel_size=3, padding=1),
            ghpa(c[2], c[3]),
            ghpa(c[3], c[4]),
        ]
        # each of the first five stages: op -> norm -> 2x max-pool -> act (-> dropout)
        self.encoders = nn.ModuleList(
            nn.Sequential(
                op,
                norm_layer(norm, spatial_dims, width),
                MaxPool2x(),
                *act_drop(),
            )
            for op, width in zip(ops, c[:5])
        )
        self.bottom = ghpa(c[4], c[5])
        self.bottom_act = nn.Sequential(*act_drop())

        mask_channels = out_channels if deep_supervision else 0
        self.decoders = nn.ModuleList()
        for level in reversed(range(5)):  # level 4 (coarsest skip) up to level 0
            op = ghpa(c[level + 1], c[level]) if level >= 2 else conv(c[level + 1], c[level], 3, padding=1)
            self.decoders.append(
                _DecoderStage(
                    op=op,
                    norm=norm_layer(norm, spatial_dims, c[level]),
                    act=nn.Sequential(*act_drop()),
                    side_head=UnetOutBlock(spatial_dims, c[level], out_channels) if deep_supervision else None,
                    bridge=GAB(spatial_dims, c[level + 1], c[level], mask_channels, norm=block_norm)
                    if bridge
                    else None,
                )
            )
        self.final = UnetOutBlock(spatial_dims, c[0], out_channels)
        self.full_resolution = (
            _FullResolutionBranch(
                conv(in_channels, c[0], kernel_size=3, padding=1),
                norm_layer(norm, spatial_dims, c[0]),
                nn.Sequential(*act_drop()),
            )
            if full_resolution
            else None
        )
        self.apply(_init_weights)
        accurate_group_norms(self)
        self._state_norm_rules(2**5)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:  # noqa: UP006,UP007
        inputs = x
        size = x.shape[2:]
        problem = self._shape_problem(list(x.shape))
        if problem:
            raise ValueError(problem)

        # 2D inference on CPU: channels-last memory makes the depthwise convolutions and the channel LayerNorms
        # cheaper (10-25% in all); training keeps the default layout, whose backward kernels are faster
        # (not while tracing: torch.jit.trace checks its graph by a second run without autograd)
        channels_last = (
            self.spatial_dims == 2
            and not self.training
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()
            and x.device.type == "cpu"
        )
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        skips: List[torch.Tensor] = []  # noqa: UP006
        for k, encoder in enumerate(self.encoders):
            if torch.jit.is_scripting():
                x = encoder(x)
            else:
                x = _encoder_stage(encoder, x, first=k == 0)
            skips.append(x)
        x = self.bottom_act(self.bottom(x))

        bridge_in = x
        sides: List[torch.Tensor] = []  # noqa: UP006
        for k, decoder in enumerate(self.decoders):
            x, bridge_in, side = decoder(x, skips[4 - k], bridge_in)
            if side is not None:
                sides.append(side)
        if self.full_resolution is not None:
            x = self.full_resolution(x, inputs)
        if torch.jit.is_scripting():
            out = self.final(x)
        else:
            out = _pointwise_head(self.final, x)
        if self.full_resolution is None:
            out = resize_to(out, size)
        if channels_last:
            out = out.contiguous()

        if self.training and self.deep_supervision:
            return [out] + [resize_to(side, size) for side in sides[::-1]]
        return out


class _FullResolutionBranch(nn.Module):
    """The input's own features (conv -> norm) added to the last decoder stage resized to the input, then act."""

    def __init__(self, conv: nn.Module, norm: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.act = act

    def forward(self, decoded: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.act(resize_to(decoded, inputs.shape[2:]) + self.norm(self.conv(inputs)))


class _DecoderStage(nn.Module):
    """One EGE-UNet decoder stage: op -> norm -> resize to the skip -> act (-> dropout), then side head and bridge."""

    def __init__(
        self, op: nn.Module, norm: nn.Module, act: nn.Module, side_head: nn.Module | None, bridge: nn.Module | None
    ) -> None:
        super().__init__()
        self.op = op
        self.norm = norm
        self.act = act
        self.side_head = side_head
        self.bridge = bridge

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor, bridge_in: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:  # noqa: UP006,UP007
        x = self.act(resize_to(self.norm(self.op(x)), skip.shape[2:]))
        side: Optional[torch.Tensor] = None  # noqa: UP007
        if self.side_head is not None:
            if torch.jit.is_scripting():
                side = self.side_head(x)
            else:
                side = _pointwise_head(self.side_head, x)
        if self.bridge is not None:
            # the bridge output replaces the skip and feeds the bridge of the next, finer stage
            skip = self.bridge(bridge_in, skip, side)
            bridge_in = skip
        return x + skip, bridge_in, side


def _encoder_stage(stage: nn.Sequential, x: torch.Tensor, first: bool) -> torch.Tensor:
    """``stage(x)`` for an encoder stage (op -> GroupNorm -> 2x max-pool -> act ...), in ONNX exports in this form.

    The norm's scale and shift are per channel, so they commute with the max-pooling (a max over the window of
    ``w * y + b`` is ``w * max(y) + b``, or ``w * min(y) + b`` for ``w < 0``): the export normalises without them,
    pools, then scales and shifts the pooled tensor, a quarter of the size. Channels with a negative scale are
    negated before the pooling. In the first 2D stage a 3x3 convolution with even input sizes is exported as a
    stride-2 4x4 convolution giving the 3x3 one at the four positions of each pooling window as channels
    (channel ``c * 4 + position``), so that the pooling is a maximum over those channels and the convolution's
    output has four times the channels at a quarter of the size (EGE-UNet's 3 -> 8 channels: 32 channels, which
    ONNX Runtime's blocked-layout convolutions take without padding them to 16); that export takes even sizes
    only. Equal to ``stage(x)`` up to float32 rounding; any other stage is exported as it is.
    """
    op, norm, pool = stage[0], stage[1], stage[2]
    if not torch.onnx.is_in_onnx_export() or not isinstance(norm, nn.GroupNorm) or not isinstance(pool, MaxPool2x):
        return stage(x)
    phases = (
        first
        and isinstance(op, nn.Conv2d)
        and op.kernel_size == (3, 3)
        and op.stride == (1, 1)
        and op.padding == (1, 1)
        and op.dilation == (1, 1)
        and op.groups == 1
        and op.padding_mode == "zeros"
        and all(int(s) % 2 == 0 for s in x.shape[2:])
    )
    shape = [1, -1] + [1] * (x.dim() - 2)
    if phases:
        # the form holds for even sizes only, and this trace decided on this input's: an export whose spatial axes
        # are declared free fails on an odd size here (its halves do not fill it) instead of normalising over the
        # wrong positions
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // 2, 2, w // 2, 2).reshape(n, c, h, w)
        # (out, position, in, 4, 4): the 3x3 kernel at offset (py, px) of a 4x4 one, for position py * 2 + px
        weight = op.weight.new_zeros([op.out_channels, 4, op.in_channels, 4, 4])
        for py in (0, 1):
            for px in (0, 1):
                weight[:, py * 2 + px, :, py : py + 3, px : px + 3] = op.weight
        weight = weight.flatten(0, 1)
        bias = op.bias.repeat_interleave(4) if op.bias is not None else None
        y = _group_normalised(F.conv2d(x, weight, bias, stride=2, padding=1), norm.num_groups, norm.eps)
        if norm.weight is not None and _any_negative(norm.weight):
            y = y * _signs(norm.weight).repeat_interleave(4).view(shape)
        y = y.reshape([y.shape[0], op.out_channels, 4] + list(y.shape[2:])).amax(2)
    else:
        y = _group_normalised(op(x), norm.num_groups, norm.eps)
        if norm.weight is not None and _any_negative(norm.weight):
            y = y * _signs(norm.weight).view(shape)
        y = pool(y)
    if norm.weight is not None:
        y = y * norm.weight.abs().view(shape)
    if norm.bias is not None:
        y = y + norm.bias.view(shape)
    return stage[3:](y)


def _group_normalised(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """``F.group_norm(x, groups, None, None, eps)``, in dynamo-based ONNX exports as one InstanceNormalization.

    That exporter writes a group norm without scale and shift as an InstanceNormalization followed by a
    multiplication by ones and an addition of zeros per channel, two passes over the full-size tensor that ONNX
    Runtime keeps (6-7% of EGE-UNet's time at 256x256). The TorchScript-based exporter writes neither, and cannot
    export an instance norm whose channels it cannot tell, as with free axes.
    """
    if _tracing_for_export():
        return F.instance_norm(x.reshape(x.shape[0], groups, -1), eps=eps).reshape(x.shape)
    return F.group_norm(x, groups, None, None, eps)


def _tracing_for_export() -> bool:
    # torch.export, which the dynamo-based exporter runs (torch.compiler.is_exporting is newer than the oldest torch
    # this package takes)
    return torch.compiler.is_compiling() or getattr(torch.compiler, "is_exporting", lambda: False)()


def _any_negative(weight: torch.Tensor) -> bool:
    # the TorchScript-based exporter reads the values (the graph then has no sign flips when none is needed);
    # torch.export does not let values decide the graph: flips stay
    if _tracing_for_export():
        return True
    return bool((weight.detach() < 0).any())


def _signs(weight: torch.Tensor) -> torch.Tensor:
    # -1 for negative scales, else 1
    return torch.where(weight < 0, -torch.ones_like(weight), torch.ones_like(weight))


def _pointwise_head(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``head(x)``; in ONNX exports a 1x1-convolution head (``UnetOutBlock``) is a MatMul.

    ONNX Runtime's blocked-layout pass pads a convolution's output channels to its block (16 channels with
    AVX-512), which for a one-channel head means 16 channels computed, resized to the input and reordered; a
    MatMul keeps one channel.
    """
    conv = getattr(getattr(head, "conv", None), "conv", None)
    if not torch.onnx.is_in_onnx_export() or conv is None or not is_pointwise_conv(conv):
        return head(x)
    out = torch.matmul(conv.weight.flatten(1), x.flatten(2))
    if conv.bias is not None:
        out = out + conv.bias.unsqueeze(-1)
    return out.reshape([x.shape[0], conv.out_channels] + list(x.shape[2:]))


def _init_weights(module: nn.Module) -> None:
    """He-normal (fan-out) initialisation of the published EGE-UNet."""
    if isinstance(module, nn.Conv1d):
        fan_out = module.kernel_size[0] * module.out_channels
        module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
    elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
        fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
        module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            module.bias.data.zero_()


EGEUnet = EGEUNet


# the published GHPA block's parts -> this package's (its x-y map, then the maps over channel and one axis)
_PUBLISHED_GHPA = {
    "params_xy": "params_space",
    "conv_xy": "conv_space",
    "params_zx": "axis_maps.0.params",
    "conv_zx": "axis_maps.0.conv",
    "params_zy": "axis_maps.1.params",
    "conv_zy": "axis_maps.1.conv",
    "dw": "conv_local",
    "norm1": "norm_in",
    "norm2": "norm_out",
    "ldw": "mix",
}


def _published_key(key: str) -> str | None:
    """This package's EGEUNet key for a key of the published network, ``None`` for one it does not have."""

    def ghpa(rest: str) -> str:
        part, _, tail = rest.partition(".")
        return _PUBLISHED_GHPA[part] + (f".{tail}" if tail else "")

    try:
        if m := re.fullmatch(r"encoder([1-6])\.0\.(.+)", key):
            stage, rest = int(m[1]), m[2]
            if stage <= 3:
                return f"encoders.{stage - 1}.0.{rest}"
            return f"encoders.{stage - 1}.0.{ghpa(rest)}" if stage <= 5 else f"bottom.{ghpa(rest)}"
        if m := re.fullmatch(r"ebn([1-5])\.(.+)", key):
            return f"encoders.{int(m[1]) - 1}.1.{m[2]}"
        if m := re.fullmatch(r"decoder([1-5])\.0\.(.+)", key):
            stage, rest = int(m[1]), m[2]
            return f"decoders.{stage - 1}.op.{ghpa(rest) if stage <= 3 else rest}"
        if m := re.fullmatch(r"dbn([1-5])\.(.+)", key):
            return f"decoders.{int(m[1]) - 1}.norm.{m[2]}"
        if m := re.fullmatch(r"gt_conv([1-5])\.0\.(.+)", key):
            return f"decoders.{int(m[1]) - 1}.side_head.conv.conv.{m[2]}"
        if m := re.fullmatch(r"GAB([1-5])\.(.+)", key):
            # GAB1 bridges the finest skip, which the last decoder stage takes
            rest = re.sub(r"^g([0-3])\.", r"groups.\1.", m[2]).replace("tail_conv.", "tail.")
            return f"decoders.{5 - int(m[1])}.bridge.{rest}"
        if m := re.fullmatch(r"final\.(.+)", key):
            return f"final.conv.conv.{m[1]}"
    except KeyError:  # a GHPA part the published block does not have
        return None
    return None


def published_egeunet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights of the published EGE-UNet (``models/egeunet.py`` of the authors' repository, e.g. their ISIC
    2018 checkpoint) as a state dict of this package's :class:`EGEUNet` with ``spatial_dims=2`` and the same
    ``channels`` (``c_list``), ``bridge`` and ``deep_supervision`` (``gt_ds``).

    The network then gives the published outputs as logits (the published code returns their sigmoid): equal in
    float64 to rounding (about 1e-12), in float32 within the rounding of other kernels. A ``module.`` prefix (weights
    saved from ``DataParallel``) is removed.

    Args:
        state_dict: the published network's state dict (``torch.load`` of its checkpoint).

    Raises:
        ValueError: a key that the published EGE-UNet does not have, naming it.

    Example::

        >>> published = torch.load("best.pth", map_location="cpu", weights_only=True)  # doctest: +SKIP
        >>> net = EGEUNet(spatial_dims=2, in_channels=3, out_channels=1)
        >>> net.load_state_dict(published_egeunet_state_dict(published))  # doctest: +SKIP
        <All keys matched successfully>
    """
    mapped = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        ours = _published_key(key)
        if ours is None:
            raise ValueError(f"{key!r} is not a weight of the published EGE-UNet (models/egeunet.py).")
        if ".axis_maps." in ours and ours.endswith(".params"):
            value = value.flatten(0, 1)  # the published axis maps are (1, 1, channels, size); here (1, channels, size)
        mapped[ours] = value
    return mapped
