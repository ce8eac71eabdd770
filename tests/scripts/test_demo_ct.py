from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monai_unets.data.medical_io import MedicalImageReader
from monai_unets.scripts.demo_ct import generate_demo_ct, make_ct_phantom


def test_phantom_has_every_class_and_realistic_hu():
    image, label = make_ct_phantom((40, 36, 20), (1.0, 1.0, 2.5), seed=1)
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    assert image[label == 1].mean() > image[label == 2].mean() > -200  # enhancing organ, hypodense tumour
    assert image.min() < -900  # air around the body


def test_msd_layout_non_ras_nifti_and_dicom_twin(tmp_path):
    path = generate_demo_ct(tmp_path, num_cases=2, num_test=1, shape=(32, 28, 12), spacing=(0.9, 0.8, 2.5), dicom=True)
    dataset = json.loads(path.read_text())
    assert dataset["numTraining"] == 2 and len(dataset["test"]) == 1
    image = nib.load(tmp_path / dataset["training"][0]["image"])
    label = nib.load(tmp_path / dataset["training"][0]["label"])
    np.testing.assert_allclose(image.affine, label.affine)
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")  # not RAS: pipelines must reorient
    np.testing.assert_allclose(nib.affines.voxel_sizes(image.affine), [0.9, 0.8, 2.5])

    load = Compose([LoadImaged("image", reader=MedicalImageReader(), image_only=True), EnsureChannelFirstd("image")])
    nifti = load({"image": str(tmp_path / "imagesTs" / "demo_002.nii.gz")})["image"]
    dicom = load({"image": str(tmp_path / "dicomTs" / "demo_002")})["image"]
    assert nifti.shape == dicom.shape
    torch.testing.assert_close(nifti.affine, dicom.affine, atol=1e-4, rtol=0)
    torch.testing.assert_close(nifti.as_tensor().float(), dicom.as_tensor().float())


def test_mr_phantom_has_a_thin_grey_ribbon_between_white_matter_and_csf():
    from monai_unets.scripts.demo_mr import make_mr_phantom

    image, label = make_mr_phantom((48, 48, 44), seed=3)
    assert sorted(np.unique(label).tolist()) == [0, 1, 2, 3]
    # skull-stripped: zero outside the brain, except partial-volume voxels at its edge
    assert (image[label == 0] == 0).mean() > 0.9
    medians = [np.median(image[label == k]) for k in (1, 2, 3)]
    assert medians[0] < medians[1] < medians[2]
    # grey matter is a ribbon: nearly every grey voxel touches another class within one voxel
    from scipy import ndimage

    grey = label == 2
    interior = ndimage.binary_erosion(grey, iterations=2)
    assert interior.sum() < 0.1 * grey.sum()
