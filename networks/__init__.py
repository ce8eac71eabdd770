"""Networks of the U-Net family, their building blocks and losses."""

from __future__ import annotations

from .attention_unet import AttentionGateUNet, AttentionGateUnet
from .blocks import (
    GAB,
    GHPA,
    SDI,
    AttentionGate,
    ChannelLayerNorm,
    DoubleConv,
    PVTv2Encoder,
    SDISkip,
    SelfAttentionBlock,
)
from .classic_unet import ClassicUNet, ClassicUnet
from .egeunet import EGEUNet, EGEUnet
from .losses import DeepSupervisedDiceCELoss
from .runtime import OnnxRuntimeNetwork, select_runtime
from .structure_loss import DeepSupervisedStructureLoss, StructureLoss
from .unetv2 import UNetV2, UnetV2, UNetV2ConvEncoder
from .utils import count_macs, count_parameters

__all__ = [
    "GAB",
    "GHPA",
    "SDI",
    "AttentionGate",
    "AttentionGateUNet",
    "AttentionGateUnet",
    "ChannelLayerNorm",
    "ClassicUNet",
    "ClassicUnet",
    "DeepSupervisedDiceCELoss",
    "DeepSupervisedStructureLoss",
    "DoubleConv",
    "EGEUNet",
    "EGEUnet",
    "OnnxRuntimeNetwork",
    "PVTv2Encoder",
    "SDISkip",
    "SelfAttentionBlock",
    "StructureLoss",
    "UNetV2",
    "UNetV2ConvEncoder",
    "UnetV2",
    "count_macs",
    "count_parameters",
    "select_runtime",
]
