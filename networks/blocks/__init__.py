"""Building blocks shared by the networks of monai_unets."""

from __future__ import annotations

from .gab import GAB
from .ghpa import GHPA
from .layernorm import ChannelLayerNorm

__all__ = ["GAB", "GHPA", "ChannelLayerNorm"]
