"""Ignite handlers of monai_unets, used by the bundles' workflows."""

from __future__ import annotations

from .case_metrics import CaseMetricsWriter
from .gradient_clipping import GradientClipping

__all__ = ["CaseMetricsWriter", "GradientClipping"]
