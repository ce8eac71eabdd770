"""Data checks: the pre-flight of training over groups of cases, NaN replacement, datalist paths."""

from __future__ import annotations

import json
import logging
import os
import re
import stat

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monai_unets.data import (
    CaseDataset,
    CheckCased,
    DataCheckError,
    absent_classes,
    atomic_open,
    check_cases,
    load_datalist,
    scan_cases,
)
from monai_unets.transforms import BinarizeLabeld
from PIL import Image

KEYS = ["image", "label"]


def _case(root, name, label_values=(0, 1)):
    image, label = np.arange(256, dtype=np.float32).reshape(8, 8, 4), np.zeros((8, 8, 4), np.uint8)
    for i, v in enumerate(label_values):
        label[i] = v
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / f"{name}_label.nii.gz"))
    return {"image": str(root / f"{name}.nii.gz"), "label": str(root / f"{name}_label.nii.gz")}


def _loading(num_classes=2):
    return [LoadImaged(KEYS, image_only=True), EnsureChannelFirstd(KEYS), CheckCased(KEYS, 3, 1, num_classes)]


def test_every_bad_case_is_listed_before_the_line_that_says_what_to_do(tmp_path):
    good = [_case(tmp_path, "a"), _case(tmp_path, "b")]
    bad = [_case(tmp_path, "c", (0, 4)), {"image": str(tmp_path / "gone.nii.gz"), "label": good[0]["label"]}]
    with pytest.raises(DataCheckError) as raised:
        check_cases([good + bad[:1], bad[1:]], _loading())
    lines = str(raised.value).splitlines()
    assert lines[0].strip().startswith(bad[0]["label"]) and "label values 4" in lines[0]
    assert lines[1].strip() == f"{tmp_path / 'gone.nii.gz'}: image file does not exist."
    assert lines[-1].startswith("2 of 4 cases cannot be used (listed above)") and "bad_case_policy" in lines[-1]


def test_skip_drops_each_bad_case_from_its_own_group_and_logs_it(tmp_path, caplog):
    train = [_case(tmp_path, "a"), _case(tmp_path, "b", (0, 9)), _case(tmp_path, "c")]
    val = [_case(tmp_path, "d"), _case(tmp_path, "e", (0, 9))]
    with caplog.at_level(logging.WARNING):
        kept = check_cases([train, val], _loading(), policy="skip", num_workers=2)
    assert kept == [[train[0], train[2]], [val[0]]]
    assert f"skipped {train[1]['label']}" in caplog.text and f"skipped {val[1]['label']}" in caplog.text


