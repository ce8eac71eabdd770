"""Per-case isolation for MONAI evaluators: a failing case is reported, the others run, the run ends with a verdict."""

from __future__ import annotations

import csv
import functools
import glob
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from monai.engines.utils import IterationEvents
from monai.metrics import Cumulative
from monai.utils import evenly_divisible_all_gather, min_version, optional_import

from ..bundles.distributed import end_process_group, hold_folder_for_job
from ..data.atomic import atomic_open, release_folder
from ..data.cases import (
    CASE_INDEX_KEY,
    CASE_NAME_KEY,
    FAILURE_KEY,
    case_output_paths,
    failure_stage,
    file_meta,
    gather_items,
    rank_and_world_size,
    rank_file,
)
from ..data.dataset import describe_error
from ..data.medical_io import OutputFolderError
from .errors import printable

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")
Metric, _ = optional_import("ignite.metrics", "0.4.11", min_version, "Metric")
ProgressBar, _has_progress_bar = optional_import("ignite.handlers", "0.4.11", min_version, "ProgressBar")
if not _has_progress_bar:  # ignite before 0.5 has it in ignite.contrib.handlers only (0.5 in both)
    ProgressBar, _ = optional_import("ignite.contrib.handlers", "0.4.11", min_version, "ProgressBar")
idist, _ = optional_import("ignite", "0.4.11", min_version, "distributed")

__all__ = ["FAILURE_COLUMNS", "CaseIsolationHandler"]

logger = logging.getLogger(__name__)

#: The lock file by which a batch run holds its output folder (see :func:`monai_unets.data.atomic.hold_folder`).
RUN_LOCK = ".run.lock"
#: Columns of the failure report.
FAILURE_COLUMNS = ("case", "file", "stage", "error")


def _owners(func: Callable, args: tuple) -> list[Any]:
    """The objects an ignite event handler belongs to: itself, the instance of a bound method, its arguments."""
    return [func, getattr(func, "__self__", None), *args]


def _declared(owner: Any, name: str) -> Any:
    """What a handler's class declares as ``name`` (``None`` if nothing): asked of the class, as an ignite Metric
    answers any attribute it lacks with a function (its arithmetic), which would pass for a declaration."""
    return getattr(type(owner), name, None)


def _runs_for_failed_cases(func: Callable, args: tuple) -> bool:
    # progress displays count every case; everything else consumes the case's outputs
    return any(
        _declared(owner, "runs_on_failed_cases") is True or isinstance(owner, ProgressBar)
        for owner in _owners(func, args)
    )


class _CumulativeRecords:
    """A MONAI cumulative metric's buffers (one list per output) as per-case records that can be rolled back."""

    def __init__(self, cumulative: Cumulative) -> None:
        self.cumulative = cumulative

    def case_mark(self) -> list[int] | None:
        buffers = self.cumulative._buffers
        return None if buffers is None else [len(buffer) for buffer in buffers]

    def roll_back_case(self, mark: list[int] | None) -> None:
        if mark is None:
            self.cumulative._buffers = None
        elif self.cumulative._buffers is not None:
            for buffer, length in zip(self.cumulative._buffers, mark):
                del buffer[length:]
        self.cumulative._synced = False

    def gather(self) -> None:
        """Gathers the buffers of every process of the job, as the metric's aggregation would, where this process
        may have no case: MONAI's gathering skips a process without buffers, and the others would wait for it. Such
        a process gives empty buffers shaped as the others', so the metric is that of every other process's cases.
        Every process calls it, before the aggregation, which then finds the buffers gathered.
        """
        buffers = self.cumulative._buffers
        has_cases = buffers is not None and all(buffers)
        layout = [(tuple(b[0].shape), b[0].dtype, b[0].device.type) for b in buffers] if has_cases else None
        layouts = [part for part in gather_items([layout]) if part is not None]
        if has_cases or not layouts:
            return
        device = torch.device("cpu") if layouts[0][0][2] == "cpu" else idist.device()
        self.cumulative._synced_tensors = [
            evenly_divisible_all_gather(torch.empty((0, *shape), dtype=dtype, device=device), concat=True)
            for shape, dtype, _ in layouts[0]
        ]
        self.cumulative._synced = True


