"""DICOM pixel encodings read to the right modality values: bit depths, signedness, rescale, compression.

Each series is written from known modality values (e.g. HU) with one encoding, then read by MedicalImageReader
and by SimpleITK; both must give the known values.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage
from monai_unets.data import describe_error
from monai_unets.data.medical_io import MedicalImageReader
from monai_unets.scripts.benchmark_readers import read_with_simpleitk
from monai_unets.scripts.demo_ct import write_dicom_series

SHAPE = (6, 5, 4)


def _encode(folder: Path, stored: np.ndarray, bits: int, signed: bool, rescales, allocated: int = 16, junk: int = 0):
    """Rewrite the slices of ``folder`` (sorted by InstanceNumber) with ``stored[..., k]`` as slice ``k``'s
    pixels, ``bits`` of ``allocated`` used, and slice ``k`` rescaled by ``rescales[k] = (slope, intercept)``.
    ``junk`` is OR-ed into the unused high bits (overlay bits, as some scanners leave them)."""
    paths = sorted(folder.iterdir(), key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        pixels = stored[:, :, k].T.astype(np.int64)
        raw = (pixels & ((1 << bits) - 1)) | junk  # two's complement in `bits` bits, high bits as given
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = allocated, bits, bits - 1, int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = rescales[k]
        ds.PixelData = raw.astype(f"<u{allocated // 8}").tobytes()
        ds.save_as(path)


def _series(tmp_path) -> Path:
    return write_dicom_series(np.zeros(SHAPE, np.int16), tmp_path / "ct", (0.7, 0.8, 2.0), (5.0, -3.0, 10.0)).folder


def _assert_reads(folder: Path, expected: np.ndarray, simpleitk: bool = True) -> None:
    image = LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)(str(folder))
    np.testing.assert_allclose(image.numpy(), expected, rtol=1e-6, err_msg="MedicalImageReader")
    if not simpleitk:
        return
    reference, _, _image = read_with_simpleitk(folder)
    np.testing.assert_allclose(reference, expected, rtol=1e-6, err_msg="SimpleITK")


STORED = np.random.default_rng(3).integers(0, 4096, size=SHAPE)


def test_12_bit_unsigned_with_intercept_and_overlay_bits(tmp_path):
    folder = _series(tmp_path)
    _encode(folder, STORED, bits=12, signed=False, rescales=[(1, -1024)] * SHAPE[2], junk=1 << 13)
    _assert_reads(folder, STORED - 1024)


def test_12_bit_signed_values_are_sign_extended(tmp_path):
    folder = _series(tmp_path)
    values = STORED - 2048  # -2048..2047 fits 12-bit two's complement
    _encode(folder, values, bits=12, signed=True, rescales=[(1, 0)] * SHAPE[2])
    _assert_reads(folder, values)


def test_16_bit_unsigned_with_fractional_slope_and_intercept(tmp_path):
    folder = _series(tmp_path)
    stored = STORED * 16
    _encode(folder, stored, bits=16, signed=False, rescales=[(0.25, -100.5)] * SHAPE[2])
    _assert_reads(folder, stored * 0.25 - 100.5)


def test_each_slice_has_its_own_rescale(tmp_path):
    folder = _series(tmp_path)
    rescales = [(1.0 + k, -10.0 * k) for k in range(SHAPE[2])]  # PET-like: one scale per slice
    _encode(folder, STORED, bits=16, signed=True, rescales=rescales)
    expected = np.stack([STORED[:, :, k] * s + i for k, (s, i) in enumerate(rescales)], axis=-1)
    _assert_reads(folder, expected)


def test_16_bit_unsigned_beyond_int16(tmp_path):
    folder = _series(tmp_path)
    stored = STORED * 16  # up to 65520
    _encode(folder, stored, bits=16, signed=False, rescales=[(1, 0)] * SHAPE[2])
    _assert_reads(folder, stored)


def test_8_bit_pixels(tmp_path):
    folder = _series(tmp_path)
    stored = STORED % 256
    _encode(folder, stored, bits=8, signed=False, rescales=[(1, 0)] * SHAPE[2], allocated=8)
    _assert_reads(folder, stored)


def test_rle_compressed_series_is_decoded(tmp_path):
    from pydicom.uid import RLELossless

    folder = _series(tmp_path)
    _encode(folder, STORED, bits=16, signed=True, rescales=[(1, -1024)] * SHAPE[2])
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    # GDCM (ITK, SimpleITK) refuses pydicom's RLE encoding of these odd-width slices; pydicom decodes it
    _assert_reads(folder, STORED - 1024, simpleitk=False)


def _compress_jpeg_lossless(folder: Path, tmp_path: Path) -> None:
    """Re-encodes each slice's stored values as JPEG Lossless (GDCM's encoder, through SimpleITK)."""
    import SimpleITK as sitk

    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array.astype(np.int16 if ds.PixelRepresentation else np.uint16)
        writer = sitk.ImageFileWriter()
        writer.SetImageIO("GDCMImageIO")
        writer.SetFileName(str(tmp_path / "encoded.dcm"))
        writer.SetUseCompression(True)
        writer.SetCompressor("JPEG")
        writer.Execute(sitk.GetImageFromArray(stored[None]))
        encoded = pydicom.dcmread(tmp_path / "encoded.dcm")
        ds.file_meta.TransferSyntaxUID = encoded.file_meta.TransferSyntaxUID
        ds.PixelData = encoded.PixelData
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.save_as(path, enforce_file_format=True)


def test_compressed_slices_with_their_own_fractional_slopes_keep_their_fractions(tmp_path):
    # slope 1 on the first slice, fractional on the others (per-slice slopes, as MR scanners write them): ITK, which
    # decodes JPEG Lossless, gave the volume the first slice's integer type and cut the others' fractions off
    folder = _series(tmp_path)
    rescales = [(1.0, 0.0)] + [(0.004 * k, 0.5) for k in range(1, SHAPE[2])]
    _encode(folder, STORED, bits=16, signed=True, rescales=rescales)
    expected = np.stack([STORED[:, :, k] * s + i for k, (s, i) in enumerate(rescales)], axis=-1)
    _compress_jpeg_lossless(folder, tmp_path)
    assert pydicom.dcmread(next(folder.iterdir())).file_meta.TransferSyntaxUID == pydicom.uid.JPEGLosslessSV1
    _assert_reads(folder, expected, simpleitk=False)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("padding", [(65535, None), (0, 9)], ids=["value", "range"])
def test_padding_outside_the_field_of_view_takes_the_lowest_measured_value(tmp_path, compressed, padding):
    # an unsigned CT's padding of 65535 had been read as 64511 HU around every slice, brighter than bone
    value, limit = padding
    folder = _series(tmp_path)
    stored = np.random.default_rng(4).integers(1000, 3000, size=SHAPE)
    stored[:2, :, :] = value
    if limit is not None:
        stored[2, 0, :] = limit
    rescales = [(1, -1024)] * (SHAPE[2] - 1) + [(2, -2048)]  # the last slice with a rescale of its own
    _encode(folder, stored, bits=16, signed=False, rescales=rescales)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.PixelPaddingValue = value
        ds["PixelPaddingValue"].VR = "US"
        if limit is not None:
            ds.PixelPaddingRangeLimit = limit
            ds["PixelPaddingRangeLimit"].VR = "US"
        ds.save_as(path)
    if compressed:  # decoded by ITK, which rescales in floating point
        _compress_jpeg_lossless(folder, tmp_path)
    expected = np.stack([stored[:, :, k] * s + i for k, (s, i) in enumerate(rescales)], axis=-1).astype(float)
    padded = np.zeros(SHAPE, bool)
    padded[:2] = True
    if limit is not None:
        padded[2, 0, :] = True
    expected[padded] = expected[~padded].min()
    _assert_reads(folder, expected, simpleitk=False)


def _set_monochrome1(folder: Path) -> None:
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(path)


@pytest.mark.parametrize("compressed", [False, True])
def test_monochrome1_gives_the_modality_values_whichever_decoder_reads_it(tmp_path, compressed):
    # MONOCHROME1 says how to display the values, not what they are: GDCM (ITK) inverted them, a CT read as
    # -HU - 2049 where pydicom's path gave HU
    folder = _series(tmp_path)
    _encode(folder, STORED - 2048, bits=16, signed=True, rescales=[(1, -1024)] * SHAPE[2])
    _set_monochrome1(folder)
    if compressed:
        _compress_jpeg_lossless(folder, tmp_path)
    _assert_reads(folder, STORED - 2048 - 1024, simpleitk=False)


def test_a_single_monochrome1_slice_gives_its_modality_values(tmp_path):
    # a lone file is read by ITK: 12-bit unsigned, fractional rescale
    folder = _series(tmp_path)
    _encode(folder, STORED, bits=12, signed=False, rescales=[(0.5, -20.0)] * SHAPE[2])
    _set_monochrome1(folder)
    first = min(folder.iterdir(), key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
    image = LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)(str(first))
    np.testing.assert_allclose(image.numpy()[:, :, 0], STORED[:, :, 0] * 0.5 - 20.0)


def _set_colour_model(path: Path, photometric: str, pixels: np.ndarray | None = None, rescale: bool = False) -> None:
    """``path`` made one 8-bit sample per pixel (``pixels``, zeros by default) of colour model ``photometric``;
    PALETTE COLOR gets a palette whose red, green and blue are 16-bit ramps of different slopes. ``rescale`` keeps
    the slice's RescaleSlope and RescaleIntercept (1 and -1024, a converted CT)."""
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.zeros((ds.Rows, ds.Columns)) if pixels is None else pixels).astype(np.uint8).tobytes()
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    for keyword in () if rescale else ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        ds.pop(keyword, None)
    if photometric == "PALETTE COLOR":
        for colour in range(3):  # 256 entries from index 0, of 16 bits
            ds.add_new(0x00281101 + colour, "US", [256, 0, 16])
            ds.add_new(0x00281201 + colour, "OW", (np.arange(256, dtype=np.uint16) * (colour + 1)).tobytes())
    ds.save_as(path)


