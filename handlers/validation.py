"""Validation that also runs after the last epoch, so that every training run ends with a checkpoint."""

from __future__ import annotations

from monai.handlers import ValidationHandler
from monai.utils import min_version, optional_import

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["FinalValidationHandler"]


class FinalValidationHandler(ValidationHandler):
    """MONAI's epoch-level :class:`~monai.handlers.ValidationHandler`, plus one validation after the last epoch.

    The bundles save their weights from validation (a ``CheckpointSaver`` on the best key metric). With plain
    ``ValidationHandler(interval=5)`` a run of fewer than 5 epochs, as MONAI Label's short fine-tuning runs or a
    quick test, never validates and so never writes ``models/model.pt``. This handler validates every
    ``interval`` epochs and after the final epoch when that is not already a multiple of ``interval``.
    Arguments are ``ValidationHandler``'s (epoch level only).

    Example::

        >>> handler = FinalValidationHandler(interval=5, validator=evaluator)  # doctest: +SKIP
        >>> handler.attach(trainer)  # validates after epochs 5, 10, ... and after the last one  # doctest: +SKIP
    """

    def attach(self, engine: Engine) -> None:
        if not self.epoch_level:
            raise ValueError("FinalValidationHandler validates at epoch level only.")
        interval = self.interval

        def due(engine: Engine, epoch: int) -> bool:
            return epoch % interval == 0 or epoch == engine.state.max_epochs

        engine.add_event_handler(Events.EPOCH_COMPLETED(event_filter=due), self)
        if self.exec_at_start:
            engine.add_event_handler(Events.STARTED, self)
