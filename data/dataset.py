"""How a case that fails is reported: the file at fault and the reason in one line (``failures.csv``, the logs, the
last line of a run)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "REASON_LENGTH",
    "describe_error",
    "files_at_fault",
    "itk_error_reason",
    "one_line",
]

# the layer that MONAI's apply_transform puts around a failing transform's exception
_MONAI_WRAPPER = re.compile(r"applying transform ")
# ITK's reason, after the source file and line its messages start with ("ITK ERROR:", or "itk::ERROR:" from some
# image IOs), with the lines of detail that follow it up to a blank line (after which MONAI's LoadImage adds the
# tracebacks of its other readers); the object address is left out
_ITK_ERROR = re.compile(r"^(?:ITK ERROR|itk::ERROR): (.+?)(?=\n\s*\n|\Z)", re.MULTILINE | re.DOTALL)
_ITK_ADDRESS = re.compile(r"\(0x[0-9a-fA-F]+\)")
# a C++ source file and line ("/src/ITK/Modules/IO/NRRD/src/itkNrrdImageIO.cxx:410:")
_SOURCE_LINE = re.compile(r"\S+\.(?:cxx|cpp|cc|hxx|h):\d+:?")
# a line of the NRRD library's error stack, "[nrrd] function: message", outermost call first
_NRRD_STACK_LINE = re.compile(r"^\[\w+\] \w+: ?(.*)$")
# "PIL.UnidentifiedImageError: x.png: cannot identify ..." in an embedded traceback, with the lines its message goes
# on over, up to the blank line that ends a traceback
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (.+?)(?=\n\s*\n|\Z)", re.MULTILINE | re.DOTALL
)

#: characters of a reason kept beyond its first line: a message that goes on over lines (a numpy array, a list) is
#: given whole up to this length, then cut
REASON_LENGTH = 500


def one_line(message: str, limit: int = REASON_LENGTH) -> str:
    r"""``message`` as one line: its lines joined, each run of white space one space; a message of several lines
    that comes to more than ``limit`` characters is cut there, between words and never inside its first line,
    ending with "...".

    Args:
        message: e.g. an exception's message that prints a numpy array over several lines.
        limit: the length kept of a message of several lines.

    Example::

        >>> one_line("affines differ. Got [[ 1.  0.  0. 50.]\n [ 0.  1.  0.  0.]]")
        'affines differ. Got [[ 1. 0. 0. 50.] [ 0. 1. 0. 0.]]'
    """
    text = " ".join(message.split())
    first = " ".join(message.strip().partition("\n")[0].split())
    keep = max(limit, len(first))
    # cut between words: a number cut short would read as another number
    return text if len(text) <= keep else text[: keep + 1].rsplit(" ", 1)[0] + " ..."


def describe_error(error: BaseException, named: str | os.PathLike | None = None) -> str:
    r"""What is wrong with a case, in one line: ``"Type: message"`` of the exception that says so.

    MONAI wraps a failing transform's exception in ``RuntimeError("applying transform ...")`` layers, which are
    looked through; an exception raised ``from`` a lower-level one is kept, as it says more about the file (PIL's
    "image file is truncated", not the ``struct.error`` behind it). ``LoadImage`` folds the tracebacks of every
    reader it tried into one message; the first reader's own exception (the reader the config asked for) says
    what is actually wrong with the file. A message of several lines is made one (:func:`one_line`).

    Args:
        error: the case's failure.
        named: the file that the reason is shown under (or the files, as :func:`files_at_fault` joins them); a
            message that starts with it (``"<file>: problem"``, as the readers' and checks' errors do, or
            ``"<file> is ..."`` / ``"<file> has ..."``) is given without it, from its verb on.

    Example::

        >>> describe_error(ValueError("image is empty\nmore details"))
        'ValueError: image is empty more details'
        >>> describe_error(ValueError("/data/a.png: not an image"), named="/data/a.png")
        'ValueError: not an image'
        >>> describe_error(ValueError("/data/a.nii has a voxel size of 0"), named="/data/a.nii")
        'ValueError: has a voxel size of 0'
    """
    while error.__cause__ is not None and isinstance(error, RuntimeError) and _MONAI_WRAPPER.match(str(error)):
        error = error.__cause__
    message = str(error)
    kind = type(error).__name__
    reason = itk_error_reason(message)
    if not reason:
        embedded = _EXCEPTION_LINE.search(message)
        kind, reason = (embedded.group(1), embedded.group(2)) if embedded else (kind, message)
    reason = one_line(reason)
    if named is not None:
        # MONAI's readers take a path as str(Path(...)), which may spell it otherwise than the case does
        # a sentence with the file as its subject then reads as the checks' own reasons do ("has 2 channels")
        for spelling in (str(named), str(Path(named))):
            if reason.startswith(f"{spelling}: "):
                reason = reason[len(spelling) + 2 :]
                break
            if reason.startswith((f"{spelling} is ", f"{spelling} has ")):
                reason = reason[len(spelling) + 1 :]
                break
    return f"{kind}: {reason}"


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
    r"""The reason of an ITK error message in one line; ``None`` if ``message`` is none.

    The reason is the ``ITK ERROR:`` (or ``itk::ERROR:``) line with the lines of detail that follow it, without
    object addresses and C++ source files and lines, which tell a user nothing. Of the NRRD library's stack of
    "[nrrd] function: message" lines, whose outer calls only say "trouble reading", the innermost is kept: it says
    why (a short read, a data file that cannot be opened).

    Args:
        message: the text of an exception that ITK raised.

    Example::

        >>> itk_error_reason("/itk/itkImageFileReader.hxx:135:\nITK ERROR: ImageFileReader(0x55d1): Could not read")
        'ImageFileReader: Could not read'
        >>> itk_error_reason('itk::ERROR: NrrdImageIO(0x5e): Read: Error reading a.nrrd:\n'
        ...                  '[nrrd] nrrdLoad: trouble\n[nrrd] _nrrdEncodingRaw_read: fread got only 9')
        'NrrdImageIO: Read: Error reading a.nrrd: fread got only 9'
    """
    found = _ITK_ERROR.search(message)
    if not found:
        return None
    lines = [_SOURCE_LINE.sub("", _ITK_ADDRESS.sub("", line)) for line in found.group(1).splitlines()]
    nrrd_stack = [match.group(1) for match in map(_NRRD_STACK_LINE.match, lines) if match]
    details = [line for line in lines if not _NRRD_STACK_LINE.match(line)] + nrrd_stack[-1:]
    return one_line("\n".join(details)) or None
