"""Generate synthetic CT studies of an abdomen-like phantom, in the Medical Segmentation Decathlon layout.

Each case is a CT volume in Hounsfield units (air, an elliptic body, an enhancing "pancreas" blob and a
hypodense "tumour" inside it) with its label map (0 background, 1 pancreas, 2 tumour). Volumes are stored as
NIfTI in LPS orientation with anisotropic voxels, i.e. not RAS, so pipelines have to reorient and resample, and
``--dicom`` also writes each test case as a DICOM CT series, for inference on DICOM. The folder holds
``dataset.json``, ``imagesTr/``, ``labelsTr/`` and ``imagesTs/`` like an MSD task.

Example::

    monai-unets demo-ct --output-dir data/demo_ct --num-cases 8 --dicom
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .cli import run_tool
from .phantom_dataset import add_phantom_arguments, write_phantom_dataset

__all__ = [
    "WrittenDicomSeries",
    "add_arguments",
    "generate_demo_ct",
    "lps_geometry_affine",
    "make_ct_phantom",
    "run",
    "write_dicom_series",
]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def make_ct_phantom(
    shape: Sequence[int] = (64, 56, 40), spacing: Sequence[float] = (0.9, 0.9, 2.5), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One phantom CT volume (HU, int16) and its label map (uint8), both indexed (x, y, z).

    Args:
        shape: voxels along x (patient left), y (posterior) and z (superior).
        spacing: voxel size in mm; the blobs are sized in mm, so they keep their physical size.
        seed: seed of the random placement, sizes and noise.

    Example::

        >>> image, label = make_ct_phantom((32, 32, 16))
        >>> image.shape, sorted(set(label.ravel().tolist()))
        ((32, 32, 16), [0, 1, 2])
    """
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    half = [n * s / 2 for n, s in zip(shape, spacing)]
    image = np.full(shape, -1000.0)
    body = (x / (0.85 * half[0])) ** 2 + (y / (0.75 * half[1])) ** 2 < 1
    image[body] = 40.0
    label = np.zeros(shape, dtype=np.uint8)
    centre = rng.uniform(-0.3, 0.3, 3) * np.array(half)
    radii = rng.uniform(0.22, 0.32, 3) * np.array(half)
    organ = sum(((c - m) / r) ** 2 for c, m, r in zip((x, y, z), centre, radii)) < 1
    image[organ] = 110.0
    label[organ] = 1
    tumour_centre = centre + rng.uniform(-0.3, 0.3, 3) * radii
    tumour = sum(((c - m) / (0.35 * r)) ** 2 for c, m, r in zip((x, y, z), tumour_centre, radii)) < 1
    image[tumour & organ] = 30.0
    label[tumour & organ] = 2
    image += rng.normal(0, 12, shape)
    return np.round(image).astype(np.int16), label


def lps_geometry_affine(spacing: Sequence[float], origin_lps: Sequence[float], direction_lps: np.ndarray) -> np.ndarray:
    """The RAS affine (as in NIfTI and MONAI) of a volume with ITK/DICOM geometry (LPS origin and direction).

    Args:
        spacing: voxel size in mm along the volume's three axes.
        origin_lps: patient position (mm, LPS) of the first voxel, ``volume[0, 0, 0]``.
        direction_lps: 3 x 3 matrix whose columns are the directions (LPS) of the volume's axes, as ITK's
            direction.

    Returns:
        the 4 x 4 voxel-to-RAS affine.

    Example::

        >>> lps_geometry_affine((0.9, 0.9, 2.5), (-10.0, -20.0, 100.0), np.eye(3))
        array([[ -0.9,   0. ,   0. ,  10. ],
               [  0. ,  -0.9,   0. ,  20. ],
               [  0. ,   0. ,   2.5, 100. ],
               [  0. ,   0. ,   0. ,   1. ]])
    """
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction_lps) @ np.diag(spacing)
    affine[:3, 3] = origin_lps
    return LPS_TO_RAS @ affine


