"""Inferers of monai_unets: test-time augmentation, ensembles and uncertainty scores."""

from __future__ import annotations

from .ensemble import EnsembleInferer, mirror_axes
from .scoring import UncertaintyScoring, uncertainty_score

__all__ = ["EnsembleInferer", "UncertaintyScoring", "mirror_axes", "uncertainty_score"]
