"""write_dicom_seg: a label map loaded by MONAI from a DICOM folder goes back onto the source slices as DICOM SEG."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import torch
from highdicom.seg import segread
from monai.data import MetaTensor
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Orientationd,
    Spacingd,
)
from monai_unets.data.dicom_seg import DicomSegError, write_dicom_seg
from monai_unets.data.medical_io import MedicalImageReader
from monai_unets.scripts.demo_ct import write_dicom_series

from tests.geometry import write_enhanced_ct

LABELS = {1: "pancreas", 2: "tumour", 3: "spleen"}  # 3 never predicted: a segment without frames
BOX, SUB_BOX = 300, 800  # HU of the organ box and of the lesion inside it
_COS, _SIN = np.cos(0.4), np.sin(0.4)
ORIENTATIONS = {
    "axial": (1, 0, 0, 0, 1, 0),
    "axial_feet_first": (1, 0, 0, 0, -1, 0),  # slice normal points to the feet
    "coronal": (1, 0, 0, 0, 0, -1),
    "oblique": (_COS, _SIN, 0, 0, 0, -1),
}


def write_ct_series(folder, iop=ORIENTATIONS["axial"], shape=(7, 12, 10), series_uid=None, study_uid=None):
    """Single-frame CT slices with a bright box and a brighter sub-box; rows, columns and slices all differ.

    Pixel spacing is 0.7 mm between rows and 0.9 mm between columns, slices are 2.5 mm apart along the slice
    normal (row direction x column direction), and the files are named out of slice order. Returns the volume
    (slices, rows, columns), the SOPInstanceUIDs in slice order and the SeriesInstanceUID.
    """
    n = shape[0]
    iop = np.asarray(iop, dtype=float)
    direction = np.column_stack([iop[:3], iop[3:], np.cross(iop[:3], iop[3:])])  # column, row, slice directions
    volume = np.full(shape, -1000, dtype=np.int16)
    volume[1:6, 2:9, 3:8] = BOX
    volume[2:4, 3:5, 4:6] = SUB_BOX
    series = write_dicom_series(
        volume.transpose(2, 1, 0),  # (column, row, slice)
        folder,
        spacing=(0.9, 0.7, 2.5),  # column, row, slice
        origin_lps=(-20.0, 10.0, 30.0),
        direction_lps=direction,
        series_uid=series_uid,
        study_uid=study_uid,
        rescale_intercept=0,
        file_name=lambda s: f"im{(s * 3) % n:03d}.dcm",
    )
    return volume, series.sop_uids, series.series_uid


def load(folder, reader="ITKReader"):
    data = Compose([LoadImaged("image", reader=reader, image_only=True), EnsureChannelFirstd("image")])
    return data({"image": str(folder)})["image"]


def label_map_of(image):
    """Label 1 on the box, 2 on the sub-box, computed in MONAI's array layout."""
    return ((image >= BOX).to(torch.uint8) + (image >= SUB_BOX).to(torch.uint8)).as_tensor()


def frames_of(seg):
    """(frame index, referenced source SOPInstanceUID, segment number, IPP) for each frame of a SEG."""
    out = []
    shared = seg.SharedFunctionalGroupsSequence[0]
    for i, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        # with a single segment, highdicom may put the segment identification into the shared groups
        holder = item if "SegmentIdentificationSequence" in item else shared
        number = holder.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        position = np.array(item.PlanePositionSequence[0].ImagePositionPatient, dtype=float)
        out.append((i, source, number, position))
    return out


