"""Build a MONAI datalist from the ISIC 2017 / ISIC 2018 skin-lesion segmentation downloads.

The official archives unpack to folders of images ``ISIC_<id>.jpg`` and of masks
``ISIC_<id>_segmentation.png`` (ISIC 2018 Task 1: ``ISIC2018_Task1-2_Training_Input`` and
``ISIC2018_Task1_Training_GroundTruth``; ISIC 2017: ``ISIC-2017_{Training,Validation,Test_v2}_Data`` and
``ISIC-2017_..._Part1_GroundTruth``). Images and masks are paired by ISIC id; the superpixel images, metadata
CSVs and licence files that share those folders are ignored. The pairs are split 7:3 into training and test
as in the EGE-UNet paper, and part of the training split is held out for validation.

Example::

    monai-unets prepare-isic --images ISIC2018_Task1-2_Training_Input \\
        --masks ISIC2018_Task1_Training_GroundTruth --output data/isic2018/datalist.json
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .cli import path_option, run_tool
from .datalist import (
    LabelledImage,
    PathLike,
    add_output_argument,
    add_split_arguments,
    format_counts,
    pair_by_key,
    split_train_val_test,
    warn_unpaired,
    write_datalist,
)

__all__ = ["IsicDatalist", "IsicPairs", "add_arguments", "find_isic_pairs", "main", "prepare_isic", "run"]

# Anchored on both ends so that ``ISIC_<id>_superpixels.png`` and macOS ``._ISIC_<id>.jpg`` files do not match.
_IMAGE_NAME = re.compile(r"^(ISIC_\d+)\.(?:jpe?g|png)$", re.IGNORECASE)
_MASK_NAME = re.compile(r"^(ISIC_\d+)_segmentation\.png$", re.IGNORECASE)


@dataclass
class IsicPairs:
    """The images and masks found in ISIC folders, paired by ISIC id.

    Attributes:
        pairs: the paired images and masks, sorted by id.
        images_without_mask: images whose id has no mask, sorted by name.
        masks_without_image: masks whose id has no image, sorted by name.
    """

    pairs: list[LabelledImage] = field(default_factory=list)
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)


@dataclass
class IsicDatalist:
    """What :func:`prepare_isic` wrote.

    Attributes:
        path: the datalist JSON file.
        found: the pairs and unpaired files found.
        splits: the ``training``, ``validation`` and ``test`` lists.
    """

    path: Path
    found: IsicPairs
    splits: dict[str, list[LabelledImage]]

    def summary(self) -> str:
        """One line with the counts, e.g. for the command line's output.

        Returns:
            The summary line.
        """
        return (
            f"{self.path}: {len(self.found.pairs)} ISIC pairs -> {format_counts(self.splits)}; "
            f"{len(self.found.images_without_mask)} images without mask, "
            f"{len(self.found.masks_without_image)} masks without image"
        )


def _index_folders(folders: Iterable[PathLike], pattern: re.Pattern[str], kind: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FileNotFoundError(f"ISIC {kind} folder {folder} does not exist or is not a folder.")
        found_here = 0
        for path in sorted(folder.iterdir()):
            match = pattern.match(path.name)
            if match is None or not path.is_file():
                continue
            isic_id = match.group(1)
            if isic_id in files:
                raise ValueError(f"ISIC id {isic_id} has two {kind} files: {files[isic_id]} and {path}.")
            files[isic_id] = path
            found_here += 1
        if found_here == 0:
            example = "ISIC_<id>.jpg" if kind == "image" else "ISIC_<id>_segmentation.png"
            raise ValueError(f"No ISIC {kind} ({example}) found in folder {folder}.")
    return files


def find_isic_pairs(image_dirs: Sequence[PathLike], mask_dirs: Sequence[PathLike]) -> IsicPairs:
    """Pair ISIC images ``ISIC_<id>.jpg`` with masks ``ISIC_<id>_segmentation.png`` by id.

    Only the top level of each folder is read. Files of other names (superpixels, CSVs, licences) are
    ignored; images without mask and masks without image are returned and logged as warnings.

    Args:
        image_dirs: folders of ISIC images, e.g. ``ISIC2018_Task1-2_Training_Input``.
        mask_dirs: folders of ISIC masks, e.g. ``ISIC2018_Task1_Training_GroundTruth``.

    Returns:
        The pairs and the unpaired files.

    Raises:
        FileNotFoundError: if a folder does not exist.
        ValueError: if a folder holds no ISIC image (mask), an id occurs twice, or no image has a mask.

    Example::

        >>> found = find_isic_pairs(
        ...     ["ISIC-2017_Training_Data"], ["ISIC-2017_Training_Part1_GroundTruth"]
        ... )  # doctest: +SKIP
        >>> found.pairs[0].id  # doctest: +SKIP
        'ISIC_0000000'
    """
    if not image_dirs or not mask_dirs:
        raise ValueError("Give at least one image folder and one mask folder.")
    images = _index_folders(image_dirs, _IMAGE_NAME, "image")
    masks = _index_folders(mask_dirs, _MASK_NAME, "mask")
    found = IsicPairs(*pair_by_key(images, masks))
    if not found.pairs:
        raise ValueError(
            f"No image in {', '.join(map(str, image_dirs))} has a mask in {', '.join(map(str, mask_dirs))} "
            "(images ISIC_<id>.jpg are paired with masks ISIC_<id>_segmentation.png)."
        )
    warn_unpaired(found.images_without_mask, "images without mask")
    warn_unpaired(found.masks_without_image, "masks without image")
    return found


def prepare_isic(
    image_dirs: Sequence[PathLike],
    mask_dirs: Sequence[PathLike],
    output: PathLike = "datalist.json",
    *,
    seed: int = 42,
    train_fraction: float = 0.7,
    val_fraction: float = 0.1,
) -> IsicDatalist:
    """Pair ISIC images and masks, split them and write a MONAI datalist.

    See :func:`find_isic_pairs` for the pairing and :func:`~monai_unets.scripts.datalist.split_train_val_test`
    for the split; ``val_fraction=0`` makes the validation list the test list (the paper's protocol).

    Args:
        image_dirs: folders of ISIC images.
        mask_dirs: folders of ISIC masks.
        output: path of the datalist JSON file.
        seed: seed of the split.
        train_fraction: fraction of the pairs used for training (including validation).
        val_fraction: fraction of the training pairs held out for validation.

    Returns:
        The written file, the pairs found and the split.

    Example::

        >>> result = prepare_isic(
        ...     ["ISIC2018_Task1-2_Training_Input"], ["ISIC2018_Task1_Training_GroundTruth"], "isic2018.json"
        ... )  # doctest: +SKIP
        >>> print(result.summary())  # doctest: +SKIP
        isic2018.json: 2594 ISIC pairs -> training 1634, validation 182, test 778; 0 images without mask, ...
    """
    found = find_isic_pairs(image_dirs, mask_dirs)
    splits = split_train_val_test(found.pairs, train_fraction, val_fraction, seed)
    validation = "the test list" if val_fraction == 0 else f"{val_fraction:g} of the training split"
    path = write_datalist(
        splits,
        output,
        description=(
            f"ISIC skin-lesion segmentation: {train_fraction:g} train : {1 - train_fraction:g} test split of "
            f"{len(found.pairs)} image/mask pairs (seed {seed}); validation is {validation}."
        ),
        seed=seed,
        extra={
            "train_fraction": train_fraction,
            "val_fraction": val_fraction,
            "images_without_mask": len(found.images_without_mask),
            "masks_without_image": len(found.masks_without_image),
        },
    )
    return IsicDatalist(path=path, found=found, splits=splits)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prepare-isic`` options to a parser.

    Args:
        parser: the parser or subcommand parser to extend.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["--images", "img", "--masks", "gt"]).seed
        42
    """
    parser.add_argument(
        "--images", type=path_option, nargs="+", required=True, metavar="DIR", help="folders of ISIC_<id>.jpg images"
    )
    parser.add_argument(
        "--masks",
        type=path_option,
        nargs="+",
        required=True,
        metavar="DIR",
        help="folders of ISIC_<id>_segmentation.png masks",
    )
    add_output_argument(parser)
    add_split_arguments(
        parser, seed=42, train_fraction=0.7, train_note=", the paper's 7:3", val_note=" as the paper did"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``prepare-isic`` with parsed arguments and print the summary line.

    Args:
        args: the namespace parsed by a parser set up with :func:`add_arguments`.

    Returns:
        The exit status (0).

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> run(parser.parse_args(["--images", "img", "--masks", "gt"]))  # doctest: +SKIP
        0
    """
    result = prepare_isic(
        args.images,
        args.masks,
        args.output,
        seed=args.seed,
        train_fraction=args.train_fraction,
        val_fraction=args.val_fraction,
    )
    print(result.summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.prepare_isic``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
