"""Planning from a dataset fingerprint: spacing, normalisation, patch and batch size, classes, post-processing.

A plan is a JSON dictionary the bundles' configs read (``plan: "$monai_unets.load_plan(@plan_file)"``,
``pixdim: "@plan#spacing"``), so that a new dataset, CT or MR, needs ``monai-unets plan`` then ``train`` and no
overrides. The fingerprint (what is measured) and the rules that turn it into a plan follow nnU-Net:

- target spacing: the median spacing per axis; for strongly anisotropic data (the coarsest axis more than 3 times
  the finest, and 3 times fewer voxels along it) the coarse axis takes the 10th percentile of its spacings;
- normalisation: CT (intensities in Hounsfield units) is clipped to the 0.5 / 99.5 percentiles of the foreground
  intensities, then z-scored with the foreground mean and standard deviation; every other modality gets a
  per-image z-score on its non-zero voxels;
- patch size: the median resampled shape, its longest side (in mm) shrunk until it fits a voxel budget set by the
  device (a GPU's memory, or a CPU's speed); batch size 2 full-size patches on a GPU, one on a CPU (small
  steps learn more per CPU minute), more for small images;
- post-processing: none until the training's validation decides
  (:class:`~monai_unets.handlers.PostprocessingSelector`).

Example::

    >>> plan = plan_dataset("/data/Task07_Pancreas")  # doctest: +SKIP
    >>> save_plan(plan, "/data/Task07_Pancreas/plan.json")  # doctest: +SKIP
    >>> load_plan("/data/Task07_Pancreas/plan.json")["spacing"]  # doctest: +SKIP
    [0.8, 0.8, 2.5]
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_open, companion_name
from .checks import CheckCased

__all__ = [
    "DEFAULT_PLAN",
    "MODEL_DIGEST_KEY",
    "PLAN_VERSION",
    "MissingModelError",
    "PlanMismatchError",
    "choose_patch_size",
    "class_labels",
    "class_names_of",
    "choose_target_spacing",
    "dataset_plan",
    "detect_modality",
    "EXPORTED_PLAN_KEY",
    "ensemble_plan",
    "find_plan_of",
    "fingerprint_dataset",
    "load_plan",
    "make_plan",
    "model_settings",
    "plan_dataset",
    "plan_file_of",
    "save_plan",
    "voxel_budget",
    "weights_plan_file",
]

# 2: the non-CT crop is the non-zero region, ``foreground_threshold`` null (version 1 wrote 0, "> 0")
PLAN_VERSION = 2

# What the CT bundles use without a plan: their original pancreas recipe (1.5 x 1.5 x 2 mm, a soft-tissue window).
DEFAULT_PLAN: dict[str, Any] = {
    "version": PLAN_VERSION,
    "modality": "CT",
    "spacing": [1.5, 1.5, 2.0],
    "normalization": {"scheme": "ct", "clip": [-87.0, 199.0], "mean": 56.0, "std": 72.0},
    "foreground_threshold": -500.0,
    "patch_size": [96, 96, 96],
    "batch_size": 2,
    "num_classes": 3,
    "labels": {"1": "pancreas", "2": "tumour"},
    "class_names": ["pancreas", "tumour"],
    "postprocessing": {"keep_largest": []},
}

# Voxels (sampled per case) kept to estimate foreground intensity percentiles, as nnU-Net does.
_SAMPLES_PER_CASE = 10_000
# Patch sides are multiples of this, so that 5 halvings (the deepest bundle network) divide them evenly.
_PATCH_DIVISOR = 32
_MIN_PATCH_SIDE = 32
# Resampled sides a few hundredths of a voxel over a whole number are that number: float32 header spacings
# (0.30000001) and target spacings rounded to 4 decimals (512 x 0.390625 / 0.3906 = 512.03) leave such excess,
# which must not add 32 voxels to the patch; resampling rounds the side to whole voxels anyway.
_SHAPE_TOLERANCE = 0.1


#: distance (mm) within which planning takes a label to lie on its image (see _read_case)
_PLANNING_AFFINE_TOLERANCE = 1.0


def _file_names(path: str | Sequence[str]) -> str:
    """An image's file, or its channel files joined, as messages name them."""
    return path if isinstance(path, str) else ", ".join(path)


