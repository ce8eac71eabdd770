from __future__ import annotations

import errno
import gzip
import os
import signal
import subprocess
import sys
import time
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, Orientation, SaveImage
from monai_unets.data import AtomicNibabelWriter, atomic_open, atomic_path


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.csv"
    with atomic_open(target) as f:
        f.write("complete\n")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


def test_the_temporary_file_keeps_the_extension_and_is_hidden(tmp_path):
    with atomic_path(tmp_path / "sub" / "mask.nii.gz") as temporary:
        assert temporary.parent == tmp_path / "sub" and temporary.name.endswith("mask.nii.gz")
        assert temporary.name.startswith(".")
        temporary.write_bytes(b"x")
    assert (tmp_path / "sub" / "mask.nii.gz").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["L" * 243 + "_seg.png", "é" * 119 + "_seg.nii.gz", "é" * 119 + "_seg.png"])
def test_a_name_near_the_file_system_limit_is_written(tmp_path, name):
    # the final name is legal (at most 255 bytes); the hidden temporary name adds a prefix, and must still fit
    seen = []
    with atomic_path(tmp_path / name) as temporary:
        seen.append(temporary.name)
        temporary.write_bytes(b"mask")
    assert (tmp_path / name).read_bytes() == b"mask" and [p.name for p in tmp_path.iterdir()] == [name]
    assert len(seen[0].encode()) <= 255 and seen[0].startswith(".partial-") and seen[0].endswith(name[-12:])


# names from an old Latin-1 archive: Python holds their bytes that are not UTF-8 as surrogates
@pytest.mark.parametrize("name", ["latin1_\udce9t\udce9_seg.png", "\udce9" * 243 + "_seg.png"])
def test_a_name_that_is_not_utf8_is_written_under_its_own_bytes(tmp_path, name):
    with atomic_path(tmp_path / name) as temporary:
        temporary.write_bytes(b"x")
    assert os.listdir(os.fsencode(tmp_path)) == [os.fsencode(name)]


def test_text_files_hold_names_that_are_not_utf8_escaped(tmp_path):
    with atomic_open(tmp_path / "failures.csv") as f:
        f.write("latin1_\udce9t\udce9.png\n")
    assert (tmp_path / "failures.csv").read_text(encoding="utf-8") == "latin1_\\udce9t\\udce9.png\n"


def test_a_full_disk_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    def half_then_full(image, filename, *args, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"\x1f\x8b partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", half_then_full)
    image = MetaTensor(torch.ones(1, 4, 4, 4), meta={"filename_or_obj": "case.nii.gz"})
    saver = SaveImage(tmp_path, output_postfix="seg", separate_folder=False, writer=AtomicNibabelWriter)
    with pytest.raises(RuntimeError, match="No space left"):
        saver(image)
    assert list(tmp_path.iterdir()) == []


_WRITER = """
import sys, torch
from monai.data import MetaTensor
from monai.transforms import LoadImage, Orientation, SaveImage
from monai_unets.data import AtomicNibabelWriter
out = sys.argv[1]
saver = SaveImage(out, output_postfix="seg", separate_folder=False, writer=AtomicNibabelWriter, print_log=False)
for i in range(10_000):
    saver(MetaTensor(torch.rand(1, 96, 96, 96), meta={"filename_or_obj": f"case{i:05d}.nii.gz"}))
"""


def _finals(folder):
    # the hidden ".partial-*" file of the interrupted write is no final name
    return sorted(p for p in folder.glob("*_seg.nii.gz") if not p.name.startswith("."))


