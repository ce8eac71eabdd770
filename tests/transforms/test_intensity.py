from __future__ import annotations

import pytest
import torch
from monai_unets.transforms import AboveThreshold, PlannedNormalized


def test_ct_clips_then_zscores_with_the_plan_statistics():
    norm = PlannedNormalized("image", {"scheme": "ct", "clip": [-100.0, 200.0], "mean": 50.0, "std": 25.0})
    out = norm({"image": torch.tensor([[-1000.0, 0.0, 50.0, 1000.0]])})["image"]
    torch.testing.assert_close(out, torch.tensor([[-6.0, -2.0, 0.0, 6.0]]))


def test_mr_zscores_each_image_on_its_nonzero_voxels():
    norm = PlannedNormalized("image", {"scheme": "zscore_nonzero"})
    for scale in (1.0, 300.0):
        out = norm({"image": torch.tensor([[0.0, 1.0, 3.0, 0.0]]) * scale})["image"]
        torch.testing.assert_close(out, torch.tensor([[0.0, -1.0, 1.0, 0.0]]))


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="scheme"):
        PlannedNormalized("image", {"scheme": "minmax"})


def test_above_threshold():
    assert AboveThreshold(-500)(torch.tensor([-1000.0, -400.0])).tolist() == [False, True]
