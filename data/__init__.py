"""Data pipeline helpers of monai_unets: case lists and fault-tolerant datasets."""

from __future__ import annotations

from .datalist import IMAGE_SUFFIXES, list_cases
from .dataset import SkipFailedCasesDataset, describe_error

__all__ = ["IMAGE_SUFFIXES", "SkipFailedCasesDataset", "describe_error", "list_cases"]
