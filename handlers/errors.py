"""Errors a person can act on: one last line naming the file, key or value and what to do; tracebacks to a file.

A bundle run (``python -m monai.bundle run ...``) wraps every failure of a config expression in
``RuntimeError: Failed to evaluate ConfigExpression`` and prints tracebacks of 60 to 1,000 lines. Each bundle
config's ``initialize`` calls :func:`report_errors` first, so that an uncaught error of the run instead writes
its full traceback to a log file and ends the output with one line from :func:`explain`; and
:func:`check_settings` next, so that a wrong-typed setting (``--max_epochs abc``) is named before any work.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import logging
import math
import os
import re
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TextIO

from ..data.atomic import TEXT_ERRORS
from ..data.cases import rank_file
from ..data.dataset import itk_error_reason, one_line
from ..data.medical_io import OutputFolderError
from ..networks.runtime import RUNTIMES

__all__ = [
    "SETTINGS",
    "SettingError",
    "check_settings",
    "escape_unencodable_output",
    "explain",
    "point_at_null_device",
    "printable",
    "printable_records",
    "quiet_closed_stdout",
    "report_errors",
    "root_cause",
]


class SettingError(ValueError):
    """A configuration value of the wrong type or out of range; the message names the key and the value.

    Example::

        >>> explain(SettingError("max_epochs must be an integer >= 1, got 'abc'."))
        "max_epochs must be an integer >= 1, got 'abc'."
    """


def _integer(minimum: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    def ok(v: object) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return ok


def _sizes(v: object) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(_integer(1)(s) for s in v)


def _spacings(v: object) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(_number(0, low_open=True)(s) for s in v)


def _names(v: object) -> bool:
    return (
        isinstance(v, (list, tuple))
        and len(v) > 0
        and all(isinstance(n, str) and n.strip() for n in v)
        and len(set(v)) == len(v)
    )


def _one_of(*choices: str) -> tuple[Callable[[object], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(repr(c) for c in choices)


# an on/off setting: a real bool, so that a string like "false" from a config is not taken as true
_SWITCH: tuple[Callable[[object], bool], str] = (lambda v: isinstance(v, bool), "True or False")


def _distance(v: object) -> bool:
    return _number(0)(v) and v != math.inf


#: setting name -> (test, what it must be). A bundle config checks the settings it has with :func:`check_settings`.
SETTINGS: dict[str, tuple[Callable[[object], bool], str]] = {
    "max_epochs": (_integer(1), "an integer >= 1"),
    "val_interval": (_integer(1), "an integer >= 1"),
    "batch_size": (_integer(1), "an integer >= 1"),
    "samples_per_volume": (_integer(1), "an integer >= 1"),
    "sw_batch_size": (_integer(1), "an integer >= 1"),
    "num_workers": (_integer(0), "an integer >= 0"),
    "num_classes": (_integer(1), "an integer >= 1"),
    "split_seed": (_integer(0), "an integer >= 0"),
    "learning_rate": (_number(0, low_open=True), "a number > 0"),
    "weight_decay": (_number(0), "a number >= 0"),
    "val_fraction": (_number(0, 1, True, True), "a number between 0 and 1 (exclusive)"),
    "val_time_fraction": (_number(0, 1, low_open=True), "a number in (0, 1]"),
    "overlap": (_number(0, 1, high_open=True), "a number in [0, 1)"),
    "affine_tolerance": (_number(0), "a distance in mm >= 0"),
    "intensity_min": (_number(-math.inf), "a number"),
    "intensity_max": (_number(-math.inf), "a number"),
    "patch_size": (_sizes, "a list of integers >= 1, e.g. [96, 96, 96]"),
    "image_size": (_sizes, "a list of integers >= 1, e.g. [256, 256]"),
    "pixdim": (_spacings, "a list of spacings in mm > 0, e.g. [1.5, 1.5, 2.0]"),
    # the surface Dice's tolerance: one for every class, or one per class (checked against num_classes)
    "nsd_tolerance_mm": (
        lambda v: _distance(v) or (isinstance(v, (list, tuple)) and bool(v) and all(map(_distance, v))),
        "a distance in mm >= 0, or a list of one per class (without the background), e.g. 2.0 or [2.0, 1.0]",
    ),
    # the names of label values 1, 2, ... (the DICOM SEG's segments, MONAI Label's labels): one each, told apart
    "class_names": (_names, "a list of distinct names, e.g. ['pancreas', 'tumour']"),
    # a bundle of one class from end to end (binarised masks, a sigmoid, 0/255 PNGs): num_classes must be 1
    "binary_task": _SWITCH,
    "amp": _SWITCH,
    "bf16": _SWITCH,
    "channels_last": _SWITCH,
    "augment": _SWITCH,
    "background_postprocessing": _SWITCH,
    "quiet": _SWITCH,
    "tta": _SWITCH,
    "write_probabilities": _SWITCH,
    "resume": (_SWITCH[0], "True or False (on the command line: --resume False)"),
    # None: torch's default, one thread per core
    "cpu_threads": (lambda v: v is None or _integer(1)(v), "an integer >= 1, or None for one per core"),
    # checked here, before the network is built, so that the error names the key the user typed and not the
    # network's argument (UNetV2's pretrained)
    "pretrained_encoder": (
        lambda v: v is None or (isinstance(v, (str, os.PathLike)) and os.path.isfile(v)),
        "the path of an existing local PVTv2 weights file (pvt_v2_b2.pth, from https://github.com/whai362/PVT), "
        "or None for a randomly initialised encoder",
    ),
    # None: no time limit (only max_epochs)
    "max_minutes": (
        lambda v: v is None or _number(0, low_open=True)(v),
        "a number of minutes > 0, or None for no limit",
    ),
    "max_minutes_clock": _one_of("wall", "cpu"),
    "runtime": _one_of(*RUNTIMES),
    "nan_policy": _one_of("error", "replace"),
    "bad_case_policy": _one_of("error", "skip"),
}


def check_settings(settings: Mapping[str, object]) -> None:
    """Checks configuration values by name against :data:`SETTINGS`, before any work starts.

    Settings given together are also checked against each other: ``class_names`` names the label values 1 to
    ``num_classes - 1`` (0 is the background), so a ``num_classes`` changed without as many ``class_names``, or
    the other way round, is refused with both values; a bundle whose ``binary_task`` is true takes ``num_classes``
    1 only.

    Args:
        settings: name -> value, e.g. ``{"max_epochs": "@max_epochs", ...}`` in a bundle config.

    Raises:
        SettingError: the first wrong value: ``"max_epochs must be an integer >= 1, got 'abc'"``; or
            ``num_classes`` and ``class_names`` that do not fit each other.
        KeyError: a name that :data:`SETTINGS` does not know (a mistake in the config, not in the input).

    Example::

        >>> check_settings({"max_epochs": 10, "learning_rate": 1e-3})
        >>> check_settings({"max_epochs": "abc"})
        Traceback (most recent call last):
        ...
        monai_unets.handlers.errors.SettingError: max_epochs must be an integer >= 1, got 'abc'.
        >>> check_settings({"num_classes": 4, "class_names": ["pancreas", "tumour"]})
        Traceback (most recent call last):
        ...
        monai_unets.handlers.errors.SettingError: num_classes 4 and class_names ['pancreas', 'tumour'] do not fit: ...
    """
    for name, value in settings.items():
        test, wanted = SETTINGS[name]
        if not test(value):
            raise SettingError(f"{name} must be {wanted}, got {value!r}.")
    if "num_classes" in settings and "class_names" in settings:
        _check_classes(settings["num_classes"], settings["class_names"])
    if settings.get("binary_task") and settings.get("num_classes", 1) != 1:
        # the network alone would take more classes, and the run failed at its first step or case instead
        raise SettingError(
            f"num_classes must be 1 in this bundle, got {settings['num_classes']!r}: it segments one class (its "
            "masks are binarised, its output is a sigmoid thresholded into 0/255 masks); a task of several classes "
            "needs a config of its own (the bundle's docs/README.md, Known limits)."
        )
    tolerances = settings.get("nsd_tolerance_mm")
    if isinstance(tolerances, (list, tuple)) and "num_classes" in settings:
        named = settings["num_classes"] - 1
        if len(tolerances) != named:
            raise SettingError(
                f"nsd_tolerance_mm {list(tolerances)!r} has {len(tolerances)} value(s) for the {named} classes of "
                f"num_classes {settings['num_classes']} (the background has none): give {named}, or one number for "
                "every class."
            )


def _check_classes(num_classes: int, class_names: Sequence[str]) -> None:
    # one of the two overridden alone: the network would train one number of classes and the plan saved with its
    # weights name another, and inference, DICOM SEG and MONAI Label would take the names for other classes
    named = num_classes - 1
    if len(class_names) != named:
        other = f" or give {named} class_names" if named > 0 else ""
        raise SettingError(
            f"num_classes {num_classes} and class_names {list(class_names)!r} do not fit: class_names names labels "
            f"1 to num_classes - 1 (0 is the background), {named} names for num_classes {num_classes}, got "
            f"{len(class_names)}; set num_classes to {len(class_names) + 1}{other}."
        )


def _chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while True:
        # an error raised while another was handled has it as its context, which is not its cause (pathlib's
        # mkdir, refused, had been reported as the FileNotFoundError it first met): the context is followed from a
        # RuntimeError only, as libraries wrap the error they explain in one
        context = type(error) is RuntimeError and not error.__suppress_context__
        inner = error.__cause__ or (error.__context__ if context else None)
        if inner is None or any(inner is e for e in chain):
            return chain
        chain.append(inner)
        error = inner


def _ours(error: BaseException) -> bool:
    return type(error).__module__.startswith("monai_unets")


def root_cause(error: BaseException) -> BaseException:
    """The exception of ``error``'s chain that says what is wrong (MONAI's config wrappers set ``__cause__``).

    The innermost error raised by monai_unets's own checks when there is one (it names the file or key and
    wraps the library error it explains), otherwise the innermost exception.

    Args:
        error: the exception caught. Its chain is followed through ``__cause__``, else ``__context__`` unless
            ``raise ... from None`` suppressed it; ``error`` itself when it has neither.

    Example::

        >>> error = RuntimeError("Failed to evaluate ConfigExpression")
        >>> error.__cause__ = FileNotFoundError("dataset.json")
        >>> root_cause(error)
        FileNotFoundError('dataset.json')
    """
    chain = _chain(error)
    return next((e for e in reversed(chain) if _ours(e)), chain[-1])


# exception type name -> what to do, for errors whose message alone does not say it
_HINTS: dict[str, str] = {
    "OutOfMemoryError": "lower batch_size, patch_size or sw_batch_size, or set --stitch_device to the CPU.",
    "FileNotFoundError": "check the path (dataset_dir, datalist, input_dir, bundle_root).",
    "PermissionError": "check that this account may read the inputs (dataset_dir, input_dir) and write the output "
    "folders (output_dir, ckpt_dir).",
    "FileExistsError": "a folder to write to (output_dir, ckpt_dir) is an existing file: give another path.",
}

# MONAI's optional imports (OptionalImportError) name the module in their message only
_NO_MODULE = re.compile(r"No module named '([^']+)'")


def _missing_module(error: BaseException) -> str | None:
    if isinstance(error, ModuleNotFoundError) and error.name:
        return error.name
    match = _NO_MODULE.search(str(error)) if isinstance(error, ImportError) else None
    return match.group(1) if match else None


def _install_hint(module: str) -> str:
    """What to install for a missing ``module``: the extra of monai-unets that brings it (``onnx``, ``mlflow``),
    which ``pip install monai-unets`` leaves out, else the package's own dependencies.

    Args:
        module: the module an import did not find (``onnxruntime``, ``mlflow.tracking``).

    Example::

        >>> _install_hint("onnxruntime")
        "pip install 'monai-unets[onnx]' (an optional feature's packages)."
    """
    top = module.partition(".")[0].lower().replace("-", "_")
    try:
        requirements = importlib.metadata.requires("monai-unets") or []
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was not installed
        requirements = []
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        extra = re.search(r"extra == \"([^\"]+)\"", marker)
        package = re.split(r"[^A-Za-z0-9_.-]", name.strip(), maxsplit=1)[0].lower().replace("-", "_")
        # a distribution named after its module, or after it and a variant (module mlflow, mlflow-skinny)
        if extra and extra.group(1) != "test" and (package == top or package.startswith(top + "_")):
            return f"pip install 'monai-unets[{extra.group(1)}]' (an optional feature's packages)."
    return "install the missing package (pip install monai-unets brings every required one)."


# what torch.distributed raises in a process whose collective was cut off by another process of the job that
# stopped: gloo's "Connection closed by peer", NCCL's "remote process exited"
_PEER_STOPPED = re.compile(r"Connection (closed|reset) by peer|remote process exited")


def explain(error: BaseException) -> str:
    """One line for a person: what went wrong (file, key or value) and what to do.

    Errors of monai_unets's checks (data, settings, checkpoints) already say both and are given as they are;
    for other errors the innermost exception is named, with a hint for common ones. A process of a ``torchrun``
    job that stopped because another one did (rank 0 refusing an input, while this one waited for it) says so:
    the reason is that process's own line, not the library's message about the lost connection.

    Args:
        error: the exception that ended the run; its :func:`root_cause` is what the line is about.

    Returns:
        ``"<type>: <message> -- <hint>"`` for another library's error (the message on one line, ITK's reduced to
        its reason, the hint only for common types); the message of monai_unets's own error, which may have
        several lines; or, for a lost connection to a stopped process, the line that points at that process.

    Example::

        >>> explain(RuntimeError("Failed to evaluate ConfigExpression"))
        'RuntimeError: Failed to evaluate ConfigExpression'
        >>> error = RuntimeError("Failed to evaluate ConfigExpression")
        >>> error.__cause__ = FileNotFoundError("dataset.json")
        >>> explain(error)
        'FileNotFoundError: dataset.json -- check the path (dataset_dir, datalist, input_dir, bundle_root).'
    """
    cause = root_cause(error)
    if _ours(cause):
        # our messages may list several files, one a line, before the line that says what to do
        return str(cause).strip()
    if isinstance(cause, RuntimeError) and _PEER_STOPPED.search(str(cause)):
        return (
            "another process of this job stopped, and this one with it: that process's ERROR line says why, or, "
            "where it wrote none, torchrun's summary (exitcode -9: it was killed, e.g. for want of memory)."
        )
    text = itk_error_reason(str(cause)) or one_line(str(cause)) or "(no message)"
    hint = _HINTS.get(type(cause).__name__, "")
    missing = _missing_module(cause)
    if missing is not None:
        text = one_line(str(cause).strip().partition("\n")[0])  # MONAI's adds a link and the import's traceback
        hint = "" if "pip install" in text else _install_hint(missing)
    link = _dangling_link(cause)
    if link is not None:
        hint = (
            f"{link} is a link to {os.readlink(link)}, which does not exist (a share not mounted?): mount it, or "
            "give another path."
        )
    return f"{type(cause).__name__}: {text}" + (f" -- {hint}" if hint else "")


def _dangling_link(error: BaseException) -> Path | None:
    """The link to nothing on the way to the file of a FileNotFoundError or FileExistsError (an output folder on a
    share not mounted), if there is one."""
    name = getattr(error, "filename", None) if isinstance(error, (FileNotFoundError, FileExistsError)) else None
    if not isinstance(name, (str, os.PathLike)):
        return None
    path = Path(os.path.abspath(name))
    return next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)


# MONAI's StatsHandler logs the exception that ends a run, with its traceback, before re-raising it
_RERAISING_LOGGERS = frozenset({"monai.handlers.StatsHandler"})


def _without_traceback(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    # records are stripped as they are made: a filter would have to create the logger before MONAI's get_logger
    # does, which then leaves it without its handler
    def make(name, level, fn, lno, msg, args, exc_info, *rest, **kwargs) -> logging.LogRecord:
        if name in _RERAISING_LOGGERS:
            exc_info = None
        return factory(name, level, fn, lno, msg, args, exc_info, *rest, **kwargs)

    make.strips_tracebacks = True  # type: ignore[attr-defined]
    return make


# control characters (C0 but tab, DEL, C1) and the bidirectional overrides: in a file name they move a terminal's
# cursor, colour or clear its screen, start a new line that reads as the run's own, or show the name's end reversed
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, keep: str = "", indented: bool = False) -> str:
    """``text`` with its control characters written as escapes (``\\x1b``, ``\\n``), for a terminal or a log.

    Args:
        text: a message, or a name from the file system that it holds.
        keep: control characters to leave as they are (``"\\n"`` for a log's format string of several lines).
        indented: leave a line break followed by two spaces, the form in which an error message lists its items
            on lines of their own; any other line break (one in a file name) is escaped.

    Example::

        >>> printable("scan\\x1b[2J\\n.png")
        'scan\\\\x1b[2J\\\\n.png'
        >>> print(printable("2 cases cannot be read:\\n  a\\nINFO.png: empty", indented=True))
        2 cases cannot be read:
          a\\nINFO.png: empty
    """

    def escaped(match: re.Match) -> str:
        kept = match[0] in keep or (indented and match[0] == "\n" and text.startswith("  ", match.end()))
        return match[0] if kept else match[0].encode("unicode_escape").decode()

    return _CONTROLS.sub(escaped, text)


def _printable_value(value: object) -> object:
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = str(value)
    return printable(text) if _CONTROLS.search(text) else value


def printable_records(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """A log record factory whose records give control characters as escapes (see :func:`printable`).

    Values logged (``%s`` arguments: file names, errors) escape every one, line breaks included, so that a name
    cannot write a line of its own; a message's own text keeps its line breaks.

    Args:
        factory: the factory to wrap (``logging.getLogRecordFactory()``).

    Example::

        >>> logging.setLogRecordFactory(printable_records(logging.getLogRecordFactory()))  # doctest: +SKIP
    """
    if getattr(factory, "escapes_controls", False):
        return factory

    def make(name, level, fn, lno, msg, args, exc_info, *rest, **kwargs) -> logging.LogRecord:
        if isinstance(msg, str) and _CONTROLS.search(msg):
            msg = printable(msg, keep="\n")
        if isinstance(args, tuple):
            args = tuple(_printable_value(a) for a in args)
        elif isinstance(args, Mapping):
            args = {k: _printable_value(v) for k, v in args.items()}
        return factory(name, level, fn, lno, msg, args, exc_info, *rest, **kwargs)

    make.escapes_controls = True  # type: ignore[attr-defined]
    return make


def escape_unencodable_output() -> None:
    """Makes standard output and error escape what their encoding cannot hold instead of failing on it.

    A file name that is not valid UTF-8 (surrogate-escaped by Python) cannot be printed to a strict stream, as
    Python opens them in a UTF-8 locale other than ``C.UTF-8``: a log line naming it is dropped with a traceback,
    a tool's report ends with an error. Such streams get :data:`monai_unets.data.atomic.TEXT_ERRORS` instead.

    Example::

        >>> escape_unencodable_output()  # doctest: +SKIP
    """
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and callable(getattr(stream, "reconfigure", None)):
            stream.reconfigure(errors=TEXT_ERRORS)


def point_at_null_device(fd: int) -> None:
    """Makes the open file ``fd`` the null device: what is still written to it is dropped without an error.

    For standard output once its reader has gone (``| head``, quitting ``less``), where each write would raise
    ``BrokenPipeError``; every writer of the file, the final flush of a stream at exit included, is quiet then.

    Args:
        fd: the file descriptor (``sys.stdout.fileno()``); it stays open and keeps its number, so the streams and
            handlers that write to it need no change.

    Example::

        >>> point_at_null_device(sys.stdout.fileno())  # doctest: +SKIP
    """
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


class _ClosedPipeQuietStream:
    """A text stream that sends what follows to the null device when its reader has gone, instead of raising."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            # only a pipe's or a socket's write raises it: the stream has a file descriptor
            point_at_null_device(self.stream.fileno())
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            point_at_null_device(self.stream.fileno())

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)


