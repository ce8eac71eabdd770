from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, Spacingd
from monai_unets.transforms import ResampleSpacingd


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(20, 16, 8).astype(np.float32), np.diag([0.8, 0.8, 2.5, 1.0])), path)
    # the way MONAI Label hands a study to a bundle's pre-transforms
    return {"image": str(path), "image_path": str(path)}


def _pipeline(spacing_transform):
    return Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            spacing_transform("image", pixdim=(1.6, 1.6, 2.5)),
        ]
    )


def test_monai_spacingd_fails_on_a_string_entry(study):
    # the upstream failure this transform exists for; if MONAI fixes it, this test says so
    with pytest.raises(RuntimeError):
        _pipeline(Spacingd)(dict(study))


def test_resamples_and_keeps_the_string_entry(study):
    out = _pipeline(ResampleSpacingd)(dict(study))
    assert out["image_path"] == study["image_path"]
    # exactly what MONAI's Spacingd gives when no such entry is in the way
    reference = _pipeline(Spacingd)({"image": study["image"]})["image"]
    assert out["image"].shape == reference.shape
    np.testing.assert_allclose(out["image"].numpy(), reference.numpy())
    np.testing.assert_allclose(out["image"].pixdim[:3], [1.6, 1.6, 2.5])


def test_is_invertible(study):
    pipeline = _pipeline(ResampleSpacingd)
    out = pipeline(dict(study))
    out["pred"] = out["image"].clone()
    restored = Invertd("pred", transform=pipeline, orig_keys="image")(out)
    assert tuple(restored["pred"].shape) == (1, 20, 16, 8)
