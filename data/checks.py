"""Checks of input data before work: one source for the bundles (at load time) and ``monai-unets check-data``.

- :func:`load_datalist`: a MONAI datalist JSON, with errors naming the file (missing, invalid JSON, no such list,
  entries that are not ``{"image": ..., "label": ...}`` objects).
- :class:`CheckCased`: after ``LoadImaged`` + ``EnsureChannelFirstd``, each case against what the bundle takes:
  spatial dimensions, channel count, NaN/Inf voxels, image/label shape and affine agreement, label values within
  the classes. Errors name the file and the problem.
- :func:`scan_cases` / :func:`check_cases`: every case of a dataset read and checked up front, so that
  training stops before its first epoch with the full list of bad cases (or trains on the others), with a
  warning counting the labels without foreground, and a refusal when every training label is one
  (:func:`scan_cases`, :func:`empty_labels`), and a warning counting the 2D masks whose foreground covers nearly
  all their border, as a mask drawn dark on light does (:func:`border_filling_labels`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, load_decathlon_datalist
from monai.transforms import Compose, LoadImaged, MapTransform, apply_transform

from .dataset import describe_error, files_at_fault
from .medical_io import VALUES_PER_VOXEL, grid_corners, parse_series_reference

__all__ = [
    "BAD_CASE_POLICIES",
    "BORDER_FILLING_SHARE",
    "CASE_ID_KEY",
    "NAN_POLICIES",
    "BadCase",
    "CaseScan",
    "ChannelFilesError",
    "CheckCased",
    "CheckCaseD",
    "CheckCaseDict",
    "CheckedCases",
    "DataCheckError",
    "absent_classes",
    "border_filling_labels",
    "check_cases",
    "declared_labels",
    "empty_labels",
    "load_datalist",
    "scan_cases",
]

logger = logging.getLogger(__name__)

#: Key of a case dictionary that gives its name (nnU-Net's case identifier, whose image files add a channel
#: number: ``<case>_0000.nii.gz``); without it, a case is named after its image file or folder.
CASE_ID_KEY = "case_id"

#: ``nan_policy`` values: ``error`` refuses an image with NaN/Inf voxels, ``replace`` replaces them with a warning.
NAN_POLICIES = ("error", "replace")
#: ``bad_case_policy`` values: ``error`` stops before training with the list of bad cases, ``skip`` trains
#: on the other cases (each bad one is logged with its reason).
BAD_CASE_POLICIES = ("error", "skip")


class DataCheckError(ValueError):
    """A problem with one input file; the message starts with the file's path.

    Args:
        file: the file at fault, kept as ``file`` (a string); empty where no file can be named, and the message is
            then ``problem`` alone.
        problem: what is wrong with it, kept as ``problem``.

    Example::

        >>> error = DataCheckError("/data/ct_001.nii.gz", "image file does not exist.")
        >>> print(error)
        /data/ct_001.nii.gz: image file does not exist.
        >>> isinstance(error, ValueError), error.file
        (True, '/data/ct_001.nii.gz')
    """

    def __init__(self, file: str | os.PathLike, problem: str) -> None:
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}" if self.file else problem)


class ChannelFilesError(DataCheckError):
    """A problem of an image read from several files, one per channel, which the image cannot name: it knows its
    channels, not its files. The error names the channels at fault; where the case is known,
    :func:`~monai_unets.data.dataset.files_at_fault` names their files.

    Args:
        problem: what is wrong.
        channels: the channels at fault, from 0.

    Example::

        >>> error = ChannelFilesError("channel 1 has another shape than channel 0.", [1])
        >>> str(error), error.channels
        ('channel 1 has another shape than channel 0.', [1])
    """

    def __init__(self, problem: str, channels: Sequence[int]) -> None:
        self.channels = [int(c) for c in channels]
        super().__init__("", problem)


def _choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")
    return str(value)


def declared_labels(content: Mapping, datalist: str | os.PathLike) -> dict[int, str] | None:
    """Label value -> name from a dataset.json's ``labels``; ``None`` when it declares none.

    Takes the Decathlon's ``{"0": "background", ...}`` and nnU-Net's ``{"background": 0, ...}`` the other way
    round. nnU-Net's regions (a name for a list of values) and its ``ignore`` label (voxels left unannotated by a
    sparse annotation, which nnU-Net leaves out of the loss) are refused: the bundles would train and score them
    as classes of their own.

    Args:
        content: the dataset.json's content.
        datalist: the dataset.json, named in errors.

    Raises:
        DataCheckError: ``labels`` is not such a mapping, or declares regions or an ``ignore`` label.

    Example::

        >>> declared_labels({"labels": {"background": 0, "pancreas": 1}}, "dataset.json")
        {0: 'background', 1: 'pancreas'}
    """
    declared = content.get("labels")
    if not isinstance(declared, Mapping):
        return None
    try:
        labels = {int(key): str(name) for key, name in declared.items()}
    except (TypeError, ValueError):
        if not all(isinstance(value, int) and not isinstance(value, bool) for value in declared.values()):
            raise DataCheckError(
                datalist,
                '\'labels\' must map label values to names ({"0": "background"}) or names to values '
                f'({{"background": 0}}), one value each (nnU-Net\'s regions are not supported); got {dict(declared)}',
            ) from None
        labels = {int(value): str(name) for name, value in declared.items()}
    ignored = [value for value, name in labels.items() if name == "ignore"]
    if ignored:
        raise DataCheckError(
            datalist,
            f"label {ignored[0]} is nnU-Net's 'ignore' label (voxels a sparse annotation leaves unannotated); sparse "
            "annotation is not supported: the bundles would train and score those voxels as a class. Annotate "
            "every voxel, or remove the label.",
        )
    return labels


def load_datalist(
    datalist: str | os.PathLike,
    key: str = "training",
    base_dir: str | os.PathLike | None = None,
    required: bool = True,
    labelled: bool = False,
) -> list[dict]:
    """The list ``key`` of a MONAI datalist JSON, with paths made absolute against ``base_dir``.

    The same result as ``monai.data.load_decathlon_datalist(datalist, True, key, base_dir)``, but every problem
    with the file is a :class:`DataCheckError` naming it, instead of a ``JSONDecodeError`` or ``KeyError`` without
    a file name. Missing image files are not checked here but by :func:`scan_cases`, per case. An nnU-Net raw
    dataset (its ``dataset.json`` has ``channel_names`` and ``file_ending`` but no lists) gives the cases of its
    folders: ``imagesTr`` with ``labelsTr`` for ``training``, ``imagesTs`` for ``test``.

    Args:
        datalist: the JSON file.
        key: which list to read (``training``, ``validation``, ``test``).
        base_dir: folder that relative paths are relative to; defaults to the datalist's folder.
        required: ``False`` gives ``[]`` where the datalist has no list ``key`` or an empty one.
        labelled: every entry must have a ``label`` too (an evaluation scores each case against it).

    Returns:
        list[dict]: the cases of the list, one dictionary each (a plain image path of a ``test`` list becomes
        ``{"image": path}``), its ``image`` (a path, or a list of one per channel) and ``label`` absolute; an
        nnU-Net raw dataset's cases also hold their :data:`CASE_ID_KEY`. ``[]`` where ``required`` is ``False``
        and there is no list ``key`` or an empty one.

    Raises:
        DataCheckError: the file is missing or not valid JSON, has no list ``key`` or an empty one (when
            ``required``), or an entry is
            not an object with an ``image`` (the ``test`` list may hold plain image paths, as the Decathlon's do)
            or, when ``labelled``, has no ``label``; a relative path is missing under ``base_dir`` but there under
            the datalist's own folder; or its ``labels`` declare what the bundles cannot train (see
            :func:`declared_labels`).

    Example::

        >>> cases = load_datalist("/data/Task07_Pancreas/dataset.json", "training")  # doctest: +SKIP
        >>> sorted(cases[0])  # doctest: +SKIP
        ['image', 'label']
    """
    path = Path(datalist)
    if not path.is_file():
        raise DataCheckError(path, "datalist does not exist; set `datalist` or `dataset_dir` to the right folder.")
    try:
        content = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise DataCheckError(path, "datalist is not a text file; it must be a JSON datalist.") from None
    except json.JSONDecodeError as error:
        first = path.read_text(errors="replace").lstrip().split("\n", 1)[0]
        if "," in first and not first.startswith(("{", "[")):
            # a spreadsheet's file list, the commonest datalist that is not MONAI's
            raise DataCheckError(
                path,
                "datalist is a table (CSV), not JSON: the bundles read MONAI's JSON datalists, "
                '{"training": [{"image": "images/a.nii.gz", "label": "labels/a.nii.gz"}, ...]}; write its rows so.',
            ) from None
        raise DataCheckError(
            path, f"datalist is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
        ) from None
    if not isinstance(content, dict):
        raise DataCheckError(
            path, f"datalist must be a JSON object with a {key!r} list, not a {type(content).__name__}."
        )
    declared_labels(content, path)
    if key not in content and "channel_names" in content and "file_ending" in content:
        return _nnunet_cases(path, content, key, required)
    if not required and not content.get(key):
        return []
    if key not in content:
        lists = ", ".join(k for k, v in content.items() if isinstance(v, list)) or "none"
        raise DataCheckError(path, f"datalist has no {key!r} list (its lists: {lists}).")
    if not isinstance(content[key], list):
        raise DataCheckError(path, f"{key!r} must be a list of cases, not a {type(content[key]).__name__}.")
    if not content[key]:
        raise DataCheckError(path, f"the {key!r} list is empty.")
    # the Medical Segmentation Decathlon lists its test images as plain paths
    plain = key == "test" and all(isinstance(entry, str) for entry in content[key])
    for index, entry in enumerate([] if plain else content[key]):
        if not isinstance(entry, dict) or "image" not in entry:
            raise DataCheckError(path, f"entry {index} of {key!r} must be an object with an 'image'; got {entry!r}.")
    unlabelled = [e for e in content[key] if not isinstance(e, dict) or "label" not in e] if labelled else []
    if unlabelled:
        others = sorted({k for e in unlabelled if isinstance(e, dict) for k in e if k != "image"})
        named = f" (they have {', '.join(map(repr, others))}: MONAI's datalists name it 'label')" if others else ""
        problem = (
            f"{len(unlabelled)} of the {len(content[key])} cases of {key!r} have no 'label'{named} (the first: "
            f"{unlabelled[0]!r}); each case is scored against its label"
        )
        if len(unlabelled) == len(content[key]):
            raise DataCheckError(path, f"{problem}: give every case one, or list the labelled cases.")
        # the labelled cases are scored, as a batch goes on past its bad cases; the others are its failures
        logger.warning("%s: %s: those cases are reported as failures, the others scored.", path, problem)
    # the Decathlon's count of its own list (numTraining, numTest): a list cut short in a copy or an edit
    count_key = f"num{key[:1].upper()}{key[1:]}"
    count = content.get(count_key)
    if isinstance(count, int) and not isinstance(count, bool) and count != len(content[key]):
        logger.warning(
            "%s: %s is %d, but its %r list has %d cases; the list is used as it is.",
            path,
            count_key,
            count,
            key,
            len(content[key]),
        )
    # absolute, whatever the working folder is later: ITK changes the process's working folder while it loads its
    # modules, and another thread (the pre-flight check's, a writer's) then resolved relative paths elsewhere
    base = os.path.abspath(base_dir if base_dir is not None else path.parent)
    _check_path_forms(path, key, content[key], base)
    _check_base_dir(path, content[key], base)
    cases = load_decathlon_datalist(path, True, key, base)
    modality = content.get("modality")
    if isinstance(modality, dict) and len(modality) > 1:
        cases = [_with_channel_files(case, len(modality)) for case in cases]
    return cases


def _with_channel_files(case: dict, channels: int) -> dict:
    """A case of an nnU-Net v1 dataset with its image as its channel files.

    nnU-Net v1 (and the Decathlon copies it made) lists ``imagesTr/la_003.nii.gz`` for a case stored as one file per
    modality, ``la_003_0000.nii.gz``, ``la_003_0001.nii.gz``...: every case had been reported missing. Where the
    listed image is missing and its channel files exist, they become the case's image, one per channel.
    """
    image = case.get("image")
    if not isinstance(image, str) or os.path.exists(image):
        return case
    folder, name = os.path.split(image)
    stem, dot, suffix = name.partition(".")
    files = [os.path.join(folder, f"{stem}_{channel:04d}{dot}{suffix}") for channel in range(channels)]
    if not all(os.path.isfile(file) for file in files):
        return case
    return {**case, "image": files}


def _entry_paths(entries: list) -> Iterator[tuple[int, str, str]]:
    """``(index, key, text)`` of each string of a datalist's entries (a plain string entry is an image)."""
    for index, entry in enumerate(entries):
        for name, value in entry.items() if isinstance(entry, dict) else [("image", entry)]:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    yield index, name, item


