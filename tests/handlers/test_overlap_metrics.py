from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser
from monai.metrics import DiceMetric, MeanIoU
from monai_unets.bundles import bundle_dir, list_bundles
from monai_unets.handlers import EmptyAwareDiceMetric, EmptyAwareMeanIoU


def _one_hot(labels: torch.Tensor, classes: int = 3) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).movedim(-1, 1).float()


def _cases() -> tuple[torch.Tensor, torch.Tensor]:
    """Four cases of a 3-class problem, class 1 right in all; class 2: found, predicted on none, absent, missed."""
    reference = torch.zeros(4, 6, 6, dtype=torch.long)
    reference[:, 1:3, 1:3] = 1
    prediction = reference.clone()
    prediction[0, 5, 5] = reference[0, 5, 5] = 2
    prediction[1, 4, 4] = 2  # a tumour where there is none
    reference[3, 5, 5] = 2  # a missed tumour
    return _one_hot(prediction), _one_hot(reference)


@pytest.mark.parametrize("metric, monai_metric", [(EmptyAwareDiceMetric, DiceMetric), (EmptyAwareMeanIoU, MeanIoU)])
def test_a_class_predicted_where_there_is_none_scores_zero(metric, monai_metric):
    prediction, reference = _cases()
    scores = metric(include_background=False)(prediction, reference)
    expected = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, float("nan")], [1.0, 0.0]])
    torch.testing.assert_close(scores, expected, equal_nan=True)
    # MONAI's own metric leaves the false positive out: the mean would not see it
    assert torch.isnan(monai_metric(include_background=False)(prediction, reference)[1, 1])
    # with the background, its column comes first and is complete in every case
    assert metric(include_background=True)(prediction, reference).shape == (4, 3)


@pytest.mark.parametrize("include_background", [False, True])
def test_label_maps_of_num_classes_score_as_their_one_hot_masks(include_background):
    # MONAI scores a label map (B, 1, ...) of num_classes class by class: a class predicted where the reference has
    # none had been judged by the whole map, which holds class 1, and kept its NaN
    prediction, reference = _cases()
    maps = EmptyAwareDiceMetric(include_background=include_background, num_classes=3)(
        prediction.argmax(1, keepdim=True), reference.argmax(1, keepdim=True)
    )
    masks = EmptyAwareDiceMetric(include_background=include_background)(prediction, reference)
    torch.testing.assert_close(maps, masks, equal_nan=True)
    assert maps[1, -1].item() == 0.0


def test_binary_masks_with_one_channel():
    lesion_free = torch.zeros(2, 1, 8, 8)
    prediction = lesion_free.clone()
    prediction[0, 0, 2:4, 2:4] = 1
    scores = EmptyAwareDiceMetric()(prediction, lesion_free)
    assert scores[0].item() == 0.0 and torch.isnan(scores[1]).item()


@pytest.mark.parametrize("name", list_bundles())
def test_every_bundle_scores_false_positives(name):
    configs = bundle_dir(name) / "configs"
    for files in (["train.yaml"], ["train.yaml", "evaluate.yaml"]):
        parser = ConfigParser()
        parser.read_config([str(configs / f) for f in files])
        for key in ("validate#key_metric#val_mean_dice", "validate#additional_metrics#val_mean_iou"):
            target = parser.get(f"{key}#metric_fn#_target_")
            assert target in ("EmptyAwareDiceMetric", "EmptyAwareMeanIoU"), (name, files, key)