def test_a_palette_colour_series_reads_its_colours_as_its_files_do(tmp_path):
    # one sample per pixel, yet colour: the series had been read as one channel of palette indices, which a CT
    # bundle would have segmented as HU, while each of its files alone gave the palette's three colours
    from monai.transforms import EnsureChannelFirst
    from monai_unets.data.medical_io import VALUES_PER_VOXEL

    folder = _series(tmp_path)
    paths = sorted(folder.iterdir(), key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
    for k, path in enumerate(paths):
        _set_colour_model(path, "PALETTE COLOR", STORED[:, :, k].T % 256)
    load = LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)
    series, first = (EnsureChannelFirst()(load(str(path))) for path in (folder, paths[0]))
    assert series.shape == (3, *SHAPE) and series.meta[VALUES_PER_VOXEL] == 3
    assert first.shape == (3, *SHAPE[:2], 1) and first.meta[VALUES_PER_VOXEL] == 3
    np.testing.assert_array_equal(series.numpy()[..., :1], first.numpy())
    # the colours of the palette, not its indices
    assert not np.array_equal(series.numpy()[0], series.numpy()[1])


def test_a_palette_colour_file_or_series_that_keeps_its_scans_rescale_reads_its_colours(tmp_path):
    # a CT converted to palette colour with its rescale kept: ITK applied the rescale to the palette indices and
    # failed with "itk.RGBPixel is not wrapped for input type itk.SS", naming no file
    from monai.transforms import EnsureChannelFirst

    plain, kept = _series(tmp_path / "plain"), _series(tmp_path / "kept")
    for folder, rescale in ((plain, False), (kept, True)):
        paths = sorted(folder.iterdir(), key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
        for k, path in enumerate(paths):
            _set_colour_model(path, "PALETTE COLOR", STORED[:, :, k].T % 256, rescale=rescale)
    assert pydicom.dcmread(min(kept.iterdir())).RescaleIntercept == -1024
    load = LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)
    for source in (lambda folder: folder, lambda folder: min(folder.iterdir())):  # the series, one of its files
        image, expected = (EnsureChannelFirst()(load(str(source(folder)))) for folder in (kept, plain))
        assert image.shape[0] == 3
        np.testing.assert_array_equal(image.numpy(), expected.numpy())


