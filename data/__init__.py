"""Data pipeline helpers of monai_unets: case lists, fault-tolerant datasets and atomic outputs."""

from __future__ import annotations

from .atomic import AtomicITKWriter, AtomicNibabelWriter, AtomicPILWriter, atomic_open, atomic_path
from .batch import MultiScaleBatch
from .cases import (
    CACHE_MODES,
    CASE_INDEX_KEY,
    CASE_NAME_KEY,
    FAILURE_KEY,
    CaseDataset,
    cached_dataset,
    case_output_name,
    case_output_names,
    case_output_paths,
    failure_stage,
    gather_items,
    rank_and_world_size,
    shard_items,
)
from .checks import (
    CASE_ID_KEY,
    BadCase,
    CheckCaseD,
    CheckCased,
    CheckCaseDict,
    DataCheckError,
    check_cases,
    find_bad_cases,
    load_datalist,
)
from .datalist import IMAGE_SUFFIXES, list_cases, split_cases
from .dataset import SkipFailedCasesDataset, describe_error
from .dicom_seg import DicomSegError, write_dicom_seg
from .plan import (
    DEFAULT_PLAN,
    PlanMismatchError,
    ensemble_plan,
    find_plan_of,
    load_plan,
    make_plan,
    plan_dataset,
    plan_file_of,
    save_plan,
)

__all__ = [
    "AtomicITKWriter",
    "AtomicNibabelWriter",
    "AtomicPILWriter",
    "CACHE_MODES",
    "CASE_INDEX_KEY",
    "CASE_ID_KEY",
    "CASE_NAME_KEY",
    "CaseDataset",
    "FAILURE_KEY",
    "BadCase",
    "CheckCased",
    "CheckCaseD",
    "CheckCaseDict",
    "DataCheckError",
    "check_cases",
    "find_bad_cases",
    "load_datalist",
    "DEFAULT_PLAN",
    "IMAGE_SUFFIXES",
    "PlanMismatchError",
    "DicomSegError",
    "MultiScaleBatch",
    "SkipFailedCasesDataset",
    "atomic_open",
    "atomic_path",
    "cached_dataset",
    "case_output_name",
    "case_output_names",
    "case_output_paths",
    "describe_error",
    "ensemble_plan",
    "failure_stage",
    "find_plan_of",
    "gather_items",
    "list_cases",
    "rank_and_world_size",
    "shard_items",
    "load_plan",
    "make_plan",
    "plan_dataset",
    "plan_file_of",
    "save_plan",
    "split_cases",
    "write_dicom_seg",
]
