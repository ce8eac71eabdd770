"""Overlap metrics that count a class predicted where the reference has none."""

from __future__ import annotations

import torch
from monai.metrics import DiceMetric, MeanIoU

from .metric_reduction import NanWithoutValues

__all__ = ["EmptyAwareDiceMetric", "EmptyAwareMeanIoU"]


class _ScoresFalsePositives:
    """Mixin for MONAI's ``DiceMetric`` and ``MeanIoU`` with ``ignore_empty=True``.

    MONAI gives NaN wherever the reference lacks a class, so a class predicted where there is none (a lesion
    found on a lesion-free image, a tumour in a healthy pancreas) dropped out of every mean and cost nothing.
    Here such a case scores 0; NaN remains only where both the prediction and the reference lack the class.
    """

    include_background: bool

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        scores = super()._compute_tensor(y_pred, y)  # type: ignore[misc]
        if y_pred.shape != y.shape:
            raise ValueError(
                f"{type(self).__name__} takes one-hot predictions and references of one shape, got "
                f"{tuple(y_pred.shape)} and {tuple(y.shape)}."
            )
        predicted, present = self._classes_in(y_pred), self._classes_in(y)
        if not self.include_background and predicted.shape[1] > 1:
            predicted, present = predicted[:, 1:], present[:, 1:]
        return torch.where(predicted & ~present, torch.zeros_like(scores), scores)

    def _classes_in(self, masks: torch.Tensor) -> torch.Tensor:
        """Which classes each case holds, (B, C): of one-hot masks (B, C, ...), or of label maps (B, 1, ...) of
        ``num_classes`` classes (DiceMetric's), which MONAI scores class by class."""
        classes = getattr(self, "num_classes", None)
        if classes is not None and masks.shape[1] == 1:
            values = masks.reshape(masks.shape[0], -1)
            return torch.stack([(values == c).any(-1) for c in range(classes)], 1)
        return masks.reshape(*masks.shape[:2], -1).bool().any(-1)


class EmptyAwareDiceMetric(NanWithoutValues, _ScoresFalsePositives, DiceMetric):
    """MONAI's ``DiceMetric`` in which a class predicted where the reference has none scores 0, not NaN.

    NaN (left out of the means) remains where both the prediction and the reference lack the class. The
    arguments are ``DiceMetric``'s; ``ignore_empty`` is always ``True``.

    Args:
        args: ``DiceMetric``'s arguments by position, at most three (``include_background``, ``reduction``,
            ``get_not_nans``): the fourth, ``ignore_empty``, is set here, and a value for it raises a ``TypeError``.
        kwargs: :class:`monai.metrics.DiceMetric`'s arguments by name: ``include_background`` (default ``True``),
            ``reduction`` (default ``"mean"``), ``get_not_nans``, ``num_classes``, ``return_with_label``,
            ``per_component``, ``ignore_index``. ``ignore_empty`` is overridden with ``True``: an empty reference gives
            NaN, or 0 where the class was predicted. Predictions and references are binary masks (B, C, ...), one
            per class, or with ``num_classes`` label maps (B, 1, ...), of one shape; other shapes are refused with a
            ``ValueError``. With ``ignore_index``, a class predicted only in the ignored voxels still scores 0.

    Example::

        >>> reference = torch.zeros(1, 2, 4, 4)
        >>> reference[:, 0] = 1  # background only
        >>> prediction = reference.clone()
        >>> prediction[0, :, 0, 0] = torch.tensor([0.0, 1.0])  # one voxel of the class
        >>> EmptyAwareDiceMetric(include_background=False)(prediction, reference)
        tensor([[0.]])
        >>> EmptyAwareDiceMetric(include_background=False)(reference, reference)
        tensor([[nan]])
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "ignore_empty": True})


class EmptyAwareMeanIoU(NanWithoutValues, _ScoresFalsePositives, MeanIoU):
    """MONAI's ``MeanIoU`` in which a class predicted where the reference has none scores 0, not NaN.

    NaN (left out of the means) remains where both the prediction and the reference lack the class. The
    arguments are ``MeanIoU``'s; ``ignore_empty`` is always ``True``.

    Args:
        args: ``MeanIoU``'s arguments by position, at most three (``include_background``, ``reduction``,
            ``get_not_nans``): the fourth, ``ignore_empty``, is set here, and a value for it raises a ``TypeError``.
        kwargs: :class:`monai.metrics.MeanIoU`'s arguments by name: ``include_background`` (default ``True``),
            ``reduction`` (default ``"mean"``), ``get_not_nans``, ``ignore_index``. ``ignore_empty`` is overridden
            with ``True``: an empty reference gives NaN, or 0 where the class was predicted. Predictions and
            references must be binary masks (B, C, ...), one per class, of one shape; other shapes are refused with a
            ``ValueError``. With ``ignore_index``, a class predicted only in the ignored voxels still scores 0.

    Example::

        >>> reference = torch.zeros(1, 1, 4, 4)
        >>> prediction = torch.zeros(1, 1, 4, 4)
        >>> prediction[0, 0, 0, 0] = 1.0
        >>> EmptyAwareMeanIoU()(prediction, reference)
        tensor([[0.]])
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**kwargs, "ignore_empty": True})