@pytest.mark.parametrize(
    ("photometric", "reason"),
    [
        ("RGB", "has PhotometricInterpretation RGB with SamplesPerPixel 1: RGB stores 3 samples per pixel"),
        ("HSV", "has PhotometricInterpretation HSV, a colour model that cannot be read"),
    ],
)
def test_a_colour_model_that_its_samples_or_itk_cannot_give_names_the_file(tmp_path, photometric, reason):
    # ITK read an RGB header over one sample per pixel as colours made of the following pixels padded with zeros,
    # and failed on the retired colour models with a template error naming no file; pydicom's path had read both
    # as grey values
    folder = _series(tmp_path)
    for path in folder.iterdir():
        _set_colour_model(path, photometric)
    for source in (folder, min(folder.iterdir())):
        message = _load_error(source)
        assert reason in message and "IM000" in message, message


def test_a_colour_image_of_16_bits_a_sample_names_the_file_as_a_colour_image(tmp_path):
    # ITK's Python images hold colours of 8 bits only: such a series or file had failed with "itk.Image is not
    # wrapped for input type itk.RGBPixel[itk.US]", naming the folder but not a colour image
    folder = _series(tmp_path)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = bytes(ds.Rows * ds.Columns * 3 * 2)
        ds.save_as(path)
    for source in (folder, min(folder.iterdir())):
        message = _load_error(source)
        assert "IM000" in message and "is a colour DICOM image (RGB: 3 samples per pixel of 16 bits)" in message, (
            message
        )


