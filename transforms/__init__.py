"""Transforms of monai_unets, as array / dictionary pairs in MONAI style."""

from __future__ import annotations

from .io import Image2DReader, SaveDicomSeg, SaveDicomSegD, SaveDicomSegd, SaveDicomSegDict, image_pixels
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
    "Image2DReader",
    "ResampleSpacingd",
    "ResampleSpacingD",
    "ResampleSpacingDict",
    "SaveDicomSeg",
    "SaveDicomSegd",
    "SaveDicomSegD",
    "SaveDicomSegDict",
    "image_pixels",
]
