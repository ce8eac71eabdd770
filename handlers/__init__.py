"""Ignite handlers of monai_unets, used by the bundles' workflows."""

from __future__ import annotations

from .case_isolation import CaseIsolationHandler
from .case_metrics import CaseMetricsWriter
from .checkpoint import BestModelSaver, CheckpointError, TrainingCheckpoint, WeightsLoader, load_weights, save_atomic
from .errors import SettingError, check_settings, explain, report_errors
from .gradient_clipping import GradientClipping
from .metrics_saver import AtomicMetricsSaver
from .surface_metrics import SpacedHausdorffDistanceMetric, SpacedSurfaceDiceMetric, voxel_spacing
from .validation import FinalValidationHandler

__all__ = [
    "AtomicMetricsSaver",
    "CaseIsolationHandler",
    "BestModelSaver",
    "CheckpointError",
    "TrainingCheckpoint",
    "WeightsLoader",
    "load_weights",
    "save_atomic",
    "CaseMetricsWriter",
    "FinalValidationHandler",
    "GradientClipping",
    "SettingError",
    "check_settings",
    "explain",
    "report_errors",
    "SpacedHausdorffDistanceMetric",
    "SpacedSurfaceDiceMetric",
    "voxel_spacing",
]