def test_float_pixel_data_is_read_as_stored(tmp_path):
    # parametric maps (ADC, T1 maps) store float values in FloatPixelData, without rescale
    folder = _series(tmp_path)
    values = (STORED - 1024.25).astype(np.float32)
    paths = sorted(folder.iterdir(), key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.RescaleSlope, ds.RescaleIntercept
        ds.BitsAllocated = 32
        ds.FloatPixelData = np.ascontiguousarray(values[:, :, k].T).tobytes()
        ds.save_as(path)
    _assert_reads(folder, values, simpleitk=False)


def test_an_enhanced_multiframe_file_gives_each_frame_its_own_rescale(tmp_path):
    # the series with one scale per slice as one enhanced file (a rescale in each frame's functional groups, as
    # enhanced MR and PET carry them): ITK gave every frame one rescale, thousands off on the others
    from tests.geometry import write_enhanced_ct

    folder = _series(tmp_path)
    rescales = [(1.0 + k, -10.0 * k) for k in range(SHAPE[2])]
    _encode(folder, STORED, bits=16, signed=True, rescales=rescales)
    path = write_enhanced_ct(folder, tmp_path / "enhanced.dcm")
    frames = pydicom.dcmread(path, stop_before_pixels=True).PerFrameFunctionalGroupsSequence
    assert all("PixelValueTransformationSequence" in frame for frame in frames)
    expected = np.stack([STORED[:, :, k] * s + i for k, (s, i) in enumerate(rescales)], axis=-1)
    # alone in a folder, as exports put an enhanced image in a series folder of its own, it is read as the file:
    # that had given every frame ITK's one rescale
    (tmp_path / "alone").mkdir()
    shutil.copy(path, tmp_path / "alone")
    for source in (path, tmp_path / "alone"):
        image = LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)(str(source))
        # the file's frames may run the other way along the slice axis than the series' slices
        values = image.numpy()
        assert np.allclose(values, expected) or np.allclose(values[..., ::-1], expected), source


