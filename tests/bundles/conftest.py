"""What the bundle tests need per bundle: data it trains and infers on, and how to check its predictions."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import torch
from monai.bundle import ConfigParser
from monai.data import partition_dataset
from monai_unets.bundles import bundle_dir
from monai_unets.scripts.demo_ct import generate_demo_ct
from monai_unets.scripts.demo_data import generate_demo_dataset
from PIL import Image

from tests.geometry import write_enhanced_ct


@dataclass(frozen=True)
class BundleCase:
    """How to test one bundle end to end."""

    make_data: Callable[[Path], Path]  # writes a dataset with its datalist into the folder, returns the folder
    make_inputs: Callable[[Path, Path], list[Path]]  # copies/writes inference inputs into a folder, returns them
    check_prediction: Callable[[Path, Path], None]  # (input, prediction folder): the prediction matches the input
    prediction_name: Callable[[Path], str]  # the file name inference gives an input's prediction
    bad_input_name: str  # a corrupt input file that inference must skip
    metrics: tuple[str, ...]  # the per-case metric columns of the evaluation, in order
    evaluated_cases: Callable[[Path], int]  # how many cases the evaluation of this data covers
    train_args: tuple[str, ...] = ()  # overrides that keep the one-epoch training short on a CPU
    infer_args: tuple[str, ...] = ()  # overrides for inference and evaluation, likewise


def _skin_lesion_data(root: Path) -> Path:
    generate_demo_dataset(root, num_images=12, seed=3, min_size=48, max_size=112)
    return root


def _test_images(data: Path, inputs: Path) -> list[Path]:
    cases = json.loads((data / "datalist.json").read_text())["test"]
    return [Path(shutil.copy(data / case["image"], inputs)) for case in cases]


def _test_list_size(data: Path) -> int:
    return len(json.loads((data / "datalist.json").read_text())["test"])


def _png_name(source: Path) -> str:
    return f"{source.name.split('.')[0]}_seg.png"


def _check_png(source: Path, predictions: Path) -> None:
    with Image.open(source) as image, Image.open(predictions / _png_name(source)) as mask:
        assert mask.size == image.size, source
        assert set(mask.getdata()) <= {0, 255}


def _ct_data(root: Path) -> Path:
    generate_demo_ct(root, num_cases=5, num_test=1, shape=(48, 40, 24), spacing=(1.2, 1.2, 2.5), dicom=True)
    return root


def _ct_validation_size(data: Path) -> int:
    # the bundle evaluates the validation part of its seeded split of the labelled cases
    labelled = json.loads((data / "dataset.json").read_text())["training"]
    return len(partition_dataset(labelled, ratios=[0.6, 0.4], shuffle=True, seed=0)[1])


def _ct_inputs(data: Path, inputs: Path) -> list[Path]:
    nifti = Path(shutil.copy(data / "imagesTs" / "demo_005.nii.gz", inputs))
    series = Path(shutil.copytree(data / "dicomTs" / "demo_005", inputs / "demo_005_dicom"))
    # the same study as one enhanced multi-frame file
    return [nifti, series, write_enhanced_ct(series, inputs / "demo_005_enhanced.dcm")]


def _nifti_name(source: Path) -> str:
    return f"{source.name.split('.')[0]}_seg.nii.gz"


def _check_ct(source: Path, predictions: Path) -> None:
    prediction = nib.load(predictions / _nifti_name(source))
    if source.is_dir():
        # the DICOM series: same grid as its NIfTI twin, and a DICOM SEG pointing at the series
        twin = nib.load(source.parent / "demo_005.nii.gz")
        _check_seg(predictions / f"{source.name}_seg.dcm", next(source.glob("*.dcm")))
    elif source.suffix == ".dcm":
        # the enhanced multi-frame file: frames in its own order, a label map on its grid (that of the series, as
        # its voxels lie in space), with the series' labels on the same voxels, and a SEG pointing at the file
        _check_multiframe_prediction(source, prediction, nib.load(predictions / "demo_005_dicom_seg.nii.gz"))
        _check_seg(predictions / f"{source.stem}_seg.dcm", source)
        return
    else:
        twin = nib.load(source)
    assert prediction.shape == twin.shape
    np.testing.assert_allclose(prediction.affine, twin.affine, atol=1e-4)
    assert set(np.unique(np.asarray(prediction.dataobj)).tolist()) <= {0, 1, 2}


def _check_seg(path: Path, source_file: Path) -> None:
    seg = pydicom.dcmread(path)
    source = pydicom.dcmread(source_file, stop_before_pixels=True)
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID


def _check_multiframe_prediction(source: Path, prediction: nib.Nifti1Image, series_prediction: nib.Nifti1Image) -> None:
    header = pydicom.dcmread(source, stop_before_pixels=True)
    frames = int(header.NumberOfFrames)
    assert prediction.shape == series_prediction.shape[:2] + (frames,)
    # each voxel's centre as the file's frames place it: column c, row r of frame f lies at IPP_f + c * column
    # spacing * IOP[:3] + r * row spacing * IOP[3:] (LPS); the label map must hold the same centre at [c, r, f]
    shared = header.SharedFunctionalGroupsSequence[0]
    iop = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    lps_to_ras = np.array([-1.0, -1.0, 1.0])
    for f in (0, frames - 1):
        position = np.asarray(
            header.PerFrameFunctionalGroupsSequence[f].PlanePositionSequence[0].ImagePositionPatient, float
        )
        for c, r in ((0, 0), (3, 5)):
            world = (position + c * col_spacing * iop[:3] + r * row_spacing * iop[3:]) * lps_to_ras
            np.testing.assert_allclose(prediction.affine @ [c, r, f, 1], [*world, 1], atol=1e-3)
    # the series' label map, taken voxel by voxel through both affines, holds the same labels
    index = np.stack(np.meshgrid(*(np.arange(n) for n in prediction.shape), indexing="ij"), -1).reshape(-1, 3)
    to_series = np.linalg.inv(series_prediction.affine) @ prediction.affine
    mapped = np.rint(index @ to_series[:3, :3].T + to_series[:3, 3]).astype(int)
    labels = np.asarray(prediction.dataobj)[tuple(index.T)]
    np.testing.assert_array_equal(labels, np.asarray(series_prediction.dataobj)[tuple(mapped.T)])


# the demo CT's dataset.json names its classes as the Decathlon's pancreas task does
_CT_METRICS = tuple(
    f"{metric}{suffix}"
    for metric in ("val_mean_dice", "val_mean_iou", "val_hd95_mm", "val_nsd")
    for suffix in ("_pancreas", "_cancer", "")
)

_PANCREAS_CT = BundleCase(
    make_data=_ct_data,
    make_inputs=_ct_inputs,
    check_prediction=_check_ct,
    prediction_name=_nifti_name,
    bad_input_name="corrupt.nii.gz",
    metrics=_CT_METRICS,
    evaluated_cases=_ct_validation_size,
    train_args=("--patch_size", "[32, 32, 32]", "--val_fraction", "0.4"),
    infer_args=("--patch_size", "[32, 32, 32]"),
)

# A new bundle gets an entry here; test_bundles.py fails for a bundle without one.
BUNDLE_CASES: dict[str, BundleCase] = {
    "egeunet_skin_lesion": BundleCase(
        make_data=_skin_lesion_data,
        make_inputs=_test_images,
        check_prediction=_check_png,
        prediction_name=_png_name,
        bad_input_name="corrupt.jpg",
        metrics=("val_mean_dice", "val_mean_iou", "val_accuracy", "val_sensitivity", "val_specificity"),
        evaluated_cases=_test_list_size,
    ),
    # RGB images with a darker blob and its mask stand in for colonoscopy frames
    "unetv2_polyp": BundleCase(
        make_data=_skin_lesion_data,
        make_inputs=_test_images,
        check_prediction=_check_png,
        prediction_name=_png_name,
        bad_input_name="corrupt.png",
        metrics=("val_mean_dice", "val_mean_iou", "val_mae"),
        evaluated_cases=_test_list_size,
        train_args=("--image_size", "[64, 64]"),
    ),
    "attention_unet_pancreas_ct": _PANCREAS_CT,
    # the same pipeline with the 3D EGE-UNet
    "egeunet3d_pancreas_ct": _PANCREAS_CT,
}


def bundle_with_random_weights(name: str, root: Path) -> Path:
    """A copy of bundle ``name`` in ``root`` with untrained weights in ``models/model.pt``, for tests of
    everything around the network (failures, sharding, outputs) that need no training."""
    bundle = Path(shutil.copytree(bundle_dir(name), root / name))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    torch.manual_seed(0)
    (bundle / "models").mkdir()
    torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    return bundle