# a URI (file://, https://, s3://): MONAI's datalist loader joins it to dataset_dir as if it were a relative path
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# a Windows absolute path (C:\data\a.png, C:/data/a.png), written on one system and read on another
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _check_path_forms(path: Path, key: str, entries: list, base: str) -> None:
    """Refuses an image or label given as a URI, or with backslashes for folders where no such file exists.

    Both had been joined to ``base`` as they were, and each such case failed naming a file the datalist does not
    hold (``<dataset_dir>/file:/...``). A file whose name holds a backslash is still read where it exists.
    """
    for index, name, item in _entry_paths(entries):
        if name not in ("image", "label"):
            continue
        where = f"entry {index} of {key!r}: {name} {item}"
        if _URI.match(item):
            local = url2pathname(urlparse(item).path) if item.lower().startswith("file:") else None
            hint = f": write {local}" if local else ", absolute or relative to dataset_dir"
            raise DataCheckError(path, f"{where} is a URI; a datalist lists files by their paths{hint}.")
        missing = not os.path.exists(os.path.join(base, parse_series_reference(item)[0]))
        if _WINDOWS_DRIVE.match(item) and os.sep == "/" and missing:
            raise DataCheckError(
                path,
                f"{where} is a Windows path (drive {item[:2]}) that does not exist on this system; write the "
                "datalist's paths relative to dataset_dir, or as this system's paths.",
            )
        if "\\" in item and os.sep == "/" and missing:
            slashes = item.replace("\\", "/")
            raise DataCheckError(
                path,
                f"{where} does not exist, and backslashes do not separate folders on this system; write the "
                f"datalist's paths with '/' ({slashes}).",
            )


