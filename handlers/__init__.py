"""Ignite handlers of monai_unets, used by the bundles' workflows."""

from __future__ import annotations

from .background import BackgroundPostprocessing
from .case_isolation import CaseIsolationHandler
from .case_metrics import CaseMetricsWriter
from .checkpoint import (
    BestModelSaver,
    CheckpointError,
    TrainingCheckpoint,
    TrainingDivergedError,
    WeightsLoader,
    check_finite_weights,
    hold_training,
    load_weights,
    read_checkpoint,
    release_training,
    run_training,
    save_atomic,
    trained_cases,
    trained_input_size,
    weights_fingerprint,
)
from .errors import SettingError, check_settings, explain, report_errors
from .evaluation_report import EvaluationReport, write_report
from .gradient_clipping import GradientClipping
from .metrics_saver import AtomicMetricsSaver
from .overlap_metrics import EmptyAwareDiceMetric, EmptyAwareMeanIoU
from .overlays import label_map, label_volumes, render_overlay
from .postprocessing import PostprocessingSelector, choose_keep_largest
from .progress import ProgressLogger, format_duration, log_warnings_only
from .surface_metrics import SpacedHausdorffDistanceMetric, SpacedSurfaceDiceMetric, voxel_spacing
from .validation import FinalValidationHandler, TrainingTimeLimit

__all__ = [
    "AtomicMetricsSaver",
    "BackgroundPostprocessing",
    "CaseIsolationHandler",
    "BestModelSaver",
    "CheckpointError",
    "TrainingCheckpoint",
    "TrainingDivergedError",
    "check_finite_weights",
    "WeightsLoader",
    "hold_training",
    "load_weights",
    "read_checkpoint",
    "release_training",
    "run_training",
    "save_atomic",
    "trained_cases",
    "trained_input_size",
    "weights_fingerprint",
    "CaseMetricsWriter",
    "EmptyAwareDiceMetric",
    "EmptyAwareMeanIoU",
    "EvaluationReport",
    "FinalValidationHandler",
    "GradientClipping",
    "SettingError",
    "check_settings",
    "explain",
    "report_errors",
    "PostprocessingSelector",
    "ProgressLogger",
    "SpacedHausdorffDistanceMetric",
    "SpacedSurfaceDiceMetric",
    "TrainingTimeLimit",
    "choose_keep_largest",
    "format_duration",
    "label_map",
    "label_volumes",
    "log_warnings_only",
    "render_overlay",
    "voxel_spacing",
    "write_report",
]