def test_a_case_of_one_file_per_channel_names_its_files_and_not_a_4d_file(tmp_path):
    case = _case(tmp_path, "a")
    second = str(tmp_path / "a_t2.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), second)
    case["image"] = [case["image"], second]
    [(index, problem)] = scan_cases([case], _loading()).bad
    assert problem.file == f"{case['image'][0]}, {second}"
    assert (
        problem.problem.startswith("a case of 2 image files, one per channel") and "takes 1 channel" in problem.problem
    )
    assert "4D file" not in problem.problem


def _second_channel(root, name, array, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(array, affine), str(root / name))
    return str(root / name)


def test_a_case_of_one_file_per_channel_names_the_file_at_fault(tmp_path):
    # the case's files had been named all together, or under the first one, whichever was at fault
    case = _case(tmp_path, "a")
    volume = np.zeros((8, 8, 4), np.float32)
    truncated = _second_channel(tmp_path, "truncated.nii.gz", volume)
    with open(truncated, "r+b") as f:
        f.truncate(60)
    nan = volume.copy()
    nan[1, 2, 3] = np.nan
    shifted = np.eye(4)
    shifted[0, 3] = 50.0
    files = {
        "truncated": truncated,
        "nan": _second_channel(tmp_path, "nan.nii.gz", nan),
        "shifted": _second_channel(tmp_path, "shifted.nii.gz", volume, shifted),
    }
    two_channels = [LoadImaged(KEYS, image_only=True), EnsureChannelFirstd(KEYS), CheckCased(KEYS, 3, 2, 2)]
    cases = [{**case, "image": [case["image"], second]} for second in files.values()]
    problems = [problem for _, problem in scan_cases(cases, two_channels).bad]
    assert problems[0].file == files["truncated"] and problems[0].problem.startswith("cannot read the image file: ")
    assert problems[1].file == files["nan"] and problems[1].problem.startswith("has 1 NaN and 0 infinite voxels")
    # each file reads alone, but they do not make one image: the fault is the case's
    assert problems[2].file == f"{case['image']}, {files['shifted']}"
    assert problems[2].problem.startswith("the image files do not make one image: ")
    # MONAI's message prints both affines over eight lines: they had been cut after the first row of the first
    assert problems[2].problem.endswith(
        "Got [[ 1. 0. 0. 50.] [ 0. 1. 0. 0.] [ 0. 0. 1. 0.] [ 0. 0. 0. 1.]] and [[1. 0. 0. 0.] [0. 1. 0. 0.] "
        "[0. 0. 1. 0.] [0. 0. 0. 1.]]."
    )
    # the bundle's own reading (one channel): the unreadable file is named, not the case's first
    [(_, problem)] = scan_cases(cases[:1], _loading()).bad
    assert problem.file == files["truncated"]


def test_nan_replaced_in_a_case_of_one_file_per_channel_names_the_files_place(tmp_path, caplog):
    # the image knows its first file only: the warning had named that file for NaN voxels of another
    case = _case(tmp_path, "a")
    nan = np.zeros((8, 8, 4), np.float32)
    nan[1, 2, 3] = np.nan
    case["image"] = [case["image"], _second_channel(tmp_path, "nan.nii.gz", nan)]
    loading = [LoadImaged(KEYS, image_only=True), EnsureChannelFirstd(KEYS), CheckCased(KEYS, 3, 2, 2, "replace")]
    with caplog.at_level(logging.WARNING):
        assert scan_cases([case], loading).bad == []
    assert f"image file 2 of 2 of the case of {case['image'][0]} (one file per channel): replaced 1 NaN" in caplog.text


def _as_rgb(ds, frames: int = 1) -> None:
    """``ds`` made a colour rendering of its scan (RGB, black), as some exports hold; ITK reads it."""
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(ds.Rows * ds.Columns * 3 * frames)
    # colour has no rescale to modality values
    for group in [*ds.get("SharedFunctionalGroupsSequence", []), *ds.get("PerFrameFunctionalGroupsSequence", [])]:
        group.pop("PixelValueTransformationSequence", None)
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        ds.pop(keyword, None)


def test_a_colour_dicom_is_named_as_such_and_not_a_4d_file(tmp_path):
    import pydicom
    from monai_unets.data.medical_io import VALUES_PER_VOXEL, MedicalImageReader
    from monai_unets.scripts.demo_ct import write_dicom_series

    from tests.geometry import write_enhanced_ct

    folder = write_dicom_series(np.zeros((6, 5, 4), np.int16), tmp_path / "rgb", (0.8, 0.8, 2.0), (0, 0, 0)).folder
    multiframe = write_enhanced_ct(folder, tmp_path / "enhanced.dcm")
    ds = pydicom.dcmread(multiframe)
    _as_rgb(ds, frames=4)
    ds.save_as(multiframe)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        _as_rgb(ds)
        ds.save_as(path)
    # the series, one of its files alone, the multi-frame file; and with ITK's reversed axes, which the series
    # reader leaves to ITK
    for image in (folder, min(folder.iterdir()), multiframe):
        for reader in (MedicalImageReader(), MedicalImageReader(itk_kwargs={"reverse_indexing": True})):
            load = Compose([LoadImaged("image", reader=reader, image_only=True), EnsureChannelFirstd("image")])
            loaded = load({"image": str(image)})
            # the checks tell colour from several volumes by the values per voxel, in all formats
            assert loaded["image"].meta[VALUES_PER_VOXEL] == 3
            with pytest.raises(DataCheckError, match=r"is a colour DICOM image \(RGB: 3 samples per pixel") as raised:
                CheckCased(["image"], spatial_dims=3, in_channels=1)(loaded)
            assert "4D file" not in str(raised.value)
    # a palette colour file holds one sample per pixel, which ITK gives as the colours of its palette
    ds = pydicom.dcmread(min(folder.iterdir()))
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "PALETTE COLOR"
    ds.PixelData = bytes(ds.Rows * ds.Columns)
    for offset in range(3):  # red, green and blue: 256 entries of 16 bits, a grey ramp
        ds.add_new(0x00281101 + offset, "US", [256, 0, 16])
        ds.add_new(0x00281201 + offset, "OW", np.arange(256, dtype=np.uint16).tobytes())
    ds.save_as(tmp_path / "palette.dcm")
    load = Compose([LoadImaged("image", reader=MedicalImageReader(), image_only=True), EnsureChannelFirstd("image")])
    with pytest.raises(DataCheckError, match=r"is a colour DICOM image \(PALETTE COLOR: 3 samples per pixel"):
        CheckCased(["image"], spatial_dims=3, in_channels=1)(load({"image": str(tmp_path / "palette.dcm")}))


def test_a_file_of_several_values_per_voxel_is_named_as_such_and_a_4d_file_as_4d(tmp_path):
    import SimpleITK as sitk
    from monai_unets.data.medical_io import MedicalImageReader

    grey = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16))
    sitk.WriteImage(sitk.Compose([grey, grey, grey]), str(tmp_path / "vector.nrrd"))
    rgb = np.zeros((6, 5, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(tmp_path / "rgb.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 3), np.float32), np.eye(4)), str(tmp_path / "4d.nii.gz"))
    load = Compose([LoadImaged("image", reader=MedicalImageReader(), image_only=True), EnsureChannelFirstd("image")])
    check = CheckCased(["image"], spatial_dims=3, in_channels=1)
    for name in ("vector.nrrd", "rgb.nii.gz"):
        # a 4D file of several volumes, to be split, they are not
        with pytest.raises(DataCheckError, match=r"holds 3 values per voxel \(colour or vector components\)") as raised:
            check(load({"image": str(tmp_path / name)}))
        assert "4D file" not in str(raised.value)
    with pytest.raises(DataCheckError, match="A 4D file .* must be split into single volumes") as raised:
        check(load({"image": str(tmp_path / "4d.nii.gz")}))
    # or, MR sequences of one case, planned: told only to split them, a user had lost their channels
    assert str(raised.value).endswith(
        "for data of several co-registered channels (MR sequences), plan the dataset, `monai-unets plan --dataset-dir "
        "<dataset>`, which gives the bundle its channels, and train on it: weights take the channels they were trained "
        "with."
    )


def test_nan_policy_replace_uses_the_finite_extremes(caplog):
    image = MetaTensor(torch.tensor([[[1.0, float("nan")], [float("inf"), -float("inf")], [5.0, -2.0]]]))
    out = CheckCased(["image"], spatial_dims=2, nan_policy="replace")({"image": image})["image"]
    torch.testing.assert_close(out, torch.tensor([[[1.0, -2.0], [5.0, -2.0], [5.0, -2.0]]]))
    assert "replaced 1 NaN and 2 infinite voxels (NaN by -2, infinities by 5/-2)" in caplog.text
    with pytest.raises(DataCheckError, match="1 NaN and 2 infinite voxels"):
        CheckCased(["image"], spatial_dims=2)({"image": image})
    # a grey image repeated into RGB: each bad pixel counts once, not once per channel
    rgb = MetaTensor(image.as_tensor().repeat(3, 1, 1))
    with pytest.raises(DataCheckError, match="1 NaN and 2 infinite voxels"):
        CheckCased(["image"], spatial_dims=2, in_channels=3)({"image": rgb})


@pytest.mark.parametrize(
    "values, finite",
    [
        ([3e38, 3e38, 1.0, 2.0], True),  # finite, though their float32 sum overflows
        ([1.0, float("inf"), float("-inf"), 2.0], False),  # the infinities' sum is NaN
        ([1.0, float("inf"), 2.0, 3.0], False),
        ([0.0, 0.0, float("nan"), 1.0], False),
    ],
)
def test_the_finite_check_takes_every_value(values, finite):
    image = MetaTensor(torch.tensor(values, dtype=torch.float32).reshape(1, 2, 2))
    check = CheckCased(["image"], spatial_dims=2)
    if finite:
        assert check({"image": image})["image"] is image
    else:
        with pytest.raises(DataCheckError, match="NaN"):
            check({"image": image})


def test_a_float64_value_beyond_float32_s_range_counts_as_infinite():
    # inference keeps the stored type up to this check and casts to float32 after it: the value became infinite there
    # and spread NaN through the resampling, and the case came out as an empty label map
    image = MetaTensor(torch.tensor([[[1.0, 1e39], [2.0, 3.0]]], dtype=torch.float64))
    with pytest.raises(DataCheckError, match="0 NaN and 1 infinite voxels"):
        CheckCased(["image"], spatial_dims=2)({"image": image})


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_a_complex_valued_image_is_refused_naming_it(tmp_path, suffix):
    # its imaginary part was dropped without a word as it was cast to float, and NaN in it escaped the finite check
    from monai.transforms import LoadImage
    from monai_unets.data.medical_io import MedicalImageReader

    values = np.full((4, 5, 6), 1 + 2j, np.complex64)
    path = tmp_path / f"raw{suffix}"
    if suffix == ".nii.gz":
        nib.save(nib.Nifti1Image(values, np.eye(4), dtype=np.complex64), path)
    else:
        import SimpleITK as sitk

        sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    with pytest.raises(Exception) as raised:
        LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)(str(path))
    error = raised.value
    while error.__cause__ is not None:
        error = error.__cause__
    assert re.fullmatch(
        rf"{re.escape(str(path))}: holds complex values \(complex64\); .* real-valued image\.", str(error)
    )


def test_a_label_on_the_image_grid_with_valid_classes_passes_unchanged(tmp_path):
    case = _case(tmp_path, "a", (0, 1, 2))
    loaded = EnsureChannelFirstd(KEYS)(LoadImaged(KEYS, image_only=True)(case))
    checked = CheckCased(KEYS, 3, 1, num_classes=3)(loaded)
    assert checked["image"] is loaded["image"] and checked["label"] is loaded["label"]


def test_a_label_of_the_image_grid_stored_in_another_voxel_order_is_taken_in_the_image_order(tmp_path):
    # the image stored L-P-S with anisotropic voxels; the label as nibabel.as_closest_canonical saves it (R-A-S):
    # the same voxel centres, axes reversed
    image_affine = np.array([[-0.8, 0, 0, 30.0], [0, -0.7, 0, 20.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
    values = np.random.default_rng(0).integers(0, 3, (8, 6, 5)).astype(np.uint8)
    labels = nib.Nifti1Image(values, image_affine)
    nib.save(nib.Nifti1Image(np.zeros((8, 6, 5), np.float32), image_affine), tmp_path / "image.nii.gz")
    nib.save(nib.as_closest_canonical(labels), tmp_path / "label.nii.gz")
    # and a label shifted by one voxel, which is another grid
    shifted = image_affine.copy()
    shifted[0, 3] += 0.8
    nib.save(nib.Nifti1Image(values, shifted), tmp_path / "shifted.nii.gz")
    load = EnsureChannelFirstd(KEYS)
    case = load(
        LoadImaged(KEYS, image_only=True)(
            {"image": str(tmp_path / "image.nii.gz"), "label": str(tmp_path / "label.nii.gz")}
        )
    )
    assert not np.array_equal(case["label"][0].numpy(), values)  # stored in the other order
    checked = CheckCased(KEYS, 3, 1, num_classes=3)(case)
    np.testing.assert_array_equal(checked["label"][0].numpy(), values)
    np.testing.assert_allclose(checked["label"].affine, case["image"].affine)
    shifted_label = LoadImaged("label", image_only=True)({"label": str(tmp_path / "shifted.nii.gz")})
    case["label"] = EnsureChannelFirstd("label")(shifted_label)["label"]
    with pytest.raises(DataCheckError, match="label is placed up to 0.8 mm away from its image"):
        CheckCased(KEYS, 3, 1, num_classes=3)(case)


def test_a_label_within_the_tolerance_takes_its_image_s_affine(tmp_path):
    # two headers of one grid, rounded otherwise (NRRD and NIfTI: 5e-8 mm), had resampled apart on half-voxel ties
    image_affine = np.diag([1.2, 1.2, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), image_affine), tmp_path / "image.nii.gz")
    label_affine = image_affine.copy()
    label_affine[:3, 3] += 5e-5
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), label_affine), tmp_path / "label.nii.gz")
    files = {"image": str(tmp_path / "image.nii.gz"), "label": str(tmp_path / "label.nii.gz")}
    case = EnsureChannelFirstd(KEYS)(LoadImaged(KEYS, image_only=True)(files))
    assert not torch.equal(case["label"].affine, case["image"].affine)
    checked = CheckCased(KEYS, 3, 1, num_classes=2)(case)
    assert torch.equal(checked["label"].affine.to(torch.float64), checked["image"].affine.to(torch.float64))


def _segmentation(path, names_and_values):
    import SimpleITK as sitk

    values = np.zeros((4, 8, 8), np.uint8)
    values[1, 2:4, 2:4], values[2, 5:7, 5:7] = 1, 2
    image = sitk.GetImageFromArray(values)
    for k, (name, value) in enumerate(names_and_values):
        image.SetMetaData(f"Segment{k}_Name", name)
        image.SetMetaData(f"Segment{k}_LabelValue", str(value))
    sitk.WriteImage(image, str(path))
    from monai_unets.data.medical_io import MedicalImageReader

    label = LoadImaged("label", reader=MedicalImageReader(), image_only=True)({"label": str(path)})["label"]
    return EnsureChannelFirstd("label")({"label": label})["label"]


def test_segments_named_as_classes_of_other_values_are_refused(tmp_path):
    check = CheckCased(KEYS, 3, 1, num_classes=3, class_names=["pancreas", "tumour"])
    # 3D Slicer numbers segments in the order they were made: the tumour drawn first had been trained as pancreas
    swapped = _segmentation(tmp_path / "swapped.seg.nrrd", [("Tumour", 1), ("Pancreas", 2)])
    with pytest.raises(DataCheckError, match=r"swapped.seg.nrrd: its segments have other values than the classes of "):
        check.check_label(swapped, None)
    with pytest.raises(DataCheckError, match=r"\(Tumour is 1, class 2 here; Pancreas is 2, class 1 here; classes: 1 "):
        check.check_label(swapped, None)
    # the classes' own values, or names that are no class's, pass
    check.check_label(_segmentation(tmp_path / "ok.seg.nrrd", [("pancreas", 1), ("tumour", 2)]), None)
    check.check_label(_segmentation(tmp_path / "other.seg.nrrd", [("Segment_1", 2), ("Segment_2", 1)]), None)


def test_a_label_of_another_grid_is_told_how_to_bring_it_to_the_image_s(tmp_path):
    image = MetaTensor(torch.zeros(1, 8, 8, 4), meta={"filename_or_obj": "ct.nii.gz"})
    cropped = MetaTensor(torch.zeros(1, 3, 4, 2), meta={"filename_or_obj": "seg.seg.nrrd"})
    with pytest.raises(DataCheckError, match=r"3D Slicer crops a .seg.nrrd to its segments' extent unless exported"):
        CheckCased(KEYS).check_label(cropped, image)
    layered = MetaTensor(torch.zeros(2, 8, 8, 4), meta={"filename_or_obj": "seg.seg.nrrd"})
    with pytest.raises(DataCheckError, match=r"label has 2 channels; it must be a single label map of class values"):
        CheckCased(KEYS).check_label(layered, image)
    photo = MetaTensor(torch.zeros(3, 60, 80), meta={"filename_or_obj": "a.png"})
    mask = MetaTensor(torch.zeros(1, 30, 40), meta={"filename_or_obj": "a_mask.png"})
    with pytest.raises(DataCheckError, match=r"a mask must have its image's size: resize it with nearest-neighbour"):
        CheckCased(KEYS).check_label(mask, photo)


def test_load_datalist_resolves_paths_against_the_dataset_folder(tmp_path):
    (tmp_path / "lists").mkdir()
    datalist = tmp_path / "lists" / "d.json"
    datalist.write_text(json.dumps({"training": [{"image": "x.nii", "label": "y.nii"}]}))
    assert load_datalist(datalist, "training", tmp_path) == [
        {"image": str(tmp_path / "x.nii"), "label": str(tmp_path / "y.nii")}
    ]
    assert load_datalist(datalist)[0]["image"] == str(tmp_path / "lists" / "x.nii")


def test_a_decathlon_count_that_its_list_does_not_match_is_warned_about(tmp_path, caplog):
    # numTraining 60 over a list of 6 (a list cut short in a copy) had passed unnoticed
    datalist = tmp_path / "dataset.json"
    cases = [{"image": f"i{k}.nii", "label": f"l{k}.nii"} for k in range(6)]
    datalist.write_text(json.dumps({"numTraining": 60, "training": cases, "numTest": 0, "test": []}))
    with caplog.at_level(logging.WARNING):
        assert len(load_datalist(datalist)) == 6
    assert f"{datalist}: numTraining is 60, but its 'training' list has 6 cases" in caplog.text
    caplog.clear()
    datalist.write_text(json.dumps({"numTraining": 6, "training": cases}))
    with caplog.at_level(logging.WARNING):
        load_datalist(datalist)
    assert "numTraining" not in caplog.text


def test_atomic_open_gives_the_permissions_of_an_ordinary_file(tmp_path):
    with open(tmp_path / "plain", "w") as f:
        f.write("x")
    with atomic_open(tmp_path / "atomic", "w") as f:
        f.write("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)


def test_an_nnunet_raw_dataset_lists_its_cases_from_its_folders(tmp_path):
    # dataset.json of nnU-Net's raw format names channels and the file ending, and lists no cases
    dataset = {
        "channel_names": {"0": "T2", "1": "ADC"},
        "labels": {"background": 0, "prostate": 1},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (tmp_path / folder).mkdir()
    for case in ("prostate_00", "prostate_04"):
        (tmp_path / "labelsTr" / f"{case}.nii.gz").touch()
    (tmp_path / "imagesTs" / "prostate_09_0000.nii.gz").touch()
    (tmp_path / "imagesTs" / "prostate_09_0001.nii.gz").touch()
    training = load_datalist(tmp_path / "dataset.json", "training")
    assert training == [
        {
            "image": [str(tmp_path / "imagesTr" / f"{case}_{c:04d}.nii.gz") for c in (0, 1)],
            "label": str(tmp_path / "labelsTr" / f"{case}.nii.gz"),
            # named as nnU-Net names its predictions (prostate_00.nii.gz), not after a channel's file
            "case_id": case,
        }
        for case in ("prostate_00", "prostate_04")
    ]
    test = load_datalist(tmp_path / "dataset.json", "test")
    images = [str(tmp_path / "imagesTs" / f"prostate_09_{c:04d}.nii.gz") for c in (0, 1)]
    assert test == [{"image": images, "case_id": "prostate_09"}]
    assert CaseDataset(test).names == ["prostate_09"]
    with pytest.raises(DataCheckError, match="an nnU-Net raw dataset has no 'validation' list"):
        load_datalist(tmp_path / "dataset.json", "validation")
    # a bundle's optional lists (the CT bundles' validation list): none, as in a datalist without them
    assert load_datalist(tmp_path / "dataset.json", "validation", required=False) == []
    for path in (tmp_path / "imagesTs").iterdir():
        path.unlink()
    assert load_datalist(tmp_path / "dataset.json", "test", required=False) == []
    with pytest.raises(DataCheckError, match="without a 'test' list"):
        load_datalist(tmp_path / "dataset.json", "test")
    # no channel named: refused as such (the test list had failed on an IndexError, the training list had cases
    # without images)
    (tmp_path / "dataset.json").write_text(json.dumps({**dataset, "channel_names": {}}))
    for key in ("training", "test"):
        with pytest.raises(DataCheckError, match="'channel_names' must be numbered 0, 1, ...; got {}"):
            load_datalist(tmp_path / "dataset.json", key)


def test_a_relative_dataset_dir_gives_absolute_paths_in_both_layouts(tmp_path, monkeypatch):
    # the reports (metrics_per_case.csv, report.html) name each case by its file: an nnU-Net raw dataset given as
    # a relative folder had its cases named relative to the folder the run started in
    from monai_unets.data import list_cases

    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz"}
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (tmp_path / "ds" / folder).mkdir(parents=True)
    (tmp_path / "ds" / "imagesTr" / "a_0000.nii.gz").touch()
    (tmp_path / "ds" / "labelsTr" / "a.nii.gz").touch()
    (tmp_path / "ds" / "imagesTs" / "b_0000.nii.gz").touch()
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(dataset))
    listed = {"training": [{"image": "imagesTr/a_0000.nii.gz", "label": "labelsTr/a.nii.gz"}]}
    (tmp_path / "ds" / "datalist.json").write_text(json.dumps(listed))
    monkeypatch.chdir(tmp_path)
    expected = {
        "image": str(tmp_path / "ds" / "imagesTr" / "a_0000.nii.gz"),
        "label": str(tmp_path / "ds/labelsTr/a.nii.gz"),
    }
    [nnunet] = list_cases("ds", "ds/dataset.json", key="training", labelled=True, volumes=True)
    [monai] = list_cases("ds", "ds/datalist.json", key="training", labelled=True, volumes=True)
    assert {key: nnunet[key] for key in ("image", "label")} == monai == expected
    assert load_datalist("ds/dataset.json", "test") == [
        {"image": str(tmp_path / "ds" / "imagesTs" / "b_0000.nii.gz"), "case_id": "b"}
    ]


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"background": 0, "pancreas": 1, "ignore": 2}, "label 2 is nnU-Net's 'ignore' label"),
        ({"background": 0, "whole": [1, 2], "core": 2}, "nnU-Net's regions are not supported"),
    ],
)
def test_sparse_annotation_and_regions_are_refused_naming_the_dataset_json(tmp_path, labels, message):
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 1, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "labelsTr" / "case_00.nii.gz").touch()
    with pytest.raises(DataCheckError, match=re.escape(message)) as raised:
        load_datalist(tmp_path / "dataset.json", "training")
    assert raised.value.file == str(tmp_path / "dataset.json")
    if "ignore" in labels:
        assert "sparse annotation is not supported" in raised.value.problem