def _read_case(
    image_path: str | Sequence[str], label_path: str | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Image (C, X, Y, Z) and label (X, Y, Z) in RAS orientation, and the voxel spacing (mm); the image from one
    file or, given several, one channel from each."""
    from monai.transforms import EnsureChannelFirstd, LoadImaged, Orientationd

    from .dataset import describe_error
    from .medical_io import MedicalImageReader

    paths = {"image": image_path, **({"label": label_path} if label_path else {})}
    data = {}
    for key, path in paths.items():
        # each key on its own, so that the message names the file at fault and what is wrong with it
        for file in [path] if isinstance(path, str) else path:
            if not os.path.exists(file):
                raise ValueError(f"{file}: {key} file does not exist.")
        try:
            # several files: one channel each, as the bundles load them
            data.update(LoadImaged(key, reader=MedicalImageReader(), image_only=True)({key: path}))
        except Exception as error:  # noqa: BLE001 - any reader failure becomes a message naming the file
            named = _file_names(path)
            raise ValueError(f"{named}: cannot read the {key}: {describe_error(error, named)}") from error
    # labels given, as MONAI warns on every run where its changed default is left to apply: None names the axes by
    # the image's space (RAS, or LPS), as the bundles' ResampleSpacingd does
    orient = Orientationd(list(paths), axcodes="RAS", labels=None)
    data = EnsureChannelFirstd(list(paths))(data)
    if label_path:
        # the label checks of training: a label off its image's grid, or of several channels (one-hot, a layered
        # segmentation), had been planned from, its first channel taken as the label. Placed within a millimetre,
        # a label measures its image's intensities as well: the drift of headers that a training's
        # --affine_tolerance allows is not refused here, which no setting of planning could allow
        check = CheckCased(["image", "label"], affine_tolerance=_PLANNING_AFFINE_TOLERANCE)
        data["label"] = check.check_label(data["label"], data["image"])
    data = orient(data)
    image = data["image"]
    spacing = np.asarray(image.pixdim, dtype=float)[:3]
    label = None
    if label_path:
        label = np.asarray(data["label"])[0]
        if label.shape != tuple(image.shape[1:]):
            raise ValueError(
                f"label {label_path} has shape {label.shape}, image {_file_names(image_path)} {tuple(image.shape[1:])}"
            )
    return np.asarray(image, dtype=np.float32), label, spacing


def detect_modality(minimum: float, low_percentile: float) -> str:
    """``"CT"`` when the intensities look like Hounsfield units (air near -1000), else ``"MR"``.

    Args:
        minimum: the lowest intensity over the dataset.
        low_percentile: the 0.5th percentile of the sampled intensities of the whole images.

    Returns:
        ``"CT"`` where ``minimum`` is at most -900 and ``low_percentile`` at most -500, else ``"MR"``.

    Example::

        >>> detect_modality(-1024.0, -1000.0), detect_modality(0.0, 0.0)
        ('CT', 'MR')
    """
    return "CT" if minimum <= -900 and low_percentile <= -500 else "MR"


# CT under the names datasets give it: contrast-enhanced (CECT), non-contrast (NCCT, NECT), angiography (CTA,
# CCTA), cone-beam, multi-detector, high-resolution, low-dose and 4D CT, and the words written out
_CT_WORDS = frozenset({"CT", "CTA", "CCTA", "CECT", "NCCT", "NECT", "CBCT", "MDCT", "HRCT", "LDCT", "4DCT"})
_CT_PHRASE = re.compile(r"COMPUTE[RD]?(?:IZED|ISED)?\s*TOMOGRAPH")


def _is_ct_name(name: str) -> bool:
    """Whether a declared modality names CT (``"CT"``, ``"CECT"``, ``"CT arterial"``, ``"Computed Tomography"``)."""
    upper = name.upper()
    return bool(_CT_WORDS.intersection(re.findall(r"[A-Z0-9]+", upper))) or bool(_CT_PHRASE.search(upper))


def _declared_modality(dataset: Mapping, datalist: str | os.PathLike) -> tuple[str | None, int | None]:
    """The modality a dataset.json names (``modality``, or nnU-Net's ``channel_names``) and its number of input
    channels; ``None`` for what it does not name.

    Channels of several modalities (MSD's prostate T2 and ADC, brain FLAIR, T1w, ...) are planned together: every
    channel of an image is normalised alike, so they must all be CT (Hounsfield units, normalised with the
    dataset's statistics) or all other modalities (each channel of each image z-scored on its own).
    """
    modality = dataset.get("modality") or dataset.get("channel_names")
    if isinstance(modality, Mapping) and modality:
        names = [str(name) for name in modality.values()]
        if len({_is_ct_name(name) for name in names}) > 1:
            raise ValueError(
                f"{datalist}: its input channels {dict(modality)} mix CT with other modalities; the bundles "
                "normalise every channel of an image alike (CT by the dataset's Hounsfield statistics, the others "
                "each by its own), so plan datasets of CT channels or of other channels only"
            )
        return names[0], len(names)
    return (modality if isinstance(modality, str) else None), None


def _read_labelled_case(case: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One datalist case's image (C, X, Y, Z), label and spacing; ``ValueError`` naming the file and what is wrong.

    The channels are the image file's own (a 4D NIfTI of MSD's multi-modal tasks) or one file each (a datalist's
    list of files, nnU-Net's ``<case>_0000``, ``<case>_0001``, ...).
    """
    image_path = case["image"]
    if not isinstance(image_path, str) and len(image_path) == 1:
        image_path = image_path[0]
    return _read_case(image_path, case["label"])


def _label_values(label: np.ndarray, label_path: str) -> tuple[np.ndarray, np.ndarray]:
    """The class numbers in a label map and their voxel counts; ``ValueError`` for values that are not whole."""
    values, counts = np.unique(label, return_counts=True)
    fractional = values[values != np.round(values)]
    if fractional.size:
        # cast to integers, 0.999999 (a label map resampled linearly) had been counted as background
        shown = ", ".join(f"{float(v):.9g}" for v in fractional[:5])
        raise ValueError(
            f"{label_path}: label values {shown} are not whole class numbers; save the labels as integers "
            "(a label map resampled with linear interpolation needs nearest-neighbour instead)"
        )
    return values.astype(np.int64), counts


def _check_plannable(
    case: Mapping[str, Any], image: np.ndarray, label: np.ndarray, channels: int | None, declared: bool
) -> None:
    """Raises ValueError naming the case's files where its image cannot enter the plan: another number of channels
    than ``channels`` (the dataset's declared count where ``declared``, else its first case's), voxels that are not
    finite in float32, or one constant value under a label."""
    from .checks import all_finite, constant_image_problem

    files = _file_names(case["image"])
    if channels is not None and image.shape[0] != channels:
        expected = "the dataset declares" if declared else "the dataset's first case has"
        raise ValueError(f"{files}: the image has {image.shape[0]} channel(s); {expected} {channels}")
    # as the bundles take it, in float32: in the statistics, NaN, infinite voxels or values beyond float32's
    # range made a normalisation of NaN or of infinite std, which trained NaN weights
    voxels = torch.from_numpy(image.astype(np.float32, copy=False)) if image.dtype.kind == "f" else None
    if voxels is not None and not all_finite(voxels):
        bad = int((~torch.isfinite(voxels)).sum())
        raise ValueError(f"{files}: {bad} voxels are NaN, infinite or beyond float32's range; fix the file")
    if image.size and image.min() == image.max() and bool((label > 0).any()):
        # its one value would stretch the intensity window every image is normalised with
        raise ValueError(f"{files}: {constant_image_problem(float(image.min()))}")


def _planned_labels(
    meta: Mapping[str, Any], datalist: Path, counts: Mapping[int, int], first_file: Mapping[int, str], num_cases: int
) -> dict[int, str]:
    """The dataset's classes: those its ``labels`` declare (every value found must be one), else the values found,
    named ``class<k>``; a declared class that no label holds is warned of."""
    from .checks import declared_labels

    labels = declared_labels(meta, datalist)
    if labels is not None:
        unknown = sorted(set(counts) - set(labels))
        if unknown:
            where = "; ".join(f"{value} first in {first_file[value]}" for value in unknown[:5])
            raise ValueError(f"labels of {datalist} hold values {unknown} that its 'labels' do not declare ({where})")
    else:
        labels = {v: ("background" if v == 0 else f"class{v}") for v in sorted(counts)}
    _check_no_gaps(labels, datalist)
    absent = [f"{value} ({name})" for value, name in sorted(labels.items()) if value and not counts.get(value)]
    if absent:
        warnings.warn(
            f"{datalist}: declared class {', '.join(absent)} appears in none of the {num_cases} training labels; "
            "a bundle trained on them never learns it.",
            stacklevel=3,
        )
    return labels


def _planned_modality(declared: str | None, minimum: float, low_percentile: float, datalist: Path) -> str:
    """ "CT" or "MR": the declared modality where there is one (warning where the intensities look like the other),
    else the one the intensities suggest."""
    detected = detect_modality(minimum, low_percentile)
    if declared is None:
        return detected
    # MSD names MR sequences (T1w, FLAIR, ADC, ...); all but CT get per-image normalisation
    modality = "CT" if _is_ct_name(declared) else "MR"
    if modality != detected:
        # the declaration is followed: intensities can resemble the other modality's (an MR with negative
        # values, a CT cropped to the body or stored without its rescale)
        warnings.warn(
            f"{datalist}: its modality {declared!r} is planned as {modality}, but the intensities look like "
            f"{detected} (minimum {minimum:g}, 0.5th percentile {low_percentile:g}); if the images are "
            f"{detected}, declare that modality and plan again.",
            stacklevel=3,
        )
    return modality


def fingerprint_dataset(
    datalist: str | os.PathLike, dataset_dir: str | os.PathLike | None = None, key: str = "training", seed: int = 0
) -> dict[str, Any]:
    """Measure a labelled dataset: spacings, shapes, intensities (whole image and foreground), classes, modality.

    Args:
        datalist: an MSD ``dataset.json`` or a MONAI datalist with a ``key`` list of ``{image, label}``.
        dataset_dir: folder relative paths are resolved against (default: the datalist's folder).
        key: the list of labelled cases.
        seed: seed of the voxel sampling.

    Returns:
        a JSON-serialisable dictionary (per-case spacings and shapes in RAS order, intensity statistics, class
        voxel fractions, label values and names, the declared or detected modality).

    Raises:
        ValueError: no labelled case, unreadable or unusable cases (every one of them named, the files and what
            is wrong), or a label with a value the dataset's ``labels`` do not declare.

    Example::

        >>> fingerprint = fingerprint_dataset("/data/Task07_Pancreas/dataset.json")  # doctest: +SKIP
        >>> fingerprint["modality"], fingerprint["labels"]  # doctest: +SKIP
        ('CT', {'0': 'background', '1': 'pancreas', '2': 'cancer'})
    """
    from .checks import load_datalist

    datalist = Path(datalist)
    if not datalist.is_file():
        raise FileNotFoundError(f"datalist {datalist} does not exist.")
    try:
        meta = json.loads(datalist.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"datalist {datalist} is not valid JSON: {error}") from error
    base = Path(dataset_dir) if dataset_dir else datalist.parent
    cases = [c for c in load_datalist(datalist, key, base) if c.get("label")]
    if not cases:
        raise ValueError(f"datalist {datalist} has no labelled case in {key!r}.")

    # before any case is read: channels of CT and of other modalities are refused as a whole
    declared, declared_channels = _declared_modality(meta, datalist)
    channels: int | None = declared_channels
    rng = np.random.default_rng(seed)
    spacings, shapes, foreground, whole, counts = [], [], [], [], {}
    first_file: dict[int, str] = {}  # the first label file holding each value, for messages
    minimum = np.inf
    failures = []  # every case at fault is named, as check-data names them, not only the first
    for case in cases:
        try:
            image, label, spacing = _read_labelled_case(case)
            values, n = _label_values(label, case["label"])
            _check_plannable(case, image, label, channels, declared_channels is not None)
        except ValueError as error:
            failures.append(str(error))
            continue
        channels = image.shape[0]
        spacings.append(spacing.tolist())
        shapes.append(list(image.shape[1:]))
        minimum = min(minimum, float(image.min()))
        flat = image.ravel()
        whole.append(flat[rng.integers(0, flat.size, _SAMPLES_PER_CASE)])
        fg = image[:, label > 0].ravel()
        if fg.size:
            foreground.append(fg[rng.integers(0, fg.size, min(_SAMPLES_PER_CASE, fg.size))])
        for v, c in zip(values.tolist(), n.tolist()):
            counts[v] = counts.get(v, 0) + c
            first_file.setdefault(v, str(case["label"]))
    if len(failures) == 1:
        raise ValueError(failures[0])
    if failures:
        raise ValueError(
            f"{datalist}: {len(failures)} of its {len(cases)} labelled cases cannot be planned:\n  "
            + "\n  ".join(failures)
        )

    labels = _planned_labels(meta, datalist, counts, first_file, len(cases))
    total = sum(counts.values())
    whole_all = np.concatenate(whole)
    fg_all = np.concatenate(foreground) if foreground else whole_all
    low_percentile = float(np.percentile(whole_all, 0.5))
    modality = _planned_modality(declared, minimum, low_percentile, datalist)
    intensity = {
        "mean": float(fg_all.mean()),
        "std": float(fg_all.std()),
        "percentile_00_5": float(np.percentile(fg_all, 0.5)),
        "percentile_99_5": float(np.percentile(fg_all, 99.5)),
    }
    if not all(math.isfinite(value) for value in intensity.values()):
        raise ValueError(
            f"{datalist}: the foreground intensities of its images give no finite statistics ({intensity}): an image "
            "holds values far beyond its modality's range; `monai-unets check-data` shows its intensities."
        )
    return {
        "num_cases": len(cases),
        "spacings": spacings,
        "shapes": shapes,
        "intensity_min": minimum,
        "foreground_intensity": intensity,
        "labels": {str(k): v for k, v in sorted(labels.items())},
        "class_fractions": {str(k): counts.get(k, 0) / total for k in sorted(labels)},
        "modality": modality,
        "num_channels": int(channels or 1),
    }


def choose_target_spacing(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]]) -> list[float]:
    """Median spacing, with nnU-Net's rule for anisotropic data (10th percentile on the coarse axis).

    Args:
        spacings: the voxel spacing (mm) of each case, one row per case, one value per axis.
        shapes: the shape (voxels) of each case, in the order and axes of ``spacings``.

    Returns:
        the target spacing (mm) per axis, rounded to 4 decimals. Where the coarsest median spacing is more than 3
        times the finest and the cases resampled to the medians have fewer than a third as many voxels along that
        axis as along any other, the coarse axis takes the 10th percentile of its spacings, but stays coarser
        than every other axis.

    Example::

        >>> choose_target_spacing([[1, 1, 5], [1, 1, 6], [1, 1, 7]], [[200, 200, 30]] * 3)
        [1.0, 1.0, 5.2]
    """
    spacings = np.asarray(spacings, dtype=float)
    shapes = np.asarray(shapes, dtype=float)
    target = np.median(spacings, axis=0)
    target_shape = np.median(shapes * spacings / target, axis=0)
    coarse = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != coarse]
    if target[coarse] > 3 * target[others].min() and target_shape[coarse] * 3 < target_shape[others].min():
        coarse_spacing = np.percentile(spacings[:, coarse], 10)
        target[coarse] = max(coarse_spacing, target[others].max() + 1e-5)
    return [round(float(s), 4) for s in target]


def _training_device(device: str | torch.device | None) -> torch.device:
    """The device a plan is made for: the one given, else CUDA when present, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def voxel_budget(device: str | torch.device | None = None) -> int:
    """Voxels in one training patch that the device handles well.

    A GPU gets a budget from its memory (about 128^3 at 16 GiB and more, 96^3 at 8 GiB, 64^3 below); a CPU gets
    64^3, since there speed, not memory, is what limits training.

    Args:
        device: the device training runs on (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``); any type
            other than CUDA counts as a CPU. Default: CUDA when present, else the CPU.

    Example::

        >>> voxel_budget("cpu") == 64**3
        True
    """
    device = _training_device(device)
    if device.type != "cuda":
        return 64**3
    memory_gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    if memory_gib >= 16:
        return 128**3
    return 96**3 if memory_gib >= 8 else 64**3


def choose_patch_size(median_shape: Sequence[float], spacing: Sequence[float], budget: int) -> list[int]:
    """A patch of at most ``budget`` voxels, shaped like the median image in mm, sides multiples of 32.

    Starts from the median resampled shape (rounded up to a multiple of 32; a side at most a tenth of a voxel over
    one is not rounded up), then shrinks by 32 voxels the side that is longest in millimetres until the patch fits,
    as nnU-Net does.

    Args:
        median_shape: the median shape of the cases resampled to ``spacing``, in voxels per axis (fractions allowed).
        spacing: the target spacing (mm) per axis, which tells the side that is longest in millimetres.
        budget: the most voxels the patch may hold (:func:`voxel_budget`). No side goes below 32, so a budget
            under 32 voxels per side gives a patch of 32 per side, larger than the budget.

    Returns:
        the patch size in voxels per axis, each side a multiple of 32 and at least 32.

    Example::

        >>> choose_patch_size([200, 200, 200], [1.0, 1.0, 1.0], 64**3)
        [64, 64, 64]
    """
    patch = [
        max(_MIN_PATCH_SIDE, int(np.ceil((s - _SHAPE_TOLERANCE) / _PATCH_DIVISOR)) * _PATCH_DIVISOR)
        for s in median_shape
    ]
    while int(np.prod(patch)) > budget:
        shrinkable = [i for i, p in enumerate(patch) if p > _MIN_PATCH_SIDE]
        if not shrinkable:
            break
        longest = max(shrinkable, key=lambda i: patch[i] * spacing[i])
        patch[longest] -= _PATCH_DIVISOR
    return patch


def make_plan(fingerprint: Mapping[str, Any], device: str | torch.device | None = None) -> dict[str, Any]:
    """Turn a fingerprint (:func:`fingerprint_dataset`) into a plan for the given device (default: this one).

    Args:
        fingerprint: what :func:`fingerprint_dataset` measured; read are ``spacings``, ``shapes``, ``modality``,
            ``labels``, ``class_fractions`` and ``foreground_intensity`` (its ``mean``, ``std``,
            ``percentile_00_5`` and ``percentile_99_5`` make the normalisation of CT; other modalities are
            z-scored per image).
        device: the device training runs on (``"cpu"``, ``"cuda"``, a ``torch.device``); it sets the voxel
            budget of the patch (:func:`voxel_budget`) and the batch size: as many patches as twice the budget
            holds on a GPU (at least 2), as the budget holds on a CPU (at least 1), at most 8. Default: CUDA when
            present, else the CPU.

    Returns:
        the plan: ``version``, ``modality``, ``spacing`` (mm), ``median_shape`` (voxels at that spacing),
        ``normalization``, ``foreground_threshold`` (-500 HU for CT, ``None``, the non-zero region, otherwise),
        ``patch_size``, ``batch_size``, ``num_classes`` (the background included), ``labels``, ``class_names``,
        ``class_fractions`` and ``postprocessing`` (none yet).

    Example::

        >>> fingerprint = {
        ...     "spacings": [[0.8, 0.8, 2.5], [0.8, 0.8, 3.0], [0.8, 0.8, 2.5]],
        ...     "shapes": [[512, 512, 90], [512, 512, 80], [512, 512, 100]],
        ...     "modality": "CT",
        ...     "foreground_intensity": {"mean": 80.0, "std": 60.0, "percentile_00_5": -90.0, "percentile_99_5": 250.0},
        ...     "labels": {"0": "background", "1": "pancreas", "2": "tumour"},
        ...     "class_fractions": {"0": 0.998, "1": 0.0018, "2": 0.0002},
        ... }
        >>> plan = make_plan(fingerprint, "cpu")
        >>> plan["spacing"], plan["patch_size"], plan["batch_size"], plan["normalization"]["clip"]
        ([0.8, 0.8, 2.5], [64, 96, 32], 1, [-90.0, 250.0])
    """
    spacing = choose_target_spacing(fingerprint["spacings"], fingerprint["shapes"])
    resampled = np.asarray(fingerprint["shapes"]) * np.asarray(fingerprint["spacings"]) / np.asarray(spacing)
    median_shape = np.median(resampled, axis=0).tolist()
    budget = voxel_budget(device)
    patch = choose_patch_size(median_shape, spacing, budget)
    # a GPU takes 2 full-size patches per step (more for small images); a CPU learns more per minute from
    # smaller, more frequent steps: one budget of voxels per step (the bundles crop 2 patches per volume, so a
    # step still sees 2 patches)
    on_cpu = _training_device(device).type != "cuda"
    per_step = budget if on_cpu else 2 * budget
    batch_size = max(1 if on_cpu else 2, min(8, per_step // int(np.prod(patch))))
    intensity = fingerprint["foreground_intensity"]
    if fingerprint["modality"] == "CT":
        normalization = {
            "scheme": "ct",
            "clip": [intensity["percentile_00_5"], intensity["percentile_99_5"]],
            "mean": intensity["mean"],
            "std": max(intensity["std"], 1e-8),
        }
        # air (-1000 HU) is background; the body is cropped from everything denser than fat and lung
        foreground_threshold = -500.0
    else:
        normalization = {"scheme": "zscore_nonzero"}
        # the non-zero region, as nnU-Net crops: only the background is zero; the tissue of an MR may be negative
        foreground_threshold = None
    # the label values are 0 .. K-1 without gaps (fingerprint_dataset checks them): the names of 1 .. K-1 in order
    class_names = class_names_of(fingerprint["labels"])
    return {
        "version": PLAN_VERSION,
        "modality": fingerprint["modality"],
        # the network's input channels (the image's modalities, normalised alike)
        "in_channels": int(fingerprint.get("num_channels", 1)),
        "spacing": spacing,
        "median_shape": [round(s) for s in median_shape],
        "normalization": normalization,
        "foreground_threshold": foreground_threshold,
        "patch_size": patch,
        "batch_size": int(batch_size),
        "num_classes": len(class_names) + 1,
        "labels": class_labels(class_names),
        "class_names": class_names,
        "class_fractions": fingerprint["class_fractions"],
        "postprocessing": {"keep_largest": []},
    }


def class_labels(class_names: Sequence[str]) -> dict[str, str]:
    """A plan's ``labels``: label value (as a JSON key) -> name, for ``class_names``, the names of values 1, 2, ...

    What inference names the DICOM SEG's segments and MONAI Label's labels by.

    Args:
        class_names: the names of the classes after the background (label 0).

    Example::

        >>> class_labels(["pancreas", "tumour"])
        {'1': 'pancreas', '2': 'tumour'}
    """
    return {str(value): name for value, name in enumerate(class_names, start=1)}


def class_names_of(labels: Mapping[str, str] | Mapping[int, str]) -> list[str]:
    """The names of a ``labels`` map's classes after the background, in the order of their values: the inverse of
    :func:`class_labels`.

    Args:
        labels: label value (an integer, or one as a JSON key) -> name; a background entry (0) is left out.

    Example::

        >>> class_names_of({"2": "tumour", "1": "pancreas"}), class_names_of({0: "background", 1: "liver"})
        (['pancreas', 'tumour'], ['liver'])
    """
    return [name for value, name in sorted((int(value), name) for value, name in labels.items()) if value != 0]


def record_classes_in_metadata(metadata_file: str | os.PathLike, class_names: Sequence[str]) -> bool:
    """Sets the output classes of a bundle's ``metadata.json`` to the background and ``class_names``.

    The metadata describes the weights in the bundle's ``models/model.pt``: MONAI Label names the classes of a served
    bundle by its ``network_data_format`` (``outputs`` ``pred`` ``channel_def``), and MONAI's ``verify_net_in_out``
    checks the network's output channels against ``num_channels``. A training of other classes (another dataset,
    ``--num_classes`` with ``--class_names``) therefore writes its classes there with its weights, and so their
    descriptions for people (``label_classes``, ``pred_classes``). The file is rewritten, atomically, only where its
    classes differ; its other entries are kept.

    Args:
        metadata_file: the bundle's ``configs/metadata.json``.
        class_names: the names of the classes after the background (label 0).

    Returns:
        whether the file was changed.

    Example::

        >>> record_classes_in_metadata("configs/metadata.json", ["spleen"])  # doctest: +SKIP
        True
    """
    channels = {"0": "background", **class_labels(class_names)}
    described = {
        "label_classes": ", ".join(f"{value} {name}" for value, name in channels.items()),
        "pred_classes": f"{len(channels)} channels of logits: {', '.join(channels.values())}",
    }

    def change(metadata: dict) -> bool:
        output = next(iter(metadata["network_data_format"]["outputs"].values()))
        if (
            output.get("channel_def") == channels
            and output.get("num_channels") == len(channels)
            and all(metadata.get(key) == value for key, value in described.items())
        ):
            return False
        output["channel_def"], output["num_channels"] = channels, len(channels)
        metadata.update(described)
        return True

    return _rewrite_metadata(metadata_file, change)


def record_inputs_in_metadata(
    metadata_file: str | os.PathLike, in_channels: int, modality: str, patch_size: Sequence[int] | None = None
) -> bool:
    """Sets the input of a 3D bundle's ``metadata.json`` to images of ``in_channels`` channels of ``modality``, and
    the ``spatial_shape`` of its input and output patches to ``patch_size``.

    A bundle planned for another dataset (an MR, a multi-modal MR of several channels) trains weights that take
    its images: the metadata of ``models/model.pt`` then says so, for MONAI's ``verify_net_in_out`` (which builds
    its test input from ``num_channels``) and for the model zoo's readers, and so does its description for people
    (``image_classes``). The file is rewritten, atomically, only where the input differs; its other entries are
    kept.

    Args:
        metadata_file: the bundle's ``configs/metadata.json``.
        in_channels: the images' channels (the plan's ``in_channels``).
        modality: the plan's ``modality``: ``"CT"`` (Hounsfield units) or another (MR and others: magnitudes).
        patch_size: the plan's ``patch_size``, which the weights were trained on; ``None`` leaves the shapes.

    Returns:
        whether the file was changed.

    Example::

        >>> record_inputs_in_metadata("configs/metadata.json", 2, "MR")  # doctest: +SKIP
        True
    """
    described = {
        "num_channels": int(in_channels),
        "modality": modality,
        "format": "hounsfield" if modality == "CT" else "magnitude",
        "channel_def": {"0": "image"}
        if in_channels == 1
        else {str(c): f"image channel {c}" for c in range(in_channels)},
    }

    image_classes = (
        f"{'single channel CT or MR' if in_channels == 1 else f'{in_channels} channels of {modality}'}, normalised as "
        "the dataset's plan says (CT: clipped to the foreground's 0.5-99.5 percentiles and z-scored; MR: z-scored per "
        "image)"
    )

    shape = None if patch_size is None else [int(n) for n in patch_size]

    def change(metadata: dict) -> bool:
        image = next(iter(metadata["network_data_format"]["inputs"].values()))
        patches = [
            *metadata["network_data_format"]["inputs"].values(),
            *metadata["network_data_format"]["outputs"].values(),
        ]
        if (
            all(image.get(key) == value for key, value in described.items())
            and metadata.get("image_classes") == image_classes
            and (shape is None or all(patch.get("spatial_shape") == shape for patch in patches))
        ):
            return False
        image.update(described)
        metadata["image_classes"] = image_classes
        for patch in patches if shape is not None else []:
            patch["spatial_shape"] = shape
        return True

    return _rewrite_metadata(metadata_file, change)


#: ``metadata.json`` key of the fingerprint (:func:`~monai_unets.handlers.weights_fingerprint`) of the
#: ``models/model.pt`` whose training recorded the input ``spatial_shape``
MODEL_DIGEST_KEY = "model_sha256"


def record_input_size_in_metadata(
    metadata_file: str | os.PathLike, size: Sequence[int], fingerprint: str | None = None
) -> bool:
    """Sets the input ``spatial_shape`` of a 2D bundle's ``metadata.json``: the size its images are resized to.

    Outputs described at the input's size (the segmentation) are set to the new size with it.

    The weights in ``models/model.pt`` are bound to the size they were trained at; the 2D bundles' inference and
    evaluation resize images to the size recorded there, unless given an ``image_size``. With ``fingerprint`` the
    file also records which weights the size is theirs (:data:`MODEL_DIGEST_KEY`): other weights copied into the
    bundle later are not taken to have it. The file is rewritten, atomically, only where something differs; its
    other entries are kept.

    Args:
        metadata_file: the bundle's ``configs/metadata.json``.
        size: the spatial size the training resized its images to.
        fingerprint: :func:`~monai_unets.handlers.weights_fingerprint` of the weights just saved with that size
            (the bundle's ``models/model.pt``).

    Returns:
        whether the size was changed.

    Example::

        >>> record_input_size_in_metadata("configs/metadata.json", [384, 384], "9f2c...")  # doctest: +SKIP
        True
    """
    shape = [int(v) for v in size]
    resized = False

    def change(metadata: dict) -> bool:
        nonlocal resized
        image = next(iter(metadata["network_data_format"]["inputs"].values()))
        resized = image.get("spatial_shape") != shape
        # the segmentation comes out at its input's size: left at the old size, the metadata contradicted itself
        for output in metadata["network_data_format"]["outputs"].values():
            if output.get("spatial_shape") == image.get("spatial_shape"):
                output["spatial_shape"] = shape
        image["spatial_shape"] = shape
        bound = fingerprint is None or metadata.get(MODEL_DIGEST_KEY) == fingerprint
        if fingerprint is not None:
            metadata[MODEL_DIGEST_KEY] = fingerprint
        return resized or not bound

    _rewrite_metadata(metadata_file, change)
    return resized


def _rewrite_metadata(metadata_file: str | os.PathLike, change: Callable[[dict], bool]) -> bool:
    """Rewrites ``metadata_file`` atomically where ``change`` changed its content (it says whether it did)."""
    metadata = json.loads(Path(metadata_file).read_text())
    if not change(metadata):
        return False
    with atomic_open(metadata_file) as f:
        f.write(json.dumps(metadata, indent=4, ensure_ascii=False) + "\n")
    return True


def plan_dataset(
    dataset_dir: str | os.PathLike,
    datalist: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Fingerprint a dataset and plan for it: :func:`fingerprint_dataset` then :func:`make_plan`.

    Args:
        dataset_dir: the dataset folder.
        datalist: MSD ``dataset.json`` or MONAI datalist (default: ``dataset_dir/dataset.json``).
        device: the device the plan is for (default: CUDA when present, else the CPU).

    Returns:
        the plan of :func:`make_plan`, with a ``fingerprint`` entry that keeps the number of cases, the lowest
        intensity and the foreground intensity statistics.

    Example::

        >>> plan = plan_dataset("/data/Task07_Pancreas")  # doctest: +SKIP
        >>> plan["modality"], plan["spacing"]  # doctest: +SKIP
        ('CT', [0.8, 0.8, 2.5])
    """
    datalist = Path(datalist) if datalist else Path(dataset_dir) / "dataset.json"
    fingerprint = fingerprint_dataset(datalist, dataset_dir)
    plan = make_plan(fingerprint, device)
    plan["fingerprint"] = {k: fingerprint[k] for k in ("num_cases", "intensity_min", "foreground_intensity")}
    return plan


def save_plan(plan: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Write a plan as JSON, atomically (a temporary file renamed into place); returns the path.

    Args:
        plan: the plan (:func:`make_plan`, :func:`plan_dataset`); its values must be JSON-serialisable.
        path: the JSON file to write; its folder is created where missing, and a file there is replaced.

    Returns:
        ``path`` as a string.

    Example::

        >>> save_plan(plan_dataset("/data/Task07_Pancreas"), "/data/Task07_Pancreas/plan.json")  # doctest: +SKIP
        '/data/Task07_Pancreas/plan.json'
    """
    # atomic_open: a temporary file of the umask's permissions (a NamedTemporaryFile's 0600 left the plan unreadable
    # to the other accounts that read the weights beside it, a MONAI Label server's)
    with atomic_open(path) as f:
        json.dump(plan, f, indent=2)
    return str(path)


# the plan of a cross-validation fold, beside its weights model_fold<k>.pt (plan_file_of)
_FOLD_PLAN = re.compile(r"plan_fold(\d+)\.json")

_REQUIRED = ("spacing", "normalization", "foreground_threshold", "patch_size", "batch_size", "num_classes", "labels")


def load_plan(path: str | os.PathLike | None, default: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a plan; when the file does not exist, return ``default`` (the bundles' original CT recipe).

    Keys that later versions added are taken from the default where the file lacks them, so a plan written by an
    older version still loads; a version 1 plan's non-CT crop (threshold 0) becomes the non-zero region that
    version 2 writes. A cross-validation fold's plan (``plan_fold<k>.json``) that records another fold is refused:
    it was copied from that fold.

    Args:
        path: the plan file (``monai-unets plan``'s, :func:`save_plan`'s); ``None``, or a path where no file is,
            gives ``default``.
        default: the plan given where there is no file, whose entries also fill the keys a file lacks; ``None``
            for :data:`DEFAULT_PLAN`. It is copied, never changed.

    Raises:
        ValueError: the file is not a JSON object, lacks a key that every version writes, or a value has the wrong
            form, or it is a fold's plan that records another fold (the file is named).

    Example::

        >>> load_plan("/no/such/plan.json")["spacing"]
        [1.5, 1.5, 2.0]
    """
    if path is None or not Path(path).is_file():
        return copy.deepcopy(dict(default if default is not None else DEFAULT_PLAN))
    try:
        plan = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"plan {path} is not valid JSON: {error}") from error
    return _checked_plan(plan, path, default)


def _checked_plan(plan: Any, path: str | os.PathLike, default: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A plan's content completed from ``default`` and checked as :func:`load_plan` does; ``path`` names it."""
    base = copy.deepcopy(dict(default if default is not None else DEFAULT_PLAN))
    if not isinstance(plan, dict):
        raise ValueError(f"plan {path} must hold a JSON object")
    base.update(plan)
    if (
        plan.get("version", 1) < 2
        and base["normalization"].get("scheme") == "zscore_nonzero"
        and base["foreground_threshold"] == 0
    ):
        # version 1 wrote the non-zero region as threshold 0, whose "> 0" cut negative tissue away
        base.update(version=PLAN_VERSION, foreground_threshold=None)
    # every plan version wrote these: one without them was cut or edited, and the default CT recipe's value in
    # its place (1.5 x 1.5 x 2 mm) would resample studies as the weights were never trained
    for key in _REQUIRED:
        if key not in plan:
            raise ValueError(f"plan {path} has no {key!r}; plan the dataset again with monai-unets plan")
    if len(base["spacing"]) != 3 or any(float(s) <= 0 for s in base["spacing"]):
        raise ValueError(f"plan {path}: 'spacing' must be 3 positive numbers, got {base['spacing']}")
    if base["normalization"].get("scheme") not in ("ct", "zscore_nonzero"):
        raise ValueError(f"plan {path}: unknown normalization scheme {base['normalization'].get('scheme')!r}")
    # a fold's plan records its fold (plans written before do not): one of another fold was copied over it, and its
    # preprocessing and post-processing were chosen for that fold's weights, not for the ones beside this file
    named = _FOLD_PLAN.fullmatch(Path(path).name)
    if named and plan.get("fold") is not None and plan["fold"] != int(named[1]):
        raise ValueError(
            f"plan {path} records fold {plan['fold']}: it is that fold's plan, not fold {named[1]}'s; put fold "
            f"{named[1]}'s own plan there, or train fold {named[1]} again"
        )
    return base


def _check_no_gaps(labels: Mapping[int, str], datalist: str | os.PathLike) -> None:
    # a network's output channels are the label values 0..K-1: a value past a gap has no channel
    if sorted(labels) != list(range(len(labels))):
        gaps = ", ".join(f"{value} -> {k}" for k, value in enumerate(sorted(labels)) if value != k)
        raise ValueError(
            f"label values must be 0..K-1 without gaps, got {sorted(labels)} in {datalist}; relabel the files "
            f"({gaps}), and the 'labels' of a dataset.json that names them"
        )


def dataset_plan(plan_file: str | os.PathLike | None, datalist: str | os.PathLike) -> dict[str, Any]:
    """The plan a CT bundle trains or evaluates a dataset with: ``plan_file`` (``monai-unets plan``'s), else
    :data:`DEFAULT_PLAN`, the pancreas CT recipe, where the dataset's ``dataset.json`` does not show it to be
    another kind of data.

    A plan file whose number of classes differs from the labels the dataset.json declares (made before they
    changed) stops the run, asking for the plan to be made again. Without a plan file, a dataset.json that declares
    a modality other than CT, or another number of labels than the default plan's classes, stops the run: the
    default recipe clips intensities to a soft-tissue window in Hounsfield units, crops the body at -500 HU and
    trains the default plan's classes, so such a dataset would train for hours on preprocessing made for other
    data. The classes take the names the dataset.json gives
    them; label values with a gap (0, 1, 3), which no network's classes 0..K-1 hold, stop the run in either case. A
    datalist that cannot be read is left to :func:`~monai_unets.data.load_datalist` to name.

    Args:
        plan_file: the dataset's plan file (it need not exist).
        datalist: the dataset's ``dataset.json`` or MONAI datalist.

    Raises:
        ValueError: the plan file, or without one the default plan, has another number of classes than the labels
            the dataset.json declares (or, without one, another modality); the declared label values have a gap;
            the plan file is not a valid plan (see :func:`load_plan`).

    Example::

        >>> root = "/data/Task07_Pancreas"
        >>> dataset_plan(f"{root}/plan.json", f"{root}/dataset.json")["num_classes"]  # doctest: +SKIP
        3
    """
    from .checks import declared_labels

    plan = load_plan(plan_file)
    planned = plan_file is not None and Path(plan_file).is_file()
    try:
        content = json.loads(Path(datalist).read_text())
    except (OSError, ValueError):
        return plan
    if not isinstance(content, dict):
        return plan
    labels = declared_labels(content, datalist)
    if labels is not None:
        # with or without a plan, a class past the gap would fail each case after its inference
        _check_no_gaps(labels, datalist)
    if planned:
        if labels is not None and len(labels) != plan["num_classes"]:
            # a plan made before the dataset's labels changed: trained, it has outputs for classes no label holds
            # (or none for new ones), named after the old labels in the weights' plan and every DICOM SEG
            names = ", ".join(labels[value] for value in sorted(labels))
            raise ValueError(
                f"{datalist} declares {len(labels)} labels ({names}), but its plan {plan_file} has "
                f"{plan['num_classes']} classes (background, {', '.join(plan['class_names'])}): the labels changed "
                f"since it was made; run `monai-unets plan --dataset-dir {Path(plan_file).parent}` again."
            )
        return plan
    misfits = []
    modality, channels = _declared_modality(content, datalist)
    if modality is not None and not _is_ct_name(modality):
        misfits.append(f"its modality is {modality!r}, not CT")
    if channels is not None and channels != plan.get("in_channels", 1):
        misfits.append(f"its images have {channels} channels, the default plan's one")
    if labels is not None and len(labels) != plan["num_classes"]:
        names = ", ".join(labels[value] for value in sorted(labels))
        misfits.append(f"it declares {len(labels)} labels ({names}), the default plan {plan['num_classes']}")
    if misfits:
        raise ValueError(
            f"{datalist}: there is no plan {plan_file}, and the default plan (pancreas CT: intensities clipped to "
            f"{plan['normalization']['clip']} HU, body cropped at {plan['foreground_threshold']:g} HU, classes "
            f"{', '.join(plan['class_names'])}) does not fit this dataset: {'; '.join(misfits)}. Run "
            f"`monai-unets plan --dataset-dir {Path(plan_file or datalist).parent}` first."
        )
    if labels is not None and set(labels) == set(range(plan["num_classes"])):
        # the dataset's own names (the Decathlon's pancreas calls class 2 "cancer"): the DICOM SEG's segments, the
        # metrics' columns and the plan saved with the weights name the classes as the annotations do
        class_names = class_names_of(labels)
        plan = {**plan, "class_names": class_names, "labels": class_labels(class_names)}
    return plan


# what a study's preprocessing and the meaning of the network's outputs depend on: the members of an ensemble, which
# see one preprocessed volume and have their outputs averaged class by class, must agree on all of it, and so must the
# epochs of a resumed training
_MODEL_SETTINGS = (
    "modality",
    "spacing",
    "normalization",
    "foreground_threshold",
    "patch_size",
    "num_classes",
    "labels",
)


def model_settings(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``plan`` that weights are bound to: the preprocessing that shapes the network's input (modality,
    spacing, normalisation, crop threshold, patch size) and the classes of its outputs; as JSON values (a tuple as a
    list), as the plan file holds them.

    Not the batch size, the fold or the post-processing, which weights trained or used otherwise share.

    Args:
        plan: a plan (:func:`load_plan`), or a training's plan with its overrides.

    Example::

        >>> sorted(model_settings(load_plan(None)))
        ['foreground_threshold', 'labels', 'modality', 'normalization', 'num_classes', 'patch_size', 'spacing']
    """
    return json.loads(json.dumps({key: plan[key] for key in _MODEL_SETTINGS if key in plan}))


class PlanMismatchError(ValueError):
    """The model files of an ensemble were trained with different plans (preprocessing or classes).

    Raised by :func:`ensemble_plan`; the message names both plan files and the first setting they differ in.

    Example::

        >>> try:  # doctest: +SKIP
        ...     ensemble_plan(["models/model_fold0.pt", "models/model_fold1.pt"])
        ... except PlanMismatchError as error:
        ...     print(error)
        models/plan_fold0.json (plan of model_fold0.pt) and models/plan_fold1.json (plan of model_fold1.pt) differ ...
    """


class MissingModelError(FileNotFoundError):
    """A model file listed in an ensemble does not exist.

    Raised by :func:`ensemble_plan` for an ensemble of several model files; the message names every missing one.

    Example::

        >>> try:
        ...     ensemble_plan(["/no/such/model_fold0.pt", "/no/such/model_fold1.pt"])
        ... except FileNotFoundError as error:
        ...     print(type(error).__name__)
        MissingModelError
    """


def plan_file_of(weights: str | os.PathLike) -> str:
    """The plan file that training writes beside a weights file: ``model<rest>.pt`` -> ``plan<rest>.json``.

    Each cross-validation fold keeps its own plan, with the post-processing its validation chose; a weights file
    of another name ``<name>.pt`` has ``<name>.plan.json``.

    Args:
        weights: the weights file.

    Example::

        >>> plan_file_of("models/model_fold3.pt")
        'models/plan_fold3.json'
        >>> plan_file_of("models/model.pt")
        'models/plan.json'
    """
    return os.fspath(Path(weights).with_name(companion_name(weights, "model", "plan", ".json")))


def find_plan_of(weights: str | os.PathLike) -> str | None:
    """The plan to read for a weights file: its own (:func:`plan_file_of`), else ``plan.json`` in its folder.

    ``plan.json`` is what trainings wrote for every fold before each fold kept its own plan, so their weights keep
    their preprocessing. A training's checkpoint (``checkpoint_fold<k>.pt``, which MONAI Label offers among the model
    files and loads the weights of) has the plan of its training's weights (``plan_fold<k>.json``). ``None`` when there
    is none of them.

    Args:
        weights: the weights file.

    Example::

        >>> find_plan_of("/no/such/models/model_fold0.pt") is None
        True
    """
    folder = os.path.dirname(os.fspath(weights))
    candidates = [plan_file_of(weights), os.path.join(folder, "plan.json")]
    if Path(weights).name.startswith("checkpoint"):
        candidates.insert(1, os.path.join(folder, companion_name(weights, "checkpoint", "plan", ".json")))
    return next((candidate for candidate in candidates if Path(candidate).is_file()), None)


def weights_plan_file(weights: str | os.PathLike, dataset_dir: str | os.PathLike | None = None) -> str | None:
    """The plan file to preprocess for ``weights`` with: its own (:func:`find_plan_of`), else the dataset's
    ``plan.json``, else ``None`` (the bundles' original pancreas CT recipe, :data:`DEFAULT_PLAN`).

    Weights copied without the plan of their training (``model.pt`` alone) would otherwise run silently with other
    spacing and intensities than they learned: an existing weights file without a plan of its own gets a warning
    naming the plan it is given.

    Args:
        weights: the weights file.
        dataset_dir: the dataset of the run, whose ``plan.json`` (``monai-unets plan``'s) is the next guess.

    Example::

        >>> weights_plan_file("/no/such/models/model.pt") is None
        True
    """
    own = find_plan_of(weights)
    if own is not None or not Path(weights).is_file():
        return own
    dataset = os.path.join(dataset_dir, "plan.json") if dataset_dir else None
    if dataset is not None and Path(dataset).is_file():
        warnings.warn(
            f"{weights} has no plan file beside it (plan.json): its preprocessing is taken from the dataset's plan "
            f"{dataset}. Copy the plan.json of the training that made the weights beside them.",
            stacklevel=2,
        )
        return dataset
    normalization = DEFAULT_PLAN["normalization"]
    warnings.warn(
        f"{weights} has no plan file beside it (plan.json): it runs with the bundle's original pancreas CT recipe "
        f"({' x '.join(str(s) for s in DEFAULT_PLAN['spacing'])} mm voxels, intensities clipped to "
        f"{normalization['clip']} HU). Weights trained with a plan of their own (monai-unets plan) segment nothing "
        "useful that way: copy that plan.json beside them.",
        stacklevel=2,
    )
    return None


#: key of ``metadata.json`` where an export (``python -m monai_unets.bundles.export``) records the plan of the
#: weights it exports: a TorchScript model run as MONAI Deploy runs it has its metadata, not the plan file
EXPORTED_PLAN_KEY = "monai_unets_plan"


def ensemble_plan(
    weights: Sequence[str | os.PathLike],
    dataset_dir: str | os.PathLike | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The plan of one model file or of an ensemble: each member's plan (:func:`weights_plan_file`), which must
    agree.

    A member without a plan file of its own has the dataset's, else the default plan, with a warning. The members
    must share modality, spacing, normalisation, crop, patch size and classes; the ensemble keeps a class's largest
    component only where every member's validation chose to (``postprocessing.keep_largest``): each choice was made
    on that member's own predictions, and a class kept by some members only is left as averaged.

    Args:
        weights: the model files, at least one.
        dataset_dir: the dataset of the run, whose ``plan.json`` a member without a plan of its own is given.
        metadata: the bundle's metadata (``@_meta_``): where the one model file does not exist (a TorchScript model
            exported with its plan, run from its embedded configs as MONAI Deploy runs it), the plan its export
            recorded (:data:`EXPORTED_PLAN_KEY`).

    Raises:
        MissingModelError: a member of an ensemble of several model files does not exist (a single model file
            without a plan has the default plan: a network given as it is, as MONAI Label serves it, has none).
        PlanMismatchError: two members' plans differ; the message names both plan files and the first difference.

    Example::

        >>> ensemble_plan(["/no/such/models/model.pt"])["spacing"]
        [1.5, 1.5, 2.0]
    """
    if not weights:
        raise ValueError("ensemble_plan needs at least one model file.")
    if len(weights) > 1:
        # a missing member has no plan, and the default plan it would get differs from the others': named as what
        # it is, not as a plan of other preprocessing
        missing = [os.fspath(w) for w in weights if not Path(w).is_file()]
        if missing:
            raise MissingModelError(
                f"{missing[0]}: model file of the ensemble does not exist"
                + (f" (nor {', '.join(missing[1:])})" if missing[1:] else "")
                + "; train that fold first, or leave it out of the ensemble."
            )
    exported = (metadata or {}).get(EXPORTED_PLAN_KEY)
    if len(weights) == 1 and not Path(weights[0]).is_file() and exported is not None:
        return _checked_plan(exported, f"{EXPORTED_PLAN_KEY} of the model's metadata")
    sources = [weights_plan_file(w, dataset_dir) for w in weights]
    plans = [load_plan(source) for source in sources]
    first = plans[0]
    shared = model_settings(first)
    for member, source, plan in zip(weights[1:], sources[1:], plans[1:]):
        settings = model_settings(plan)
        differing = [key for key, value in shared.items() if settings[key] != value]
        if differing:
            key = differing[0]
            raise PlanMismatchError(
                f"{_plan_name(weights[0], sources[0])} and {_plan_name(member, source)} differ in {key} "
                f"({first[key]} against {plan[key]}"
                + (f"; also {', '.join(differing[1:])}" if differing[1:] else "")
                + "): the models of an ensemble must be trained with one plan; train them again with the same plan, "
                "or leave one out of the ensemble."
            )
    chosen = [set(plan["postprocessing"]["keep_largest"]) for plan in plans]
    keep = [label for label in first["postprocessing"]["keep_largest"] if all(label in labels for labels in chosen)]
    return {**first, "postprocessing": {**first["postprocessing"], "keep_largest": keep}}


def _plan_name(weights: str | os.PathLike, source: str | None) -> str:
    if source is None:
        return f"{weights} (no plan file: the default plan)"
    return f"{source} (plan of {os.path.basename(weights)})"
