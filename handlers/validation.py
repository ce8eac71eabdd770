"""Validation that also runs when training ends and keeps to a share of the run, and a time budget for training."""

from __future__ import annotations

import time
from typing import Any

import torch.distributed as dist
from monai.handlers import ValidationHandler
from monai.utils import min_version, optional_import

from ..data.cases import rank_and_world_size

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["FinalValidationHandler", "TrainingTimeLimit"]


def _rank_zero_decides(flag: bool) -> bool:
    """``flag`` as rank 0 of a ``torchrun`` job has it, in every process (``flag`` itself in a single process)."""
    if rank_and_world_size()[1] > 1:
        decision = [flag]
        dist.broadcast_object_list(decision, src=0)
        flag = bool(decision[0])
    return flag


class FinalValidationHandler(ValidationHandler):
    """MONAI's epoch-level :class:`~monai.handlers.ValidationHandler`, plus one validation when training ends.

    The bundles save their weights from validation (a ``CheckpointSaver`` on the best key metric). With plain
    ``ValidationHandler(interval=5)`` a run of fewer than 5 epochs, as MONAI Label's short fine-tuning runs or a
    quick test, never validates and so never writes ``models/model.pt``. This handler validates every
    ``interval`` epochs and once more when the run completes (after the last epoch, or when it is stopped
    early, e.g. by :class:`TrainingTimeLimit`) unless the current epoch was just validated or the run trained
    nothing (a rerun of a finished training: its weights were validated when they were trained).
    Sliding-window validation of whole volumes can cost more than the epochs between two validations (large
    volumes, few training cases): with ``max_time_fraction`` a scheduled validation is skipped while the time
    spent validating so far exceeds that share of the time since training started, so validation never
    dominates a short run. The validation when the run ends always happens.

    Args:
        interval: validate after each epoch whose number is a multiple of ``interval`` (a resumed training keeps
            the same epochs).
        validator: the ``Evaluator`` to run; ``None`` leaves it to ``set_validator`` before training starts.
        epoch_level: must stay ``True``: ``attach`` refuses iteration-level validation with a ``ValueError``.
        exec_at_start: also validate when the trainer starts, before its first epoch (the initial weights).
        max_time_fraction: largest share of the run's wall time spent validating, in (0, 1] (``None``: no limit).
        Other arguments are ``ValidationHandler``'s (epoch level only).

    Example::

        >>> handler = FinalValidationHandler(interval=5, validator=evaluator)  # doctest: +SKIP
        >>> handler.attach(trainer)  # validates after epochs 5, 10, ... and after the last one  # doctest: +SKIP
    """

    def __init__(
        self,
        interval: int,
        validator: Any = None,
        epoch_level: bool = True,
        exec_at_start: bool = False,
        max_time_fraction: float | None = None,
    ) -> None:
        super().__init__(interval, validator, epoch_level, exec_at_start)
        if max_time_fraction is not None and not 0 < max_time_fraction <= 1:
            raise ValueError(f"max_time_fraction must be in (0, 1], got {max_time_fraction}")
        self.max_time_fraction = max_time_fraction
        self._validating_s = 0.0
        self._started = time.monotonic()

    def attach(self, engine: Engine) -> None:
        if not self.epoch_level:
            raise ValueError("FinalValidationHandler validates at epoch level only.")
        self._validated_epoch: int | None = None
        self._training = False
        engine.add_event_handler(Events.STARTED, self._start_clock)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._trained)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self._final)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)

    def _start_clock(self, engine: Engine) -> None:
        self._started, self._validating_s = time.monotonic(), 0.0
        self._training = False

    def _trained(self, engine: Engine) -> None:
        self._training = True

    def __call__(self, engine: Engine) -> None:
        if self.max_time_fraction is not None and not self._share_left():
            return
        self._validate(engine)

    def _share_left(self) -> bool:
        left = self._validating_s <= self.max_time_fraction * (time.monotonic() - self._started)
        # every rank validates together (the metrics are gathered): rank 0's clock decides for all
        return _rank_zero_decides(left)

    def _validate(self, engine: Engine) -> None:
        start = time.monotonic()
        super().__call__(engine)
        self._validating_s += time.monotonic() - start
        self._validated_epoch = engine.state.epoch

    def _final(self, engine: Engine) -> None:
        # a validation of unchanged weights can only differ by a changed plan or data, and would then replace the
        # weights' plan (BestModelSaver) while they were trained with the earlier one
        if self._training and self._validated_epoch != engine.state.epoch:
            self._validate(engine)


class TrainingTimeLimit:
    """Stop training after a time budget, counted from the start of the run; ``None`` never stops.

    Checked after every iteration; the run then completes normally, so :class:`FinalValidationHandler` validates
    and checkpoints the weights reached. In a ``torchrun`` job the processes stop together, after the iteration
    at which rank 0 is over its budget. A fixed budget makes runs comparable as Dice per minute of compute; on
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
        # every process stops after the same iteration, as rank 0's clock says: one that stopped alone would
        # validate while the others waited in the next step's gradient all-reduce, for ever
        if _rank_zero_decides(self._clock() - self._start > 60.0 * self.minutes):
            engine.terminate()
