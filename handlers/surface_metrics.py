"""Surface metrics in millimetres: MONAI's metrics given each case's voxel spacing."""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.metrics import HausdorffDistanceMetric, SurfaceDiceMetric

__all__ = ["SpacedHausdorffDistanceMetric", "SpacedSurfaceDiceMetric", "voxel_spacing"]


def voxel_spacing(batch: torch.Tensor) -> list[float] | list[list[float]] | None:
    """Voxel spacing (mm) of a batch-first (B, C, *spatial) image from its affine, as MONAI's metrics take it.

    One list of spacings for a single affine, one list per case for a batch of affines, ``None`` when the
    tensor carries no affine.

    Example::

        >>> voxel_spacing(MetaTensor(torch.zeros(1, 1, 4, 4, 4), affine=torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0]))))
        [0.8..., 0.8..., 2.5]
    """
    if not isinstance(batch, MetaTensor):
        return None
    spatial_dims = batch.ndim - 2
    affine = batch.affine
    if affine.ndim == 2:
        return [float(s) for s in affine_to_spacing(affine, r=spatial_dims)]
    return [[float(s) for s in affine_to_spacing(a, r=spatial_dims)] for a in affine]


class _SpacingFromAffine:
    """Passes each case's voxel spacing, read from the label's affine, to a MONAI surface metric."""

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        kwargs.setdefault("spacing", voxel_spacing(y))
        return super()._compute_tensor(y_pred, y, **kwargs)


class SpacedHausdorffDistanceMetric(_SpacingFromAffine, HausdorffDistanceMetric):
    """MONAI's Hausdorff distance computed in millimetres, with each case's spacing read from the label's affine.

    The plain metric measures distances in voxels unless it is called with ``spacing``, which MONAI's metric
    handlers never pass; on anisotropic CT that makes the figures meaningless. Labels without an affine fall
    back to voxel units. Arguments are those of :class:`monai.metrics.HausdorffDistanceMetric`, e.g.
    ``percentile=95`` for HD95.

    Example::

        >>> metric = SpacedHausdorffDistanceMetric(include_background=False, percentile=95)
    """


class SpacedSurfaceDiceMetric(_SpacingFromAffine, SurfaceDiceMetric):
    """MONAI's normalized surface Dice (NSD) with tolerances in millimetres, using each case's voxel spacing.

    Arguments are those of :class:`monai.metrics.SurfaceDiceMetric`; ``class_thresholds`` are then millimetres.

    Example::

        >>> metric = SpacedSurfaceDiceMetric(class_thresholds=[2.0, 2.0], include_background=False)
    """
