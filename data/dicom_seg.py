"""Write a predicted label map as a DICOM SEG object that references the DICOM image(s) it was predicted from.

The source is a folder of single-frame slices or one DICOM file: a single slice, or an enhanced multi-frame
image whose frames record their planes (per-frame functional groups). The label map is expected in the space
MONAI's DICOM readers (``ITKReader``, ``PydicomReader``) produce for that source, e.g. the output of ``Invertd``
+ ``AsDiscreted(argmax=True)``: a channel-first array ``(1, X, Y, Z)`` whose ``affine`` maps voxel indices to RAS
world coordinates. DICOM stores each slice (frame) as ``(rows, columns)`` in LPS coordinates, so the voxel that
belongs to each source pixel is found through the affine, not by assuming an axis order: with the usual readers
this amounts to ``frame[s][r, c] = label[c, r, s]`` for axial slices, but coronal, sagittal, oblique or reversed
slice orders are handled the same way. highdicom and pydicom are only needed when a SEG is written.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor

from .atomic import atomic_path
from .medical_io import ORIENTATION_TOLERANCE, c_ordered, check_single_dicom, frame_group, select_dicom_series

if TYPE_CHECKING:
    from pydicom import Dataset
    from pydicom.sr.coding import Code

__all__ = ["DicomSegError", "read_seg_source", "write_dicom_seg"]

# DICOM patient space is LPS, MONAI's reader affines are RAS: the two differ by flipping x and y.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
# How far (in voxels) a source pixel centre may sit from a label-map voxel centre and still count as the same
# point: header positions are written with a few decimals and affines may be float32, so exact equality is
# too strict, while a real mismatch (resampled, cropped or un-inverted map) is off by a sizeable fraction.
_GRID_TOLERANCE = 0.05
# Along the slice axis a series whose gaps vary a little (within the reader's spacing tolerance) puts slices off
# the regular grid of its volume; each still maps to one voxel slice while it lies within this fraction of one.
_SLICE_TOLERANCE = 0.25
# Label maps whose largest value is at most this have the values present found by one comparison each, below
# which that is faster than counting every value of the map
_FEW_LABELS = 8
# the longest text of a DICOM long string (LO): a segment label
_LONG_STRING = 64
# Without these a slice cannot be placed in space, so no frame of the SEG could be matched to it.
_GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
# The identifiers a SEG references its source by (type 1): nothing can stand in for them.
_REFERENCE_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID")
# Attributes highdicom copies from the source, and the value a missing one gets: empty for the patient and study
# attributes that DICOM allows to be empty (type 2), "OT" (other) for a missing Modality. Anonymised or exported
# series often drop them.
_DEFAULTS_WHEN_MISSING = {
    "PatientName": "",
    "PatientID": "",
    "PatientBirthDate": "",
    "PatientSex": "",
    "StudyDate": "",
    "StudyTime": "",
    "StudyID": "",
    "AccessionNumber": "",
    "ReferringPhysicianName": "",
    "Modality": "OT",
}
# DICOM's segmentation property types by category (PS3.16 CID 7191-7198), with the category's SNOMED CT code
# (value, meaning): pydicom 2 cannot look some of them up by keyword ("AnatomicalStructure" has two values there)
_CATEGORY_CIDS = {
    7191: ("85756007", "Tissue"),
    7192: ("91723000", "Anatomical Structure"),
    7193: ("260787004", "Physical object"),
    7194: ("49755003", "Morphologically Abnormal Structure"),
    7195: ("246464006", "Function"),
    7196: ("309825002", "Spatial and Relational Concept"),
    7197: ("91720002", "Body Substance"),
    7198: ("105590001", "Substance"),
}
# label names (lower case, without separators) whose DICOM property type goes by another keyword
_TERM_SYNONYMS = {
    "tumour": "Neoplasm",
    "tumor": "Neoplasm",
    "cancer": "Neoplasm",
    "oedema": "Edema",
    "haemorrhage": "Hemorrhage",
}


@dataclass(frozen=True)
class _Plane:
    """Where one source frame lies: the LPS position of its first pixel, its row and column direction cosines
    (ImageOrientationPatient) and its spacing between rows and between columns (PixelSpacing)."""

    position: np.ndarray
    orientation: np.ndarray
    spacing: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[:3], self.orientation[3:])


class DicomSegError(ValueError):
    """No DICOM SEG could be written for a case; the message names the source series and the reason.

    Raised by ``write_dicom_seg`` (and so by ``SaveDicomSeg(d)``) for label maps that do not fit the series and
    for source series a SEG cannot reference (missing identifiers or slice geometry). It is a ``ValueError``, so
    a per-case runner records it as that case's failure while the case's other outputs, written before, stay.

    Example::

        >>> try:
        ...     write_dicom_seg(np.zeros((4, 4, 2)), "/no/such/series", "seg.dcm", {1: "pancreas"})
        ... except ValueError as error:
        ...     print(type(error).__name__, error)
        DicomSegError no DICOM SEG written: source /no/such/series is neither a folder nor a file.
    """


def write_dicom_seg(
    label_map: NdarrayOrTensor,
    source: str | os.PathLike,
    output_path: str | os.PathLike,
    labels: Mapping[int, str],
    affine: NdarrayOrTensor | None = None,
    algorithm_name: str = "monai_unets",
    algorithm_version: str | None = None,
    property_category: Code | None = None,
    property_types: Mapping[int, Code] | None = None,
    series_description: str | None = None,
    series_number: int = 300,
    source_series_uid: str | None = None,
    source_headers: tuple[list[Dataset], list[Any]] | None = None,
) -> Path:
    """Save a label map predicted for a DICOM series or file as a BINARY DICOM SEG that references its source.

    Every label of ``labels`` becomes one segment named ``labels[value]``, predicted or not, with algorithm type
    AUTOMATIC and an algorithm identification naming the model. DICOM SEG requires segment numbers ``1..n``, so
    the labels are numbered in increasing order of their values: segment ``k`` is the ``k``-th label in every
    SEG written with the same ``labels``, and with labels ``1..n`` it is label ``k`` (read back as one label map,
    the values are those of ``label_map``). A label not predicted is a segment without frames. Each segment is
    coded as DICOM's segmentation property types list its name (CID 7191-7198: "pancreas" an Anatomical Structure
    "Pancreas", "tumour", "tumor" and "cancer" a Morphologically Abnormal Structure "Neoplasm", "lesion" a
    "Lesion", whatever the case and separators), else as SCT "Tissue"; ``property_types`` gives codes of one's own.
    Each frame references the source slice it lies on; empty frames are omitted. A multi-frame source gets one
    frame per source frame, each referencing its frame number.

    Args:
        label_map: class indices ``0..K``, shape ``(1, X, Y, Z)`` or ``(X, Y, Z)``, in the space MONAI's readers
            give the series (after ``Invertd`` when the pipeline resampled). A ``MetaTensor`` brings its own
            affine.
        source: what the map was predicted from: a folder of a single-frame DICOM series, or one DICOM file (a
            single slice, or an enhanced multi-frame image such as Enhanced CT/MR or Legacy Converted Enhanced,
            whose frames record their plane positions), alone or in its series folder.
        output_path: file to write the SEG to; parent folders are created. The file appears only once complete
            (written to a temporary file, then renamed).
        labels: name of each foreground label value, e.g. ``{1: "pancreas", 2: "tumour"}``; a name of 0
            (background) is left out.
        affine: voxel-to-RAS affine of ``label_map``; ``None`` takes the ``MetaTensor``'s affine or, for plain
            arrays, the affine MONAI's readers produce for the series.
        algorithm_name: model name recorded in the algorithm identification.
        algorithm_version: model version; ``None`` for the monai_unets version.
        property_category: segmented property category code of all segments; ``None``: per segment, the category
            whose DICOM list holds its property type, else SCT "Tissue".
        property_types: segmented property type code per label value; a label missing here gets the type DICOM
            lists under its name, else SCT "Tissue".
        series_description: description of the new SEG series; ``None``: "Segmentation of" the source series'
            description "by" ``algorithm_name``, shortened to DICOM's 64 characters, so that in a PACS the SEGs of a
            study's series (thin, thick, another phase) tell which series each segments.
        series_number: series number of the new SEG series.
        source_series_uid: SeriesInstanceUID to use when the ``source`` folder holds more than one series.
        source_headers: what :func:`read_seg_source` gave for ``source`` and ``source_series_uid``, when it was read
            ahead; ``None`` reads it here.

    Returns:
        The path the SEG was written to.

    Source series often lack optional attributes (anonymised or exported data): missing patient and study
    attributes of type 2 (PatientName, PatientID, StudyID, AccessionNumber, ReferringPhysicianName, ...) are
    written empty, a missing Modality as "OT", a missing SliceThickness as the spacing between slices. What a SEG
    cannot do without (the study, series, instance and frame-of-reference UIDs, the slice positions) raises
    ``DicomSegError``.

    Raises:
        DicomSegError: (a ``ValueError``) no SEG was written, and why: the folder holds no (or more than one)
            readable image series; a slice lacks an identifier or its geometry; the frames of a multi-frame
            file do not record their planes; the label map's shape or affine
            does not match the series; the map holds values that are not in ``labels``.

    Example::

        >>> from monai.transforms import LoadImage
        >>> image = LoadImage(ensure_channel_first=True)("ct_series/")  # doctest: +SKIP
        >>> # stands in for the bundle's prediction: class indices (1, X, Y, Z) on the series' grid, with its affine
        >>> pred = (image > 100).to(torch.uint8)  # doctest: +SKIP
        >>> write_dicom_seg(pred, "ct_series/", "out/ct_series_seg.dcm", {1: "pancreas", 2: "tumour"})  # doctest: +SKIP
        PosixPath('out/ct_series_seg.dcm')
    """
    source = Path(source)
    datasets, planes = source_headers if source_headers is not None else read_seg_source(source, source_series_uid)
    rows, columns = int(datasets[0].Rows), int(datasets[0].Columns)
    if affine is None:
        affine = getattr(label_map, "affine", None)
    if affine is None:
        affine = _reader_affine(planes, float(datasets[0].get("SliceThickness") or 1.0))
    values, voxel_affine = _as_label_volume(label_map, affine, source, planes, rows, columns)
    frames = _frames_on_source_slices(values, voxel_affine, planes, rows, columns, source)

    present = _present_values(frames)
    unknown = sorted(set(present) - {int(k) for k in labels})
    if unknown:
        raise DicomSegError(f"label map holds values {unknown} that have no name in labels={dict(labels)}.")
    # every label is a segment, numbered in the order of the label values, so that a segment number means the same
    # in every case's SEG (segment k is label k for labels 1..n); a label not predicted has a segment without frames
    # background is no segment, whether or not ``labels`` names it (as a dataset's list of labels does)
    segment_values = sorted(int(k) for k in labels if int(k) != 0)
    if not segment_values:
        raise DicomSegError("labels names no class but background: a DICOM SEG needs at least one named segment.")

    # imported here: highdicom takes 0.3 s to import, which a program that writes no SEG should not pay
    import highdicom as hd

    _cache_iod_lookups()

    from monai_unets import __version__

    version = algorithm_version or __version__
    if series_description is None:
        series_description = _seg_description(str(datasets[0].get("SeriesDescription") or ""), algorithm_name)
    names = [str(labels[value]) for value in segment_values]
    descriptions = _segment_descriptions(
        segment_values, names, algorithm_name, version, property_category, property_types
    )
    texts = names + [algorithm_name, series_description, version]
    character_set = _character_set(datasets[0], texts)
    segment_frames = _segment_numbers(frames, segment_values)
    try:
        seg = hd.seg.Segmentation(
            source_images=datasets,
            pixel_array=segment_frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="monai_unets",
            manufacturer_model_name=algorithm_name,
            # the software of the manufacturer named above; the model's own version is the algorithm's
            software_versions=__version__,
            device_serial_number="0",
            series_description=series_description,
            # an all-empty SEG must keep its frames; saying so up front spares highdicom's warning
            omit_empty_frames=bool(present),
            **({"specific_character_set": character_set} if _takes_character_set() else {}),
        )
        if character_set is not None and not _takes_character_set():
            seg.SpecificCharacterSet = character_set
        # type 2 in the Content Identification macro: present, empty where no person made the content; highdicom
        # writes it only when given a name, and validators flagged every SEG
        seg.setdefault("ContentCreatorName", "")
    except (AttributeError, KeyError, TypeError, ValueError) as error:  # a source header highdicom cannot use
        raise DicomSegError(
            f"no DICOM SEG written for {source}: its headers do not allow one ({type(error).__name__}: {error})."
        ) from error
    output_path = Path(output_path)
    with atomic_path(output_path) as temporary:
        seg.save_as(temporary)
    return output_path


def _seg_description(source: str, algorithm_name: str) -> str:
    """The description of a SEG series: what it segments and by what, within a long string's 64 characters."""
    source = source.strip()
    if not source:
        return f"Segmentation by {algorithm_name}"[:_LONG_STRING]
    described = f"Segmentation of {source} by {algorithm_name}"
    if len(described) <= _LONG_STRING:
        return described
    # the source series is what tells the SEGs of a study apart (the model is named in the segments): a long model
    # name had cut 'AX 1.25mm ARTERIAL' to 'AX 1....'
    alone = f"Segmentation of {source}"
    return alone if len(alone) <= _LONG_STRING else alone[: _LONG_STRING - 3] + "..."


