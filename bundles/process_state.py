"""What a bundle run changes for its whole process, given back when the run ends in a process that goes on."""

from __future__ import annotations

import gc
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any

import torch

from ..handlers.errors import undo_quiet_closed_stdout

__all__ = ["restore_process_state", "save_process_state"]


@dataclass
class _ProcessState:
    excepthook: Any
    thread_excepthook: Any
    record_factory: Any
    logging_disabled: int
    torch_threads: int
    gc_frozen: bool


# the process's own settings, from before the first run not yet ended: a run whose initialize or run failed (and
# whose finalize was never called) leaves them here, and the next run's finalize gives the process those back, not
# the failed run's
_saved: _ProcessState | None = None


def _process_ends_with_the_run() -> bool:
    # `python -m monai.bundle run` (under torchrun too) exits once finalize is done: its error hooks must stay for
    # the exit's own flushes, and unfreezing the startup objects would only slow the exit down by a second
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(main_spec, "name", "").startswith("monai.bundle")


def save_process_state() -> None:
    """Notes the process-wide settings that a bundle's ``initialize`` changes, for :func:`restore_process_state`.

    A bundle's start-up steps set things for the whole process: Python's error hooks and its log-record factory
    (:func:`~monai_unets.report_errors`), standard output (``quiet_closed_stdout``), the log threshold of ``quiet``
    (:func:`~monai_unets.handlers.log_warnings_only`), PyTorch's thread count (the 2D inference's ``cpu_threads``)
    and the garbage collector (:func:`~monai_unets.freeze_startup_objects`). That is what a command run needs; a
    process that goes on after the run (a notebook's ``ConfigWorkflow``, MONAI Label's server training with
    ``run_sync``) kept them all: its own later errors went to the bundle's error log, its log lost INFO lines, its
    PyTorch kept the run's threads. The bundles' configs call this as the first step after the command-line check,
    and :func:`restore_process_state` in ``finalize``. MONAI calls no ``finalize`` after an error (failed cases
    included): call ``workflow.finalize()`` then, or the next run's ``finalize`` gives back the settings noted
    before the failed run. Nothing is noted in ``python -m monai.bundle run``, whose process ends with the run.
    Glibc's memory thresholds (:func:`~monai_unets.reuse_freed_memory`) cannot be read back, and stay.

    Example::

        >>> save_process_state()
        >>> restore_process_state()
    """
    global _saved
    if _saved is not None or _process_ends_with_the_run():
        return
    _saved = _ProcessState(
        excepthook=sys.excepthook,
        thread_excepthook=threading.excepthook,
        record_factory=logging.getLogRecordFactory(),
        logging_disabled=logging.root.manager.disable,
        torch_threads=torch.get_num_threads(),
        gc_frozen=gc.get_freeze_count() > 0,
    )


def restore_process_state() -> None:
    """Gives the process back the settings that :func:`save_process_state` noted.

    What a run set is taken off, and what the process set since is kept: the error hooks and the log-record factory
    go back where they are still the run's, standard output loses the run's wrapper (log handlers pointed at it
    write to the stream it wraps again). Objects frozen by the run are collectable again (the run's own are garbage
    by now). Nothing happens where nothing was noted (``python -m monai.bundle run``, or a run whose ``initialize``
    stopped before the note).

    Example::

        >>> restore_process_state()  # nothing noted: nothing to do
    """
    global _saved
    state, _saved = _saved, None
    if state is None:
        return
    if getattr(sys.excepthook, "reports_errors", False):
        sys.excepthook = state.excepthook
    if getattr(threading.excepthook, "reports_errors", False):
        threading.excepthook = state.thread_excepthook
    if getattr(logging.getLogRecordFactory(), "strips_tracebacks", False):
        logging.setLogRecordFactory(state.record_factory)
    logging.disable(state.logging_disabled)
    undo_quiet_closed_stdout()
    torch.set_num_threads(state.torch_threads)
    if not state.gc_frozen:
        gc.unfreeze()
