"""Build a MONAI datalist from the Kvasir-SEG and CVC-ClinicDB polyp downloads, with PraNet's split.

Kvasir-SEG unpacks to ``Kvasir-SEG/images/<id>.jpg`` and ``Kvasir-SEG/masks/<id>.jpg`` (1000 pairs);
CVC-ClinicDB to ``CVC-ClinicDB/Original/<n>.tif`` and ``CVC-ClinicDB/Ground Truth/<n>.tif``, or, in the PNG
variant, ``PNG/Original/<n>.png`` and ``PNG/Ground Truth/<n>.png`` (612 pairs). Images and masks are paired
by file name without suffix. The split follows PraNet, which U-Net v2 reuses: per dataset, a seeded shuffle
of the sorted ids puts 900 Kvasir-SEG and 550 CVC-ClinicDB pairs into training (1,450) and the remaining
100 + 62 into the test split. Validation is a seeded fraction of each training part; with
``--val-fraction 0`` it is the test split, as in the papers (which then report optimistic test scores).
Either dataset may be left out. Every case carries a ``dataset`` field (``kvasir`` or ``clinicdb``) so
that test metrics can be reported per dataset.

Kvasir-SEG masks are JPEGs, so their values are only nearly 0 and 255: binarise them with a threshold
when loading (e.g. with ``BinarizeLabeld``).

Example::

    monai-unets prepare-polyp --kvasir Kvasir-SEG --clinicdb CVC-ClinicDB --output data/polyp/datalist.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .cli import path_option, run_tool
from .datalist import (
    SPLIT_KEYS,
    LabelledImage,
    PathLike,
    add_output_argument,
    add_split_arguments,
    format_counts,
    pair_by_key,
    split_by_count,
    warn_unpaired,
    write_datalist,
)

__all__ = [
    "PolypDatalist",
    "PolypPairs",
    "add_arguments",
    "find_clinicdb_pairs",
    "find_kvasir_pairs",
    "main",
    "prepare_polyp",
    "run",
]

logger = logging.getLogger(__name__)

#: Dataset key (the ``dataset`` field of each case) -> the dataset's name in messages.
DATASET_NAMES = {"kvasir": "Kvasir-SEG", "clinicdb": "CVC-ClinicDB"}

#: PraNet's training counts; the rest of each dataset is its test split.
PRANET_TRAIN_COUNTS = {"kvasir": 900, "clinicdb": 550}

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


@dataclass
class PolypPairs:
    """The images and masks found in one polyp dataset folder, paired by file name.

    Attributes:
        dataset: ``kvasir`` or ``clinicdb``.
        folder: the folder that was given.
        image_dir: the folder the images were read from.
        mask_dir: the folder the masks were read from.
        pairs: the paired images and masks, sorted by id, each tagged with ``dataset``.
        images_without_mask: images whose name has no mask, sorted by name.
        masks_without_image: masks whose name has no image, sorted by name.
    """

    dataset: str
    folder: Path
    image_dir: Path
    mask_dir: Path
    pairs: list[LabelledImage] = field(default_factory=list)
    images_without_mask: list[Path] = field(default_factory=list)
    masks_without_image: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The dataset's name in messages, e.g. ``Kvasir-SEG``."""
        return DATASET_NAMES[self.dataset]


@dataclass
class PolypDatalist:
    """What :func:`prepare_polyp` wrote.

    Attributes:
        path: the datalist JSON file.
        found: the pairs found, one entry per dataset used.
        splits: the ``training``, ``validation`` and ``test`` lists.
    """

    path: Path
    found: list[PolypPairs]
    splits: dict[str, list[LabelledImage]]

    def summary(self) -> str:
        """One line with the counts, e.g. for the command line's output.

        Returns:
            The summary line.
        """
        datasets = ", ".join(f"{found.name} {len(found.pairs)} pairs" for found in self.found)
        unpaired = sum(len(found.images_without_mask) + len(found.masks_without_image) for found in self.found)
        return f"{self.path}: {datasets} -> {format_counts(self.splits)}; {unpaired} unpaired files"


