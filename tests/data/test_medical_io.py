"""MedicalImageReader: every 3D format loads to the same geometry; DICOM series problems give clear errors."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser
from monai.data import ITKReader
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImage,
    LoadImaged,
    Orientationd,
    SaveImaged,
    Spacingd,
)
from monai_unets.data import case_output_names
from monai_unets.data.cases import FAILURE_KEY, CaseDataset
from monai_unets.data.dicom_seg import write_dicom_seg
from monai_unets.data.medical_io import (
    LISTING_PROBLEM_KEY,
    MedicalImageReader,
    list_medical_cases,
    parse_series_reference,
    series_reference,
    split_dicom_series,
)
from monai_unets.scripts.demo_ct import write_dicom_series

from tests.conftest import processed_cases
from tests.geometry import assert_same_world, write_enhanced_ct

# The phantom, in LPS (DICOM/ITK) terms: a sagittal stack whose axes run to P, I and L, i.e. neither RAS nor
# right-handed, with anisotropic spacing and an off-centre origin. Slices along +L are *against* the DICOM slice
# normal (row x column = R), so ITK stacks them in the opposite order to the NIfTI file.
SHAPE = (20, 24, 16)
SPACING = np.array([0.8, 0.7, 2.5])
DIRECTION = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: x, y, z axes
ORIGIN = np.array([12.5, -30.25, 40.0])
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ARTERIAL, VENOUS = "1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.11"
STUDY, FRAME = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


def _phantom() -> np.ndarray:
    x, y, z = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    volume = 10 * x + 3 * y + z  # a gradient that tells every flip and permutation apart
    volume[4:9, 5:15, 3:7] += 500  # a box "lesion"
    return volume.astype(np.int16)


def _ras_affine() -> np.ndarray:
    lps = np.eye(4)
    lps[:3, :3] = DIRECTION @ np.diag(SPACING)
    lps[:3, 3] = ORIGIN
    return LPS_TO_RAS @ lps


def _write_sitk(volume: np.ndarray, path: Path) -> Path:
    image = sitk.GetImageFromArray(volume.transpose(2, 1, 0))
    image.SetSpacing(SPACING.tolist())
    image.SetOrigin(ORIGIN.tolist())
    image.SetDirection(DIRECTION.flatten().tolist())
    sitk.WriteImage(image, str(path))
    return path


def _write_series(volume: np.ndarray, folder: Path, series_uid: str = ARTERIAL, description: str = "phantom") -> Path:
    """The (x, y, z) phantom as a CT series with the module's geometry; two series written into one folder share
    the study and frame of reference, and their files are told apart by the series number."""
    number = int(series_uid.rsplit(".", 1)[-1])
    n = volume.shape[2]
    return write_dicom_series(
        volume,
        folder,
        SPACING,
        ORIGIN,
        DIRECTION,
        series_uid=series_uid,
        study_uid=STUDY,
        description=description,
        frame_uid=FRAME,
        series_number=number,
        file_name=lambda k: f"{number}_IM{n - k:04d}.dcm",  # names in reverse slice order: the reader has to sort
    ).folder


def _slice_file(folder: Path, instance: int) -> Path:
    return next(p for p in folder.iterdir() if pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber == instance)


def _load(path, ras: bool = True):
    transforms = [LoadImaged("image", reader=MedicalImageReader(), image_only=True), EnsureChannelFirstd("image")]
    if ras:
        transforms.append(Orientationd("image", axcodes="RAS"))
    return Compose(transforms)({"image": str(path)})["image"]


def _load_error(path, kind: type[Exception] = ValueError, match: str = "") -> str:
    """The message of the error that loading ``path`` raises, unwrapped from MONAI's ``RuntimeError`` layers."""
    with pytest.raises(Exception) as info:
        _load(path)
    error = info.value
    while error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, kind), repr(error)
    assert re.search(match, str(error)), str(error)
    return str(error)


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phantom")
    volume = _phantom()
    nifti = root / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(volume, _ras_affine()), str(nifti))
    return {
        "nifti": nifti,
        "nrrd": _write_sitk(volume, root / "phantom.nrrd"),
        "mha": _write_sitk(volume, root / "phantom.mha"),
        "dicom": _write_series(volume, root / "series"),
    }


def test_every_format_loads_to_the_same_array_and_affine(formats):
    reference = _load(formats["nifti"])
    assert tuple(reference.shape[1:]) == (16, 20, 24)  # R <- slices, A <- rows, S <- columns
    np.testing.assert_allclose(np.abs(np.diag(reference.affine[:3, :3].numpy())), [2.5, 0.8, 0.7], atol=1e-5)
    for name in ("nrrd", "mha", "dicom"):
        image = _load(formats[name])
        assert image.shape == reference.shape, name
        np.testing.assert_allclose(image.numpy(), reference.numpy(), err_msg=name)
        np.testing.assert_allclose(image.affine.numpy(), reference.affine.numpy(), atol=1e-4, err_msg=name)
        assert image.meta["filename_or_obj"] == str(formats[name])


def test_volumes_come_in_c_order_with_the_values_their_library_read(formats, monkeypatch):
    # ITK and NIfTI give Fortran-ordered volumes, which LoadImage copied to C order with one strided copy: half the
    # time of reading a NIfTI CT
    from monai_unets.data import medical_io

    # blocks that do not divide the phantom's axes: every edge block is a partial one
    monkeypatch.setattr(medical_io, "_TRANSPOSE_BLOCK", (3, 7, 5))
    reader = MedicalImageReader()
    for name in ("nifti", "nrrd", "mha", "dicom"):
        array, _ = reader.get_data(reader.read(str(formats[name])))
        image = reader.read(str(formats[name]))
        library = reader.nibabel_reader if name == "nifti" else reader.itk_reader
        library_array, _ = library.get_data(image.itk_image() if name == "dicom" else image)
        assert array.flags.c_contiguous and not library_array.flags.c_contiguous, name
        np.testing.assert_array_equal(array, library_array, err_msg=name)


def _assert_same_meta(meta: dict, reference: dict) -> None:
    assert list(meta) == list(reference)
    for key, value in reference.items():
        if isinstance(value, np.ndarray):
            assert isinstance(meta[key], np.ndarray) and meta[key].dtype == value.dtype, key
            np.testing.assert_array_equal(meta[key], value, err_msg=key)
        elif isinstance(value, float) and np.isnan(value):
            assert np.isnan(meta[key]), key
        else:
            assert meta[key] == value and type(meta[key]) is type(value), key


@pytest.mark.parametrize("rescale", ["integer", "fractional"])
def test_a_series_read_without_itk_gets_what_itk_reader_gives(tmp_path, rescale):
    """The series' array and metadata as ITKReader.get_data gives them for the same image, tag texts included."""
    volume = _phantom()
    folder = _write_series(volume, tmp_path / "series")
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = "Müller^Zoë"
        if rescale == "fractional":
            ds.RescaleSlope = "0.5"
        ds.save_as(path)
    reader = MedicalImageReader()
    image = reader.read(str(folder))
    array, meta = reader.get_data(image)
    itk_array, itk_meta = ITKReader(affine_lps_to_ras=True).get_data(image.itk_image())
    assert array.dtype == itk_array.dtype == (np.float32 if rescale == "fractional" else np.int16)
    np.testing.assert_array_equal(array, itk_array)
    _assert_same_meta(meta, itk_meta)
    assert meta["0010|0010"] == "Müller^Zoë"
    # ITKReader's own options are honoured through ITK
    array, _ = MedicalImageReader(itk_kwargs={"reverse_indexing": True}).get_data(image)
    np.testing.assert_array_equal(array, itk_array.T)


def test_two_series_stack_as_channels_through_itk_reader(formats):
    reader = MedicalImageReader()
    array, meta = reader.get_data(reader.read([str(formats["dicom"]), str(formats["dicom"])]))
    single, _ = reader.get_data(reader.read(str(formats["dicom"])))
    assert array.shape == (2, *single.shape) and meta["original_channel_dim"] == 0
    np.testing.assert_array_equal(array[1], single)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_c_ordered_copies_fortran_volumes_block_by_block(dtype, monkeypatch):
    from monai_unets.data import medical_io

    monkeypatch.setattr(medical_io, "_TRANSPOSE_BLOCK", (4, 5, 3))
    volume = np.arange(9 * 11 * 7).reshape(7, 11, 9).astype(dtype).T  # (9, 11, 7), Fortran order
    copied = medical_io.c_ordered(volume)
    assert copied.flags.c_contiguous and copied.dtype == dtype
    np.testing.assert_array_equal(copied, volume)
    # arrays in C order already, of another rank or with gaps are left as they are
    for other in (np.ascontiguousarray(volume), volume[..., 0], volume[::2]):
        assert medical_io.c_ordered(other) is other


@pytest.mark.parametrize("labelled", [(3, 5), (0, 7), (6, 7), (0, 1), None])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, bool])
def test_c_ordered_label_maps_are_copied_between_their_first_and_last_labelled_slab(labelled, dtype, monkeypatch):
    from monai_unets.data import medical_io

    monkeypatch.setattr(medical_io, "_TRANSPOSE_BLOCK", (4, 5, 3))
    rng = np.random.default_rng(0)
    labels = np.zeros((7, 11, 9), dtype)  # (z, y, x) in C order: the transpose is (x, y, z) in Fortran order
    if labelled is not None:
        labels[labelled[0] : labelled[1]] = rng.integers(0, 3, (labelled[1] - labelled[0], 11, 9)).astype(dtype)
        labels[labelled[0], 0, 0] = labels[labelled[1] - 1, 10, 8] = 1  # the end slabs hold a label
    copied = medical_io.c_ordered(labels.T)
    assert copied.flags.c_contiguous and copied.dtype == dtype
    np.testing.assert_array_equal(copied, labels.T)


def test_a_nifti_gz_damaged_inside_is_refused_not_read_with_other_values(tmp_path):
    # nibabel stops decompressing at the last voxel, before the checksum: these bytes had decoded to other values
    # without a word (as a block flipped at most places of this file did, some with NaN among them)
    path = tmp_path / "flipped.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((40, 40, 40), np.float32), np.eye(4)), path)
    data = bytearray(path.read_bytes())
    data[30000:30050] = bytes(255 - b for b in data[30000:30050])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{path}: its compressed image data end early or are damaged \\(CRC check"):
        LoadImage(reader=MedicalImageReader(), image_only=True)(path)


def test_nibabel_s_closest_canonical_reads_a_nifti_gz_as_monai_s_reader_does(tmp_path):
    # the reoriented image holds an array, not a proxy of the file: the checksum reading had failed on it
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.diag([-1.0, -2.0, 3.0, 1.0])), path)
    ours = LoadImage(reader=MedicalImageReader(nibabel_kwargs={"as_closest_canonical": True}), image_only=True)(path)
    monai = LoadImage(reader="NibabelReader", as_closest_canonical=True, image_only=True)(path)
    np.testing.assert_array_equal(ours.numpy(), monai.numpy())
    np.testing.assert_array_equal(ours.affine.numpy(), monai.affine.numpy())
    assert float(ours.affine[0, 0]) == 1.0


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_a_compressed_nrrd_or_metaimage_damaged_inside_is_refused_not_read_with_other_values(tmp_path, suffix):
    # ITK decompresses as many bytes as the voxels take and compares no checksum, and reports a MetaImage's failed
    # decompression on the console only: these files had been read with other values
    path = tmp_path / f"flipped{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((40, 40, 40), np.float32)), str(path), True)
    data_file = {".nhdr": tmp_path / "flipped.raw.gz", ".mhd": tmp_path / "flipped.zraw"}.get(suffix, path)
    data = bytearray(data_file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 50] = bytes(255 - b for b in data[middle : middle + 50])
    data_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{path}: its compressed image data end early or are damaged"):
        LoadImage(reader=MedicalImageReader(), image_only=True)(path)