def test_sigkill_while_writing_leaves_only_complete_files(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)])
    try:
        deadline = time.monotonic() + 120
        # kill while the writer is busy: a few complete files, another one on its way
        while len(_finals(tmp_path)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    finals = _finals(tmp_path)
    assert len(finals) >= 3
    for path in finals:
        assert nib.load(path).get_fdata().shape == (96, 96, 96), path


@pytest.mark.parametrize("width, height", [(7, 1), (1, 1), (1, 7), (5, 3)])
def test_png_masks_one_pixel_high_or_wide_keep_their_size(tmp_path, width, height):
    from monai.data import MetaTensor
    from monai.transforms import SaveImaged
    from monai_unets.data import AtomicPILWriter
    from PIL import Image

    mask = torch.zeros(1, width, height)  # PILReader's layout: width first
    mask[0, width - 1, 0] = 1.0  # the top-right pixel: a flip or transposition moves it
    pred = MetaTensor(mask, meta={"filename_or_obj": str(tmp_path / "image.png"), "spatial_shape": (width, height)})
    save = SaveImaged(
        "pred",
        output_dir=tmp_path,
        output_postfix="seg",
        writer=AtomicPILWriter,
        output_ext=".png",
        output_dtype=np.uint8,
        scale=255,
        resample=False,
        separate_folder=False,
        print_log=False,
    )
    save({"pred": pred})
    written = Image.open(tmp_path / "image_seg.png")
    assert written.size == (width, height)
    expected = np.zeros((height, width), np.uint8)
    expected[0, width - 1] = 255
    assert np.array_equal(np.asarray(written), expected)


@pytest.mark.parametrize("writer", ["AtomicNibabelWriter", "AtomicITKWriter"])
def test_a_single_slice_label_map_keeps_its_slice_axis(tmp_path, writer):
    import monai_unets.data as data_module
    from monai.data import MetaTensor
    from monai.transforms import SaveImaged

    rows = [[-0.8, 0, 0, 10.0], [0, -0.8, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]]
    affine = torch.tensor(rows, dtype=torch.float64)
    labels = torch.zeros(1, 6, 5, 1, dtype=torch.uint8)
    labels[0, 5, 0, 0] = 2
    pred = MetaTensor(labels, affine=affine, meta={"filename_or_obj": str(tmp_path / "slab.nii.gz")})
    save = SaveImaged(
        "pred",
        output_dir=tmp_path / "out",
        output_postfix="seg",
        writer=getattr(data_module, writer),
        output_ext=".nii.gz",
        output_dtype=np.uint8,
        resample=False,
        separate_folder=False,
        print_log=False,
    )
    save({"pred": pred})
    written = nib.load(tmp_path / "out" / "slab_seg.nii.gz")
    assert written.shape == (6, 5, 1)
    assert np.allclose(written.affine, affine.numpy(), atol=1e-5)
    assert np.asarray(written.dataobj)[5, 0, 0] == 2 and np.asarray(written.dataobj).sum() == 2


def _save_nifti(writer: type, data: torch.Tensor, affine: torch.Tensor, folder, output_dtype) -> bytes:
    from monai.transforms import SaveImaged

    pred = MetaTensor(data, affine=affine, meta={"filename_or_obj": str(folder / "case.nii.gz")})
    save = SaveImaged(
        "pred",
        output_dir=folder,
        output_postfix="seg",
        writer=writer,
        output_ext=".nii.gz",
        output_dtype=output_dtype,
        resample=False,
        separate_folder=False,
        print_log=False,
    )
    save({"pred": pred})
    with gzip.open(folder / "case_seg.nii.gz") as f:
        return f.read()


@pytest.mark.parametrize(
    "shape, dtype, output_dtype",
    [
        ((1, 37, 29, 23), torch.uint8, np.uint8),  # a label map
        ((1, 37, 29, 23), torch.float32, np.float32),
        ((3, 17, 13, 11), torch.float32, np.float32),  # class probabilities, channel last in the file
        ((1, 37, 29, 23), torch.int64, np.uint16),  # written in another integer type
    ],
)
@pytest.mark.parametrize("writer", ["NibabelWriter", "ITKWriter"])
def test_nifti_holds_the_bytes_monais_writer_gives(tmp_path, shape, dtype, output_dtype, writer):
    import monai.data
    import monai_unets.data

    generator = torch.Generator().manual_seed(0)
    data = (torch.rand(shape, generator=generator) * 5).to(dtype)
    rows = [[-0.8, 0, 0, 10.0], [0, 0.7, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]]
    affine = torch.tensor(rows, dtype=torch.float64)
    ours = _save_nifti(getattr(monai_unets.data, f"Atomic{writer}"), data, affine, tmp_path / "ours", output_dtype)
    theirs = _save_nifti(getattr(monai.data, writer), data, affine, tmp_path / "theirs", output_dtype)
    if writer == "NibabelWriter":  # which leaves the unit unknown; ours says mm, as ITK's does
        theirs = theirs[:123] + bytes([nib.nifti1.unit_codes["mm"]]) + theirs[124:]  # xyzt_units
    assert ours == theirs
    written = np.asanyarray(nib.load(tmp_path / "ours" / "case_seg.nii.gz").dataobj)
    if written.ndim == 5:  # ITK keeps a vector image's components in NIfTI's fifth dimension
        written = written[:, :, :, 0]
    expected = np.moveaxis(data.numpy(), 0, -1)
    np.testing.assert_array_equal(written, expected[..., 0] if shape[0] == 1 else expected)


def test_a_compressed_nifti_is_a_plain_gzip_stream_the_same_for_the_same_labels(tmp_path):
    import SimpleITK as sitk

    # ISA-L compresses it where installed: zlib's readers (ITK, Python's gzip, which checks the checksum) must take
    # the stream, and its header must hold neither the temporary file's name nor a time
    labels = torch.zeros(1, 40, 30, 20, dtype=torch.uint8)
    labels[0, 5:25, 8:20, 3:15] = 1
    labels[0, 10:12, 10:12, 5:7] = 2
    files = []
    for run in ("first", "second"):
        _save_nifti(AtomicNibabelWriter, labels, torch.eye(4, dtype=torch.float64), tmp_path / run, np.uint8)
        files.append((tmp_path / run / "case_seg.nii.gz").read_bytes())
    assert files[0] == files[1]
    stream = files[0]
    assert stream[:3] == b"\x1f\x8b\x08" and not stream[3] & 0x08 and stream[4:8] == bytes(4)  # no FNAME, no MTIME
    assert len(gzip.decompress(stream)) == 352 + labels.numel()
    read = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "first" / "case_seg.nii.gz")))
    np.testing.assert_array_equal(read, labels[0].numpy().T)