def _case_records(owner: Any) -> Any:
    """What of a handler keeps per-case records to roll back (``None`` if nothing): a handler declaring
    ``case_mark()`` and ``roll_back_case(mark)``, or the buffers of a MONAI metric handler's cumulative metric."""
    if callable(_declared(owner, "case_mark")) and callable(_declared(owner, "roll_back_case")):
        return owner
    metric_fn = getattr(owner, "metric_fn", None) if isinstance(owner, Metric) else None
    return _CumulativeRecords(metric_fn) if isinstance(metric_fn, Cumulative) else None


def batch_cases(batch: Any) -> list[tuple[str, str, int]]:
    """``(name, file, index)`` of each case of a batch, collated or decollated into a list of cases."""
    if isinstance(batch, (list, tuple)) and all(isinstance(item, dict) for item in batch):
        return [case for item in batch for case in batch_cases(item)] or [("?", "?", -1)]
    meta = file_meta(batch)
    if not meta:
        return [("?", "?", -1)]
    columns = [
        meta["filename_or_obj"],
        meta.get(CASE_NAME_KEY, meta["filename_or_obj"]),
        meta.get(CASE_INDEX_KEY, -1),
    ]
    columns = [c.tolist() if hasattr(c, "tolist") else c for c in columns]
    files, names, indices = [c if isinstance(c, (list, tuple)) else [c] for c in columns]
    return [(str(n), str(f), int(i)) for n, f, i in zip(names, files, indices)]


