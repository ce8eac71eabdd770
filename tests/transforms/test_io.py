"""SaveDicomSegd: one post-processing chain writes DICOM SEG for DICOM folders and skips other inputs."""

from __future__ import annotations

import io
import logging
import re
import threading
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from highdicom.seg import segread
from monai.transforms import EnsureChannelFirstd, LoadImage, LoadImaged
from monai_unets.data import DicomSegError
from monai_unets.scripts.demo_ct import write_dicom_series
from monai_unets.transforms.io import Image2DReader, SaveDicomSeg, SaveDicomSegd
from monai_unets.transforms.label import BinarizeLabel
from PIL import Image, TiffImagePlugin

from tests.conftest import processed_cases

LABELS = {1: "pancreas", 2: "tumour"}


def write_axial_series(folder, shape=(5, 8, 6)):
    """Axial CT slices with a bright box; returns the SeriesInstanceUID and the SOPInstanceUIDs in slice order.

    ``shape`` is (slices, rows, columns); rows are 0.8 mm apart, columns 1.1 mm, slices 3 mm.
    """
    volume = np.full(shape, -1000, dtype=np.int16)
    volume[1:4, 2:6, 1:4] = 300
    series = write_dicom_series(
        volume.transpose(2, 1, 0),  # (column, row, slice)
        folder,
        spacing=(1.1, 0.8, 3.0),  # column, row, slice
        origin_lps=(0.0, 0.0, 0.0),
        rescale_intercept=0,
        file_name=lambda s: f"{s}.dcm",
    )
    return series.series_uid, series.sop_uids


def load(path):
    return EnsureChannelFirstd("image")(LoadImaged("image", image_only=True)({"image": str(path)}))


def predict(data):
    """A stand-in network output after Invertd + AsDiscreted: label 1 on the box, keeping the image's meta."""
    data["pred"] = (data["image"] > 0).float()
    return data