@pytest.mark.parametrize("writer, ext", [("AtomicNibabelWriter", ".nii.gz"), ("AtomicITKWriter", ".nrrd")])
def test_unresampled_data_is_written_without_a_float32_round_trip(tmp_path, writer, ext):
    import monai_unets.data as data_module
    from monai.transforms import SaveImaged

    # 2^24 + 1 and its neighbours have no float32 form: MONAI's writers passed them through SpatialResample's
    # float32 output and wrote 2^24
    data = torch.tensor([0, 1, 2**24 - 1, 2**24 + 1, 2**31 - 1], dtype=torch.int32).view(1, 5, 1, 1).repeat(1, 1, 3, 2)
    pred = MetaTensor(data, affine=torch.eye(4, dtype=torch.float64), meta={"filename_or_obj": "case.nii.gz"})
    SaveImaged(
        "pred",
        output_dir=tmp_path,
        output_postfix="seg",
        writer=getattr(data_module, writer),
        output_ext=ext,
        output_dtype=np.int32,
        resample=False,
        separate_folder=False,
        print_log=False,
    )({"pred": pred})
    written = LoadImage(image_only=True, dtype=None)(tmp_path / f"case_seg{ext}")
    np.testing.assert_array_equal(np.asarray(written), data[0].numpy())


def test_nifti_volume_reaches_the_compressor_in_chunks(tmp_path, monkeypatch):
    from monai_unets.data import atomic

    # about 1.2 MB of voxels in 300 slices: nibabel alone compresses one slice per call
    monkeypatch.setattr(atomic._ChunkedNifti1Image, "chunk", 1 << 19)
    calls = []
    write = atomic.GZIP.GzipFile.write
    monkeypatch.setattr(atomic.GZIP.GzipFile, "write", lambda self, data: calls.append(len(data)) or write(self, data))
    labels = torch.zeros(1, 64, 64, 300, dtype=torch.uint8)
    labels[0, 10:20, 30:40, 100:200] = 1
    _save_nifti(AtomicNibabelWriter, labels, torch.eye(4, dtype=torch.float64), tmp_path, np.uint8)
    assert sum(calls) == 352 + labels.numel()  # the header with its extension flag, then the voxels
    assert len(calls) <= 4
    written = np.asanyarray(nib.load(tmp_path / "case_seg.nii.gz").dataobj)
    np.testing.assert_array_equal(written, labels[0].numpy())


def test_nifti_write_failing_midway_leaves_no_file(tmp_path, monkeypatch):
    from monai_unets.data import atomic

    def fail_midway(self, stream, **kwargs):
        stream.write(b"\0" * 1000)
        raise OSError("disk full")

    monkeypatch.setattr(atomic._ChunkedNifti1Image, "to_stream", fail_midway)
    with pytest.raises(RuntimeError) as raised:
        _save_nifti(AtomicNibabelWriter, torch.zeros(1, 8, 8, 8, dtype=torch.uint8), torch.eye(4), tmp_path, np.uint8)
    assert "disk full" in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


_FLOCK = pytest.mark.skipif(sys.platform == "win32", reason="flock: POSIX only")


@_FLOCK
@pytest.mark.parametrize("ending", ["release_folder(folder, '.run.lock')", "pass", "raise RuntimeError('stopped')"])
def test_a_held_folder_keeps_no_lock_file_once_released_or_its_process_ended(tmp_path, ending):
    folder = tmp_path / "out"
    code = (
        "from monai_unets.data.atomic import hold_folder, release_folder; "
        f"folder = {str(folder)!r}; assert hold_folder(folder, '.run.lock'); {ending}"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=False, timeout=120)
    assert list(folder.iterdir()) == []