def _check_base_dir(path: Path, entries: list, base: str) -> None:
    """Refuses a datalist whose relative paths are missing under ``base`` but there under the datalist's folder.

    A datalist written with paths relative to its own folder (as ``scripts/datalist.py`` writes them) and kept
    outside the dataset folder had every case reported missing under a path that doubles part of the folder.
    """
    own = os.path.abspath(path.parent)
    if base == own:
        return
    for _, _, item in _entry_paths(entries):
        if os.path.isabs(item):
            continue
        file = parse_series_reference(item)[0]
        if not os.path.exists(os.path.join(base, file)) and os.path.exists(os.path.join(own, file)):
            raise DataCheckError(
                path,
                f"its paths are relative to dataset_dir {base}, where {file} does not exist; it does relative "
                f"to the datalist's own folder {own}. Set dataset_dir to {own}, or write the datalist's paths "
                "relative to dataset_dir.",
            )


# nnU-Net's raw layout: the folders of each list, and an image file's name <case>_<4-digit channel><file ending>
_NNUNET_FOLDERS = {"training": ("imagesTr", "labelsTr"), "test": ("imagesTs", None)}


def _nnunet_cases(path: Path, content: dict, key: str, required: bool = True) -> list[dict]:
    """The cases of an nnU-Net raw dataset (``dataset.json`` with ``channel_names`` and ``file_ending``, no lists):
    ``imagesTr/<case>_0000<ending>`` with ``labelsTr/<case><ending>`` for ``training``, ``imagesTs`` for ``test``;
    a case of several channels lists one image per channel. A list the layout does not have, or an empty one, is
    ``[]`` when not ``required`` (a bundle's optional ``validation`` list)."""
    if key not in _NNUNET_FOLDERS:
        if not required:
            return []
        raise DataCheckError(path, f"an nnU-Net raw dataset has no {key!r} list (it has: training, test).")
    # absolute, as load_datalist makes a datalist's paths: the reports name each case by its file, and a relative
    # dataset_dir gave paths that only the folder the run started in resolves
    ending, root = str(content["file_ending"]), Path(os.path.abspath(path.parent))
    images, labels = (root / folder if folder else None for folder in _NNUNET_FOLDERS[key])
    try:
        channels = sorted(int(channel) for channel in content["channel_names"])
    except (TypeError, ValueError):
        channels = []
    if not channels:
        raise DataCheckError(path, f"'channel_names' must be numbered 0, 1, ...; got {content['channel_names']}.")
    if labels is not None:
        names = [p.name[: -len(ending)] for p in sorted(labels.glob(f"*{ending}")) if not p.name.startswith(".")]
    else:
        suffix = f"_{channels[0]:04d}{ending}"
        names = [p.name[: -len(suffix)] for p in sorted(images.glob(f"*{suffix}")) if not p.name.startswith(".")]
    if not names:
        if not required:
            return []
        folder = labels if labels is not None else images
        raise DataCheckError(path, f"an nnU-Net raw dataset without a {key!r} list, and {folder} has no *{ending}.")
    cases = []
    for name in names:
        files = [str(images / f"{name}_{channel:04d}{ending}") for channel in channels]
        # named as nnU-Net names its predictions: <case>.nii.gz, without the channel number of its image files
        case = {"image": files[0] if len(files) == 1 else files, CASE_ID_KEY: name}
        if labels is not None:
            case["label"] = str(labels / f"{name}{ending}")
        cases.append(case)
    logger.info("%s: nnU-Net raw dataset, %d %s cases from %s.", path, len(cases), key, images.name)
    return cases


def all_finite(values: torch.Tensor) -> bool:
    """Whether every value is finite.

    A NaN or an infinity carries through a sum, so one reduction screens a whole CT (about 40x faster than
    ``isfinite(...).all()``, which writes a mask of the volume); only a sum that is not finite (a bad value, or
    finite values whose sum overflows) is checked value by value.
    """
    if not values.is_floating_point() or bool(torch.isfinite(values.sum())):
        return True
    return bool(torch.isfinite(values).all())


#: most distinct values of a volume that :func:`_label_map_values` takes for a label map: a scan has hundreds
LABEL_MAP_VALUES = 32