def test_dicom_input_is_written_to_output_dir_named_after_the_series(tmp_path):
    series_uid, sop_uids = write_axial_series(tmp_path / "case_01")
    data = predict(load(tmp_path / "case_01"))
    out = SaveDicomSegd("pred", tmp_path / "out", LABELS, algorithm_name="unet")(data)
    assert out["pred"] is data["pred"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["case_01_seg.dcm"]
    seg = segread(tmp_path / "out" / "case_01_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["pancreas", "tumour"]
    masks = seg.get_pixels_by_source_instance(sop_uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 0], data["image"][0].numpy().transpose(2, 1, 0) > 0)
    assert not masks[..., 1].any()


def test_the_source_headers_read_ahead_make_the_seg_and_are_not_read_again(tmp_path, monkeypatch):
    from monai_unets.data import dicom_seg

    series_uid, sop_uids = write_axial_series(tmp_path / "case_03")
    data = predict(load(tmp_path / "case_03"))
    reads = []
    read = dicom_seg._read_series
    monkeypatch.setattr(
        dicom_seg, "_read_series", lambda *args: reads.append(threading.current_thread().name) or read(*args)
    )
    save = SaveDicomSegd("pred", tmp_path / "out", LABELS)
    save.prepare({"pred": data["pred"], "image": data["image"]})
    save(data)
    assert len(reads) == 1 and reads[0].startswith("dicom-seg-source")
    seg = segread(tmp_path / "out" / "case_03_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    masks = seg.get_pixels_by_source_instance(sop_uids, assert_missing_frames_are_empty=True)
    np.testing.assert_array_equal(masks[..., 0], data["image"][0].numpy().transpose(2, 1, 0) > 0)


def test_a_source_read_ahead_that_fails_fails_the_seg_as_it_would_have(tmp_path):
    write_axial_series(tmp_path / "case_04")
    data = predict(load(tmp_path / "case_04"))
    for path in (tmp_path / "case_04").iterdir():  # the slices lose the frame of reference a SEG needs
        ds = pydicom.dcmread(path)
        del ds.FrameOfReferenceUID
        ds.save_as(path)
    messages = []
    for read_ahead in (False, True):
        save = SaveDicomSegd("pred", tmp_path / "out", LABELS)
        if read_ahead:
            save.prepare(data)
        with pytest.raises(DicomSegError) as raised:
            save(data)
        messages.append(str(raised.value))
    assert messages[0] == messages[1] and "FrameOfReferenceUID" in messages[0]


def test_source_folder_comes_from_the_source_key_when_the_prediction_has_no_meta(tmp_path):
    write_axial_series(tmp_path / "case_02")
    data = predict(load(tmp_path / "case_02"))
    data["pred"] = data["pred"].as_tensor()  # e.g. a plain tensor from a custom post-processing step
    SaveDicomSegd("pred", tmp_path / "out", LABELS, output_postfix="ai", affine=data["image"].affine)(data)
    assert (tmp_path / "out" / "case_02_ai.dcm").is_file()


def test_several_keys_get_their_key_in_the_file_name(tmp_path):
    write_axial_series(tmp_path / "case_03")
    data = predict(load(tmp_path / "case_03"))
    data["pred2"] = data["pred"].clone()
    SaveDicomSegd(["pred", "pred2"], tmp_path / "out", LABELS)(data)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_03_pred2_seg.dcm", "case_03_pred_seg.dcm"]


def test_nifti_input_is_passed_through_without_writing(tmp_path, caplog):
    nib.save(nib.Nifti1Image(np.zeros((6, 8, 5), dtype=np.float32), np.eye(4)), tmp_path / "case.nii.gz")
    data = predict(load(tmp_path / "case.nii.gz"))
    with caplog.at_level(logging.DEBUG, logger="monai_unets.transforms.io"):
        out = SaveDicomSegd("pred", tmp_path / "out", LABELS)(data)
    assert out["pred"] is data["pred"]
    assert not (tmp_path / "out").exists()
    assert "neither a DICOM series folder nor a DICOM file" in caplog.text


def test_array_transform_skips_plain_tensors_and_writes_for_a_given_folder(tmp_path):
    write_axial_series(tmp_path / "case_04")
    image = load(tmp_path / "case_04")["image"]
    saver = SaveDicomSeg(tmp_path / "out", LABELS)
    label = torch.zeros((1, 6, 8, 5))
    assert saver(label) is label
    assert not (tmp_path / "out").exists()
    saver((image > 0).float(), source=tmp_path / "case_04")
    assert (tmp_path / "out" / "case_04_seg.dcm").is_file()


def test_series_reference_selects_one_series_of_a_shared_folder(tmp_path):
    first_uid, _ = write_axial_series(tmp_path / "study")
    second_uid, _ = write_axial_series(tmp_path / "second")
    for path in (tmp_path / "second").iterdir():
        path.rename(tmp_path / "study" / f"b_{path.name}")
    label = torch.zeros((1, 6, 8, 5))
    label[0, 1:3, 2:5, 1:4] = 1
    SaveDicomSeg(tmp_path / "out", LABELS)(label, source=f"{tmp_path / 'study'}::{second_uid}")
    seg = segread(tmp_path / "out" / f"study_{second_uid}_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == second_uid != first_uid


# Each 2D image kind, written with PIL, and the values Image2DReader must give (grey, before channel repetition).
def _palette_image():
    image = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    return image


IMAGE_KINDS = {
    # name: (PIL image, file suffix, expected RGB array (H, W, 3))
    "grey16": (Image.fromarray(np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)), "png", None),
    "grey8": (Image.fromarray(np.array([[0, 10], [200, 255]], dtype=np.uint8)), "png", None),
    "bilevel": (Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1"), "png", None),
    "float": (Image.fromarray(np.array([[-1.5, 0.25], [1000.0, 3.0]], dtype=np.float32)), "tiff", None),
    "int32": (Image.fromarray(np.array([[-70000, 0], [5, 123456]], dtype=np.int32)), "tiff", None),
    "palette": (_palette_image(), "png", np.array([[[0, 0, 0], [255, 0, 0]], [[0, 0, 255], [255, 0, 0]]])),
    "rgba": (
        Image.fromarray(np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], dtype=np.uint8), mode="RGBA"),
        "png",
        np.array([[[10, 20, 30], [40, 50, 60]]]),
    ),
}


def _expected_grey(name):
    image, _, rgb = IMAGE_KINDS[name]
    if rgb is not None:
        return None
    return np.asarray(image, dtype=np.float64) if image.mode != "1" else np.asarray(image).astype(np.float64)


@pytest.mark.parametrize("name", list(IMAGE_KINDS))
def test_image2d_reader_keeps_every_bit_depth_and_mode(name, tmp_path):
    image, suffix, rgb = IMAGE_KINDS[name]
    path = tmp_path / f"{name}.{suffix}"
    image.save(path)
    loaded = LoadImage(reader=Image2DReader(channels=3), image_only=True)(str(path))
    # PILReader's layout: width first, channels last
    expected = rgb if rgb is not None else np.repeat(_expected_grey(name)[..., None], 3, axis=-1)
    np.testing.assert_array_equal(loaded.numpy(), np.moveaxis(expected, 0, 1).astype(np.float32))
    np.testing.assert_array_equal(loaded.meta["spatial_shape"], [image.width, image.height])


def test_image2d_reader_with_one_channel_for_masks(tmp_path):
    Image.fromarray(np.array([[0, 65535], [65535, 0]], dtype=np.uint16)).save(tmp_path / "mask16.png")
    Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)).save(tmp_path / "mask_rgb.png")
    mask16 = LoadImage(reader=Image2DReader(channels=1), image_only=True)(str(tmp_path / "mask16.png"))
    np.testing.assert_array_equal(mask16.numpy(), [[0, 65535], [65535, 0]])
    rgb = LoadImage(reader=Image2DReader(channels=1), image_only=True)(str(tmp_path / "mask_rgb.png"))
    np.testing.assert_array_equal(rgb.numpy(), [[0], [255]])