@_FLOCK
def test_a_lock_file_removed_by_its_last_holder_is_not_taken_while_another_process_holds_the_new_one(
    tmp_path, monkeypatch
):
    import fcntl

    from monai_unets.data.atomic import hold_folder, release_folder

    flock, others = fcntl.flock, []

    def racing_flock(handle, operation):
        # between this process's opening of the lock file and its lock, the holder removed the file and ended, and
        # a third run created a new one and locked it
        if not others:
            os.unlink(tmp_path / ".run.lock")
            others.append(open(tmp_path / ".run.lock", "a"))  # noqa: SIM115 - the third run's lock, held
            flock(others[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        return flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", racing_flock)
    try:
        assert not hold_folder(tmp_path, ".run.lock")
    finally:
        release_folder(tmp_path, ".run.lock")
        others[0].close()


def _label_map_of(study, output_dir):
    """The label map the bundles write for ``study``, read by the project's reader: its file (nibabel)."""
    from monai_unets.data.medical_io import MedicalImageReader

    image = LoadImage(reader=MedicalImageReader(), image_only=True, ensure_channel_first=True)(str(study))
    # there and back, as the bundles' Invertd takes the labels: MONAI's spatial transforms rewrite the metadata's
    # pixdim (to the voxel sizes of a sheared affine's columns, not the header's)
    orientation = Orientation(axcodes="LPS")
    image = orientation.inverse(orientation(image))
    labels = MetaTensor((image > 0).to(torch.uint8), meta=image.meta)
    saver = SaveImage(
        output_dir, output_postfix="seg", separate_folder=False, writer=AtomicNibabelWriter, print_log=False
    )
    saver(labels)
    return nib.load(next(output_dir.glob("*_seg.nii.gz")))


def _sitk_geometry(path) -> np.ndarray:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return np.concatenate([image.GetSpacing(), image.GetOrigin(), image.GetDirection()])


# an oblique study: axes turned 0.3 rad about x and permuted, anisotropic voxels, off-centre
_OBLIQUE = np.eye(4)
_OBLIQUE[:3, :3] = (
    np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    @ np.diag([1.1, 0.9, 2.4])
)
_OBLIQUE[:3, 3] = [30.0, -12.5, 48.0]


@pytest.mark.parametrize(
    "sform_code, qform_code, unit",
    [(1, 1, "mm"), (4, 4, "mm"), (2, 0, "mm"), (0, 1, "mm"), (0, 0, "mm"), (1, 1, "meter"), (None, None, "mm")],
)
def test_a_label_map_keeps_its_studys_form_codes_and_lies_on_it_in_itk(tmp_path, sform_code, qform_code, unit):
    import SimpleITK as sitk

    # MONAI's writer gave both forms code 1 (scanner) and no unit: a study in a template space (2-4) lost its
    # space, one without forms got a made-up scanner geometry, one in meters a label map 1000 times smaller in ITK
    volume = np.zeros((9, 8, 7), np.int16)
    volume[2:5, 3:6, 1:4] = 1
    if sform_code is None:  # NRRD: no codes, scanner as before
        study = tmp_path / "ct.nrrd"
        sitk.WriteImage(sitk.GetImageFromArray(volume.transpose(2, 1, 0)), str(study))
        sform_code = qform_code = 1
    else:
        study = tmp_path / "ct.nii.gz"
        stored = np.diag([1e-3 if unit == "meter" else 1.0] * 3 + [1.0]) @ _OBLIQUE
        image = nib.Nifti1Image(volume, stored)
        image.header.set_xyzt_units(unit)
        image.set_sform(stored if sform_code else None, code=sform_code)
        image.set_qform(stored if qform_code else None, code=qform_code)
        nib.save(image, study)
    written = _label_map_of(study, tmp_path / "out")
    header = written.header
    assert (int(header["sform_code"]), int(header["qform_code"])) == (sform_code, qform_code)
    assert header.get_xyzt_units()[0] == "mm"
    np.testing.assert_array_equal(np.asarray(written.dataobj), volume > 0)
    # ITK-based tools place the label map on its study
    np.testing.assert_allclose(_sitk_geometry(written.get_filename()), _sitk_geometry(study), atol=1e-5)


def test_a_sheared_studys_label_map_without_a_qform_has_its_sform_alone(tmp_path):
    from monai_unets.data.medical_io import MedicalImageReader

    # MONAI's writer put a qform (code 1) beside the sform: the orthogonal approximation, 14 mm away at the far
    # corner, where ITK-based tools put the labels (and the project's reader warned about its own output)
    sheared = np.diag([1.2, 1.2, 2.5, 1.0])
    sheared[0, 2] = 0.8
    image = nib.Nifti1Image(np.ones((12, 12, 8), np.int16), sheared)
    image.set_qform(None, code=0)
    image.set_sform(sheared, code=2)
    nib.save(image, tmp_path / "ct.nii.gz")
    written = _label_map_of(tmp_path / "ct.nii.gz", tmp_path / "out")
    assert (int(written.header["sform_code"]), int(written.header["qform_code"])) == (2, 0)
    np.testing.assert_allclose(written.affine, sheared, atol=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LoadImage(reader=MedicalImageReader(), image_only=True)(written.get_filename())
    assert not [str(w.message) for w in caught if "sform and qform" in str(w.message)]


@pytest.mark.parametrize("unit, shear, shift", [("mm", 0.6, 0.0), ("meter", 0.6, 0.0), ("mm", 0.0, 5.0)])
def test_a_label_map_has_its_studys_qform_and_lies_on_it_in_itk(tmp_path, unit, shear, shift):
    import SimpleITK as sitk

    # the label map of a study whose sform is sheared and whose qform ITK reads it by had no qform, and ITK-based
    # tools (which need orthonormal directions) could not read it at all; one whose sform and qform place it 5 mm
    # apart had the sform as its qform too, 5 mm off the study in the tools that read the qform
    qform = np.eye(4)
    qform[:3, :3] = _OBLIQUE[:3, :3] @ np.diag([1.0, 1.0, -1.0])  # qfac -1
    qform[:3, 3] = _OBLIQUE[:3, 3]
    sheared = qform.copy()
    sheared[:3, 2] += shear * qform[:3, 0]
    sheared[2, 3] += shift
    volume = np.zeros((12, 11, 8), np.int16)
    volume[3:7, 2:6, 1:5] = 1
    stored = np.diag([1e-3 if unit == "meter" else 1.0] * 3 + [1.0])
    image = nib.Nifti1Image(volume, stored @ sheared)
    image.header.set_xyzt_units(unit)
    image.set_qform(stored @ qform, code=1)
    image.set_sform(stored @ sheared, code=2)
    study = tmp_path / "ct.nii.gz"
    nib.save(image, study)
    with pytest.warns(UserWarning, match="sform and qform"):
        written = _label_map_of(study, tmp_path / "out")
    header = nib.load(study).header
    assert (int(written.header["sform_code"]), int(written.header["qform_code"])) == (2, 1)
    # the study's qform as stored (in mm), its sheared sform, nibabel's affine of the study
    scale = 1e3 if unit == "meter" else 1.0
    for key in ("quatern_b", "quatern_c", "quatern_d"):
        assert written.header[key] == header[key]
    for key in ("qoffset_x", "qoffset_y", "qoffset_z"):
        np.testing.assert_allclose(written.header[key], header[key] * scale, rtol=1e-6)
    np.testing.assert_allclose(written.header["pixdim"][:4], header["pixdim"][:4] * [1, scale, scale, scale], 1e-6)
    np.testing.assert_allclose(written.affine, sheared, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(written.dataobj), volume > 0)
    # ITK-based tools read the label map, and place it where they place the study
    labels, ct = sitk.ReadImage(written.get_filename()), sitk.ReadImage(str(study))
    for geometry in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(labels, geometry)(), getattr(ct, geometry)(), rtol=0, atol=1e-6)


def test_a_failed_write_is_named_by_the_file_it_was_to_be(tmp_path):
    # a full disk's "File too large" had named no file, a read-only folder the hidden temporary one
    final = tmp_path / "mask.nii.gz"
    with pytest.raises(OSError) as raised, atomic_path(final):
        raise OSError(errno.EFBIG, "File too large")
    assert (raised.value.errno, raised.value.filename) == (errno.EFBIG, str(final))
    with pytest.raises(PermissionError) as raised, atomic_path(final) as temporary:
        raise PermissionError(errno.EACCES, "Permission denied", str(temporary))
    assert raised.value.filename == str(final)
    # the error of another file (an input read within the block) is left as it is
    with pytest.raises(FileNotFoundError) as raised, atomic_path(final):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/in/case.nii.gz")
    assert raised.value.filename == "/in/case.nii.gz"
    assert list(tmp_path.iterdir()) == []
