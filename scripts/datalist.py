"""Seeded train/validation/test splitting and MONAI datalist writing, shared by the data-preparation tools."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Union

__all__ = ["LabelledImage", "format_counts", "split_train_val_test", "write_datalist"]

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: The keys of the three lists in a datalist, in the order they are written.
SPLIT_KEYS = ("training", "validation", "test")


class LabelledImage(NamedTuple):
    """One image and its segmentation mask.

    Attributes:
        id: a stable identifier (e.g. ``ISIC_0000000``); the split sorts by it before shuffling.
        image: path of the image file.
        label: path of the mask file.
    """

    id: str
    image: Path
    label: Path


def _rounded(value: float) -> int:
    # Half-up rounding: Python's round() rounds half to even, which would make e.g. 5 * 0.7 -> 4 but 15 * 0.7 -> 10.
    return math.floor(value + 0.5)


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
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    ordered = sorted(samples, key=lambda sample: sample.id)
    repeated = sorted({a.id for a, b in zip(ordered, ordered[1:]) if a.id == b.id})
    if repeated:
        raise ValueError(f"Sample ids must be unique; repeated: {', '.join(repeated)}.")
    minimum = 3 if val_fraction > 0 else 2
    if len(ordered) < minimum:
        raise ValueError(f"Need at least {minimum} samples to fill every split, got {len(ordered)}.")
    random.Random(seed).shuffle(ordered)

    # Clamp so that tiny datasets still get at least one sample in every list.
    n_train = min(max(_rounded(len(ordered) * train_fraction), minimum - 1), len(ordered) - 1)
    train, test = ordered[:n_train], ordered[n_train:]
    if val_fraction == 0:
        logger.warning(
            "val_fraction is 0: the validation list is the test list (the EGE-UNet paper's protocol, which selects "
            "checkpoints on the test split), so test scores will be optimistic."
        )
        return {"training": train, "validation": list(test), "test": test}
    n_val = min(max(_rounded(n_train * val_fraction), 1), n_train - 1)
    return {"training": train[n_val:], "validation": train[:n_val], "test": test}


def _datalist_path(path: Path, base_dir: Path) -> str:
    # Relative paths keep a dataset folder movable; MONAI's load_decathlon_datalist joins them with its base_dir.
    resolved = path.resolve()
    try:
        return resolved.relative_to(base_dir).as_posix()
    except ValueError:
        return resolved.as_posix()


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


def write_datalist(
    splits: Mapping[str, Sequence[LabelledImage]],
    output: PathLike,
    *,
    description: str,
    seed: int,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a MONAI (Decathlon-style) datalist JSON file.

    Each list holds ``{"image": ..., "label": ...}`` items. Paths under the JSON file's folder are written
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
        content[key] = [
            {"image": _datalist_path(sample.image, base_dir), "label": _datalist_path(sample.label, base_dir)}
            for sample in splits[key]
        ]
    output.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return output