def test_an_unreadable_label_is_named_and_not_its_image(tmp_path):
    case = _case(tmp_path, "a")
    label = tmp_path / "a_label.nii.gz"
    label.write_bytes(label.read_bytes()[:60])  # an interrupted copy
    [(_, problem)] = scan_cases([case], _loading()).bad
    assert problem.file == str(label)
    assert problem.problem.startswith("cannot read the label file: ")


def test_a_list_to_score_must_give_its_cases_a_label(tmp_path, caplog):
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": "a.png", "label": "a_mask.png"}, {"image": "b.png"}]}))
    assert len(load_datalist(datalist, "test")) == 2
    # some labelled: they are scored, the others fail as cases do in a batch, and a warning says so at start
    with caplog.at_level("WARNING"):
        assert len(load_datalist(datalist, "test", labelled=True)) == 2
    assert "1 of the 2 cases of 'test' have no 'label'" in caplog.text and "b.png" in caplog.text
    datalist.write_text(json.dumps({"test": [{"image": "b.png"}]}))
    with pytest.raises(DataCheckError, match=r"1 of the 1 cases of 'test' have no 'label' \(the first: .*b\.png"):
        load_datalist(datalist, "test", labelled=True)


def test_paths_relative_to_the_datalist_s_own_folder_are_named_as_such(tmp_path):
    dataset, lists = tmp_path / "data", tmp_path / "lists"
    (dataset / "images").mkdir(parents=True)
    (lists / "data" / "images").mkdir(parents=True)
    (dataset / "images" / "a.png").touch()
    (lists / "data" / "images" / "b.png").touch()
    datalist = lists / "d.json"
    datalist.write_text(json.dumps({"training": [{"image": "images/a.png"}]}))
    assert load_datalist(datalist, "training", dataset) == [{"image": str(dataset / "images" / "a.png")}]
    # written relative to its own folder, as scripts/datalist.py writes it, and read against the dataset folder
    datalist.write_text(json.dumps({"training": [{"image": "data/images/b.png"}]}))
    with pytest.raises(DataCheckError) as raised:
        load_datalist(datalist, "training", dataset)
    assert raised.value.file == str(datalist)
    assert f"relative to dataset_dir {dataset}, where data/images/b.png does not exist" in raised.value.problem
    assert f"it does relative to the datalist's own folder {lists}" in raised.value.problem