def _find_subfolders(
    folder: Path, dataset: str, prefixes: Sequence[str], image_names: Sequence[str], mask_names: Sequence[str]
) -> tuple[Path, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{DATASET_NAMES[dataset]} folder {folder} does not exist or is not a folder.")
    # Accept the dataset folder itself as well as its parent or a variant folder (PNG/TIF) inside it.
    for prefix in prefixes:
        base = folder / prefix
        images = next((base / name for name in image_names if (base / name).is_dir()), None)
        masks = next((base / name for name in mask_names if (base / name).is_dir()), None)
        if images is not None and masks is not None:
            return images, masks
    layouts = " or ".join(f"{Path(prefix, image_names[0])}/ + {Path(prefix, mask_names[0])}/" for prefix in prefixes)
    raise FileNotFoundError(
        f"{DATASET_NAMES[dataset]} folder {folder} has neither layout: expected the subfolders {layouts}."
    )


def _index_images(folder: Path, dataset: str, kind: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        # Hidden files include macOS ``._<name>`` resource forks, which carry image suffixes but no image.
        if path.name.startswith(".") or path.suffix.lower() not in _IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            raise ValueError(
                f"{DATASET_NAMES[dataset]} {kind} {path.stem} has two files in folder {folder}: "
                f"{files[path.stem].name} and {path.name}."
            )
        files[path.stem] = path
    if not files:
        suffixes = "/".join(sorted(suffix.lstrip(".") for suffix in _IMAGE_SUFFIXES))
        raise ValueError(f"No {DATASET_NAMES[dataset]} {kind} ({suffixes}) found in folder {folder}.")
    return files


def _pair(dataset: str, folder: Path, image_dir: Path, mask_dir: Path) -> PolypPairs:
    images = _index_images(image_dir, dataset, "image")
    masks = _index_images(mask_dir, dataset, "mask")
    found = PolypPairs(dataset, folder, image_dir, mask_dir, *pair_by_key(images, masks, dataset))
    if not found.pairs:
        raise ValueError(
            f"No {found.name} image in {image_dir} has a mask of the same name in {mask_dir} (folder {folder})."
        )
    warn_unpaired(found.images_without_mask, f"{found.name} images without mask in {image_dir}")
    warn_unpaired(found.masks_without_image, f"{found.name} masks without image in {mask_dir}")
    return found


def find_kvasir_pairs(folder: PathLike) -> PolypPairs:
    """Pair the Kvasir-SEG images ``images/<id>.jpg`` with the masks ``masks/<id>.jpg``.

    Args:
        folder: the unpacked ``Kvasir-SEG`` folder, or the folder holding it.

    Returns:
        The pairs (tagged ``kvasir``) and the unpaired files, which are also logged as warnings.

    Raises:
        FileNotFoundError: if the folder or its ``images``/``masks`` subfolders do not exist.
        ValueError: if a subfolder holds no image, a name occurs twice, or no image has a mask.

    Example::

        >>> found = find_kvasir_pairs("Kvasir-SEG")  # doctest: +SKIP
        >>> len(found.pairs)  # doctest: +SKIP
        1000
    """
    folder = Path(folder)
    image_dir, mask_dir = _find_subfolders(folder, "kvasir", ("", "Kvasir-SEG"), ("images",), ("masks",))
    return _pair("kvasir", folder, image_dir, mask_dir)


def find_clinicdb_pairs(folder: PathLike) -> PolypPairs:
    """Pair the CVC-ClinicDB images ``Original/<n>.tif`` with the masks ``Ground Truth/<n>.tif``.

    The PNG variant (``PNG/Original/<n>.png`` + ``PNG/Ground Truth/<n>.png``) is found too, and preferred
    when a folder holds both a ``PNG`` and a ``TIF`` copy.

    Args:
        folder: the unpacked ``CVC-ClinicDB`` folder (holding ``Original`` or ``PNG``/``TIF``), or its parent.

    Returns:
        The pairs (tagged ``clinicdb``) and the unpaired files, which are also logged as warnings.

    Raises:
        FileNotFoundError: if the folder or its ``Original``/``Ground Truth`` subfolders do not exist.
        ValueError: if a subfolder holds no image, a name occurs twice, or no image has a mask.

    Example::

        >>> found = find_clinicdb_pairs("CVC-ClinicDB")  # doctest: +SKIP
        >>> found.pairs[0].image.name  # doctest: +SKIP
        '1.tif'
    """
    folder = Path(folder)
    image_dir, mask_dir = _find_subfolders(
        folder,
        "clinicdb",
        ("", "PNG", "TIF", "CVC-ClinicDB", "CVC-ClinicDB/PNG", "CVC-ClinicDB/TIF"),
        ("Original",),
        ("Ground Truth", "GroundTruth"),
    )
    return _pair("clinicdb", folder, image_dir, mask_dir)


def prepare_polyp(
    output: PathLike = "datalist.json",
    *,
    kvasir: PathLike | None = None,
    clinicdb: PathLike | None = None,
    kvasir_train: int = PRANET_TRAIN_COUNTS["kvasir"],
    clinicdb_train: int = PRANET_TRAIN_COUNTS["clinicdb"],
    val_fraction: float = 0.1,
    seed: int = 42,
) -> PolypDatalist:
    """Pair the Kvasir-SEG and CVC-ClinicDB images and masks, split them as PraNet did and write a datalist.

    See :func:`find_kvasir_pairs` and :func:`find_clinicdb_pairs` for the pairing and
    :func:`~monai_unets.scripts.datalist.split_by_count` for the split; ``val_fraction=0`` makes the validation
    list the test list (the papers' protocol).

    Args:
        output: path of the datalist JSON file.
        kvasir: the Kvasir-SEG folder, or ``None`` to leave the dataset out.
        clinicdb: the CVC-ClinicDB folder, or ``None`` to leave the dataset out.
        kvasir_train: Kvasir-SEG pairs used for training (including validation); the rest are test pairs.
        clinicdb_train: CVC-ClinicDB pairs used for training (including validation); the rest are test pairs.
        val_fraction: fraction of each dataset's training pairs held out for validation.
        seed: seed of the split.

    Returns:
        The written file, the pairs found and the split.

    Raises:
        FileNotFoundError: if a folder or its expected subfolders do not exist.
        ValueError: if no dataset is given, a folder holds no pairs, or fewer pairs than requested for training.

    Example::

        >>> result = prepare_polyp("polyp.json", kvasir="Kvasir-SEG", clinicdb="CVC-ClinicDB")  # doctest: +SKIP
        >>> print(result.summary())  # doctest: +SKIP
        polyp.json: Kvasir-SEG 1000 pairs, CVC-ClinicDB 612 pairs -> training 1305, validation 145, test 162; ...
    """
    if kvasir is None and clinicdb is None:
        raise ValueError("Give at least one dataset folder: Kvasir-SEG (--kvasir) or CVC-ClinicDB (--clinicdb).")
    found: list[PolypPairs] = []
    if kvasir is not None:
        found.append(find_kvasir_pairs(kvasir))
    if clinicdb is not None:
        found.append(find_clinicdb_pairs(clinicdb))
    requested = {"kvasir": kvasir_train, "clinicdb": clinicdb_train}
    for dataset in found:
        count = requested[dataset.dataset]
        if count > len(dataset.pairs):
            raise ValueError(
                f"{dataset.name} folder {dataset.folder} has {len(dataset.pairs)} image/mask pairs, fewer than the "
                f"{count} requested for training (--{dataset.dataset}-train)."
            )
        if count == len(dataset.pairs):
            logger.warning(
                "All %d %s pairs are used for training; it adds nothing to the test split.", count, dataset.name
            )

    splits = split_by_count(
        {dataset.dataset: dataset.pairs for dataset in found},
        {dataset.dataset: requested[dataset.dataset] for dataset in found},
        val_fraction,
        seed,
    )
    parts = " + ".join(f"{dataset.name} {requested[dataset.dataset]} of {len(dataset.pairs)}" for dataset in found)
    validation = "the test list" if val_fraction == 0 else f"{val_fraction:g} of each dataset's training pairs"
    path = write_datalist(
        splits,
        output,
        description=(
            f"Polyp segmentation, PraNet split: {parts} image/mask pairs for training (seed {seed}), the rest for "
            f"testing; validation is {validation}."
        ),
        seed=seed,
        extra={
            "val_fraction": val_fraction,
            "datasets": {
                dataset.dataset: {
                    "folder": dataset.folder.resolve().as_posix(),
                    "pairs": len(dataset.pairs),
                    "train_count": requested[dataset.dataset],
                    "counts": {
                        key: sum(sample.dataset == dataset.dataset for sample in splits[key]) for key in SPLIT_KEYS
                    },
                    "images_without_mask": len(dataset.images_without_mask),
                    "masks_without_image": len(dataset.masks_without_image),
                }
                for dataset in found
            },
        },
    )
    return PolypDatalist(path=path, found=found, splits=splits)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prepare-polyp`` options to a parser.

    Args:
        parser: the parser or subcommand parser to extend.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args(["--kvasir", "Kvasir-SEG"]).kvasir_train
        900
    """
    parser.add_argument("--kvasir", type=path_option, metavar="DIR", help="Kvasir-SEG folder (with images/ and masks/)")
    parser.add_argument(
        "--clinicdb",
        type=path_option,
        metavar="DIR",
        help="CVC-ClinicDB folder (with Original/ and 'Ground Truth/', or PNG/ or TIF/)",
    )
    add_output_argument(parser)
    for dataset, count in PRANET_TRAIN_COUNTS.items():
        parser.add_argument(
            f"--{dataset}-train",
            type=int,
            default=count,
            metavar="N",
            help=f"{DATASET_NAMES[dataset]} pairs for training, the rest is test "
            "(default: %(default)s, PraNet's split)",
        )
    add_split_arguments(parser, seed=42, held_out_from="each dataset's training pairs", val_note=" as the papers did")


def run(args: argparse.Namespace) -> int:
    """Run ``prepare-polyp`` with parsed arguments and print the summary line.

    Args:
        args: the namespace parsed by a parser set up with :func:`add_arguments`.

    Returns:
        The exit status (0).

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> run(parser.parse_args(["--kvasir", "Kvasir-SEG"]))  # doctest: +SKIP
        0
    """
    result = prepare_polyp(
        args.output,
        kvasir=args.kvasir,
        clinicdb=args.clinicdb,
        kvasir_train=args.kvasir_train,
        clinicdb_train=args.clinicdb_train,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    print(result.summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.prepare_polyp``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
