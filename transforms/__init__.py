"""Transforms of monai_unets, as array / dictionary pairs in MONAI style."""

from __future__ import annotations

from .io import SaveDicomSeg, SaveDicomSegD, SaveDicomSegd, SaveDicomSegDict
from .label import (
    ArgmaxLabel,
    ArgmaxLabelD,
    ArgmaxLabeld,
    ArgmaxLabelDict,
    BinarizeLabel,
    BinarizeLabelD,
    BinarizeLabeld,
    BinarizeLabelDict,
)
from .spatial import ResampleSpacingD, ResampleSpacingd, ResampleSpacingDict

__all__ = [
    "ArgmaxLabel",
    "ArgmaxLabeld",
    "ArgmaxLabelD",
    "ArgmaxLabelDict",
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