def _label_map_values(image: torch.Tensor) -> list[float] | None:
    """The values of a volume that holds at most :data:`LABEL_MAP_VALUES` whole values within 0..255, as a label map
    or mask does (a segmentation beside the studies of an input folder, listed as one); ``None`` for any other.

    A strided sample of a million voxels decides; the whole volume's range then confirms, at one pass."""
    if not image.numel() or image.dtype == torch.bool:
        return None
    sample = image.reshape(-1)[:: max(1, image.numel() // 1_000_000)]
    values = torch.unique(sample)
    if (
        len(values) > LABEL_MAP_VALUES
        or values[0] < 0
        or values[-1] > 255
        or not bool((values == values.round()).all())
    ):
        return None
    low, high = torch.aminmax(image)
    if low < 0 or high > 255:
        return None
    return [float(v) for v in values]


def _same_grid_advice(dims: int) -> str:
    """What a label of another grid than its image's needs."""
    if dims == 2:
        return "a mask must have its image's size: resize it with nearest-neighbour interpolation, or draw it anew"
    return (
        "they must be on the same voxel grid: export the label on its image's grid (3D Slicer crops a .seg.nrrd to "
        "its segments' extent unless exported as a label map of the image), or resample it onto that grid with "
        "nearest-neighbour interpolation"
    )


def _turned_hint(label: torch.Tensor, image: torch.Tensor) -> str:
    """Why a 2D label may have its image's size turned: drawn on the image as a viewer shows a photograph whose EXIF
    orientation turns it a quarter (orientations 5 to 8), where the pixels are read as stored."""
    from ..transforms.io import EXIF_ORIENTATION_KEY

    orientation = int(getattr(image, "meta", {}).get(EXIF_ORIENTATION_KEY, 1))
    if orientation < 5 or tuple(label.shape[1:]) != tuple(image.shape[1:])[::-1]:
        return ""
    return (
        f" (the image's EXIF orientation {orientation} shows it turned to the label's size: the label was drawn on the "
        "image as displayed, while images are read as stored; save the image turned as displayed, e.g. with "
        "PIL.ImageOps.exif_transpose, or the label as stored)"
    )


def _orientation_problem(label: torch.Tensor, image: torch.Tensor, image_name: str) -> str | None:
    """Why a 2D label and its image of one shape cannot be told to be aligned: their EXIF orientations differ by a
    turn that keeps the shape (180 degrees, a mirroring; any turn of a square image), so the label is aligned either
    with the stored pixels (what training reads) or with the displayed image, and nothing tells which. Where the
    turn would swap the sides of a non-square image, the label's shape shows it follows the stored pixels."""
    from ..transforms.io import EXIF_ORIENTATION_KEY

    ours = getattr(label, "meta", {}).get(EXIF_ORIENTATION_KEY)
    theirs = getattr(image, "meta", {}).get(EXIF_ORIENTATION_KEY)
    if ours is None or theirs is None or int(ours) == int(theirs):
        return None
    square = len(set(image.shape[1:])) == 1
    if not square and (int(ours) >= 5) != (int(theirs) >= 5):
        return None
    return (
        f"label has EXIF orientation {int(ours)} and its image {image_name} {int(theirs)}: viewers show them turned "
        "against each other, and whether the label follows the stored pixels (as training reads them) or the "
        "displayed image cannot be told; save the image as displayed (PIL.ImageOps.exif_transpose) with its label "
        "drawn on that, or give the label the image's orientation tag."
    )


def _filename(value: object, key: Hashable) -> str:
    meta = getattr(value, "meta", None) or {}
    return str(meta.get("filename_or_obj", key))


class CheckCased(MapTransform):
    """Checks a loaded case against what a bundle takes; errors name the file and the problem. A dictionary
    transform only: it checks a case's image and label against each other.

    Goes after ``LoadImaged`` and ``EnsureChannelFirstd`` (channel-first images with their metadata):

    - the image has ``spatial_dims`` spatial dimensions and ``in_channels`` channels (a 2D slice or a 4D series
      given to a 3D bundle is refused, naming its shape);
    - the image has no NaN or infinite voxel (``nan_policy="error"``), or they are replaced with a warning
      (``nan_policy="replace"``: NaN by the image's smallest finite value, +/-Inf by its largest/smallest);
      a label with NaN/Inf is always refused;
    - the label has the image's spatial shape and its affine places every corner voxel within
      ``affine_tolerance`` mm of the image's;
    - a 2D label has its image's EXIF orientation, where another one would leave unknown whether it follows the
      stored pixels or the displayed image (a turn that keeps the shape: 180 degrees, a mirroring, a square image);
    - with ``num_classes > 1``, label values are integers in ``0 .. num_classes - 1`` (a binary bundle,
      ``num_classes`` 1, takes masks of any two levels and binarizes them);
    - segments named in the label's header have the values of the classes of the same names.

    A label that passes is given its image's affine, from which it differs by less than ``affine_tolerance``: both
    are then resampled alike (rounding differences of two headers had moved label voxels on half-voxel ties).

    Args:
        keys: the image key and, optionally, the label key (a missing label is fine: inference).
        spatial_dims: spatial dimensions the bundle takes (2 or 3); ``None`` skips the check.
        in_channels: channels the bundle takes; ``None`` skips the check.
        num_classes: output classes of the bundle (background included); ``None`` skips the label value check.
        nan_policy: ``"error"`` or ``"replace"``.
        affine_tolerance: largest distance in mm between where the image and the label put a corner voxel.
        class_names: the names of classes 1, 2, ...: a label whose header names its segments (3D Slicer's
            ``.seg.nrrd``: ``Segment<i>_Name``, ``Segment<i>_LabelValue``) with another value for one of these names
            is refused; ``None`` skips the check.

    Raises:
        DataCheckError: the first problem found, with the file's path; for an image read from several files, one
            per channel, a :class:`ChannelFilesError` with the channels at fault.

    Example::

        >>> check = CheckCased(["image", "label"], spatial_dims=3, in_channels=1, num_classes=3)
        >>> case = check(LoadImaged(["image", "label"], ensure_channel_first=True)(files))  # doctest: +SKIP
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        spatial_dims: int | None = None,
        in_channels: int | None = None,
        num_classes: int | None = None,
        nan_policy: str = "error",
        affine_tolerance: float = 0.01,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        if len(self.keys) not in (1, 2):
            raise ValueError(f"CheckCased takes an image key and optionally a label key; got {list(self.keys)}.")
        self.image_key = self.keys[0]
        self.label_key = self.keys[1] if len(self.keys) == 2 else None
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.nan_policy = _choice("nan_policy", nan_policy, NAN_POLICIES)
        self.affine_tolerance = affine_tolerance
        self.class_names = None if class_names is None else [str(n) for n in class_names]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.image_key in d:
            d[self.image_key] = self._check_image(d[self.image_key])
        if self.label_key is not None and self.label_key in d:
            d[self.label_key] = self.check_label(d[self.label_key], d.get(self.image_key))
        return d

    def _check_image(self, image: torch.Tensor) -> torch.Tensor:
        name = _filename(image, self.image_key)
        shape = tuple(image.shape)
        meta = getattr(image, "meta", {})
        # MONAI stacks the files of a list as channels along a new first axis and marks it so; the image then
        # knows the first file only, and its errors name the channels at fault instead
        files = meta.get("original_channel_dim") == 0

        def error(problem: str, channels: Sequence[int] = range(shape[0])) -> DataCheckError:
            return ChannelFilesError(problem, channels) if files else DataCheckError(name, problem)

        if self.spatial_dims is not None and len(shape) - 1 != self.spatial_dims:
            raise error(
                f"a {len(shape) - 1}D image (channels first: {shape}); this bundle takes {self.spatial_dims}D images."
            )
        if self.in_channels is not None and shape[0] != self.in_channels:
            wanted = self.in_channels
            # a network of several channels takes one per modality of its plan (MSD's 4D NIfTI, nnU-Net's files)
            whole_case = (
                "give each case one image file"
                if wanted == 1
                else f"give each case its {wanted} channels, as one file of {wanted} channels or {wanted} files, "
                "one per channel, in the order the bundle was trained with (files of one case are listed together "
                "by a datalist: an nnU-Net dataset's dataset.json given as dataset_dir, not its image folder as "
                "input_dir)"
            )
            # the 3D bundles take the channels of their dataset's plan: one without a plan (the recipe's single CT
            # channel) had been told to split a multi-modal case, losing its channels
            unplanned = (
                "; for data of several co-registered channels (MR sequences), plan the dataset, `monai-unets plan "
                "--dataset-dir <dataset>`, which gives the bundle its channels, and train on it: weights take the "
                "channels they were trained with"
                if wanted == 1 and self.spatial_dims == 3
                else ""
            )
            if files:
                raise error(
                    f"a case of {shape[0]} image files, one per channel (shape {shape}); this bundle takes "
                    f"{wanted} channel{'s' if wanted > 1 else ''}: {whole_case}{unplanned}."
                )
            example = ", e.g. greyscale scans" if wanted == 1 else ""
            if meta.get(VALUES_PER_VOXEL) == shape[0]:
                # a DICOM image's PhotometricInterpretation, as the readers report it, names its colours
                colour = str(meta.get("0028|0004", "")).strip()
                if colour:
                    raise error(
                        f"is a colour DICOM image ({colour}: {shape[0]} samples per pixel, shape {shape}); this "
                        f"bundle takes {wanted}-channel images{example}."
                    )
                raise error(
                    f"holds {shape[0]} values per voxel (colour or vector components), read as {shape[0]} channels "
                    f"(shape {shape}); this bundle takes {wanted}-channel images{example}."
                )
            if wanted == 1:
                raise error(
                    f"has {shape[0]} channels (shape {shape}); this bundle takes 1. A 4D file of several volumes or "
                    f"time points must be split into single volumes{unplanned}."
                )
            raise error(
                f"has {shape[0]} channel{'s' if shape[0] > 1 else ''} (shape {shape}); this bundle takes "
                f"{wanted}: {whole_case}."
            )
        if len(shape) == 4:
            values = _label_map_values(image)
            if values is not None:
                logger.warning(
                    "%s: the image holds only the whole values %s, as a label map or mask does, not a scan: is it a "
                    "segmentation saved beside the studies? Its prediction means nothing.",
                    name,
                    ", ".join(f"{v:g}" for v in values),
                )
        if image.dtype == torch.float64:
            # the pipeline casts to float32 after this check (inference keeps the stored type up to here): a value
            # beyond float32's range became infinite there and spread NaN through the resampling, unchecked
            image = image.to(torch.float32)
        if all_finite(image):
            return self._scalable(image, error)
        finite = torch.isfinite(image)
        # voxels, not values: a grey image repeated into RGB has each bad pixel in three channels
        nan, inf = (int(test(image).any(dim=0).sum()) for test in (torch.isnan, torch.isinf))
        counts = f"{nan} NaN and {inf} infinite voxels"
        flawed = [channel for channel in range(shape[0]) if not bool(finite[channel].all())]
        if not bool(finite.any()):
            raise error(f"has no finite voxel ({counts}).", flawed)
        if self.nan_policy == "error":
            raise error(
                f"has {counts}; fix the file, or set nan_policy to 'replace' to replace them with a warning.", flawed
            )
        low, high = float(image[finite].min()), float(image[finite].max())
        if files:
            # the image knows its first file only: the files at fault are named by their place in the case's list
            positions = ", ".join(str(channel + 1) for channel in flawed)
            name = f"image file {positions} of {shape[0]} of the case of {name} (one file per channel)"
        logger.warning("%s: replaced %s (NaN by %g, infinities by %g/%g).", name, counts, low, high, low)
        return self._scalable(torch.nan_to_num(image, nan=low, posinf=high, neginf=low), error)

    @staticmethod
    def _scalable(image: torch.Tensor, error: Callable[[str], DataCheckError]) -> torch.Tensor:
        """A 2D float image whose range float32 holds: the 2D bundles scale it by its range, which for finite
        values of +-3e38 (a "no data" fill of a float TIFF) overflowed and made every pixel NaN, the mask empty.
        A CT of such values is fine: it is clipped before any arithmetic."""
        if image.ndim != 3 or not image.is_floating_point() or not image.numel():
            return image
        low, high = torch.aminmax(image)
        if bool(torch.isfinite(high - low)):
            return image
        raise error(
            f"has values from {float(low):g} to {float(high):g}, a range beyond float32's (fill values for missing "
            "data?); 2D images are scaled by their range, which made every pixel NaN: give such pixels a value "
            "within the image's."
        )

    def check_label(self, label: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        """Checks a channel-first label against its channel-first image (``None``: the label alone).

        Args:
            label: the label as loaded, with its metadata.
            image: its image, with its metadata.

        Returns:
            the label, in its image's voxel order and with its image's affine where it passes.

        Raises:
            DataCheckError: the first problem found, naming the label's file.

        Example::

            >>> CheckCased().check_label(MetaTensor(torch.zeros(1, 4, 4)), MetaTensor(torch.zeros(3, 4, 4))).shape
            torch.Size([1, 4, 4])
        """
        name = _filename(label, self.label_key)
        if not all_finite(label):
            raise DataCheckError(name, "label has NaN or infinite values.")
        if image is not None:
            image_name = _filename(image, self.image_key)
            label = self._in_image_order(name, label, image)
            if tuple(label.shape[1:]) != tuple(image.shape[1:]):
                raise DataCheckError(
                    name,
                    f"label has spatial shape {tuple(label.shape[1:])} but its image {image_name} has "
                    f"{tuple(image.shape[1:])}; {_same_grid_advice(label.ndim - 1)}{_turned_hint(label, image)}.",
                )
            if label.shape[0] != 1:
                raise DataCheckError(
                    name,
                    f"label has {label.shape[0]} channels; it must be a single label map of class values (a one-hot "
                    "label, or 3D Slicer's .seg.nrrd of overlapping segments in layers: merge them into one map).",
                )
            problem = _orientation_problem(label, image, image_name)
            if problem:
                raise DataCheckError(name, problem)
            label = self._check_affines(name, label, image_name, image)
        self._check_segment_names(name, label)
        if self.num_classes is not None and self.num_classes > 1:
            bad = (label < 0) | (label >= self.num_classes) | (label != torch.round(label))
            if bool(bad.any()):
                values = torch.unique(label[bad])
                # all the digits: 1.0000001 (a resampling's rounding) shown as 1 read as a valid class
                shown = ", ".join(f"{float(v):.9g}" for v in values[:10]) + (", ..." if len(values) > 10 else "")
                raise DataCheckError(
                    name,
                    f"label values {shown} are not classes 0..{self.num_classes - 1} (num_classes "
                    f"{self.num_classes}); relabel the file or set num_classes.",
                )
        return label

    def _in_image_order(self, name: str, label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The label in its image's voxel order, where it covers the image's grid stored in another order.

        Tools save label maps in their own axis order (e.g. RAS, as ``nibabel.as_closest_canonical`` does) while
        the image keeps the scanner's: the same voxel centres, axes swapped or reversed. Such a label is brought
        to the image's order, with the image's affine; any other label is returned as it came, for the grid
        checks to judge.
        """
        label_affine, image_affine = getattr(label, "affine", None), getattr(image, "affine", None)
        dims = label.ndim - 1
        if label_affine is None or image_affine is None or image.ndim != label.ndim or dims not in (2, 3):
            return label
        label_affine = np.asarray(label_affine, dtype=np.float64)[: dims + 1, : dims + 1]
        image_affine = np.asarray(image_affine, dtype=np.float64)[: dims + 1, : dims + 1]
        if np.allclose(label_affine, image_affine) and tuple(label.shape) == tuple(image.shape):
            return label
        ornt = nib.orientations
        try:
            transform = ornt.ornt_transform(ornt.io_orientation(label_affine), ornt.io_orientation(image_affine))
        except ValueError:  # a singular affine: the grid checks say so
            return label
        if np.array_equal(transform, [[axis, 1] for axis in range(dims)]):
            return label
        shape = tuple(label.shape[1:])
        reordered_shape = tuple(shape[int(np.flatnonzero(transform[:, 0] == axis)[0])] for axis in range(dims))
        affine = label_affine @ ornt.inv_ornt_aff(transform, shape)
        if reordered_shape != tuple(image.shape[1:]):
            return label
        distance = np.linalg.norm(
            grid_corners(affine, reordered_shape) - grid_corners(image_affine, reordered_shape), axis=1
        )
        if distance.max() > self.affine_tolerance:
            return label
        values = ornt.apply_orientation(np.moveaxis(np.asarray(label), 0, -1), np.vstack([transform, [[dims, 1]]]))
        logger.info("%s: label stored in another voxel order than its image; taken in the image's order.", name)
        meta = dict(getattr(label, "meta", {}))
        meta["affine"] = torch.as_tensor(np.asarray(image.affine), dtype=torch.float64)
        return MetaTensor(torch.as_tensor(np.ascontiguousarray(np.moveaxis(values, -1, 0))), meta=meta)

    def _check_segment_names(self, name: str, label: torch.Tensor) -> None:
        # 3D Slicer numbers segments in the order they were made: a tumour drawn before the pancreas is value 1,
        # and trained as the pancreas, without a word
        if not self.class_names:
            return
        meta = getattr(label, "meta", {})
        classes = {n.strip().casefold(): k for k, n in enumerate(self.class_names, start=1)}
        swapped = []
        for key, segment in meta.items():
            match = re.fullmatch(r"Segment(\d+)_Name", str(key))
            value = str(meta.get(f"Segment{match[1]}_LabelValue", "")).strip() if match else ""
            wanted = classes.get(str(segment).strip().casefold())
            if wanted is not None and value.isdigit() and int(value) != wanted:
                swapped.append(f"{str(segment).strip()} is {value}, class {wanted} here")
        if swapped:
            listed = ", ".join(f"{k} {n}" for k, n in enumerate(self.class_names, start=1))
            raise DataCheckError(
                name,
                f"its segments have other values than the classes of their names ({'; '.join(swapped)}; classes: "
                f"{listed}); renumber the segments (3D Slicer numbers them in the order they were made) or "
                "relabel the file.",
            )

    def _check_affines(self, name: str, label: torch.Tensor, image_name: str, image: torch.Tensor) -> torch.Tensor:
        label_affine, image_affine = getattr(label, "affine", None), getattr(image, "affine", None)
        if label_affine is None or image_affine is None:
            return label
        shape = tuple(image.shape[1:])
        distance = np.linalg.norm(
            grid_corners(np.asarray(label_affine, dtype=np.float64), shape)
            - grid_corners(np.asarray(image_affine, dtype=np.float64), shape),
            axis=1,
        ).max()
        if distance > self.affine_tolerance:
            raise DataCheckError(
                name,
                f"label is placed up to {distance:.3g} mm away from its image {image_name} (affines differ; "
                f"tolerance {self.affine_tolerance} mm); resample the label onto the image's grid or fix its header.",
            )
        if isinstance(label, MetaTensor):
            label.affine = torch.as_tensor(np.asarray(image_affine), dtype=torch.float64)
        return label


CheckCaseD = CheckCaseDict = CheckCased


@dataclass(frozen=True)
class BadCase:
    """One case that cannot be used, and why.

    Args:
        file: the file at fault (or the case, where no file can be named).
        problem: what is wrong with it.

    Example::

        >>> print(BadCase("/data/ct_001.nii.gz", "image file does not exist."))
        /data/ct_001.nii.gz: image file does not exist.
    """

    file: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


@dataclass(frozen=True)
class CaseScan:
    """What reading and checking every case of a list found (see :func:`scan_cases`).

    Args:
        bad: ``(index, problem)`` of each case that cannot be used.
        empty: the index of each readable case whose label has no foreground (no value other than 0).
        border_filling: the index of each readable case whose label is a 2D mask with foreground on at least
            :data:`BORDER_FILLING_SHARE` of its border pixels (:func:`border_filling_labels`).
        num_classes: the classes the cases were checked for (background included), where more than one.
        classes: with ``num_classes``, the foreground classes each readable labelled case holds, by index.

    Example::

        >>> scan = CaseScan(bad=[(2, BadCase("/data/c.png", "label file does not exist."))], empty=[0])
        >>> [index for index, _ in scan.bad], scan.empty, scan.border_filling
        ([2], [0], [])
    """

    bad: list[tuple[int, BadCase]]
    empty: list[int]
    border_filling: list[int] = field(default_factory=list)
    num_classes: int | None = None
    classes: dict[int, frozenset[int]] = field(default_factory=dict)


#: Share of a 2D mask's border pixels that its foreground covers at least in :func:`border_filling_labels`' count.
#: The bundles read a mask's brighter value as lesion, so a mask drawn dark on a light background is read inverted,
#: and its "lesion" is then the background, around the whole frame: all of the border where the real lesion lies
#: inside the image, still over 90% where it touches one side along less than 40% of it (a tenth of a square's
#: border). A mask drawn right covers this much of its border only where the lesion overflows nearly all of the
#: frame on every side, which close-up dermoscopy images do now and then: hence a warning with a count, no refusal,
#: and a share high enough that a large lesion reaching two or three sides is not counted.
BORDER_FILLING_SHARE = 0.9
#: what :func:`_case_problem` says of a readable case's label that is worth a warning
_EMPTY, _BORDER_FILLING = "empty", "border filling"


def _fills_border(label: torch.Tensor) -> bool:
    """Whether ``label``, a 2D mask with its channel first, has foreground on :data:`BORDER_FILLING_SHARE` of its
    border pixels; ``False`` for any other shape, and for a mask under 3 pixels wide, which is all border."""
    if label.ndim != 3 or min(label.shape[1:]) < 3:
        return False
    mask = label.ne(0).any(0)
    # each border pixel once: the full first and last rows, and the columns' ends between them
    border = (mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1])
    covered = sum(int(edge.sum()) for edge in border)
    return covered >= BORDER_FILLING_SHARE * sum(edge.numel() for edge in border)


def _other_unicode_form(path: str) -> str:
    """Why a missing path may be there all the same: it exists with its accented letters composed otherwise (macOS
    writes names decomposed, NFD; most editors and other systems composed, NFC), which looks the same in print."""
    for form in ("NFC", "NFD"):
        if unicodedata.normalize(form, path) != path and os.path.exists(unicodedata.normalize(form, path)):
            return (
                f" as written, but does with its accented letters in Unicode form {form} (as macOS and other "
                "systems write names differently); write the datalist's names as the files have them"
            )
    return ""


def _class_count(transform: object) -> int | None:
    """The ``num_classes`` of the :class:`CheckCased` step among ``transform`` and its ``Compose`` steps."""
    if isinstance(transform, CheckCased):
        return transform.num_classes
    steps = transform.transforms if isinstance(transform, Compose) else ()
    return next((count for step in steps if (count := _class_count(step)) is not None), None)


def _constant_image(image: object, key: Hashable) -> BadCase | None:
    """An image of one value everywhere, asked of a case whose label has foreground: a blank or failed export (a
    black series of a viewer's export, a volume written before its data). Nothing can be learnt from it, and in a
    plan its one value would stretch the intensity window the whole dataset is normalised with."""
    if not isinstance(image, torch.Tensor) or not image.numel():
        return None
    low, high = torch.aminmax(image)
    if bool(low != high):
        return None
    return BadCase(_filename(image, key), constant_image_problem(float(low)))


def constant_image_problem(value: float) -> str:
    """What is wrong with an image of one ``value`` everywhere under a label with foreground (:func:`scan_cases`,
    :func:`~monai_unets.data.fingerprint_dataset`)."""
    return (
        f"image holds one value everywhere ({value:g}) while its label marks foreground: a blank or failed export; "
        "nothing can be learnt from it. Export the image again, or leave the case out."
    )


def _case_problem(
    case: object, loader: Callable, keys: Sequence[str], num_classes: int | None = None
) -> BadCase | tuple[str | None, frozenset[int]] | None:
    """The problem of a case, else what its label (``keys[1]``) is worth a warning for (:data:`_EMPTY` without
    foreground, :data:`_BORDER_FILLING` where :func:`_fills_border`, else ``None``) and, with ``num_classes`` above
    1, the foreground classes it holds; ``None`` without a label."""
    if not isinstance(case, dict):
        return BadCase(str(case), "a case must be an object with image and label paths.")
    name = str(case.get(keys[0], case))
    for key in keys:
        if key not in case:
            others = [k for k in case if k not in keys]
            named = f" (it has {', '.join(map(repr, others))}: MONAI's datalists name it {key!r})" if others else ""
            return BadCase(name, f"has no {key!r} in the datalist{named}.")
        paths = case[key] if isinstance(case[key], (list, tuple)) else [case[key]]
        for path in paths:
            if not isinstance(path, (str, os.PathLike)):
                return BadCase(name, f"{key!r} must be a path, got {path!r}.")
            if not os.path.exists(parse_series_reference(path)[0]):
                return BadCase(str(path), f"{key} file does not exist{_other_unicode_form(str(path))}.")
    try:
        loaded = apply_transform(loader, case)
    except Exception as error:  # noqa: BLE001 - every reason a case cannot be read is reported, not raised
        while error.__cause__ is not None:
            error = error.__cause__
        if isinstance(error, ChannelFilesError):
            return BadCase(files_at_fault(case[keys[0]], error), error.problem)
        if isinstance(error, DataCheckError):
            return BadCase(error.file, error.problem)
        failure = error
    else:
        label = loaded.get(keys[1]) if len(keys) > 1 and isinstance(loaded, Mapping) else None
        if not isinstance(label, torch.Tensor):
            return None
        if not bool(label.ne(0).any()):
            return _EMPTY, frozenset()
        constant = _constant_image(loaded.get(keys[0]), keys[0])
        if constant is not None:
            return constant
        # CheckCased has made sure the values are the classes 0..num_classes - 1
        classes = frozenset(c for c in range(1, num_classes or 0) if bool(label.eq(c).any()))
        return (_BORDER_FILLING if _fills_border(label) else None), classes
    # out of the handler: readers' tracebacks, which describe_error reads, would start with this failure's
    return _unreadable_file(case, loader, keys) or BadCase(name, describe_error(failure, name))


def _loaders(transform: object) -> list[LoadImaged]:
    """The ``LoadImaged`` steps among ``transform`` and the ``Compose`` steps within it."""
    if isinstance(transform, LoadImaged):
        return [transform]
    steps = transform.transforms if isinstance(transform, Compose) else ()
    return [loader for step in steps for loader in _loaders(step)]


def _read_error(step: LoadImaged, key: str, value: object) -> Exception | None:
    """Why ``step`` cannot read ``value`` as ``key``; ``None`` when it can."""
    try:
        step({key: value})
    except Exception as error:  # noqa: BLE001 - the reader's failure is the reason reported
        return error
    return None


def _unreadable_file(case: dict, loader: Callable, keys: Sequence[str]) -> BadCase | None:
    """The first file of a failed case that its own ``LoadImaged`` step cannot read, and why; ``None`` when each
    reads on its own (the case failed later).

    A ``LoadImaged`` of several keys raises without saying which file it was reading: a truncated label was reported
    under its image's name. Of an entry of several files (one per channel), the first that does not read alone is
    named; where each does, they do not make one image together, and all are named.
    """
    for key in keys:
        for step in _loaders(loader):
            if key not in step.keys:
                continue
            alone = copy.copy(step)
            alone.allow_missing_keys = True
            error = _read_error(alone, key, case[key])
            if error is None:
                continue
            files = case[key] if isinstance(case[key], (list, tuple)) else [case[key]]
            if len(files) == 1:
                return BadCase(str(files[0]), f"cannot read the {key} file: {describe_error(error, files[0])}")
            for file in files:
                if (own := _read_error(alone, key, file)) is not None:
                    return BadCase(str(file), f"cannot read the {key} file: {describe_error(own, file)}")
            named = files_at_fault(files)
            return BadCase(named, f"the {key} files do not make one image: {describe_error(error, named)}")
    return None


def scan_cases(
    cases: Sequence[dict],
    loader: Callable | Sequence[Callable],
    keys: Sequence[str] = ("image", "label"),
    num_workers: int = 1,
    on_result: Callable[[dict, BadCase | None], None] | None = None,
) -> CaseScan:
    """Reads and checks every case: the cases that cannot be used, those whose label has no foreground, and those
    whose label is a 2D mask with foreground over nearly all its border (:data:`BORDER_FILLING_SHARE`).

    The label (``keys[1]``) is judged as ``loader`` gives it, e.g. after a 2D bundle's binarization.

    Args:
        cases: case dictionaries (paths).
        loader: the transforms that read and check a case (the bundle's loading steps ending with
            :class:`CheckCased`), or a list of them.
        keys: keys each case must have, with existing files: the image key and the label key.
        num_workers: threads reading cases at once.
        on_result: called with each case and its problem (``None`` when fine), in order, as they are checked.

    Example::

        >>> scan = scan_cases(cases, [LoadImaged(keys), EnsureChannelFirstd(keys), CheckCased(keys)])  # doctest: +SKIP
        >>> [cases[i]["label"] for i in scan.empty]  # doctest: +SKIP
        ['/data/masks/ISIC_0000004.png']
    """
    transform = Compose(list(loader)) if isinstance(loader, (list, tuple)) else loader
    num_classes = _class_count(transform)
    num_classes = num_classes if num_classes is not None and num_classes > 1 else None
    with ThreadPoolExecutor(max(1, int(num_workers))) as pool:
        results = pool.map(lambda case: _case_problem(case, transform, keys, num_classes), cases)
        bad, empty, border_filling, classes = [], [], [], {}
        for index, (case, result) in enumerate(zip(cases, results)):
            problem = result if isinstance(result, BadCase) else None
            if on_result is not None:
                on_result(case, problem)
            if problem is not None:
                bad.append((index, problem))
            elif result is not None:
                note, classes[index] = result
                if note == _EMPTY:
                    empty.append(index)
                elif note == _BORDER_FILLING:
                    border_filling.append(index)
    return CaseScan(bad, empty, border_filling, num_classes, classes if num_classes else {})


#: what :func:`empty_labels` calls the groups of :func:`check_cases`, in order
_GROUP_NAMES = ("training", "validation")
#: label files :func:`empty_labels` and :func:`border_filling_labels` name as examples
_EMPTY_SHOWN = 3


def _found_in_groups(
    groups: Sequence[Sequence[dict]], scan: CaseScan, found: Sequence[int], label_key: str
) -> tuple[list[tuple[str, int, int]], str]:
    """Where the cases ``found`` by ``scan`` are: ``(group name, how many, readable cases)`` of each group that has
    some, and the first few label files of them, for a message."""
    bad, found = {index for index, _ in scan.bad}, set(found)
    counts, names, start = [], [], 0
    for position, group in enumerate(groups):
        readable = [i for i in range(start, start + len(group)) if i not in bad]
        hits = [i for i in readable if i in found]
        name = _GROUP_NAMES[position] if position < len(_GROUP_NAMES) else f"list {position + 1}"
        if hits:
            counts.append((name, len(hits), len(readable)))
            names += [str(groups[position][i - start].get(label_key)) for i in hits]
        start += len(group)
    return counts, ", ".join(names[:_EMPTY_SHOWN]) + (", ..." if len(names) > _EMPTY_SHOWN else "")


def _counted(counts: list[tuple[str, int, int]], noun: str) -> str:
    """``counts`` of :func:`_found_in_groups` in words: ``2 of 40 training labels and 1 of 5 validation labels``."""
    return " and ".join(f"{found} of {readable} {name} {noun}" for name, found, readable in counts)


def empty_labels(
    groups: Sequence[Sequence[dict]], scan: CaseScan, label_key: str = "label"
) -> tuple[str | None, str | None]:
    """What to say about labels without foreground: a warning counting them, and a refusal where every
    readable label of the training list (the first group) is one.

    An image without a lesion has an empty mask, so some are fine; but labels that are all empty train a network
    to find nothing (validation Dice 0), which is what masks read wrongly (a lesion in an unread channel, label
    files of another dataset) look like.

    Args:
        groups: the lists of cases that ``scan`` read one after the other, training first, then validation.
        scan: what :func:`scan_cases` found over the cases of ``groups``.
        label_key: the label key of a case, for the file names shown.

    Returns:
        the warning (``None`` when no label is empty) and the refusal (``None`` unless every readable training
        label is empty).

    Example::

        >>> warning, refusal = empty_labels([train, val], scan_cases(train + val, loading))  # doctest: +SKIP
        >>> warning  # doctest: +SKIP
        '2 of 40 training labels have no foreground (e.g. /data/masks/a.png, /data/masks/b.png): ...'
    """
    if not scan.empty:
        return None, None
    counts, shown = _found_in_groups(groups, scan, scan.empty, label_key)
    first, found, readable = counts[0]
    if first == _GROUP_NAMES[0] and found == readable:
        # every training label: the warning's counts would hide that nothing can be learnt
        return None, (
            f"every one of the {readable} readable training labels has no foreground (e.g. {shown}): the network "
            "would learn to find nothing; check that the label files are the right ones and hold the foreground "
            "as non-zero values (a 2D mask as a grey or colour image, or in its alpha channel)."
        )
    return (
        f"{_counted(counts, 'labels')} have no foreground (e.g. {shown}): fine for images without a lesion, but a "
        "label read as empty where it has one teaches the network to miss it."
    ), None


def border_filling_labels(groups: Sequence[Sequence[dict]], scan: CaseScan, label_key: str = "label") -> str | None:
    """A warning counting the 2D masks whose foreground covers at least :data:`BORDER_FILLING_SHARE` of their
    border pixels, as a mask drawn dark on a light background does, which the bundles read inverted.

    A mask alone cannot say which of its values is meant as lesion; the bundles take the brighter one. A mask whose
    "lesion" runs around the whole frame is most likely the background of such a mask, but it may be a lesion that
    fills the frame (dermoscopy close-ups): a warning, not a refusal.

    Args:
        groups: the lists of cases that ``scan`` read one after the other, training first, then validation.
        scan: what :func:`scan_cases` found over the cases of ``groups``.
        label_key: the label key of a case, for the file names shown.

    Returns:
        the warning, or ``None`` when no mask fills its border.

    Example::

        >>> border_filling_labels([train, val], scan_cases(train + val, loading))  # doctest: +SKIP
        '1 of 40 training masks have foreground on at least 90% of their border (e.g. /data/masks/a.png): ...'
    """
    if not scan.border_filling:
        return None
    counts, shown = _found_in_groups(groups, scan, scan.border_filling, label_key)
    return (
        f"{_counted(counts, 'masks')} have foreground on at least {BORDER_FILLING_SHARE:.0%} of their border (e.g. "
        f"{shown}): the bundles read the brighter value of a mask as lesion, so a mask drawn dark on a light "
        "background is read inverted, its background taken for the lesion; invert such masks first (fine where "
        "the lesion fills the whole frame)."
    )


def absent_classes(
    groups: Sequence[Sequence[dict]], scan: CaseScan, class_names: Sequence[str] | None = None
) -> str | None:
    """A warning naming the classes that no readable label of the training list (the first group) holds.

    A network learns nothing of a class it never sees: labels exported with one class merged into another, or
    ``num_classes`` set above the dataset's, look like this.

    Args:
        groups: the lists of cases that ``scan`` read one after the other, training first, then validation.
        scan: what :func:`scan_cases` found over the cases of ``groups`` (with ``num_classes`` above 1).
        class_names: the names of the classes 1, 2, ..., for the message.

    Returns:
        the warning, or ``None`` where every class is in some training label (or the bundle has one class).

    Example::

        >>> absent_classes([train, val], scan_cases(train + val, loading), ["pancreas", "cancer"])  # doctest: +SKIP
        'class 2 (cancer) is in none of the 40 readable training labels: ...'
    """
    if not scan.num_classes or not groups:
        return None
    training = [scan.classes[i] for i in range(len(groups[0])) if i in scan.classes]
    if not training:
        return None
    seen = frozenset().union(*training)
    names = list(class_names or [])
    absent = [
        f"{c} ({names[c - 1]})" if c <= len(names) else str(c) for c in range(1, scan.num_classes) if c not in seen
    ]
    if not absent:
        return None
    noun = "class" if len(absent) == 1 else "classes"
    verb = "is" if len(absent) == 1 else "are"
    return (
        f"{noun} {', '.join(absent)} {verb} in none of the {len(training)} readable training labels: the network "
        "cannot learn what it never sees; check that the labels hold every class (none merged into another) and that "
        "num_classes is the dataset's."
    )


class CheckedCases(list):
    """The cases of a list that passed :func:`check_cases`, with the list as it was given (``listed``, bad cases
    included).

    A training is known by the cases it was given (:class:`~monai_unets.handlers.TrainingCheckpoint` records them):
    a case skipped as bad (an image damaged since the last run) leaves the training the same one, which a re-run
    goes on with.

    Args:
        cases: the cases that passed.
        listed: the list they come from.

    Example::

        >>> kept = CheckedCases([{"image": "a.png"}], listed=[{"image": "a.png"}, {"image": "bad.png"}])
        >>> len(kept), len(kept.listed)
        (1, 2)
    """

    def __init__(self, cases: Sequence[dict], listed: Sequence[dict]) -> None:
        super().__init__(cases)
        self.listed = list(listed)


def check_cases(
    groups: Sequence[Sequence[dict]],
    loader: Callable | Sequence[Callable],
    policy: str = "error",
    keys: Sequence[str] = ("image", "label"),
    num_workers: int = 1,
    class_names: Sequence[str] | None = None,
) -> list[CheckedCases]:
    """The pre-flight check of training: every case of every group (training, validation) read and checked.

    Args:
        groups: lists of cases, e.g. ``[training_cases, validation_cases]``.
        loader: the transforms that read and check one case (see :func:`scan_cases`).
        policy: ``"error"`` stops with one message listing every bad case and its reason; ``"skip"`` logs each
            bad case as a warning and returns the groups without them.
        keys: keys each case must have, with existing files.
        num_workers: threads reading cases at once.
        class_names: the names of the classes 1, 2, ..., for the warning about classes no training label holds
            (:func:`absent_classes`).

    Returns:
        the groups, without the bad cases (each a :class:`CheckedCases`, which keeps the group as given).

    Raises:
        DataCheckError: with ``policy="error"`` and a bad case, when a group is left without any case, or when
            every training label has no foreground (some empty labels are logged as a warning, with a count; so are
            2D masks that fill their border, :func:`border_filling_labels`, and classes that no training label
            holds, :func:`absent_classes`).

    Example::

        >>> train, val = check_cases([train_cases, val_cases], loading, policy="skip")  # doctest: +SKIP
    """
    policy = _choice("bad_case_policy", policy, BAD_CASE_POLICIES)
    total = sum(len(group) for group in groups)
    flat = [case for group in groups for case in group]
    scan = scan_cases(flat, loader, keys, num_workers)
    bad = dict(scan.bad)
    if bad and policy == "error":
        lines = "".join(f"  {problem}\n" for problem in bad.values())
        raise DataCheckError(
            "",
            f"{lines}{len(bad)} of {total} cases cannot be used (listed above): fix or remove them, or set "
            "bad_case_policy to 'skip' to train on the other cases.",
        )
    for problem in bad.values():
        logger.warning("skipped %s", problem)
    kept, start = [], 0
    for group in groups:
        kept.append(CheckedCases([case for i, case in enumerate(group, start) if i not in bad], group))
        if group and not kept[-1]:
            raise DataCheckError("", f"every case of a list of {len(group)} is bad; nothing to train on.")
        start += len(group)
    if bad:
        logger.warning("data check: skipped %d bad of %d cases; using %d.", len(bad), total, total - len(bad))
    label_key = keys[1] if len(keys) > 1 else "label"
    empty, refusal = empty_labels(groups, scan, label_key)
    if refusal:
        raise DataCheckError("", refusal)
    for warning in (empty, border_filling_labels(groups, scan, label_key), absent_classes(groups, scan, class_names)):
        if warning:
            logger.warning("data check: %s", warning)
    return kept
