"""MedicalImageReader puts every voxel where the file says, for any orientation, spacing, slice order and dtype.

Property-based: hypothesis draws grids (axis-aligned in all 48 orientations or oblique, anisotropic spacing,
off-centre origins), dtypes and file orders. The default suite runs a few examples of each property; the
``slow`` profile (``pytest -m slow --hypothesis-profile slow``) runs many. Each example is checked voxel by voxel
in world coordinates (``tests.geometry.assert_same_world``) against the grid it was written with, and against
SimpleITK or nibabel reading the same file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from monai.transforms import LoadImage
from monai_unets.data.medical_io import MedicalImageReader
from monai_unets.scripts.benchmark_readers import read_with_simpleitk
from monai_unets.scripts.demo_ct import write_dicom_series

from tests.geometry import LPS_TO_RAS, Grid, assert_same_world, grids, world_centroid, write_enhanced_ct

NIFTI_DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64]


def _load(path) -> tuple[np.ndarray, np.ndarray]:
    image = LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)(str(path))
    return image.numpy(), image.affine.numpy()


def _volume(grid: Grid, dtype, seed: int) -> np.ndarray:
    """Distinct-ish values (so that a flip or shift changes them) with a bright off-centre blob."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    high = min(info.max, 1000) if info else 1000
    volume = rng.integers(0, high // 2, size=grid.shape).astype(dtype)
    volume[grid.blob()] = high
    return volume


def _check(path: Path, grid: Grid, volume: np.ndarray, what: str) -> None:
    array, affine = _load(path)
    assert_same_world(array, affine, volume, grid.ras_affine(), what)
    high = volume.max()
    np.testing.assert_allclose(
        world_centroid(array == high, affine), world_centroid(volume == high, grid.ras_affine()), atol=1e-3
    )
    reference, reference_affine, _image = read_with_simpleitk(path)
    assert_same_world(array, LPS_TO_RAS @ affine, reference, reference_affine, f"{what} vs SimpleITK")


@given(grid=grids(), dtype=st.sampled_from(NIFTI_DTYPES), seed=st.integers(0, 2**16))
def test_nifti_voxels_land_where_the_affine_says(grid, dtype, seed):
    volume = _volume(grid, dtype, seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.nii.gz"
        nib.save(nib.Nifti1Image(volume, grid.ras_affine()), str(path))
        _check(path, grid, volume, f"NIfTI {grid}")


@given(grid=grids(min_size=3), order=st.randoms(use_true_random=False), seed=st.integers(0, 2**16))
def test_dicom_series_voxels_land_where_the_headers_say(grid, order, seed):
    """Any orientation, oblique or not, slices along or against the DICOM normal, files named in any order."""
    volume = _volume(grid, np.int16, seed)
    names = [f"IM{k:04d}.dcm" for k in range(grid.shape[2])]
    order.shuffle(names)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_dicom_series(
            volume, Path(tmp) / "series", grid.spacing, grid.origin, grid.direction, file_name=names.__getitem__
        ).folder
        _check(folder, grid, volume, f"DICOM series {grid}")


@given(grid=grids(min_size=2, max_size=6), seed=st.integers(0, 2**16))
def test_multiframe_dicom_voxels_land_where_the_frames_say(grid, seed):
    """An enhanced CT (one file, per-frame positions) converted from a series of the same grid."""
    volume = _volume(grid, np.int16, seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_dicom_series(volume, Path(tmp) / "series", grid.spacing, grid.origin, grid.direction).folder
        path = write_enhanced_ct(folder, Path(tmp) / "enhanced.dcm")
        _check(path, grid, volume, f"multi-frame DICOM {grid}")


def test_single_slice_dicom_is_one_voxel_thick_where_the_header_says(tmp_path):
    grid = Grid((7, 5, 1), (0.7, 0.9, 3.0), np.eye(3)[:, [1, 2, 0]], (10.0, -20.0, 30.0))
    volume = _volume(grid, np.int16, 0)
    folder = write_dicom_series(volume, tmp_path / "one", grid.spacing, grid.origin, grid.direction).folder
    path = next(folder.iterdir())
    array, affine = _load(path)
    assert array.shape == (7, 5, 1)
    # one slice has no slice step: compare the in-plane axes and the position of every voxel
    np.testing.assert_allclose(affine[:3, :2], grid.ras_affine()[:3, :2], atol=1e-5)
    np.testing.assert_allclose(affine[:3, 3], grid.ras_affine()[:3, 3], atol=1e-4)
    np.testing.assert_array_equal(array, volume)