def test_raw_affine_of_every_format_places_the_phantom_correctly(formats):
    volume, affine = _phantom(), _ras_affine()
    for name, path in formats.items():
        image = _load(path, ras=False)
        # the voxel of the box corner lands on the same physical point whatever the array order
        data, image_affine = image[0].numpy(), image.affine.numpy()
        index = np.argwhere(data == volume[4, 5, 3])[0]
        np.testing.assert_allclose(image_affine @ [*index, 1], affine @ [4, 5, 3, 1], atol=1e-4, err_msg=name)
        assert np.asarray(image.meta["spatial_shape"]).prod() == volume.size


def test_prediction_goes_back_to_the_original_dicom_geometry(formats, tmp_path):
    keys = ["image"]
    pre = Compose(
        [
            LoadImaged(keys, reader=MedicalImageReader(), image_only=True),
            EnsureChannelFirstd(keys),
            Orientationd(keys, axcodes="RAS"),
            Spacingd(keys, pixdim=(1.0, 1.0, 1.0), mode="nearest"),
        ]
    )
    data = pre({"image": str(formats["dicom"])})
    data["pred"] = (data["image"] > 400).float()  # the box
    post = Compose(
        [
            Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True),
            SaveImaged("pred", output_dir=tmp_path, output_postfix="seg", separate_folder=False, print_log=False),
        ]
    )
    out = post(data)
    original = _load(formats["dicom"], ras=False)
    assert out["pred"].shape == original.shape
    np.testing.assert_allclose(out["pred"].affine.numpy(), original.affine.numpy(), atol=1e-4)
    saved = nib.load(str(next(tmp_path.glob("*seg.nii.gz"))))
    np.testing.assert_allclose(saved.affine, original.affine.numpy(), atol=1e-4)
    box = (original[0].numpy() > 400).astype(float)
    assert (saved.get_fdata() == box).mean() > 0.97


def test_multiframe_dicom_file_loads_frames_and_spacing(formats, tmp_path):
    # the phantom series as one enhanced multi-frame file: the same voxels in the same place
    path = write_enhanced_ct(formats["dicom"], tmp_path / "enhanced.dcm")
    image, series = _load(path), _load(formats["dicom"])
    np.testing.assert_array_equal(image.numpy(), series.numpy())
    np.testing.assert_allclose(image.affine.numpy(), series.affine.numpy(), atol=1e-4)
    # an RT Dose has frames and pixel data too, but it is no image to segment
    dose = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "rtdose.dcm")
    _load_error(dose, ValueError, "rtdose.dcm is a DICOM RT Dose Storage object, not an image")


@pytest.mark.parametrize("encoding", ["native", "rle"])
def test_enhanced_frames_stored_out_of_spatial_order_read_as_the_volume(encoding, formats, tmp_path):
    # DICOM lets an enhanced file store its frames in any order; ITK made of a shuffled one a volume of 1 mm
    # spacing and a wrong direction, and the reader had refused it
    from pydicom.uid import RLELossless

    path = write_enhanced_ct(formats["dicom"], tmp_path / "enhanced.dcm")
    ds = pydicom.dcmread(path)
    order = np.random.default_rng(3).permutation(int(ds.NumberOfFrames))
    groups = list(ds.PerFrameFunctionalGroupsSequence)
    ds.PerFrameFunctionalGroupsSequence = pydicom.sequence.Sequence([groups[i] for i in order])
    ds.PixelData = np.ascontiguousarray(ds.pixel_array[order]).tobytes()
    if encoding == "rle":
        ds.compress(RLELossless)
    ds.save_as(tmp_path / "shuffled.dcm")
    series = _load(formats["dicom"])
    image = _load(tmp_path / "shuffled.dcm")
    assert_same_world(image[0].numpy(), image.affine.numpy(), series[0].numpy(), series.affine.numpy(), encoding)
    # a repeated position is still no volume
    groups = list(ds.PerFrameFunctionalGroupsSequence)
    groups[1].PlanePositionSequence[0].ImagePositionPatient = groups[0].PlanePositionSequence[0].ImagePositionPatient
    ds.save_as(tmp_path / "repeated.dcm")
    _load_error(tmp_path / "repeated.dcm", ValueError, "duplicate slice position")


def test_single_slice_dicom_matches_its_header():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    header = pydicom.dcmread(path, stop_before_pixels=True)
    image = _load(path, ras=False)
    assert tuple(image.shape) == (1, header.Columns, header.Rows, 1)
    row_spacing, column_spacing = (float(v) for v in header.PixelSpacing)
    affine = image.affine.numpy()
    np.testing.assert_allclose([-affine[0, 0], -affine[1, 1]], [column_spacing, row_spacing], atol=1e-6)
    lps = np.asarray(header.ImagePositionPatient, float)
    np.testing.assert_allclose(affine[:3, 3], [-lps[0], -lps[1], lps[2]], atol=1e-4)
    # one slice has no neighbour to measure a step to: its thickness is the third spacing
    assert affine[2, 2] == pytest.approx(float(header.SliceThickness))


def test_single_slice_spacing_comes_from_its_thickness(tmp_path):
    series = write_dicom_series(np.zeros((6, 5, 1), np.int16), tmp_path / "one", (0.8, 0.7, 3.0), (0.0, 0.0, 0.0))
    (path,) = series.folder.iterdir()
    for source in (path, series.folder):  # a lone file and a series folder of one file
        assert abs(float(_load(source, ras=False).affine[2, 2])) == pytest.approx(3.0)
    ds = pydicom.dcmread(path)
    ds.SpacingBetweenSlices = 4.0  # the step between slices, where given, over the thickness
    ds.save_as(path)
    assert abs(float(_load(path, ras=False).affine[2, 2])) == pytest.approx(4.0)
    del ds.SpacingBetweenSlices, ds.SliceThickness
    ds.save_as(path)
    with pytest.warns(UserWarning, match="taken as 1 mm"):
        assert abs(float(_load(path, ras=False).affine[2, 2])) == pytest.approx(1.0)


@pytest.fixture()
def two_series(tmp_path) -> Path:
    volume = _phantom()
    folder = _write_series(volume, tmp_path / "study", ARTERIAL, "arterial")
    _write_series(volume[:, :, :10] * 2, folder, VENOUS, "venous")
    return folder


def test_folder_with_two_series_is_refused_with_a_listing(two_series):
    message = _load_error(two_series, ValueError, "holds 2 series")
    for text in (ARTERIAL, "arterial", "16 file(s)", VENOUS, "venous", "10 file(s)", "CT"):
        assert text in message
    # what a datalist can say: the reference of one series, as it reads
    assert f"Name the one to read as {two_series}::<SeriesInstanceUID> (in a datalist too)" in message
    assert _load(f"{two_series}::{ARTERIAL}").shape[1] == 16


def test_split_series_gives_cases_that_load_separately(two_series):
    series = split_dicom_series(two_series)
    assert [(s.description, len(s.files), s.modality) for s in series] == [("arterial", 16, "CT"), ("venous", 10, "CT")]
    arterial, venous = (_load(s.reference) for s in series)
    assert arterial.shape[1] == 16 and venous.shape[1] == 10
    np.testing.assert_allclose(venous.numpy(), 2 * arterial.numpy()[:, 6:], err_msg="venous holds slices 0-9 (L side)")
    cases = list_medical_cases(two_series.parent, split_series=True)
    assert [c["image"] for c in cases] == [s.reference for s in series]
    assert list_medical_cases(two_series.parent) == [{"image": str(two_series.resolve())}]
    _load_error(series_reference(two_series, "1.2.3"), ValueError, "has no series 1.2.3")


def test_series_reference_round_trip():
    assert parse_series_reference(series_reference("/a/b", "1.2.3")) == ("/a/b", "1.2.3")
    assert parse_series_reference("/a/b.nii.gz") == ("/a/b.nii.gz", None)
    assert parse_series_reference("/a/odd::name") == ("/a/odd::name", None)


def test_a_flat_export_of_an_anonymised_series_uid_is_read(formats, tmp_path):
    # an anonymiser's SeriesInstanceUID of letters: the flat export's reference had failed as "does not exist"
    export = tmp_path / "in"
    export.mkdir()
    for path in sorted(formats["dicom"].iterdir()):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = "ANON-SERIES-0001"
        ds.save_as(export / path.stem, enforce_file_format=True)
    [case] = list_medical_cases(export, split_series=True)
    assert case["image"] == series_reference(export, "ANON-SERIES-0001")
    loaded = LoadImage(reader=MedicalImageReader(), image_only=True)(case["image"])
    reference = LoadImage(reader=MedicalImageReader(), image_only=True)(str(formats["dicom"]))
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(reference))
    np.testing.assert_allclose(loaded.affine, reference.affine)
    # a file that is named so is that file, and a path whose folder does not exist no reference
    (tmp_path / "x::name").touch()
    assert parse_series_reference(tmp_path / "x::name") == (str(tmp_path / "x::name"), None)
    assert parse_series_reference(tmp_path / "none" / "x::name") == (str(tmp_path / "none" / "x::name"), None)


def test_missing_middle_slice_names_the_folder_and_the_gap(formats, tmp_path):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "gap"))
    _slice_file(folder, 8).unlink()
    message = _load_error(folder, ValueError, "missing slices")
    assert str(folder) in message and "instance 7" in message and "instance 9" in message


@pytest.mark.parametrize("step, decimals", [(0.625, 2), (1.25, 1), (0.625, 1)])
def test_slice_positions_rounded_in_the_headers_are_read_on_their_regular_grid(tmp_path, step, decimals):
    # positions written to 0.01 mm (0.1 mm) make 0.625 mm (1.25 mm) gaps differ by 1.6% (8%), beyond the spacing
    # tolerance, while every slice lies within 1% (4%) of a slice of its place: as scanners and exports write them.
    # Thin slices written to 0.1 mm lie up to 0.1 mm off the grid, 12% of a slice of 0.625 mm: they had been refused
    volume = np.arange(6 * 5 * 40, dtype=np.int16).reshape(6, 5, 40)
    folder = write_dicom_series(volume, tmp_path / "ct", (0.8, 0.7, step), (-20.0, -30.0, -101.3)).folder
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [f"{float(v):.{decimals}f}" for v in ds.ImagePositionPatient]
        ds.save_as(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = _load(folder, ras=False)
    assert not [w for w in caught if "regular grid" in str(w.message)]  # within the rounding: no warning either
    np.testing.assert_array_equal(image[0].numpy(), volume)
    # the spacing of the first to the last slice, each off by at most half the last decimal
    assert float(image.affine[2, 2]) == pytest.approx(step, abs=10.0**-decimals / (volume.shape[2] - 1))


def test_inconsistent_spacing_and_duplicates_are_refused(formats, tmp_path):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "uneven"))
    path = _slice_file(folder, 8)
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient[0] = float(ds.ImagePositionPatient[0]) + 0.2  # 2.5 mm gaps become 2.3 and 2.7
    ds.save_as(path)
    _load_error(folder, ValueError, f"{folder}.*inconsistent slice spacing")
    ds.ImagePositionPatient = pydicom.dcmread(_slice_file(folder, 7)).ImagePositionPatient
    ds.save_as(path)
    _load_error(folder, ValueError, "duplicate slice position")


def test_one_slice_given_twice_under_two_names_is_named_as_a_copy(formats, tmp_path):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "copied"))
    path = _slice_file(folder, 4)
    shutil.copy(path, folder / f"{path.stem} (1).dcm")  # as a browser names a second download of the file
    # it had been refused as duplicate positions, "several acquisitions or time points"
    message = _load_error(folder, ValueError, r"holds one instance twice: .* have the same SOPInstanceUID")
    assert path.name in message and f"{path.stem} (1).dcm" in message, message