def test_uris_and_backslashes_are_named_as_such(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").touch()
    datalist = tmp_path / "datalist.json"

    def refusal(entry: object) -> str:
        datalist.write_text(json.dumps({"test": [{"image": "images/a.png"}, entry]}))
        with pytest.raises(DataCheckError) as raised:
            load_datalist(datalist, "test", tmp_path)
        assert raised.value.file == str(datalist)
        return raised.value.problem

    # both had failed per case naming a path the datalist does not hold: <dataset_dir>/file:/..., <dataset_dir>/x\y
    uri = (tmp_path / "images" / "a b.png").as_uri()
    assert refusal({"image": uri}) == (
        f"entry 1 of 'test': image {uri} is a URI; a datalist lists files by their paths: write "
        f"{tmp_path / 'images' / 'a b.png'}."
    )
    assert "image https://host/a.png is a URI; a datalist lists files by their paths, absolute or relative" in (
        refusal({"image": "https://host/a.png"})
    )
    assert refusal({"image": "images/a.png", "label": ["masks\\a.png"]}) == (
        "entry 1 of 'test': label masks\\a.png does not exist, and backslashes do not separate folders on this "
        "system; write the datalist's paths with '/' (masks/a.png)."
    )
    # a file whose name holds a backslash is read
    (tmp_path / "images" / "b\\c.png").touch()
    datalist.write_text(json.dumps({"test": ["images/b\\c.png"]}))
    assert load_datalist(datalist, "test", tmp_path) == [{"image": str(tmp_path / "images" / "b\\c.png")}]


def test_empty_labels_are_counted_and_refused_when_every_training_label_is_one(tmp_path, caplog):
    # images without a lesion have empty labels: a count, not a refusal
    train = [_case(tmp_path, "a"), _case(tmp_path, "b", (0, 0)), _case(tmp_path, "c"), _case(tmp_path, "x", (0, 9))]
    val = [_case(tmp_path, "d", (0, 0))]
    with caplog.at_level(logging.WARNING):
        assert check_cases([train, val], _loading(), policy="skip") == [train[:3], val]
    assert (
        f"1 of 3 training labels and 1 of 1 validation labels have no foreground (e.g. {train[1]['label']}, "
        f"{val[0]['label']})" in caplog.text
    )
    # every training label empty (the bad case aside): nothing to learn, which had trained to Dice 0 silently
    empty = [_case(tmp_path, "e", (0, 0)), _case(tmp_path, "f", (0, 0)), train[3]]
    with pytest.raises(DataCheckError, match="every one of the 2 readable training labels has no foreground"):
        check_cases([empty, val], _loading(), policy="skip")
    scan = scan_cases([*empty, *val], _loading())
    assert ([index for index, _ in scan.bad], scan.empty) == ([2], [0, 1, 3])


def test_a_blank_image_under_a_drawn_label_is_a_bad_case(tmp_path):
    # a black series of a failed export had passed every check, and plan took its one value into the window
    # the dataset is normalised with
    train = [_case(tmp_path, "a"), _case(tmp_path, "b"), _case(tmp_path, "c", (0, 0))]
    for case in train[1:]:
        nib.save(nib.Nifti1Image(np.full((8, 8, 4), -1024, np.int16), np.eye(4)), case["image"])
    scan = scan_cases(train, _loading())
    assert [(index, str(problem)) for index, problem in scan.bad] == [
        (
            1,
            f"{train[1]['image']}: image holds one value everywhere (-1024) while its label marks foreground: a blank "
            "or failed export; nothing can be learnt from it. Export the image again, or leave the case out.",
        )
    ]
    assert scan.empty == [2]  # blank with an empty label: counted as an empty label, as any other


def test_classes_that_no_training_label_holds_are_named_in_a_warning(tmp_path, caplog):
    train = [_case(tmp_path, "a", (0, 1)), _case(tmp_path, "b", (0, 1)), _case(tmp_path, "x", (0, 9))]
    val = [_case(tmp_path, "v", (0, 1, 3))]  # a class in validation only is still unlearnt
    with caplog.at_level(logging.WARNING):
        check_cases([train, val], _loading(4), policy="skip", class_names=["liver", "lesion", "cyst"])
    assert (
        "classes 2 (lesion), 3 (cyst) are in none of the 2 readable training labels: the network cannot learn what "
        "it never sees" in caplog.text
    )
    scan = scan_cases([*train, *val], _loading(4))
    assert (scan.num_classes, scan.classes) == (4, {0: {1}, 1: {1}, 3: {1, 3}})
    assert absent_classes([train, val], scan) is not None and "class" in absent_classes([train, val], scan)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_cases([train[:2] + val, []], _loading(4), class_names=["liver", "lesion", "cyst"])
    assert "class 2 (lesion) is in none of the 3 readable training labels" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_cases([train[:2], train[:1]], _loading(2))  # every class seen
    assert "none of the" not in caplog.text


def _mask_case(root, name, mask):
    """A grey image and its 2D mask, written as PNG files."""
    Image.fromarray(np.tile(np.arange(mask.shape[1], dtype=np.uint8), (mask.shape[0], 1))).save(root / f"{name}.png")
    Image.fromarray(mask).save(root / f"{name}_mask.png")
    return {"image": str(root / f"{name}.png"), "label": str(root / f"{name}_mask.png")}


def test_masks_whose_foreground_fills_their_border_are_counted_in_a_warning(tmp_path, caplog):
    # a 2D bundle's loading: the brighter value of a mask is its lesion
    loading = [
        LoadImaged(KEYS, image_only=True),
        EnsureChannelFirstd(KEYS, channel_dim="no_channel"),
        BinarizeLabeld("label"),
        CheckCased(KEYS, spatial_dims=2, in_channels=1, num_classes=1),
    ]
    lesion = np.zeros((24, 32), np.uint8)
    lesion[6:16, 8:20] = 255
    reaching = np.zeros_like(lesion)
    reaching[6:20, :12] = 255  # a lesion that reaches one side of the image
    good = [_mask_case(tmp_path, "inside", lesion), _mask_case(tmp_path, "reaching", reaching)]
    # white background, lesion black or in a colour darker than the background: its background read as the lesion
    inverted = [
        _mask_case(tmp_path, "black", 255 - lesion),
        _mask_case(tmp_path, "grey", np.where(lesion, 76, 255).astype(np.uint8)),
    ]
    with caplog.at_level(logging.WARNING):
        assert check_cases([good + inverted[:1], inverted[1:]], loading) == [good + inverted[:1], inverted[1:]]
    assert (
        f"1 of 3 training masks and 1 of 1 validation masks have foreground on at least 90% of their border (e.g. "
        f"{inverted[0]['label']}, {inverted[1]['label']}): the bundles read the brighter value of a mask as lesion, "
        "so a mask drawn dark on a light background is read inverted" in caplog.text
    )
    assert scan_cases(good + inverted, loading).border_filling == [2, 3]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_cases([good, good[:1]], loading)
    assert "border" not in caplog.text


def test_a_2d_label_of_another_exif_orientation_that_keeps_the_shape_is_refused(tmp_path):
    # a photograph stored upside down (EXIF 3) with its mask drawn on it as displayed: training read the mask
    # against the stored pixels, turned 180 degrees from the lesion, after a warning among many
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
    from monai_unets.transforms import Image2DReader
    from PIL import Image

    def save(name, array, orientation=None):
        exif = Image.Exif()
        if orientation:
            exif[0x0112] = orientation
        Image.fromarray(array).save(tmp_path / name, exif=exif)
        return str(tmp_path / name)

    photo = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    mask = np.zeros((24, 32), np.uint8)
    mask[3:9, 4:12] = 255
    load = Compose(
        [
            LoadImaged("image", reader=Image2DReader(), image_only=True),
            LoadImaged("label", reader=Image2DReader(channels=1), image_only=True),
            EnsureChannelFirstd("image", channel_dim=-1),
            EnsureChannelFirstd("label", channel_dim="no_channel"),
            CheckCased(["image", "label"], spatial_dims=2, in_channels=3),
        ]
    )
    for image_orientation, mask_orientation in ((3, None), (2, None), (6, 8)):
        case = {"image": save("a.png", photo, image_orientation), "label": save("m.png", mask, mask_orientation)}
        with pytest.raises(RuntimeError) as raised:  # MONAI's wrapping of the transform's error
            load(case)
        said = str(raised.value.__cause__)
        assert f"m.png: label has EXIF orientation {mask_orientation or 1} and its image" in said
    # the same orientation, or a quarter turn that would have swapped the label's sides: it follows the pixels
    for image_orientation, mask_orientation in ((3, 3), (6, None)):
        case = {"image": save("a.png", photo, image_orientation), "label": save("m.png", mask, mask_orientation)}
        with pytest.warns(UserWarning, match="EXIF orientation"):
            load(case)


def test_label_values_that_are_not_classes_are_shown_with_all_their_digits():
    # 1.0000001 (a resampling's rounding) had been shown as 1, which reads as a valid class
    from monai.data import MetaTensor

    label = MetaTensor(torch.tensor([[[0.0, 1.0000001], [2.0, 2.0]]]), meta={"filename_or_obj": "/data/lab.nii.gz"})
    image = MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": "/data/img.nii.gz"})
    with pytest.raises(DataCheckError, match=r"lab.nii.gz: label values 1.00000012 are not classes 0..2"):
        CheckCased(["image", "label"], num_classes=3)({"image": image, "label": label})


def test_a_volume_of_few_whole_values_is_named_as_a_label_map_in_a_warning(tmp_path, caplog):
    # a segmentation saved beside a patient's series folder was listed as a study and segmented, exit 0, no word
    label = np.zeros((16, 16, 8), np.uint8)
    label[4:9, 5:12, 2:6] = 1
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "segmentation.nii.gz"))
    check = CheckCased(["image"], spatial_dims=3, in_channels=1)
    load = LoadImaged("image", image_only=True, ensure_channel_first=True)
    with caplog.at_level(logging.WARNING):
        check(load({"image": str(tmp_path / "segmentation.nii.gz")}))
    assert (
        f"{tmp_path / 'segmentation.nii.gz'}: the image holds only the whole values 0, 1, as a label map or mask does"
        in caplog.text
    )
    caplog.clear()
    # a scan, even a small phantom of whole Hounsfield units, and a float volume of few values that are no labels
    scan = np.random.default_rng(0).integers(-1024, 400, (16, 16, 8)).astype(np.int16)
    nib.save(nib.Nifti1Image(scan, np.eye(4)), str(tmp_path / "ct.nii.gz"))
    nib.save(nib.Nifti1Image(label * 0.5, np.eye(4)), str(tmp_path / "halves.nii.gz"))
    with caplog.at_level(logging.WARNING):
        for name in ("ct.nii.gz", "halves.nii.gz"):
            check(load({"image": str(tmp_path / name)}))
    assert "label map" not in caplog.text


