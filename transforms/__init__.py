"""Transforms of monai_unets, as array / dictionary pairs in MONAI style."""

from __future__ import annotations

from .io import SaveDicomSeg, SaveDicomSegd, SaveDicomSegD, SaveDicomSegDict
from .label import BinarizeLabel, BinarizeLabeld, BinarizeLabelD, BinarizeLabelDict
from .spatial import ResampleSpacingd, ResampleSpacingD, ResampleSpacingDict

__all__ = [
    "BinarizeLabel",
    "BinarizeLabeld",
    "BinarizeLabelD",
    "BinarizeLabelDict",
    "ResampleSpacingd",
    "ResampleSpacingD",
    "ResampleSpacingDict",
    "SaveDicomSeg",
    "SaveDicomSegd",
    "SaveDicomSegD",
    "SaveDicomSegDict",
]
