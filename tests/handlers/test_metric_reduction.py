"""The project's metrics reduce to NaN where no case has a value, never to MONAI's 0."""

from __future__ import annotations

import warnings

import pytest
import torch
from monai_unets.handlers import (
    EmptyAwareDiceMetric,
    EmptyAwareMeanIoU,
    SpacedHausdorffDistanceMetric,
    SpacedSurfaceDiceMetric,
)


def _case(found: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot prediction and reference (1, 3, 8, 8, 8): the reference holds class 1 in a cube; the prediction is
    the reference where ``found``, else background only. Class 2 is in neither."""
    reference = torch.zeros(1, 3, 8, 8, 8)
    reference[:, 0] = 1
    reference[0, 0, 2:5, 2:5, 2:5], reference[0, 1, 2:5, 2:5, 2:5] = 0, 1
    prediction = torch.zeros_like(reference)
    prediction[:, 0] = 1
    return (reference.clone() if found else prediction), reference


METRICS = {
    "hd95": lambda: SpacedHausdorffDistanceMetric(include_background=False, percentile=95, reduction="mean_batch"),
    "nsd": lambda: SpacedSurfaceDiceMetric([2.0, 2.0], include_background=False, reduction="mean_batch"),
    "dice": lambda: EmptyAwareDiceMetric(include_background=False, reduction="mean_batch"),
    "iou": lambda: EmptyAwareMeanIoU(include_background=False, reduction="mean_batch"),
}


@pytest.mark.parametrize("name", METRICS)
def test_a_class_no_case_has_a_value_for_reduces_to_nan(name):
    metric = METRICS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's warnings of empty masks
        metric(*_case(found=True))
    scores = metric.aggregate()
    # class 2, in no reference and no prediction: no value, NaN (MONAI's reduction had given 0)
    assert not torch.isnan(scores[0]) and torch.isnan(scores[1])
    metric.get_not_nans = True
    scores, counts = metric.aggregate()
    assert torch.isnan(scores[1]) and counts.tolist() == [1, 0]


def test_a_model_that_found_nothing_has_no_hd95_not_0_mm():
    # a model that found nothing on any case had an HD95 of 0 mm, perfect boundaries, in metrics.csv and the log
    metric = METRICS["hd95"]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric(*_case(found=False))
        metric(*_case(found=False))
    assert torch.isnan(metric.aggregate()).all()