def test_tilted_stack_is_refused(formats, tmp_path):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "tilted"))
    for instance in range(1, 17):  # every slice shifted along its rows a bit more: a gantry tilt
        path = _slice_file(folder, instance)
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient[1] = round(float(ds.ImagePositionPatient[1]) + 0.3 * instance, 4)
        ds.save_as(path)
    _load_error(folder, ValueError, "not stacked along the slice normal")


def test_a_sheared_orientation_is_refused(formats, tmp_path):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "sheared"))
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1, 0, 0, 0.3, 1, 0]  # columns not at right angles to the rows
        ds.save_as(path)
    _load_error(folder, ValueError, f"{folder}.*not unit vectors at right angles")


@pytest.mark.parametrize("tag", ["FrameOfReferenceUID", "StudyInstanceUID", "SOPClassUID"])
def test_slices_of_another_acquisition_in_one_series_are_refused(formats, tmp_path, tag):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "mixed"))
    path = _slice_file(folder, 5)
    ds = pydicom.dcmread(path)
    ds.add_new(tag, "UI", "1.2.826.0.1.3680043.8.498.99" if tag != "SOPClassUID" else "1.2.840.10008.5.1.4.1.1.4")
    ds.save_as(path)
    _load_error(folder, ValueError, f"{folder}.*mixes slices of different {tag}")


def test_non_dicom_files_in_a_series_folder(formats, tmp_path):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "with_files"))
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "DICOMDIR").write_bytes(b"not really")
    with pytest.warns(UserWarning, match="skipping"):
        assert _load(folder).shape[1:] == (16, 20, 24)
    # a document is named as one, and left out; a file that may be a damaged slice fails the series
    (folder / "notes.txt").write_text("scanned on Monday")
    with pytest.warns(UserWarning, match=r"notes\.txt: not a DICOM file, as its name says"):
        assert _load(folder).shape[1:] == (16, 20, 24)
    (folder / "IM0017").write_text("scanned on Monday")
    _load_error(folder, ValueError, f"{folder / 'IM0017'} is not a DICOM file")


def test_a_folder_without_any_dicom_file_is_no_series_folder(tmp_path, monkeypatch):
    # MONAI Label gives an unknown study id an empty path, which MONAI makes the working folder ".": its first file
    # had been named as a stray among DICOM slices ("mark_bad is not a DICOM file, but DICOM series folder . ...")
    for name in ("mark_bad", "notes.txt", "run.log", "study.nii.gz"):
        (tmp_path / name).write_text("not DICOM")
    monkeypatch.chdir(tmp_path)
    message = _load_error(Path("."), ValueError)
    assert message == (
        f". ({tmp_path}) is no DICOM series folder: none of its 4 files is DICOM (mark_bad, notes.txt, run.log, ...); "
        "give an image file or a folder of one series' DICOM slices (a MONAI Label server reads its working folder "
        "for a study id it does not know: is the id right?)."
    )


def test_clear_errors_for_missing_empty_and_unsupported_paths(tmp_path):
    _load_error(tmp_path / "nowhere.nii.gz", FileNotFoundError, f"{tmp_path / 'nowhere.nii.gz'} does not exist")
    (tmp_path / "empty").mkdir()
    _load_error(tmp_path / "empty", FileNotFoundError, f"{tmp_path / 'empty'} holds no DICOM file")
    (tmp_path / "fake.dcm").write_text("hello")
    _load_error(tmp_path / "fake.dcm", ValueError, f"{tmp_path / 'fake.dcm'} is not a DICOM file")
    (tmp_path / "image.xyz").write_text("hello")
    reader = MedicalImageReader()
    assert not reader.verify_suffix(str(tmp_path / "image.xyz"))
    with pytest.raises(ValueError, match="is not a supported image"):
        reader.get_data(reader.read(str(tmp_path / "image.xyz")))


@pytest.mark.parametrize("header", ["ct.mhd", "ct.nhdr"])
def test_a_header_whose_data_file_is_missing_names_that_file(header, tmp_path):
    # ITK had said "File cannot be read: ct.mhd for reading." (.mhd) or given only its source line (.nhdr)
    _write_sitk(_phantom(), tmp_path / header)
    (tmp_path / "ct.raw").unlink()
    message = _load_error(tmp_path / header, FileNotFoundError)
    assert message == f"{tmp_path / header}: its data file ct.raw does not exist."


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd"])
def test_a_sound_compressed_nrrd_or_metaimage_is_decompressed_once(tmp_path, suffix, monkeypatch):
    # its checksum is compared with that of the voxels ITK read: decompressing the stream a second time to check
    # it had taken longer than ITK's whole read of a CT
    from monai_unets.data import medical_io

    volume = np.random.default_rng(0).integers(-1000, 1000, (12, 10, 8), dtype=np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / f"ct{suffix}"), True)
    monkeypatch.setattr(medical_io.ZLIB, "decompressobj", None)  # our own decompression would fail
    array, _ = MedicalImageReader().get_data(MedicalImageReader().read(str(tmp_path / f"ct{suffix}")))
    np.testing.assert_array_equal(array, volume.T)


def test_a_big_endian_compressed_nrrd_is_checked_by_decompressing_it(tmp_path):
    # ITK swaps its bytes, so the checksum of what it read is not the stream's: the stream is checked as a whole
    volume = np.arange(4 * 5 * 6, dtype=">i2").reshape(6, 5, 4)
    header = "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 5 6\nendian: big\nencoding: gzip\n\n"
    good, damaged = tmp_path / "good.nrrd", tmp_path / "damaged.nrrd"
    stream = gzip.compress(volume.tobytes())
    good.write_bytes(header.encode() + stream)
    damaged.write_bytes(header.encode() + stream[:-8] + bytes(8))  # voxels intact, checksum and size not
    array, _ = MedicalImageReader().get_data(MedicalImageReader().read(str(good)))
    np.testing.assert_array_equal(array, volume.T)
    with pytest.raises(ValueError, match=f"{damaged}: its compressed image data end early or are damaged"):
        LoadImage(reader=MedicalImageReader(), image_only=True)(damaged)


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("zero.nrrd", b"", "is empty \\(0 bytes\\)"),
        ("zero.mha", b"", "is empty \\(0 bytes\\)"),
        ("page.nrrd", b"<!DOCTYPE html><html>Not found</html>", "is not a NRRD file: it holds HTML or XML text"),
        ("ct.nrrd", b"ObjectType = Image\nNDims = 3\n", "is not a NRRD file: it holds a MetaImage header"),
        ("ct.nii.gz", b"NRRD0004\ntype: short\n", "is not gzip-compressed, as its .gz says: it holds a NRRD file"),
    ],
)
def test_an_empty_or_misnamed_volume_file_says_what_it_holds(name, content, problem, tmp_path):
    # ITK had said "Could not create IO object for reading file", gzip "not a gzip file"
    (tmp_path / name).write_bytes(content)
    _load_error(tmp_path / name, ValueError, f"^{re.escape(str(tmp_path / name))} {problem}")


@pytest.mark.parametrize("name", ["ct.mha", "ct.raw"])
def test_a_metaimage_whose_data_is_cut_off_is_called_truncated(name, tmp_path):
    # a cut .mha had been "File cannot be read: ct.mha for reading." with "Reason: No such file or directory"
    _write_sitk(_phantom(), tmp_path / name.replace(".raw", ".mhd"))
    whole = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(whole[:-100])
    message = _load_error(tmp_path / name.replace(".raw", ".mhd"), ValueError)
    size = _phantom().size * _phantom().itemsize
    assert re.fullmatch(
        rf"the pixel data of {re.escape(str(tmp_path / name))} is truncated: {size - 100} of {size} bytes "
        r"\(\d+ x \d+ x \d+ voxels of MET_\w+\)\.",
        message,
    ), message


def test_a_compressed_metaimage_cut_off_is_called_truncated(formats, tmp_path):
    sitk.WriteImage(sitk.ReadImage(str(formats["mha"])), str(tmp_path / "packed.mha"), useCompression=True)
    whole = (tmp_path / "packed.mha").read_bytes()
    (tmp_path / "packed.mha").write_bytes(whole[:-100])
    message = _load_error(tmp_path / "packed.mha", ValueError)
    assert re.fullmatch(
        rf"the pixel data of {re.escape(str(tmp_path / 'packed.mha'))} is truncated: (\d+) of (\d+) bytes "
        r"\(\d+ x \d+ x \d+ voxels of MET_\w+, compressed\)\.",
        message,
    ), message


def test_detached_and_compressed_metaimage_and_nrrd_files_are_read(formats, tmp_path):
    reference = _load(formats["nrrd"])
    for name in ("ct.mhd", "ct.nhdr"):
        _write_sitk(_phantom(), tmp_path / name)
        assert torch.equal(_load(tmp_path / name), reference)
    image = sitk.ReadImage(str(formats["mha"]))
    sitk.WriteImage(image, str(tmp_path / "packed.mha"), useCompression=True)
    assert torch.equal(_load(tmp_path / "packed.mha"), reference)


def test_files_with_upper_case_suffixes_are_read_as_lower_case_ones(formats, tmp_path):
    # ITK knows a MetaImage by ".mha"/".mhd" only: an exported "CT.MHA" was listed as a case and then failed with
    # ITK's "Could not create IO object"
    reference = _load(formats["nrrd"])
    for name in ("CT.MHA", "CT.NRRD", "DETACHED.MHD"):
        _write_sitk(_phantom(), tmp_path / name.lower())
        (tmp_path / name.lower()).rename(tmp_path / name)
        assert torch.equal(_load(tmp_path / name), reference), name


def _cut_nifti(path: Path, shape: tuple[int, ...], keep: int) -> Path:
    """The first ``keep`` bytes of a NIfTI of zeros of ``shape`` (``full.nii`` beside ``path``) as ``path``, gzip-
    compressed for a ``.gz``."""
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), str(path.parent / "full.nii"))
    head = (path.parent / "full.nii").read_bytes()[:keep]
    path.write_bytes(gzip.compress(head) if path.name.endswith(".gz") else head)
    return path


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_a_nifti_cut_off_after_its_header_is_called_truncated_and_named(name, tmp_path):
    # nibabel's "Expected 131072 bytes, got 48 bytes from " named no file for a .nii.gz, and said nothing of a cut
    message = _load_error(_cut_nifti(tmp_path / name, (64, 64, 16), 400), ValueError)
    assert message == (
        f"{tmp_path / name}: the image data is truncated: 48 of 131072 bytes (64 x 64 x 16 voxels of int16)."
    )


