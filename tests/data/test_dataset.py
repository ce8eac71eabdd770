from __future__ import annotations

import numpy as np
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monai_unets.data import describe_error
from monai_unets.data.dataset import REASON_LENGTH, itk_error_reason, one_line
from PIL import Image

from tests.conftest import processed_cases


def _cases(tmp_path):
    good = []
    for i in range(3):
        path = tmp_path / f"good{i}.png"
        Image.fromarray(np.full((8, 10 + i), 100 + i, dtype=np.uint8)).save(path)
        good.append(str(path))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"this is not a png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "good0.png").read_bytes()[:40])
    missing = tmp_path / "missing.png"
    files = [good[0], str(corrupt), good[1], str(missing), str(truncated), good[2]]
    return [{"image": f} for f in files], good, [str(corrupt), str(missing), str(truncated)]


def _transform():
    return Compose(
        [
            LoadImaged("image", reader="PILReader", image_only=True),
            EnsureChannelFirstd("image", channel_dim="no_channel"),
        ]
    )


def test_bad_cases_are_reported_in_one_line_naming_their_file(tmp_path):
    cases, good, bad = _cases(tmp_path)
    items, failures = processed_cases(cases, _transform())
    assert [item["image"].meta["filename_or_obj"] for item in items] == good
    assert [f["file"] for f in failures] == bad
    reasons = {f["file"]: f["error"] for f in failures}
    # one line each, naming what is wrong rather than MONAI's reader-fallback dump
    assert all("\n" not in r and "Traceback" not in r for r in reasons.values())
    assert "cannot identify image file" in reasons[bad[0]]
    assert reasons[bad[1]].startswith("FileNotFoundError")


def test_describe_error_walks_to_the_cause():
    try:
        try:
            raise OSError("Truncated File Read")
        except OSError as inner:
            raise RuntimeError("applying transform <LoadImaged>") from inner
    except RuntimeError as outer:
        assert describe_error(outer) == "OSError: Truncated File Read"


def test_describe_error_keeps_the_exception_that_names_the_problem(tmp_path):
    from monai_unets.transforms import Image2DReader

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    load = Compose(
        [LoadImaged("image", reader=Image2DReader(channels=3), image_only=True), EnsureChannelFirstd("image")]
    )
    try:
        load({"image": str(tmp_path / "cut.png")})
        raise AssertionError("a truncated PNG was read")
    except RuntimeError as error:
        caught = error
    # the reader's error, which names the file and PIL's reason; the MONAI layer around it is looked through
    expected = f"OSError: {tmp_path / 'cut.png'}: cannot decode its pixel data (image file is truncated); the file is"
    assert describe_error(caught) == expected + " damaged."