class WrittenDicomSeries(NamedTuple):
    """What :func:`write_dicom_series` wrote: the folder and the UIDs of the series and of its slices."""

    folder: Path
    study_uid: str
    series_uid: str
    sop_uids: list[str]  # SOPInstanceUID of slice k (volume[:, :, k]) at index k


def write_dicom_series(
    volume: np.ndarray,
    folder: str | Path,
    spacing: Sequence[float],
    origin_lps: Sequence[float],
    direction_lps: np.ndarray | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    description: str = "demo CT",
    *,
    frame_uid: str | None = None,
    series_number: int = 1,
    rescale_intercept: int = -1024,
    file_name: Callable[[int], str] | None = None,
) -> WrittenDicomSeries:
    """Write an (x, y, z)-indexed HU volume as a DICOM CT series, one single-frame file per z slice.

    Geometry: ``volume[i, j, k]`` is column ``i`` and row ``j`` of slice ``k``, and lies at the LPS point
    ``origin_lps + direction_lps @ (i * spacing[0], j * spacing[1], k * spacing[2])``. So slice ``k`` gets
    ImagePositionPatient ``origin_lps + k * spacing[2] * direction_lps[:, 2]``, ImageOrientationPatient the
    column and row directions ``direction_lps[:, 0]`` and ``direction_lps[:, 1]``, and PixelSpacing
    ``(spacing[1], spacing[0])`` (between rows, between columns, as DICOM orders it). The slice direction may
    point against the DICOM slice normal (row x column direction), i.e. the stack need not be right-handed.

    Args:
        volume: HU values, indexed (column, row, slice).
        folder: created if needed; other files in it are left alone.
        spacing: column, row and slice spacing in mm.
        origin_lps: patient position (mm, LPS) of the first voxel, ``volume[0, 0, 0]``.
        direction_lps: 3x3 matrix with orthonormal columns: the column, row and slice directions (LPS); identity
            (axial, head-first supine) by default.
        series_uid: SeriesInstanceUID (a new one by default).
        study_uid: StudyInstanceUID (a new one by default).
        description: SeriesDescription.
        frame_uid: FrameOfReferenceUID (a new one by default); give two series the same one to share it.
        series_number: SeriesNumber.
        rescale_intercept: RescaleIntercept (slope 1); pixels are stored as ``volume - rescale_intercept``, which
            has to fit in int16.
        file_name: file name of slice ``k`` (0-based); ``IM0001.dcm``, ``IM0002.dcm``, ... by default. Give e.g.
            ``lambda k: f"IM{n - k:04d}.dcm"`` to name the files against the slice order.

    Returns:
        the folder, the study and series UIDs and the SOPInstanceUIDs in slice order.

    Example::

        >>> series = write_dicom_series(np.zeros((4, 3, 2)), "ct", (0.8, 0.7, 2.5), (0, 0, 0))  # doctest: +SKIP
        >>> series.folder, len(series.sop_uids)  # doctest: +SKIP
        (PosixPath('ct'), 2)
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    # a DICOM file with its preamble and file meta: pydicom 3's argument, pydicom 2's (which 3 no longer takes)
    pydicom_3 = int(pydicom.__version__.split(".")[0]) >= 3
    file_format = {"enforce_file_format": True} if pydicom_3 else {"write_like_original": False}

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (column, row, slice), got shape {volume.shape}")
    direction = np.eye(3) if direction_lps is None else np.asarray(direction_lps, dtype=float)
    if direction.shape != (3, 3) or not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise ValueError(f"direction_lps must be a 3x3 matrix with orthonormal columns, got {direction.tolist()}")
    stored = volume.astype(np.int64) - int(rescale_intercept)
    if stored.size and (stored.min() < -32768 or stored.max() > 32767):
        raise ValueError(f"volume - rescale_intercept ({rescale_intercept}) does not fit in int16")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    name_of = file_name or (lambda k: f"IM{k + 1:04d}.dcm")
    orientation = [round(float(v), 6) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
    sop_uids = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Demo^Phantom", "DEMO", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PositionReferenceIndicator = ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = (
            "20260101",
            "000000",
            "1",
            "",
            "",
        )
        ds.Modality, ds.Manufacturer, ds.SeriesDescription = "CT", "monai-unets", description
        ds.SeriesNumber, ds.InstanceNumber = series_number, k + 1
        ds.ImageOrientationPatient = orientation
        position = np.asarray(origin_lps, dtype=float) + k * spacing[2] * direction[:, 2]
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # between rows, between columns
        ds.SliceThickness = float(spacing[2])
        pixels = stored[:, :, k].T  # rows run along y, columns along x
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = int(rescale_intercept), 1, "HU"
        ds.PixelData = pixels.astype("<i2").tobytes()
        ds.save_as(folder / name_of(k), **file_format)
        sop_uids.append(ds.SOPInstanceUID)
    return WrittenDicomSeries(folder, study_uid, series_uid, sop_uids)


def generate_demo_ct(
    output_dir: str | Path,
    num_cases: int = 8,
    num_test: int = 2,
    shape: Sequence[int] = (64, 56, 40),
    spacing: Sequence[float] = (0.9, 0.9, 2.5),
    seed: int = 0,
    dicom: bool = False,
) -> Path:
    """Write ``num_cases`` labelled phantoms (imagesTr/labelsTr) and ``num_test`` unlabelled ones (imagesTs).

    The volumes are stored in LPS orientation (axes towards patient left, posterior and superior), centred in x
    and y, their first slice at z = 100 mm; case ``i`` is :func:`make_ct_phantom` of seed ``seed * 1000 + i``, the
    test cases numbered on from the labelled ones (``demo_<i:03d>.nii.gz``).

    Args:
        output_dir: the dataset folder, created where missing (see :func:`write_phantom_dataset`).
        num_cases: labelled cases.
        num_test: unlabelled test cases.
        shape: voxels along x (patient left), y (posterior) and z (superior).
        spacing: voxel size in mm along x, y and z; the blobs are sized in mm.
        seed: seed of the dataset.
        dicom: also write each test case as a DICOM CT series (:func:`write_dicom_series`), of the same geometry,
            in ``dicomTs/<name>/`` (``name`` without the extension).

    Returns:
        the path of ``dataset.json``.

    Example::

        >>> generate_demo_ct("data/demo_ct", num_cases=4, dicom=True)  # doctest: +SKIP
        PosixPath('data/demo_ct/dataset.json')
    """
    origin = np.array([-(shape[0] - 1) * spacing[0] / 2, -(shape[1] - 1) * spacing[1] / 2, 100.0])
    affine = lps_geometry_affine(spacing, origin, np.eye(3))
    header = {
        "name": "DemoCT",
        "description": "synthetic abdomen-like CT phantoms",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
    }

    def as_dicom(stem: str, image: np.ndarray) -> None:
        write_dicom_series(image, Path(output_dir) / "dicomTs" / stem, spacing, origin)

    return write_phantom_dataset(
        output_dir,
        make_ct_phantom,
        "demo",
        header,
        affine,
        num_cases,
        num_test,
        shape,
        spacing,
        seed,
        on_test_case=as_dicom if dicom else None,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_phantom_arguments(parser, "demo_ct", shape=(64, 56, 40), spacing=(0.9, 0.9, 2.5))
    parser.add_argument("--dicom", action="store_true", help="also write each test case as a DICOM series")


def run(args: argparse.Namespace) -> int:
    path = generate_demo_ct(
        args.output_dir, args.num_cases, args.num_test, args.shape, args.spacing, args.seed, args.dicom
    )
    print(f"{path}: {args.num_cases} labelled and {args.num_test} test CT phantoms")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.demo_ct``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
