"""Lists of cases to process: a MONAI datalist JSON or a folder of images."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import partition_dataset

from .checks import load_datalist
from .medical_io import (
    HIDDEN_IMAGES,
    SPECIAL_FILES,
    has_suffix,
    is_hidden_image,
    is_special_file,
    list_medical_cases,
    output_folder_inside,
    series_cases,
    warn_skipped,
)

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_SUFFIXES", "list_cases", "split_cases", "warn_repeated", "warn_trained_on"]

# 2D image files that the 2D bundles read (``monai_unets.transforms.Image2DReader``); volumes are listed by
# ``list_cases(..., volumes=True)`` instead.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


# ISIC 2017 ships a superpixel map beside each image (ISIC_<id>_superpixels.png): images, but none to segment
_SUPERPIXEL_MAP = re.compile(r"_superpixels\.png$", re.IGNORECASE)


def list_cases(
    dataset_dir: str | os.PathLike,
    datalist: str | os.PathLike | None = None,
    key: str = "test",
    input_dir: str | os.PathLike | None = None,
    suffixes: Sequence[str] = IMAGE_SUFFIXES,
    volumes: bool = False,
    output_dir: str | os.PathLike | None = None,
    labelled: bool = False,
) -> list[dict]:
    """The cases a bundle processes: a folder of images when ``input_dir`` is given, else a datalist's section.

    Args:
        dataset_dir: folder that relative paths in the datalist are relative to.
        datalist: MONAI datalist JSON (``training`` / ``validation`` / ``test`` lists of ``{image, label}``);
            relative paths are resolved against ``dataset_dir``. Defaults to ``dataset_dir/datalist.json``.
        key: which list of the datalist to read.
        input_dir: a folder of images to process instead of the datalist; every file in it with one of
            ``suffixes`` becomes a case ``{"image": path}``, in sorted order, under the name it is listed by (a
            symbolic link keeps its own name). Hidden files are skipped; other files, pipes, sockets, devices and
            subfolders are skipped with a warning that names them.
        suffixes: file name endings that count as images in ``input_dir`` (2D images).
        volumes: list 3D studies instead: in ``input_dir`` every NIfTI/NRRD/MHA/DICOM file and every DICOM series
            subfolder is a case, and a folder holding several DICOM series (in ``input_dir`` or as a datalist
            image) becomes one case per series, never one merged volume
            (see :func:`monai_unets.data.medical_io.list_medical_cases`).
        output_dir: where the outputs of the run go: refused when it is ``input_dir`` (a later run would take
            this run's outputs for images), and not listed when it is a subfolder of it.
        labelled: every case of the datalist must have a ``label`` (an evaluation scores each case against it).

    Returns:
        a list of case dictionaries with absolute paths.

    Raises:
        FileNotFoundError: the folder or datalist does not exist, or the folder has no image.
        DataCheckError: (a ``ValueError``) the datalist is not valid JSON, or its list ``key`` is missing, empty or
            holds entries without an ``image`` (or, when ``labelled``, a ``label``); the message names the file.
        ValueError: ``output_dir`` is ``input_dir``.

    Example::

        >>> cases = list_cases("data/isic2018", key="test")  # doctest: +SKIP
        >>> cases[0]["image"]  # doctest: +SKIP
        '/abs/path/data/isic2018/images/ISIC_0000001.jpg'
    """
    if input_dir and volumes:
        return list_medical_cases(input_dir, split_series=True, output_dir=output_dir)
    if input_dir:
        folder = Path(input_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"input folder {folder} does not exist or is not a folder.")
        outputs = output_folder_inside(folder, output_dir)
        files, skipped, special, superpixels, hidden = [], [], [], [], []
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                hidden.extend([path.name] if is_hidden_image(path, suffixes) else [])
                continue
            if path.is_dir():
                if outputs is None or path.resolve() != outputs:
                    skipped.append(path.name)
            elif is_special_file(path):
                special.append(path.name)
            elif _SUPERPIXEL_MAP.search(path.name):
                superpixels.append(path.name)
            elif has_suffix(path, suffixes):
                files.append(path)
            else:
                skipped.append(path.name)
        warn_skipped(folder, skipped, f"subfolders and files that are not 2D images: {', '.join(suffixes)}")
        warn_skipped(folder, special, SPECIAL_FILES)
        warn_skipped(folder, hidden, HIDDEN_IMAGES)
        warn_skipped(folder, superpixels, "ISIC superpixel maps, not images to segment")
        if not files:
            raise FileNotFoundError(f"input folder {folder} has no image file ({', '.join(suffixes)}).")
        return [{"image": os.path.abspath(p)} for p in files]

    datalist_path = Path(datalist) if datalist else Path(dataset_dir) / "datalist.json"
    if not datalist_path.is_file():
        raise FileNotFoundError(f"datalist {datalist_path} does not exist.")
    cases = load_datalist(datalist_path, key, base_dir=dataset_dir, labelled=labelled)
    if not volumes:
        return cases
    expanded = []
    for case in cases:
        image = case["image"]
        # a folder that cannot be read as series stays one case, which fails alone when it is read, as in input_dir
        folder = isinstance(image, str) and Path(image).is_dir()
        references = series_cases(Path(image), split_series=True) if folder else []
        if len(references) > 1:
            expanded.extend({**case, "image": reference} for reference in references)
        else:
            expanded.append(case)
    return expanded


def warn_trained_on(cases: Sequence[dict], training: Sequence[dict], name: str) -> list[dict]:
    """``cases`` as they are, with a warning when some of their images are in the ``training`` list too.

    A network scores higher on images it trained on than on new ones: a validation list that repeats training
    images selects the checkpoint on them, and a test list that does overstates how the network does. Where no
    path is shared, images whose folder and file names are those of training images (the dataset moved since the
    training, or mounted elsewhere) are warned about as such.

    Args:
        cases: the cases a run validates or evaluates.
        training: the training cases.
        name: the list ``cases`` come from (``validation``, ``test``), named in the warning.

    Example::

        >>> warn_trained_on([{"image": "a.png"}], [{"image": "b.png"}], "test")
        [{'image': 'a.png'}]
    """
    images = {str(c.get("image")) for c in cases}
    trained = {str(c.get("image")) for c in training}
    both = images & trained
    if both:
        warnings.warn(
            f"{len(both)} of the {len(cases)} images of the {name} list are in the training list too (e.g. "
            f"{sorted(both)[0]}): the network trained on them, so their scores overstate how it does on new images.",
            stacklevel=2,
        )
        return list(cases)
    # the same dataset moved, mounted elsewhere or reached through a link: the training's paths lie elsewhere, its
    # folders and file names are these
    trained_names = {Path(image).parts[-2:]: image for image in trained}
    alike = sorted(image for image in images if Path(image).parts[-2:] in trained_names)
    if alike:
        example = Path(alike[0])
        warnings.warn(
            f"{len(alike)} of the {len(cases)} images of the {name} list have the folder and file names of training "
            f"images (e.g. {example}, trained on as {trained_names[example.parts[-2:]]}): if the dataset was moved, "
            "the network trained on them, and their scores overstate how it does on new images.",
            stacklevel=2,
        )
    return list(cases)


def warn_repeated(cases: Sequence[dict], consequence: str = "they weigh more in training") -> list[dict]:
    """``cases`` as they are, with a warning when an image is listed more than once (a datalist merged from two
    exports, a case copied by hand), saying ``consequence``.

    Args:
        cases: a list of cases.
        consequence: what the copies do, for the warning.

    Example::

        >>> warn_repeated([{"image": "a.png"}, {"image": "b.png"}])
        [{'image': 'a.png'}, {'image': 'b.png'}]
    """
    counts = Counter(str(case.get("image")) for case in cases)
    repeated = [image for image, count in counts.items() if count > 1]
    if repeated:
        warnings.warn(
            f"{len(repeated)} images are listed more than once (e.g. {repeated[0]}); {consequence}.", stacklevel=2
        )
    return list(cases)


def _declared_folds(units: Sequence[Sequence[dict]]) -> list[int] | None:
    """The fold each unit's cases carry in their ``"fold"`` key; ``None`` where no case has one.

    Raises:
        ValueError: some cases carry a fold and others not, a fold is no whole number >= 0, or the copies of an
            image carry different folds.
    """
    cases = [case for unit in units for case in unit]
    marked = [case for case in cases if "fold" in case]
    if not marked:
        return None
    if len(marked) < len(cases):
        missing = next(case for case in cases if "fold" not in case)
        raise ValueError(
            f"{len(marked)} of the {len(cases)} cases to split carry a fold key and the others not (e.g. "
            f"{missing.get('image')}): give every case its fold, or none."
        )
    folds = []
    for unit in units:
        values = {case["fold"] for case in unit}
        value = next(iter(values))
        if len(values) > 1 or isinstance(value, bool) or not isinstance(value, int) or value < 0:
            shown = ", ".join(repr(v) for v in sorted(values, key=repr))
            raise ValueError(
                f"{unit[0].get('image')} has fold {shown}: a fold is a whole number from 0, one per image."
            )
        folds.append(value)
    return folds


def split_cases(
    cases: Sequence[dict],
    val_fraction: float = 0.2,
    seed: int = 0,
    fold: int = 0,
    num_folds: int = 1,
    max_val_cases: int | None = None,
    validation: Sequence[dict] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Training and validation cases: a seeded random split, or fold ``fold`` of a ``num_folds``-fold split.

    With ``num_folds`` 1 a fraction ``val_fraction`` of the cases (at least one, at most ``max_val_cases``) is
    held out for validation: validation during training only selects a checkpoint, so a large dataset keeps
    every case beyond ``max_val_cases`` for training.
    With ``num_folds`` k > 1 the shuffled cases are cut into k parts; part ``fold`` validates and the others
    train, so that k runs (``fold`` 0..k-1) validate every case once and their checkpoints form an ensemble. Cases
    that carry a ``"fold"`` key (as MONAI's and Auto3DSeg's datalists write them) are split by it instead: those of
    fold ``fold`` validate, and the datalist's folds must be ``0..num_folds-1``; a run of ``num_folds`` 1 warns that
    it does not use them.
    Cases the datalist names for validation (``validation``) validate as given, all of them, and every case of
    ``cases`` trains; with folds they join the cases that the folds are cut from.

    Args:
        cases: the labelled cases (a datalist's ``training`` list).
        val_fraction: share of the cases held out for validation (``num_folds`` 1).
        seed: seed of the shuffling.
        fold: which part validates (``num_folds`` > 1).
        num_folds: parts of a cross-validation; 1 for a single split.
        max_val_cases: most cases held out for validation (``num_folds`` 1).
        validation: a datalist's own ``validation`` list; empty or ``None`` for none.

    Raises:
        ValueError: fewer than 2 cases, more folds than cases, ``fold`` outside ``0..num_folds-1``, or fold keys
            that are not the folds ``0..num_folds-1`` of every case.

    Example::

        >>> train, val = split_cases([{"image": str(i)} for i in range(10)], fold=1, num_folds=5)
        >>> len(train), len(val)
        (8, 2)
    """
    if validation and num_folds == 1:
        return list(cases), warn_trained_on(validation, cases, "validation")
    if validation:
        logger.info("the %d cases of the validation list join the %d-fold split", len(validation), num_folds)
        cases = [*cases, *validation]
    # the copies of an image listed more than once stay together: split across the two sides, validation would
    # select the checkpoint on a case the network trained on
    groups: dict[str, list[dict]] = {}
    for case in warn_repeated(
        cases, "they stay on one side of the training/validation split and weigh more in training"
    ):
        groups.setdefault(str(case.get("image")), []).append(case)
    units = list(groups.values())
    if len(units) < 2:
        raise ValueError(f"need at least 2 labelled cases to split into training and validation, got {len(units)}")
    declared = _declared_folds(units)
    if declared is not None and num_folds == 1:
        logger.warning(
            "the datalist's cases carry fold keys (folds %s), which a run of num_folds 1 does not use: it holds out "
            "val_fraction of the cases at random; set num_folds %d and fold to train on the datalist's folds.",
            ", ".join(map(str, sorted(set(declared)))),
            len(set(declared)),
        )
    if num_folds > 1:
        if not 0 <= fold < num_folds:
            raise ValueError(f"fold must be in 0..{num_folds - 1}, got {fold}")
        if num_folds > len(units):
            raise ValueError(f"{num_folds} folds need at least {num_folds} cases, got {len(units)}")
        if declared is not None:
            if sorted(set(declared)) != list(range(num_folds)):
                raise ValueError(
                    f"the datalist's cases carry fold keys {sorted(set(declared))}, which are not folds "
                    f"0..{num_folds - 1} of num_folds {num_folds}; set num_folds to the datalist's number of folds."
                )
            # the folds the datalist declares (MONAI's and Auto3DSeg's "fold" key), not a split of our own: results
            # then compare with other runs on the same datalist, and an ensemble never validates on trained cases
            train = [c for unit, k in zip(units, declared) if k != fold for c in unit]
            return train, [c for unit, k in zip(units, declared) if k == fold for c in unit]
        parts = partition_dataset(units, num_partitions=num_folds, shuffle=True, seed=seed)
        train = [c for i, part in enumerate(parts) if i != fold for unit in part for c in unit]
        return train, [c for unit in parts[fold] for c in unit]
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_val = min(len(units) - 1, max(1, round(val_fraction * len(units))))
    if max_val_cases is not None:
        n_val = max(1, min(n_val, int(max_val_cases)))
    order = np.random.default_rng(seed).permutation(len(units))
    return [c for i in sorted(order[n_val:]) for c in units[i]], [c for i in sorted(order[:n_val]) for c in units[i]]