def test_datalists_of_other_tools_are_named_with_what_to_write(tmp_path):
    from monai_unets.data import load_datalist

    # a spreadsheet's file list had been "not valid JSON: Expecting value at line 1, column 1"
    (tmp_path / "list.csv").write_text("image,label\nimages/a.png,masks/a.png\n")
    with pytest.raises(DataCheckError, match=r"datalist is a table \(CSV\), not JSON: .*MONAI's JSON datalists"):
        load_datalist(tmp_path / "list.csv", "training")
    # a Windows absolute path had been told to be written with '/' (C:/Users/...), which cannot exist either
    (tmp_path / "win.json").write_text(json.dumps({"training": [{"image": "C:\\Users\\lab\\a.png", "label": "b"}]}))
    with pytest.raises(DataCheckError, match=r"is a Windows path \(drive C:\) that does not exist on this system"):
        load_datalist(tmp_path / "win.json", "training")
    # masks listed as 'mask': the key MONAI's datalists use is named
    case = _case(tmp_path, "a")
    case["mask"] = case.pop("label")
    [(_, problem)] = scan_cases([case], _loading()).bad
    assert problem.problem == "has no 'label' in the datalist (it has 'mask': MONAI's datalists name it 'label')."
    (tmp_path / "masks.json").write_text(json.dumps({"test": [case]}))
    with pytest.raises(
        DataCheckError, match="have no 'label' \\(they have 'mask': MONAI's datalists name it 'label'\\)"
    ):
        load_datalist(tmp_path / "masks.json", "test", labelled=True)


