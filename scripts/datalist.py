"""Seeded train/validation/test splitting and MONAI datalist writing, shared by the data-preparation tools."""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Union

from ..data.atomic import atomic_open
from .cli import at_least, path_option

__all__ = [
    "LabelledImage",
    "add_output_argument",
    "add_split_arguments",
    "format_counts",
    "pair_by_key",
    "split_by_count",
    "split_train_val_test",
    "warn_unpaired",
    "write_datalist",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: The keys of the three lists in a datalist, in the order they are written.
SPLIT_KEYS = ("training", "validation", "test")

# How many unpaired file names a warning lists before it only counts.
_LISTED_NAMES = 5


class LabelledImage(NamedTuple):
    """One image and its segmentation mask.

    Attributes:
        id: a stable identifier (e.g. ``ISIC_0000000``); the split sorts by it before shuffling.
        image: path of the image file.
        label: path of the mask file.
        dataset: optional name of the source dataset (e.g. ``kvasir``); written to the datalist as the
            ``dataset`` field of the case so that metrics can be split per dataset later.
    """

    id: str
    image: Path
    label: Path
    dataset: str | None = None


def _rounded(value: float) -> int:
    # Half-up rounding: Python's round() rounds half to even, which would make e.g. 5 * 0.7 -> 4 but 15 * 0.7 -> 10.
    return math.floor(value + 0.5)


def _shuffled(samples: Sequence[LabelledImage], seed: int) -> list[LabelledImage]:
    # Sorting first makes the result depend only on the set of ids and the seed, not on the listing order.
    ordered = sorted(samples, key=lambda sample: sample.id)
    repeated = sorted({a.id for a, b in zip(ordered, ordered[1:]) if a.id == b.id})
    if repeated:
        raise ValueError(f"Sample ids must be unique; repeated: {', '.join(repeated)}.")
    random.Random(seed).shuffle(ordered)
    return ordered


def _hold_out(train: list[LabelledImage], val_fraction: float) -> tuple[list[LabelledImage], list[LabelledImage]]:
    # Clamp so that tiny training parts still keep one sample on each side.
    n_val = min(max(_rounded(len(train) * val_fraction), 1), len(train) - 1)
    return train[n_val:], train[:n_val]


def _check_val_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")


def _warn_validation_is_test() -> None:
    logger.warning(
        "val_fraction is 0: the validation list is the test list (the papers' protocol, which selects "
        "checkpoints on the test split), so test scores will be optimistic."
    )


def split_train_val_test(
    samples: Sequence[LabelledImage],
    train_fraction: float = 0.7,
    val_fraction: float = 0.1,
    seed: int = 42,
) -> dict[str, list[LabelledImage]]:
    """Split samples into ``training``, ``validation`` and ``test`` lists, reproducibly.

    The samples are sorted by id and then shuffled with ``random.Random(seed)``, so the result depends only
    on the set of ids and the seed, not on the order the files were listed in. ``train_fraction`` of them
    (rounded half up) form the training part and the rest the test part, as in the EGE-UNet paper's 7:3
    split. ``val_fraction`` of the training part is then held out for checkpoint selection. With
    ``val_fraction=0`` the validation list *is* the test list: that reproduces the paper, which selected
    checkpoints on its test split, so test scores are then optimistic and a warning is logged.

    Args:
        samples: the labelled images; ids must be unique.
        train_fraction: fraction of the samples used for training (including validation), in (0, 1).
        val_fraction: fraction of the training part held out for validation, in [0, 1).
        seed: seed of the shuffle.

    Returns:
        A dict with keys ``training``, ``validation`` and ``test``; every list is non-empty.

    Raises:
        ValueError: if a fraction is out of range, ids repeat, or there are too few samples to fill every list.

    Example::

        >>> from pathlib import Path
        >>> samples = [LabelledImage(f"s{i:02d}", Path(f"s{i:02d}.jpg"), Path(f"s{i:02d}.png")) for i in range(20)]
        >>> {key: len(value) for key, value in split_train_val_test(samples, val_fraction=0.1).items()}
        {'training': 13, 'validation': 1, 'test': 6}
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}.")
    _check_val_fraction(val_fraction)
    minimum = 3 if val_fraction > 0 else 2
    if len(samples) < minimum:
        raise ValueError(f"Need at least {minimum} samples to fill every split, got {len(samples)}.")
    ordered = _shuffled(samples, seed)

    # Clamp so that tiny datasets still get at least one sample in every list.
    n_train = min(max(_rounded(len(ordered) * train_fraction), minimum - 1), len(ordered) - 1)
    train, test = ordered[:n_train], ordered[n_train:]
    if val_fraction == 0:
        _warn_validation_is_test()
        return {"training": train, "validation": list(test), "test": test}
    training, validation = _hold_out(train, val_fraction)
    return {"training": training, "validation": validation, "test": test}


def split_by_count(
    groups: Mapping[str, Sequence[LabelledImage]],
    train_counts: Mapping[str, int],
    val_fraction: float = 0.1,
    seed: int = 42,
) -> dict[str, list[LabelledImage]]:
    """Split several datasets into fixed-size training parts and test rests, and join them.

    Each group (dataset) is sorted by id and shuffled with ``random.Random(seed)``, exactly as in
    :func:`split_train_val_test`; its first ``train_counts[name]`` samples form its training part and the
    rest its test part (PraNet's polyp split: 900 of 1000 Kvasir-SEG and 550 of 612 CVC-ClinicDB images for
    training). ``val_fraction`` of each training part (rounded half up, at least one sample) is held out for
    validation, so validation is stratified by dataset. With ``val_fraction=0`` the validation list is the
    joined test list, the papers' protocol, and a warning is logged once. The lists are joined in the order
    of ``groups``.

    Args:
        groups: dataset name -> its labelled images; ids must be unique within a group.
        train_counts: dataset name -> number of its samples used for training (including validation). A
            count equal to the group's size leaves that group without test samples.
        val_fraction: fraction of each training part held out for validation, in [0, 1).
        seed: seed of the shuffles.

    Returns:
        A dict with keys ``training``, ``validation`` and ``test``; training and validation are non-empty.

    Raises:
        ValueError: if a count is missing or out of range, ids repeat within a group, ``val_fraction`` is out of
            range, or no sample is left for validation.

    Example::

        >>> from pathlib import Path
        >>> def make(name, n):
        ...     return [LabelledImage(f"{i}", Path(f"{name}/{i}.jpg"), Path(f"{name}/{i}.png"), name) for i in range(n)]
        >>> splits = split_by_count({"a": make("a", 20), "b": make("b", 12)}, {"a": 15, "b": 8}, val_fraction=0.2)
        >>> format_counts(splits)
        'training 18, validation 5, test 9'
    """
    _check_val_fraction(val_fraction)
    splits: dict[str, list[LabelledImage]] = {key: [] for key in SPLIT_KEYS}
    for name, samples in groups.items():
        if name not in train_counts:
            raise ValueError(f"No training count given for dataset {name!r}.")
        count = train_counts[name]
        minimum = 2 if val_fraction > 0 else 1
        if not minimum <= count <= len(samples):
            raise ValueError(
                f"Dataset {name!r}: the training count must be between {minimum} and its {len(samples)} samples, "
                f"got {count}."
            )
        ordered = _shuffled(samples, seed)
        train, test = ordered[:count], ordered[count:]
        if val_fraction > 0:
            train, validation = _hold_out(train, val_fraction)
            splits["validation"] += validation
        splits["training"] += train
        splits["test"] += test
    if val_fraction == 0:
        _warn_validation_is_test()
        splits["validation"] = list(splits["test"])
    if not splits["training"] or not splits["validation"]:
        raise ValueError("Nothing left to validate on: give val_fraction > 0 or leave test samples.")
    return splits


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    """Add the ``--output`` option of a data-preparation tool: the datalist JSON it writes.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_output_argument(parser)
        >>> parser.parse_args([]).output
        'datalist.json'
    """
    parser.add_argument(
        "--output",
        type=path_option,
        default="datalist.json",
        metavar="PATH",
        help="datalist JSON to write (default: %(default)s)",
    )


def add_split_arguments(
    parser: argparse.ArgumentParser,
    *,
    seed: int,
    seed_help: str = "seed of the split",
    samples: str = "pairs",
    train_fraction: float | None = None,
    train_note: str = "",
    held_out_from: str | None = None,
    val_note: str = "",
) -> None:
    """Add the ``--seed``, ``--train-fraction`` and ``--val-fraction`` options of a data-preparation tool.

    The options are added in that order; ``--val-fraction`` defaults to 0.1, as in
    :func:`split_train_val_test` and :func:`split_by_count`.

    Args:
        parser: the parser or subcommand parser to extend.
        seed: the default of ``--seed``.
        seed_help: what the seed seeds, the start of the ``--seed`` help.
        samples: what the tool splits (e.g. ``pairs`` or ``images``), used in the help texts.
        train_fraction: the default of ``--train-fraction``; ``None`` leaves that option out (for tools that
            split by count).
        train_note: text appended inside the parentheses of the ``--train-fraction`` help, after the default.
        held_out_from: what validation is held out of, in the ``--val-fraction`` help; ``None`` means
            ``"the training <samples>"``.
        val_note: text appended to "0 validates on the test split" in the ``--val-fraction`` help.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_split_arguments(parser, seed=42, train_fraction=0.7)
        >>> args = parser.parse_args([])
        >>> args.seed, args.train_fraction, args.val_fraction
        (42, 0.7, 0.1)
    """
    parser.add_argument("--seed", type=int, default=seed, help=f"{seed_help} (default: %(default)s)")
    if train_fraction is not None:
        parser.add_argument(
            "--train-fraction",
            type=at_least(float, 0, above=True, below=1),
            default=train_fraction,
            help=f"fraction of the {samples} for training, the rest is the test split "
            f"(default: %(default)s{train_note})",
        )
    held_out_from = f"the training {samples}" if held_out_from is None else held_out_from
    parser.add_argument(
        "--val-fraction",
        type=at_least(float, 0, below=1),
        default=0.1,
        help=f"fraction of {held_out_from} held out for validation; 0 validates on the test split{val_note} "
        "(default: %(default)s)",
    )


def _datalist_path(path: Path, base_dir: Path) -> str:
    # Relative paths keep a dataset folder movable; MONAI's load_decathlon_datalist joins them with its base_dir.
    resolved = path.resolve()
    try:
        return resolved.relative_to(base_dir).as_posix()
    except ValueError:
        return resolved.as_posix()


def _case(sample: LabelledImage, base_dir: Path) -> dict[str, str]:
    case = {"image": _datalist_path(sample.image, base_dir), "label": _datalist_path(sample.label, base_dir)}
    if sample.dataset is not None:
        case["dataset"] = sample.dataset
    return case


def format_counts(splits: Mapping[str, Sequence[Any]]) -> str:
    """Describe the sizes of the lists of a split in words.

    Args:
        splits: a dict as returned by :func:`split_train_val_test`.

    Returns:
        For example ``"training 13, validation 1, test 6"``.

    Example::

        >>> format_counts({"training": [1, 2], "validation": [3], "test": [4]})
        'training 2, validation 1, test 1'
    """
    return ", ".join(f"{key} {len(splits[key])}" for key in SPLIT_KEYS)


def pair_by_key(
    images: Mapping[str, Path], masks: Mapping[str, Path], dataset: str | None = None
) -> tuple[list[LabelledImage], list[Path], list[Path]]:
    """The images and masks of one key paired, and the files of either kind whose key the other kind lacks.

    Args:
        images: key (an ISIC id, a file stem) -> image file.
        masks: key -> mask file.
        dataset: the ``dataset`` of each pair.

    Returns:
        the pairs sorted by key; the images without mask and the masks without image, each sorted by file name.

    Example::

        >>> pairs, lone_images, lone_masks = pair_by_key({"a": Path("a.jpg"), "b": Path("b.jpg")}, {"a": Path("a.png")})
        >>> [p.id for p in pairs], [p.name for p in lone_images], lone_masks
        (['a'], ['b.jpg'], [])
    """
    pairs = [LabelledImage(key, images[key], masks[key], dataset) for key in sorted(images.keys() & masks.keys())]
    by_name = lambda path: path.name  # noqa: E731
    lone_images = sorted((images[key] for key in images.keys() - masks.keys()), key=by_name)
    lone_masks = sorted((masks[key] for key in masks.keys() - images.keys()), key=by_name)
    return pairs, lone_images, lone_masks


def warn_unpaired(paths: Sequence[Path], what: str) -> None:
    """Warns of the files of a dataset left out for want of their image or mask, naming the first few.

    Args:
        paths: the unpaired files.
        what: what they are, e.g. ``"images without mask"``.

    Example::

        >>> warn_unpaired([Path("ISIC_0000001.jpg")], "images without mask")  # doctest: +SKIP
    """
    if paths:
        names = ", ".join(path.name for path in paths[:_LISTED_NAMES])
        more = f" and {len(paths) - _LISTED_NAMES} more" if len(paths) > _LISTED_NAMES else ""
        logger.warning("%d %s (skipped): %s%s", len(paths), what, names, more)


def write_datalist(
    splits: Mapping[str, Sequence[LabelledImage]],
    output: PathLike,
    *,
    description: str,
    seed: int,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a MONAI (Decathlon-style) datalist JSON file.

    Each list holds ``{"image": ..., "label": ...}`` items, plus ``"dataset": ...`` for samples that name
    their dataset (see :class:`LabelledImage`). Paths under the JSON file's folder are written
    relative to it (what ``monai.data.load_decathlon_datalist`` expects by default), other paths absolutely.
    Besides the lists the file records ``description``, ``seed``, the list sizes under ``counts`` and the
    entries of ``extra``; MONAI ignores such extra keys.

    Args:
        splits: a dict with keys ``training``, ``validation`` and ``test``, e.g. from :func:`split_train_val_test`.
        output: path of the JSON file; missing parent folders are created.
        description: a sentence saying what the dataset is and how it was split.
        seed: the seed the split was made with.
        extra: more top-level entries to store (JSON-serialisable).

    Returns:
        The path of the written file.

    Example::

        >>> splits = split_train_val_test(samples, seed=42)  # doctest: +SKIP
        >>> write_datalist(splits, "data/datalist.json", description="ISIC 2018, 7:3", seed=42)  # doctest: +SKIP
        PosixPath('data/datalist.json')
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    base_dir = output.parent.resolve()
    content: dict[str, Any] = {
        "description": description,
        "seed": seed,
        "counts": {key: len(splits[key]) for key in SPLIT_KEYS},
    }
    content.update(extra or {})
    for key in SPLIT_KEYS:
        content[key] = [_case(sample, base_dir) for sample in splits[key]]
    with atomic_open(output) as f:
        f.write(json.dumps(content, indent=2) + "\n")
    return output
