"""Building blocks shared by the networks of monai_unets."""

from __future__ import annotations

from .attention import AttentionGate, SelfAttentionBlock
from .conv_encoder import UNetV2ConvEncoder
from .dilated_conv import DilatedDepthwiseConv3d, dilated_depthwise_conv
from .gab import GAB
from .ghpa import GHPA
from .groupnorm import GroupNorm, accurate_group_norms
from .layernorm import ChannelLayerNorm
from .pvt import PVT_V2_VARIANTS, PVTv2Encoder
from .sdi import SDI, SDIChannelAttention, SDIReduction, SDISkip, SDISpatialAttention

__all__ = [
    "GAB",
    "GHPA",
    "PVT_V2_VARIANTS",
    "SDI",
    "AttentionGate",
    "ChannelLayerNorm",
    "DilatedDepthwiseConv3d",
    "GroupNorm",
    "PVTv2Encoder",
    "SDIChannelAttention",
    "SDIReduction",
    "SDISkip",
    "SDISpatialAttention",
    "SelfAttentionBlock",
    "UNetV2ConvEncoder",
    "accurate_group_norms",
    "dilated_depthwise_conv",
]