def test_describe_error_gives_itks_reason_not_its_source_line(tmp_path):
    import SimpleITK as sitk
    from monai_unets.data.medical_io import MedicalImageReader

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, 12, 14), np.int16)), str(tmp_path / "full.nrrd"))
    data = (tmp_path / "full.nrrd").read_bytes()
    (tmp_path / "cut.nrrd").write_bytes(data[: len(data) // 2])
    try:
        LoadImaged("image", reader=MedicalImageReader(), image_only=True)({"image": str(tmp_path / "cut.nrrd")})
        raise AssertionError("a truncated NRRD was read")
    except RuntimeError as error:
        message = describe_error(error)
    # the reason, which the NRRD library gives on the lines after ITK's, had been left out
    assert message.startswith(f"RuntimeError: NrrdImageIO: Read: Error reading {tmp_path / 'cut.nrrd'}: fread got only")
    assert "% of expected)" in message
    assert ".cxx" not in message and "0x" not in message and "[nrrd]" not in message and "trouble" not in message


def test_itk_errors_of_both_forms_keep_their_details_without_source_lines():
    source = "/src/ITK/Modules/IO/NRRD/src/itkNrrdImageIO.cxx:410:\n"
    nrrd = (
        f"{source}itk::ERROR: NrrdImageIO(0x5625b9b96350): ReadImageInformation: Error reading /d/a.nhdr:\n"
        '[nrrd] nrrdLoad: trouble reading "/d/a.nhdr"\n[nrrd] _nrrdFormatNRRD_read: couldn\'t open the first datafile\n'
        '[nrrd] nrrdIoStateDataFileIterNext: couldn\'t open "/d/a.raw" (data file 1 of 1) for reading\n'
    )
    assert itk_error_reason(nrrd) == (
        'NrrdImageIO: ReadImageInformation: Error reading /d/a.nhdr: couldn\'t open "/d/a.raw" (data file 1 of 1) for '
        "reading"
    )
    meta = f"{source}ITK ERROR: MetaImageIO(0x5e): File cannot be read: /d/b.mhd for reading.\nReason: no access"
    assert itk_error_reason(meta) == "MetaImageIO: File cannot be read: /d/b.mhd for reading. Reason: no access"
    # LoadImage appends the tracebacks of its other readers after a blank line
    folded = f"{source}ITK ERROR: PNGImageIO(0x1): PNG critical error in /d/c.png\n\nTraceback (most recent call last):"
    assert itk_error_reason(folded) == "PNGImageIO: PNG critical error in /d/c.png"
    assert itk_error_reason("no ITK here") is None


def test_a_reason_of_several_lines_is_given_whole_in_one_line():
    # MONAI prints the affines of channel files that do not fit over eight lines: the reason had ended at the first
    affines = f"{np.diag([1.0, 1.0, 1.0, 1.0]) + np.eye(4, k=3) * 50} and {np.eye(4)}"
    error = RuntimeError(f"affine matrix of all images should be the same. Got {affines}.")
    assert describe_error(error) == (
        "RuntimeError: affine matrix of all images should be the same. Got [[ 1. 0. 0. 50.] [ 0. 1. 0. 0.] "
        "[ 0. 0. 1. 0.] [ 0. 0. 0. 1.]] and [[1. 0. 0. 0.] [0. 1. 0. 0.] [0. 0. 1. 0.] [0. 0. 0. 1.]]."
    )


def test_a_long_reason_is_cut_at_its_end_never_inside_its_first_line():
    first = "a problem named at length " * 30  # 780 characters, over REASON_LENGTH
    assert one_line(first) == first.strip()
    assert one_line(f"{first}\n{'detail ' * 100}") == f"{first.strip()} ..."
    cut = one_line("short first line\n" + "detail " * 100)
    assert cut.startswith("short first line detail") and cut.endswith(" detail ...")
    assert REASON_LENGTH - len("detail") < len(cut) - len(" ...") <= REASON_LENGTH


def test_an_embedded_exception_keeps_the_lines_of_its_message():
    # LoadImage folds the traceback of each reader it tried into its message
    folded = (
        "LoadImage cannot find a suitable reader for file: x.nii.gz.\n"
        'Traceback (most recent call last):\n  File "reader.py", line 1, in read\n'
        "ValueError: shapes differ: Got [1 2\n 3]\n\n"
        'Traceback (most recent call last):\n  File "other.py", line 1, in read\nOSError: another reader\'s\n'
    )
    assert describe_error(RuntimeError(folded)) == "ValueError: shapes differ: Got [1 2 3]"


def test_a_reason_shown_under_its_file_does_not_name_it_again():
    error = ValueError("/data/a.png: not an image")
    assert describe_error(error, "/data/a.png") == "ValueError: not an image"
    assert describe_error(error, "/data//a.png") == "ValueError: not an image"  # as MONAI's reader spells the path
    assert describe_error(error, "/data/b.png") == "ValueError: /data/a.png: not an image"


def test_a_reason_with_its_file_as_subject_is_shown_from_its_verb_under_that_file():
    # "x.nii: cannot read the image file: ValueError: /data/x.nii has a voxel size of 0" had named the file twice
    zero = ValueError("/data/x.nii has a voxel size of 0 (pixdim[3] = 0) and no sform")
    assert describe_error(zero, "/data/x.nii") == "ValueError: has a voxel size of 0 (pixdim[3] = 0) and no sform"
    assert describe_error(ValueError("/data/x.dcm is not a DICOM file."), "/data//x.dcm") == (
        "ValueError: is not a DICOM file."
    )
    # another file, or the file as other than the subject, keeps its name
    assert describe_error(zero, "/data/y.nii") == f"ValueError: {zero}"
    inner = ValueError("/data/s/IM1.dcm of DICOM series 1.2 in /data/s has no PixelSpacing")
    assert describe_error(inner, "/data/s") == f"ValueError: {inner}"
