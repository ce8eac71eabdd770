from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai_unets.transforms import BinarizeLabel, BinarizeLabeld


@pytest.mark.parametrize(
    "mask, expected",
    [
        (np.array([[0, 255, 250, 3]], dtype=np.uint8), [[0, 1, 1, 0]]),  # 0/255 with JPEG-like drift
        (np.array([[0, 1, 1, 0]], dtype=np.uint8), [[0, 1, 1, 0]]),  # 0/1
        (np.zeros((1, 4), dtype=np.uint8), [[0, 0, 0, 0]]),  # empty mask stays empty
        (np.full((1, 4), 255, dtype=np.uint8), [[1, 1, 1, 1]]),  # all lesion
    ],
)
def test_auto_threshold(mask, expected):
    out = BinarizeLabel()(mask)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), np.array(expected, dtype=np.float32))


def test_fixed_threshold():
    np.testing.assert_array_equal(BinarizeLabel(threshold=0)(np.array([0, 1, 2])).numpy(), [0, 1, 1])


def test_dict_version_keeps_meta_and_other_keys():
    label = MetaTensor(torch.tensor([[0, 255]]), meta={"filename_or_obj": "mask.png"})
    out = BinarizeLabeld(keys="label")({"label": label, "image": "untouched"})
    assert out["image"] == "untouched"
    assert out["label"].meta["filename_or_obj"] == "mask.png"
    np.testing.assert_array_equal(out["label"].numpy(), [[0, 1]])
