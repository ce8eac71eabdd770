"""Surface metrics in millimetres: MONAI's metrics given each case's voxel spacing."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from monai.data import MetaTensor, decollate_batch
from monai.data.utils import affine_to_spacing
from monai.metrics import HausdorffDistanceMetric, SurfaceDiceMetric

from ..data.cases import case_name
from .metric_reduction import NanWithoutValues

__all__ = ["SpacedHausdorffDistanceMetric", "SpacedSurfaceDiceMetric", "voxel_spacing"]


def voxel_spacing(batch: torch.Tensor) -> list[float] | list[list[float]] | None:
    """Voxel spacing (mm) of a batch-first (B, C, *spatial) image from its affine, as MONAI's metrics take it.

    One list of spacings for a single affine, one list per case for a batch of affines, ``None`` when the
    tensor carries no affine.

    Args:
        batch: the image or label batch (B, C, *spatial). A ``MetaTensor`` gives the spacing of its affine's first
            ``len(spatial)`` axes (the length of each column of the affine's rotation and scaling part); any other
            tensor gives ``None``.

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
    """Passes each case's voxel spacing, read from the label's affine, to a MONAI surface metric, and names the
    case in the metric's warnings."""

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if isinstance(y, MetaTensor) and y.is_batch and len(y) > 1:
            # case by case, so that each warning names its own case
            cases = decollate_batch(y, detach=False)
            return torch.cat(
                [self._compute_tensor(y_pred[i : i + 1], case.unsqueeze(0), **kwargs) for i, case in enumerate(cases)]
            )
        kwargs.setdefault("spacing", voxel_spacing(y))
        # MONAI warns of a class missing from a mask without naming the case; Python then shows each message once,
        # so that of all the cases without a tumour only the first was reported, and not by name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scores = super()._compute_tensor(y_pred, y, **kwargs)
        name = case_name(y.meta) if isinstance(y, MetaTensor) else ""
        for warning in caught:
            message = str(warning.message)
            # MONAI's call of its own deprecated argument, which no user of the metric can act on
            if "always_return_as_numpy" in message:
                continue
            warnings.warn(f"{name}: {message}" if name else message, warning.category, stacklevel=2)
        return scores


class SpacedHausdorffDistanceMetric(NanWithoutValues, _SpacingFromAffine, HausdorffDistanceMetric):
    """MONAI's Hausdorff distance computed in millimetres, with each case's spacing read from the label's affine.

    The plain metric measures distances in voxels unless it is called with ``spacing``, which MONAI's metric
    handlers never pass; on anisotropic CT that makes the figures meaningless. Labels without an affine fall
    back to voxel units; a ``spacing`` given to the call itself is used instead. Arguments are those of
    :class:`monai.metrics.HausdorffDistanceMetric`, e.g. ``percentile=95`` for HD95.

    Args:
        include_background: score the first channel too (MONAI's default ``False``).
        distance_metric: ``"euclidean"`` (the default), ``"chessboard"`` or ``"taxicab"``.
        percentile: the percentile of the surface distances reported, 0 to 100 (95 for HD95); ``None``, the default,
            takes the largest (the Hausdorff distance).
        directed: measure only from the prediction to the label, not both ways.
        reduction: how :meth:`aggregate` combines cases and classes (MONAI's ``"mean"``, ``"mean_batch"``, ...).
        get_not_nans: :meth:`aggregate` also returns the number of values that were not NaN.
        ignore_index: a class (its channel in one-hot labels) whose voxels are left out of every class's score;
            ``None``, the default, keeps them all.

    Example::

        >>> metric = SpacedHausdorffDistanceMetric(include_background=False, percentile=95)
    """


class SpacedSurfaceDiceMetric(NanWithoutValues, _SpacingFromAffine, SurfaceDiceMetric):
    """MONAI's normalized surface Dice (NSD) with tolerances in millimetres, using each case's voxel spacing.

    Arguments are those of :class:`monai.metrics.SurfaceDiceMetric`; ``class_thresholds`` are then millimetres.
    Labels without an affine fall back to voxel units, as for :class:`SpacedHausdorffDistanceMetric`.

    Args:
        class_thresholds: the distance in mm within which a boundary voxel counts as matched, finite and >= 0: one
            per class scored (the background left out unless ``include_background``), or one number for every class.
        include_background: score the first channel too (MONAI's default ``False``).
        distance_metric: ``"euclidean"`` (the default), ``"chessboard"`` or ``"taxicab"``.
        reduction: how :meth:`aggregate` combines cases and classes (MONAI's ``"mean"``, ``"mean_batch"``, ...).
        get_not_nans: :meth:`aggregate` also returns the number of values that were not NaN.
        use_subvoxels: measure the boundary with subvoxel precision, as DeepMind's ``surface-distance`` does.
        ignore_index: a class (its channel in one-hot labels) whose voxels are left out of every class's score;
            ``None``, the default, keeps them all.

    Example::

        >>> metric = SpacedSurfaceDiceMetric(class_thresholds=[2.0, 2.0], include_background=False)
    """

    def __init__(self, class_thresholds: float | Sequence[float], *args: Any, **kwargs: Any) -> None:
        # one number: MONAI's metric takes a list of the scored classes' length, known once a case comes
        self.every_class = None
        if isinstance(class_thresholds, (int, float)) and not isinstance(class_thresholds, bool):
            self.every_class = float(class_thresholds)
            class_thresholds = [self.every_class]
        super().__init__(list(class_thresholds), *args, **kwargs)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.every_class is not None:
            self.class_thresholds = [self.every_class] * (y_pred.shape[1] - (0 if self.include_background else 1))
        return super()._compute_tensor(y_pred, y, **kwargs)