@pytest.mark.parametrize("bits", [8, 16])
def test_image2d_reader_refuses_a_dicom_file_naming_it(tmp_path, bits):
    # handed on to MONAI's other readers, an 8-bit RGB DICOM was read by ITK as a 3D volume, and a 16-bit one (which
    # ITK cannot read) by pydicom as a 2D image of its colours rescaled by the scan's intercept, -1024 for black,
    # which passed the bundles' checks and reached the network
    folder = write_dicom_series(np.zeros((6, 5, 2), np.int16), tmp_path / "ct", (0.7, 0.8, 2.0), (0, 0, 0)).folder
    path = min(folder.iterdir())
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = bytes(ds.Rows * ds.Columns * 3 * bits // 8)
    ds.save_as(path)
    with pytest.raises(ValueError, match="is a DICOM file; Image2DReader reads 2D image files") as error:
        LoadImaged("image", reader=Image2DReader(channels=3), image_only=True)({"image": str(path)})
    assert path.name in str(error.value)


def test_a_16_bit_image_is_not_constant_after_the_2d_bundle_preprocessing(tmp_path):
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir

    values = (np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)  # up to 61420: clipped by convert("RGB")
    Image.fromarray(values).save(tmp_path / "scan.png")
    for name in ("egeunet_skin_lesion", "unetv2_polyp"):
        parser = ConfigParser()
        parser.read_config(str(bundle_dir(name) / "configs" / "inference.yaml"))
        image = parser.get_parsed_content("preprocessing")({"image": str(tmp_path / "scan.png")})["image"]
        # the ramp survives: clipped to 255, nearly every pixel would sit at the maximum
        channel = image[0].numpy()
        near_max = np.mean(channel > channel.max() - 0.01 * (channel.max() - channel.min()))
        assert near_max < 0.05, (name, near_max)


def test_image2d_reader_warns_of_an_exif_orientation_it_does_not_apply(tmp_path):
    turned, plain = tmp_path / "phone.jpg", tmp_path / "plain.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(turned, exif=exif)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(plain)
    reader = Image2DReader(channels=3)
    with pytest.warns(UserWarning, match=r"phone\.jpg: EXIF orientation 6 is not applied.*90 degrees clockwise"):
        pixels, _ = reader.get_data(reader.read(str(turned)))
    assert pixels.shape[:2] == (30, 20)  # width first, as stored: the pixels are not turned
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reader.get_data(reader.read(str(plain)))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_the_mask_of_a_turned_photograph_is_shown_where_its_image_is(orientation, tmp_path):
    # a phone photograph stored sideways: read as stored, its mask has the stored grid, and with the image's
    # orientation tag a viewer turns the mask as it turns the image (a mask without it was shown turned away)
    from monai.data import MetaTensor
    from monai.transforms import SaveImaged
    from monai_unets.data import AtomicPILWriter
    from PIL import ImageOps

    stored = np.zeros((30, 50, 3), np.uint8)
    stored[2:8, 3:12] = 255  # a lesion off every axis of symmetry
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    Image.fromarray(stored).save(tmp_path / "plain.png")
    load = LoadImaged("image", reader=Image2DReader(channels=3), image_only=True)
    save = SaveImaged(
        "mask", output_dir=tmp_path / "out", output_postfix="seg", writer=AtomicPILWriter, output_ext=".png",
        output_dtype=np.uint8, scale=255, resample=False, separate_folder=False, print_log=False,
    )  # fmt: skip
    for name, tag in (("phone", orientation), ("plain", 1)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reader's warning of the unapplied orientation
            image = load({"image": str(tmp_path / f"{name}.png")})["image"]
        assert image.meta["exif_orientation"] == tag
        mask = MetaTensor((image[..., :1] > 127).to(torch.uint8).permute(2, 0, 1), meta=image.meta)
        save({"mask": mask})
        written = Image.open(tmp_path / "out" / f"{name}_seg.png")
        assert written.getexif().get(0x0112, 1) == tag
        np.testing.assert_array_equal(np.asarray(written) > 127, stored[..., 0] > 127)  # the stored grid
        shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / f"{name}.png")))[..., 0] > 127
        np.testing.assert_array_equal(np.asarray(ImageOps.exif_transpose(written)) > 127, shown)


def test_a_single_dicom_file_gets_its_seg_named_after_the_file(tmp_path):
    _, sop_uids = write_axial_series(tmp_path / "series")
    second, third = (tmp_path / "series" / f"{s}.dcm" for s in (1, 2))
    for source, name, sop_uid in (
        (second, "1_seg.dcm", sop_uids[1]),
        (third.rename(tmp_path / "IM0003"), "IM0003_seg.dcm", sop_uids[2]),
    ):
        # by its suffix, and by the DICOM preamble of a file without one
        image = load(source)["image"]
        assert image.shape == (1, 6, 8, 1)
        pred = predict({"image": image})["pred"]
        out = SaveDicomSegd("pred", tmp_path / "out", LABELS)({"pred": pred})
        assert out["pred"] is pred
        seg = segread(tmp_path / "out" / name)
        masks = seg.get_pixels_by_source_instance([sop_uid], assert_missing_frames_are_empty=True)
        np.testing.assert_array_equal(masks[0, ..., 0], pred[0, :, :, 0].numpy().T == 1)