def test_a_header_declaring_more_voxels_than_memory_is_refused_before_they_are_read(formats, tmp_path, monkeypatch):
    from monai_unets.data import medical_io

    # a header of a few bytes declaring 32767^3 voxels had failed with an empty MemoryError, and a compressed bomb
    # (4 GiB of zeros in a few MB) took the machine's memory before failing alike
    header = nib.Nifti1Header()
    header.set_data_shape((32767, 32767, 32767))
    header.set_data_dtype(np.int16)
    raw = header.binaryblock + bytes(4 + 1024)
    (tmp_path / "huge.nii").write_bytes(raw)
    (tmp_path / "huge.nii.gz").write_bytes(gzip.compress(raw))
    _load_error(
        tmp_path / "huge.nii", ValueError, r"huge.nii: the image data is truncated: \d+ of 70362301923326 bytes"
    )
    monkeypatch.setattr(medical_io, "_physical_memory", lambda: 16 * 2**30)
    assert _load_error(tmp_path / "huge.nii.gz") == (
        f"{tmp_path / 'huge.nii.gz'}: its header declares 32767 x 32767 x 32767 voxels of int16, 65,530.0 GiB, more "
        "than this machine's 16 GiB of memory: a damaged header, or an image far larger than a scan."
    )
    # what fits the machine but not its free memory now is named too
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), tmp_path / "small.nii.gz")

    def no_memory(*args):
        raise MemoryError

    monkeypatch.setattr(medical_io, "_checked_gzip_data", no_memory)
    assert _load_error(tmp_path / "small.nii.gz") == (
        f"{tmp_path / 'small.nii.gz'}: its 8 x 8 x 4 voxels of int16, 0.0 GiB do not fit in memory."
    )
    # a DICOM series whose headers declare slices of 65535 x 65535 pixels: refused before 128 GiB are asked for
    series = Path(shutil.copytree(formats["dicom"], tmp_path / "giant"))
    for path in series.iterdir():
        ds = pydicom.dcmread(path)
        ds.Rows = ds.Columns = 65535
        ds.save_as(path)
    _load_error(
        series, ValueError, r"the pixel data of .*giant.* is truncated: \d+ of 8589672450 bytes \(65535 x 65535\)"
    )
    # a NRRD header alike: ITK's "Failed to allocate memory" had named no file
    nrrd = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 32767 32767 32767\nencoding: raw\nendian: little\n\n"
    (tmp_path / "huge.nrrd").write_bytes(nrrd + bytes(16))
    assert _load_error(tmp_path / "huge.nrrd") == (
        f"{tmp_path / 'huge.nrrd'}: its header declares 32767 x 32767 x 32767 voxels of int16, 65,530.0 GiB, more "
        "than this machine's 16 GiB of memory: a damaged header, or an image far larger than a scan."
    )


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_a_nifti_cut_off_in_its_header_or_gzip_stream_is_called_cut_short(name, tmp_path):
    # nibabel had said it "cannot work out the file type" of a header cut short, and of a gzip stream ended early
    message = _load_error(_cut_nifti(tmp_path / name, (4, 4, 4), 300), ValueError)
    assert message.startswith(f"{tmp_path / name}: the NIfTI header is cut short: 300 of its 348 bytes;"), message
    if name.endswith(".gz"):
        (tmp_path / name).write_bytes(gzip.compress((tmp_path / "full.nii").read_bytes())[:40])
        _load_error(tmp_path / name, ValueError, "its compressed image data end early or are damaged")


def test_a_bad_case_is_skipped_with_its_file_named(formats, tmp_path):
    (tmp_path / "empty").mkdir()
    load = Compose([LoadImaged("image", reader=MedicalImageReader(), image_only=True), EnsureChannelFirstd("image")])
    processed, [failure] = processed_cases([{"image": str(tmp_path / "empty")}, {"image": str(formats["mha"])}], load)
    assert len(processed) == 1
    assert failure["file"] == str(tmp_path / "empty") and "holds no DICOM file" in failure["error"]


def test_the_failure_report_of_a_multi_series_folder_lists_every_series(two_series):
    load = LoadImaged("image", reader=MedicalImageReader(), image_only=True)
    processed, [failure] = processed_cases([{"image": str(two_series)}], load)
    assert processed == []
    assert "arterial" in failure["error"] and "venous" in failure["error"]


def test_list_medical_cases(formats, tmp_path, monkeypatch):
    shutil.copy(formats["nifti"], tmp_path / "b.nii.gz")
    shutil.copy(formats["mha"], tmp_path / "a.mha")
    shutil.copytree(formats["dicom"], tmp_path / "c_series")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.nii.gz").write_text("x")
    (tmp_path / "d.nii.gz").symlink_to(tmp_path / "b.nii.gz")
    with pytest.warns(UserWarning, match=r"skipping 1 entry \(not a volume file.*: notes\.txt\."):
        cases = list_medical_cases(tmp_path)
    # a link is listed under its own name, so that its outputs are named after it
    assert [Path(c["image"]).name for c in cases] == ["a.mha", "b.nii.gz", "c_series", "d.nii.gz"]
    # the outputs of a run, in a subfolder of the input (label maps, DICOM SEG files), are not read as studies
    (tmp_path / "out").mkdir()
    shutil.copy(formats["nifti"], tmp_path / "out" / "b_seg.nii.gz")
    with pytest.warns(UserWarning, match="notes.txt"):
        listed = list_medical_cases(tmp_path, output_dir=tmp_path / "out")
    assert [Path(c["image"]).name for c in listed] == ["a.mha", "b.nii.gz", "c_series", "d.nii.gz"]
    with pytest.raises(ValueError, match="is the input folder"):
        list_medical_cases(tmp_path, output_dir=tmp_path)
    (tmp_path / "d.nii.gz").unlink()
    shutil.rmtree(tmp_path / "out")
    # loose slices of one series directly in the input folder: one case for the series, where its first slice was
    slices = sorted((tmp_path / "c_series").iterdir())[:2]
    for path in slices:
        shutil.copy(path, tmp_path / f"x_{path.name}")
    uid = str(pydicom.dcmread(slices[0], stop_before_pixels=True).SeriesInstanceUID)
    with pytest.warns(UserWarning, match="notes.txt"):
        cases = [c["image"] for c in list_medical_cases(tmp_path)]
    assert [Path(c).name for c in cases[:3]] == ["a.mha", "b.nii.gz", "c_series"]
    assert cases[3:] == [series_reference(tmp_path, uid)]
    # the same from a relative input folder: the reference is absolute, like every listed path
    monkeypatch.chdir(tmp_path.parent)
    with pytest.warns(UserWarning, match="notes.txt"):
        relative = [c["image"] for c in list_medical_cases(tmp_path.name)]
    assert relative == cases
    for path in slices:
        (tmp_path / f"x_{path.name}").unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_medical_cases(tmp_path / "nowhere")


def test_a_study_this_account_may_not_open_is_a_case_of_its_own(formats, tmp_path, monkeypatch):
    # a series folder without search permission had stopped the whole batch while it was listed, and an unreadable
    # DICOM file without a suffix was skipped as no volume file, exit status 0; each is now a case that fails alone
    # (chmod cannot take the permission from root, which tests may run as: the system calls are made to refuse)
    from monai_unets.data import medical_io

    shutil.copy(formats["nifti"], tmp_path / "b.nii.gz")
    shutil.copytree(formats["dicom"], tmp_path / "locked_series")
    (tmp_path / "IM000123").write_bytes(b"\0" * 200)
    scandir, stat_of = os.scandir, os.stat
    locked = tmp_path / "locked_series"

    def refused(path, *within):
        if any(Path(path) == p or p in Path(path).parents for p in within):
            raise PermissionError(13, "Permission denied", str(path))

    # the folder cannot be listed nor anything in it reached, the file not opened
    monkeypatch.setattr(os, "scandir", lambda path=".": refused(path, locked) or scandir(path))
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: refused(path, *locked.iterdir()) or stat_of(path, *a, **k))
    monkeypatch.setattr(
        medical_io,
        "open",
        lambda path, *a, **k: refused(path, tmp_path / "IM000123") or open(path, *a, **k),
        raising=False,
    )
    cases = [Path(c["image"]).name for c in list_medical_cases(tmp_path)]
    assert cases == ["IM000123", "b.nii.gz", "locked_series"]
    # reading it names that error, not "not a supported image"
    reader = MedicalImageReader()
    with pytest.raises(PermissionError, match="IM000123"):
        reader.get_data(reader.read(str(tmp_path / "IM000123")))


def test_a_folder_per_patient_is_listed_study_by_study(formats, tmp_path):
    # studies/p1/image.nii.gz ...: subfolders of volume files are no DICOM series; their studies are listed in place
    for patient in ("p1", "p2"):
        (tmp_path / "studies" / patient).mkdir(parents=True)
        shutil.copy(formats["nifti"], tmp_path / "studies" / patient / "image.nii.gz")
    shutil.copytree(formats["dicom"], tmp_path / "studies" / "p3" / "ct")
    shutil.copytree(formats["dicom"], tmp_path / "studies" / "p4")
    cases = [c["image"] for c in list_medical_cases(tmp_path / "studies")]
    root = tmp_path / "studies"
    assert cases == [
        str(root / "p1" / "image.nii.gz"),
        str(root / "p2" / "image.nii.gz"),
        str(root / "p3" / "ct"),
        str(root / "p4"),
    ]
    assert case_output_names(cases)[:2] == ["p1_image", "p2_image"]
    # an earlier run's output folder among them (another name than this run's): its label maps are no studies
    (root / "predictions_v1").mkdir()
    shutil.copy(formats["nifti"], root / "predictions_v1" / "p1_image_seg.nii.gz")
    (root / "predictions_v1" / "failures.csv").write_text("case,file,stage,error\n")
    with pytest.warns(UserWarning, match=r"skipping 1 entry \(output folders of earlier runs.*: predictions_v1"):
        assert [c["image"] for c in list_medical_cases(root, output_dir=tmp_path / "predictions_v2")] == cases
    # one whose run stopped early holds the report of each of its processes instead
    (root / "predictions_v1" / "failures.csv").rename(root / "predictions_v1" / "failures.rank0.csv")
    with pytest.warns(UserWarning, match=r"skipping 1 entry \(output folders of earlier runs.*: predictions_v1"):
        assert [c["image"] for c in list_medical_cases(root, output_dir=tmp_path / "predictions_v2")] == cases
    shutil.rmtree(root / "predictions_v1")
    # a Decathlon task folder given as the input folder: its volumes are listed, with a warning that says how to
    # run its test list instead
    (root / "dataset.json").write_text("{}")
    with pytest.warns(UserWarning, match="holds a dataset.json: .* give the folder as dataset_dir"):
        assert [c["image"] for c in list_medical_cases(root)] == cases


def test_dicom_files_without_a_suffix_are_found_by_their_content(formats, tmp_path):
    # PACS exports and CDs name slices IM00001 or by their UID: a series folder given as the input folder is one
    # case, a lone slice is read, and a DICOMDIR beside them is skipped with the other files that are no images
    flat = tmp_path / "flat"
    flat.mkdir()
    for k, path in enumerate(sorted(formats["dicom"].iterdir())):
        shutil.copy(path, flat / f"IM{k + 1:05d}")
    uid = str(pydicom.dcmread(flat / "IM00001", stop_before_pixels=True).SeriesInstanceUID)
    directory = pydicom.Dataset()
    directory.SOPClassUID = pydicom.uid.MediaStorageDirectoryStorage
    directory.SOPInstanceUID = pydicom.uid.generate_uid()
    directory.FileSetID = "EXPORT"
    directory.file_meta = pydicom.dataset.FileMetaDataset()
    directory.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    directory.save_as(flat / "DICOMDIR", enforce_file_format=True)
    with pytest.warns(UserWarning, match=r"skipping 1 entry \(DICOM objects that are no images\): DICOMDIR \(Media"):
        cases = list_medical_cases(flat)
    assert [c["image"] for c in cases] == [series_reference(flat, uid)]
    np.testing.assert_array_equal(_load(cases[0]["image"]).numpy(), _load(formats["dicom"]).numpy())

    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(flat / "IM00003", lone / "1.2.840.10008.3")
    [case] = list_medical_cases(lone)
    image = _load(case["image"], ras=False)
    assert tuple(image.shape) == (1, 20, 24, 1)


def _add_scout(folder: Path, localizer: bool) -> Path:
    """A coronal image with the series' UID, as exports put the scout that planned a series into it."""
    ds = pydicom.dcmread(_slice_file(folder, 1))
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [-50.0, 0.0, 100.0]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER" if localizer else "AXIAL"]
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.InstanceNumber = 0
    ds.save_as(folder / "SCOUT.dcm")
    return folder / "SCOUT.dcm"