def quiet_closed_stdout() -> None:
    """Makes the process stop writing to standard output quietly once its reader has gone, as Unix tools do.

    Output piped into a reader that stops early (``| head -1``, quitting ``less``) makes each later write raise
    ``BrokenPipeError``: every log line then prints a ``--- Logging error ---`` traceback, and a tool's last line
    turns its success into a failure. After this call the first such write points standard output at the null
    device instead (:func:`point_at_null_device`): the work goes on, its files are written, and the exit status is
    the run's own. The log handlers that write to standard output (those of the bundle's ``logging.conf`` and of
    MONAI's modules) and ``sys.stdout`` itself go through a stream that does so; errors still reach standard error
    and the error log.

    Example::

        >>> quiet_closed_stdout()  # doctest: +SKIP
    """
    stdout = sys.stdout
    if stdout is None or isinstance(stdout, _ClosedPipeQuietStream):
        return
    quiet = _ClosedPipeQuietStream(stdout)
    # what an earlier line left in the buffer, if its reader has gone already
    quiet.flush()
    _point_stream_handlers(stdout, quiet)
    sys.stdout = quiet


def undo_quiet_closed_stdout() -> None:
    """Takes off standard output what :func:`quiet_closed_stdout` put on: the stream it wraps is standard output
    again, and the log handlers it was given write to that stream, for a process that goes on after a bundle run.

    Example::

        >>> undo_quiet_closed_stdout()  # doctest: +SKIP
    """
    while isinstance(sys.stdout, _ClosedPipeQuietStream):
        quiet = sys.stdout
        sys.stdout = quiet.stream
        _point_stream_handlers(quiet, quiet.stream)


