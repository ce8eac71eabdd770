"""Validation that also runs when training ends, and a wall-clock budget for training."""

from __future__ import annotations

import time

from monai.handlers import ValidationHandler
from monai.utils import min_version, optional_import

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["FinalValidationHandler", "TrainingTimeLimit"]


class FinalValidationHandler(ValidationHandler):
    """MONAI's epoch-level :class:`~monai.handlers.ValidationHandler`, plus one validation when training ends.

    The bundles save their weights from validation (a ``CheckpointSaver`` on the best key metric). With plain
    ``ValidationHandler(interval=5)`` a run of fewer than 5 epochs, as MONAI Label's short fine-tuning runs or a
    quick test, never validates and so never writes ``models/model.pt``. This handler validates every
    ``interval`` epochs and once more when the run completes (after the last epoch, or when it is stopped
    early, e.g. by :class:`TrainingTimeLimit`) unless the current epoch was just validated.
    Arguments are ``ValidationHandler``'s (epoch level only).

    Example::

        >>> handler = FinalValidationHandler(interval=5, validator=evaluator)  # doctest: +SKIP
        >>> handler.attach(trainer)  # validates after epochs 5, 10, ... and after the last one  # doctest: +SKIP
    """

    def attach(self, engine: Engine) -> None:
        if not self.epoch_level:
            raise ValueError("FinalValidationHandler validates at epoch level only.")
        self._validated_epoch: int | None = None
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self._final)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        super().__call__(engine)
        self._validated_epoch = engine.state.epoch

    def _final(self, engine: Engine) -> None:
        if self._validated_epoch != engine.state.epoch:
            self(engine)


class TrainingTimeLimit:
    """Stop training after a time budget, counted from the start of the run; ``None`` never stops.

    Checked after every iteration; the run then completes normally, so :class:`FinalValidationHandler` validates
    and checkpoints the weights reached. A fixed budget makes runs comparable as Dice per minute of compute; on
    a shared machine the process's CPU time (``clock="cpu"``, all threads of this process together) measures the
    compute a run got better than the wall clock, which other processes' load stretches.

    Args:
        minutes: the budget in minutes, or ``None``.
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time).

    Example::

        >>> TrainingTimeLimit(10).attach(trainer)  # doctest: +SKIP
    """

    def __init__(self, minutes: float | None, clock: str = "wall") -> None:
        if minutes is not None and minutes <= 0:
            raise ValueError(f"the time limit must be positive, got {minutes} minutes")
        if clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
        self.minutes = minutes
        self._clock = time.monotonic if clock == "wall" else time.process_time
        self._start = 0.0

    def attach(self, engine: Engine) -> None:
        if self.minutes is None:
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _started(self, engine: Engine) -> None:
        self._start = self._clock()

    def __call__(self, engine: Engine) -> None:
        if self._clock() - self._start > 60.0 * self.minutes:
            engine.terminate()