def _present_values(frames: np.ndarray) -> list[int]:
    """The non-zero values of a label map, in increasing order."""
    # counting small non-negative integers is much faster than np.unique's sort of a whole CT
    top = int(frames.max()) if frames.size and frames.dtype in (np.uint8, np.uint16) else None
    if top is not None and top <= _FEW_LABELS:
        # the maximum is present; each value below it takes one vectorised comparison (on a 512 x 512 x 300 map of
        # 2 classes 0.015 s, against 0.16 s to count every value)
        found = [value for value in range(1, top) if (frames == value).any()] + [top]
    elif frames.dtype == np.uint8:
        # torch counts uint8 as it is, where np.bincount first copies it to 8-byte integers (25x slower on a
        # 512 x 512 x 300 map); torch has no uint16 bincount
        found = torch.bincount(torch.from_numpy(frames).ravel()).nonzero().ravel().tolist()
    elif frames.dtype == np.uint16:
        found = np.flatnonzero(np.bincount(frames.ravel()))
    else:
        found = np.unique(frames)
    return [int(v) for v in found if v != 0]


def _segment_descriptions(
    segment_values: Sequence[int],
    names: Sequence[str],
    algorithm_name: str,
    version: str,
    property_category: Code | None,
    property_types: Mapping[int, Code] | None,
) -> list[Any]:
    """One highdicom segment description per label value, numbered 1..n in the order of ``segment_values``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=version
    )
    types = property_types or {}
    descriptions = []
    for number, (value, name) in enumerate(zip(segment_values, names), start=1):
        category, kind = _segment_terms(name, types.get(value))
        description = hd.seg.SegmentDescription(
            segment_number=number,
            # a label is a long string (LO) of at most 64 characters; a longer name is whole in the description
            segment_label=name[:_LONG_STRING],
            segmented_property_category=property_category or category,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        if len(name) > _LONG_STRING:
            description.SegmentDescription = name
        descriptions.append(description)
    return descriptions


def _segment_numbers(frames: np.ndarray, segment_values: Sequence[int]) -> np.ndarray:
    """The frames as a label map of segment numbers (1..n, in the order of ``segment_values``): highdicom then
    checks it with one max() instead of building and summing a mask per segment over the whole series."""
    if list(segment_values) == list(range(1, len(segment_values) + 1)) and frames.dtype in (np.uint8, np.uint16):
        # labels 1..n: the values are the segment numbers already; renumbering a CT's frames takes 0.08 s
        return frames
    numbering = np.zeros(max(segment_values) + 1, dtype=np.uint8 if len(segment_values) < 256 else np.uint16)
    numbering[list(segment_values)] = np.arange(1, len(segment_values) + 1)
    return numbering[frames]


def _character_set(source: Dataset, texts: Sequence[str] = ()) -> str | Sequence[str] | None:
    """The SEG's SpecificCharacterSet: the source's where highdicom lists it and it holds ``texts`` (what the SEG
    writes of its own: segment labels, names), else UTF-8 (ISO_IR 192), which holds the text of every character set.

    highdicom copies the source's value and refuses one it does not list, such as the Japanese and Korean code
    extensions written with an empty first value (``\\ISO 2022 IR 87``, as DICOM's own examples write them) or
    ``ISO_IR 6``: every study of such a site had no SEG. A class named "Tumör" for a source without a character set
    (ASCII) had been written in another encoding than the SEG declared. The texts the SEG copies are decoded from
    the source's character set either way.
    """
    import highdicom as hd
    from pydicom.charset import python_encoding

    value = source.get("SpecificCharacterSet")
    values = [value] if isinstance(value, str) else list(value or [])
    # highdicom before 0.28 lists none, and takes any
    listed = getattr(hd, "SpecificCharacterSetValues", None)
    if listed is not None and not all(v in {member.value for member in listed} for v in values):
        return "ISO_IR 192"
    if all(text.isascii() for text in texts):
        return value
    # one character set, whose Python codec holds the texts (code extensions switch sets: UTF-8 instead)
    codec = python_encoding.get(values[0]) if len(values) == 1 else None
    try:
        for text in texts:
            text.encode(codec or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "ISO_IR 192"
    return value


@functools.cache
def _takes_character_set() -> bool:
    """Whether this highdicom's SOP classes take ``specific_character_set`` (from 0.28; earlier ones set none)."""
    import highdicom as hd

    return "specific_character_set" in inspect.signature(hd.base.SOPClass.__init__).parameters


def _segment_terms(name: str, kind: Code | None) -> tuple[Code, Code]:
    """The segmented property category and type of a segment named ``name``: ``kind`` (when given) or the type
    DICOM's segmentation property types list under that name, in the category whose list holds it; SCT "Tissue"
    where DICOM lists neither.

    Names match the terms' keywords whatever their case and separators ("Pancreas", "left kidney" and
    "left_kidney" match ``LeftKidney``); "tumour", "tumor" and "cancer" are a "Neoplasm".
    """
    from pydicom.sr.coding import Code

    words = [word for word in re.split(r"[^0-9A-Za-z]+", name) if word]
    keyword = _TERM_SYNONYMS.get("".join(words).lower(), "".join(words)).lower()
    for cid, (value, meaning) in _CATEGORY_CIDS.items():
        terms = _property_types(cid)
        if kind is not None and any(kind == code for code in terms.values()) or kind is None and keyword in terms:
            return Code(value, "SCT", meaning), kind or terms[keyword]
    value, meaning = _CATEGORY_CIDS[7191]
    tissue = Code(value, "SCT", meaning)
    return tissue, kind or tissue


@functools.cache
def _property_types(cid: int) -> dict[str, Code]:
    """The codes of a DICOM context group by lower-case keyword; empty where this pydicom does not know it."""
    from pydicom.sr.codedict import codes

    collection = getattr(codes, f"cid{cid}", None)
    terms = {}
    for keyword in dir(collection) if collection is not None else ():
        # pydicom 2 lists a few keywords of a group that it then cannot look up: those are left out, not the group
        code = getattr(collection, keyword, None) if keyword[:1].isupper() else None
        if code is not None:
            terms[keyword.lower()] = code
    return terms


@functools.cache
def _cache_iod_lookups() -> None:
    """Keep highdicom's answers to "does this IOD have this attribute?" per attribute and SOP class.

    highdicom asks whether each source image is a multi-frame one by scanning the module tables of its IOD, once
    per image: 0.27 s of a 300-slice CT's SEG, half of it. The answer depends on the attribute and the SOP class
    only (the tables are the standard's, fixed in the package), so each is computed once. A highdicom without that
    internal function is left as it is.
    """
    try:
        from highdicom import _standard_utils
    except ImportError:  # highdicom before 0.28
        return
    lookup = getattr(_standard_utils, "is_attribute_in_iod", None)
    if lookup is None:
        return
    cached = functools.lru_cache(maxsize=None)(lookup)

    @functools.wraps(lookup)
    def is_attribute_in_iod(
        attribute: str, sop_class_uid: str, exclude_path_elements: Sequence[str] | None = None
    ) -> bool:
        excluded = None if exclude_path_elements is None else tuple(exclude_path_elements)
        return cached(attribute, str(sop_class_uid), excluded)

    is_attribute_in_iod.cache_info = cached.cache_info  # type: ignore[attr-defined]
    _standard_utils.is_attribute_in_iod = is_attribute_in_iod


def read_seg_source(source: str | os.PathLike, source_series_uid: str | None = None) -> tuple[list[Dataset], list[Any]]:
    """The headers a SEG of ``source`` is built from, checked, and the plane of each of its slices (frames).

    The part of :func:`write_dicom_seg` that needs no label map: about half of its time for a 300-slice series,
    which a caller can spend beforehand, beside other work (``SaveDicomSegd.prepare``).

    Args:
        source: a DICOM series folder or a single DICOM file, as ``write_dicom_seg`` takes it.
        source_series_uid: the series to take when the folder holds several.

    Raises:
        DicomSegError: the source cannot be referenced by a SEG, and why.

    Example::

        >>> headers = read_seg_source("ct_series/")  # doctest: +SKIP
        >>> labels = {1: "pancreas"}
        >>> write_dicom_seg(pred, "ct_series/", "out/ct_seg.dcm", labels, source_headers=headers)  # doctest: +SKIP
        PosixPath('out/ct_seg.dcm')
    """
    source = Path(source)
    if source.is_dir():
        return _read_series(source, source_series_uid)
    if source.is_file():
        return _read_file(source)
    raise DicomSegError(f"no DICOM SEG written: source {source} is neither a folder nor a file.")


def _read_series(folder: Path, series_uid: str | None) -> tuple[list[Dataset], list[_Plane]]:
    """Headers of the single-frame slices of the series in ``folder``, sorted along the slice normal, and their
    planes; for a series that is one multi-frame file, ``_read_file``'s header and frame planes.

    The series is found as ``MedicalImageReader`` finds it (``select_dicom_series``), so the SEG references
    exactly the slices the label map was predicted from. Pixel data is not read: highdicom only needs the
    metadata of the source images.
    """
    try:
        # the reader warned of the files it skipped when it read the series (a localizer, a SEG): once is enough
        series = select_dicom_series(folder, series_uid, warn=False)
    except (OSError, ValueError) as error:
        raise DicomSegError(f"no DICOM SEG written for {folder}: {error}") from error
    if len(series.files) == 1 and int(series.headers[0].get("NumberOfFrames") or 1) > 1:
        # an enhanced image alone in its series folder, as exports store it: its frames are the slices
        return _read_file(Path(series.files[0]))
    datasets = list(series.headers)
    where = f"the series {series.series_uid} in {folder}"
    missing_geometry = sorted({tag for ds in datasets for tag in _GEOMETRY_TAGS if ds.get(tag) is None})
    if missing_geometry:
        raise DicomSegError(
            f"no DICOM SEG written for {where}: its slices lack {', '.join(missing_geometry)}, so the "
            "segmentation cannot be placed on them."
        )
    _check_references(datasets, where)
    first = datasets[0]
    for ds in datasets[1:]:
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise DicomSegError(f"no DICOM SEG written: the slices of {where} differ in size.")
    offsets = _plane_offsets([_plane_of(ds) for ds in datasets], where, "slices")
    for ds in datasets[1:]:
        # within the reader's tolerance the volume has the first slice's orientation; highdicom wants one shared
        # value (these are header copies read for the SEG: the source files are not changed)
        ds.ImageOrientationPatient = first.ImageOrientationPatient
    _fill_optional_attributes(datasets, offsets)
    return datasets, [_plane_of(ds) for ds in datasets]


def _read_file(path: Path) -> tuple[list[Dataset], list[_Plane]]:
    """The header of a single DICOM file and the plane of each of its frames.

    A single-frame file is a series of one slice. A multi-frame file must record each frame's plane in its
    functional groups (enhanced images); older multi-frame objects (secondary capture, ultrasound)
    state no frame positions a SEG frame could be placed on.
    """
    try:
        header = check_single_dicom(path)
    except ValueError as error:
        raise DicomSegError(f"no DICOM SEG written: {error}") from error
    where = f"the DICOM file {path}"
    frames = int(header.get("NumberOfFrames") or 1)
    if "PerFrameFunctionalGroupsSequence" not in header:
        if frames > 1:
            raise DicomSegError(
                f"no DICOM SEG written for {where}: its {frames} frames do not record their plane positions "
                "(no per-frame functional groups), so the segmentation cannot be placed on them."
            )
        missing = [tag for tag in _GEOMETRY_TAGS if header.get(tag) is None]
        if missing:
            raise DicomSegError(
                f"no DICOM SEG written for {where}: it lacks {', '.join(missing)}, so the segmentation cannot be "
                "placed on it."
            )
        planes = [_plane_of(header)]
    else:
        planes = _planes_of_frames(header, frames, where)
        _share_frame_geometry(header)
    _check_references([header], where)
    offsets = _plane_offsets(planes, where, "frames")
    _fill_optional_attributes([header], offsets)
    return [header], planes


def _planes_of_frames(header: Dataset, frames: int, where: str) -> list[_Plane]:
    """Each frame's plane from its per-frame functional groups, or the shared ones where all frames agree."""
    per_frame = header.PerFrameFunctionalGroupsSequence
    if len(per_frame) != frames:
        raise DicomSegError(
            f"no DICOM SEG written for {where}: it has {len(per_frame)} per-frame functional groups for {frames} "
            "frames."
        )
    groups = {
        "PlanePositionSequence": "ImagePositionPatient",
        "PlaneOrientationSequence": "ImageOrientationPatient",
        "PixelMeasuresSequence": "PixelSpacing",
    }
    planes = []
    for number, item in enumerate(per_frame, start=1):
        values = {}
        for group, keyword in groups.items():
            holder = frame_group(header, item, group)
            value = holder.get(keyword) if holder is not None else None
            if value is None:
                raise DicomSegError(
                    f"no DICOM SEG written for {where}: frame {number} has no {keyword} ({group}), so the "
                    "segmentation cannot be placed on it."
                )
            values[keyword] = _floats(value)
        planes.append(_Plane(values["ImagePositionPatient"], values["ImageOrientationPatient"], values["PixelSpacing"]))
    return planes


def _share_frame_geometry(header: Dataset) -> None:
    """Puts the first frame's orientation and pixel measures into the shared functional groups where only the
    frames hold them: all frames agree (checked by ``_plane_offsets``), and highdicom reads them from the shared
    groups only (a header copy read for the SEG: the source file is not changed)."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    if not header.get("SharedFunctionalGroupsSequence"):
        header.SharedFunctionalGroupsSequence = DicomSequence([Dataset()])
    shared = header.SharedFunctionalGroupsSequence[0]
    first = header.PerFrameFunctionalGroupsSequence[0]
    for group in ("PlaneOrientationSequence", "PixelMeasuresSequence"):
        if group not in shared:
            setattr(shared, group, first[group].value)


def _plane_of(ds: Dataset) -> _Plane:
    return _Plane(_floats(ds.ImagePositionPatient), _floats(ds.ImageOrientationPatient), _floats(ds.PixelSpacing))


def _check_references(datasets: Sequence[Dataset], where: str) -> None:
    missing_ids = sorted({tag for ds in datasets for tag in _REFERENCE_TAGS if not ds.get(tag)})
    if missing_ids:
        raise DicomSegError(
            f"no DICOM SEG written for {where}: its slices lack {', '.join(missing_ids)}, which a DICOM SEG "
            "must reference; the other outputs of the case are not affected."
        )


def _plane_offsets(planes: Sequence[_Plane], where: str, what: str) -> list[float]:
    """Positions of the planes along the first one's normal; they must share its orientation and pixel spacing,
    and not repeat."""
    first = planes[0]
    for plane in planes[1:]:
        if not np.allclose(plane.orientation, first.orientation, atol=ORIENTATION_TOLERANCE):
            raise DicomSegError(f"no DICOM SEG written: the {what} of {where} differ in orientation.")
        if not np.allclose(plane.spacing, first.spacing, rtol=1e-4):
            raise DicomSegError(f"no DICOM SEG written: the {what} of {where} differ in pixel spacing.")
    offsets = [float(plane.position @ first.normal) for plane in planes]
    if np.any(np.isclose(np.diff(offsets), 0.0, atol=1e-3)):
        raise DicomSegError(f"no DICOM SEG written: {where} has several {what} at one position (several volumes?).")
    return offsets


def _fill_optional_attributes(datasets: Sequence[Dataset], offsets: Sequence[float]) -> None:
    """Gives the headers the attributes highdicom copies into the SEG, where the source left them out.

    Patient and study attributes of type 2 may be present but empty in DICOM, which is what the SEG then says; a
    missing Modality becomes "OT" (other), a missing SliceThickness the spacing between slices (the thickness of
    one label-map voxel), in the header and in an enhanced image's shared Pixel Measures alike.
    """
    step = float(np.median(np.abs(np.diff(offsets)))) if len(offsets) > 1 else 1.0
    for ds in datasets:
        for keyword, value in _DEFAULTS_WHEN_MISSING.items():
            if keyword not in ds:
                setattr(ds, keyword, value)
        if ds.get("SliceThickness") in (None, ""):
            ds.SliceThickness = round(step, 6)
        # one slice has no neighbour to measure the step to: highdicom then wrote 1 mm, where the reader (and so the
        # NIfTI of the same prediction) takes the slice's thickness
        if len(offsets) == 1 and "SharedFunctionalGroupsSequence" not in ds and "SpacingBetweenSlices" not in ds:
            ds.SpacingBetweenSlices = ds.SliceThickness
        # highdicom copies an enhanced image's shared Pixel Measures into the SEG, where a SEG placed in a frame of
        # reference must have SliceThickness: without it the SEG cannot be read back
        for shared in ds.get("SharedFunctionalGroupsSequence") or []:
            for measures in shared.get("PixelMeasuresSequence") or []:
                if measures.get("SliceThickness") in (None, ""):
                    measures.SliceThickness = ds.SliceThickness


def _floats(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([float(v) for v in values], dtype=np.float64)


def _reader_affine(planes: Sequence[_Plane], thickness: float) -> np.ndarray:
    """Voxel-to-RAS affine of the ``(columns, rows, slices)`` array MONAI's readers build from sorted slices.

    A single plane stands for ``thickness`` mm along its normal.
    """
    first = planes[0]
    iop = first.orientation
    row_spacing, col_spacing = first.spacing
    origin = first.position
    if len(planes) > 1:
        step = (planes[-1].position - origin) / (len(planes) - 1)
    else:
        step = first.normal * thickness
    affine = np.eye(4)
    affine[:3, 0] = _LPS_TO_RAS @ iop[:3] * col_spacing
    affine[:3, 1] = _LPS_TO_RAS @ iop[3:] * row_spacing
    affine[:3, 2] = _LPS_TO_RAS @ step
    affine[:3, 3] = _LPS_TO_RAS @ origin
    return affine


def _as_label_volume(
    label_map: NdarrayOrTensor,
    affine: NdarrayOrTensor,
    source: Path,
    planes: Sequence[_Plane],
    rows: int,
    columns: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Spatial ``(X, Y, Z)`` integer array of ``label_map`` and its voxel-to-RAS affine as float64."""
    if isinstance(label_map, torch.Tensor):
        label_map = label_map.detach().cpu().numpy()
    values = np.asarray(label_map)
    if values.ndim == 4:
        if values.shape[0] != 1:
            raise DicomSegError(
                f"expected a label map with one channel of class indices, got shape {values.shape}; "
                "apply AsDiscreted(argmax=True) first."
            )
        values = values[0]
    series_shape = (len(planes), rows, columns)
    if values.ndim != 3 or sorted(values.shape) != sorted(series_shape):
        raise DicomSegError(
            f"label map spatial shape {tuple(values.shape)} does not match the source {source}: "
            f"{series_shape[0]} slices of {series_shape[1]} rows x {series_shape[2]} columns, i.e. "
            f"{(series_shape[2], series_shape[1], series_shape[0])} as MONAI loads it. "
            "Was the prediction inverted to the original image space (Invertd)?"
        )
    not_indices = "label map must hold non-negative integer class indices (apply AsDiscreted(argmax=True))."
    if values.dtype == np.bool_:
        values = values.astype(np.uint8)
    elif np.issubdtype(values.dtype, np.integer):
        # integer maps (the usual argmax output) need no rounding check, and keep their compact dtype
        if np.issubdtype(values.dtype, np.signedinteger) and values.size and values.min() < 0:
            raise DicomSegError(not_indices)
    else:
        if not np.allclose(values, np.round(values)) or values.min() < 0:
            raise DicomSegError(not_indices)
        top = float(values.max()) if values.size else 0.0
        values = np.round(values).astype(np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.int64)
    voxel_affine = np.asarray(
        affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64
    )
    return values, voxel_affine


def _frames_on_source_slices(
    values: np.ndarray, affine: np.ndarray, planes: Sequence[_Plane], rows: int, cols: int, source: Path
) -> np.ndarray:
    """Sample the label map at every source pixel centre: ``(slices, rows, columns)`` in source-slice order.

    For each slice the RAS position of pixel (0, 0) and the steps of one row / one column are taken to voxel
    indices through the inverse affine. They must land on voxel centres, one row and one column step must each
    move along a single voxel axis, so the map holds exactly the source grid (in any axis order or direction).
    """
    to_voxel = np.linalg.inv(affine)
    linear, offset = to_voxel[:3, :3], to_voxel[:3, 3]
    mismatch = (
        f"the label map's affine does not place its voxels on the pixels of the series in {source} "
        f"(label map shape {tuple(values.shape)}); was the prediction inverted to the original image space?"
    )
    used_slices = set()
    # the part of the map each frame is, and whether it is transposed; copied once every slice is checked
    parts: list[tuple[tuple, bool]] = []
    for plane in planes:
        iop = plane.orientation
        row_spacing, col_spacing = plane.spacing
        start = linear @ (_LPS_TO_RAS @ plane.position) + offset
        # the column index moves along the first direction cosine, the row index along the second
        col_step = linear @ (_LPS_TO_RAS @ iop[:3]) * col_spacing
        row_step = linear @ (_LPS_TO_RAS @ iop[3:]) * row_spacing
        for vec in (col_step, row_step):
            if not np.allclose(vec, np.round(vec), atol=_GRID_TOLERANCE):
                raise DicomSegError(mismatch)
        col_step, row_step = (np.round(v).astype(np.int64) for v in (col_step, row_step))
        col_axis, row_axis = np.flatnonzero(col_step), np.flatnonzero(row_step)
        if (
            len(col_axis) != 1
            or len(row_axis) != 1
            or col_axis[0] == row_axis[0]
            or abs(col_step[col_axis[0]]) != 1
            or abs(row_step[row_axis[0]]) != 1
        ):
            raise DicomSegError(mismatch)
        slice_axis = 3 - int(col_axis[0]) - int(row_axis[0])
        tolerance = np.full(3, _GRID_TOLERANCE)
        tolerance[slice_axis] = _SLICE_TOLERANCE
        if np.any(np.abs(start - np.round(start)) > tolerance):
            raise DicomSegError(mismatch)
        start = np.round(start).astype(np.int64)
        last = start + (rows - 1) * row_step + (cols - 1) * col_step
        if np.any(np.minimum(start, last) < 0) or np.any(np.maximum(start, last) >= values.shape):
            raise DicomSegError(mismatch)
        used_slices.add(int(start[slice_axis]))
        # one step moves one voxel along one axis: the frame is a strided slice of the map (no gather needed)
        index = tuple(
            _axis_range(int(start[a]), rows if a == row_axis[0] else cols, int(col_step[a] + row_step[a]))
            if a != slice_axis
            else int(start[a])
            for a in range(3)
        )
        parts.append((index, row_axis[0] > col_axis[0]))
    if len(used_slices) != len(planes):
        raise DicomSegError(mismatch)
    # a map in the layout MONAI's readers give a series, (columns, rows, slices) in slice order, whatever the
    # patient orientation: the frames are the map transposed, copied in cache-sized blocks instead of one strided
    # slice at a time (3x faster on a CT), and without the columns on either side of the labels
    reader_layout = [((slice(0, cols, 1), slice(0, rows, 1), s), True) for s in range(len(planes))]
    if values.flags.c_contiguous and values.shape == (cols, rows, len(planes)) and parts == reader_layout:
        return c_ordered(values.T)
    frames = np.empty((len(planes), rows, cols), dtype=values.dtype)
    for s, (index, transposed) in enumerate(parts):
        frames[s] = values[index].T if transposed else values[index]
    return frames


def _axis_range(start: int, count: int, step: int) -> slice:
    """The slice of ``count`` indices from ``start`` by ``step`` (+1 or -1)."""
    stop = start + count * step
    return slice(start, stop if stop >= 0 else None, step)