def test_a_colour_enhanced_file_with_pixel_value_transformations_reads_its_colours(tmp_path):
    # the rescale groups of a converted scan, left in a colour rendering: the frames' colours had been rescaled as
    # if they were one value per pixel, which failed with "could not broadcast input array from shape (90,) into
    # shape (30,)", naming no file
    from monai.transforms import EnsureChannelFirst
    from monai_unets.data.medical_io import VALUES_PER_VOXEL

    from tests.geometry import write_enhanced_ct

    path = write_enhanced_ct(_series(tmp_path), tmp_path / "enhanced.dcm")
    ds = pydicom.dcmread(path)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    colours = np.random.default_rng(5).integers(0, 256, (SHAPE[2], SHAPE[1], SHAPE[0], 3), dtype=np.uint8)
    ds.PixelData = colours.tobytes()
    ds.save_as(path)
    image = EnsureChannelFirst()(LoadImage(reader=MedicalImageReader(), image_only=True, dtype=None)(str(path)))
    assert image.shape == (3, *SHAPE) and image.meta[VALUES_PER_VOXEL] == 3
    # the stored colours, frame by frame (the frames may run against the slice axis)
    expected = colours.transpose(3, 2, 1, 0)
    assert np.array_equal(image.numpy(), expected) or np.array_equal(image.numpy()[..., ::-1], expected)


def test_truncated_pixel_data_names_the_file(tmp_path):
    folder = _series(tmp_path)
    path = sorted(folder.iterdir())[1]
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:-10]
    ds.save_as(path)
    with pytest.raises(Exception) as info:
        LoadImage(reader=MedicalImageReader(), image_only=True)(str(folder))
    error = info.value
    while error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, ValueError) and path.name in str(error) and "truncated" in str(error)


def test_truncated_pixel_data_of_a_lone_file_names_the_file(tmp_path):
    from tests.geometry import write_enhanced_ct

    # a lone slice or multi-frame file is read by ITK, whose words named no reason: "Could not create IO object
    # for reading file", "No ImageIO is registered to handle the given file"
    folder = _series(tmp_path)
    single = tmp_path / "single.dcm"
    single.write_bytes(sorted(folder.iterdir())[1].read_bytes()[:-10])
    enhanced = write_enhanced_ct(folder, tmp_path / "enhanced.dcm")
    enhanced.write_bytes(enhanced.read_bytes()[:-10])
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "enhanced.dcm").write_bytes(enhanced.read_bytes())
    assert f"the pixel data of {single} is truncated: 50 of 60 bytes (5 x 6)" in _load_error(single)
    for path in (enhanced, tmp_path / "one"):  # a file, and a folder of that one file
        message = _load_error(path)
        assert "enhanced.dcm is truncated: 230 of 240 bytes (4 frames of 5 x 6)" in message, message


def _load_error(path: Path) -> str:
    with pytest.raises(Exception) as info:
        LoadImage(reader=MedicalImageReader(), image_only=True)(str(path))
    return describe_error(info.value)


def _pydicom_decodes(syntax: str) -> bool:
    from pydicom.pixels import get_decoder

    return get_decoder(syntax).is_available


def test_pixel_data_that_no_decoder_reads_names_the_file_and_its_transfer_syntax(tmp_path):
    from pydicom.encaps import encapsulate

    folder = _series(tmp_path)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"  # HTJ2K Lossless: ITK's GDCM has no decoder
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(100)])
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
        ds.save_as(path)
    first = min(folder.iterdir())
    # ITK's words had named no file: "GDCMImageIO: Failed to change to Implicit Transfer Syntax"
    for source in (folder, first):
        message = _load_error(source)
        assert f"{first}: cannot decode its pixel data (High-Throughput JPEG 2000" in message, message
        if not _pydicom_decodes("1.2.840.10008.1.2.4.201"):
            assert "no installed decoder reads it" in message and "pydicom reads it with pylibjpeg" in message, message


def test_a_damaged_slice_of_a_compressed_series_is_named(tmp_path):
    from pydicom.encaps import encapsulate, generate_fragmented_frames

    folder = _series(tmp_path)
    _encode(folder, STORED, bits=16, signed=True, rescales=[(1, -1024)] * SHAPE[2])
    _compress_jpeg_lossless(folder, tmp_path)
    damaged = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(damaged)
    stream = b"".join(next(generate_fragmented_frames(ds.PixelData)))
    ds.PixelData = encapsulate([stream[: len(stream) // 3]])  # cut short, as an interrupted transfer leaves it
    ds.save_as(damaged)
    message = _load_error(folder)
    assert f"{damaged}: cannot decode its pixel data" in message, message
    if not _pydicom_decodes(ds.file_meta.TransferSyntaxUID):  # else pydicom's decoder names it
        assert "the file is damaged, as the series' other slices decode" in message, message