def assert_frames_match_voxels(seg, label_map, affine, names):
    """Every pixel centre of every SEG frame, taken through the label map's affine, hits a voxel of that label."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, dtype=float)
    row_spacing, col_spacing = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    to_voxel = np.linalg.inv(np.asarray(affine, dtype=float))
    rows, cols = np.meshgrid(np.arange(seg.Rows), np.arange(seg.Columns), indexing="ij")
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    value_of_name = {name: value for value, name in names.items()}
    value_of_segment = {item.SegmentNumber: value_of_name[item.SegmentLabel] for item in seg.SegmentSequence}
    for i, _, number, position in frames_of(seg):
        # pixel (r, c) of a frame lies at IPP + c * column spacing * IOP[:3] + r * row spacing * IOP[3:] (LPS)
        lps = position[:, None, None] + iop[:3, None, None] * col_spacing * cols
        lps = lps + iop[3:, None, None] * row_spacing * rows
        ras = lps * np.array([-1.0, -1.0, 1.0])[:, None, None]
        index = np.einsum("ij,jrc->irc", to_voxel[:3, :3], ras) + to_voxel[:3, 3, None, None]
        np.testing.assert_allclose(index, np.round(index), atol=1e-2)
        index = np.round(index).astype(int)
        voxels = label_map[index[0], index[1], index[2]]
        np.testing.assert_array_equal(pixels[i].astype(bool), voxels == value_of_segment[number])


@pytest.mark.parametrize("reader", ["ITKReader", "PydicomReader"])
@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_round_trip_puts_each_label_on_its_source_pixels(tmp_path, orientation, reader):
    volume, sop_uids, series_uid = write_ct_series(tmp_path / "ct", ORIENTATIONS[orientation])
    image = load(tmp_path / "ct", reader)
    assert image.shape[1:] == (10, 12, 7)  # MONAI: (columns, rows, slices)
    label_map = label_map_of(image)
    pred = MetaTensor(label_map, meta=dict(image.meta))
    path = write_dicom_seg(pred, pred.meta["filename_or_obj"], tmp_path / "out" / "seg.dcm", LABELS)

    seg = segread(path)
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == set(sop_uids)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["pancreas", "tumour", "spleen"]
    # coded as DICOM lists these structures, so that tools which go by the codes tell them apart
    terms = [
        (item.SegmentedPropertyCategoryCodeSequence[0], item.SegmentedPropertyTypeCodeSequence[0])
        for item in seg.SegmentSequence
    ]
    assert [(category.CodeMeaning, kind.CodeValue) for category, kind in terms] == [
        ("Anatomical Structure", "15776009"),
        ("Morphologically Abnormal Structure", "108369006"),
        ("Anatomical Structure", "78961009"),
    ]
    for item in seg.SegmentSequence:
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "monai_unets"
    # frames are kept only for slices with foreground, each names the source slice it lies on
    assert {uid for _, uid, _, _ in frames_of(seg)} == {sop_uids[s] for s in range(1, 6)}

    # per source slice, the masks are exactly where the source pixels hold the box / sub-box intensities
    masks = seg.get_pixels_by_source_instance(sop_uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 0], volume == BOX)
    np.testing.assert_array_equal(masks[..., 1], volume == SUB_BOX)
    # and, through the label map's own affine, the frame pixels fall on voxels of the matching label
    assert_frames_match_voxels(seg, label_map[0].numpy(), image.affine, LABELS)


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
@pytest.mark.parametrize("reorient", [False, True])
def test_frames_in_the_readers_layout_are_copied_in_one_transposition(tmp_path, monkeypatch, orientation, reorient):
    from monai_unets.data import dicom_seg

    transposed = []
    monkeypatch.setattr(dicom_seg, "c_ordered", lambda array: transposed.append(array.shape) or array.copy())
    write_ct_series(tmp_path / "ct", ORIENTATIONS[orientation])
    image = load(tmp_path / "ct", "ITKReader")
    if reorient:
        # a map on the same voxels in another axis order and direction: its frames are gathered slice by slice
        image = Orientationd("image", axcodes="RAS")({"image": image})["image"]
    label_map = label_map_of(image)
    pred = MetaTensor(label_map, meta=dict(image.meta))
    path = write_dicom_seg(pred, pred.meta["filename_or_obj"], tmp_path / "seg.dcm", LABELS)
    # the reader's (columns, rows, slices) layout, whatever the patient orientation, is the frames transposed
    assert transposed == ([] if reorient else [(7, 12, 10)])
    assert_frames_match_voxels(segread(path), label_map[0].numpy(), image.affine, LABELS)


def test_iod_lookups_are_made_once_per_sop_class(tmp_path):
    # highdicom asks of every source slice whether its IOD is multi-frame: the answer is kept per SOP class
    from highdicom import _standard_utils

    write_ct_series(tmp_path / "ct", ORIENTATIONS["axial"])
    pred = MetaTensor(label_map_of(image := load(tmp_path / "ct")), meta=dict(image.meta))
    write_dicom_seg(pred, tmp_path / "ct", tmp_path / "first.dcm", LABELS)
    lookup = _standard_utils.is_attribute_in_iod
    before = lookup.cache_info()
    write_dicom_seg(pred, tmp_path / "ct", tmp_path / "second.dcm", LABELS)
    after = lookup.cache_info()
    assert after.misses == before.misses and after.hits - before.hits >= 7  # one per slice at least
    ct = "1.2.840.10008.5.1.4.1.1.2"
    excluded = ["SharedFunctionalGroupsSequence"]
    for args in [("NumberOfFrames", ct), ("ContentDate", ct), ("NumberOfFrames", ct, excluded)]:
        assert lookup(*args) == lookup.__wrapped__(*args)
    assert segread(tmp_path / "second.dcm").NumberOfFrames == segread(tmp_path / "first.dcm").NumberOfFrames


def test_plain_array_uses_the_reader_geometry_and_absent_labels_keep_their_segments(tmp_path):
    volume, sop_uids, _ = write_ct_series(tmp_path / "ct", ORIENTATIONS["coronal"])
    label_map = label_map_of(load(tmp_path / "ct")).numpy()
    label_map[label_map == 1] = 0  # only the tumour is predicted
    seg = segread(write_dicom_seg(label_map, tmp_path / "ct", tmp_path / "seg.dcm", LABELS, algorithm_name="unet"))
    # segment k is label k in every case's SEG, predicted or not: the tumour had become segment 1 where it was alone
    assert [(item.SegmentNumber, item.SegmentLabel) for item in seg.SegmentSequence] == list(LABELS.items())
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "unet"
    masks = seg.get_pixels_by_source_instance(sop_uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 1], volume == SUB_BOX)
    assert not masks[..., 0].any() and not masks[..., 2].any()
    # read back as one label map, the values are the label map's
    np.testing.assert_array_equal(seg.get_volume(combine_segments=True).array.max(), 2)


def test_a_single_slice_has_its_thickness_as_the_seg_s_slice_spacing(tmp_path):
    # with no neighbour to measure the step to, the SEG had said 1 mm between slices where the NIfTI of the same
    # prediction (the reader) takes the slice's thickness
    write_ct_series(tmp_path / "ct", shape=(1, 12, 10))
    image = load(tmp_path / "ct", reader=MedicalImageReader())
    assert float(image.pixdim[2]) == pytest.approx(2.5)
    seg = pydicom.dcmread(write_dicom_seg(label_map_of(image), tmp_path / "ct", tmp_path / "seg.dcm", LABELS))
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SpacingBetweenSlices) == float(measures.SliceThickness) == pytest.approx(2.5)


@pytest.mark.parametrize("values", [(2, 5), (3, 12), (7, 200)])
def test_the_segments_are_the_labels_few_or_many_values(tmp_path, values):
    # few classes are found by comparisons, many by counting: both find the values present, gaps included, and
    # one that has no name is refused
    _, sop_uids, _ = write_ct_series(tmp_path / "ct", ORIENTATIONS["axial"])
    label_map = label_map_of(load(tmp_path / "ct")).numpy()
    label_map = np.select([label_map == 1, label_map == 2], values, 0).astype(np.uint8)
    labels = {value: f"class {value}" for value in (1, *values)}
    seg = segread(write_dicom_seg(label_map, tmp_path / "ct", tmp_path / "seg.dcm", labels))
    assert [item.SegmentLabel for item in seg.SegmentSequence] == [f"class {value}" for value in sorted(labels)]
    masks = seg.get_pixels_by_source_instance(sop_uids, assert_missing_frames_are_empty=True)
    for segment, value in enumerate(sorted(labels)):
        np.testing.assert_array_equal(masks[..., segment], label_map[0].transpose(2, 1, 0) == value)
    with pytest.raises(DicomSegError, match=f"values \\[{values[1]}\\] that have no name"):
        write_dicom_seg(label_map, tmp_path / "ct", tmp_path / "other.dcm", {1: "a", values[0]: "b"})


def test_a_background_name_among_the_labels_makes_no_segment(tmp_path):
    # a dataset's labels as MSD and nnU-Net list them, background included: its voxels had become a segment
    # covering the whole series, and each class had moved one segment number up
    volume, sop_uids, _ = write_ct_series(tmp_path / "ct", ORIENTATIONS["axial"])
    label_map = label_map_of(load(tmp_path / "ct"))
    seg = segread(write_dicom_seg(label_map, tmp_path / "ct", tmp_path / "seg.dcm", {0: "background", **LABELS}))
    assert [(item.SegmentNumber, item.SegmentLabel) for item in seg.SegmentSequence] == list(LABELS.items())
    masks = seg.get_pixels_by_source_instance(sop_uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 1], volume == SUB_BOX)


def test_prediction_inverted_from_a_resampled_space_is_accepted(tmp_path):
    write_ct_series(tmp_path / "ct", ORIENTATIONS["oblique"])
    pre = Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=(1.0, 1.0, 1.0)),
        ]
    )
    data = pre({"image": str(tmp_path / "ct")})
    image = data["image"]
    data["pred"] = torch.cat([image < BOX, (image >= BOX) & (image < SUB_BOX), image >= SUB_BOX]).float()
    post = Compose(
        [
            Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True),
            AsDiscreted("pred", argmax=True),
        ]
    )
    pred = post(data)["pred"]
    assert pred.shape[1:] == (10, 12, 7)
    seg = segread(write_dicom_seg(pred, pred.meta["filename_or_obj"], tmp_path / "seg.dcm", LABELS))
    assert_frames_match_voxels(seg, pred[0].numpy().astype(int), pred.affine, LABELS)


def test_empty_prediction_writes_every_label_as_an_empty_segment(tmp_path):
    write_ct_series(tmp_path / "ct")
    image = load(tmp_path / "ct")
    empty = MetaTensor(torch.zeros_like(image.as_tensor()), affine=image.affine)
    seg = segread(write_dicom_seg(empty, tmp_path / "ct", tmp_path / "seg.dcm", {1: "pancreas", 2: "tumour"}))
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["pancreas", "tumour"]
    assert not seg.pixel_array.any()


def test_shape_mismatch_names_both_shapes_and_the_folder(tmp_path):
    write_ct_series(tmp_path / "ct")
    image = load(tmp_path / "ct")
    cropped = MetaTensor(label_map_of(image)[:, :, :, :6], affine=image.affine)
    with pytest.raises(ValueError, match=r"\(10, 12, 6\).*ct.*7 slices of 12 rows x 10 columns.*\(10, 12, 7\)"):
        write_dicom_seg(cropped, tmp_path / "ct", tmp_path / "seg.dcm", LABELS)


def test_affine_not_on_the_source_grid_is_refused(tmp_path):
    write_ct_series(tmp_path / "ct")
    image = load(tmp_path / "ct")
    shifted = image.affine.clone()
    shifted[2, 3] += 1.25  # half a slice
    with pytest.raises(ValueError, match="affine does not place its voxels"):
        write_dicom_seg(label_map_of(image), tmp_path / "ct", tmp_path / "seg.dcm", LABELS, affine=shifted)
    swapped = image.affine[:, [1, 0, 2, 3]]  # rows and columns exchanged
    with pytest.raises(ValueError, match="affine does not place its voxels"):
        write_dicom_seg(label_map_of(image), tmp_path / "ct", tmp_path / "seg.dcm", LABELS, affine=swapped)


def test_bad_label_maps_are_refused(tmp_path):
    write_ct_series(tmp_path / "ct")
    image = load(tmp_path / "ct")
    with pytest.raises(ValueError, match=r"values \[2\] that have no name"):
        write_dicom_seg(label_map_of(image).numpy(), tmp_path / "ct", tmp_path / "seg.dcm", {1: "pancreas"})
    with pytest.raises(ValueError, match="one channel"):
        write_dicom_seg(torch.zeros(3, 10, 12, 7), tmp_path / "ct", tmp_path / "seg.dcm", LABELS)
    with pytest.raises(ValueError, match="integer class indices"):
        write_dicom_seg(torch.full((1, 10, 12, 7), 0.5), tmp_path / "ct", tmp_path / "seg.dcm", LABELS)


def test_folder_without_a_single_series_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not DICOM")
    with pytest.raises(DicomSegError, match=r"none of its 1 files is DICOM \(notes.txt\)"):
        write_dicom_seg(np.zeros((10, 12, 7)), tmp_path / "empty", tmp_path / "seg.dcm", LABELS)

    write_ct_series(tmp_path / "two")
    study = pydicom.dcmread(tmp_path / "two" / "im000.dcm").StudyInstanceUID
    _, _, second = write_ct_series(tmp_path / "other", study_uid=study)
    for path in (tmp_path / "other").iterdir():
        path.rename(tmp_path / "two" / f"b_{path.name}")
    with pytest.raises(DicomSegError, match="holds 2 series"):
        write_dicom_seg(np.zeros((10, 12, 7)), tmp_path / "two", tmp_path / "seg.dcm", LABELS)
    # naming the series picks it
    label_map = np.zeros((10, 12, 7), dtype=np.uint8)
    label_map[0, 0, 0] = 1
    seg = segread(write_dicom_seg(label_map, tmp_path / "two", tmp_path / "seg.dcm", LABELS, source_series_uid=second))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == second


def _strip(folder, keyword):
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        delattr(ds, keyword)
        ds.save_as(path)


# attributes that anonymisers and exporters drop; the SEG leaves them empty (SliceThickness: the slice spacing)
OPTIONAL = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "Manufacturer",
    "SeriesNumber",
    "SeriesDescription",
    "InstanceNumber",
    "Modality",
    "SliceThickness",
    "PositionReferenceIndicator",
]


@pytest.fixture(scope="module")
def seg_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("source") / "ct"
    volume, _, _ = write_ct_series(folder)
    return folder, label_map_of(load(folder))


@pytest.mark.parametrize(
    "source, expected, model",
    [
        ("AX 1.25mm ARTERIAL", "Segmentation of AX 1.25mm ARTERIAL by net", "net"),
        ("", "Segmentation by net", "net"),
        ("x" * 60, "Segmentation of " + "x" * 45 + "...", "net"),
        # the bundles' model names are long: the source series stays whole, where it had been cut to 'AX 1....'
        ("AX 1.25mm ARTERIAL", "Segmentation of AX 1.25mm ARTERIAL", "EGE-UNet 3D pancreas CT segmentation"),
    ],
)
def test_the_seg_series_says_which_series_it_segments(seg_source, source, expected, model, tmp_path):
    # every SEG had been "Segmentation": in a PACS, those of a study's thin, thick and other phases looked the same
    folder = tmp_path / "ct"
    shutil.copytree(seg_source[0], folder)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = source
        ds.save_as(path)
    seg = segread(write_dicom_seg(seg_source[1], folder, tmp_path / "seg.dcm", LABELS, algorithm_name=model))
    assert seg.SeriesDescription == expected and len(expected) <= 64


def test_the_seg_holds_every_type_1_and_2_attribute_of_its_modules(seg_source, tmp_path):
    seg = pydicom.dcmread(write_dicom_seg(seg_source[1], seg_source[0], tmp_path / "seg.dcm", LABELS))
    # Patient, General Study, General Series, Frame of Reference, General Equipment, Enhanced General Equipment,
    # Segmentation Image (its Content Identification macro), Multi-frame Dimension and SOP Common modules
    required = (
        "PatientName PatientID PatientBirthDate PatientSex StudyInstanceUID StudyDate StudyTime ReferringPhysicianName "
        "StudyID AccessionNumber Modality SeriesInstanceUID SeriesNumber FrameOfReferenceUID "
        "PositionReferenceIndicator Manufacturer ManufacturerModelName DeviceSerialNumber SoftwareVersions "
        "InstanceNumber ContentLabel ContentDescription ContentCreatorName ContentDate ContentTime ImageType "
        "SegmentationType SegmentSequence DimensionOrganizationSequence DimensionIndexSequence SOPClassUID "
        "SOPInstanceUID"
    ).split()
    assert [keyword for keyword in required if keyword not in seg] == []
    assert seg.Modality == "SEG" and seg.ContentCreatorName == ""


@pytest.mark.parametrize("keyword", OPTIONAL)
def test_source_without_an_optional_attribute_still_gets_its_seg(seg_source, keyword, tmp_path):
    source, label_map = seg_source
    folder = tmp_path / "ct"
    shutil.copytree(source, folder)
    _strip(folder, keyword)
    seg = segread(write_dicom_seg(label_map, folder, tmp_path / "seg.dcm", LABELS))
    assert len(seg.SegmentSequence) == len(LABELS)
    if keyword == "SliceThickness":
        thickness = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness
        assert float(thickness) == pytest.approx(2.5)


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient"])
def test_source_without_what_a_seg_references_says_why_it_was_skipped(seg_source, keyword, tmp_path):
    source, label_map = seg_source
    folder = tmp_path / "ct"
    shutil.copytree(source, folder)
    _strip(folder, keyword)
    with pytest.raises(DicomSegError, match=f"no DICOM SEG written for .*lack {keyword}"):
        write_dicom_seg(label_map, folder, tmp_path / "seg.dcm", LABELS)
    assert not (tmp_path / "seg.dcm").exists()


@pytest.mark.parametrize(
    "charset, name",
    [
        # the Japanese and Korean code extensions as DICOM's own examples write them, with an empty first value,
        # and ISO_IR 6: highdicom lists neither, and every study of such a site had no SEG
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎"),
        (["", "ISO 2022 IR 149"], "Kim^Minsu=김^민수"),
        ("ISO_IR 6", "Smith^John"),
        ("ISO_IR 100", "Müller^Jürgen"),
    ],
)
def test_a_source_of_any_character_set_gets_its_seg_with_its_names(seg_source, charset, name, tmp_path):
    source, label_map = seg_source
    folder = tmp_path / "ct"
    shutil.copytree(source, folder)

    def encode(k, ds):
        ds.SpecificCharacterSet = charset
        ds.PatientName = name

    _edit_slices(folder, encode)
    seg = pydicom.dcmread(write_dicom_seg(label_map, folder, tmp_path / "seg.dcm", LABELS))
    assert str(seg.PatientName) == name
    # a set highdicom lists is kept, another becomes UTF-8
    assert seg.SpecificCharacterSet == ("ISO_IR 100" if charset == "ISO_IR 100" else "ISO_IR 192")


@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 144"])
def test_class_names_of_any_script_and_length_are_written_as_the_seg_declares(seg_source, charset, tmp_path):
    # "Tumör" for a source without a character set had been written in Latin-1 under no declared set, and a name
    # over 64 characters exceeded its value representation (LO), both without an error
    source, label_map = seg_source
    folder = tmp_path / "ct"
    shutil.copytree(source, folder)
    if charset is not None:
        _edit_slices(folder, lambda k, ds: setattr(ds, "SpecificCharacterSet", charset))
    long_name = "pancreas parenchyma including head, uncinate process, neck, body and tail"
    labels = {1: "Tumör", 2: long_name}
    path = write_dicom_seg(label_map, folder, tmp_path / "seg.dcm", labels)
    seg = pydicom.dcmread(path)
    # Latin-1 holds "Tumör"; ASCII and Cyrillic do not
    assert seg.SpecificCharacterSet == ("ISO_IR 100" if charset == "ISO_IR 100" else "ISO_IR 192")
    first, second = seg.SegmentSequence
    assert first.SegmentLabel == "Tumör"
    assert second.SegmentLabel == long_name[:64] and second.SegmentDescription == long_name
    raw = path.read_bytes()
    assert ("Tumör".encode("latin-1" if charset == "ISO_IR 100" else "utf-8")) in raw


def _edit_slices(folder, edit):
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        edit(int(ds.InstanceNumber) - 1, ds)
        ds.save_as(path)


def test_orientation_jitter_the_reader_accepts_still_gets_its_seg(tmp_path):
    volume, sop_uids, _ = write_ct_series(tmp_path / "ct")

    def tilt(k, ds):  # one slice's column direction off by 5e-4, within the reader's tolerance
        if k == 3:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0.999999875, 0.0005]

    _edit_slices(tmp_path / "ct", tilt)
    image = load(tmp_path / "ct", MedicalImageReader())
    path = write_dicom_seg(label_map_of(image), tmp_path / "ct", tmp_path / "seg.dcm", LABELS, affine=image.affine)
    masks = segread(path).get_pixels_by_source_instance(sop_uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 0], volume == BOX)


def test_slices_off_the_regular_grid_within_the_spacing_tolerance_get_their_seg(tmp_path):
    # gaps growing from 2.5 to 2.52 mm over 160 slices (0.9% spread): the last slices lie up to 0.45 mm off the
    # regular grid of the volume, which the reader says; each still maps to its own slice of the label map
    n = 160
    volume = np.full((n, 8, 6), -1000, dtype=np.int16)
    volume[20:140, 2:6, 1:5] = BOX
    series = write_dicom_series(volume.transpose(2, 1, 0), tmp_path / "ct", (0.9, 0.7, 2.5), (0.0, 0.0, 0.0))
    positions = np.concatenate([[0.0], np.cumsum(2.5 + 0.0225 * np.arange(n - 1) / (n - 2))])
    _edit_slices(tmp_path / "ct", lambda k, ds: setattr(ds, "ImagePositionPatient", [0.0, 0.0, positions[k]]))
    with pytest.warns(UserWarning, match=r"up to 0\.45 mm \(18% of a slice\) off the regular grid"):
        image = load(tmp_path / "ct", MedicalImageReader())
    path = write_dicom_seg(label_map_of(image), tmp_path / "ct", tmp_path / "seg.dcm", LABELS, affine=image.affine)
    masks = segread(path).get_pixels_by_source_instance(series.sop_uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 0], volume == BOX)


def write_enhanced_ct_of(folder, path, iop=ORIENTATIONS["axial"]):
    """The CT series of ``write_ct_series`` converted to one enhanced multi-frame file (per-frame positions)."""
    write_ct_series(folder, iop)
    return write_enhanced_ct(folder, path)


def _frame_positions(ds):
    return [
        np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        for item in ds.PerFrameFunctionalGroupsSequence
    ]


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_enhanced_multiframe_source_gets_one_seg_frame_per_source_frame(tmp_path, orientation):
    write_enhanced_ct_of(tmp_path / "ct", tmp_path / "enhanced.dcm", ORIENTATIONS[orientation])
    source = pydicom.dcmread(tmp_path / "enhanced.dcm")
    image = load(tmp_path / "enhanced.dcm", MedicalImageReader())
    label_map = label_map_of(image)
    pred = MetaTensor(label_map, meta=dict(image.meta))
    seg = segread(write_dicom_seg(pred, tmp_path / "enhanced.dcm", tmp_path / "seg.dcm", LABELS))

    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    # each SEG frame lies on the source frame it references: same position
    positions = _frame_positions(source)
    for item in seg.PerFrameFunctionalGroupsSequence:
        frame = int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        np.testing.assert_allclose(item.PlanePositionSequence[0].ImagePositionPatient, positions[frame - 1])
    # per source frame, the masks are exactly where the source pixels hold the box / sub-box intensities
    frames = list(range(1, int(source.NumberOfFrames) + 1))
    masks = seg.get_pixels_by_source_frame(source.SOPInstanceUID, frames, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 0], source.pixel_array == BOX)
    np.testing.assert_array_equal(masks[..., 1], source.pixel_array == SUB_BOX)
    assert_frames_match_voxels(seg, label_map[0].numpy(), image.affine, LABELS)


def test_enhanced_multiframe_file_alone_in_its_series_folder_gets_its_seg(tmp_path):
    # exports put an enhanced image in a series folder of its own, which the reader reads as that file; the SEG
    # had taken the folder for one of single-frame slices and refused it for want of their plane tags
    (tmp_path / "series").mkdir()
    write_enhanced_ct_of(tmp_path / "ct", tmp_path / "series" / "enhanced.dcm", ORIENTATIONS["coronal"])
    source = pydicom.dcmread(tmp_path / "series" / "enhanced.dcm")
    image = load(tmp_path / "series", MedicalImageReader())
    label_map = label_map_of(image)
    frames = list(range(1, int(source.NumberOfFrames) + 1))
    for name in ("series", f"series::{source.SeriesInstanceUID}"):
        folder, uid = (tmp_path / name.split("::")[0]), (name.split("::") + [None])[1]
        path = write_dicom_seg(
            MetaTensor(label_map, meta=dict(image.meta)), folder, tmp_path / "seg.dcm", LABELS, source_series_uid=uid
        )
        seg = segread(path)
        masks = seg.get_pixels_by_source_frame(source.SOPInstanceUID, frames, assert_missing_frames_are_empty=True)
        np.testing.assert_array_equal(masks[..., 0], source.pixel_array == BOX)
        np.testing.assert_array_equal(masks[..., 1], source.pixel_array == SUB_BOX)
        assert_frames_match_voxels(seg, label_map[0].numpy(), image.affine, LABELS)


def test_enhanced_multiframe_frames_with_their_own_orientation_and_spacing_get_their_seg(tmp_path):
    # the plane orientation and pixel spacing may sit in each frame's functional groups instead of the shared ones
    write_enhanced_ct_of(tmp_path / "ct", tmp_path / "enhanced.dcm", ORIENTATIONS["oblique"])
    ds = pydicom.dcmread(tmp_path / "enhanced.dcm")
    shared = ds.SharedFunctionalGroupsSequence[0]
    for item in ds.PerFrameFunctionalGroupsSequence:
        item.PlaneOrientationSequence = copy.deepcopy(shared.PlaneOrientationSequence)
        item.PixelMeasuresSequence = copy.deepcopy(shared.PixelMeasuresSequence)
    del shared.PlaneOrientationSequence, shared.PixelMeasuresSequence
    ds.save_as(tmp_path / "per_frame.dcm")
    image = load(tmp_path / "enhanced.dcm", MedicalImageReader())
    label_map = label_map_of(image)
    seg = segread(
        write_dicom_seg(label_map, tmp_path / "per_frame.dcm", tmp_path / "seg.dcm", LABELS, affine=image.affine)
    )
    frames = list(range(1, int(ds.NumberOfFrames) + 1))
    masks = seg.get_pixels_by_source_frame(ds.SOPInstanceUID, frames, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 1], ds.pixel_array == SUB_BOX)


def test_enhanced_multiframe_source_without_slice_thickness_gets_a_seg_that_reads_back(tmp_path):
    # SliceThickness may be left out of the Pixel Measures where the frame positions give the spacing; the SEG's
    # own Pixel Measures, copied from the source, had none, and highdicom could not read the SEG
    write_enhanced_ct_of(tmp_path / "ct", tmp_path / "enhanced.dcm")
    ds = pydicom.dcmread(tmp_path / "enhanced.dcm")
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness
    ds.save_as(tmp_path / "no_thickness.dcm")
    image = load(tmp_path / "no_thickness.dcm", MedicalImageReader())
    path = write_dicom_seg(label_map_of(image), tmp_path / "no_thickness.dcm", tmp_path / "seg.dcm", LABELS)
    measures = pydicom.dcmread(path).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == pytest.approx(2.5)  # the spacing of the frames
    frames = list(range(1, int(ds.NumberOfFrames) + 1))
    masks = segread(path).get_pixels_by_source_frame(ds.SOPInstanceUID, frames, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 0], ds.pixel_array == BOX)


def test_multiframe_source_without_frame_planes_says_why_it_gets_no_seg(tmp_path):
    write_enhanced_ct_of(tmp_path / "ct", tmp_path / "enhanced.dcm")
    image = load(tmp_path / "enhanced.dcm", MedicalImageReader())
    ds = pydicom.dcmread(tmp_path / "enhanced.dcm")
    del ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence
    ds.save_as(tmp_path / "no_position.dcm")
    with pytest.raises(DicomSegError, match=r"no_position\.dcm: frame 4 has no ImagePositionPatient"):
        write_dicom_seg(
            label_map_of(image), tmp_path / "no_position.dcm", tmp_path / "seg.dcm", LABELS, affine=image.affine
        )
    del ds.PerFrameFunctionalGroupsSequence
    ds.save_as(tmp_path / "legacy.dcm")  # multi-frame without functional groups (secondary capture, ultrasound)
    with pytest.raises(DicomSegError, match=r"legacy\.dcm: its 7 frames do not record their plane positions"):
        write_dicom_seg(label_map_of(image), tmp_path / "legacy.dcm", tmp_path / "seg.dcm", LABELS, affine=image.affine)
    assert not (tmp_path / "seg.dcm").exists()


@pytest.mark.slow
def test_importing_the_package_leaves_highdicom_until_a_seg_is_written():
    # highdicom takes 0.3 s to import: the 2D bundles, MONAI Label's start and the command line tools write no SEG
    code = "import sys, monai_unets, monai_unets.data, monai_unets.transforms; print('highdicom' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
