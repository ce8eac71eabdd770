"""Networks of the U-Net family, their building blocks and losses."""

from __future__ import annotations

from .blocks import GAB, GHPA, ChannelLayerNorm
from .egeunet import EGEUNet, EGEUnet
from .losses import DeepSupervisedDiceCELoss
from .utils import count_macs, count_parameters

__all__ = [
    "GAB",
    "GHPA",
    "ChannelLayerNorm",
    "DeepSupervisedDiceCELoss",
    "EGEUNet",
    "EGEUnet",
    "count_macs",
    "count_parameters",
]
