"""Readers for 3D clinical images: NIfTI, NRRD, MHA/MHD, DICOM series folders and single DICOM files.

``MedicalImageReader`` is a MONAI ``ImageReader`` for ``LoadImage(d)``. Arrays and metadata come from MONAI's own
readers (``NibabelReader`` for NIfTI, ``ITKReader`` for everything else), so ``affine`` in RAS,
``original_affine``, ``spatial_shape``, ... are exactly what MONAI's ``Orientationd``, ``Spacingd``, ``Invertd`` and
``SaveImaged`` expect. What it adds is validation of DICOM series with clear errors that name the offending path:
several series in one folder, missing slices, duplicate slices, inconsistent spacing, tilted stacks, non-DICOM
files. A series is read in one pass: each file's header is parsed once (for the checks and the geometry) and its
pixels are read from there into the volume (compressed ones through pydicom's decoders), which ``ITKReader`` then
converts; colour and multi-frame DICOM, and compressed data that pydicom cannot decode, are read by ITK.

A folder that holds several DICOM series is never merged: reading it raises an error listing the series. To
process such a folder series by series, turn it into one case per series with ``split_dicom_series`` or
``list_medical_cases(..., split_series=True)``; each case's image is then a *series reference*
``"<folder>::<SeriesInstanceUID>"`` (see ``series_reference``), which ``MedicalImageReader`` reads as that series
only.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import logging
import math
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader, ITKReader, NibabelReader
from monai.data.utils import orientation_ras_lps
from monai.utils import MetaKeys, SpaceKeys, optional_import
from numpy.lib.recfunctions import structured_to_unstructured

pydicom, _ = optional_import("pydicom")
itk, _ = optional_import("itk")
nib, _ = optional_import("nibabel")
# ISA-L's deflate reads the gzip streams of .nii.gz files in about half zlib's time and writes them in a small
# fraction of it (README, "3D studies"); Python's own gzip and zlib where its wheels are not installed
_igzip, _has_isal = optional_import("isal.igzip")
_isal_zlib, _ = optional_import("isal.isal_zlib")
GZIP: Any = _igzip if _has_isal else gzip
ZLIB: Any = _isal_zlib if _has_isal else zlib
#: what reading a cut-off or damaged deflate stream raises, with either library
COMPRESSED_DATA_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, gzip.BadGzipFile) + (
    (_isal_zlib.error,) if _has_isal else ()
)

__all__ = [
    "HARMLESS_FILES",
    "LISTING_PROBLEM_KEY",
    "MEDICAL_SUFFIXES",
    "ORIENTATION_TOLERANCE",
    "SERIES_SEPARATOR",
    "VALUES_PER_VOXEL",
    "DicomSeries",
    "MedicalImageReader",
    "has_suffix",
    "is_dicom_file",
    "is_hidden_image",
    "list_medical_cases",
    "parse_series_reference",
    "select_dicom_series",
    "series_reference",
    "split_dicom_series",
    "validate_dicom_series",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
ITK_SUFFIXES: tuple[str, ...] = (".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")
# Files that one 3D image is read from; a DICOM series is a folder and is not listed here.
MEDICAL_SUFFIXES: tuple[str, ...] = NIFTI_SUFFIXES + ITK_SUFFIXES + DICOM_SUFFIXES

#: Metadata key of the number of values a file stores per voxel (RGB colours, vector components) where it stores
#: several, which the reader gives as channels: the checks tell such a file from one of several volumes by it.
VALUES_PER_VOXEL = "values_per_voxel"

# Separates a folder from the SeriesInstanceUID in a series reference; UIDs only hold digits and dots.
SERIES_SEPARATOR = "::"
#: Largest difference between the ImageOrientationPatient values of one series' slices (and from unit, orthogonal
#: directions) that the reader accepts; the DICOM SEG writer accepts the same.
ORIENTATION_TOLERANCE = 1e-3

# Files that DICOM exports and file browsers put beside the slices; they are skipped with a warning.
# Any other file of a series folder must be a DICOM image, or reading the folder fails.
#: Key of a case dictionary that says why the case cannot be run although its files can be read (a DICOM series
#: whose slices lie in several folders, each listed as a case): a batch job reports the case as failed, unread.
LISTING_PROBLEM_KEY = "listing_problem"
HARMLESS_FILES: frozenset[str] = frozenset({"dicomdir", "thumbs.db", "desktop.ini", "lockfile", "version"})

# The SOP classes of DICOM Segmentation objects (SEG; inference runs write the first beside their label maps) and
# their names: pydicom 3.0 does not know the label map and heightmap classes, which newer tools write.
_SEGMENTATION_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.8": "Heightmap Segmentation Storage",
}
# RT Structure Set Storage: a clinic's contours of structures, in patient coordinates
_RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
# Storage classes of images whose names do not say "Image Storage": parametric maps (float ADC or T1 values, which
# the reader reads as stored) and 3D ultrasound volumes. Other named non-image classes are skipped (see _is_image).
_IMAGE_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.6.2"})

# Samples per pixel of each PhotometricInterpretation that ITK reads; it reads no other (the retired HSV, ARGB and
# CMYK among them)
_PHOTOMETRIC_SAMPLES = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    **dict.fromkeys(("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"), 3),
}

# Value representations that ITK leaves out of a DICOM image's metadata (sequences and binary data).
_BINARY_VRS = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"})
# Blocks of a transposing copy (x, y, z voxels): about 1 MB of float32, so that the source's x lines and the
# copy's z lines of a block stay in cache; a 512 x 512 x 300 CT is copied 3x faster than in one strided pass.
_TRANSPOSE_BLOCK = (128, 128, 16)
# SimpleITK's names of the scalar pixel types whose 3D images ITK's Python modules have (no int8, int64, vectors)
_ITK_WRAPPED_PIXELS = ("UInt8", "UInt16", "Int16", "UInt32", "Int32", "UInt64", "Float32", "Float64")
# ITK's templates load their modules on a lookup outside ITK's own lazy-loading lock: reads in several threads (the
# data checks) loaded the same modules at once, printing thousands of "template already defined" warnings
_ITK_LOCK = threading.Lock()


def _new_itk_lock() -> None:
    global _ITK_LOCK
    _ITK_LOCK = threading.Lock()


# a forked process (a DataLoader worker) gets a lock of its own: one copied while another thread held it would stay
# held in the child, whose every ITK read would then wait for ever
os.register_at_fork(after_in_child=_new_itk_lock)

# MONAI's LoadImage constructs every reader it knows, NvImgCodecPydicomReader among them, which then reports (a log
# record and a warning) that nvImageCodec, a GPU decoder, is missing; the reader declines every file in that case, so
# the two lines told every run of a failure that changed nothing. They stay for a user who chose that reader.
_NVIMGCODEC_NOTICES = ("nvImageCodec is not available", "NvImgCodecPydicomReader: nvImageCodec decoder plugin")


def _nvimgcodec_requested() -> bool:
    return os.environ.get("MONAI_DICOM_READER", "").strip().lower() == "nvimgcodec"


class _UnrequestedReaderFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _nvimgcodec_requested() or not record.getMessage().startswith(_NVIMGCODEC_NOTICES)


logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").addFilter(_UnrequestedReaderFilter())
if not _nvimgcodec_requested():
    warnings.filterwarnings("ignore", message=_NVIMGCODEC_NOTICES[1], category=UserWarning)


class _FirstOfEachFilter(logging.Filter):
    """Lets each distinct message of a logger through once.

    pydicom logs a header's problem at every read of it, naming no file: a series of 40 slices with an unknown
    SpecificCharacterSet gave 369 identical lines, which buried the run's own warnings that name the file.
    """

    #: the most distinct messages remembered; past it they are forgotten and may show again
    LIMIT = 1000

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[int, str]] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        with self._lock:
            if key in self._seen:
                return False
            if len(self._seen) >= self.LIMIT:
                self._seen.clear()
            self._seen.add(key)
        return True


logging.getLogger("pydicom").addFilter(_FirstOfEachFilter())


class _HeldRecords(logging.Filter):
    """Holds back the records that one thread logs, for them to be passed on or dropped later."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.records.append(record)
        return False


@contextlib.contextmanager
def _nibabel_reports_held(path: str | os.PathLike) -> Iterator[None]:
    """What nibabel logs in this thread about the header of ``path`` it loads is shown only if the block ends
    without error, each line headed by the file's name, which nibabel's own lines leave out.

    nibabel reports the fields it repairs on loading ("pixdim[1,2,3] should be non-zero; setting 0 dims to 1")
    on standard error; where the reader then refuses the file, its own error says what is wrong, and nibabel's
    lines before it told the user about a repair that was never used. Other threads' records pass as they come.
    """
    logger = nib.imageglobals.logger
    held = _HeldRecords()
    logger.addFilter(held)
    try:
        yield
    finally:
        logger.removeFilter(held)
    for record in held.records:
        # in a batch, "set sizeof_hdr to 348" alone does not say which file was repaired
        record.msg, record.args = f"{path}: {record.getMessage()}", ()
        logger.handle(record)


def has_suffix(path: str | os.PathLike, suffixes: Sequence[str]) -> bool:
    """Whether the name of ``path`` ends with one of ``suffixes`` (lower case), in any case: ``CT.NII.GZ`` too.

    Args:
        path: a file's path.
        suffixes: lower-case suffixes with their dot (``.nii.gz``).

    Example::

        >>> has_suffix("/data/CT_01.NII.GZ", NIFTI_SUFFIXES)
        True
    """
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in suffixes)


class OutputFolderError(ValueError):
    """The output folder is one a run must not write to (the input folder, or one another run is writing to);
    nothing, not even an error log, is written there."""


def output_folder_inside(input_dir: str | os.PathLike, output_dir: str | os.PathLike | None) -> Path | None:
    """The output folder (resolved) if it lies inside the input folder, so that listing the input can skip it.

    Raises:
        OutputFolderError: (a ``ValueError``) the output folder is the input folder itself: a later run would take
            this run's outputs (label maps, DICOM SEG files) for images to segment.
    """
    if output_dir is None:
        return None
    folder, output = Path(input_dir).resolve(), Path(output_dir).resolve()
    if output == folder:
        raise OutputFolderError(
            f"output folder {output_dir} is the input folder {input_dir}: a later run would read this run's outputs "
            "as images; write the outputs to another folder."
        )
    return output if folder in output.parents else None


def warn_skipped(folder: str | os.PathLike, skipped: Sequence[str], reason: str) -> None:
    """One warning naming the entries of an input folder that are not processed, and why."""
    if not skipped:
        return
    shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    entries = "1 entry" if len(skipped) == 1 else f"{len(skipped)} entries"
    warnings.warn(f"input folder {folder}: skipping {entries} ({reason}): {shown}.", stacklevel=3)


#: The report every batch run writes into its output folder when it ends; a subfolder holding one is an earlier
#: run's outputs.
RUN_MARKER = "failures.csv"
#: The report of each process of a batch run until it ends, left by a run that stopped early: the same mark.
RUN_PROGRESS_MARKER = "failures.rank*.csv"
#: the warn_skipped reason for pipes, sockets and devices: reading one named like an image would wait forever
SPECIAL_FILES = "not regular files: a pipe, socket or device is never read"
#: the warn_skipped reason for hidden files named as images (:func:`is_hidden_image`)
HIDDEN_IMAGES = "hidden files, whose names begin with a dot: rename them to have them read"


def is_hidden_image(path: Path, suffixes: Sequence[str]) -> bool:
    """Whether a hidden entry of an input folder is a file named as an image, ``.case.nii.gz``: left out of a run,
    with a warning, where it had been left out without one.

    macOS's ``._`` companions (AppleDouble files, the metadata of a copied file) and ``.DS_Store`` are no images,
    and are left out without a word.

    Args:
        path: an entry of an input folder.
        suffixes: the file name endings of images.

    Example::

        >>> is_hidden_image(Path("/data/in/._case.nii.gz"), [".nii.gz"])
        False
    """
    return path.is_file() and not path.name.startswith("._") and has_suffix(path, suffixes)


def is_dicom_file(path: Any) -> bool:
    """Whether ``path`` names a DICOM file: by its suffix (``.dcm``, ``.dicom``) or, without one, by the ``DICM``
    mark after its preamble, as PACS exports and CDs name their files (``IM00001``, ``1.2.840...``).

    Args:
        path: a path (``str`` or ``os.PathLike``); anything else (a list of channel files, an array), a path that
            names no file (a folder, nothing) and a file that cannot be read are not DICOM files. The suffix is
            compared case-insensitively.

    Example::

        >>> is_dicom_file("ct/IM00001"), is_dicom_file("ct.nii.gz")  # doctest: +SKIP
        (True, False)
    """
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        return False
    if has_suffix(path, DICOM_SUFFIXES):
        return True
    try:
        return bool(pydicom.misc.is_dicom(path))
    except OSError:
        return False


def _can_list(folder: Path) -> bool:
    """Whether the entries of ``folder`` can be listed and opened (read and search permission)."""
    try:
        with os.scandir(folder) as entries:
            for _ in entries:
                break
        # search permission: a folder listed without it gives names whose files cannot be opened
        os.stat(folder / RUN_MARKER)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _can_read(path: Path) -> bool:
    """Whether the file ``path`` can be opened for reading."""
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def is_special_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a pipe, socket or device (not a regular file or folder); a broken link is not.

    Example::

        >>> is_special_file("/dev/null"), is_special_file("/etc/hostname")
        (True, False)
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # missing: the case is listed and reported as missing when read
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def series_reference(folder: str | os.PathLike, series_uid: str) -> str:
    """The image path that names one series of a DICOM folder: ``"<folder>::<SeriesInstanceUID>"``.

    Args:
        folder: the DICOM folder.
        series_uid: the SeriesInstanceUID (0020,000E) of the series.

    Example::

        >>> series_reference("/data/ct", "1.2.3")
        '/data/ct::1.2.3'
    """
    return f"{folder}{SERIES_SEPARATOR}{series_uid}"


def parse_series_reference(path: str | os.PathLike) -> tuple[str, str | None]:
    """Splits a series reference into ``(folder, series_uid)``; any other path gives ``(path, None)``.

    A reference's UID is digits and dots, as DICOM's are; one of other characters (an anonymiser's) makes a
    reference where the folder before it exists and no file is named as the whole path.

    Args:
        path: an image path or a series reference made by ``series_reference``.

    Example::

        >>> parse_series_reference("/data/ct::1.2.3")
        ('/data/ct', '1.2.3')
        >>> parse_series_reference("/data/ct.nii.gz")
        ('/data/ct.nii.gz', None)
    """
    text = f"{path}"
    folder, sep, uid = text.rpartition(SERIES_SEPARATOR)
    if not (sep and folder and uid) or "/" in uid or os.sep in uid:
        return text, None
    if all(c.isdigit() or c == "." for c in uid):
        return folder, uid
    # a UID of other characters (some anonymisers write 'ANON-SERIES-1') is read where it follows a folder that
    # exists and no file is named so: such a flat export had failed as the path of no file
    if os.path.isdir(folder) and not os.path.lexists(text):
        return folder, uid
    return text, None


@dataclass
class DicomSeries:
    """One DICOM series of a folder: its files (sorted along the slice normal when positions are known).

    Args:
        folder: the folder the files are in.
        series_uid: SeriesInstanceUID (0020,000E).
        files: the series' files.
        description: SeriesDescription (0008,103E), or ``""``.
        modality: Modality (0008,0060), or ``""``.
        series_number: SeriesNumber (0020,0011), or ``None``.
        headers: the pydicom headers (no pixel data) of ``files``, in the same order.

    Example::

        >>> series = split_dicom_series("/data/study")  # doctest: +SKIP
        >>> [s.reference for s in series]  # doctest: +SKIP
        ['/data/study::1.2.3', '/data/study::1.2.4']
    """

    folder: str
    series_uid: str
    files: list[str]
    description: str = ""
    modality: str = ""
    series_number: int | None = None
    headers: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def reference(self) -> str:
        """The image path (``series_reference``) that ``MedicalImageReader`` reads as this series only."""
        return series_reference(self.folder, self.series_uid)

    def summary(self) -> str:
        """One line describing the series, for error messages and logs."""
        number = "" if self.series_number is None else f"#{self.series_number} "
        return (
            f"{number}UID {self.series_uid} '{self.description}' modality {self.modality or '?'}: "
            f"{len(self.files)} file(s)"
        )


# Elements larger than this (the pixel data of any usual slice) are left in the file when a header is read and
# fetched from their recorded offset when needed, so one parse of each file serves listing, checks and pixels,
# and listing a folder of many series keeps only the headers in memory.
_DEFER_SIZE = "64 KB"