def _add_scout_series(folder: Path) -> str:
    """Two scouts of a series of their own (SCOUT1.dcm, SCOUT2.dcm) in ``folder``, beside its series; their UID."""
    scouts = pydicom.uid.generate_uid()
    for name in ("SCOUT1.dcm", "SCOUT2.dcm"):
        ds = pydicom.dcmread(_add_scout(folder, localizer=True))
        ds.SeriesInstanceUID, ds.SOPInstanceUID = scouts, pydicom.uid.generate_uid()
        ds.save_as(folder / name)
    (folder / "SCOUT.dcm").unlink()
    return scouts


def test_a_localizer_in_the_series_is_skipped_and_another_odd_slice_is_named(formats, tmp_path):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "ct"))
    _add_scout(folder, localizer=True)
    with pytest.warns(UserWarning, match=r"skipping 1 localizer image\(s\) of DICOM series .*: SCOUT\.dcm"):
        image = _load(folder)
    np.testing.assert_array_equal(image.numpy(), _load(formats["dicom"]).numpy())
    # the DICOM SEG references the same slices as the volume, without the scout, and does not warn of it again:
    # with DataLoader workers the warning had shown twice, from the worker and from the SEG writer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = pydicom.dcmread(write_dicom_seg((image > 500).to(torch.uint8), folder, tmp_path / "seg.dcm", {1: "x"}))
    assert not [str(w.message) for w in caught if "localizer" in str(w.message)]
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert pydicom.dcmread(folder / "SCOUT.dcm").SOPInstanceUID not in referenced
    assert len(referenced) == 16
    # an image of another orientation that is no localizer fails the series, naming the odd file
    _add_scout(folder, localizer=False)
    _load_error(folder, ValueError, r"different ImageOrientationPatient: .*\(16 slices\); .*\(1: SCOUT\.dcm\)")


def test_a_localizer_series_beside_the_volume_is_skipped(formats, tmp_path):
    # exports often give the scouts a series of their own, in the study's folder beside the volume they planned
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "ct"))
    scouts = _add_scout_series(folder)
    with pytest.warns(UserWarning, match=rf"skipping localizer series {scouts} in .*ct: scout images, not volumes"):
        [series] = split_dicom_series(folder)
    assert len(series.files) == 16 and not any("SCOUT" in f for f in series.files)
    with pytest.warns(UserWarning, match="skipping localizer series"):
        image = _load(folder)
    np.testing.assert_array_equal(image.numpy(), _load(formats["dicom"]).numpy())
    # listed as the one case of its folder (the reader warns when it reads it)
    assert list_medical_cases(tmp_path, split_series=True) == [{"image": str(folder.resolve())}]
    # a folder of scouts alone is what it holds: read as such, not skipped into an empty folder
    for path in folder.iterdir():
        if not path.name.startswith("SCOUT"):
            path.unlink()
    [series] = split_dicom_series(folder)
    assert series.series_uid == scouts and len(series.files) == 2


def _secondary_capture(source: Path, path: Path, series_uid: str, colour: bool = False) -> None:
    """A slice of the CT ``source`` re-labelled a secondary capture of the series ``series_uid`` (a dose page, or a
    screenshot), written to ``path``."""
    ds = pydicom.dcmread(_slice_file(source, 1))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if colour:
        rgb = np.zeros((int(ds.Rows), int(ds.Columns), 3), np.uint8)
        ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.PlanarConfiguration = "RGB", 3, 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation, ds.PixelData = 7, 0, rgb.tobytes()
    ds.save_as(path)


def test_a_dose_page_or_screenshot_beside_the_volume_is_skipped(formats, tmp_path):
    # a CD export puts every image of a study in one folder: the dose report page (one image) and screenshots
    # (colour) are secondary captures, which had each been listed as a study and failed, the run exiting 1
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "ct"))
    dose, shots = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    _secondary_capture(formats["dicom"], folder / "DOSE.dcm", dose)
    for k in range(2):
        _secondary_capture(formats["dicom"], folder / f"SHOT{k}.dcm", shots, colour=True)
    with pytest.warns(UserWarning, match="skipping secondary capture series") as warned:
        [series] = split_dicom_series(folder)
    assert len(series.files) == 16
    assert dose in str(warned[0].message) and shots in str(warned[0].message)
    # greyscale secondary captures of several images may be a converted volume: kept as a series of its own
    volume = pydicom.uid.generate_uid()
    for k in range(3):
        _secondary_capture(formats["dicom"], folder / f"VOL{k}.dcm", volume)
        ds = pydicom.dcmread(folder / f"VOL{k}.dcm")
        ds.ImagePositionPatient = pydicom.dcmread(_slice_file(formats["dicom"], k + 1)).ImagePositionPatient
        ds.save_as(folder / f"VOL{k}.dcm")
    with pytest.warns(UserWarning, match="skipping secondary capture series"):
        assert [len(s.files) for s in split_dicom_series(folder)] == [16, 3]


def test_a_flat_export_lists_its_volumes_without_scouts_dose_pages_or_documents(formats, tmp_path):
    # a PACS export of every file of a study in one folder, given as the input folder: its scouts and dose page had
    # each been a case that failed ("has no series", "is a colour DICOM image"), and a readme.txt beside the slices
    # had failed every series, the run exiting 1 for a folder whose one volume was readable
    flat = Path(shutil.copytree(formats["dicom"], tmp_path / "EXPORT"))
    scouts = _add_scout_series(flat)
    dose = pydicom.uid.generate_uid()
    _secondary_capture(formats["dicom"], flat / "DOSE.dcm", dose, colour=True)
    (flat / "readme.txt").write_text("exported by a PACS\n")
    with pytest.warns(UserWarning) as warned:
        cases = list_medical_cases(flat, split_series=True)
    said = " ".join(str(w.message) for w in warned)
    assert f"{scouts} (localizer series)" in said and f"{dose} (secondary capture series)" in said
    assert [c["image"] for c in cases] == [series_reference(flat, str(ARTERIAL))]
    with pytest.warns(UserWarning, match=r"skipping .*readme\.txt: not a DICOM file, as its name says"):
        image = _load(cases[0]["image"])
    np.testing.assert_array_equal(image.numpy(), _load(formats["dicom"]).numpy())
    # a damaged slice keeps a name no document has: it still fails the series, as leaving it out could lose a slice
    (flat / "IM9999").write_bytes(b"not a slice" * 20)
    _load_error(flat, ValueError, r"IM9999 is not a DICOM file")


def test_a_series_split_over_folders_fails_rather_than_giving_part_volumes(formats, tmp_path):
    # CD writers split a long series over folders: each folder alone is a regular stack, and each had been a case
    # whose label map covered part of the volume, the run reporting success
    images = tmp_path / "in" / "IMAGES"
    files = sorted(formats["dicom"].iterdir())
    for part, chunk in (("0001", files[:8]), ("0002", files[8:])):
        (images / part).mkdir(parents=True)
        for path in chunk:
            shutil.copy(path, images / part / path.name)
    other = Path(_write_series(_phantom(), tmp_path / "in" / "other", series_uid=VENOUS))
    cases = list_medical_cases(tmp_path / "in", split_series=True)
    assert [c["image"] for c in cases] == [str(images / "0001"), str(images / "0002"), str(other)]
    problems = [c.get(LISTING_PROBLEM_KEY) for c in cases]
    assert problems[2] is None
    assert problems[0] == problems[1]
    assert re.fullmatch(
        rf"DICOM series {ARTERIAL} has its slices in 2 folders: .*0001 \(8 slices\), .*0002 \(8 slices\); .*",
        problems[0],
    )
    # a batch job reports them as failed cases, unread, and runs the others
    dataset = CaseDataset(cases, LoadImaged("image", reader=MedicalImageReader()))
    assert [dataset[i].get(FAILURE_KEY, {}).get("stage") for i in range(3)] == ["listing", "listing", None]
    # a copy of a whole series in a second folder is no split series
    shutil.rmtree(images)
    shutil.copytree(other, tmp_path / "in" / "copy")
    assert not [c for c in list_medical_cases(tmp_path / "in", split_series=True) if LISTING_PROBLEM_KEY in c]


def test_a_bolus_tracking_series_beside_the_volume_is_skipped(formats, tmp_path):
    # a contrast study's bolus tracking (one slice position over time) had failed as duplicate positions, beside the
    # volume in a flat export and as a study's series folder, the run exiting 1 for a normal exam
    study = tmp_path / "in" / "STUDY"
    volume = Path(shutil.copytree(formats["dicom"], study / "SE2"))
    tracking = pydicom.uid.generate_uid()
    (study / "SE1").mkdir()
    for k in range(40):  # one image a second or two, over a minute or so: more than a series folder of scouts holds
        ds = pydicom.dcmread(_slice_file(volume, 3))
        ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.InstanceNumber = tracking, pydicom.uid.generate_uid(), k + 1
        ds.save_as(study / "SE1" / f"BT{k:02d}.dcm")
    with pytest.warns(UserWarning, match=r"SE1 \(series of one slice position\)"):
        assert list_medical_cases(tmp_path / "in", split_series=True) == [{"image": str(volume)}]
    for path in (study / "SE1").iterdir():
        shutil.move(path, volume / path.name)
    with pytest.warns(UserWarning, match=rf"skipping series of one slice position {tracking} in .*SE2: images over"):
        [series] = split_dicom_series(volume)
    assert len(series.files) == 16


def test_a_volume_series_folder_is_told_from_auxiliary_series_by_its_first_images(formats, tmp_path, monkeypatch):
    # the listing reads a study's series folders to skip scouts and bolus tracking (of any number of images): a
    # volume's folder of hundreds of slices is told by its first two, the rest left for the reader
    from monai_unets.data import medical_io

    volume = Path(shutil.copytree(formats["dicom"], tmp_path / "in" / "STUDY" / "SE2"))
    reads = []
    real = medical_io._dcmread
    monkeypatch.setattr(medical_io, "_dcmread", lambda path, **kwargs: reads.append(path) or real(path, **kwargs))
    assert list_medical_cases(tmp_path / "in") == [{"image": str(volume)}]
    assert len(reads) == 2


def _dicomdir(path: Path) -> None:
    directory = pydicom.Dataset()
    directory.SOPClassUID = pydicom.uid.MediaStorageDirectoryStorage
    directory.SOPInstanceUID = pydicom.uid.generate_uid()
    directory.file_meta = pydicom.dataset.FileMetaDataset()
    directory.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    directory.save_as(path, enforce_file_format=True)


def test_a_study_of_one_folder_per_series_lists_its_volumes_only(formats, tmp_path):
    # the most common export layout: PATIENT/STUDY/SE<n>/, scouts, the dose report and screenshots each in a series
    # folder of their own. Each had been a case: the scouts got a segmentation and a SEG, the others failed and the
    # run exited 1. A patient folder copied from a CD with its DICOMDIR had been one failed case "holding no DICOM"
    study = tmp_path / "in" / "PAT001" / "STUDY1"
    volume = Path(shutil.copytree(formats["dicom"], study / "SE2"))
    scouts = study / "SE1"
    scouts.mkdir()
    for name in ("SCOUT1.dcm", "SCOUT2.dcm"):
        ds = pydicom.dcmread(_add_scout(volume, localizer=True))
        ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.3.1", pydicom.uid.generate_uid()
        ds.save_as(scouts / name)
    (volume / "SCOUT.dcm").unlink()
    (study / "SE998").mkdir()
    _secondary_capture(formats["dicom"], study / "SE998" / "SHOT.dcm", "1.2.3.998", colour=True)
    (study / "SE999").mkdir()
    _rtstruct(study / "SE999" / "RS.dcm")
    _dicomdir(tmp_path / "in" / "PAT001" / "DICOMDIR")
    with pytest.warns(UserWarning) as warned:
        cases = list_medical_cases(tmp_path / "in")
    assert cases == [{"image": str(volume)}]
    said = " ".join(str(w.message) for w in warned)
    assert "skipping 1 entry (DICOM objects that are no images): DICOMDIR" in said
    assert (
        f"input folder {study}: skipping 3 entries (series that are no volumes): SE1 (localizer series), SE998 "
        "(secondary capture series), SE999 (DICOM objects that are no images: RT Structure Set Storage)" in said
    )
    # alone, a folder is read as what it holds, and the reader says what that is
    shutil.rmtree(volume)
    with pytest.warns(UserWarning):
        assert [c["image"] for c in list_medical_cases(tmp_path / "in")] == [
            str(study / n) for n in ("SE1", "SE998", "SE999")
        ]


