"""Progress lines with elapsed time and ETA for training, evaluation and batch inference; a quiet mode."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from monai.engines import Trainer
from monai.utils import min_version, optional_import

from ..data.cases import rank_and_world_size

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["ProgressLogger", "format_duration", "log_warnings_only"]

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for a number of seconds (rounded), e.g. ``format_duration(3725.4) == '1:02:05'``.

    Args:
        seconds: a duration in seconds, rounded to whole seconds (halves to even, as Python's ``round``); a negative
            one, as a clock set back can give, shows as ``0:00:00``. From 24 hours on, ``timedelta`` puts the days
            first (``1 day, 1:00:00``).

    Example::

        >>> format_duration(3725.4)
        '1:02:05'
        >>> format_duration(59.6)
        '0:01:00'
        >>> format_duration(90000)
        '1 day, 1:00:00'
    """
    return str(timedelta(seconds=round(max(seconds, 0.0))))


def log_warnings_only() -> None:
    """Leaves warnings and errors alone in the log of this process, from every logger: the bundles' ``quiet`` mode.

    A threshold for the whole process (``logging.disable``): ignite's engines, MONAI's ``StatsHandler`` and
    MONAI's bundle scripts set their own loggers to INFO. A bundle config calls it in ``initialize`` when ``quiet``
    is set, so that MONAI's input summary, logged once ``initialize`` has run, is left out too.

    Example::

        >>> log_warnings_only()  # doctest: +SKIP

        In a bundle config's ``initialize``: ``"$monai_unets.handlers.log_warnings_only() if @quiet else None"``.
    """
    logging.disable(logging.INFO)


class ProgressLogger:
    """Logs how far an engine is, how long it has run and when it will end, at most every ``interval_s`` seconds.

    A trainer reports iterations over the whole run (``epoch 3/300, iteration 1200/120000``), so the ETA covers
    every remaining epoch, validations included; an evaluator or a batch inference reports cases (``case 12/340``),
    counting every item of each batch. The ETA is the mean time per step so far times the steps left. The first
    and the last step are always logged. Lines go to the ``monai_unets.progress`` logger at INFO, so they land in
    the bundle's log and in files as plain text, unlike a terminal progress bar.

    ``quiet=True`` turns the progress lines off and disables INFO messages of every logger of the process
    (:func:`log_warnings_only`): only warnings and errors remain (the bundles' ``quiet`` config key,
    ``monai-unets ... --quiet``).

    Args:
        name: what the engine does, the start of each line (``training``, ``evaluation``, ``inference``).
        interval_s: least number of seconds between two lines; 0 logs every iteration.
        quiet: no progress lines, and warnings and errors only from every logger of the process.
        minutes: a trainer's time budget (:class:`~monai_unets.handlers.TrainingTimeLimit`), if any: the ETA is
            at most the time left of it.

    Example::

        >>> ProgressLogger("inference", interval_s=30).attach(evaluator)  # doctest: +SKIP
        inference: case 12/340 (3.5%), elapsed 0:00:41, ETA 0:18:40
    """

    #: a failed case counts as done (``CaseIsolationHandler`` calls this handler for it too)
    runs_on_failed_cases = True

    def __init__(
        self, name: str = "progress", interval_s: float = 10.0, quiet: bool = False, minutes: float | None = None
    ) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}.")
        self.name = name
        self.interval_s = float(interval_s)
        self.quiet = bool(quiet)
        self.minutes = minutes
        self.logger = logging.getLogger("monai_unets.progress")
        self._start = 0.0
        self._last_log = 0.0
        self._cases = 0
        self._first_iteration: int | None = 0

    def attach(self, engine: Engine) -> None:
        if self.quiet:
            log_warnings_only()
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self._start = time.monotonic()
        self._last_log = -float("inf")
        self._first_iteration = None

    def _epoch_started(self, engine: Engine) -> None:
        self._cases = 0
        if self._first_iteration is None:
            # a resumed run starts at a later iteration, set by the checkpoint's handler when the run starts (it may
            # come after this one): the ETA counts the steps of this run only
            self._first_iteration = engine.state.iteration

    @staticmethod
    def _total_cases(engine: Engine) -> int | None:
        dataset = getattr(getattr(engine, "data_loader", None), "dataset", None)
        # datasets that skip failed cases have no length, but their case list has one
        for sized in (dataset, getattr(dataset, "data", None)):
            try:
                return len(sized)  # type: ignore[arg-type]
            except TypeError:
                continue
        return None

    @staticmethod
    def _batch_size(batch: object) -> int:
        if isinstance(batch, (list, tuple)):
            return len(batch)
        if isinstance(batch, dict):
            for value in batch.values():
                if hasattr(value, "shape") and len(value.shape) > 0:
                    return int(value.shape[0])
        return 1

    def __call__(self, engine: Engine) -> None:
        state = engine.state
        if isinstance(engine, Trainer):
            total_iterations = (state.epoch_length or 0) * (state.max_epochs or 0) or None
            position = f"epoch {state.epoch}/{state.max_epochs}, iteration {state.iteration}/{total_iterations or '?'}"
            first = self._first_iteration or 0
            done = state.iteration - first
            total = total_iterations - first if total_iterations else None
        else:
            self._cases += self._batch_size(state.batch)
            done, total = self._cases, self._total_cases(engine)
            position = f"case {done}/{total if total is not None else '?'}"
        now = time.monotonic()
        last = total is not None and done >= total
        if not last and done > 1 and now - self._last_log < self.interval_s:
            return
        self._last_log = now
        elapsed = now - self._start
        line = f"{self.name}: {position}"
        if total:
            line += f" ({100.0 * done / total:.1f}%)"
        line += f", elapsed {format_duration(elapsed)}"
        if total and done:
            eta = elapsed / done * (total - done)
            if self.minutes is not None:
                eta = max(0.0, min(eta, 60.0 * self.minutes - elapsed))
            line += f", ETA {format_duration(eta)}"
        self._log(line)

    def _completed(self, engine: Engine) -> None:
        # no epoch started: a resumed run whose epochs were all done before
        first = engine.state.iteration if self._first_iteration is None else self._first_iteration
        trainer = isinstance(engine, Trainer)
        steps = f"{engine.state.iteration - first} iterations" if trainer else f"{self._cases} cases"
        self._log(f"{self.name}: finished {steps} in {format_duration(time.monotonic() - self._start)}")

    def _log(self, line: str) -> None:
        # only the ranks that log (rank 0 in the bundles) get here: no collective may be involved
        rank, world_size = rank_and_world_size()
        if world_size > 1:
            line = f"[rank {rank}] {line}"
        self.logger.info(line)