def _dcmread(path: str | os.PathLike, **kwargs: Any) -> Any:
    """``pydicom.dcmread``, which also takes a DICOM dataset stored without preamble and file meta information.

    Older archives and some PACS store the bare dataset: pydicom refuses it unless forced, and a forced read of
    any other file gives a few nonsense elements. A bare dataset starts with the identifying group 0008 and names
    its SOP class; its transfer syntax is the encoding pydicom found (implicit VR little endian as a rule).

    Raises:
        pydicom.errors.InvalidDicomError: the file is no DICOM file, with or without a preamble.
    """
    try:
        return pydicom.dcmread(str(path), **kwargs)
    except pydicom.errors.InvalidDicomError:
        try:
            header = pydicom.dcmread(str(path), force=True, **kwargs)
        except Exception:  # noqa: BLE001 - no dataset at all: not DICOM
            raise pydicom.errors.InvalidDicomError(f"{path} is not a DICOM file") from None
        tags = list(header.keys())
        if not tags or tags[0].group != 0x0008 or not header.get("SOPClassUID"):
            raise pydicom.errors.InvalidDicomError(f"{path} is not a DICOM file") from None
        implicit, little = header.original_encoding
        if getattr(header, "file_meta", None) is None:
            header.file_meta = pydicom.dataset.FileMetaDataset()
        header.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else pydicom.uid.ExplicitVRLittleEndian
            if little
            else pydicom.uid.ExplicitVRBigEndian
        )
        return header


def _refuse_empty(path: str | os.PathLike) -> None:
    """A zero-byte file (a copy or download that never finished) is called empty, not "no DICOM file"."""
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty (0 bytes).")


# the first bytes of the files a volume's suffix may hide, to say what a misnamed one holds
_SIGNATURES = {
    b"\x1f\x8b": "gzip-compressed data",
    b"NRRD": "a NRRD file",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"II*\x00": "a TIFF image",
    b"MM\x00*": "a TIFF image",
    b"PK\x03\x04": "a ZIP archive",
    b"<": "HTML or XML text (an error page saved in place of the file?)",
}


def _check_signature(path: Path) -> None:
    """A ``.nrrd``/``.nhdr`` starts with ``NRRD`` and a ``.nii.gz`` with gzip's signature; one that does not is
    refused saying what it holds, where ITK had said "Could not create IO object" and gzip "not a gzip file"."""
    name = path.name.lower()
    wanted = b"NRRD" if name.endswith((".nrrd", ".nhdr")) else b"\x1f\x8b" if name.endswith(".nii.gz") else None
    if wanted is None:
        return
    with open(path, "rb") as file:
        head = file.read(132)
    if head.startswith(wanted):
        return
    found = next((what for magic, what in _SIGNATURES.items() if head.lstrip().startswith(magic)), None)
    if found is None and head[128:132] == b"DICM":
        found = "a DICOM file"
    if found is None and re.match(rb"\s*(ObjectType|NDims)\s*=", head):
        found = "a MetaImage header (.mha/.mhd)"
    if found is None and len(head) >= 4 and int.from_bytes(head[:4], "little") in (348, 540):
        found = "an uncompressed NIfTI (.nii)"
    kind = "a NRRD file" if wanted == b"NRRD" else "gzip-compressed, as its .gz says"
    raise ValueError(f"{path} is not {kind}: it holds {found or 'something else'}; rename or convert it.")


#: suffixes of DICOM files besides :data:`DICOM_SUFFIXES` (Siemens' ``.IMA``, older exports' ``.img`` and ``.dc3``)
_DICOM_LIKE_SUFFIXES = (*DICOM_SUFFIXES, ".ima", ".img", ".dc3", ".dic")


def _named_as_document(path: Path) -> bool:
    """Whether the name of a file in a DICOM folder says it is something else (``readme.txt``, ``report.pdf``):
    a suffix of letters that no DICOM file has. A damaged slice keeps its name (``IM0001``, ``1.2.840...5``,
    ``x.dcm``) and so still fails its series rather than being left out of it."""
    suffix = path.suffix.lower()
    return suffix[1:].isalpha() and suffix not in _DICOM_LIKE_SUFFIXES


def _read_header(path: Path, folder: Path) -> Any:
    """The pydicom header of ``path`` (pixel data deferred), or a ValueError that names the file."""
    _refuse_empty(path)
    try:
        return _dcmread(path, defer_size=_DEFER_SIZE)
    except pydicom.errors.InvalidDicomError:
        raise ValueError(
            f"{path} is not a DICOM file, but DICOM series folder {folder} may only hold DICOM images; "
            "move it out of the folder, or the series' slices into a folder of their own."
        ) from None
    except Exception as error:  # truncated or otherwise unreadable header
        raise ValueError(f"cannot read the DICOM header of {path}: {type(error).__name__}: {error}") from error


def _is_localizer(header: Any) -> bool:
    image_type = header.get("ImageType") or []
    values = [image_type] if isinstance(image_type, str) else list(image_type)
    return "LOCALIZER" in (str(value).strip().upper() for value in values)


def _position_along_normal(header: Any) -> float | None:
    iop, ipp = header.get("ImageOrientationPatient"), header.get("ImagePositionPatient")
    if iop is None or ipp is None or len(iop) != 6 or len(ipp) != 3:
        return None
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    return float(np.dot(normal, np.asarray(ipp, float)))


def _is_screen_capture(headers: Sequence[Any]) -> bool:
    """A secondary capture series that holds no volume: one image (a dose report page, a screenshot) or colour
    images (photographs of a screen), as exported with a CT study."""
    captures = all(_is_secondary_capture(h) for h in headers)
    return captures and (len(headers) == 1 or not all(_is_greyscale(h) for h in headers))


def _is_secondary_capture(header: Any) -> bool:
    return "Secondary Capture" in getattr(_sop_class(header), "name", "")


def _is_one_position(headers: Sequence[Any]) -> bool:
    """Images that all lie at one slice position: a contrast study's bolus tracking, one slice over time."""
    return len(headers) > 1 and _at_one_position(headers)


def _at_one_position(headers: Sequence[Any]) -> bool:
    positions = [_position_along_normal(h) for h in headers]
    known = [p for p in positions if p is not None]
    return len(known) == len(positions) and max(known, default=0.0) - min(known, default=0.0) < 1e-3


def _may_be_auxiliary(headers: Sequence[Any]) -> bool:
    """Whether the first images of a series, ``headers``, leave it possible that the whole series is one of
    :data:`_AUXILIARY_SERIES`: what each of them asks of every image holds for these."""
    return (
        all(_is_localizer(h) for h in headers)
        or all(_is_secondary_capture(h) for h in headers)
        or _at_one_position(headers)
    )


#: Series that are not a study's volume, skipped with a warning when other series share their folder (alone, a
#: folder is read as what it holds): what tells them, and how the warning names them and says why
_AUXILIARY_SERIES: tuple[tuple[Callable[[Sequence[Any]], bool], tuple[str, str]], ...] = (
    (lambda headers: all(_is_localizer(h) for h in headers), ("localizer series", "scout images, not volumes")),
    (_is_screen_capture, ("secondary capture series", "screenshots or report pages, not volumes")),
    (_is_one_position, ("series of one slice position", "images over time at one place (bolus tracking), not volumes")),
)


def split_dicom_series(folder: str | os.PathLike, warn: bool = True, warn_subfolders: bool = True) -> list[DicomSeries]:
    """Groups the DICOM files of ``folder`` by SeriesInstanceUID, reading headers only.

    Files directly in ``folder`` are considered (subfolders are ignored, with a warning). Hidden files and the files
    in ``HARMLESS_FILES`` (DICOMDIR, Thumbs.db, ...) are skipped with a warning, and so are DICOM objects that are
    no images by their SOP class (segmentations, RT doses and structure sets, reports), localizer images (ImageType
    LOCALIZER) among a series' slices, and beside other series, series of localizers, secondary captures of one
    image or in colour (a dose report page, a screenshot) and series of one slice position (bolus tracking), and
    files whose suffix of letters no DICOM file has (``readme.txt``, ``report.pdf``); any other file must be a DICOM
    image. Series come sorted
    by SeriesNumber then UID; the files of a series are sorted by their position along the slice normal (else by
    InstanceNumber, else by name). Geometry is checked later, when the series is read (``validate_dicom_series``),
    so one broken series does not prevent listing the others.

    Args:
        folder: a folder of DICOM files.
        warn: give the warnings about skipped files; ``False`` where the reader gives them when it reads the
            folder (in another process, with DataLoader workers, where they would show twice).
        warn_subfolders: say that the folder's subfolders are ignored; ``False`` where one series of the folder is
            read by its reference, whose listing made the subfolders cases of their own.

    Returns:
        the series of the folder; use ``DicomSeries.reference`` as the image of one case per series.

    Raises:
        FileNotFoundError: ``folder`` does not exist, is not a folder, or holds no file.
        ValueError: a file is not DICOM, cannot be read, is an image whose header is cut off, or has no
            SeriesInstanceUID (the message names the file), or the folder holds no image.

    Example::

        >>> cases = [{"image": s.reference} for s in split_dicom_series("/data/study")]  # doctest: +SKIP
    """

    def note(message: str) -> None:
        if warn:
            warnings.warn(message, stacklevel=3)

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"DICOM folder {folder} does not exist or is not a folder.")
    files, subfolders = [], []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            subfolders.append(path.name)
        elif path.name.startswith(".") or path.name.lower() in HARMLESS_FILES:
            note(f"skipping {path}: not part of a DICOM series.")
        elif is_special_file(path):
            note(f"skipping {path}: {SPECIAL_FILES}.")
        else:
            files.append(path)
    if not files:
        hint = f" (it has subfolders {', '.join(subfolders)}; point to the series folder itself)" if subfolders else ""
        raise FileNotFoundError(f"DICOM folder {folder} holds no DICOM file{hint}.")
    if subfolders and warn_subfolders:
        note(f"ignoring subfolders of DICOM folder {folder}: {', '.join(subfolders)}.")

    groups: dict[str, list[tuple[Path, Any]]] = {}
    others = []
    for path in files:
        try:
            header = _read_header(path, folder)
        except ValueError:
            if any(is_dicom_file(f) for f in files):
                if _named_as_document(path):
                    # an export's readme.txt or report.pdf: no slice, whatever it holds, where it failed the series
                    note(f"skipping {path}: not a DICOM file, as its name says.")
                    continue
                raise
            # a folder of other files read as a series (MONAI Label gives an unknown study id an empty path, which
            # MONAI makes the working folder "."): its first file had been named as a stray among DICOM slices
            where = "" if folder.is_absolute() else f" ({folder.resolve()})"
            shown = ", ".join(f.name for f in files[:3]) + (", ..." if len(files) > 3 else "")
            served = (
                " (a MONAI Label server reads its working folder for a study id it does not know: is the id right?)"
                if str(folder) == "."
                else ""
            )
            raise ValueError(
                f"{folder}{where} is no DICOM series folder: none of its {len(files)} files is DICOM ({shown}); "
                f"give an image file or a folder of one series' DICOM slices{served}."
            ) from None
        if not _is_image(header):
            # a segmentation, structure set or report exported with its study, or an earlier run's SEG copied back
            others.append(f"{path.name} ({_object_kind(header)})")
            continue
        if "Rows" not in header or "Columns" not in header:
            raise ValueError(f"{_without_image_data(path, header)}; it cannot be part of an image series.")
        uid = header.get("SeriesInstanceUID")
        if not uid:
            raise ValueError(f"{path} has no SeriesInstanceUID (0020,000E); cannot tell which series it belongs to.")
        groups.setdefault(str(uid), []).append((path, header))
    if not groups:
        kinds = ", ".join(others)
        raise ValueError(f"DICOM folder {folder} holds no image, only DICOM objects of other kinds: {kinds}.")
    if others:
        note(f"skipping {', '.join(others)} in {folder}: DICOM objects that are no images.")
    for is_auxiliary, what in _AUXILIARY_SERIES:
        auxiliary = [uid for uid, members in groups.items() if is_auxiliary([h for _, h in members])]
        if auxiliary and len(auxiliary) < len(groups):
            # exported beside the series of the study (a CD's one folder of every image): no volume to read
            note(f"skipping {what[0]} {', '.join(auxiliary)} in {folder}: {what[1]}.")
            groups = {uid: members for uid, members in groups.items() if uid not in auxiliary}

    series = []
    for uid, members in groups.items():
        scouts = [path.name for path, header in members if _is_localizer(header)]
        if scouts and len(scouts) < len(members):
            # a scout exported into the series of the slices it planned: not a slice of the volume
            note(
                f"skipping {len(scouts)} localizer image(s) of DICOM series {uid} in {folder}: {', '.join(scouts[:5])}."
            )
            members = [(path, header) for path, header in members if not _is_localizer(header)]
        positions = [_position_along_normal(h) for _, h in members]
        if all(p is not None for p in positions):
            order = np.argsort(np.asarray(positions, float), kind="stable")
        else:
            numbers = [int(h.get("InstanceNumber") or 0) for _, h in members]
            order = np.argsort(np.asarray(numbers), kind="stable")
        members = [members[i] for i in order]
        first = members[0][1]
        number = first.get("SeriesNumber")
        series.append(
            DicomSeries(
                folder=str(folder),
                series_uid=uid,
                files=[str(p) for p, _ in members],
                description=str(first.get("SeriesDescription", "")),
                modality=str(first.get("Modality", "")),
                series_number=int(number) if number not in (None, "") else None,
                headers=[h for _, h in members],
            )
        )
    series.sort(key=lambda s: (s.series_number if s.series_number is not None else float("inf"), s.series_uid))
    return series


def select_dicom_series(folder: str | os.PathLike, series_uid: str | None = None, warn: bool = True) -> DicomSeries:
    """The one series of ``folder`` that an image path names: the series ``series_uid``, else the only one.

    Args:
        folder: a DICOM series folder.
        series_uid: SeriesInstanceUID of the series wanted, e.g. from a series reference; ``None`` when the folder
            must hold exactly one series.
        warn: give the warnings of ``split_dicom_series`` about skipped files.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no file.
        ValueError: a file cannot be read (see ``split_dicom_series``), the folder has no series ``series_uid``,
            or it holds several series and none was named; the message lists the series of the folder.

    Example::

        >>> folder, uid = parse_series_reference("/data/study::1.2.3")  # doctest: +SKIP
        >>> select_dicom_series(folder, uid).files[:1]  # doctest: +SKIP
        ['/data/study/IM0001.dcm']
    """
    folder = Path(folder)
    all_series = split_dicom_series(folder, warn, warn_subfolders=series_uid is None)
    # one line, so that a batch job's failure report keeps the whole listing
    listing = "; ".join(s.summary() for s in all_series)
    if series_uid is not None:
        chosen = [s for s in all_series if s.series_uid == series_uid]
        if not chosen:
            raise ValueError(f"DICOM folder {folder} has no series {series_uid}; it holds: {listing}.")
        return chosen[0]
    if len(all_series) > 1:
        raise ValueError(
            f"DICOM folder {folder} holds {len(all_series)} series, which are never merged: {listing}. "
            f"Name the one to read as {folder}::<SeriesInstanceUID> (in a datalist too), or keep one series per "
            "folder; split_dicom_series lists them."
        )
    return all_series[0]


#: how far slices may lie off a regular grid for the rounding of positions written to 0.1 mm, in mm
_POSITION_ROUNDING_MM = 0.1 + 1e-6


