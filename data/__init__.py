"""Data pipeline helpers of monai_unets: case lists and fault-tolerant datasets."""

from __future__ import annotations

from .atomic import atomic_write
from .batch import MultiScaleBatch
from .checks import (
    BadCase,
    CheckCaseD,
    CheckCased,
    CheckCaseDict,
    DataCheckError,
    check_cases,
    find_bad_cases,
    load_datalist,
)
from .datalist import IMAGE_SUFFIXES, list_cases
from .dataset import SkipFailedCasesDataset, describe_error
from .dicom_seg import write_dicom_seg

__all__ = [
    "BadCase",
    "CheckCased",
    "CheckCaseD",
    "CheckCaseDict",
    "DataCheckError",
    "atomic_write",
    "check_cases",
    "find_bad_cases",
    "load_datalist",
    "IMAGE_SUFFIXES",
    "MultiScaleBatch",
    "SkipFailedCasesDataset",
    "describe_error",
    "list_cases",
    "write_dicom_seg",
]