def _write_samples(path, samples):
    """An image file of ``samples`` (height, width, samples) at their own type, written by SimpleITK."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(samples, isVector=True), str(path))


# 16-bit samples, each distinct and none a multiple of 256, in a pattern that no flip or transposition keeps:
# (height 5, width 7) with alpha (where present) opaque
_SIXTEEN_BIT = (np.arange(5 * 7 * 3).reshape(5, 7, 3) * 617 + 3).astype(np.uint16)
_OPAQUE = np.full((5, 7, 1), 65535, dtype=np.uint16)


@pytest.mark.parametrize(
    "name, samples",
    [
        ("rgb16.png", _SIXTEEN_BIT),
        ("rgba16.png", np.concatenate([_SIXTEEN_BIT, _OPAQUE], axis=-1)),
        ("grey_alpha16.png", np.concatenate([_SIXTEEN_BIT[..., :1], _OPAQUE], axis=-1)),
        ("rgb16.tif", _SIXTEEN_BIT),
        ("rgba16.tif", np.concatenate([_SIXTEEN_BIT, _OPAQUE], axis=-1)),
    ],
)
def test_image2d_reader_keeps_16_bit_colour_samples_that_pil_cuts_to_8_bits(name, samples, tmp_path):
    path = tmp_path / name
    _write_samples(path, samples)
    colour = samples[..., :3] if samples.shape[-1] > 2 else np.repeat(samples[..., :1], 3, axis=-1)
    # the file holds the pattern as written: PIL's own decoder sees its high bytes in the same places
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), colour >> 8)
    loaded = LoadImage(reader=Image2DReader(channels=3), image_only=True)(str(path))
    np.testing.assert_array_equal(loaded.numpy(), np.moveaxis(colour, 0, 1).astype(np.float32))  # width first
    np.testing.assert_array_equal(loaded.meta["spatial_shape"], [7, 5])
    assert loaded.meta["bits_per_sample"] == 16
    grey = LoadImage(reader=Image2DReader(channels=1), image_only=True)(str(path))
    luma = np.rint(colour @ np.array([0.299, 0.587, 0.114])) if samples.shape[-1] > 2 else colour[..., 0]
    np.testing.assert_array_equal(grey.numpy(), luma.T.astype(np.float32))


def test_image2d_reader_reads_float_and_32_bit_rgb_tiff(tmp_path):
    for name, samples in (
        ("float.tif", np.linspace(-2.0, 3.5, 5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)),
        ("int32.tif", (np.arange(5 * 7 * 3).reshape(5, 7, 3) * 100003 - 70000).astype(np.int32)),
    ):
        _write_samples(tmp_path / name, samples)
        reader = Image2DReader(channels=3)
        pixels, meta = reader.get_data(reader.read(str(tmp_path / name)))  # PIL alone cannot open these
        np.testing.assert_array_equal(pixels, np.moveaxis(samples, 0, 1))
        assert (meta["format"], meta["mode"], meta["bits_per_sample"]) == ("TIFF", "RGB", 32)


def test_image2d_reader_names_a_tiff_of_more_samples_than_rgba(tmp_path):
    _write_samples(tmp_path / "bands.tif", np.zeros((5, 7, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"bands\.tif: 5 samples a pixel"):
        LoadImage(reader=Image2DReader(channels=3), image_only=True)(str(tmp_path / "bands.tif"))


def test_a_16_bit_rgb_image_gives_the_network_input_of_its_8_bit_copy(tmp_path):
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir

    picture = np.zeros((48, 64, 3), dtype=np.uint8)
    picture[:, :, 0] = np.arange(64) * 4  # from 0 to 252, left to right
    picture[:24, :, 1] = 255  # top half
    picture[:, :16, 2] = 128  # left quarter
    Image.fromarray(picture).save(tmp_path / "picture8.png")
    _write_samples(tmp_path / "picture12.png", picture.astype(np.uint16) * 16)  # 12-bit camera data in 16 bits
    _write_samples(tmp_path / "picture12.tif", picture.astype(np.uint16) * 16)
    for bundle in ("egeunet_skin_lesion", "unetv2_polyp"):
        parser = ConfigParser()
        parser.read_config(str(bundle_dir(bundle) / "configs" / "inference.yaml"))
        preprocessing = parser.get_parsed_content("preprocessing")
        eight = preprocessing({"image": str(tmp_path / "picture8.png")})["image"]
        for name in ("picture12.png", "picture12.tif"):
            sixteen = preprocessing({"image": str(tmp_path / name)})["image"]
            torch.testing.assert_close(sixteen, eight, msg=f"{bundle}: {name}")


def test_an_image_over_pil_pixel_limit_is_named_not_read_by_another_reader(tmp_path, monkeypatch):
    Image.new("1", (20, 11), 1).save(tmp_path / "large.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses images over twice this
    # the reader as the 2D bundles give it: LoadImage falls back to its other readers when one fails in `read`
    load = LoadImage(reader=Image2DReader(channels=3), image_only=True)
    with pytest.raises(Image.DecompressionBombError, match=r"large\.png: 220 pixels is over PIL's limit of 200 "):
        load(str(tmp_path / "large.png"))


@pytest.mark.parametrize(
    "name, content, error",
    [
        ("empty.png", b"", "UnidentifiedImageError"),
        ("page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "UnidentifiedImageError"),
        ("pointer.png", b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n", "Unidentified"),
        ("gone.png", None, "FileNotFoundError"),
    ],
)
def test_a_file_that_no_reader_takes_is_refused_without_asking_the_others(name, content, error, tmp_path, monkeypatch):
    from monai.data import ITKReader

    # ITK's reader, asked after ours failed, imported ITK before the first such file was reported (2-3 s)
    asked = []
    monkeypatch.setattr(ITKReader, "read", lambda self, data, **kwargs: asked.append(data))
    if content is not None:
        (tmp_path / name).write_bytes(content)
    load = LoadImage(reader=Image2DReader(channels=3), image_only=True)
    with pytest.raises(Exception) as raised:
        load(str(tmp_path / name))
    assert type(raised.value).__name__.startswith(error) and not asked
    # a file of binary content that PIL cannot identify is still handed on: ITK reads some (DICOM, HDF5)
    (tmp_path / "binary.png").write_bytes(b"\x00\x01binary")
    with pytest.raises(RuntimeError, match="cannot find a suitable reader"):
        load(str(tmp_path / "binary.png"))
    assert asked


def _encoded(format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(buffer, format)
    return buffer.getvalue()


def _flipped(content: bytes) -> bytes:
    middle = len(content) // 2
    return content[:middle] + bytes(b ^ 0x5A for b in content[middle : middle + 64]) + content[middle + 64 :]


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("cut.jpg", _encoded("JPEG")[:1500], r"cannot decode its pixel data \(image file is truncated"),
        ("cut.png", _encoded("PNG")[:3000], r"cannot decode its pixel data \(image file is truncated"),
        # bytes flipped in the middle of its pixel data: reading its EXIF (which may follow the pixels) decoded them,
        # and the error passed for a damaged EXIF block's, leaving the image half black
        ("flipped.png", _flipped(_encoded("PNG")), r"cannot decode its pixel data \(unrecognized data stream"),
        # an APP segment longer than the file: PIL knows the format, then cannot read its header
        ("header.jpg", b"\xff\xd8\xff\xe0\x7f\xff" + bytes(300), r"cannot read its header \(Truncated File Read"),
        # a JPEG's or a PNG's first bytes and then zeros, as an interrupted copy leaves: each of LoadImage's other
        # readers had tried it, with a log line each and libjpeg's own words on the console
        ("zeros.jpg", b"\xff\xd8\xff\xe0" + bytes(2000), r"cannot read its header \(it starts as a JPEG file does\)"),
        ("zeros.png", b"\x89PNG\r\n\x1a\n" + bytes(2000), r"cannot read its header \(it starts as a PNG file does\)"),
    ],
)
def test_a_damaged_image_is_named_without_asking_the_other_readers(name, content, problem, tmp_path, monkeypatch):
    from monai.data import ITKReader

    # handed on, it went through every reader of LoadImage, ITK's import included, and ended in their listing
    asked = []
    monkeypatch.setattr(ITKReader, "read", lambda self, data, **kwargs: asked.append(data))
    (tmp_path / name).write_bytes(content)
    load = LoadImage(reader=Image2DReader(channels=3), image_only=True)
    with pytest.raises(OSError, match=rf"{re.escape(name)}: {problem}.*; the file is damaged"):
        load(str(tmp_path / name))
    assert not asked


@pytest.mark.parametrize("content", [b"", b"\x00\x01binary"], ids=["empty, refused at once", "binary, handed on"])
def test_a_file_pil_cannot_identify_is_named_by_its_path_once(content, tmp_path):
    # PIL named the file object it was given: "cannot identify image file <_io.BufferedReader name='...'>"
    (tmp_path / "x.png").write_bytes(content)
    load = LoadImaged("image", reader=Image2DReader(channels=3), image_only=True)
    processed, [failure] = processed_cases([{"image": str(tmp_path / "x.png")}], load)
    assert processed == []
    assert failure["file"] == str(tmp_path / "x.png")
    assert failure["error"] == "UnidentifiedImageError: cannot identify the image file (not an image PIL reads)."
    with pytest.raises(Exception) as raised:
        load({"image": str(tmp_path / "x.png")})
    assert f"{tmp_path / 'x.png'}: cannot identify the image file" in str(raised.value)
    assert "BufferedReader" not in str(raised.value)


def _write_tiff(path, samples, orientation=1, photometric=2, planar=1, extra_samples=()):
    """An uncompressed TIFF of ``samples`` (height, width, samples; uint8 or uint16), one strip per plane.

    Written by hand: PIL writes no 16-bit colour, no CMYK in separate planes (``planar=2``), and SimpleITK no
    Orientation tag.
    """
    import struct

    height, width, count = samples.shape
    little = samples.astype(samples.dtype.newbyteorder("<"))
    planes = [little[..., i].tobytes() for i in range(count)] if planar == 2 else [little.tobytes()]
    data = b"".join(planes)
    data += b"\0" * (len(data) % 2)  # what follows starts on a word boundary
    arrays = b""  # tag values over 4 bytes, after the pixels

    def entry(tag, kind, values):
        nonlocal arrays
        packed = struct.pack(f"<{len(values)}{'H' if kind == 3 else 'I'}", *values)
        if len(packed) > 4:
            packed, arrays = struct.pack("<I", 8 + len(data) + len(arrays)), arrays + packed
        return struct.pack("<HHI", tag, kind, len(values)) + packed.ljust(4, b"\0")

    tags = [(256, 4, [width]), (257, 4, [height]), (258, 3, [samples.dtype.itemsize * 8] * count), (259, 3, [1])]
    tags += [(262, 3, [photometric]), (273, 4, [8 + i * len(planes[0]) for i in range(len(planes))])]
    tags += [(274, 3, [orientation]), (277, 3, [count]), (278, 4, [height]), (279, 4, [len(p) for p in planes])]
    tags += [(284, 3, [planar])] + ([(338, 3, list(extra_samples))] if extra_samples else [])
    entries = b"".join(entry(*tag) for tag in tags)
    with open(path, "wb") as file:
        file.write(b"II*\0" + struct.pack("<I", 8 + len(data) + len(arrays)) + data + arrays)
        file.write(struct.pack("<H", len(tags)) + entries + b"\0\0\0\0")


# (height 5, width 7), every value distinct: no flip, rotation or transposition keeps it
_STORED = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7) * 7


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
def test_a_tiff_gives_its_stored_pixels_whatever_its_orientation(orientation, compression, tmp_path):
    grey, rgb = tmp_path / "grey.tif", tmp_path / "rgb.tif"
    colour = np.stack([_STORED, 255 - _STORED, _STORED // 2], axis=-1)
    Image.fromarray(_STORED).save(grey, tiffinfo={0x0112: orientation}, compression=compression)
    Image.fromarray(colour).save(rgb, tiffinfo={0x0112: orientation}, compression=compression)
    _write_tiff(tmp_path / "raw.tif", colour, orientation)
    for path, channels, expected in ((grey, 1, _STORED), (rgb, 3, colour), (tmp_path / "raw.tif", 3, colour)):
        with pytest.warns(UserWarning, match=rf"{path.name}: EXIF orientation {orientation} is not applied"):
            loaded = LoadImage(reader=Image2DReader(channels=channels), image_only=True)(str(path))
        np.testing.assert_array_equal(loaded.numpy(), np.swapaxes(expected, 0, 1).astype(np.float32))  # width first
        np.testing.assert_array_equal(loaded.meta["spatial_shape"], [7, 5])


def test_a_16_bit_rgb_tiff_with_an_orientation_is_refused_not_mirrored(tmp_path):
    samples = np.stack([_STORED, 255 - _STORED, _STORED // 2], axis=-1).astype(np.uint16) * 257
    load = LoadImage(reader=Image2DReader(channels=3), image_only=True)
    _write_tiff(tmp_path / "plain16.tif", samples)
    np.testing.assert_array_equal(load(str(tmp_path / "plain16.tif")).numpy(), np.swapaxes(samples, 0, 1))
    for orientation in range(2, 9):
        _write_tiff(tmp_path / f"turned{orientation}.tif", samples, orientation)
        with pytest.raises(ValueError, match=rf"turned{orientation}\.tif: TIFF orientation {orientation}, which"):
            load(str(tmp_path / f"turned{orientation}.tif"))


def test_a_16_bit_cmyk_tiff_is_read_at_8_bits_or_refused_where_pil_misreads_it(tmp_path):
    cmyk = (np.arange(5 * 7 * 4).reshape(5, 7, 4) * 467 + 11).astype(np.uint16)  # distinct, none a multiple of 256
    high = (cmyk >> 8).astype(np.uint8)
    rgb = np.asarray(Image.frombytes("CMYK", (7, 5), high.tobytes()).convert("RGB"))  # PIL's RGB of its 8 bits
    load = LoadImage(reader=Image2DReader(channels=3), image_only=True)
    # interleaved (as most writers store it): PIL keeps the high byte of each sample, ITK reads none of them
    _write_tiff(tmp_path / "cmyk16.tif", cmyk, photometric=5)
    loaded = load(str(tmp_path / "cmyk16.tif"))
    np.testing.assert_array_equal(loaded.numpy(), np.swapaxes(rgb, 0, 1))
    assert (loaded.meta["mode"], loaded.meta["bits_per_sample"]) == ("CMYK", 8)
    # in separate planes PIL's decoder unpacks the 16-bit samples as 8-bit ones: a wrong image had been read
    _write_tiff(tmp_path / "planes8.tif", high, photometric=5, planar=2)
    np.testing.assert_array_equal(load(str(tmp_path / "planes8.tif")).numpy(), np.swapaxes(rgb, 0, 1))
    _write_tiff(tmp_path / "planes16.tif", cmyk, photometric=5, planar=2)
    with pytest.raises(ValueError, match=r"planes16\.tif: 16-bit CMYK TIFF in uncompressed separate planes, which"):
        load(str(tmp_path / "planes16.tif"))
    # with alpha PIL opens none and ITK fails: the reader's name for it, not the last reader's failure
    alpha = np.concatenate([cmyk, np.full((5, 7, 1), 65535, np.uint16)], axis=-1)
    _write_tiff(tmp_path / "alpha16.tif", alpha, photometric=5, extra_samples=(2,))
    with pytest.raises(ValueError, match=r"alpha16\.tif: 16-bit CMYK TIFF .*, which PIL cannot open"):
        load(str(tmp_path / "alpha16.tif"))


def _lesion(dtype=np.uint8, value=255):
    lesion = np.zeros((6, 9), dtype=dtype)
    lesion[1:4, 2:7] = value
    return lesion


def _palette_with_transparency():
    # index 1 (the lesion) opaque black, index 0 transparent black: the palette colours are one value
    image = Image.fromarray((_lesion() > 0).astype(np.uint8), mode="P")
    image.putpalette([0] * 256 * 3)
    image.info["transparency"] = bytes([0] + [255] * 255)
    return image


@pytest.mark.parametrize(
    "name, write",
    [
        ("rgba.png", lambda p: Image.fromarray(np.dstack([np.zeros((6, 9, 3), np.uint8), _lesion()])).save(p)),
        (
            "white_rgba.png",
            lambda p: Image.fromarray(np.dstack([np.full((6, 9, 3), 255, np.uint8), _lesion()])).save(p),
        ),
        ("la.png", lambda p: Image.fromarray(np.dstack([np.zeros((6, 9), np.uint8), _lesion()]), mode="LA").save(p)),
        ("palette.png", lambda p: _palette_with_transparency().save(p, transparency=0)),
        (
            "rgba16.png",
            lambda p: _write_samples(p, np.dstack([np.zeros((6, 9, 3), np.uint16), _lesion(np.uint16, 65535)])),
        ),
        ("la16.png", lambda p: _write_samples(p, np.dstack([np.zeros((6, 9), np.uint16), _lesion(np.uint16, 65535)]))),
    ],
)
def test_a_mask_drawn_only_in_its_alpha_channel_is_read_from_its_alpha(name, write, tmp_path):
    # colour one value everywhere, the lesion opaque on transparency: its grey had been an empty mask
    write(tmp_path / name)
    mask = LoadImage(reader=Image2DReader(channels=1), image_only=True)(str(tmp_path / name))
    np.testing.assert_array_equal(mask.numpy().T > 0, _lesion() > 0)  # width first


@pytest.mark.parametrize("colour", [0, 255])
def test_a_lesion_free_mask_of_such_an_export_is_empty_and_an_opaque_one_is_its_grey(colour, tmp_path):
    # transparent everywhere: the lesion-free images of a transparent-overlay export; a white one had been read
    # as lesion everywhere
    clear = np.zeros((6, 9), np.uint8)
    Image.fromarray(np.dstack([np.full((6, 9, 3), colour, np.uint8), clear])).save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([np.full((6, 9), colour, np.uint8), clear]), mode="LA").save(tmp_path / "la.png")
    opaque = np.full((6, 9), 255, np.uint8)
    Image.fromarray(np.dstack([np.full((6, 9, 3), colour, np.uint8), opaque])).save(tmp_path / "opaque.png")
    load = LoadImage(reader=Image2DReader(channels=1), image_only=True)
    for name in ("rgba.png", "la.png"):
        assert float(load(str(tmp_path / name)).abs().max()) == 0, name
    np.testing.assert_array_equal(load(str(tmp_path / "opaque.png")).numpy(), np.full((9, 6), colour))


def test_alpha_is_dropped_from_images_and_from_masks_drawn_in_colour(tmp_path):
    colour = np.zeros((6, 9, 3), np.uint8)
    colour[_lesion() > 0] = (255, 0, 0)
    alpha = np.full((6, 9), 255, np.uint8)
    alpha[0] = 0  # a transparent row that is no lesion
    Image.fromarray(np.dstack([colour, alpha])).save(tmp_path / "red.png")
    mask = LoadImage(reader=Image2DReader(channels=1), image_only=True)(str(tmp_path / "red.png"))
    np.testing.assert_array_equal(mask.numpy().T, (_lesion() > 0) * 76)  # the luma of red
    Image.fromarray(np.dstack([np.zeros((6, 9, 3), np.uint8), _lesion()])).save(tmp_path / "overlay.png")
    image = LoadImage(reader=Image2DReader(channels=3), image_only=True)(str(tmp_path / "overlay.png"))
    assert float(image.abs().max()) == 0  # an RGB image keeps its colour


def _palette_mask(path, indices, colours, **save):
    """A palette image file of ``indices`` whose palette shows index ``i`` as ``colours[i]``."""
    image = Image.fromarray(indices.astype(np.uint8))
    image.putpalette([sample for colour in colours for sample in colour])  # an "L" image becomes "P"
    image.save(path, **save)
    return str(path)


_VOC = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]  # background, then the display colours of classes 1 and 2


@pytest.mark.parametrize("suffix", ["png", "gif", "bmp", "tif"])
def test_a_palette_mask_is_read_by_its_indices(suffix, tmp_path):
    # looked up, index 1 had been its colour's luminance (38): one class of several came out as another value
    load = LoadImage(reader=Image2DReader(channels=1), image_only=True)
    path = _palette_mask(tmp_path / f"voc.{suffix}", _lesion(value=1), _VOC)
    assert Image.open(path).mode == "P"
    np.testing.assert_array_equal(load(path).numpy().T, _lesion(value=1))
    # so a mask of two classes is refused as one: looked up (0, 38, 75), both had been read as lesion
    two = _lesion(value=1) + (np.arange(9) > 6) * 2
    with pytest.raises(ValueError, match=r"two\.\w+: mask values 0, 1, 2 are several classes"):
        BinarizeLabel()(load(_palette_mask(tmp_path / f"two.{suffix}", two, _VOC)))


def test_a_palette_mask_with_transparent_indices_is_read_by_its_indices(tmp_path):
    load = LoadImage(reader=Image2DReader(channels=1), image_only=True)
    # background index 0 transparent white, lesion index 1 opaque black: its grey had been the inverted mask
    path = _palette_mask(tmp_path / "overlay.png", _lesion(value=1), [(255, 255, 255), (0, 0, 0)], transparency=0)
    np.testing.assert_array_equal(load(path).numpy().T, _lesion(value=1))
    # PA (palette and alpha, TIFF): the indices too, where the alpha is no drawing
    image = Image.open(_palette_mask(tmp_path / "p.png", _lesion(value=1), _VOC))
    Image.merge("PA", (image, Image.new("L", image.size, 255))).save(tmp_path / "pa.tif")
    assert Image.open(tmp_path / "pa.tif").mode == "PA"
    np.testing.assert_array_equal(load(str(tmp_path / "pa.tif")).numpy().T, _lesion(value=1))


def test_a_grey_ramp_palette_mask_reads_as_before(tmp_path):
    # index i shown as grey i (DRIVE-style GIF masks): the indices are the grey values
    load = LoadImage(reader=Image2DReader(channels=1), image_only=True)
    ramp = [(i, i, i) for i in range(256)]
    for suffix in ("png", "tif"):
        path = _palette_mask(tmp_path / f"ramp.{suffix}", _lesion(), ramp)
        assert Image.open(path).mode == "P"
        np.testing.assert_array_equal(load(path).numpy().T, _lesion())
    # a 0/255 mask PIL saves as GIF keeps two palette entries, black 0 and white 1: the same mask binarized
    Image.fromarray(_lesion()).save(tmp_path / "grey.gif")
    assert Image.open(tmp_path / "grey.gif").mode == "P"
    np.testing.assert_array_equal(BinarizeLabel()(load(str(tmp_path / "grey.gif"))).numpy().T, _lesion() > 0)


def _rgb_mask_as_gif(path):
    # PIL puts the white lesion at index 0 and the black background at index 1
    Image.fromarray(np.repeat(_lesion()[..., None], 3, axis=-1)).save(path)
    return str(path)


@pytest.mark.parametrize(
    "name, write, lowest, shown",
    [
        # background index 0 shown white, lesion index 1 black: looked up, the lesion had been the background
        ("white.png", lambda p: _palette_mask(p, _lesion(value=1), [(255, 255, 255), (0, 0, 0)]), 0, "brighter"),
        ("white.gif", lambda p: _palette_mask(p, _lesion(value=1), [(255, 255, 255), (0, 0, 0)]), 0, "brighter"),
        ("red.png", lambda p: _palette_mask(p, _lesion(value=1), [(255, 255, 255), (255, 0, 0)]), 0, "brighter"),
        # the opposite file, alike: read by index, its lesion would be the background
        ("rgb.gif", _rgb_mask_as_gif, 0, "brighter"),
        # an empty mask of a palette with black at 255: read by index, lesion everywhere
        (
            "empty.png",
            lambda p: _palette_mask(p, np.full((6, 9), 255), [(255, 255, 255)] * 255 + [(0, 0, 0)]),
            255,
            "black",
        ),
    ],
)
def test_a_palette_mask_whose_colours_tell_another_background_is_refused(name, write, lowest, shown, tmp_path):
    path = write(tmp_path / name)
    assert Image.open(path).mode == "P"
    load = LoadImage(reader=Image2DReader(channels=1), image_only=True)
    with pytest.raises(ValueError, match=rf"{name}: palette mask whose lowest index, {lowest}, is shown {shown}"):
        load(path)
    # as an image, its colours
    assert LoadImage(reader=Image2DReader(channels=3), image_only=True)(path).shape == (9, 6, 3)


def test_the_2d_bundles_evaluate_a_palette_label_by_its_indices(tmp_path):
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir

    Image.fromarray(np.zeros((6, 9, 3), np.uint8)).save(tmp_path / "image.png")
    voc = _palette_mask(tmp_path / "voc.png", _lesion(value=1), _VOC)
    white = _palette_mask(tmp_path / "white.png", _lesion(value=1), [(255, 255, 255), (0, 0, 0)])
    cases = [{"image": str(tmp_path / "image.png"), "label": label} for label in (voc, white)]
    for bundle in ("egeunet_skin_lesion", "unetv2_polyp"):
        parser = ConfigParser()
        parser.read_config([str(bundle_dir(bundle) / "configs" / name) for name in ("train.yaml", "evaluate.yaml")])
        # the palette label read by index; the one its colours contradict fails
        (evaluated,), (failure,) = processed_cases(cases, parser.get_parsed_content("validate#preprocessing"))
        np.testing.assert_array_equal(evaluated["label"][0].numpy().T, _lesion(value=1), err_msg=bundle)
        assert "white.png: palette mask whose lowest index, 0, is shown brighter" in failure["error"]


@pytest.mark.parametrize("suffix", [".tif", ".gif", ".png", ".webp"])
def test_a_file_of_several_images_is_refused_not_read_as_its_first(suffix, tmp_path):
    # a stack of TIFF pages or an animation: PIL opens its first image, and the others had been dropped without a word
    first, second = (Image.fromarray(np.full((6, 8, 3), value, np.uint8)) for value in (10, 200))
    path = tmp_path / f"several{suffix}"
    first.save(path, save_all=True, append_images=[second])
    load = LoadImage(reader=Image2DReader(channels=3), image_only=True)
    kind = "2 images (TIFF pages)" if suffix == ".tif" else "an animation of 2 frames"
    with pytest.raises(ValueError, match=rf"several\{suffix}: holds {re.escape(kind)}, not one"):
        load(str(path))


def test_a_stack_of_float_rgb_tiff_pages_which_pil_does_not_open_is_refused(tmp_path):
    # such a TIFF goes to ITK, which reads the pages as a volume: its first page had been kept without a word
    import SimpleITK as sitk

    pages = np.stack([np.full((6, 8, 3), value, np.float32) for value in (0.1, 0.9)])
    sitk.WriteImage(sitk.GetImageFromArray(pages, isVector=True), str(tmp_path / "stack.tif"))
    sitk.WriteImage(sitk.GetImageFromArray(pages[0], isVector=True), str(tmp_path / "one.tif"))
    load = LoadImage(reader=Image2DReader(channels=3), image_only=True)
    with pytest.raises(ValueError, match=r"stack\.tif: holds 2 images \(TIFF pages\), not one"):
        load(str(tmp_path / "stack.tif"))
    image = load(str(tmp_path / "one.tif"))
    assert tuple(image.shape) == (8, 6, 3) and np.allclose(image.numpy(), 0.1)


@pytest.mark.parametrize("link", ["past the end", "into the header"])
def test_a_tiff_whose_link_to_a_next_page_is_damaged_gives_its_one_image(link, tmp_path):
    # the directory the link leads to holds no image: no second page to refuse, as PIL reads the first alone
    Image.fromarray(np.full((6, 8, 3), 50, np.uint8)).save(tmp_path / "one.tif")
    data = bytearray((tmp_path / "one.tif").read_bytes())
    directory = int.from_bytes(data[4:8], "little")
    entries = int.from_bytes(data[directory : directory + 2], "little")
    link_at = directory + 2 + 12 * entries
    data[link_at : link_at + 4] = (len(data) + 1000 if link == "past the end" else 10).to_bytes(4, "little")
    (tmp_path / "damaged.tif").write_bytes(data)
    image = LoadImage(reader=Image2DReader(channels=3), image_only=True)(str(tmp_path / "damaged.tif"))
    assert tuple(image.shape) == (8, 6, 3) and np.all(image.numpy() == 50)


def test_a_tiff_with_reduced_resolution_pages_and_a_camera_s_multi_picture_jpeg_give_their_first_image(tmp_path):
    first, thumbnail = (
        Image.fromarray(np.full((6, 8, 3), 10, np.uint8)),
        Image.fromarray(np.full((3, 4, 3), 200, np.uint8)),
    )
    # a pyramid's level or a thumbnail after the image (NewSubfileType 1: reduced resolution)
    with TiffImagePlugin.AppendingTiffWriter(tmp_path / "pyramid.tif", True) as tiff:
        first.save(tiff, format="TIFF")
        tiff.newFrame()
        thumbnail.save(tiff, format="TIFF", tiffinfo={254: 1})
        tiff.newFrame()
    # a phone's JPEG with a preview picture (MPO): its first picture is the photograph
    first.save(tmp_path / "photo.jpg", format="MPO", save_all=True, append_images=[thumbnail], quality=100)
    load = LoadImage(reader=Image2DReader(channels=3), image_only=True)
    for name in ("pyramid.tif", "photo.jpg"):
        with Image.open(tmp_path / name) as opened:
            assert opened.n_frames == 2
        image = load(str(tmp_path / name))
        assert tuple(image.shape) == (8, 6, 3) and abs(float(image.float().mean()) - 10) < 2, name


def test_a_folder_given_as_a_2d_image_is_refused_by_name(tmp_path, monkeypatch):
    # MONAI Label gives an unknown study id an empty path, which MONAI makes ".": the error had named a file of
    # another reader's choosing in the server's working folder (IsADirectoryError: './app')
    (tmp_path / "app").mkdir()
    monkeypatch.chdir(tmp_path)
    for name, where in ((str(tmp_path), ""), ("", f" ({tmp_path})")):
        with pytest.raises(ValueError) as raised:
            LoadImage(reader=Image2DReader(channels=3), image_only=True)(name)
        assert str(raised.value) == f"{name or '.'}: is a folder{where}, not an image file"
