"""Transforms of monai_unets, as array / dictionary pairs in MONAI style."""

from __future__ import annotations

from .label import BinarizeLabel, BinarizeLabeld, BinarizeLabelD, BinarizeLabelDict

__all__ = ["BinarizeLabel", "BinarizeLabeld", "BinarizeLabelD", "BinarizeLabelDict"]
