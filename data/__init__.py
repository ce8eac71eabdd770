"""Data pipeline helpers of monai_unets: case lists and fault-tolerant datasets."""

from __future__ import annotations

from .batch import MultiScaleBatch
from .datalist import IMAGE_SUFFIXES, list_cases
from .dataset import SkipFailedCasesDataset, describe_error
from .dicom_seg import DicomSegError, write_dicom_seg

__all__ = [
    "IMAGE_SUFFIXES",
    "DicomSegError",
    "MultiScaleBatch",
    "SkipFailedCasesDataset",
    "describe_error",
    "list_cases",
    "write_dicom_seg",
]