def test_an_nnunet_v1_dataset_gives_each_case_its_channel_files(tmp_path):
    # nnU-Net v1 lists imagesTr/p_000.nii.gz for a case stored as p_000_0000.nii.gz, p_000_0001.nii.gz: every case
    # had been "image file does not exist"
    from monai_unets.data import load_datalist

    (tmp_path / "imagesTr").mkdir()
    for channel in range(2):
        (tmp_path / "imagesTr" / f"p_000_{channel:04d}.nii.gz").touch()
    entry = {"image": "./imagesTr/p_000.nii.gz", "label": "./labelsTr/p_000.nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps({"modality": {"0": "T2", "1": "ADC"}, "training": [entry]}))
    [case] = load_datalist(tmp_path / "dataset.json", "training")
    assert case["image"] == [str(tmp_path / "imagesTr" / f"p_000_{c:04d}.nii.gz") for c in range(2)]
    # a case whose listed file exists, or whose channel files do not all, stays as listed
    (tmp_path / "imagesTr" / "p_000_0001.nii.gz").unlink()
    [case] = load_datalist(tmp_path / "dataset.json", "training")
    assert case["image"] == str(tmp_path / "imagesTr" / "p_000.nii.gz")


def test_a_name_written_in_another_unicode_form_is_named_so(tmp_path):
    # a datalist typed in NFC beside files a Mac archive stored in NFD: both print as "été", and the case had only
    # been said not to exist
    import unicodedata

    case = _case(tmp_path, unicodedata.normalize("NFD", "été"))
    case["image"] = unicodedata.normalize("NFC", case["image"])
    [(_, problem)] = scan_cases([case], _loading()).bad
    assert problem.problem.startswith("image file does not exist as written, but does with its accented letters in")


def test_a_2d_float_image_whose_range_float32_cannot_hold_is_refused(tmp_path):
    # a float TIFF with a "no data" fill of +-3e38: its min-max scaling overflowed, every pixel became NaN and the
    # mask came out empty, exit 0. A CT of such values is fine: it is clipped before any arithmetic
    image = np.tile(np.linspace(0.0, 1.0, 32, dtype=np.float32), (24, 1))
    image[0, 0], image[0, 1] = 3e38, -3e38
    Image.fromarray(image).save(tmp_path / "filled.tiff")
    load = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image", channel_dim="no_channel")])
    check = CheckCased(["image"], spatial_dims=2, in_channels=1)
    with pytest.raises(
        DataCheckError, match=r"filled\.tiff: has values from -3e\+38 to 3e\+38, a range beyond float32"
    ):
        check(load({"image": str(tmp_path / "filled.tiff")}))
    image[0, 0] = 1e30  # a wide range that float32 holds is scaled as it is
    Image.fromarray(image).save(tmp_path / "wide.tiff")
    check(load({"image": str(tmp_path / "wide.tiff")}))