def _check_stack(
    positions: np.ndarray,
    labels: Sequence[str],
    where: str,
    missing_factor: float,
    spacing_tolerance: float,
) -> None:
    """Slice positions (sorted, mm along the normal) form a regular stack: no duplicate, gap or uneven spacing."""
    gaps = np.diff(positions)
    duplicates = [f"{labels[i]} and {labels[i + 1]}" for i in np.flatnonzero(gaps < 1e-3)]
    if duplicates:
        raise ValueError(
            f"{where} has {len(duplicates)} duplicate slice position(s) ({'; '.join(duplicates[:5])} share a "
            "position); it may hold several acquisitions or time points."
        )
    median = float(np.median(gaps))
    missing = []
    for i in np.flatnonzero(gaps > missing_factor * median):
        count = max(int(round(gaps[i] / median)) - 1, 1)
        expected = ", ".join(f"{positions[i] + k * gaps[i] / (count + 1):.2f}" for k in range(1, count + 1))
        missing.append(
            f"{count} slice(s) between {labels[i]} at {positions[i]:.2f} mm and {labels[i + 1]} "
            f"at {positions[i + 1]:.2f} mm, expected at {expected} mm"
        )
    if missing:
        raise ValueError(f"{where} is missing slices (median spacing {median:.4g} mm): {'; '.join(missing)}.")
    # the volume puts every slice on the regular grid from the first to the last
    grid = np.linspace(positions[0], positions[-1], len(positions))
    off_grid = float(np.abs(positions - grid).max())
    spread = (float(gaps.max()) - float(gaps.min())) / median
    # positions written with few decimals make gaps differ (0.625 mm slices written to 0.01 mm: gaps of 0.62 and
    # 0.63 mm, a 1.6% spread) while every slice stays within a few percent of a slice of its place on the grid, or
    # within the rounding of positions written to 0.1 mm: each up to 0.05 mm off, the grid through the first and
    # last slice up to 0.05 mm more (for thin slices, more than 5% of a slice)
    allowed = max(0.05 * median, _POSITION_ROUNDING_MM)
    if spread > spacing_tolerance and off_grid > allowed:
        raise ValueError(
            f"{where} has inconsistent slice spacing: gaps from {gaps.min():.4g} to {gaps.max():.4g} mm "
            f"(median {median:.4g} mm, spread {spread:.1%} > {spacing_tolerance:.1%}; slices up to {off_grid:.3g} mm "
            "off a regular grid)."
        )
    # small uneven gaps can add up
    if off_grid > allowed:
        warnings.warn(
            f"{where}: slice gaps vary ({gaps.min():.4g} to {gaps.max():.4g} mm), so some slices lie up to "
            f"{off_grid:.3g} mm ({off_grid / median:.0%} of a slice) off the regular grid the volume and its label "
            "map use.",
            stacklevel=3,
        )


def _check_orientation(iop: np.ndarray, where: str, tolerance: float = ORIENTATION_TOLERANCE) -> None:
    """ImageOrientationPatient holds two unit directions at right angles, or no volume affine describes the slices."""
    row, column = iop[:3], iop[3:]
    lengths = np.linalg.norm(row), np.linalg.norm(column)
    if iop.shape != (6,) or max(abs(n - 1.0) for n in lengths) > tolerance or abs(float(row @ column)) > tolerance:
        raise ValueError(
            f"{where} has an ImageOrientationPatient whose row and column directions are not unit vectors at right "
            f"angles ({', '.join(f'{v:.4g}' for v in iop)}); its slices cannot be placed in a volume."
        )


def _close(values: Sequence[Any], tolerance: float) -> bool:
    arrays = np.asarray([np.asarray(v, float) for v in values])
    return bool(np.all(np.abs(arrays - arrays[0]) <= tolerance))


def _value_groups(files: Sequence[str], headers: Sequence[Any], tag: str) -> str:
    """The values of ``tag`` in a series, the most common first, each with its count and the files of the others."""
    groups: dict[str, list[str]] = {}
    for path, header in zip(files, headers):
        groups.setdefault(str(header.get(tag)), []).append(Path(path).name)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    parts = [f"{ordered[0][0]} ({len(ordered[0][1])} slices)"]
    for value, names in ordered[1:4]:
        parts.append(f"{value} ({len(names)}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''})")
    return "; ".join(parts)


def _label(path: str, header: Any) -> str:
    number = header.get("InstanceNumber")
    return f"{Path(path).name} (instance {number})" if number not in (None, "") else Path(path).name


def validate_dicom_series(series: DicomSeries, missing_factor: float = 1.5, spacing_tolerance: float = 0.01) -> None:
    """Checks that a DICOM series forms one regular 3D volume, so that its geometry can be trusted.

    For a series of single-frame files: every file has ImagePositionPatient, ImageOrientationPatient and
    PixelSpacing; orientation, pixel spacing and image size agree; positions projected on the slice normal
    (the cross product of the orientation's row and column directions) have no duplicate, no gap larger than
    ``missing_factor`` times the median spacing (a missing slice), a relative spread of gaps within
    ``spacing_tolerance`` unless every slice lies within 5% of a slice, or 0.1 mm, of the regular grid (gaps that
    differ by the rounding of positions in the headers), and lie on a line along the normal (no gantry tilt). A
    series of one file may be multi-frame; its per-frame positions, where the file has them, are checked the same
    way.

    Args:
        series: a series from ``split_dicom_series``.
        missing_factor: a gap larger than this many median spacings means missing slices.
        spacing_tolerance: largest accepted ``(max gap - min gap) / median gap`` where some slice lies more than
            5% of a slice and 0.1 mm off the regular grid.

    Raises:
        ValueError: the series is not a regular volume; the message names the folder and the slices at fault.

    Example::

        >>> for series in split_dicom_series("/data/study"):  # doctest: +SKIP
        ...     validate_dicom_series(series)
    """
    where = f"DICOM series {series.series_uid} in {series.folder}"
    headers = series.headers or [_dcmread(f, stop_before_pixels=True) for f in series.files]
    for path, header in zip(series.files, headers):
        _check_photometric(path, header)
    if len(headers) == 1:
        _validate_multiframe(headers[0], series.files[0], missing_factor, spacing_tolerance)
        return
    for path, header in zip(series.files, headers):
        if int(header.get("NumberOfFrames") or 1) > 1:
            raise ValueError(f"{where} mixes several files with multi-frame {path}; read the multi-frame file alone.")
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if header.get(tag) is None:
                raise ValueError(f"{path} of {where} has no {tag}; cannot place the slice in a volume.")
    for tag, tolerance in (
        ("ImageOrientationPatient", ORIENTATION_TOLERANCE),
        ("PixelSpacing", 1e-4),
        ("Rows", 0),
        ("Columns", 0),
    ):
        if not _close([h.get(tag) for h in headers], tolerance):
            raise ValueError(f"{where} has slices with different {tag}: {_value_groups(series.files, headers, tag)}.")
    # a copy of a slice under another name ("IM0004 (1).dcm", as downloads name it) is no second slice
    named: dict[str, str] = {}
    for path, header in zip(series.files, headers):
        uid = str(header.get("SOPInstanceUID") or "")
        if uid in named:
            raise ValueError(
                f"{where} holds one instance twice: {Path(named[uid]).name} and {Path(path).name} have the same "
                f"SOPInstanceUID {uid}; remove one of them."
            )
        if uid:
            named[uid] = path
    # one volume is one acquisition in one patient coordinate system: slices of another study, frame of reference
    # or kind of image that share the SeriesInstanceUID (a faulty export) would be stacked into one volume
    for tag in ("StudyInstanceUID", "FrameOfReferenceUID", "SOPClassUID"):
        if len({str(h.get(tag)) for h in headers}) > 1:
            raise ValueError(f"{where} mixes slices of different {tag}: {_value_groups(series.files, headers, tag)}.")
    iop = np.asarray(headers[0].ImageOrientationPatient, float)
    _check_orientation(iop, where)
    normal = np.cross(iop[:3], iop[3:])
    ipp = np.asarray([np.asarray(h.ImagePositionPatient, float) for h in headers])
    along = ipp @ normal
    order = np.argsort(along, kind="stable")
    labels = [_label(series.files[i], headers[i]) for i in order]
    _check_stack(along[order], labels, where, missing_factor, spacing_tolerance)
    # in-plane drift of the slice origins: a tilted (sheared) stack that a volume affine cannot describe
    offsets = ipp - ipp[order[0]] - np.outer(along - along[order[0]], normal)
    drift = float(np.linalg.norm(offsets, axis=1).max())
    if drift > 0.01 * min(float(v) for v in headers[0].PixelSpacing):
        raise ValueError(
            f"{where} is not stacked along the slice normal (in-plane shift up to {drift:.3g} mm, e.g. gantry tilt); "
            "resample it to a regular grid first."
        )


def _validate_multiframe(header: Any, path: str, missing_factor: float, spacing_tolerance: float) -> np.ndarray | None:
    """The frames of one multi-frame file form a regular stack, where the file records their positions.

    Returns:
        the order of the frames along the slice normal where the file stores them in another order than ascending
        or descending (which DICOM allows, and from which ITK makes no volume: it falls back to 1 mm spacing and an
        arbitrary direction), for :func:`_frames_in_order`; ``None`` otherwise.
    """
    frames = int(header.get("NumberOfFrames") or 1)
    if frames < 2:
        return None
    where = f"multi-frame DICOM file {path}"
    if "PerFrameFunctionalGroupsSequence" not in header:  # no frame positions (enhanced CT/MR/PET record them)
        return None
    shared = header.get("SharedFunctionalGroupsSequence")
    iop = None
    if shared and "PlaneOrientationSequence" in shared[0]:
        iop = shared[0].PlaneOrientationSequence[0].ImageOrientationPatient
    ipps = []
    for item in header.PerFrameFunctionalGroupsSequence:
        if iop is None and "PlaneOrientationSequence" in item:
            iop = item.PlaneOrientationSequence[0].ImageOrientationPatient
        if "PlanePositionSequence" not in item:
            return None  # no per-frame position: nothing to check, the reader decides the geometry
        ipps.append(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float))
    if iop is None or len(ipps) != frames:
        return None
    _check_orientation(np.asarray(iop, float), where)
    normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
    positions = np.asarray(ipps) @ normal
    order = np.argsort(positions, kind="stable")
    _check_stack(positions[order], [f"frame {i + 1}" for i in order], where, missing_factor, spacing_tolerance)
    steps = np.diff(positions)
    return None if np.all(steps > 0) or np.all(steps < 0) else order


