from __future__ import annotations

import warnings

import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.metrics import HausdorffDistanceMetric
from monai_unets.handlers import SpacedHausdorffDistanceMetric, SpacedSurfaceDiceMetric, voxel_spacing


def _pair(spacing=(1.0, 1.0, 2.5)):
    """Two one-hot binary volumes whose boxes differ by 2 slices along the last axis."""
    pred = torch.zeros(1, 2, 10, 10, 12)
    label = torch.zeros(1, 2, 10, 10, 12)
    pred[0, 1, 3:7, 3:7, 3:7] = 1
    label[0, 1, 3:7, 3:7, 3:9] = 1
    pred[0, 0] = 1 - pred[0, 1]
    label[0, 0] = 1 - label[0, 1]
    affine = torch.diag(torch.tensor([*spacing, 1.0]))
    return MetaTensor(pred, affine=affine), MetaTensor(label, affine=affine)


def test_spacing_from_affine():
    _, label = _pair((0.8, 0.7, 2.5))
    assert voxel_spacing(label) == pytest.approx([0.8, 0.7, 2.5])
    assert voxel_spacing(torch.zeros(1, 1, 2, 2)) is None


def test_hausdorff_in_millimetres():
    pred, label = _pair()
    voxels = HausdorffDistanceMetric(include_background=False)(pred, label)
    millimetres = SpacedHausdorffDistanceMetric(include_background=False)(pred, label)
    assert voxels.item() == pytest.approx(2.0)  # two slices
    assert millimetres.item() == pytest.approx(5.0)  # of 2.5 mm


def test_surface_dice_tolerance_in_millimetres():
    pred, label = _pair()
    # a 5 mm shift is inside a 5 mm tolerance but outside a 2 mm one
    assert SpacedSurfaceDiceMetric([5.0], include_background=False)(pred, label).item() == pytest.approx(1.0)
    assert SpacedSurfaceDiceMetric([2.0], include_background=False)(pred, label).item() < 1.0


def test_one_surface_dice_tolerance_is_every_class_s():
    # `--nsd_tolerance_mm 1.0`: every case had failed with "object of type 'float' has no len()"
    pred, label = _pair()
    three = torch.cat([pred, pred[:, 1:]], dim=1), torch.cat([label, label[:, 1:]], dim=1)  # two classes scored
    expected = SpacedSurfaceDiceMetric([2.0, 2.0], include_background=False)(*three)
    torch.testing.assert_close(SpacedSurfaceDiceMetric(2.0, include_background=False)(*three), expected)
    assert SpacedSurfaceDiceMetric(5, include_background=False)(pred, label).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "metric",
    [
        SpacedHausdorffDistanceMetric(include_background=False, percentile=95),
        SpacedSurfaceDiceMetric([2.0], include_background=False),
    ],
)
def test_warnings_name_their_case(metric):
    pred, label = _pair()
    empty = label.clone()
    empty[0, 1], empty[0, 0] = 0, 1
    batch = list_data_collate(
        [{"label": MetaTensor(label[0], affine=label.affine, meta={"case_name": name})} for name in ("ct_1", "ct_2")]
        + [{"label": MetaTensor(empty[0], affine=label.affine, meta={"case_name": "ct_3"})}]
    )["label"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = metric(torch.cat([pred, pred, pred]), batch)
    messages = [str(w.message) for w in caught]
    # only the case without the class is named, once for its empty reference, and MONAI's deprecation of its own
    # argument is not passed on
    assert messages == ["ct_3: the ground truth of class 1 is all 0, this may result in nan/inf distance."]
    # scored case by case as a whole batch would be, each with its own spacing
    assert torch.equal(scores[:2].isnan(), torch.zeros(2, 1, dtype=torch.bool))
    assert scores[0].item() == pytest.approx(metric(pred, label).item())