def _point_stream_handlers(old: TextIO, new: TextIO) -> None:
    """Points every log handler that writes to the stream ``old`` at ``new``."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        # placeholders of loggers not yet made have no handlers
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.stream = new


def _saved_traceback(path: Path, kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> str:
    """Appends the traceback to ``path``, else to a new file in the temporary folder; says where it went.

    Only when neither can be written is the traceback itself given, after the line that says so.
    """
    text = f"--- {datetime.datetime.now().isoformat(timespec='seconds')} {' '.join(sys.argv)}\n"
    text += "".join(traceback.format_exception(kind, error, tb))
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8", errors=TEXT_ERRORS) as f:
            f.write(text)
        return f"full traceback in {path}"
    except OSError as log_error:
        # the log's folder is often the one the run failed to write to (an existing file, a read-only folder); on a
        # full disk the log is created and stays empty
        if not existed:
            with contextlib.suppress(OSError):
                path.unlink()
        failed = f"the traceback could not be written to {path} ({log_error})"
    spare = None
    try:
        handle, spare = tempfile.mkstemp(prefix="monai_unets-error-", suffix=".log")
        with open(handle, "w", encoding="utf-8", errors=TEXT_ERRORS) as f:
            f.write(text)
        return f"{failed}; it is in {spare}"
    except OSError as spare_error:
        # no usable temporary folder either (the disk is full): the error of that, not a second one from asking
        # for the folder again, and the traceback itself
        if spare is not None:
            with contextlib.suppress(OSError):
                os.unlink(spare)
        return f"{failed}, nor to a temporary file ({spare_error}); here it is:\n{text.rstrip()}"


def report_errors(log_file: str | os.PathLike) -> None:
    """Makes an uncaught error end the run with a short message; its full traceback goes to ``log_file``.

    Installs a ``sys.excepthook`` (called by a bundle config's ``initialize``, once per run). The screen shows
    where the traceback went and, as its last line, ``ERROR: <file, key or value>: <what to do>``
    (:func:`explain`). Where ``log_file`` cannot be written (its folder is the one the run could not write to), the
    traceback goes to a new file in the temporary folder, named in the line before; it is printed only when that
    fails too. Keyboard interrupts keep Python's default report. An error that ends another thread (a background
    writer's) is reported the same way when it happens, on a line ``ERROR in thread <name>: ...``; if the run then
    ends on it (raised again by the thread that waited on the writer), only the last line follows: one fault, one
    traceback. MONAI's
    ``StatsHandler``, which logs the error that ends an engine's run before re-raising it, keeps its one-line
    message without the traceback. Standard output and error escape what their encoding cannot hold (file names
    that are not valid UTF-8) instead of dropping the log line, and the log file holds such names escaped;
    standard output goes quiet once its reader has gone (:func:`quiet_closed_stdout`).

    In a ``torchrun`` job every process runs this, and process ``k > 0`` appends to a file of its own beside
    ``log_file`` (``logs/error.rank1.log`` for ``logs/error.log``, :func:`~monai_unets.data.rank_file`), which its
    message names: the tracebacks of processes failing at once are never interleaved in one file, each in the
    file of the process it is from.

    Args:
        log_file: file the traceback is appended to (its folder is created when needed); that of rank 0.

    Example::

        >>> report_errors("logs/error.log")  # doctest: +SKIP
    """
    # absolute, not resolved: an output folder that is a link to nothing (a share not mounted) must not be created
    # at the link's target to hold the log
    path = Path(os.path.abspath(log_file))
    # torchrun's RANK: the process group, which knows the rank too, is made by a later initialize step
    rank = int(os.environ.get("RANK") or 0)
    if rank > 0:
        path = rank_file(path, rank)
    # errors reported, with their causes: a background thread's error is often raised again by the thread that
    # waits on it (a writer's flush), and ends the run there
    reported: list[BaseException] = []

    def report(kind: type[BaseException], error: BaseException, tb: TracebackType | None, prefix: str) -> None:
        # the log would go into the folder the run refused to write to (the input folder, or the logs/ of the
        # training or the output folder of the run that holds it); a thread's error that the run ends on has its
        # traceback saved and named already
        seen = any(error is done for done in reported)
        skip_log = seen or isinstance(root_cause(error), OutputFolderError)
        where = "" if skip_log else _saved_traceback(path, kind, error, tb) + "\n"
        reported.extend(_chain(error))
        message = printable(explain(error), indented=True)
        print(f"{where}{prefix}: {message}", file=sys.stderr, flush=True)

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            # Python still exits with the status of SIGINT (130); the traceback would only show where it came
            print(
                "stopped (Ctrl-C): every file written so far is complete, none is left half-written.",
                file=sys.stderr,
                flush=True,
            )
            return
        report(kind, error, tb, "ERROR")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "?"
        report(args.exc_type, args.exc_value, args.exc_traceback, f"ERROR in thread {name}")

    # marked, so that a run that ends in a process that goes on takes off its own hooks only (restore_process_state)
    hook.reports_errors = thread_hook.reports_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook
    threading.excepthook = thread_hook
    escape_unencodable_output()
    quiet_closed_stdout()
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "strips_tracebacks", False):
        logging.setLogRecordFactory(_without_traceback(printable_records(factory)))