def test_empty_folders_and_macos_archive_metadata_are_no_cases(formats, tmp_path):
    # a Decathlon archive unzipped from a Mac has __MACOSX/ of AppleDouble ._ files; both had been failed DICOM cases
    inbox = tmp_path / "in"
    (inbox / "__MACOSX" / "Task09_Spleen" / "imagesTs").mkdir(parents=True)
    (inbox / "__MACOSX" / "Task09_Spleen" / "imagesTs" / "._spleen_1.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    (inbox / "empty_patient").mkdir()
    shutil.copy(formats["nifti"], inbox / "spleen_1.nii.gz")
    (inbox / "._spleen_1.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    shutil.copy(formats["nifti"], inbox / ".spleen_2.nii.gz")  # hidden, but an image: named
    with pytest.warns(UserWarning) as caught:
        assert list_medical_cases(inbox) == [{"image": str(inbox / "spleen_1.nii.gz")}]
    said = [str(w.message) for w in caught]
    assert any("skipping 2 entries (folders without a file, hidden ones aside): __MACOSX, empty" in m for m in said)
    assert any(
        "skipping 1 entry (hidden files, whose names begin with a dot: " in m and m.endswith(": .spleen_2.nii.gz.")
        for m in said
    )
    assert not any("._spleen" in m for m in said)


def _strip_file_format(path: Path) -> None:
    """Stores the dataset bare: no preamble, no DICM mark, no file meta information (implicit VR little endian)."""
    ds = pydicom.dcmread(path)
    ds.preamble = None
    del ds.file_meta
    ds.save_as(path, implicit_vr=True, little_endian=True)


def test_dicom_stored_without_preamble_and_file_meta_is_read(formats, tmp_path):
    # older archives and some PACS store the bare dataset: the slices are read as the same volume, grouped as one
    # series when they lie loose in the input folder, and get their DICOM SEG
    bare = Path(shutil.copytree(formats["dicom"], tmp_path / "in" / "bare"))
    for path in bare.iterdir():
        _strip_file_format(path)
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(next(bare.iterdir()))
    image = _load(bare)
    np.testing.assert_array_equal(image.numpy(), _load(formats["dicom"]).numpy())
    np.testing.assert_allclose(image.affine, _load(formats["dicom"]).affine)
    for path in bare.iterdir():
        path.rename(tmp_path / "in" / path.name)
    bare.rmdir()
    [case] = list_medical_cases(tmp_path / "in")
    assert parse_series_reference(case["image"])[1] is not None
    label_map = (_load(case["image"], ras=False) > 500).to(torch.uint8)
    seg = write_dicom_seg(label_map, tmp_path / "in", tmp_path / "seg.dcm", {1: "lesion"})
    assert pydicom.dcmread(seg).NumberOfFrames == 4  # the lesion's slices
    # a file that is no DICOM dataset at all still says so
    (tmp_path / "in" / "notes.dcm").write_text("written by hand")
    _load_error(tmp_path / "in" / "notes.dcm", ValueError, "notes.dcm is not a DICOM file")


def test_reader_by_short_name_in_a_bundle_config(formats):
    parser = ConfigParser(
        {
            "imports": ["$import monai_unets.data.medical_io"],
            "load": {"_target_": "LoadImaged", "keys": "image", "reader": {"_target_": "MedicalImageReader"}},
            "load_by_path": {
                "_target_": "LoadImaged",
                "keys": "image",
                "reader": "monai_unets.data.medical_io.MedicalImageReader",
            },
        }
    )
    for key in ("load", "load_by_path"):
        image = parser.get_parsed_content(key)({"image": str(formats["dicom"])})["image"]
        assert tuple(image.shape) == (20, 24, 16)


def test_a_nifti_whose_affine_cannot_place_its_voxels_is_refused(tmp_path):
    volume = np.zeros((8, 9, 5), np.int16)
    image = nib.Nifti1Image(volume, None)
    image.set_sform(np.diag([0.8, 0.8, 0.0, 1.0]), code=2)  # a zero slice spacing
    image.set_qform(None, code=0)
    nib.save(image, tmp_path / "flat.nii.gz")
    # MONAI's reader alone puts the identity in its place: 1 mm voxels at the origin, without a word
    _load_error(tmp_path / "flat.nii.gz", ValueError, f"{tmp_path / 'flat.nii.gz'} has a singular")


def test_a_nifti_whose_sform_and_qform_disagree_is_read_by_its_sform_with_a_warning(tmp_path):
    rotated = np.eye(4)
    rotated[:2, :2] = [[np.cos(0.5), -np.sin(0.5)], [np.sin(0.5), np.cos(0.5)]]
    rotated[:3, 3] = [5.0, 0.0, 0.0]
    image = nib.Nifti1Image(np.zeros((8, 9, 5), np.int16), np.eye(4))
    image.set_qform(np.eye(4), code=1)
    image.set_sform(rotated, code=2)
    nib.save(image, tmp_path / "two.nii.gz")
    with pytest.warns(UserWarning, match="sform and qform place the volume up to .* mm apart"):
        loaded = _load(tmp_path / "two.nii.gz")
    assert np.allclose(loaded.affine.numpy(), rotated, atol=1e-5)
    # one affine written by nibabel into both: no warning
    oblique = rotated @ np.diag([0.7, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((8, 9, 5), np.int16), oblique), tmp_path / "one.nii.gz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load(tmp_path / "one.nii.gz")
    assert not [str(w.message) for w in caught if "sform and qform" in str(w.message)]


@pytest.mark.parametrize("stored", [(8, 9, 5), (8, 9, 5, 1), (8, 9, 5, 1, 1)])
def test_a_volume_with_singleton_time_or_component_axes_is_one_volume(tmp_path, stored):
    volume = np.arange(8 * 9 * 5, dtype=np.int16).reshape(8, 9, 5)
    nib.save(nib.Nifti1Image(volume.reshape(stored), np.diag([0.8, 0.9, 2.5, 1.0])), tmp_path / "v.nii.gz")
    loaded = _load(tmp_path / "v.nii.gz", ras=False)
    assert tuple(loaded.shape) == (1, 8, 9, 5)
    assert np.array_equal(loaded.numpy()[0], volume)
    # two volumes stay two channels, which the bundles' checks refuse
    nib.save(nib.Nifti1Image(np.stack([volume, volume], -1), np.eye(4)), tmp_path / "two.nii.gz")
    assert _load(tmp_path / "two.nii.gz", ras=False).shape[0] == 2


@pytest.mark.parametrize("qform_code", [0, 1])
@pytest.mark.parametrize("sheared", [False, True])
def test_a_nifti_is_placed_by_nibabels_affine_whatever_its_pixdim(tmp_path, qform_code, sheared):
    # MONAI's reader puts the qform (or, without one, the identity) in place of an sform whose voxel sizes differ
    # from pixdim: a tilted stack's sheared sform, or a header whose pixdim was never updated
    sform = np.array([[-0.9, 0, 0, 57.15], [0, -0.9, 0, 49.95], [0, 0, 2.5, 100.0], [0, 0, 0, 1]])
    if sheared:
        sform[1, 2] = 0.67
    image = nib.Nifti1Image(np.arange(8 * 9 * 5, dtype=np.int16).reshape(8, 9, 5), None)
    image.set_qform(np.diag([1.0, 1.0, 3.0, 1.0]) if qform_code else None, code=qform_code)
    image.set_sform(sform, code=2)
    image.header.set_zooms((1.0, 1.0, 1.0))
    nib.save(image, tmp_path / "case.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the qform/sform disagreement is pointed out; the placement is tested
        loaded = _load(tmp_path / "case.nii.gz", ras=False)
    assert np.allclose(loaded.affine.numpy(), nib.load(tmp_path / "case.nii.gz").affine, atol=1e-5)
    assert np.allclose(loaded.affine.numpy(), sform, atol=1e-5)
    assert np.array_equal(loaded.numpy()[0], np.asanyarray(image.dataobj))


def _sitk_ras_affine(path: Path) -> np.ndarray:
    """The voxel-to-world affine (RAS, mm) that ITK-based tools read from ``path``."""
    image = sitk.ReadImage(str(path))
    lps = np.eye(4)
    lps[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


@pytest.mark.parametrize("unit, per_mm", [("meter", 1e-3), ("micron", 1e3)])
@pytest.mark.parametrize("forms", ["sform and qform", "sform", "qform", "none"])
def test_a_nifti_in_meters_or_microns_is_read_in_mm(tmp_path, unit, per_mm, forms):
    # nibabel and MONAI take the numbers as mm: a CT in meters became 1000 times smaller (one voxel after
    # resampling), one in microns 1000 times larger (hundreds of GB to allocate)
    to_mm = np.diag([1.0 / per_mm] * 3 + [1.0])
    stored = np.linalg.inv(to_mm) @ _ras_affine()
    image = nib.Nifti1Image(_phantom(), stored)
    image.header.set_xyzt_units(unit, "sec")
    image.set_sform(stored if "sform" in forms else None, code=2 if "sform" in forms else 0)
    image.set_qform(stored if "qform" in forms else None, code=1 if "qform" in forms else 0)
    nib.save(image, tmp_path / "ct.nii.gz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = _load(tmp_path / "ct.nii.gz", ras=False)
    assert not [str(w.message) for w in caught if "sform and qform" in str(w.message)]  # scaled alike
    affine = loaded.affine.numpy()
    # without forms, pixdim alone places the voxels (nibabel's way), scaled as well
    assert np.allclose(affine, to_mm @ nib.load(tmp_path / "ct.nii.gz").affine, rtol=1e-5, atol=1e-4)
    if forms != "none":
        assert np.allclose(affine, _ras_affine(), atol=1e-4)
        assert np.allclose(affine, _sitk_ras_affine(tmp_path / "ct.nii.gz"), atol=1e-4)  # where ITK places it
    # the header MONAI keeps says the same: pixdim in mm, and mm as the unit (the time unit kept)
    assert np.allclose(loaded.meta["pixdim"][1:4], np.linalg.norm(affine[:3, :3], axis=0), rtol=1e-5)
    assert int(loaded.meta["xyzt_units"]) == nib.nifti1.unit_codes["mm"] + nib.nifti1.unit_codes["sec"]
    assert np.array_equal(loaded.numpy()[0], _phantom())


def _with_zero_slice_spacing(path: Path) -> Path:
    """``path``, an uncompressed NIfTI, with pixdim[3] set to 0 in the file."""
    stored = bytearray(path.read_bytes())
    stored[88:92] = np.float32(0.0).tobytes()  # pixdim[3]: 76 + 3 * 4
    path.write_bytes(bytes(stored))
    return path


@pytest.mark.parametrize("qform_code", [1, 0])
def test_a_nifti_with_a_zero_voxel_size_and_no_sform_is_refused(tmp_path, qform_code, caplog):
    # nibabel puts 1 in place of a pixdim of 0 on loading (a warning naming no file): the study was read as
    # 1 mm slices; the qform, or pixdim alone without any form, sizes the voxels by it
    image = nib.Nifti1Image(_phantom(), None)
    image.set_sform(None, code=0)
    image.set_qform(np.diag([0.8, 0.7, 2.5, 1.0]) if qform_code else None, code=qform_code)
    nib.save(image, tmp_path / "flat.nii")
    path = _with_zero_slice_spacing(tmp_path / "flat.nii")
    _load_error(path, ValueError, re.escape(f"{path} has a voxel size of 0 (pixdim[3] = 0) and no sform"))
    # the refusal alone: nibabel's line about its repair, which the reader does not use, had come before it
    assert "setting 0 dims to 1" not in caplog.text


def test_an_sform_places_the_voxels_whatever_a_zero_pixdim_says(tmp_path, caplog):
    sform = np.diag([0.8, 0.7, 2.5, 1.0])
    image = nib.Nifti1Image(_phantom(), sform)
    image.set_qform(None, code=0)
    image.set_sform(sform, code=2)
    nib.save(image, tmp_path / "sform.nii")
    loaded = _load(_with_zero_slice_spacing(tmp_path / "sform.nii"), ras=False)
    assert np.allclose(loaded.affine.numpy(), sform)
    # a file that is read keeps nibabel's word about the header field it repaired
    assert "setting 0 dims to 1" in caplog.text


def test_nibabels_repair_lines_name_the_file_they_are_about(tmp_path, caplog):
    # nibabel repairs a wrong sizeof_hdr and reads the image right, but its line named no file: in a batch the user
    # could not tell which file had the faulty header
    nib.save(nib.Nifti1Image(_phantom(), np.eye(4)), tmp_path / "size.nii")
    stored = bytearray((tmp_path / "size.nii").read_bytes())
    stored[0:4] = np.int32(350).tobytes()
    (tmp_path / "size.nii").write_bytes(bytes(stored))
    loaded = _load(tmp_path / "size.nii", ras=False)
    assert np.array_equal(loaded.numpy()[0], _phantom())
    assert f"{tmp_path / 'size.nii'}: sizeof_hdr should be 348; set sizeof_hdr to 348" in caplog.text


@pytest.mark.parametrize("keep", [400, 600, 800])
def test_a_slice_cut_off_in_its_header_is_called_truncated(formats, tmp_path, keep):
    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "cut"))
    path = _slice_file(folder, 6)
    path.write_bytes(path.read_bytes()[:keep])
    message = _load_error(folder, ValueError, str(path))
    assert "truncated" in message or "cannot read the DICOM header" in message, message
    assert "without image data" not in message


def test_a_lone_dicom_file_that_is_cut_in_its_header_or_empty_says_so(formats, tmp_path):
    data = _slice_file(formats["dicom"], 6).read_bytes()
    inbox = tmp_path / "in"
    inbox.mkdir()
    # only the file meta is left, which says CT Image Storage: it had been called "a DICOM unknown object"
    (inbox / "cut.dcm").write_bytes(data[: data.index(b"\x08\x00\x16\x00UI", 132)])
    _load_error(inbox / "cut.dcm", ValueError, "cut.dcm is a DICOM CT Image Storage file whose header ends before")
    # without a suffix it is a case of its own, reported when read, where it had been skipped as no image
    (inbox / "cut.dcm").rename(inbox / "IM00006")
    assert list_medical_cases(inbox) == [{"image": str(inbox / "IM00006")}]
    (inbox / "empty.dcm").touch()
    _load_error(inbox / "empty.dcm", ValueError, r"empty\.dcm is empty \(0 bytes\)")  # not "is not a DICOM file"
    series = Path(shutil.copytree(formats["dicom"], tmp_path / "series"))
    (series / "IM9999.dcm").touch()
    _load_error(series, ValueError, r"IM9999\.dcm is empty \(0 bytes\)")


def test_a_slice_cut_off_in_its_compressed_pixel_data_is_called_truncated_there(formats, tmp_path):
    # pydicom keeps nothing of a dataset whose encapsulated pixel data end before their delimiter; the message had
    # blamed a header that was whole
    from pydicom.uid import RLELossless

    folder = Path(shutil.copytree(formats["dicom"], tmp_path / "rle"))
    path = _slice_file(folder, 6)
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(path)
    path.write_bytes(path.read_bytes()[:-300])
    expected = f"{path} is a DICOM CT Image Storage file whose compressed pixel data end before their closing delimiter"
    assert "header" not in _load_error(folder, ValueError, re.escape(expected))
    _load_error(path, ValueError, re.escape(expected))


def _rtstruct(path: Path) -> Path:
    """An RT Structure Set: a DICOM object without Rows, Columns or pixel data."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"  # RT Structure Set Storage
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3.4", "1.2.3.5", "RTSTRUCT"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_dicom_object_that_is_no_image_is_named_as_such(tmp_path):
    _rtstruct(tmp_path / "rtstruct.dcm")
    _load_error(tmp_path / "rtstruct.dcm", ValueError, "RT Structure Set Storage object, not an image")


def test_dicom_objects_that_are_no_images_are_skipped_beside_the_images(formats, tmp_path):
    # an export of a study holds its segmentations and structure sets beside the slices, and an earlier run's SEG
    # may be copied back next to its study: they have Rows, Columns and frames (SEG, RT Dose) or no pixels at all
    study = Path(shutil.copytree(formats["dicom"], tmp_path / "in" / "study"))
    label_map = (_load(study, ras=False) > 500).to(torch.uint8)
    write_dicom_seg(label_map, study, tmp_path / "seg.dcm", {1: "lesion"})
    write_dicom_seg(
        label_map + (_load(study, ras=False) > 700), study, tmp_path / "in" / "earlier_seg.dcm", {1: "a", 2: "b"}
    )
    shutil.copy(tmp_path / "seg.dcm", study / "SEG.dcm")
    shutil.copy(_rtstruct(tmp_path / "rtstruct.dcm"), study / "RS")
    # they had split the folder into two series, the SEG's frames read as a CT; the structure set failed the series
    with pytest.warns(
        UserWarning, match=r"skipping RS \(RT Structure Set Storage\), SEG\.dcm \(Segmentation Storage\)"
    ):
        np.testing.assert_array_equal(_load(study).numpy(), _load(formats["dicom"]).numpy())
    with pytest.warns(UserWarning, match=r"skipping 1 entry \(DICOM objects that are no images\): earlier_seg\.dcm"):
        assert list_medical_cases(tmp_path / "in", split_series=True) == [{"image": str(study)}]
    # given as a file, e.g. as a label in a datalist, a SEG is refused as such (its frames are no volume either)
    _load_error(tmp_path / "seg.dcm", ValueError, "Segmentation Storage object, not an image; DICOM SEG labels are not")
    # a label map SEG (DICOM 2024), a class that pydicom 3.0 does not name, is one too
    labelmap = pydicom.dcmread(tmp_path / "seg.dcm")
    labelmap.SOPClassUID = labelmap.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.7"
    labelmap.save_as(study / "LABELMAP.dcm")
    with pytest.warns(UserWarning, match=r"LABELMAP\.dcm \(Label Map Segmentation Storage\)"):
        np.testing.assert_array_equal(_load(study).numpy(), _load(formats["dicom"]).numpy())
    _load_error(study / "LABELMAP.dcm", ValueError, "Label Map Segmentation Storage object, not an image; DICOM SEG")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tmp_path / "rtstruct.dcm", alone / "RS.dcm")
    _load_error(alone, ValueError, r"holds no image, only DICOM objects of other kinds: RS\.dcm \(RT Structure Set")
    # given as a label, a structure set is told how to become one
    _load_error(alone / "RS.dcm", ValueError, "RT Structure Set Storage object, not an image; RT structure set labels")


def _load_image_notices(env: dict) -> str:
    import subprocess
    import sys

    code = "import monai_unets\nfrom monai.transforms import LoadImage\nLoadImage()\nLoadImage()\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout + run.stderr


@pytest.mark.slow
def test_nvimgcodec_notices_only_when_that_reader_is_chosen():
    from monai.data.nvimgcodec_pydicom_plugin import is_nvimgcodec_available

    if is_nvimgcodec_available():
        pytest.skip("nvImageCodec is installed: MONAI reports nothing either way")
    env = {k: v for k, v in os.environ.items() if k != "MONAI_DICOM_READER"}
    # every LoadImage constructs MONAI's nvImageCodec reader, which reported the missing GPU decoder each time
    assert "nvImageCodec" not in _load_image_notices(env)
    chosen = _load_image_notices({**env, "MONAI_DICOM_READER": "nvimgcodec"})
    assert "nvImageCodec is not available" in chosen
    assert "did not register successfully" in chosen


def test_a_big_endian_nifti_loads_without_a_dtype(tmp_path):
    from monai.transforms import LoadImage

    values = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3) - 30
    image = nib.Nifti1Image(values, np.diag([0.8, 0.8, 2.0, 1.0]), nib.Nifti1Header(endianness=">"))
    nib.save(image, tmp_path / "be.nii.gz")
    assert nib.load(tmp_path / "be.nii.gz").get_data_dtype().byteorder == ">"
    # the inference configs load with dtype None, which kept the file's byte order and failed in torch
    loaded = LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)(str(tmp_path / "be.nii.gz"))
    np.testing.assert_array_equal(np.asarray(loaded), values)


def test_links_back_up_the_input_folder_are_not_followed(tmp_path):
    (tmp_path / "elsewhere.nii.gz").touch()  # a study beside the input folder
    inbox = tmp_path / "inbox"
    (inbox / "p1").mkdir(parents=True)
    (inbox / "a.nii.gz").touch()
    (inbox / "p1" / "b.nii.gz").touch()
    (inbox / "loop").symlink_to(".")
    (inbox / "p1" / "up").symlink_to("..")
    (inbox / "parent").symlink_to("..")
    with pytest.warns(UserWarning, match="links to this folder, a folder above it or a folder listed already"):
        cases = list_medical_cases(inbox)
    # followed, the links had listed each study about 40 times and the studies around the input folder
    assert [c["image"] for c in cases] == [str(inbox / "a.nii.gz"), str(inbox / "p1" / "b.nii.gz")]


def test_links_between_folders_list_each_study_once(tmp_path):
    inbox, outside = tmp_path / "inbox", tmp_path / "archive"
    for folder in (inbox / "a", inbox / "b", outside / "x"):
        folder.mkdir(parents=True)
        (folder / f"{folder.name}.nii.gz").touch()
    # two sibling folders linking to each other had listed each other's studies ~40 times, links within links
    (inbox / "a" / "to_b").symlink_to("../b")
    (inbox / "b" / "to_a").symlink_to("../a")
    # a folder outside, linked in twice, and linking back to itself through another link
    (inbox / "x1").symlink_to(outside / "x")
    (inbox / "x2").symlink_to(outside / "x")
    (outside / "x" / "again").symlink_to(outside / "x")
    # a study in a hidden folder, which the listing does not walk, shown by a link (a data versioning tool's store)
    (inbox / ".store" / "p").mkdir(parents=True)
    (inbox / ".store" / "p" / "p.nii.gz").touch()
    (inbox / "p").symlink_to(".store/p")
    # a DICOM series folder outside, linked in twice
    _write_series(np.zeros((4, 4, 3), np.int16), outside / "series")
    (inbox / "s1").symlink_to(outside / "series")
    (inbox / "s2").symlink_to(outside / "series")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cases = list_medical_cases(inbox)
    assert [c["image"] for c in cases] == [
        str(inbox / "a" / "a.nii.gz"),
        str(inbox / "b" / "b.nii.gz"),
        str(inbox / "p" / "p.nii.gz"),
        str(inbox / "s1"),
        str(inbox / "x1" / "x.nii.gz"),
    ]
    said = " ".join(str(w.message) for w in caught)
    assert "links to folders within the input folder, listed where they lie): to_b" in said
    assert "links to folders within the input folder, listed where they lie): to_a" in said
    assert "a folder above it or a folder listed already): s2, x2" in said


def test_folders_too_deep_are_skipped_and_the_others_listed(tmp_path):
    from monai_unets.data.medical_io import MAX_FOLDER_DEPTH

    (tmp_path / "a.nii.gz").touch()
    deep = tmp_path / "d"
    # a tree beyond Python's recursion limit had stopped the whole batch; this one is a little deeper than the limit
    for level in range(1, MAX_FOLDER_DEPTH + 8):
        (deep / "d.nii.gz").parent.mkdir(parents=True, exist_ok=True)
        if level == MAX_FOLDER_DEPTH:
            (deep / "last.nii.gz").touch()
        deep = deep / "d"
    deep.mkdir()
    (deep / "lost.nii.gz").touch()
    with pytest.warns(UserWarning, match=rf"folders more than {MAX_FOLDER_DEPTH} levels below the input folder"):
        cases = list_medical_cases(tmp_path)
    assert [c["image"] for c in cases] == [
        str(tmp_path / "a.nii.gz"),
        str(tmp_path.joinpath(*["d"] * MAX_FOLDER_DEPTH, "last.nii.gz")),
    ]


def test_an_output_folder_deeper_inside_the_input_folder_is_left_out(tmp_path):
    (tmp_path / "a.nii.gz").touch()
    output = tmp_path / "results" / "run1"
    output.mkdir(parents=True)
    (output / "a_seg.nii.gz").touch()
    # results/ then held no study, which had ended the whole listing with "has no image"
    assert list_medical_cases(tmp_path, output_dir=output) == [{"image": str(tmp_path / "a.nii.gz")}]


def _oblique_sitk(values: np.ndarray) -> sitk.Image:
    """``values`` ``(z, y, x)`` as a SimpleITK image with an oblique direction, anisotropic spacing and an origin."""
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.8, 0.7, 2.5))
    image.SetOrigin((-12.5, 30.25, 7.0))
    rotation = sitk.VersorTransform((0.3, -0.2, 0.9), 0.4).GetMatrix()
    image.SetDirection(rotation)
    return image


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize(
    ("dtype", "values", "read_as"),
    [
        (np.int64, [0, 1, 2], np.int32),
        (np.int64, [-(2**40), 2**40], np.float64),
        (np.int8, [-128, 0, 127], np.int16),
    ],
)
def test_int8_and_int64_files_read_exactly_with_itks_geometry(tmp_path, suffix, dtype, values, read_as):
    """int64 (numpy's default integer, as SimpleITK writes it) and int8 files, which ITK's Python modules refused."""
    volume = np.zeros((6, 5, 4), dtype)
    volume.flat[: len(values)] = values
    path = tmp_path / f"label{suffix}"
    sitk.WriteImage(_oblique_sitk(volume), str(path))
    reference = tmp_path / f"reference{suffix}"  # the same geometry in a type ITK reads
    sitk.WriteImage(_oblique_sitk(volume.astype(np.float64)), str(reference))
    reader = MedicalImageReader()
    array, meta = reader.get_data(reader.read(str(path)))
    itk_array, itk_meta = ITKReader(affine_lps_to_ras=True).get_data(ITKReader().read(str(reference)))
    assert array.dtype == read_as
    np.testing.assert_array_equal(array, itk_array)
    np.testing.assert_array_equal(array, volume.T)
    for key in ("affine", "original_affine", "spacing", "spatial_shape"):
        np.testing.assert_array_equal(meta[key], itk_meta[key])


def test_int64_values_beyond_exact_floats_are_refused(tmp_path):
    sitk.WriteImage(_oblique_sitk(np.full((3, 3, 3), 2**60, np.int64)), str(tmp_path / "big.nrrd"))
    reader = MedicalImageReader()
    # "<file>: " leads the message, which failures.csv and check-data give after the file without naming it again
    with pytest.raises(ValueError, match=r"big\.nrrd: holds 64-bit integers .* cannot be read exactly"):
        reader.get_data(reader.read(str(tmp_path / "big.nrrd")))


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_vector_files_read_with_their_values_as_channels(tmp_path, suffix):
    """3 values per voxel (RGB, vector) come as 3 channels, for the channel check to refuse in a 1-channel bundle;
    a 1-element vector axis is one channel, as a NIfTI (x, y, z, 1) is."""
    volume = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    one = _oblique_sitk(volume)
    sitk.WriteImage(sitk.Compose([one, one * 2, one * 3]), str(tmp_path / f"v3{suffix}"))
    sitk.WriteImage(sitk.Compose([one]), str(tmp_path / f"v1{suffix}"))
    loader = Compose([LoadImaged("image", reader=MedicalImageReader(), image_only=True), EnsureChannelFirstd("image")])
    three = loader({"image": str(tmp_path / f"v3{suffix}")})["image"]
    single = loader({"image": str(tmp_path / f"v1{suffix}")})["image"]
    assert three.shape == (3, 4, 5, 6) and single.shape == (1, 4, 5, 6)
    for channel in range(3):
        np.testing.assert_array_equal(three[channel].numpy(), volume.T * (channel + 1))
    np.testing.assert_array_equal(single[0].numpy(), volume.T)
    np.testing.assert_array_equal(three.affine, single.affine)


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        # nibabel took the header for one of the other byte order: "vox offset 0 too low for single file nifti1"
        (40, np.int16(9), "the NIfTI header is damaged: dim[0], its number of dimensions, is 9; it must be 1 to 7."),
        # read as an empty image
        (40, np.int16(0), "the NIfTI header is damaged: dim[0], its number of dimensions, is 0; it must be 1 to 7."),
        # "negative count"
        (46, np.int16(-5), "the NIfTI header is damaged: dim[3] = -5; every dimension must be at least 1."),
        # "data code 999 not recognized"
        (70, np.int16(999), "the NIfTI header cannot be read: data code 999 not recognized."),
    ],
)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_damaged_nifti_header_names_the_file_and_the_fault(tmp_path, suffix, offset, value, reason):
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4)), str(tmp_path / "whole.nii"))
    data = bytearray((tmp_path / "whole.nii").read_bytes())
    data[offset : offset + value.nbytes] = value.tobytes()
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(gzip.compress(bytes(data)) if suffix == ".nii.gz" else bytes(data))
    reader = MedicalImageReader()
    with pytest.raises(ValueError) as raised:
        reader.get_data(reader.read(str(path)))
    assert str(raised.value) == f"{path}: {reason}"


def test_itk_reads_in_threads_take_turns(tmp_path, monkeypatch):
    """ITK loads its modules on a template lookup without a lock: concurrent reads (the data checks' threads) loaded
    them twice over, printing thousands of "template already defined" warnings."""
    sitk.WriteImage(_oblique_sitk(np.zeros((4, 4, 4), np.int16)), str(tmp_path / "a.nrrd"))
    reader = MedicalImageReader()
    itk_read, running, most = reader.itk_reader.read, [], []

    def read(*args, **kwargs):
        running.append(1)
        most.append(len(running))
        time.sleep(0.05)
        try:
            return itk_read(*args, **kwargs)
        finally:
            running.pop()

    monkeypatch.setattr(reader.itk_reader, "read", read)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: reader.get_data(reader.read(str(tmp_path / "a.nrrd"))), range(4)))
    assert max(most) == 1 and len(most) == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_reads_with_itk_while_a_thread_of_its_parent_holds_the_lock():
    """A DataLoader worker forked while another thread read through ITK had copied the held lock and waited for ever."""
    from monai_unets.data import medical_io

    with medical_io._ITK_LOCK:
        child = os.fork()
        if child == 0:  # the child: its lock must be free
            os._exit(0 if medical_io._ITK_LOCK.acquire(timeout=5) else 1)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_an_rgb_nifti_reads_its_colours_as_channels(tmp_path):
    """numpy's fields of an RGB NIfTI had reached torch, which failed with "can't convert np.ndarray of type
    numpy.void"; its colours are channels, which a 1-channel bundle's channel check refuses."""
    rgb = np.zeros((4, 5, 6), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["G"], rgb["B"] = 7, 9
    nib.Nifti1Image(rgb, np.diag([1.2, 1.2, 2.5, 1])).to_filename(tmp_path / "rgb.nii.gz")
    loader = Compose([LoadImaged("image", reader=MedicalImageReader(), image_only=True), EnsureChannelFirstd("image")])
    image = loader({"image": str(tmp_path / "rgb.nii.gz")})["image"]
    assert image.shape == (3, 4, 5, 6)
    assert [int(image[c].max()) for c in range(3)] == [0, 7, 9]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_channel_files_whose_headers_differ_by_rounding_make_one_image(tmp_path, suffix):
    # tools that write each channel of a case round its header on their own: MONAI stacked them only where the
    # affines were equal to 1e-8, and refused the case with its two matrices, however close
    import SimpleITK as sitk

    volume = _phantom().astype(np.float32)

    def channel(name: str, shift: float) -> str:
        image = sitk.GetImageFromArray(np.transpose(volume, (2, 1, 0)).copy())
        image.SetSpacing((0.8, 0.7, 2.5))
        image.SetOrigin((10.0 + shift, -4.0, 3.0 - shift))
        sitk.WriteImage(image, str(tmp_path / f"{name}{suffix}"))
        return str(tmp_path / f"{name}{suffix}")

    first, rounded, moved = channel("t2", 0.0), channel("adc", 2e-6), channel("dwi", 0.5)
    reader = MedicalImageReader()
    stacked = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)([first, rounded])
    alone = LoadImage(reader=reader, image_only=True, ensure_channel_first=True)(first)
    assert tuple(stacked.shape) == (2, *alone.shape[1:])
    np.testing.assert_array_equal(stacked.affine.numpy(), alone.affine.numpy())
    np.testing.assert_array_equal(stacked[1].numpy(), alone[0].numpy())
    with pytest.raises(Exception) as raised:
        LoadImage(reader=reader, image_only=True)([first, moved])
    error = raised.value
    while error.__cause__ is not None:
        error = error.__cause__
    assert str(error).startswith(f"{moved} is placed up to 0.707 mm away from {first}, the case's first channel file")


def test_pydicom_gives_each_of_its_messages_once(caplog):
    import logging

    # pydicom logs a header's problem at every read of it, naming no file: a series of 40 slices with an unknown
    # character set had given 369 identical lines
    log = logging.getLogger("pydicom")
    with caplog.at_level(logging.WARNING):
        for _ in range(40):
            log.warning("Unknown encoding '%s' - using default encoding instead", "ISO_IR 999 (once test)")
        log.warning("another message (once test)")
    assert caplog.text.count("ISO_IR 999 (once test)") == 1
    assert "another message (once test)" in caplog.text


def test_a_flat_series_read_by_its_reference_says_nothing_of_the_subfolders_listed_beside_it(formats, tmp_path):
    # the listing makes a flat export's subfolders cases of their own: reading its series had warned that they were
    # ignored, though the run processed them
    export = Path(shutil.copytree(formats["dicom"], tmp_path / "in"))
    uid = str(pydicom.dcmread(next(export.iterdir()), stop_before_pixels=True).SeriesInstanceUID)
    (export / "sub").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _load(series_reference(export, uid))
    assert not [w for w in caught if "ignoring subfolders" in str(w.message)]
    with pytest.warns(UserWarning, match=r"ignoring subfolders of DICOM folder .*in: sub"):
        _load(export)
