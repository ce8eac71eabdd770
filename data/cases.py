"""Cases of a batch job: one unique output name each, a shard per process, a failure record instead of a crash.

Batch inference and evaluation go through :class:`CaseDataset`. Before anything runs, every case gets an output
name that no other case of the job has (:func:`case_output_names`), computed on the full list so that every
process of a sharded run agrees; each process then takes its own contiguous shard (:func:`shard_items`). A case whose
reading or preprocessing fails becomes a failure record (case, file, stage, error) that
:class:`monai_unets.handlers.CaseIsolationHandler` reports, and the job goes on with the next case.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import logging
import os
import re
import types
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from monai.data import CacheDataset, Dataset, MetaTensor, PersistentDataset
from monai.data.folder_layout import default_name_formatter
from monai.data.utils import decollate_batch, json_hashing
from monai.transforms import Compose, SaveImage, SaveImaged
from monai.utils import ImageMetaKey

from .atomic import shortened_name
from .checks import CASE_ID_KEY
from .datalist import IMAGE_SUFFIXES
from .dataset import describe_error, files_at_fault
from .medical_io import LISTING_PROBLEM_KEY, MEDICAL_SUFFIXES, parse_series_reference

__all__ = [
    "CACHE_MODES",
    "CASE_INDEX_KEY",
    "CASE_NAME_KEY",
    "FAILURE_KEY",
    "CaseDataset",
    "cached_dataset",
    "case_name",
    "case_output_name",
    "case_output_names",
    "case_output_paths",
    "failure_stage",
    "file_meta",
    "gather_items",
    "per_case",
    "rank_and_world_size",
    "rank_file",
    "shard_items",
]

logger = logging.getLogger(__name__)

#: Metadata key of a case's unique output name (set on every ``MetaTensor`` of a :class:`CaseDataset` item).
CASE_NAME_KEY = "case_name"
#: Metadata key of a case's position in the job's full case list (all shards).
CASE_INDEX_KEY = "case_index"
#: Key of the failure record a :class:`CaseDataset` item holds instead of data when its case failed.
FAILURE_KEY = "case_failure"
#: ``cache`` values of :func:`cached_dataset`.
CACHE_MODES = ("none", "memory", "disk")

_SUFFIXES = tuple(sorted({s.lower() for s in IMAGE_SUFFIXES + MEDICAL_SUFFIXES}, key=len, reverse=True))
#: renamed inputs the warning of case_output_names names
_RENAMES_SHOWN = 5
# characters that some file systems refuse in a name (Windows, SMB shares), and control characters (the
# bidirectional overrides too, which show a name's end reversed)
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]')
# longest output name in bytes: 255, the limit of common file systems, less room for what the writers add
# ("_uncertainty.nii.gz" is 19 bytes) and for the suffix a repeated name takes ("_2")
_NAME_BYTES = 255 - 32
# "applying transform <monai.transforms.io.dictionary.LoadImaged object at 0x...>" of monai's apply_transform
_FAILED_TRANSFORM = re.compile(r"^applying transform <(?:[\w]+\.)*(\w+) object")


def _parts(source: str) -> tuple[Path, str, str]:
    """Folder, default output name and kind tag (extension or ``dicom``) of one case's image."""
    folder, uid = parse_series_reference(source)
    path = Path(folder)
    if uid is not None:
        return path.parent, f"{path.name}_{uid}", "dicom"
    if path.is_dir():
        return path.parent, path.name, "dicom"
    name = path.name
    suffix = next((s for s in _SUFFIXES if name.lower().endswith(s) and len(name) > len(s)), path.suffix)
    stem = name[: len(name) - len(suffix)] if suffix else name
    return path.parent, stem, suffix.lstrip(".").replace(".", "_").lower() or "file"