@contextlib.contextmanager
def _frames_in_order(path: Path, header: Any, order: np.ndarray | None) -> Iterator[tuple[Path, Any]]:
    """The multi-frame file ``path`` and its header as ITK should read them: where ``order`` is given
    (:func:`_validate_multiframe`), a temporary copy whose frames, pixel data and per-frame functional groups
    alike, are stored in that order; else the file and ``header`` as they are.

    Raises:
        ValueError: pixel data whose frames cannot be told apart (bit-packed or float), naming ``path``.
    """
    if order is None:
        yield path, header
        return
    dataset = _dcmread(path)
    frames = int(dataset.NumberOfFrames)
    groups = list(dataset.PerFrameFunctionalGroupsSequence)
    dataset.PerFrameFunctionalGroupsSequence = pydicom.sequence.Sequence([groups[i] for i in order])
    if "PixelData" not in dataset:
        raise ValueError(
            f"{path}: its frames are not stored in order along the slice normal, and its float pixel "
            "data cannot be reordered; store them in order."
        )
    if _transfer_syntax(dataset).is_encapsulated:
        try:
            from pydicom.encaps import generate_frames

            encoded = list(generate_frames(dataset.PixelData, number_of_frames=frames))
        except ImportError:  # pydicom < 3
            from pydicom.encaps import generate_pixel_data_frame

            encoded = list(generate_pixel_data_frame(dataset.PixelData, frames))
        dataset.PixelData = pydicom.encaps.encapsulate([encoded[i] for i in order])
        # the offsets of the frames as stored, which no longer hold
        for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
            dataset.pop(keyword, None)
    else:
        bits = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel") or 1)
        bits *= int(dataset.BitsAllocated)
        if bits % 8:
            raise ValueError(
                f"{path}: its frames are not stored in order along the slice normal, and its "
                "bit-packed frames cannot be reordered; store them in order."
            )
        stored = np.frombuffer(dataset.PixelData, np.uint8)[: frames * bits // 8].reshape(frames, -1)
        dataset.PixelData = stored[order].tobytes()
    with tempfile.TemporaryDirectory(prefix="monai_unets_frames_") as folder:
        copy = Path(folder) / path.name
        dataset.save_as(copy)
        yield copy, dataset


def _sop_class(header: Any) -> Any:
    """The SOP class of a DICOM file: its file meta's MediaStorageSOPClassUID (read even where the dataset is cut
    short), else the dataset's SOPClassUID; ``None`` without either."""
    meta = getattr(header, "file_meta", None)
    uid = (meta.get("MediaStorageSOPClassUID") if meta is not None else None) or header.get("SOPClassUID")
    return pydicom.uid.UID(str(uid)) if uid else None


def _object_kind(header: Any) -> str:
    """What a DICOM object is, for messages: its SOP class name (``CT Image Storage``), else its Modality."""
    sop = _sop_class(header)
    if sop is None:
        return str(header.get("Modality") or "unknown")
    return _SEGMENTATION_CLASSES.get(sop) or sop.name


def _is_image(header: Any) -> bool:
    """Whether a DICOM object is an image to segment: by its SOP class where pydicom knows the class, else by its
    Rows and Columns.

    Segmentations (an earlier run's SEG among them) and RT doses carry Rows, Columns and pixel data, yet they are
    no images; structure sets, reports and presentation states carry none. An image class stays an image where its
    header lacks Rows (a file cut off in transfer), so that the reader calls it truncated.
    """
    sop = _sop_class(header)
    if sop in _SEGMENTATION_CLASSES:
        return False
    if sop is not None and sop.type == "SOP Class":
        return "Image Storage" in sop.name or sop in _IMAGE_CLASSES
    return "Rows" in header and "Columns" in header


def _without_image_data(path: Path, header: Any) -> str:
    """Why a DICOM header is no image to segment: another kind of object, or an image file cut off before its
    Rows and Columns."""
    kind = _object_kind(header)
    syntax = _transfer_syntax(header)
    if not len(header) and syntax is not None and syntax.is_encapsulated:
        # pydicom keeps no element at all of a dataset whose encapsulated pixel data end before their sequence
        # delimiter: the header was whole, the image data are cut short
        return (
            f"{path} is a DICOM {kind} file whose compressed pixel data end before their closing delimiter: the "
            f"file is truncated or damaged ({Path(path).stat().st_size} bytes)"
        )
    if _is_image(header):
        # an image object always has them: its header stops early, as a file cut off in transfer does
        return (
            f"{path} is a DICOM {kind} file whose header ends before its image attributes (Rows, Columns): "
            f"the file is truncated or damaged ({Path(path).stat().st_size} bytes)"
        )
    if _sop_class(header) in _SEGMENTATION_CLASSES:
        # given as a training or evaluation label, a SEG's frames would be read as an image
        return (
            f"{path} is a DICOM {kind} object, not an image; DICOM SEG labels are not supported either: convert "
            "the segmentation to NIfTI (e.g. with highdicom or dcmqi's segimage2itkimage)"
        )
    if _sop_class(header) == _RTSTRUCT_CLASS:
        # the usual form of a clinic's contours, given as a label
        return (
            f"{path} is a DICOM {kind} object, not an image; RT structure set labels are not supported either: "
            "rasterise the contours onto their image's grid and save a label map (NIfTI), e.g. with 3D Slicer's "
            "SlicerRT or rt-utils"
        )
    return f"{path} is a DICOM {kind} object, not an image"


def _check_photometric(path: str | os.PathLike, header: Any) -> None:
    """The image's PhotometricInterpretation is one ITK reads and agrees with its SamplesPerPixel: ITK read an RGB
    header over one sample per pixel as colours made of the following pixels, padded with zeros, and failed on the
    retired colour models with a template error naming no file, as it does on colours of more than 8 bits, which
    ITK's Python images do not hold (every colour image is refused by the CT bundles' channel check anyway)."""
    photometric = _photometric(header)
    stored = int(header.get("SamplesPerPixel") or 1)
    bits = int(header.get("BitsAllocated") or 8)
    if stored > 1 and bits > 8:
        raise ValueError(
            f"{path}: is a colour DICOM image ({photometric or 'no PhotometricInterpretation'}: {stored} samples per "
            f"pixel of {bits} bits), which cannot be read: colour is read at 8 bits per sample only; the CT bundles "
            "take greyscale scans."
        )
    if not photometric:
        return  # older files lack it: the samples per pixel decide, as in ITK
    samples = _PHOTOMETRIC_SAMPLES.get(photometric)
    if samples is None:
        raise ValueError(
            f"{path} has PhotometricInterpretation {photometric}, a colour model that cannot be read; expected one "
            f"of {', '.join(_PHOTOMETRIC_SAMPLES)}."
        )
    if stored != samples:
        raise ValueError(
            f"{path} has PhotometricInterpretation {photometric} with SamplesPerPixel {stored}: {photometric} "
            f"stores {samples} sample{'s' if samples > 1 else ''} per pixel, so the header is inconsistent."
        )


def check_single_dicom(path: Path) -> Any:
    """The header (pixel data deferred) of a lone ``.dcm`` file, which must be a readable DICOM image whose
    uncompressed pixel data, if any, is whole; errors name the file."""
    _refuse_empty(path)
    try:
        header = _dcmread(path, defer_size=_DEFER_SIZE)
    except pydicom.errors.InvalidDicomError:
        raise ValueError(f"{path} is not a DICOM file.") from None
    except Exception as error:  # truncated or otherwise unreadable header
        raise ValueError(f"cannot read the DICOM header of {path}: {type(error).__name__}: {error}") from error
    if not _is_image(header) or "Rows" not in header or "Columns" not in header:
        raise ValueError(f"{_without_image_data(path, header)}.")
    _check_photometric(path, header)
    _check_pixel_length(path, header)
    return header


def _with_slice_thickness(image: Any, header: Any, path: str | os.PathLike) -> Any:
    """A single-slice DICOM image with the slice's own thickness as its third spacing.

    With one slice there is no neighbour to measure the step to, and ITK puts 1 mm there; the header's
    SpacingBetweenSlices, else SliceThickness, is the extent the slice stands for. Multi-frame files keep the
    spacing of their frame positions. Without either attribute 1 mm stays, with a warning.
    """
    if int(header.get("NumberOfFrames") or 1) > 1 or image.GetImageDimension() != 3:
        return image
    size = image.GetLargestPossibleRegion().GetSize()
    if int(size[2]) != 1:
        return image
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = header.get(keyword)
        try:
            thickness = float(value) if value not in (None, "") else 0.0
        except (TypeError, ValueError):
            thickness = 0.0
        if np.isfinite(thickness) and thickness > 0:
            spacing = [float(v) for v in image.GetSpacing()]
            image.SetSpacing([spacing[0], spacing[1], thickness])
            return image
    warnings.warn(
        f"{path}: a single slice without SpacingBetweenSlices or SliceThickness; its thickness is taken as 1 mm.",
        stacklevel=3,
    )
    return image


def _pydicom_decoder(syntax: Any) -> Any:
    """pydicom's decoder of a (compressed) transfer syntax, whether its plugins are installed or not; ``None``
    where pydicom has none."""
    if syntax is None:
        return None
    try:
        from pydicom.pixels import get_decoder

        return get_decoder(syntax)
    except (ImportError, NotImplementedError):  # pydicom < 3, or a syntax pydicom has no decoder for
        return None


def _pydicom_decodes(syntax: Any) -> bool:
    """Whether an installed pydicom plugin decodes pixel data of this (compressed) transfer syntax."""
    decoder = _pydicom_decoder(syntax)
    return decoder is not None and bool(decoder.is_available)


def _undecodable(files: Sequence[str], headers: Sequence[Any], error: Exception) -> ValueError:
    """The error for DICOM pixel data that ITK failed on, naming the file at fault and its transfer syntax.

    ITK's series reader says neither which slice it failed on nor why ("Failed to change to Implicit Transfer
    Syntax"), so each slice is tried alone: a few failing among slices that decode are damaged; where all fail,
    no installed decoder reads the syntax, and pydicom tells which packages its decoders for it need.
    """
    from .dataset import itk_error_reason  # not at the top: dataset imports atomic, which imports this module

    reason = itk_error_reason(str(error)) or " ".join(str(error).split())
    failing = list(range(len(files)))
    if len(files) > 1:
        failing = [index for index in failing if not _itk_decodes(files[index])]
        if not failing:  # each slice decodes alone: not a decoding failure
            return ValueError(f"ITK cannot read the DICOM series of {Path(files[0]).parent}: {reason}")
    first = failing[0]
    where = f"{files[first]}: cannot decode its pixel data ({_syntax_name(headers[first])})"
    if len(failing) < len(files):
        others = [Path(files[index]).name for index in failing[1:]]
        more = f" (as are {', '.join(others[:5])}{' and more' if len(others) > 5 else ''})" if others else ""
        return ValueError(f"{where}: the file is damaged{more}, as the series' other slices decode; ITK: {reason}.")
    slices = f", nor those of the series' {len(files) - 1} other slices" if len(files) > 1 else ", or it is damaged"
    decoders = _pydicom_decoders(_transfer_syntax(headers[first]))
    return ValueError(f"{where}: no installed decoder reads it{slices} (ITK: {reason}; {decoders}).")


def _transfer_syntax(header: Any) -> Any:
    """The TransferSyntaxUID (a pydicom ``UID``) of a header's file meta, ``None`` where it has none."""
    return getattr(getattr(header, "file_meta", None), "TransferSyntaxUID", None)


def _syntax_name(header: Any) -> str:
    syntax = _transfer_syntax(header)
    return syntax.name if syntax is not None else "no transfer syntax"


def _itk_decodes(path: str) -> bool:
    try:
        with _ITK_LOCK:
            itk.imread(path)
    except RuntimeError:
        return False
    return True


def _pydicom_decoders(syntax: Any) -> str:
    """What pydicom's decoders for a transfer syntax need, for a message: ``"pydicom reads it with pylibjpeg>=2.0
    and pylibjpeg-openjpeg>=2.0 installed"``."""
    decoder = _pydicom_decoder(syntax)
    if decoder is None:
        return "pydicom has no decoder for it"
    if decoder.is_available:
        return "pydicom's decoder for it is installed"
    # each entry reads "<plugin> - requires <packages>"
    needs = [entry.split(" - requires ", 1)[-1] for entry in decoder.missing_dependencies]
    return f"pydicom reads it with {' or with '.join(needs)} installed"


def _stored_pixels(series: DicomSeries) -> np.ndarray | None:
    """The stored values of a series of single-sample slices: ``(slices, rows, columns)``.

    Native (uncompressed) pixel data is read straight into the volume from the offset that the header pass
    recorded (the pixel data was deferred), so every file is parsed once and every pixel copied once; bits above
    BitsStored are cleared, or sign-extended for signed data, as DICOM decoders do. Compressed pixel data goes
    through pydicom's decoders where one is installed (RLE always; JPEG family with pylibjpeg or GDCM). ``None``
    for the rest (deflated, multi-sample, colour, or no pydicom decoder), which ITK's decoders read instead: ITK gives
    a palette colour image's one sample per pixel as the colours of its palette.
    """
    first = series.headers[0]
    syntax = _transfer_syntax(first)
    allocated = int(first.get("BitsAllocated") or 0)
    if any(_FLOAT_PIXELS & set(header.keys()) for header in series.headers):
        # float pixel data (parametric maps): pydicom reads it; its values need no rescale
        return _decoded_pixels(series)
    if (
        syntax is None
        or syntax.is_deflated
        or int(first.get("SamplesPerPixel") or 1) != 1
        or not all(map(_is_greyscale, series.headers))
        or allocated not in (8, 16, 32)
        or len({_pixel_encoding(h) for h in series.headers}) > 1  # slices encoded differently: ITK decides
    ):
        return None
    if syntax.is_compressed:
        return _decoded_pixels(series) if _pydicom_decodes(syntax) else None
    signed = int(first.get("PixelRepresentation") or 0) == 1
    dtype = np.dtype(f"{'<' if syntax.is_little_endian else '>'}{'i' if signed else 'u'}{allocated // 8}")
    rows, columns = int(first.Rows), int(first.Columns)
    size = rows * columns * dtype.itemsize
    for path, header in zip(series.files, series.headers):
        # a file too short for the declared slice is refused before the volume's memory is taken
        element = _pixel_element(header)
        if element is not None:
            stored = os.path.getsize(path) - element.value_tell if element.value is None else len(element.value)
            _check_length(path, stored, size, f"{rows} x {columns}")
    _check_memory(series.folder, (len(series.files), rows, columns), dtype)
    volume = np.empty((len(series.files), rows, columns), dtype=dtype.newbyteorder("="))
    for index, (path, header) in enumerate(zip(series.files, series.headers)):
        element = _pixel_element(header)
        if element is None:
            raise ValueError(f"{path} has no pixel data.")
        target = volume[index].view(dtype)  # the file's byte order; swapped below where it differs
        if element.value is None:  # deferred: read from the file at the recorded offset
            with open(path, "rb") as stream:
                stream.seek(element.value_tell)
                read = stream.readinto(memoryview(target).cast("B"))
        else:
            data = element.value
            read = min(len(data), size)
            target.reshape(-1)[: read // dtype.itemsize] = np.frombuffer(data, dtype, count=read // dtype.itemsize)
        _check_length(path, read, size, f"{rows} x {columns}")
    if not dtype.isnative:
        volume.byteswap(inplace=True)
    stored = int(first.get("BitsStored") or allocated)
    if stored < allocated:
        if signed:
            shift = allocated - stored
            volume <<= shift
            volume >>= shift
        else:
            volume &= (1 << stored) - 1
    return volume


def _check_length(path: str | os.PathLike, read: int, size: int, shape: str) -> None:
    if read < size:
        raise ValueError(f"the pixel data of {path} is truncated: {read} of {size} bytes ({shape}).")


def _check_pixel_length(path: str | os.PathLike, header: Any) -> None:
    """Uncompressed pixel data that ITK is to read holds every frame: ITK fails on a short one with "Could not
    create IO object" or "No ImageIO is registered", naming neither the file nor the reason.

    ``header`` must keep its PixelData element (deferred, not skipped); compressed data is checked by decoding.
    """
    syntax = _transfer_syntax(header)
    element = _pixel_element(header)
    if element is None or syntax is None or syntax.is_compressed or syntax.is_deflated:
        return
    frames, rows, columns = int(header.get("NumberOfFrames") or 1), int(header.Rows), int(header.Columns)
    bits = frames * rows * columns * int(header.get("SamplesPerPixel") or 1) * int(header.get("BitsAllocated") or 0)
    if element.value is None:  # deferred: what the file holds from the value's offset on
        held = min(int(element.length), os.path.getsize(path) - element.value_tell)
    else:
        held = len(element.value)
    _check_length(
        path, held, (bits + 7) // 8, f"{frames} frames of {rows} x {columns}" if frames > 1 else f"{rows} x {columns}"
    )


# FloatPixelData and DoubleFloatPixelData
_FLOAT_PIXELS = {0x7FE00008, 0x7FE00009}


def _pixel_encoding(header: Any) -> tuple:
    """What decoding a slice's pixels depends on: transfer syntax, bits, signedness, size."""
    syntax = _transfer_syntax(header)
    keywords = ("BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel", "Rows", "Columns")
    return (str(syntax), *(header.get(keyword) for keyword in keywords))


def _pixel_element(header: Any) -> Any:
    """The PixelData element of ``header`` without reading a deferred value (pydicom 3), else with it."""
    try:
        return header.get_item("PixelData", keep_deferred=True)
    except TypeError:  # pydicom < 3 reads the deferred value here
        return header.get_item("PixelData")


def _decoded_pixels(series: DicomSeries) -> np.ndarray:
    """The stored values of compressed (or float) slices, decoded one by one by pydicom; errors name the file."""
    slices = []
    for path, header in zip(series.files, series.headers):
        try:
            slices.append(header.pixel_array)
        except Exception as error:  # a corrupt or truncated frame
            raise ValueError(
                f"{path}: cannot decode its pixel data ({_syntax_name(header)}): {type(error).__name__}: {error}"
            ) from error
        for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if tag in header:
                delattr(header, tag)  # the decoded slice is kept; the encoded bytes need not be
    return np.stack(slices)


def _rescale(volume: np.ndarray, headers: Sequence[Any]) -> np.ndarray:
    """Modality values: each slice by its own RescaleSlope/Intercept, as ITK reads a series.

    Integer rescales keep an integer type (in place where the values fit the stored type); others give float32.
    """
    rescales = np.asarray([_rescale_of(h) for h in headers])
    if np.all(rescales == [1.0, 0.0]):
        return volume
    if np.all(rescales == np.round(rescales)):
        low, high = float(volume.min()), float(volume.max())
        ends = rescales[:, :1] * [low, high] + rescales[:, 1:]
        for dtype in (volume.dtype, np.dtype(np.int16), np.dtype(np.uint16)):
            info = np.iinfo(dtype)
            if ends.min() >= info.min and ends.max() <= info.max:
                result = volume.astype(dtype, copy=False)
                break
        else:
            result = volume.astype(np.float32)  # exact for the integers of any 16-bit rescaled range
    else:
        result = volume.astype(np.float32)
    for index, (slope, intercept) in enumerate(rescales):
        if slope != 1:
            result[index] *= result.dtype.type(slope)
        if intercept != 0:
            result[index] += result.dtype.type(intercept)
    return result


def _rescale_of(header: Any) -> tuple[float, float]:
    """A slice's (RescaleSlope, RescaleIntercept); (1, 0) where they are absent."""
    return float(header.get("RescaleSlope", 1) or 1), float(header.get("RescaleIntercept", 0) or 0)


@contextlib.contextmanager
def _colours_without_rescale(files: Sequence[str], headers: Sequence[Any]) -> Iterator[list[str]]:
    """``files`` as ITK should read them: a colour file that carries RescaleSlope or RescaleIntercept (a scan
    converted to colour with its rescale kept) as a temporary copy without them, since colour has no modality
    values and ITK applies them to the colours (to a palette's indices it failed with a template error naming no
    file; RGB values came out changed). Other files are given as they are."""
    kept = ("RescaleSlope", "RescaleIntercept", "RescaleType")
    if all(_is_greyscale(header) or not any(k in header for k in kept) for header in headers):
        yield list(files)
        return
    with tempfile.TemporaryDirectory(prefix="monai_unets_colour_") as folder:
        copies = []
        for index, path in enumerate(files):
            dataset = _dcmread(path)
            for keyword in kept:
                dataset.pop(keyword, None)
            copies.append(os.path.join(folder, f"{index:06d}.dcm"))
            dataset.save_as(copies[-1])
        yield copies


def frame_group(header: Any, frame: Any, group: str) -> Any:
    """The item of functional group ``group`` (e.g. ``PlanePositionSequence``) that holds for one frame of an
    enhanced multi-frame file: the frame's own where the frame has the group, else the shared one; ``None``
    where that has none."""
    holder = frame if group in frame else (header.get("SharedFunctionalGroupsSequence") or [{}])[0]
    sequence = holder.get(group)
    return sequence[0] if sequence else None


def _frame_rescales(header: Any) -> list[tuple[float, float]] | None:
    """Each frame's (RescaleSlope, RescaleIntercept) of an enhanced multi-frame file, where its functional groups
    hold them (Pixel Value Transformation, per frame or shared); ``None`` for other files, and for colour files,
    whose samples are colours, not modality values (a converter may still have written the groups)."""
    frames = header.get("PerFrameFunctionalGroupsSequence")
    if not frames or not _is_greyscale(header):
        return None
    groups = [frame_group(header, frame, "PixelValueTransformationSequence") for frame in frames]
    return None if any(group is None for group in groups) else [_rescale_of(group) for group in groups]


def _set_frame_values(image: Any, path: Path, rescales: Sequence[tuple[float, float]]) -> None:
    """Writes each frame's modality values (its stored values by its own rescale) into ``image`` (float, as ITK
    read it, frames in file order): ITK gave every frame of an enhanced file one rescale, up to thousands off on the
    others (per-frame slopes, as enhanced MR and PET carry), and inverted MONOCHROME1."""
    try:
        stored = _dcmread(path).pixel_array
    except Exception as error:  # noqa: BLE001 - a compression pydicom cannot decode: ITK's values stay
        warnings.warn(
            f"{path}: its frames carry rescales of their own, but pydicom cannot decode its pixel data "
            f"({type(error).__name__}); its values are ITK's, with one rescale for every frame.",
            stacklevel=4,
        )
        return
    values = itk.array_view_from_image(image)
    stored = np.asarray(stored).reshape(len(rescales), -1)
    flat = values.reshape(len(rescales), -1)
    for index, (slope, intercept) in enumerate(rescales):
        flat[index] = stored[index] * slope + intercept


def _is_greyscale(header: Any) -> bool:
    return _photometric(header) in ("", "MONOCHROME1", "MONOCHROME2")


def _photometric(header: Any) -> str:
    return str(header.get("PhotometricInterpretation", "")).strip().upper()


def _is_monochrome1(header: Any) -> bool:
    return _photometric(header) == "MONOCHROME1"


def _undo_monochrome1(image: Any, headers: Sequence[Any]) -> Any:
    """The modality values of a MONOCHROME1 image that ITK read, as the native path and pydicom give them.

    MONOCHROME1 (minimum is white) concerns display only, yet GDCM inverts each stored value ``s`` to ``low +
    high - s`` over the range of BitsStored before rescaling: a CT read through ITK came out as -HU - 2049.
    ``headers``: one per slice of ``image`` (a series), or one for all its frames; the image must be float.
    """
    if not any(map(_is_monochrome1, headers)):
        return image
    values = itk.array_view_from_image(image)  # (slices, rows, columns), in place
    for index, header in enumerate(headers):
        if not _is_monochrome1(header):
            continue
        bits = int(header.get("BitsStored") or header.get("BitsAllocated") or 16)
        signed = int(header.get("PixelRepresentation") or 0) == 1
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        slope, intercept = _rescale_of(header)
        part = values if len(headers) == 1 else values[index]
        part *= -1
        part += slope * (low + high) + 2 * intercept
    return image


def _fill_padding(values: np.ndarray, headers: Sequence[Any]) -> None:
    """Voxels of the stored PixelPaddingValue (to PixelPaddingRangeLimit, where given) take the lowest value of the
    others, in place.

    Padding marks the pixels outside the scanned field of view: they hold no measurement. Read as values, an unsigned
    CT's padding of 65535 became 64511 HU around every slice, brighter than bone, which a network then segmented.
    ``values`` are modality values (rescaled; padding is given in stored values, rescaled here alike); ``headers``:
    one per slice of ``values`` (a series), or one for all its frames.
    """
    if not any("PixelPaddingValue" in header for header in headers):
        return
    padded = np.zeros(values.shape, bool)
    for index, header in enumerate(headers):
        if "PixelPaddingValue" not in header or not _is_greyscale(header):
            continue
        slope, intercept = _rescale_of(header)
        try:
            ends = [
                float(header.get(tag, header.PixelPaddingValue))
                for tag in ("PixelPaddingValue", "PixelPaddingRangeLimit")
            ]
        except (TypeError, ValueError):  # a value pydicom could not decode (an ambiguous VR left as bytes)
            continue
        low, high = sorted(slope * end + intercept for end in ends)
        # ITK rescales in floating point: its values of the padding may differ from these in the last digits
        margin = 1e-3 * abs(slope)
        part = values if len(headers) == 1 else values[index]
        (padded if len(headers) == 1 else padded[index])[...] = (part >= low - margin) & (part <= high + margin)
    if padded.any() and not padded.all():
        values[padded] = values[~padded].min()


@dataclass
class _SeriesVolume:
    """A checked series of single-frame files as this reader assembled it from the headers already read, or a file
    of a pixel type that ITK's Python modules cannot read (``_read_unwrapped``).

    ``volume`` holds the modality values ``(slices, rows, columns)``, with a last axis of components for a file of
    several values per voxel (RGB, vector); the geometry is ITK's convention (LPS origin,
    ``(column, row, slice)`` spacing, direction columns). ``meta`` gives MONAI's metadata without ITK, whose Python
    modules take 0.7-0.8 s to load in each new process (a DataLoader worker reading its first series);
    ``itk_image`` gives the same image to ``ITKReader`` where a list of images is stacked or its options matter.
    """

    volume: np.ndarray
    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray
    tags: dict[str, str]

    def meta(self) -> dict:
        """The metadata ``ITKReader(affine_lps_to_ras=True).get_data`` gives this image (a test keeps them equal)."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction @ np.diag(self.spacing)
        affine[:3, 3] = self.origin
        affine = orientation_ras_lps(affine)
        return {
            **self.tags,
            "spacing": self.spacing.copy(),
            MetaKeys.ORIGINAL_AFFINE: affine,
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(self.volume.shape[:3][::-1]),
            MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if self.volume.ndim > 3 else float("nan"),
            **({VALUES_PER_VOXEL: self.volume.shape[-1]} if self.volume.ndim > 3 else {}),
        }

    def array(self) -> np.ndarray:
        """The values as ``ITKReader.get_data`` gives them: ``(x, y, z)`` in C order, components last."""
        if self.volume.ndim > 3:
            return np.ascontiguousarray(np.moveaxis(self.volume.T, 0, -1))
        return c_ordered(self.volume.T)

    def itk_image(self) -> Any:
        """The volume as an ITK image (a view of ``volume``) with the same geometry and tags."""
        image = itk.image_view_from_array(self.volume, is_vector=self.volume.ndim > 3)
        image.SetOrigin(self.origin.tolist())
        image.SetSpacing(self.spacing.tolist())
        image.SetDirection(itk.matrix_from_array(self.direction))
        return _with_tags(image, self.tags)


def _with_tags(image: Any, tags: dict[str, str]) -> Any:
    """``image`` with ``tags`` (``"gggg|eeee"`` entries) in its metadata dictionary, which ``ITKReader`` reports."""
    dictionary = image.GetMetaDataDictionary()
    for key, text in tags.items():
        dictionary[key] = text
    return image


# bytes of a MetaImage ElementType; MET_LONG, whose size ITK takes from the platform, is left to ITK
_MET_BYTES = {
    "MET_CHAR": 1,
    "MET_UCHAR": 1,
    "MET_SHORT": 2,
    "MET_USHORT": 2,
    "MET_INT": 4,
    "MET_UINT": 4,
    "MET_LONG_LONG": 8,
    "MET_ULONG_LONG": 8,
    "MET_FLOAT": 4,
    "MET_DOUBLE": 8,
}
# the bytes of a NRRD/MetaImage file searched for its header, which is text of a few hundred bytes
_HEADER_BYTES = 65536


def _header_fields(head: bytes, separator: str) -> Iterator[tuple[str, str, int]]:
    """The ``key<separator>value`` lines at the start of ``head``, each with the offset where the next line starts;
    comment lines (``#``) are passed over, a blank line or any other ends the header."""
    offset = 0
    for raw in head.splitlines(keepends=True):
        offset += len(raw)
        line = raw.decode("latin-1").strip()
        if line.startswith("#"):
            continue
        key, found, value = line.partition(separator)
        if not found or not raw.endswith(b"\n"):  # the end of the header, or a line cut off by the bytes read
            return
        yield key.strip(), value.strip(), offset


def _read_volume_header(path: Path) -> tuple[bool, dict[str, str], int, str | None]:
    """A NRRD or MetaImage header: whether it is NRRD, its fields, where its attached data start (-1: a NRRD header
    without its blank line) and the data file it names (``"LOCAL"`` for attached data, as MetaImage writes it)."""
    with open(path, "rb") as file:
        head = file.read(_HEADER_BYTES)
    nrrd = head.startswith(b"NRRD")
    fields: dict[str, str] = {}
    data_at = 0
    # a NRRD header starts with its magic line ("NRRD0004") and ends with a blank line, after which its attached data
    # start; a MetaImage header ends with its ElementDataFile line, after which the data of a LOCAL file start
    magic = len(head.partition(b"\n")[0]) + 1 if nrrd else 0
    for key, value, offset in _header_fields(head[magic:], ":" if nrrd else "="):
        fields[key] = value
        data_at = magic + offset
        if not nrrd and key == "ElementDataFile":
            break
    if nrrd:
        blank = re.match(rb"\r?\n", head[data_at:])
        data_at = data_at + blank.end() if blank else -1
    name = fields.get("data file", fields.get("datafile")) if nrrd else fields.get("ElementDataFile")
    return nrrd, fields, data_at, "LOCAL" if nrrd and name is None else name


def _named_data_file(header: Path, name: str | None) -> Path | None:
    """The one data file that a header names (``name``, from :func:`_read_volume_header`): the header itself for
    attached data; ``None`` for none, a list or a numbered pattern of files, which are left to ITK."""
    if not name or name.split()[0] == "LIST" or "%" in name:
        return None
    return header if name == "LOCAL" else header.parent / name


def _detached_data_files(folder: Path) -> set[Path]:
    """The data files that the NRRD/MetaImage headers of ``folder`` (``.nhdr``, ``.mhd``) name, resolved."""
    files = set()
    for header in folder.glob("*"):
        if header.suffix.lower() in (".nhdr", ".mhd") and header.is_file():
            with contextlib.suppress(OSError):
                data = _named_data_file(header, _read_volume_header(header)[3])
                if data is not None and data != header:
                    files.add(data.resolve())
    return files


def _check_data_file(path: Path) -> _CompressedVoxels | None:
    """The voxel data of a NRRD/MetaImage file is where its header says and a MetaImage's is whole; compressed
    voxels are returned, to be checked against their checksum once read (:meth:`_CompressedVoxels.check`).

    ITK names neither: a .mhd without its .raw, or a cut .mha, fails with "File cannot be read: x.mhd for reading"
    and the reason of whichever system call failed last ("No such file or directory" for the cut .mha). Only the
    header is read; data files given as a list or a numbered pattern, and a cut NRRD's data (whose reason ITK
    gives), are left to ITK.

    Raises:
        FileNotFoundError: the data file that the header names does not exist.
        ValueError: the header's dimensions and element type (or its CompressedDataSize) take more bytes than the
            data holds, or the compressed voxels are damaged.
    """
    nrrd, fields, data_at, name = _read_volume_header(path)
    data = _named_data_file(path, name)
    if data is None:
        return None
    if not data.is_file():
        raise FileNotFoundError(f"{path}: its data file {name} does not exist.")
    start = data_at if data == path else 0
    if nrrd:
        skipped = fields.keys() & {"byte skip", "byteskip", "line skip", "lineskip"}
        if fields.get("encoding", "").lower() in ("gzip", "gz") and not skipped and start >= 0:
            big_endian = fields.get("endian", "little").lower() == "big"
            return _CompressedVoxels(path, data, start, None, gzip_format=True, big_endian=big_endian)
        return None
    if "HeaderSize" in fields:
        return None
    compressed = fields.get("CompressedData", "").lower() == "true"
    try:
        dims = [int(size) for size in fields["DimSize"].split()]
        element = _MET_BYTES[fields["ElementType"]] * int(fields.get("ElementNumberOfChannels", 1))
        size = int(fields["CompressedDataSize"]) if compressed else math.prod(dims) * element
    except (KeyError, ValueError):  # a header ITK refuses, which it names, or a compressed size it does not give
        return None
    voxels = f"{' x '.join(map(str, dims))} voxels of {fields['ElementType']}{', compressed' if compressed else ''}"
    _check_length(data, os.path.getsize(data) - start, size, voxels)
    if not compressed:
        return None
    big_endian = fields.get("BinaryDataByteOrderMSB", fields.get("ElementByteOrderMSB", "False")).lower() == "true"
    return _CompressedVoxels(path, data, start, size, gzip_format=False, big_endian=big_endian)


@dataclass(frozen=True)
class _CompressedVoxels:
    """The compressed voxels of a NRRD (gzip) or MetaImage (zlib) file: ``data`` from ``start``, ``size`` bytes (to
    the end of the file where ``None``), stored in big- or little-endian order.

    ITK decompresses as many bytes as the voxels take and does not compare the checksum at the end, and it reports
    a MetaImage's failed decompression only on the console: a file damaged in transit was read as other voxel values
    without an error. :meth:`check` compares the checksum at the stream's end with that of the voxels ITK read.
    """

    path: Path
    data: Path
    start: int
    size: int | None
    gzip_format: bool
    big_endian: bool

    def check(self, voxels: np.ndarray | None) -> None:
        """The voxels read (in the file's order, as ITK's buffer has them) are the stream's, by its checksum;
        where they cannot be compared (another layout or type, a stream of several gzip members), the stream is
        decompressed whole to its checksum instead, which took 0.8 s of a 512 x 512 x 300 int16 CT on a 2-core CPU
        (ITK's read: 0.7 s), against 0.05 s for the comparison.

        Args:
            voxels: the array of the image ITK read, C-contiguous in the file's order; ``None`` when it failed.

        Raises:
            ValueError: the stream is damaged or ends before its checksum, naming the file.
        """
        if voxels is not None and voxels.flags.c_contiguous and self._trailer_matches(voxels):
            return
        decompressor = ZLIB.decompressobj(zlib.MAX_WBITS | (16 if self.gzip_format else 0))
        try:
            with open(self.data, "rb") as file:
                file.seek(self.start)
                while not decompressor.eof:
                    chunk = decompressor.unconsumed_tail or file.read(1 << 20)
                    if not chunk:
                        decompressor.flush()  # what the output limit held back
                        break
                    # at most 64 MiB out at a time: a volume of zeros decompresses a thousandfold
                    decompressor.decompress(chunk, 1 << 26)
            if not decompressor.eof:
                raise EOFError("the compressed stream ends before its checksum")
        except COMPRESSED_DATA_ERRORS as error:
            raise _damaged_compressed(self.path, error) from None

    def _trailer_matches(self, voxels: np.ndarray) -> bool:
        if voxels.dtype.itemsize > 1 and (sys.byteorder == "big") != self.big_endian:
            return False  # ITK swapped the bytes into this machine's order
        end = self.start + self.size if self.size is not None else os.path.getsize(self.data)
        with open(self.data, "rb") as file:
            # gzip ends with the CRC-32 and the length (mod 2**32) of what it holds, zlib with the big-endian Adler-32
            file.seek(end - (8 if self.gzip_format else 4))
            trailer = file.read(8)
        if self.gzip_format:
            crc, length = int.from_bytes(trailer[:4], "little"), int.from_bytes(trailer[4:], "little")
            return length == voxels.nbytes % 2**32 and crc == ZLIB.crc32(voxels)
        return int.from_bytes(trailer, "big") == ZLIB.adler32(voxels)


def _complex_values(path: str | os.PathLike, dtype: Any) -> ValueError:
    """The error of a complex-valued image (MR raw data): cast to float, its imaginary part had been dropped without
    a word, and NaN there escaped the checks of finite values."""
    return ValueError(
        f"{path}: holds complex values ({dtype}); the bundles take real-valued images: save its magnitude (or its "
        "real part) as a real-valued image."
    )


def _read_unwrapped(path: Path) -> _SeriesVolume | None:
    """A 3D NRRD/MHA/MHD file of a pixel type ITK's Python modules have no image for, read by SimpleITK; else ``None``.

    ITK's Python build has no int8 or int64 images, nor images of vectors (RGB, vector fields, a 1-element vector
    axis), and refuses such files with a template error; int64 is what ``SimpleITK.GetImageFromArray`` writes for
    numpy's default integers, so such labels are common. SimpleITK reads the same header with the same image IO, so
    the geometry is ITK's to the bit. The values are kept exactly: int8 as int16, int64 as int32 where they fit,
    else as float64 where that is exact; a single component is one channel.

    Raises:
        ValueError: 64-bit integers that no type ITKReader's callers take can hold exactly.
    """
    # here, not with the module: only these files need it, and its import cost every process about 0.2 s
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None  # ITK's reader says what is wrong with the header
    # the header's voxels against the machine's memory before ITK takes it (its "Failed to allocate memory" named no
    # file): the type and components of a voxel from an image of one voxel (a complex value is one component)
    vector = sitk.GetPixelIDValueAsString(reader.GetPixelID()).startswith("vector")
    extra = (reader.GetNumberOfComponents(),) if vector else ()
    one = sitk.GetArrayViewFromImage(sitk.Image([1] * reader.GetDimension(), reader.GetPixelID(), *extra))
    _check_memory(path, (*reversed(reader.GetSize()), *((one.size,) if one.size > 1 else ())), one.dtype)
    if reader.GetDimension() != 3 or reader.GetPixelID() in {getattr(sitk, f"sitk{n}") for n in _ITK_WRAPPED_PIXELS}:
        return None
    image = reader.Execute()
    volume = sitk.GetArrayFromImage(image)
    if np.iscomplexobj(volume):
        raise _complex_values(path, volume.dtype)
    if volume.dtype == np.int8:
        volume = volume.astype(np.int16)
    elif volume.dtype.itemsize == 8 and volume.dtype.kind in "iu" and volume.size:
        low, high = int(volume.min()), int(volume.max())
        if np.iinfo(np.int32).min <= low and high <= np.iinfo(np.int32).max:
            volume = volume.astype(np.int32)
        elif max(-low, high) <= 2**53:
            volume = volume.astype(np.float64)
        else:
            raise ValueError(
                f"{path}: holds 64-bit integers up to {max(-low, high)}, beyond 2**53: they cannot be read exactly. "
                "Save it with 32-bit integers (or floats) instead."
            )
    return _SeriesVolume(
        volume=volume,
        origin=np.asarray(image.GetOrigin(), float),
        spacing=np.asarray(image.GetSpacing(), float),
        direction=np.asarray(image.GetDirection(), float).reshape(3, 3),
        tags={key: image.GetMetaData(key) for key in image.GetMetaDataKeys()},
    )


def _series_volume(series: DicomSeries) -> _SeriesVolume | None:
    """A validated series of single-frame files, built from the headers already read.

    Geometry comes from the headers that ``validate_dicom_series`` checked: origin at the first slice along the
    normal, row and column directions from ImageOrientationPatient, the slice step from the first to the last
    position. ``None`` where ITK has to decode the pixels (see ``_stored_pixels``).
    """
    volume = _stored_pixels(series)
    if volume is None:
        return None
    volume = _rescale(volume, series.headers)
    _fill_padding(volume, series.headers)
    first = series.headers[0]
    iop = np.asarray(first.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    normal /= np.linalg.norm(normal)
    origin = np.asarray(first.ImagePositionPatient, float)
    last = np.asarray(series.headers[-1].ImagePositionPatient, float)
    step = float(np.dot(last - origin, normal)) / (len(series.headers) - 1)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    return _SeriesVolume(
        volume,
        origin,
        np.asarray([column_spacing, row_spacing, step]),
        np.column_stack([iop[:3], iop[3:], normal]),
        _dicom_tags(first),
    )


def _dicom_tags(header: Any) -> dict[str, str]:
    """The first slice's public text elements as ``"gggg|eeee"`` entries, the metadata ITK gives a series."""
    tags = {}
    for tag in header.keys():
        # pixel data and private tags first: touching a deferred element would read it from the file
        if tag.is_private or tag.group in (0x0002, 0x7FE0):
            continue
        element = header[tag]
        if element.VR in _BINARY_VRS:
            continue
        value = element.value
        # multiple values as DICOM writes them (and ITK reports them): separated by backslashes
        text = "\\".join(str(v) for v in value) if element.VM > 1 else "" if value is None else str(value)
        tags[f"{tag.group:04x}|{tag.element:04x}"] = text
    return tags


# nibabel's message for a file that ends before the voxels its header declares; the file object it names after it
# is nameless for a .nii.gz
_SHORT_READ = re.compile(r"Expected (\d+) bytes, got (\d+) bytes")


class _NiftiReader(NibabelReader):
    """MONAI's ``NibabelReader``, whose reading of a file cut off after its header names the file, and which checks
    the checksum of a ``.nii.gz``.

    nibabel decompresses a ``.nii.gz`` up to the last voxel and stops there, before the checksum at the end of the
    stream: a file damaged on its way (a flipped block of bytes) was read with other values, NaN among them,
    without a word. Here the stream is read to its end, which checks it, for no more decompression.
    """

    def _get_array_data(self, img: Any, filename: str) -> Any:
        if nib.is_proxy(img.dataobj):
            _check_nifti_size(filename, img.shape, img.get_data_dtype(), img.dataobj.offset)
        try:
            # a proxy of the file's voxels; an image reoriented by as_closest_canonical holds an array already
            if not self.to_gpu and str(filename).lower().endswith(".gz") and nib.is_proxy(img.dataobj):
                return _checked_gzip_data(img.dataobj, filename)
            return super()._get_array_data(img, filename)
        except COMPRESSED_DATA_ERRORS as error:
            raise _damaged_compressed(filename, error) from None
        except MemoryError:
            raise ValueError(
                f"{filename}: its {_voxels_text(img.shape, img.get_data_dtype(), memory=True)} do not fit in memory."
            ) from None
        except OSError as error:
            short = _SHORT_READ.search(str(error))
            if short is None:
                raise
            expected, read = short.groups()
            raise ValueError(
                f"{filename}: the image data is truncated: {read} of {expected} bytes "
                f"({_voxels_text(img.shape, img.get_data_dtype())})."
            ) from None


def _byte_count(shape: Sequence[int], dtype: Any) -> int:
    return math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize


def _voxels_text(shape: Sequence[int], dtype: Any, memory: bool = False) -> str:
    text = f"{' x '.join(str(n) for n in shape)} voxels of {np.dtype(dtype)}"
    return f"{text}, {_byte_count(shape, dtype) / 2**30:,.1f} GiB" if memory else text


def _physical_memory() -> int | None:
    """This machine's memory in bytes, where the system says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _check_memory(path: str | os.PathLike, shape: Sequence[int], dtype: Any) -> None:
    """Refuses voxels that a header declares and that no machine of this memory can hold, before any memory is
    taken for them: a header of a few bytes declaring 32767^3 voxels had failed with an empty ``MemoryError``."""
    memory = _physical_memory()
    if memory is not None and _byte_count(shape, dtype) > memory:
        raise ValueError(
            f"{path}: its header declares {_voxels_text(shape, dtype, memory=True)}, more than this machine's "
            f"{memory / 2**30:.3g} GiB of memory: a damaged header, or an image far larger than a scan."
        )


def _check_nifti_size(path: str | os.PathLike, shape: Sequence[int], dtype: Any, offset: int) -> None:
    """Refuses the voxels of a NIfTI header that an uncompressed file cannot hold, or no machine of this memory can,
    before any memory is taken for them (nibabel takes it all, then reads)."""
    if str(path).lower().endswith(".nii"):
        size = _byte_count(shape, dtype)
        stored = max(os.path.getsize(path) - int(offset), 0)
        if stored < size:
            raise ValueError(
                f"{path}: the image data is truncated: {stored} of {size} bytes ({_voxels_text(shape, dtype)})."
            )
    _check_memory(path, shape, dtype)


def _damaged_compressed(path: str | os.PathLike, error: BaseException) -> ValueError:
    """The error of a file whose compressed voxels are cut short or damaged (one of ``COMPRESSED_DATA_ERRORS``),
    naming it."""
    return ValueError(
        f"{path}: its compressed image data end early or are damaged ({error}); the file is cut short (an "
        "interrupted copy or download) or damaged."
    )


def _checked_gzip_data(proxy: Any, filename: str) -> np.ndarray:
    """The voxels of nibabel's ``proxy`` of a ``.nii.gz``, read from a stream that is then read to its end, where
    gzip compares the checksum of all it decompressed (``BadGzipFile`` when they differ)."""
    from nibabel.arrayproxy import ArrayProxy

    with GZIP.open(filename, "rb") as stream:
        spec = (proxy.shape, proxy.dtype, proxy.offset, proxy.slope, proxy.inter)
        data = np.asanyarray(ArrayProxy(stream, spec, order=proxy.order))
        while stream.read(1 << 20):  # bytes after the voxels (rare): read, not kept
            pass
    return data


class _ReadError:
    """A failure of ``MedicalImageReader.read``, raised again by ``get_data``.

    ``LoadImage`` given a reader catches any exception of ``read`` and then tries its other readers; ``ITKReader``
    would then read a refused folder anyway (merging series, ignoring gaps). Exceptions of ``get_data`` are not
    caught, so deferring the error there makes it reach the caller unchanged, naming the path.
    """

    def __init__(self, error: Exception) -> None:
        self.error = error


class MedicalImageReader(ImageReader):
    """Reads NIfTI, NRRD, MHA/MHD, a DICOM series folder or a single (multi-frame) DICOM file, with checks.

    Dispatch, by path:

    - ``.nii`` / ``.nii.gz``: loaded by nibabel and placed by nibabel's affine (the sform where the header has
      one), then converted by MONAI's ``NibabelReader``; MONAI's header correction, which puts the qform or the
      identity in place of an sform whose voxel sizes differ from pixdim, is not applied. A header in meters or
      microns (xyzt_units) is read in mm, as ITK reads it; a zero voxel size where pixdim places the voxels (no
      sform) is refused.
    - ``.nrrd`` / ``.nhdr`` / ``.mha`` / ``.mhd``: MONAI's ``ITKReader``.
    - ``.dcm`` / ``.dicom`` file (single slice or multi-frame): checked with pydicom, read by ``ITKReader``.
    - a folder: a DICOM series. Its files are grouped by SeriesInstanceUID (``split_dicom_series``); several
      series raise a ``ValueError`` listing them (UID, description, modality, number of files), they are never
      merged. The series is checked (``validate_dicom_series``) and its slices are stacked along the slice
      normal, geometry from the checked headers, metadata as ``ITKReader.get_data`` gives them (without loading
      ITK's modules, 0.7-0.8 s in each new process).
    - a series reference ``"<folder>::<SeriesInstanceUID>"`` (``series_reference``): that series of the folder.

    Errors (missing file, unsupported format, failed DICOM check, NIfTI voxels cut off) are raised by ``get_data``
    rather than ``read``, so that ``LoadImage`` cannot fall back to another of its readers and load a refused image
    anyway.

    Metadata are those of the MONAI reader used (``affine`` and ``original_affine`` in RAS, ``spatial_shape``,
    ``original_channel_dim``; ``LoadImage`` adds ``filename_or_obj``), so ``Orientationd``, ``Spacingd``,
    ``Invertd`` and ``SaveImaged`` restore the original geometry. Volumes read through ITK come in C order, the
    order ``LoadImage`` needs, copied in cache-sized blocks instead of by ``LoadImage``'s strided pass.

    In a bundle config: ``"reader": {"_target_": "MedicalImageReader"}`` (instance by short name) or
    ``"reader": "monai_unets.data.medical_io.MedicalImageReader"`` (class by dotted path).

    Args:
        missing_factor: a gap between DICOM slices larger than this many median spacings is reported as
            missing slices.
        spacing_tolerance: largest accepted relative spread ``(max - min) / median`` of DICOM slice gaps.
        nibabel_kwargs: arguments of ``NibabelReader``.
        itk_kwargs: arguments of ``ITKReader`` (``affine_lps_to_ras`` is kept ``True`` so all formats agree).

    Example::

        >>> from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd
        >>> load = Compose([
        ...     LoadImaged("image", reader=MedicalImageReader(), image_only=True),
        ...     EnsureChannelFirstd("image"),
        ...     Orientationd("image", axcodes="RAS", labels=None),
        ... ])
        >>> load({"image": "/data/ct_series_folder"})["image"].shape  # doctest: +SKIP
        torch.Size([1, 512, 512, 120])
    """

    def __init__(
        self,
        missing_factor: float = 1.5,
        spacing_tolerance: float = 0.01,
        nibabel_kwargs: dict | None = None,
        itk_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.missing_factor = missing_factor
        self.spacing_tolerance = spacing_tolerance
        # a volume stored with singleton time and component axes, (X, Y, Z, 1, 1), is that volume, as (X, Y, Z, 1)
        # already is; a 4D file of several volumes keeps its fourth axis (and is refused as channels by the checks)
        self.nibabel_reader = _NiftiReader(**{"squeeze_non_spatial_dims": True, **(nibabel_kwargs or {})})
        self.itk_kwargs = {**(itk_kwargs or {}), "affine_lps_to_ras": True}

    @functools.cached_property
    def itk_reader(self) -> ITKReader:
        # made on first use: NIfTI studies are read without importing ITK (seconds, and absent on some machines)
        return ITKReader(**self.itk_kwargs)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every one of ``filename`` is a supported file, a folder or a series reference.

        Args:
            filename: file name(s) to check.
        """
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        for name in names:
            path, uid = parse_series_reference(name)
            if not (
                uid is not None or Path(path).is_dir() or has_suffix(path, MEDICAL_SUFFIXES) or is_dicom_file(path)
            ):
                return False
        return bool(names)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs) -> Any:
        """Reads each path of ``data`` into a nibabel or ITK image (a list when several paths are given); a series of
        single-frame DICOM files whose pixels pydicom decodes becomes the reader's own volume with its geometry.

        Args:
            data: path(s) of images, DICOM folders or series references.
            kwargs: passed to ``nibabel.load`` or ``itk.imread``.

        Raises:
            FileNotFoundError: a path does not exist.
            ValueError: a format is not supported, or a DICOM check failed; the message names the path.
        """
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        images = []
        for name in names:
            try:
                images.append(self._read_one(name, **kwargs))
            except Exception as error:  # noqa: BLE001 - re-raised by get_data, see _ReadError
                images.append(_ReadError(error))
        return _ChannelImages(images, names) if len(names) > 1 else images[0]

    def _read_one(self, name: str | os.PathLike, **kwargs) -> Any:
        text, uid = parse_series_reference(name)
        path = Path(text)
        if uid is not None or path.is_dir():
            return self._read_series(path, uid, **kwargs)
        if not path.exists():
            raise FileNotFoundError(f"image {path} does not exist.")
        if path.is_file():
            _refuse_empty(path)
            _check_signature(path)
        if has_suffix(path, NIFTI_SUFFIXES):
            # nibabel's affine of the header as written (the sform where it has one). MONAI's reader "corrects" a
            # header whose pixdim differs from the sform's voxel sizes by putting the qform in the sform's place,
            # or the identity in place of a singular affine: outputs then lay elsewhere (95 mm on one test
            # header) than nibabel, viewers following the sform and our own qform/sform warning say
            _check_nifti_dims(path)
            with _nibabel_reports_held(path):
                try:
                    image = nib.load(str(path), **{**self.nibabel_reader.kwargs, **kwargs})
                except nib.spatialimages.HeaderDataError as error:  # e.g. an unknown datatype code
                    raise ValueError(f"{path}: the NIfTI header cannot be read: {error}.") from error
                _nifti_in_mm(image)
                _check_nifti_geometry(image, path)
            return image
        if is_dicom_file(path):
            return self._read_dicom_file(path, **kwargs)
        if has_suffix(path, ITK_SUFFIXES):
            compressed = _check_data_file(path)
            try:
                image = _read_unwrapped(path)
                if image is None:
                    if path.suffix.lower() in (".mha", ".mhd") and path.suffix != path.suffix.lower():
                        # ITK's MetaImage reader knows its files by a lower-case suffix only (PACS exports: .MHA)
                        kwargs = {"imageio": itk.MetaImageIO.New(), **kwargs}
                    with _ITK_LOCK:
                        image = self.itk_reader.read(str(path), **kwargs)
            except Exception:
                if compressed is not None:
                    compressed.check(None)  # a damaged stream is what to report, not ITK's failure on it
                raise
            if compressed is not None:
                compressed.check(None if isinstance(image, _SeriesVolume) else itk.array_view_from_image(image))
            return image
        if path.is_file():
            # a DICOM file named without a suffix is known by its content: one this account may not read is named
            # by that error (Permission denied), not as a file of another format
            with open(path, "rb"):
                pass
        raise ValueError(
            f"{path} is not a supported image: expected {', '.join(MEDICAL_SUFFIXES)}, a DICOM series folder "
            f"or a series reference '<folder>{SERIES_SEPARATOR}<SeriesInstanceUID>'."
        )

    def _read_dicom_file(self, path: Path, **kwargs) -> Any:
        """A single DICOM file, one slice or a multi-frame volume (its frames in order along the slice normal, with
        each frame's own rescale)."""
        header = check_single_dicom(path)
        order = _validate_multiframe(header, str(path), self.missing_factor, self.spacing_tolerance)
        with _frames_in_order(path, header, order) as (source, header):
            rescales = _frame_rescales(header)
            float_needed = rescales is not None or _is_monochrome1(header)
            if float_needed and "pixel_type" not in {**self.itk_reader.kwargs, **kwargs}:
                kwargs = {**kwargs, "pixel_type": itk.F}
            try:
                with _ITK_LOCK, _colours_without_rescale([str(source)], [header]) as copies:
                    image = self.itk_reader.read(copies[0], **kwargs)
            except RuntimeError as error:
                raise _undecodable([str(path)], [header], error) from error
            if rescales is not None:
                _set_frame_values(image, source, rescales)
            else:
                image = _undo_monochrome1(image, [header])
                _fill_padding(itk.array_view_from_image(image), [header])
        return _with_slice_thickness(image, header, path)

    def _read_series(self, folder: Path, uid: str | None, **kwargs) -> Any:
        series = select_dicom_series(folder, uid)
        validate_dicom_series(series, self.missing_factor, self.spacing_tolerance)
        files = series.files
        if len(files) == 1:
            # a folder of one file is read as that file: a multi-frame one then gets its frames' own rescales and
            # order, which ITK's reading of it gives it neither
            return self._read_dicom_file(Path(files[0]), **kwargs)
        image = _series_volume(series)
        if image is not None:
            return image
        # compressed or colour pixel data: ITK's GDCM decoders; the files are sorted along the normal, which is the
        # order ITK's series reader stacks them in
        headers = series.headers or [_dcmread(f, stop_before_pixels=True) for f in files]
        for path, header in zip(files, headers):
            _check_pixel_length(path, header)
        options = {**self.itk_reader.kwargs, **kwargs}
        # ITK gives the volume the pixel type of the first slice's rescale: the fractional values of slices with
        # another slope (per-slice slopes, as in MR) would be cut to integers; each slice's own rescale in float
        # (a colour series is read without its rescale, see _colours_without_rescale)
        float_needed = _is_greyscale(headers[0]) and len({_rescale_of(header) for header in headers}) > 1
        if (float_needed or any(map(_is_monochrome1, headers))) and "pixel_type" not in options:
            options["pixel_type"] = itk.F
        try:
            with _ITK_LOCK, _colours_without_rescale(files, headers) as copies:
                image = itk.imread(copies, **options)
        except RuntimeError as error:
            raise _undecodable(files, headers, error) from error
        image = _undo_monochrome1(image, headers)
        _fill_padding(itk.array_view_from_image(image), headers)
        # ITK's series reader gives the volume none of the DICOM tags that a single file and the series this reader
        # assembles itself carry (the checks tell a colour series by them)
        return _with_tags(image, _dicom_tags(headers[0]))

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Array and MONAI metadata of image(s) from ``read``, by the MONAI reader of their kind.

        Args:
            img: a nibabel or ITK image, or a list of them (stacked as channels by the MONAI reader).
        """
        images = img if isinstance(img, (list, tuple)) else [img]
        for image in images:
            if isinstance(image, _ReadError):
                raise image.error
        if isinstance(img, _SeriesVolume) and self._itk_layout_is_default():
            return img.array(), img.meta()
        if any(isinstance(image, _SeriesVolume) for image in images):
            images = [image.itk_image() if isinstance(image, _SeriesVolume) else image for image in images]
            img = images if isinstance(img, (list, tuple)) else images[0]
        is_nifti = [isinstance(i, nib.spatialimages.SpatialImage) for i in images]
        for image, nifti in zip(images, is_nifti):
            if nifti and image.get_data_dtype().kind == "c":
                raise _complex_values(image.get_filename(), image.get_data_dtype())
        if all(is_nifti):
            # the file names NibabelReader.read would have recorded (the images are loaded by _read_one)
            self.nibabel_reader.filenames = tuple(image.get_filename() for image in images)
            if isinstance(img, _ChannelImages):
                img = self._on_one_grid(img, [np.asarray(image.affine, np.float64) for image in img])
            array, meta = self.nibabel_reader.get_data(img)
            if array.dtype.names and len(images) == 1:
                # an RGB NIfTI stores its colours as the fields of one value per voxel, which torch cannot take:
                # its colours become channels, for the channel check of the bundle to judge
                array = structured_to_unstructured(array)
                meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = -1
                meta[VALUES_PER_VOXEL] = array.shape[-1]
            # a big-endian file's stored values keep their byte order, which torch cannot take (a pipeline that
            # loads without a dtype, as inference does, failed on them)
            if not array.dtype.isnative:
                array = array.astype(array.dtype.newbyteorder("="), order="K")
            # NIfTI stores volumes in Fortran order, as ITK's arrays come: LoadImage's one strided copy to C order
            # took 1.6 s of a 512 x 512 x 300 CT's 3.2 s
            return c_ordered(array), meta
        if not any(is_nifti):
            if isinstance(img, _ChannelImages):
                with _ITK_LOCK:
                    affines = [np.asarray(self.itk_reader._get_affine(image), np.float64) for image in img]
                img = self._on_one_grid(img, affines)
            with _ITK_LOCK:
                array, meta = self.itk_reader.get_data(img)
            components = images[0].GetNumberOfComponentsPerPixel()
            if components > 1 and len(images) == 1:
                # a colour DICOM (series, multi-frame or single file) or a vector NRRD/MHA read by ITK: its values
                # come as channels, as those of the files read without ITK do
                meta[VALUES_PER_VOXEL] = components
            return c_ordered(array), meta
        raise ValueError("cannot stack NIfTI images with images of other formats in one item; convert them first.")

    @staticmethod
    def _on_one_grid(images: _ChannelImages, affines: Sequence[np.ndarray]) -> list[Any]:
        """The images of one item's channels, each placed as the first where it lies within
        :data:`CHANNEL_AFFINE_TOLERANCE` of it (MONAI stacks them only where their affines are equal to 1e-8).

        Raises:
            ValueError: a channel's file lies farther from the first's, naming both and the distance.
        """
        shape = _spatial_shape(images[0])
        placed = [images[0]]
        for image, affine, name in zip(images[1:], affines[1:], images.names[1:]):
            if _spatial_shape(image) != shape or np.array_equal(affine, affines[0]):
                placed.append(image)  # another shape: MONAI's stacking says so
                continue
            distance = float(
                np.linalg.norm(grid_corners(affine, shape) - grid_corners(affines[0], shape), axis=1).max()
            )
            if distance > CHANNEL_AFFINE_TOLERANCE:
                raise ValueError(
                    f"{name} is placed up to {distance:.3g} mm away from {images.names[0]}, the "
                    "case's first channel file (affines differ); the files of one image's channels must lie on one "
                    "voxel grid: resample it onto the first's grid or fix its header."
                )
            placed.append(_placed_as(image, images[0]))
        return placed

    def _itk_layout_is_default(self) -> bool:
        # the array layout that _SeriesVolume.meta reproduces: ITKReader's defaults
        return self.itk_kwargs.get("channel_dim") is None and not self.itk_kwargs.get("reverse_indexing", False)


def _spatial_shape(image: Any) -> tuple[int, ...]:
    """The voxel grid's size of a nibabel image (its first three axes) or of an ITK image, in the index order of
    its affine."""
    if isinstance(image, nib.spatialimages.SpatialImage):
        return tuple(int(s) for s in image.shape[:3])
    return tuple(int(s) for s in image.GetLargestPossibleRegion().GetSize())


class _ChannelImages(list):
    """The images :meth:`MedicalImageReader.read` read from several paths (an item's channels), with the paths."""

    def __init__(self, images: Sequence[Any], names: Sequence[str | os.PathLike]) -> None:
        super().__init__(images)
        self.names = [str(name) for name in names]


def _placed_as(image: Any, first: Any) -> Any:
    """``image`` with the geometry of ``first``, which it lies within rounding of."""
    if isinstance(image, nib.spatialimages.SpatialImage):
        placed = type(image)(image.dataobj, first.affine, image.header)
        placed.set_filename(image.get_filename())
        return placed
    image.SetOrigin(first.GetOrigin())
    image.SetSpacing(first.GetSpacing())
    image.SetDirection(first.GetDirection())
    return image


# mm per NIfTI spatial unit (the low three bits of xyzt_units) that is not mm: 1 meter, 3 micron. Any other code,
# 0 (unknown) among them, is taken as mm, as ITK does
_NIFTI_UNIT_MM = {1: 1000.0, 3: 1e-3}
_NIFTI_MM = 2


def grid_corners(affine: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The world positions of the corner voxels of a grid of ``shape`` placed by ``affine``, one per row."""
    corners = np.array(list(product(*[(0, max(s - 1, 0)) for s in shape])), dtype=np.float64)
    return corners @ affine[: len(shape), : len(shape)].T + affine[: len(shape), -1]


#: farthest in mm the files of one image's channels may place a corner voxel apart, as a label from its image
#: (``CheckCased``'s ``affine_tolerance``): tools that write each channel round its header on their own
CHANNEL_AFFINE_TOLERANCE = 0.01


def _nifti_in_mm(image: Any) -> None:
    """Puts a NIfTI image whose header is in meters or microns into mm, in place: its sform, qform and pixdim are
    scaled, its spatial unit set to mm; the image's affine follows.

    nibabel, and MONAI with it, take a header's numbers as mm whatever its xyzt_units say, where ITK-based tools
    scale them: a CT stored in meters was resampled as if it were 1000 times smaller, one in microns as 1000 times
    larger. Images and labels are read through here alike, so plan, training, inference and evaluation agree.

    Args:
        image: a nibabel NIfTI image as loaded.
    """
    header = image.header
    units = int(header["xyzt_units"])
    factor = _NIFTI_UNIT_MM.get(units & 7)
    if factor is None:
        return
    scale = np.diag([factor, factor, factor, 1.0])
    # before pixdim is scaled: the qform is made of it
    sform = header.get_sform() if int(header["sform_code"]) else None
    qform = header.get_qform() if int(header["qform_code"]) else None
    zooms = header.get_zooms()
    # pixdim places the voxels of a header without forms, and is what readers report as the voxel size
    header.set_zooms(tuple(z * factor for z in zooms[:3]) + tuple(zooms[3:]))
    # the time unit, in the higher bits, stays
    header["xyzt_units"] = units - (units & 7) + _NIFTI_MM
    # without a code the header's own code stays, whatever its value
    if sform is not None:
        image.set_sform(scale @ sform)
    # also without a qform: the image's affine is then taken from the scaled header again
    image.set_qform(None if qform is None else scale @ qform)


def _check_nifti_dims(path: Path) -> None:
    """The dimensions of a NIfTI header as stored make an image: nibabel takes a dim[0] outside 1 to 7 for a sign of
    the other byte order and then reports a consequence ("vox offset 0 too low for single file nifti1"), read a
    dim[0] of 0 as an empty image, and failed on a negative dimension with "negative count"; none named the file.

    A file that is no NIfTI (or no gzip file), or whose sizeof_hdr is neither NIfTI-1's nor NIfTI-2's in either
    byte order, is left to nibabel, which says so.
    """
    try:
        with nib.openers.ImageOpener(str(path)) as stored:
            head = stored.read(540)
    except (zlib.error, EOFError) as error:  # damaged, or cut short, within the first block gzip decompresses
        raise _damaged_compressed(path, error) from None
    except OSError:
        return
    for order in "<>":
        size = int(np.frombuffer(head, f"{order}i4", 1)[0]) if len(head) >= 4 else 0
        if size in (348, 540) and len(head) < size:
            # nibabel had said it "cannot work out the file type"
            raise ValueError(
                f"{path}: the NIfTI header is cut short: {len(head)} of its {size} bytes; the file is cut short (an "
                "interrupted copy or download) or damaged."
            )
        if size == 348 and len(head) >= 348:
            dims = np.frombuffer(head, f"{order}i2", 8, 40)
        elif size == 540 and len(head) >= 540:
            dims = np.frombuffer(head, f"{order}i8", 8, 16)
        else:
            continue
        ndim = int(dims[0])
        if not 1 <= ndim <= 7:
            raise ValueError(
                f"{path}: the NIfTI header is damaged: dim[0], its number of dimensions, is {ndim}; it must be 1 to 7."
            )
        bad = [f"dim[{k}] = {int(d)}" for k, d in enumerate(dims[1 : ndim + 1], 1) if d < 1]
        if bad:
            raise ValueError(
                f"{path}: the NIfTI header is damaged: {', '.join(bad)}; every dimension must be at least 1."
            )
        return


def _check_nifti_geometry(image: Any, path: Path, tolerance: float = 1e-3) -> None:
    """A NIfTI's voxel-to-world affine can place its voxels; a qform and sform that disagree are pointed out.

    MONAI's reader replaces a singular affine (a zero voxel size or column) by the identity, which would give the
    outputs 1 mm voxels at the origin without a word. A zero voxel size in pixdim, which the qform (or, without
    any form, pixdim alone) scales the voxels by, is refused too: nibabel puts 1 mm in its place on loading.
    """
    header = image.header
    if int(header["sform_code"]) == 0:
        # the header as stored: the loaded one already holds nibabel's 1 in place of a 0
        with nib.openers.ImageOpener(str(path)) as stored:
            pixdim = type(header).from_fileobj(stored, check=False)["pixdim"]
        zero = [f"pixdim[{k}]" for k in range(1, min(int(header["dim"][0]), 3) + 1) if pixdim[k] == 0]
        if zero:
            raise ValueError(
                f"{path} has a voxel size of 0 ({', '.join(zero)} = 0) and no sform; its voxels cannot be placed in "
                "the world. Fix the header's pixdim."
            )
    affine = np.asarray(image.affine, float)
    linear = affine[:3, :3]
    finite = bool(np.all(np.isfinite(affine)))
    scale = float(np.abs(linear).max()) if finite else 0.0
    if not finite or scale == 0.0 or abs(float(np.linalg.det(linear))) < 1e-9 * scale**3:
        raise ValueError(
            f"{path} has a singular or non-finite voxel-to-world affine (rows {np.round(linear, 4).tolist()}); its "
            "voxels cannot be placed in the world. Fix the header's sform or qform (and pixdim)."
        )
    if int(header["sform_code"]) > 0 and int(header["qform_code"]) > 0:
        qform, sform = header.get_qform(), header.get_sform()
        # where the two put the volume's corners apart: nibabel and MONAI follow the sform, ITK the qform
        extent = [n - 1.0 for n in (tuple(image.shape[:3]) + (1, 1, 1))[:3]]
        corners = np.array([[i, j, k, 1.0] for i in (0, extent[0]) for j in (0, extent[1]) for k in (0, extent[2])])
        apart = float(np.abs(corners @ (sform - qform).T).max())
        if apart > tolerance:
            warnings.warn(
                f"{path}: its sform and qform place the volume up to {apart:.3g} mm apart; the outputs follow the "
                "sform (as nibabel and MONAI do), while ITK-based viewers show the qform.",
                stacklevel=2,
            )


def c_ordered(array: np.ndarray) -> np.ndarray:
    """``array`` in C order: a Fortran-ordered volume is copied block by block, other arrays are returned as they are.

    ITK gives an ``(x, y, z)`` volume as the transpose of its ``(z, y, x)`` buffer, and MONAI's ``LoadImage`` makes
    every array C-contiguous with one strided copy, whose reads of a CT jump a whole slice apart; copied in
    blocks (``_TRANSPOSE_BLOCK``) that stay in cache, the same values arrive 3x faster, and ``LoadImage`` then
    has nothing to copy. Of an integer volume (a label map, whose organ spans a part of it) only the values from
    the first to the last ``z`` slab that holds one other than 0 are copied, the slabs beyond being 0 (in Fortran
    order each slab is contiguous, so finding them reads the empty slabs once, and an image's first and last only).

    Args:
        array: e.g. the data of ``ITKReader.get_data``, or a label map's transpose on its way to a file.

    Example::

        >>> c_ordered(np.zeros((4, 3, 2)).T).flags.c_contiguous
        True
    """
    if array.ndim != 3 or array.flags.c_contiguous or not array.flags.f_contiguous:
        return array
    first, stop = 0, array.shape[2]
    if array.dtype.kind in "biu":
        while first < stop and not array[:, :, first].any():
            first += 1
        while stop > first and not array[:, :, stop - 1].any():
            stop -= 1
    whole = (first, stop) == (0, array.shape[2])
    out = (np.empty if whole else np.zeros)(array.shape, array.dtype)
    bx, by, bz = _TRANSPOSE_BLOCK
    for z in range(first, stop, bz):
        end = min(z + bz, stop)
        for x in range(0, array.shape[0], bx):
            for y in range(0, array.shape[1], by):
                out[x : x + bx, y : y + by, z:end] = array[x : x + bx, y : y + by, z:end]
    return out


def fortran_ordered(array: np.ndarray) -> np.ndarray:
    """A C-ordered 3D ``array`` in Fortran order (first axis fastest, as NIfTI stores it), copied block by block.

    The transposing copy of :func:`c_ordered`, the other way round; other arrays are returned as they are.

    Args:
        array: e.g. a label map about to be written to NIfTI.

    Example::

        >>> fortran_ordered(np.zeros((4, 3, 2))).flags.f_contiguous
        True
    """
    if array.ndim != 3 or array.flags.f_contiguous or not array.flags.c_contiguous:
        return array
    return c_ordered(array.T).T


def list_medical_cases(
    input_dir: str | os.PathLike,
    split_series: bool = False,
    suffixes: Sequence[str] = MEDICAL_SUFFIXES,
    output_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """The cases of an inference folder of 3D images: one per image file and one per DICOM series subfolder.

    Every file of ``input_dir`` with one of ``suffixes`` (NIfTI, NRRD, MHA/MHD, a single or multi-frame
    ``.dcm``), every DICOM image file without a suffix (``IM00001``: found by its content) and every subfolder of
    DICOM files (a series) becomes a case ``{"image": path}``, in sorted order; hidden entries are skipped. A
    subfolder without DICOM files that holds volume files or subfolders (a folder per patient: ``p1/image.nii.gz``)
    is listed the same way, its cases in its place. Two or more
    DICOM slices of one series directly in ``input_dir`` (a flat export, or a series folder given as the input
    folder) become one case, the series reference
    ``"<input_dir>::<SeriesInstanceUID>"``. A subfolder with several series stays one case
    (``MedicalImageReader`` then refuses it with a message listing the series) unless ``split_series`` is
    ``True``: then it becomes one case per series, whose image is the series reference
    ``"<folder>::<SeriesInstanceUID>"``. A subfolder whose headers cannot be read stays one case, so that loading
    it reports the problem for that case alone. DICOM objects that are no images (a DICOMDIR, a segmentation such
    as an earlier run's SEG, an RT structure set or dose, a report: by their SOP class) and other files (pipes,
    sockets and devices too) are skipped with a warning that names them, and so are links to folders within
    ``input_dir`` (listed where they lie), links to this folder, one above it or one listed already, and folders
    more than :data:`MAX_FOLDER_DEPTH` levels down. Paths keep the names they are listed under (a symbolic link to
    a file, or to a folder outside ``input_dir``, is not replaced by its target), so outputs are named after them.

    Args:
        input_dir: the folder to list.
        split_series: one case per series for subfolders that hold several series.
        suffixes: file name endings that count as images.
        output_dir: where the outputs go: skipped when it is a subfolder, refused when it is ``input_dir``.

    Returns:
        a list of case dictionaries with absolute paths.

    Raises:
        FileNotFoundError: ``input_dir`` does not exist or holds no image.
        ValueError: ``input_dir`` is ``output_dir``.

    Example::

        >>> list_medical_cases("/data/inbox", split_series=True)  # doctest: +SKIP
        [{'image': '/data/inbox/a.nii.gz'},
         {'image': '/data/inbox/study::1.2.3'}, {'image': '/data/inbox/study::1.2.4'}]
    """
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist or is not a folder.")
    if (folder / "dataset.json").is_file():
        warnings.warn(
            f"input folder {folder} holds a dataset.json: every volume in it and its subfolders (labels too) is taken "
            "for a study; to run the dataset's test list, give the folder as dataset_dir instead of input_dir.",
            stacklevel=2,
        )
    listing = _Listing(split_series, tuple(suffixes), output_dir, root=folder.resolve())
    cases = _list_folder(folder, listing, depth=0)
    if not cases:
        raise FileNotFoundError(f"input folder {folder} has no image ({', '.join(suffixes)}) and no DICOM subfolder.")
    _mark_split_series(cases, listing.series)
    return cases


def _mark_split_series(cases: list[dict], series: Mapping[str, tuple[str, frozenset[str]]]) -> None:
    """Marks the cases whose DICOM series (``series``: image -> SeriesInstanceUID and SOPInstanceUIDs) has other
    slices in another case's folder, with a :data:`LISTING_PROBLEM_KEY` that names the folders.

    A CD writer splits a long series over folders (``IMAGES/0001``, ``IMAGES/0002``): each folder alone is a
    regular stack, and its label map covered part of the volume, the run reporting success. Folders that hold the
    same slices (a copy of the series) are no split series.
    """
    images_of: dict[str, list[str]] = {}
    for case in cases:
        if case["image"] in series:
            images_of.setdefault(series[case["image"]][0], []).append(case["image"])
    for uid, images in images_of.items():
        if len({series[image][1] for image in images}) < 2:
            continue
        parts = ", ".join(f"{parse_series_reference(image)[0]} ({len(series[image][1])} slices)" for image in images)
        problem = (
            f"DICOM series {uid} has its slices in {len(images)} folders: {parts}; each folder alone is part of the "
            "volume. Copy the slices into one folder and give that."
        )
        for case in cases:
            if case["image"] in images:
                case[LISTING_PROBLEM_KEY] = problem


#: the most levels of folders below an input folder that are listed: a patient's studies lie a few levels down
#: (PATIENT/STUDY/SERIES), and a tree of a thousand levels had stopped the whole batch (Python's recursion limit)
MAX_FOLDER_DEPTH = 32


@dataclass
class _Listing:
    """What the folders of one ``list_medical_cases`` share."""

    split_series: bool
    suffixes: tuple[str, ...]
    output_dir: str | os.PathLike | None
    #: the input folder, resolved: links to folders within it are left for the folders they name
    root: Path
    #: each case that is one DICOM series, by its image -> its SeriesInstanceUID and SOPInstanceUIDs
    series: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    #: the folders listed so far, resolved
    listed: set[Path] = field(default_factory=set)


def _walked(folder: Path, root: Path) -> bool:
    """Whether the listing of ``root`` (resolved) reaches the resolved ``folder`` without links: it lies within
    ``root``, and in no hidden folder (a data versioning tool's ``.store/p1``, which a link ``p1`` shows)."""
    return root in folder.parents and not any(part.startswith(".") for part in folder.relative_to(root).parts)


def _list_folder(folder: Path, listing: _Listing, depth: int) -> list[dict]:
    """The cases of one folder of ``list_medical_cases``, ``depth`` levels below its input folder, its study
    subfolders' in their place; may be none."""
    split_series, suffixes, series = listing.split_series, listing.suffixes, listing.series
    outputs = output_folder_inside(folder, listing.output_dir)
    here = folder.resolve()
    listing.listed.add(here)
    cases: list[dict] = []
    loose_dicom: dict[str, list[tuple[str, Any]]] = {}  # SeriesInstanceUID -> the paths and headers of its slices
    skipped: list[str] = []
    not_images: list[str] = []
    special: list[str] = []
    earlier_runs: list[str] = []
    loops: list[str] = []
    inner_links: list[str] = []
    too_deep: list[str] = []
    hidden: list[str] = []
    lists_dicom = any(suffix in suffixes for suffix in DICOM_SUFFIXES)
    # read only where a subfolder is neither a set of studies nor a series: most folders have no header to parse
    detached = functools.cache(lambda: _detached_data_files(folder))
    data_folders: list[str] = []
    no_files: list[str] = []
    auxiliary: list[tuple[Path, str]] = []  # series folders of scouts, reports, screenshots..., and what they hold
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or (outputs is not None and path.resolve() == outputs):
            hidden.extend([path.name] if is_hidden_image(path, suffixes) else [])
            continue
        path = Path(os.path.abspath(path))
        if path.is_dir() and not _can_list(path):
            # a folder this account may not open (another group's data on a shared disk): its own case, which then
            # fails in reading saying so, where the checks below had stopped the whole batch
            cases.append({"image": str(path)})
        elif path.is_dir():
            if (target := path.resolve()) == here or target in here.parents:
                # a link back to this folder or one above it: followed, it listed every study again, ~40 times (to
                # the system's limit on nested links), and the studies around the input folder too
                loops.append(path.name)
            elif path.is_symlink() and _walked(target, listing.root):
                # listed where it lies: two sibling folders linking to each other had each listed the other's
                # studies, and their links', to that limit
                inner_links.append(path.name)
            elif target in listing.listed:
                # a folder outside linked in twice, or linking to itself further down
                loops.append(path.name)
            elif depth >= MAX_FOLDER_DEPTH:
                too_deep.append(path.name)
            elif (path / RUN_MARKER).is_file() or any(path.glob(RUN_PROGRESS_MARKER)):
                # an earlier run's outputs under another name than this run's output folder: label maps, no studies
                earlier_runs.append(path.name)
            elif not _holds_visible_file(path, MAX_FOLDER_DEPTH - depth):
                # an empty folder, or one of hidden files only: macOS's __MACOSX/ of AppleDouble ._ files
                no_files.append(path.name)
            elif _holds_studies(path, suffixes):
                # a folder per patient or per set (p1/image.nii.gz, imagesTs/...): its own studies; one without
                # any (the output folder's parent inside the input folder) adds none
                cases.extend(_list_folder(path, listing, depth + 1))
            elif _holds_only(path, detached()):
                # the voxels of the .nhdr/.mhd headers beside it (data/ct.raw): no series, and no failed case
                data_folders.append(path.name)
            elif (what := _auxiliary_series_folder(path)) is not None:
                auxiliary.append((path, what))
            else:
                # a series folder linked in twice is one case too
                listing.listed.add(target)
                cases.extend({"image": image} for image in series_cases(path, split_series, series))
        elif is_special_file(path):
            special.append(path.name)
        elif has_suffix(path, suffixes) or (lists_dicom and (is_dicom_file(path) or not _can_read(path))):
            # a file that cannot be read may be a DICOM study named without a suffix: its own case, failing in
            # reading, rather than skipped as no volume file with an exit status of 0
            if is_dicom_file(path):
                other, uid, header = _dicom_image_series(path)
                if other is not None:
                    # a DICOMDIR, report or segmentation beside the images (an earlier run's SEG copied back too)
                    not_images.append(f"{path.name} ({other})")
                    continue
                if uid is not None:
                    loose_dicom.setdefault(uid, []).append((str(path), header))
            cases.append({"image": str(path)})
        else:
            skipped.append(path.name)
    warn_skipped(folder, skipped, f"not a volume file: {', '.join(suffixes)}")
    warn_skipped(folder, not_images, "DICOM objects that are no images")
    warn_skipped(
        folder, earlier_runs, f"output folders of earlier runs, which hold a {RUN_MARKER} or {RUN_PROGRESS_MARKER}"
    )
    warn_skipped(folder, loops, "links to this folder, a folder above it or a folder listed already")
    warn_skipped(folder, inner_links, "links to folders within the input folder, listed where they lie")
    warn_skipped(folder, too_deep, f"folders more than {MAX_FOLDER_DEPTH} levels below the input folder")
    warn_skipped(folder, data_folders, "folders of the data files that headers beside them name")
    warn_skipped(folder, no_files, "folders without a file, hidden ones aside")
    warn_skipped(folder, special, SPECIAL_FILES)
    warn_skipped(folder, hidden, HIDDEN_IMAGES)
    if auxiliary and not cases:
        # alone, a folder is read as what it holds, and the reader says why it is no volume
        cases = [{"image": image} for path, _ in auxiliary for image in series_cases(path, split_series, series)]
    else:
        # the study's other series folders beside them: its volumes
        warn_skipped(folder, [f"{path.name} ({what})" for path, what in auxiliary], "series that are no volumes")
    # series of scouts or screenshots among the loose slices of a flat export: skipped beside the study's volumes,
    # as the reader skips them beside the slices of one series folder, where each had been a case that failed
    loose_auxiliary = _auxiliary_loose_series(loose_dicom)
    auxiliary_files = {path for uid in loose_auxiliary for path, _ in loose_dicom[uid]}
    if any(case["image"] not in auxiliary_files for case in cases):
        for uid in loose_auxiliary:
            del loose_dicom[uid]
        cases = [case for case in cases if case["image"] not in auxiliary_files]
        warn_skipped(folder, [f"{uid} ({what})" for uid, what in loose_auxiliary.items()], "series that are no volumes")
    # slices of one series lying directly in the folder (a flat export, or a series folder given as input_dir):
    # one case for the series, read from this folder, in place of one case per slice
    series_of = {path: uid for uid, members in loose_dicom.items() if len(members) > 1 for path, _ in members}
    if series_of:
        listed, cases, placed = cases, [], set()
        for case in listed:
            uid = series_of.get(case["image"])
            if uid is None:
                cases.append(case)
            elif uid not in placed:  # where the series' first slice was
                placed.add(uid)
                reference = series_reference(os.path.abspath(folder), uid)
                instances = (str(header.get("SOPInstanceUID", path)) for path, header in loose_dicom[uid])
                series[reference] = (uid, frozenset(instances))
                cases.append({"image": reference})
    return cases


def _holds_only(folder: Path, files: set[Path]) -> bool:
    """Whether every entry of ``folder`` (hidden ones aside; at least one) is among ``files`` (resolved paths)."""
    entries = [path.resolve() for path in folder.iterdir() if not path.name.startswith(".")]
    return bool(entries) and all(entry in files for entry in entries)


def _holds_visible_file(folder: Path, levels: int) -> bool:
    """Whether ``folder`` or a folder up to ``levels`` levels below it holds a file that is not hidden."""
    for top, dirs, files in os.walk(folder):
        if any(not name.startswith(".") for name in files):
            return True
        below = len(Path(top).relative_to(folder).parts)
        dirs[:] = [name for name in dirs if not name.startswith(".")] if below < levels else []
    return False


def _holds_studies(folder: Path, suffixes: Sequence[str]) -> bool:
    """Whether a subfolder of an input folder holds studies of its own (volume files, or subfolders) and no DICOM
    file but a DICOMDIR (a CD's index, copied with a patient's folder): then it is no DICOM series folder, and its
    studies are listed."""
    entries = [path for path in folder.iterdir() if not path.name.startswith(".")]
    files = [path for path in entries if path.is_file()]
    if any(is_dicom_file(path) for path in files if path.name.lower() not in HARMLESS_FILES):
        return False
    return any(has_suffix(path, suffixes) for path in files) or any(path.is_dir() for path in entries)


def _dicom_image_series(path: Path) -> tuple[str | None, str | None, Any]:
    """What a DICOM file of an input folder is: ``(None, SeriesInstanceUID, header)`` for an image (the UID ``None``
    unless it is a single-frame image), ``(kind, None, header)`` for an object that is no image (``_is_image``),
    e.g. ``"Segmentation Storage"``. The header holds the tags that tell these, and scouts and screenshots apart.

    Unreadable files count as images without a series (and header): the reader reports them when the case is loaded.
    """
    tags = [
        "SOPClassUID",
        "SeriesInstanceUID",
        "NumberOfFrames",
        "Rows",
        "Columns",
        "Modality",
        "ImageType",
        "PhotometricInterpretation",
        "SOPInstanceUID",
        "ImagePositionPatient",
        "ImageOrientationPatient",
    ]
    try:
        header = _dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except Exception:  # noqa: BLE001 - unreadable: the reader reports it when the case is loaded
        return None, None, None
    if not _is_image(header):
        return _object_kind(header), None, header
    if int(header.get("NumberOfFrames") or 1) > 1:
        return None, None, header
    uid = header.get("SeriesInstanceUID")
    return None, str(uid) if uid else None, header


def _auxiliary_loose_series(loose: Mapping[str, Sequence[tuple[str, Any]]]) -> dict[str, str]:
    """The series among ``loose`` (SeriesInstanceUID -> the paths and headers of its files) that are one of
    :data:`_AUXILIARY_SERIES` (localizers, screenshots, report pages), each with what it is."""
    kinds = {uid: _auxiliary_kind([header for _, header in members]) for uid, members in loose.items()}
    return {uid: kind for uid, kind in kinds.items() if kind is not None}


def _auxiliary_kind(headers: Sequence[Any]) -> str | None:
    """What a series of ``headers`` is where it is one of :data:`_AUXILIARY_SERIES` (``"localizer series"``, ...)."""
    return next((what[0] for is_auxiliary, what in _AUXILIARY_SERIES if is_auxiliary(headers)), None)


def _auxiliary_series_folder(folder: Path) -> str | None:
    """What a series folder of few files holds where it is no volume: DICOM objects that are no images (a dose
    report), or one of :data:`_AUXILIARY_SERIES` (localizers, a screenshot); ``None`` for any other folder.

    A study exported as one folder per series puts its scouts and dose pages in folders of their own, which the
    listing skips beside the study's volumes, as the reader skips them beside the slices of one folder. A volume's
    folder is told after the first of its images at two slice positions: its other files are not read here.
    """
    files = [path for path in folder.iterdir() if not path.name.startswith(".")]
    if not files or not all(path.is_file() for path in files):
        return None
    tags = [
        "SOPClassUID",
        "ImageType",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "Modality",
        "ImagePositionPatient",
        "ImageOrientationPatient",
    ]
    headers, images = [], []
    for path in files:
        if path.name.lower() in HARMLESS_FILES:
            continue
        try:
            header = _dcmread(path, stop_before_pixels=True, specific_tags=tags)
        except Exception:  # noqa: BLE001 - not DICOM, or unreadable: the reader reports it when the case is loaded
            return None
        headers.append(header)
        if _is_image(header):
            images.append(header)
            # bolus tracking runs to dozens of images, so no count of files tells it from a volume
            if not _may_be_auxiliary(images):
                return None
    if not images:
        kinds = sorted({_object_kind(header) for header in headers})
        return f"DICOM objects that are no images: {', '.join(kinds)}" if kinds else None
    return _auxiliary_kind(images)


def series_cases(
    folder: Path, split_series: bool, listed: dict[str, tuple[str, frozenset[str]]] | None = None
) -> list[str]:
    """The cases of a DICOM series folder: the folder, or with ``split_series`` one series reference per series
    where it holds several; ``listed``, where given, receives the SeriesInstanceUID and SOPInstanceUIDs of each."""
    if not split_series:
        return [str(folder)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reader warns again when the case is loaded
            series = split_dicom_series(folder)
    except (OSError, ValueError) as error:
        logger.warning("listing %s as one case: %s", folder, error)
        return [str(folder)]
    images = [str(folder)] if len(series) == 1 else [s.reference for s in series]
    for image, one in zip(images, series) if listed is not None else ():
        instances = (str(header.get("SOPInstanceUID", path)) for path, header in zip(one.files, one.headers or []))
        listed[image] = (one.series_uid, frozenset(instances))
    return images
