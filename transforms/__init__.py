"""Transforms of monai_unets, as array / dictionary pairs in MONAI style."""

from __future__ import annotations

from .intensity import (
    AboveThreshold,
    PlannedNormalize,
    PlannedNormalizeD,
    PlannedNormalized,
    PlannedNormalizeDict,
    ScaleByBitDepth,
    ScaleByBitDepthD,
    ScaleByBitDepthd,
    ScaleByBitDepthDict,
)
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
    KeepLargestComponentD,
    KeepLargestComponentd,
    KeepLargestComponentDict,
    keep_largest_component,
)
from .spatial import ResampleSpacingD, ResampleSpacingd, ResampleSpacingDict, SeparableResample, separable_resample
from .uncertainty import SaveProbabilityMapsD, SaveProbabilityMapsd, SaveProbabilityMapsDict, entropy_map
from .utility import ConcurrentCompose

__all__ = [
    "ConcurrentCompose",
    "ArgmaxLabel",
    "ArgmaxLabeld",
    "ArgmaxLabelD",
    "ArgmaxLabelDict",
    "AboveThreshold",
    "KeepLargestComponentd",
    "KeepLargestComponentD",
    "KeepLargestComponentDict",
    "PlannedNormalize",
    "PlannedNormalized",
    "PlannedNormalizeD",
    "PlannedNormalizeDict",
    "ScaleByBitDepth",
    "ScaleByBitDepthD",
    "ScaleByBitDepthd",
    "ScaleByBitDepthDict",
    "SaveProbabilityMapsd",
    "SaveProbabilityMapsD",
    "SaveProbabilityMapsDict",
    "entropy_map",
    "keep_largest_component",
    "BinarizeLabel",
    "BinarizeLabeld",
    "BinarizeLabelD",
    "BinarizeLabelDict",
    "Image2DReader",
    "ResampleSpacingd",
    "ResampleSpacingD",
    "ResampleSpacingDict",
    "SeparableResample",
    "separable_resample",
    "SaveDicomSeg",
    "SaveDicomSegd",
    "SaveDicomSegD",
    "SaveDicomSegDict",
    "image_pixels",
]