def _file_key(name: str) -> str:
    # "A.png" and "a.png" are one file on macOS and Windows volumes, and so are the two Unicode forms of "café.png"
    # (a precomposed é, as Linux and Windows tools write it, and e with a combining accent, as macOS does) on macOS's
    return unicodedata.normalize("NFC", name).casefold()


def _collisions(names: Sequence[str]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        groups.setdefault(_file_key(name), []).append(index)
    return [group for group in groups.values() if len(group) > 1]


def case_output_names(sources: Sequence[str | os.PathLike], case_ids: Sequence[str | None] | None = None) -> list[str]:
    """One output name per case (without postfix or extension), unique within the job, in the order given.

    A case is named by its ``case_ids`` entry where it has one (:data:`CASE_ID_KEY`: nnU-Net's ``<case>`` for
    ``<case>_0000.nii.gz``), else after its image file without the image extension (``ct_001.nii.gz`` ->
    ``ct_001``), its DICOM series folder, or ``<folder>_<SeriesInstanceUID>`` for one series of a folder that
    holds several.
    Names that would collide (compared case-insensitively, and with accented letters in one Unicode form) are made
    distinct, deterministically and with a warning: first by the kind of input (``a.jpg`` and ``a.png`` ->
    ``a_jpg``, ``a_png``; ``x.nii.gz`` and a DICOM folder ``x/`` -> ``x_nii_gz``, ``x_dicom``), then by the folders
    that differ (``p1/image.nii.gz`` and ``p2/image.nii.gz`` -> ``p1_image``, ``p2_image``), and last by a number
    (the same file listed twice).
    Characters that file systems refuse (``:``, ``*``, ...) become ``_``. A name longer than 223 bytes (which,
    with a postfix and an extension, would exceed the 255 bytes a file name can have) keeps its start and ends
    with a digest of all of it, so that it stays unique and is the same in every run.

    Args:
        sources: the image path (or series reference) of each case.
        case_ids: a name for each case, or ``None`` where its source names it.

    Returns:
        the output names, one per source.

    Example::

        >>> case_output_names(["/in/a.jpg", "/in/a.png", "/in/b.png"])
        ['a_jpg', 'a_png', 'b']
    """
    parts = [_parts(str(source)) for source in sources]
    for i, case_id in enumerate(case_ids or ()):
        if case_id:
            parts[i] = (parts[i][0], str(case_id), parts[i][2])
    names = [_UNSAFE.sub("_", name) for _, name, _ in parts]
    # inputs renamed because of another input, and because of their length: the warning says why
    shared: set[int] = set()
    shortened: set[int] = set()
    for group in _collisions(names):
        if len({parts[i][2] for i in group}) > 1:
            shared.update(group)
            for i in group:
                names[i] = f"{names[i]}_{parts[i][2]}"
    for group in _collisions(names):
        folders = [parts[i][0] for i in group]
        if len(set(folders)) > 1:
            shared.update(group)
            common = Path(os.path.commonpath([str(f) for f in folders]))
            for i, folder in zip(group, folders):
                relative = folder.relative_to(common).parts
                names[i] = _UNSAFE.sub("_", "_".join((*relative, names[i])))
    taken: set[str] = set()
    for i, name in enumerate(names):
        unique, number = name, 2
        while _file_key(shortened_name(unique, _NAME_BYTES)) in taken:
            shared.add(i)
            unique, number = f"{name}_{number}", number + 1
        names[i] = shortened_name(unique, _NAME_BYTES)
        if names[i] != unique:
            shortened.add(i)
        taken.add(_file_key(names[i]))
    renamed = []
    for i, (source, (_, base, _), name) in enumerate(zip(sources, parts, names)):
        if name == base:
            continue
        reasons = [
            reason
            for reason, applies in (
                ("characters that file systems refuse, or control characters", _UNSAFE.search(base)),
                ("the output name of another input", i in shared),
                ("a name too long for the file system", i in shortened),
            )
            if applies
        ]
        renamed.append(f"{source} -> {name} (it had {' and '.join(reasons)})")
    if renamed:
        # the first few: 1,500 renamed inputs had made one line of 100 KB
        shown = "; ".join(renamed[:_RENAMES_SHOWN]) + (
            f"; and {len(renamed) - _RENAMES_SHOWN} more" if len(renamed) > _RENAMES_SHOWN else ""
        )
        logger.warning("%d input(s) are written under another name than their own: %s", len(renamed), shown)
    return names


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes: ``(0, 1)`` outside ``torch.distributed``.

    Asked of ``torch.distributed`` directly, never through ignite's ``idist``, whose first call creates a process
    group: a collective that hangs when only some ranks (e.g. the one that logs) reach it.

    Example::

        >>> rank_and_world_size()
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_file(path: str | os.PathLike, rank: int) -> Path:
    """The file of process ``rank`` beside ``path``, for a job whose processes each write their own:
    ``<stem>.rank<k><suffix>``.

    Args:
        path: the file the job writes as a whole (``out/failures.csv``); only its name is changed, in its folder.
        rank: the process's rank (:func:`rank_and_world_size`).

    Example::

        >>> rank_file("out/failures.csv", 1).name
        'failures.rank1.csv'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def shard_items(items: Sequence[Any], rank: int | None = None, world_size: int | None = None) -> list[Any]:
    """The contiguous part of ``items`` that process ``rank`` of ``world_size`` handles.

    The shards are disjoint, cover ``items``, differ in length by at most one and keep the order, so results
    gathered rank by rank come back in the original order. Without ``rank`` and ``world_size`` they are those
    of the initialized ``torch.distributed`` process group; without one, all items.

    Args:
        items: what to split.
        rank: this process's rank.
        world_size: the number of processes.

    Example::

        >>> shard_items(list(range(5)), rank=1, world_size=2)
        [2, 3, 4]
    """
    if rank is None or world_size is None:
        rank, world_size = rank_and_world_size()
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not within a world of {world_size} process(es).")
    count = len(items)
    return list(items[rank * count // world_size : (rank + 1) * count // world_size])


def gather_items(items: Sequence[Any]) -> list[Any]:
    """The items of every process of the job, rank by rank; ``items`` itself without a process group.

    Every process must call it, each with its own items (picklable; none is fine). Results of the shards of
    :func:`shard_items` thus come back in the original order.

    Args:
        items: this process's items.

    Example::

        >>> gather_items(["a.png", "b.png"])  # one process
        ['a.png', 'b.png']
    """
    world_size = rank_and_world_size()[1]
    if world_size == 1:
        return list(items)
    parts: list[Any] = [None] * world_size
    dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


def per_case(value: Any) -> list[Any]:
    """The cases of an engine's batch or output, one item each.

    An evaluator that decollates (MONAI's default) holds a list of cases, which is returned as it is; one built
    with ``decollate=False`` holds one dictionary of batched values (its ``MetaTensor`` values marked ``is_batch``
    by the collation), which is split along its first axis (MONAI's ``decollate_batch``), so that the batch is not
    taken for one case, nor its batch axis for the classes. Any other dictionary is one case.

    Args:
        value: ``engine.state.batch`` or ``engine.state.output``.

    Example::

        >>> batch = MetaTensor(torch.zeros(2, 3, 4))
        >>> batch.is_batch = True
        >>> [tuple(case["pred"].shape) for case in per_case({"pred": batch})]
        [(3, 4), (3, 4)]
    """
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Mapping) and any(getattr(v, "is_batch", False) for v in value.values()):
        return decollate_batch(value, detach=False)
    return [value]


def file_meta(case: Any) -> Mapping[str, Any]:
    """The metadata that names a case's file: that of its ``"image"``, else of its first entry whose metadata has a
    ``filename_or_obj``; empty where none has (a failed case's record). A collated case's entries are lists.

    Args:
        case: a case of an engine's batch (a dictionary of its entries).

    Example::

        >>> file_meta({"img": MetaTensor(torch.zeros(1, 2), meta={"filename_or_obj": "a.png"})})["filename_or_obj"]
        'a.png'
    """
    if not isinstance(case, Mapping):
        return {}
    for value in ([case["image"]] if "image" in case else []) + list(case.values()):
        meta = getattr(value, "meta", None)
        if meta is not None and ImageMetaKey.FILENAME_OR_OBJ in meta:
            return meta
    return {}


def case_name(meta: Mapping[str, Any]) -> str:
    """The name that tells a case from every other case of its job in the per-case tables and reports.

    Its output name (:data:`CASE_NAME_KEY`, which :class:`CaseDataset` gives each datalist entry, so an image listed
    twice with two labels has two), else its image file, for cases that come from another dataset.

    Args:
        meta: the case's image metadata (a ``MetaTensor``'s ``meta``): its :data:`CASE_NAME_KEY`, else its
            ``filename_or_obj``, names the case; ``""`` where it has neither.

    Example::

        >>> case_name({"filename_or_obj": "/in/ct.nii.gz", "case_name": "ct_2"})
        'ct_2'
        >>> case_name({"filename_or_obj": "/in/a.png"})
        '/in/a.png'
    """
    return str(meta.get(CASE_NAME_KEY) or meta.get(ImageMetaKey.FILENAME_OR_OBJ, ""))


def case_output_name(metadict: dict | None, saver: Any) -> dict:
    """``output_name_formatter`` of MONAI's ``SaveImage(d)`` that names the file after the case's unique name.

    Uses the :data:`CASE_NAME_KEY` that :class:`CaseDataset` puts in the metadata; without it, MONAI's default
    (the input file's name).

    Args:
        metadict: the metadata of the image written (``None`` for none); its ``patch_index``, where it has one,
            is kept as the ``idx`` of the name.
        saver: the ``SaveImage`` that writes it, given on to MONAI's default formatter.

    Returns:
        the ``subject`` and ``idx`` that MONAI's ``FolderLayout`` makes the file name of; the subject ends with
        a dot, so that the layout takes no part of a name with dots for an extension.

    Example::

        >>> case_output_name({"case_name": "study_1.2.3"}, None)
        {'subject': 'study_1.2.3.', 'idx': None}
    """
    name = (metadict or {}).get(CASE_NAME_KEY)
    if not name:
        return default_name_formatter(metadict, saver)
    # MONAI's FolderLayout removes what looks like an extension from the subject; the trailing dot gives it an
    # empty one, so names with dots (DICOM UIDs, "patient.01") stay whole
    return {"subject": f"{name}.", "idx": (metadict or {}).get(ImageMetaKey.PATCH_INDEX)}


def saved_path(saver: SaveImage, name: str) -> Path | None:
    """The file MONAI's ``SaveImage`` writes for the case named ``name``, when :func:`case_output_name` names it."""
    if saver.fname_formatter is not case_output_name:
        return None
    # a copy that creates no folder: the layout of a saver makes the output folders as it names a file
    layout = copy.copy(saver.folder_layout)
    layout.makedirs = False
    return Path(layout.filename(**case_output_name({CASE_NAME_KEY: name}, saver)))


def case_output_paths(transforms: Any, name: str) -> list[Path]:
    """The files the writers among ``transforms`` write for the case named ``name`` (its unique output name).

    ``transforms`` is a transform or a chain of them (``Compose``, lists); the writers are MONAI's ``SaveImage(d)``
    named by :func:`case_output_name`, and any transform with an ``output_paths(name)`` method (the DICOM SEG and
    probability map writers). Other transforms write nothing that is known here.

    Args:
        transforms: a transform, or a chain of them (a ``Compose``, a list or a tuple, nested or not), searched
            in order.
        name: the case's unique output name (:func:`case_output_names`, :data:`CASE_NAME_KEY`).

    Returns:
        the paths, in the order of the writers; a ``SaveImage(d)`` named otherwise than by
        :func:`case_output_name` gives none. No folder is created.

    Example::

        >>> from monai.transforms import Activationsd, SaveImaged
        >>> save = SaveImaged("pred", output_dir="out", output_postfix="seg", separate_folder=False,
        ...                   output_name_formatter=case_output_name)
        >>> case_output_paths([Activationsd("pred", softmax=True), save], "ct_1")
        [PosixPath('out/ct_1_seg.nii.gz')]
    """
    paths: list[Path] = []
    pending = [transforms]
    while pending:
        transform = pending.pop(0)
        inner = transform if isinstance(transform, (list, tuple)) else getattr(transform, "transforms", None)
        if isinstance(inner, (list, tuple)):
            pending[:0] = list(inner)
            continue
        if callable(getattr(transform, "output_paths", None)):
            paths.extend(transform.output_paths(name))
            continue
        saver = getattr(transform, "saver", None) if isinstance(transform, SaveImaged) else transform
        if isinstance(saver, SaveImage) and (path := saved_path(saver, name)) is not None:
            paths.append(path)
    return paths


def failure_stage(error: BaseException, default: str) -> str:
    """The pipeline stage ``error`` came from: the MONAI transform that raised it, if any, decides.

    ``LoadImage(d)`` gives ``reading``; a writer (``Save*``, ``Write*``) gives ``writing``; any other transform
    gives ``default`` with the transform's name, e.g. ``preprocessing (Orientationd)``.

    Args:
        error: the exception of a failed case.
        default: the stage the case was in (``preprocessing``, ``postprocessing``, ...).

    Example::

        >>> failure_stage(ValueError("bad"), "inference")
        'inference'
    """
    failed = None
    while error is not None:
        match = _FAILED_TRANSFORM.match(str(error))
        if match:
            failed = match.group(1)
        error = error.__cause__
    if failed is None:
        return default
    if failed.startswith("Load"):
        return "reading"
    if failed.startswith(("Save", "Write")):
        return f"writing ({failed})"
    return f"{default} ({failed})"


def cached_dataset(
    data: Sequence[dict],
    transform: Callable | None = None,
    cache: str = "none",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = 1,
    lazy: bool = False,
    random_meta: bool = True,
) -> Dataset:
    """A MONAI dataset with the chosen caching of the deterministic head of ``transform``.

    - ``none``: ``Dataset``, every case is read and preprocessed each time it is used; least memory.
    - ``memory``: ``CacheDataset``, preprocessed cases are kept in RAM (up to the first random transform);
      fastest epochs, memory grows with the data set.
    - ``disk``: ``PersistentDataset``, preprocessed cases are saved under ``cache_dir`` and reused by later
      epochs and later runs; little RAM. Entries are keyed by the case, the size and modification time of
      each file it names, and the preprocessing's definition.

    Args:
        data: case dictionaries.
        transform: the preprocessing.
        cache: one of :data:`CACHE_MODES`.
        cache_dir: folder of the ``disk`` cache.
        num_workers: threads that fill the ``memory`` cache up front.
        lazy: fill the ``memory`` cache as cases are first used instead of up front, so that a failing case
            fails when it is used, alone.
        random_meta: ``False``: the random tail of ``transform`` (a training's augmentation) runs on plain
            tensors with MONAI's metadata tracking off (:class:`~monai_unets.transforms.MetaFreeRandomCompose`),
            for batches that nothing reads the metadata of.

    Example::

        >>> ds = cached_dataset(cases, preprocessing, cache="disk", cache_dir="cache")  # doctest: +SKIP

        In a bundle config: ``{"_target_": "monai_unets.data.cached_dataset", "cache": "@cache", ...}``.
    """
    if transform is not None:
        # MONAI caches up to the first transform that is random or not a Transform, and a nested Compose counts
        # as random: the bundles' preprocessing is a Compose of named Compose lists, which would cache nothing
        # and re-read every case at every iteration. Flat without a cache too, so that every mode seeds the random
        # transforms alike and draws the same samples
        transform = Compose(transform).flatten()
        if not random_meta:
            # imported here: monai_unets.transforms imports this module
            from ..transforms.utility import MetaFreeRandomCompose

            transform = MetaFreeRandomCompose(transform.transforms)
    if cache == "none":
        return Dataset(data=data, transform=transform)
    if cache == "memory":
        return CacheDataset(
            data=data, transform=transform, cache_rate=1.0, num_workers=num_workers, runtime_cache=lazy, progress=False
        )
    if cache == "disk":
        if not cache_dir:
            raise ValueError("cache='disk' needs a cache_dir to keep the preprocessed cases in.")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # The transform's definition and the files' states are part of the key, so a changed preprocessing or a
        # file corrected in place never reads stale entries. Entries keep their metadata and the operations
        # applied (Invertd and the case names need them), which only a full unpickling reads back: the cache
        # holds this function's own writes in a folder the user chose.
        return PersistentDataset(
            data=data,
            transform=transform,
            cache_dir=cache_dir,
            hash_func=_case_digest,
            hash_transform=_transforms_digest,
            track_meta=True,
            weights_only=False,
        )
    raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}.")


def _code_digest(code: types.CodeType) -> str:
    """A digest of what a function's code computes: its bytecode, constants (nested code too) and names."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts.append(_code_digest(const).encode() if isinstance(const, types.CodeType) else repr(const).encode())
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


def _described(value: Any, seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-able account of ``value`` (a transform and its settings, nested objects included), for a digest.

    Objects are followed to any depth (a reader's settings sit nine levels inside a ``LoadImaged``); one met again
    inside itself is named, not followed. A function is described by its code, defaults and closure, so that two
    lambdas, or a function edited between runs, are told apart.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        array = np.ascontiguousarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
        return [str(array.dtype), list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]
    if isinstance(value, (set, frozenset)):
        return sorted(str(v) for v in value)
    if isinstance(value, (type, types.BuiltinFunctionType)):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    if id(value) in seen:
        return f"<{type(value).__qualname__} within itself>"
    seen = seen | {id(value)}
    if isinstance(value, (list, tuple)):
        return [_described(v, seen) for v in value]
    if isinstance(value, dict):
        return {str(k): _described(v, seen) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, types.MethodType):
        return [_described(value.__func__, seen), _described(value.__self__, seen)]
    if isinstance(value, types.FunctionType):
        cells = []
        for cell in value.__closure__ or ():
            try:
                cells.append(_described(cell.cell_contents, seen))
            except ValueError:  # a cell not filled yet
                cells.append(None)
        name = f"{value.__module__}.{value.__qualname__}"
        return [name, _code_digest(value.__code__), _described(value.__defaults__, seen), cells]
    if hasattr(value, "__dict__"):
        return [type(value).__qualname__, _described(vars(value), seen)]
    return type(value).__qualname__


def _transforms_digest(transforms: Sequence) -> bytes:
    """The disk cache's key of the cached preprocessing: every setting of each transform, not only its class.

    MONAI's JSON digest of transform objects fails on them and falls back to their class names, so a run with
    another spacing, image size or plan read the entries of the earlier one.
    """
    return json_hashing(_described(list(transforms)))


def _file_states(value: Any) -> list:
    """(path, size, modification time) of each file that ``value`` (a case entry) names; a folder's files too."""
    if isinstance(value, (list, tuple)):
        return [state for item in value for state in _file_states(item)]
    if not isinstance(value, (str, os.PathLike)):
        return []
    path = Path(parse_series_reference(value)[0])
    try:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        return [(str(f), state.st_size, state.st_mtime_ns) for f in files for state in [f.stat()]]
    except OSError:  # not a path, or gone: reading the case reports it
        return []


def _case_digest(case: dict) -> bytes:
    """The disk cache's key of a case: its entries (an array by its values) and the state of every file they name."""
    states = {key: _file_states(value) for key, value in sorted(case.items())}
    return json_hashing({"case": _described(case), "files": states})


def _stamp(item: Any, name: str, index: int) -> Any:
    values = item.values() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else [item]
    for value in values:
        if isinstance(value, MetaTensor):
            value.meta[CASE_NAME_KEY] = name
            value.meta[CASE_INDEX_KEY] = index
        elif isinstance(value, (dict, list, tuple)):
            _stamp(value, name, index)
    return item


class CaseDataset(torch.utils.data.Dataset):
    """The cases of a batch inference or evaluation job: named, optionally sharded, failing without a crash.

    Every case gets a unique output name (:func:`case_output_names`, over all cases, before sharding), stored
    with its index in the metadata of each ``MetaTensor`` of the item (:data:`CASE_NAME_KEY`,
    :data:`CASE_INDEX_KEY`) for the writers (:func:`case_output_name`) and the reports. A case whose
    ``transform`` raises (unreadable file, failed check, wrong dimensions), or whose listing found it cannot be run
    (:data:`~monai_unets.data.medical_io.LISTING_PROBLEM_KEY`), yields ``{FAILURE_KEY: {"case", "file", "stage",
    "error", "index"}}`` instead of data; :class:`monai_unets.handlers.CaseIsolationHandler`
    records it and the next case follows. Use ``batch_size=1``.

    Args:
        data: case dictionaries.
        transform: the preprocessing of a case.
        source_key: key of the image that names a case (its file, folder or series reference; the first of a
            case's files, one per channel).
        shard: keep only this process's part of the cases (:func:`shard_items`) when ``torch.distributed`` is
            initialized, for runs under ``torchrun``.
        cache: caching of the preprocessed cases, see :func:`cached_dataset`; ``memory`` is filled as cases
            are used.
        cache_dir: folder of the ``disk`` cache.

    Example::

        >>> ds = CaseDataset([{"image": "a.png"}, {"image": "missing.png"}], LoadImaged("image"))  # doctest: +SKIP
        >>> ds[1]["case_failure"]["stage"]  # doctest: +SKIP
        'reading'
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Callable | None = None,
        source_key: str = "image",
        shard: bool = False,
        cache: str = "none",
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        entries = [case.get(source_key, f"case {i}") for i, case in enumerate(data)]
        # a case of several files, one per channel, is named after the first, as MONAI's reading names its image
        sources = [str(e[0]) if isinstance(e, (list, tuple)) and e else str(e) for e in entries]
        names = case_output_names(sources, [case.get(CASE_ID_KEY) for case in data])
        indices = list(range(len(data)))
        if shard:
            indices = shard_items(indices)
        self.total = len(data)
        self.indices = indices
        self.names = [names[i] for i in indices]
        self.entries = [entries[i] for i in indices]
        self.problems = [data[i].get(LISTING_PROBLEM_KEY) for i in indices]
        self.dataset = cached_dataset([data[i] for i in indices], transform, cache, cache_dir, lazy=True)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Any:
        name, index = self.names[position], self.indices[position]
        problem = self.problems[position]
        try:
            if problem:
                raise ValueError(problem)
            item = self.dataset[position]
        except Exception as error:  # noqa: BLE001 - one failing case must leave the others running
            stage = "listing" if problem else failure_stage(error, "preprocessing")
            file = files_at_fault(self.entries[position], error)
            reason = describe_error(error, file)
            logger.error("case %s (%s) failed in %s: %s", name, file, stage, reason)
            record = {"case": name, "file": file, "stage": stage, "error": reason, "index": index}
            return {FAILURE_KEY: record}
        return _stamp(item, name, index)