class CaseIsolationHandler:
    """Makes a MONAI evaluator survive failing cases: each is reported, every other case gets all its outputs.

    Attached to a ``SupervisedEvaluator`` (or any ignite engine) that reads a
    :class:`monai_unets.data.CaseDataset` with ``batch_size=1``, it guards every stage of a case:

    - reading and preprocessing: the dataset turns a failure into a record, which is reported here;
    - the network (``inference``) and ``postprocessing``, with the writers in it (``writing``): an exception of
      the iteration is caught and reported;
    - ``metrics`` and the other per-iteration handlers: an exception is caught, and what the case already added
      to the per-case records of every handler is rolled back, so every metric and table covers the same cases.
      The records are the buffers of MONAI's cumulative metrics and those of any handler that declares
      ``case_mark()`` (a mark of its records before a case, taken when each iteration starts) and
      ``roll_back_case(mark)`` (forget what came after it), as :class:`~monai_unets.handlers.CaseMetricsWriter`
      and :class:`~monai_unets.handlers.EvaluationReport` do.

    A failed case is skipped by the per-iteration handlers that consume outputs (metrics, savers, per-case
    tables); progress bars (ignite's ``ProgressBar``, or any handler with ``runs_on_failed_cases = True``)
    still count it. Each failure is logged with its file and reason and written to this process's report
    (``failures.rank<k>.csv`` beside ``failure_log``, ``case, file, stage, error``; rewritten atomically after
    each failure, so it is current even if the run is killed). Given the run's writers (``outputs``), a failed
    case's output files left by an earlier run in the same folder are removed, each with a warning: beside this
    run's outputs they would pass for results of this run. Its files written by this run before it failed (a label
    map before a failed DICOM SEG) stay.

    Call :meth:`conclude` after ``run()``: it merges the reports of all processes into ``failure_log``, logs a
    one-line summary, and exits with status 1 when any case failed, after everything else has been written. Only a
    run that ends so has a ``failure_log``: one that stops early (an error, Ctrl-C, a kill) leaves none that would
    say the cases it did not get to had succeeded, and its per-process reports say how far it got.

    The folder of ``failure_log`` is held for the run (its ``.run.lock``, taken by rank 0 of a ``torchrun`` job
    before any process writes): a second run started with the same output folder while one runs stops at once,
    every process of it, rank 0 with an ``OutputFolderError``. The lock file is removed when :meth:`conclude` ends
    or the process does (a killed run leaves it, free). At the start the earlier run's ``failure_log`` and
    per-process reports are removed, and when the evaluator starts, the files the other handlers write at the end
    of a run (any handler with a ``run_output_paths()`` method: the metrics tables, the evaluation report): beside
    the per-case outputs of a run that stops part way, they would describe outputs they were not made from. A
    handler that reports the failures (the evaluation report) declares ``run_concluded(failures)``: :meth:`conclude`
    calls it in every process once ``failure_log`` is written, with the number of failed cases.

    Args:
        failure_log: the CSV failure report, written by :meth:`conclude`; an earlier one is removed at the start.
        outputs: the transforms that write each case's outputs (the postprocessing chain), for
            :func:`monai_unets.data.case_output_paths`; ``None`` leaves earlier runs' files alone.

    Attributes:
        failures: this process's failure records (``case, file, stage, error, index``).
        cases: cases this process has seen, failed ones included.

    Example::

        >>> isolation = CaseIsolationHandler("out/failures.csv")  # doctest: +SKIP
        >>> isolation.attach(evaluator); evaluator.run(); isolation.conclude()  # doctest: +SKIP

        In a bundle config: ``- _target_: CaseIsolationHandler`` in the evaluator's handlers, and
        ``run: ["$@evaluator.run()", "$@case_isolation.conclude()"]``.
    """

    def __init__(self, failure_log: str | os.PathLike, outputs: Any = None) -> None:
        # absolute, as the writers' folders: a case failing in a background thread is recorded while ITK's module
        # loading may have changed the working folder for a moment
        self.failure_log = Path(failure_log).absolute()
        self.outputs = outputs
        self.failures: list[dict[str, Any]] = []
        self.cases = 0
        self._stage = "inference"
        self._failed = False
        self._wrapped = False
        self._attached = False
        self._records: list[Any] = []
        self._marks: list[Any] = []
        self._concluding: list[Any] = []
        rank = rank_and_world_size()[0]
        # this process's report until conclude() writes failure_log: a run that stops early leaves no failure_log
        # that would say the cases it did not get to had succeeded
        self._own_log = rank_file(self.failure_log, rank)
        # another run writing into the same folder would have its reports removed here and its outputs mixed with
        # this run's
        self._started = hold_folder_for_job(
            self.failure_log.parent,
            RUN_LOCK,
            OutputFolderError(
                f"{self.failure_log.parent}: another run is writing its outputs into this folder; wait for it to "
                "end, or give this one another output folder."
            ),
            self._start_report,
        )
        if rank != 0:
            self._write(self._own_log, [])

    def _start_report(self) -> float:
        """Removes the earlier run's reports and starts this process's (rank 0's); the time it was started."""
        for report in self._earlier_reports():
            report.unlink(missing_ok=True)
        self._write(self._own_log, [])
        # files older than this are an earlier run's; the report's time is the output file system's clock
        return self._own_log.stat().st_mtime

    def _earlier_reports(self) -> list[Path]:
        """An earlier run's merged report, and the per-process reports of one that stopped before merging them."""
        stem, suffix = glob.escape(self.failure_log.stem), glob.escape(self.failure_log.suffix)
        return [self.failure_log, *self.failure_log.parent.glob(f"{stem}.rank*{suffix}")]

    def attach(self, engine: Engine) -> None:
        """Guard ``engine``'s iterations and per-iteration handlers.

        Args:
            engine: the evaluator; its data loader must have ``batch_size=1``.
        """
        batch_size = getattr(getattr(engine, "data_loader", None), "batch_size", 1)
        if batch_size not in (1, None):
            # refused before any case: the run leaves no report of its own behind, and the folder free
            self._own_log.unlink(missing_ok=True)
            if rank_and_world_size()[0] == 0:
                release_folder(self.failure_log.parent, RUN_LOCK)
            raise ValueError(
                f"a batch job reads, runs and writes each case on its own: its DataLoader's batch_size (a bundle's "
                f"dataloader#batch_size) must be 1, not {batch_size}; a sliding window's sw_batch_size sets how many "
                "windows run at once."
            )
        self._attached = True
        engine._process_function = self._guarded(engine._process_function)
        engine.add_event_handler(Events.STARTED, self._wrap_handlers)
        engine.add_event_handler(Events.STARTED, self._remove_earlier_run_outputs)
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        if IterationEvents.FORWARD_COMPLETED in engine._allowed_events:
            engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._forward_completed)

    def _iteration_started(self, _engine: Engine) -> None:
        self._stage, self._failed = "inference", False
        self._marks = [records.case_mark() for records in self._records]

    def _forward_completed(self, _engine: Engine) -> None:
        self._stage = "postprocessing"

    def _guarded(self, process: Callable) -> Callable:
        @functools.wraps(process)
        def guarded(engine: Engine, batch: Any) -> Any:
            self.cases += 1
            if isinstance(batch, dict) and FAILURE_KEY in batch:
                record = {k: v[0] if isinstance(v, (list, tuple)) else v for k, v in batch[FAILURE_KEY].items()}
                record["index"] = int(record["index"])
                self._record(record)
                return []
            try:
                return process(engine, batch)
            except Exception as error:  # noqa: BLE001 - one failing case must leave the others running
                self._record_error(batch, failure_stage(error, self._stage), describe_error(error))
                return []

        return guarded

    def _wrap_handlers(self, engine: Engine) -> None:
        if self._wrapped:
            return
        self._wrapped = True
        completions = engine._event_handlers[Events.EPOCH_COMPLETED]
        for position, (func, args, kwargs) in enumerate(completions):
            if any(isinstance(owner, Metric) for owner in _owners(func, args)):
                completions[position] = (self._unless_all_failed(func, args), args, kwargs)
        handlers = engine._event_handlers[Events.ITERATION_COMPLETED]
        # a case that fails in one handler is taken out of the records of all: otherwise the tables written at the
        # end would have rows for cases that the metrics lack
        known: set[int] = set()
        for position, (func, args, kwargs) in enumerate(handlers):
            handlers[position] = (self._guard_handler(func, args), args, kwargs)
            for owner in _owners(func, args):
                records = _case_records(owner)
                if records is not None and id(owner) not in known:
                    known.add(id(owner))
                    self._records.append(records)

    def _remove_earlier_run_outputs(self, engine: Engine) -> None:
        """Removes the files an earlier run's handlers wrote at its end (``run_output_paths``) that this run's write.

        Beside the per-case outputs of a run that stops early, an earlier run's metrics tables and report would
        describe outputs they were not made from.
        """
        owners = {
            id(owner): owner
            for handlers in engine._event_handlers.values()
            for func, args, _ in handlers
            for owner in _owners(func, args)
        }
        self._concluding = [owner for owner in owners.values() if callable(_declared(owner, "run_concluded"))]
        if rank_and_world_size()[0] != 0:
            return
        removed = []
        for owner in owners.values():
            for path in owner.run_output_paths() if callable(_declared(owner, "run_output_paths")) else []:
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                removed.append(path.name)
        if removed:
            logger.info(
                "removed the reports of an earlier run from %s: %s", self.failure_log.parent, ", ".join(removed)
            )

    def _unless_all_failed(self, func: Callable, args: tuple) -> Callable:
        """A metric's end-of-run computation, skipped when no case succeeded.

        In a ``torchrun`` job, MONAI's metrics gather from every process and would wait forever for one without
        data: where such a process has no successful case, MONAI's cumulative metrics gather empty buffers from it
        (:meth:`_CumulativeRecords.gather`) and are computed over the other processes' cases; any other metric is
        skipped. Every process takes the same decision, so none is left waiting.
        """
        metrics = {id(owner): owner for owner in _owners(func, args) if isinstance(owner, Metric)}
        cumulative = [_case_records(metric) for metric in metrics.values()]
        gatherable = bool(cumulative) and all(isinstance(records, _CumulativeRecords) for records in cumulative)

        @functools.wraps(func)
        def guarded(*call_args: Any, **call_kwargs: Any) -> Any:
            succeeded = fewest = self.cases - len(self.failures)
            if rank_and_world_size()[1] > 1:
                fewest = int(idist.all_reduce(succeeded, op="MIN"))
                succeeded = int(idist.all_reduce(succeeded))
            if fewest > 0:
                return func(*call_args, **call_kwargs)
            if succeeded > 0 and gatherable:
                for records in cumulative:
                    records.gather()
                return func(*call_args, **call_kwargs)
            engine = next((a for a in call_args if isinstance(a, Engine)), None)
            name = next((a for a in call_args if isinstance(a, str)), None)
            reason = (
                "no case succeeded"
                if succeeded == 0
                else "every case of one process of this job failed, and this metric needs a case from each (run "
                "the evaluation with fewer processes, torchrun --nproc_per_node, to score the other cases)"
            )
            logger.error("metric %s is not computed: %s.", name, reason)
            # NaN, as MONAI gives a metric without valid values; the workflow reads every metric it attached
            if engine is not None and name is not None:
                engine.state.metrics[name] = float("nan")
            return None

        return guarded

    def _guard_handler(self, func: Callable, args: tuple) -> Callable:
        always = _runs_for_failed_cases(func, args)
        is_metric = any(isinstance(owner, Metric) for owner in _owners(func, args))
        owner_name = type(getattr(func, "__self__", func)).__name__

        @functools.wraps(func)
        def guarded(*call_args: Any, **call_kwargs: Any) -> Any:
            if self._failed and not always:
                return None
            try:
                return func(*call_args, **call_kwargs)
            except Exception as error:  # noqa: BLE001 - a metric failing on one case must not end the run
                if self._failed:
                    return None
                engine = next((a for a in call_args if isinstance(a, Engine)), None)
                stage = "metrics" if is_metric else f"handlers ({owner_name})"
                self._record_error(engine.state.batch if engine else None, stage, describe_error(error))
                self._roll_back()
                return None

        return guarded

    def _roll_back(self) -> None:
        for records, mark in zip(self._records, self._marks):
            records.roll_back_case(mark)

    def _record_error(self, batch: Any, stage: str, reason: str, current: bool = True) -> None:
        for name, file, index in batch_cases(batch):
            logger.error("case %s (%s) failed in %s: %s", name, file, stage, reason)
            # the file column names the file exactly; the error, read on a terminal (cat failures.csv), has the
            # control characters of the names it holds escaped, as the log's lines have
            error = printable(reason, indented=True)
            self._record({"case": name, "file": file, "stage": stage, "error": error, "index": index}, current)

    def record_failure(self, batch: Any, stage: str, reason: str) -> None:
        """Report a case that failed outside the iteration it was read in (postprocessed in the background).

        The iteration running now is not affected: its own handlers still run.

        Args:
            batch: the failed case's batch, whose metadata names it (a dictionary, or a list of decollated ones).
            stage: where it failed, e.g. ``writing``.
            reason: the error, one line.
        """
        self._record_error(batch, stage, reason, current=False)

    def _record(self, record: dict[str, Any], current: bool = True) -> None:
        # `current`: the case of the running iteration, whose remaining handlers are then skipped
        self._failed = self._failed or current
        self.failures.append(record)
        self._write(self._own_log, self.failures)
        if self.outputs is not None:
            self._remove_earlier_outputs(str(record["case"]))

    def _remove_earlier_outputs(self, name: str) -> None:
        for path in case_output_paths(self.outputs, name):
            try:
                if path.stat().st_mtime >= self._started:
                    continue  # written by this run before the case failed
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                logger.warning(
                    "case %s failed, and its output %s of an earlier run could not be removed: %s", name, path, error
                )
                continue
            logger.warning("case %s failed: removed %s, written by an earlier run", name, path)

    def _warn_of_earlier_outputs(self) -> None:
        """A warning naming the files in the output folders that are named as this run's outputs but that it did not
        write (of cases an earlier run had, e.g. with other inputs): beside this run's, they would pass for its."""
        if self.outputs is None:
            return
        marker = "MONAI_UNETS_CASE_NAME"
        patterns = {glob.escape(str(path)).replace(marker, "*") for path in case_output_paths(self.outputs, marker)}
        earlier = sorted(
            path
            for pattern in patterns
            for path in map(Path, glob.glob(pattern))
            if path.is_file() and path.stat().st_mtime < self._started
        )
        if earlier:
            shown = ", ".join(path.name for path in earlier[:3]) + (", ..." if len(earlier) > 3 else "")
            logger.warning(
                "%d file(s) in the output folder are named as this run's outputs but were not written by it (%s), "
                "an earlier run's: remove them, or give each run an output folder of its own.",
                len(earlier),
                shown,
            )

    @staticmethod
    def _write(path: Path, records: list[dict[str, Any]]) -> None:
        with atomic_open(path, newline="") as f:
            writer = csv.writer(f)
            writer.writerow(FAILURE_COLUMNS)
            writer.writerows([record[column] for column in FAILURE_COLUMNS] for record in records)

    def conclude(self) -> str:
        """Merge the failure reports of all processes, log the summary; exit with status 1 if a case failed.

        In a ``torchrun`` job every process must call it (it gathers); rank 0 writes ``failure_log`` and
        prints the summary, the per-process reports are removed. On failure the process group is ended before
        exiting, as the bundle's ``finalize`` step does not run then.

        Returns:
            the summary line, when no case failed.

        Raises:
            SystemExit: some case failed; the message is the summary line.
        """
        rank, world = rank_and_world_size()
        if not self._attached:
            # e.g. the evaluator's handlers were replaced by an override: nothing was isolated or counted
            logger.warning("CaseIsolationHandler was not attached to the evaluator: no per-case report.")
            self._own_log.unlink(missing_ok=True)
            release_folder(self.failure_log.parent, RUN_LOCK)
            return "no per-case report"
        failures, cases = self.failures, self.cases
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, (self.failures, self.cases))
            failures = sorted((r for part, _ in gathered for r in part), key=lambda r: r["index"])
            cases = sum(count for _, count in gathered)
        if rank == 0:
            self._write(self.failure_log, failures)
        if world > 1:
            dist.barrier()  # the merged report is written before any process's own is removed
        self._own_log.unlink(missing_ok=True)
        if rank == 0:
            self._warn_of_earlier_outputs()
        for owner in self._concluding:
            owner.run_concluded(len(failures))
        # the folder is said either way: a bundle run (python -m monai.bundle) says nowhere else where its outputs went
        summary = f"{cases} case(s): {cases - len(failures)} ok, {len(failures)} failed" + (
            f"; the failures are listed in {self.failure_log}"
            if failures
            else f"; outputs in {self.failure_log.parent}"
        )
        if rank == 0:
            (logger.error if failures else logger.info)(summary)
            # the run's outputs are complete: the folder is free, and keeps no lock file among them
            release_folder(self.failure_log.parent, RUN_LOCK)
        if not failures:
            return summary
        end_process_group()
        raise SystemExit(summary if rank == 0 else 1)
