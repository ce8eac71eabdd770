"""A dataset for batch jobs in which one unreadable case must not stop the others."""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from monai.data import IterableDataset
from monai.transforms import apply_transform
from torch.utils.data import get_worker_info

from .atomic import TEXT_ERRORS

__all__ = ["SkipFailedCasesDataset", "describe_error", "files_at_fault", "itk_error_reason"]

logger = logging.getLogger(__name__)


# the layer that MONAI's apply_transform puts around a failing transform's exception
_MONAI_WRAPPER = re.compile(r"applying transform ")
# ITK's reason, after the source file and line its messages start with; the object address is left out
_ITK_ERROR_LINE = re.compile(r"^ITK ERROR: (.+)$", re.MULTILINE)
_ITK_ADDRESS = re.compile(r"\(0x[0-9a-fA-F]+\)")
# "PIL.UnidentifiedImageError: cannot identify image file 'x.png'" as a line of an embedded traceback
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (.+)$", re.MULTILINE)


def describe_error(error: BaseException) -> str:
    r"""What is wrong with a case, in one line: ``"Type: message"`` of the exception that says so.

    MONAI wraps a failing transform's exception in ``RuntimeError("applying transform ...")`` layers, which are
    looked through; an exception raised ``from`` a lower-level one is kept, as it says more about the file (PIL's
    "image file is truncated", not the ``struct.error`` behind it). ``LoadImage`` folds the tracebacks of every
    reader it tried into one message; the first reader's own exception (the reader the config asked for) says
    what is actually wrong with the file.

    Example::

        >>> describe_error(ValueError("image is empty\nmore details"))
        'ValueError: image is empty'
    """
    while error.__cause__ is not None and isinstance(error, RuntimeError) and _MONAI_WRAPPER.match(str(error)):
        error = error.__cause__
    message = str(error)
    reason = itk_error_reason(message)
    if reason:
        return f"{type(error).__name__}: {reason}"
    embedded = _EXCEPTION_LINE.search(message)
    if embedded:
        return f"{embedded.group(1)}: {embedded.group(2).strip()}"
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return f"{type(error).__name__}: {first_line}"


def files_at_fault(files: Any, error: BaseException | None = None) -> str:
    """The files of a case's entry that ``error`` is about, joined by ", ".

    An entry of several files, one per channel, is read into one image, which knows none of its files: a check of
    such an image names the channels at fault instead (an exception with a ``channels`` list, as
    :class:`monai_unets.data.checks.ChannelFilesError`), whose files are named here, where the case is known.
    Other errors are about every file of the entry.

    Args:
        files: the case's entry: a path, or a list of paths (one per channel).
        error: the case's failure; ``None`` for every file.

    Example::

        >>> files_at_fault(["t1.nii.gz", "t2.nii.gz"])
        't1.nii.gz, t2.nii.gz'
    """
    paths = [str(f) for f in files] if isinstance(files, (list, tuple)) else [str(files)]
    while error is not None and getattr(error, "channels", None) is None:
        error = error.__cause__
    channels = getattr(error, "channels", None) or []
    if channels and max(channels) < len(paths):
        paths = [paths[c] for c in channels]
    return ", ".join(paths)


def itk_error_reason(message: str) -> str | None:
    """The reason of an ITK error message (its ``ITK ERROR:`` line without object addresses); ``None`` if none.

    ITK's messages start with the source file and line that raised them, which tell a user nothing.

    Example::

        >>> itk_error_reason("ITK ERROR: ImageFileReader(0x55d1): Could not read")
        'ImageFileReader: Could not read'
    """
    line = _ITK_ERROR_LINE.search(message)
    return _ITK_ADDRESS.sub("", line.group(1)).strip() if line else None


class SkipFailedCasesDataset(IterableDataset):
    """Applies ``transform`` to each case; a case whose transform raises is reported and skipped.

    For inference and evaluation over many files: a corrupt, truncated or missing image is logged as an error
    that names its file and the reason, and recorded in ``failures`` (and in ``failure_log``, a CSV with
    ``case,file,error`` columns), while every other case is processed as usual. Cases keep their order with
    one worker; with several DataLoader workers they are sharded across workers.

    Because it skips cases, the dataset has no length; MONAI's engines then run one pass over it.

    Args:
        data: case dictionaries.
        transform: the preprocessing to apply to each case.
        source_key: key of the file that names a case in messages.
        failure_log: CSV file to write failures to; created (empty, with a header) when the dataset is
            built, so a run without failures leaves an empty report rather than a stale one.

    Example::

        >>> ds = SkipFailedCasesDataset([{"image": "missing.png"}], LoadImaged("image"))  # doctest: +SKIP
        >>> list(ds)  # doctest: +SKIP
        []
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Callable | None = None,
        source_key: str = "image",
        failure_log: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(data=data, transform=transform)
        self.source_key = source_key
        self.failure_log = Path(failure_log) if failure_log else None
        self.failures: list[dict[str, str]] = []
        if self.failure_log is not None:
            self.failure_log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.failure_log, "w", newline="", encoding="utf-8", errors=TEXT_ERRORS) as f:
                csv.writer(f).writerow(["case", "file", "error"])

    def __iter__(self):
        info = get_worker_info()
        num_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        for index, case in enumerate(self.data):
            if index % num_workers != worker:
                continue
            try:
                item = apply_transform(self.transform, case) if self.transform is not None else case
            except Exception as error:  # noqa: BLE001 - any failure of one case must leave the others running
                self._report(index, case, error)
                continue
            yield item

    def _report(self, index: int, case: dict, error: Exception) -> None:
        source = (
            files_at_fault(case.get(self.source_key, f"case {index}"), error)
            if isinstance(case, dict)
            else f"case {index}"
        )
        reason = describe_error(error)
        logger.error("skipped %s: %s", source, reason)
        record = {"case": str(index), "file": source, "error": reason}
        self.failures.append(record)
        if self.failure_log is not None:
            # one short append per failure: safe enough across DataLoader worker processes
            with open(self.failure_log, "a", newline="", encoding="utf-8", errors=TEXT_ERRORS) as f:
                csv.writer(f).writerow([record["case"], record["file"], record["error"]])
