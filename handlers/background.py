"""An evaluator's postprocessing in a background thread, one case behind the network."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch
from monai.engines.utils import IterationEvents, engine_apply_transform
from monai.utils import min_version, optional_import

from ..data.cases import failure_stage
from ..data.dataset import describe_error
from .case_isolation import batch_cases

if TYPE_CHECKING:
    from .case_isolation import CaseIsolationHandler

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["BackgroundPostprocessing"]

logger = logging.getLogger(__name__)


class BackgroundPostprocessing:
    """Runs an evaluator's postprocessing of each case in a background thread while the network runs the next.

    A batch inference otherwise waits for every case's inverting and writing (label map, DICOM SEG) before its
    network starts on the next case. With the network on a GPU, whose sliding window leaves the CPU idle, that
    work can overlap the next case's network; on a CPU the network's threads already take the cores, and the
    overlap slowed the CT bundles' cases down (their docs give the figures).

    Cases are postprocessed in order, one at a time, and at most one case waits behind the network: before a case
    is queued, the previous one is finished, which bounds memory to two cases' outputs. The run ends
    (``Events.COMPLETED``) only once the last case is written.

    Use it instead of the evaluator's own ``postprocessing`` (leave that ``None``): the transform gets the same
    dictionary, batch and output together, that MONAI's evaluators give it. Later handlers of the same
    iteration no longer see postprocessed outputs, so this suits inference, not metrics.

    A case whose postprocessing fails is reported to ``case_isolation`` under its own name and file, with the
    stage the error came from (``writing`` for a writer), while the run goes on; without ``case_isolation`` the
    error stops the run, naming the case.

    Args:
        transform: the postprocessing (a ``Compose``), applied to each case's dictionary.
        case_isolation: the evaluator's :class:`CaseIsolationHandler`, which records a failed case.
        enabled: ``False`` attaches nothing; the evaluator's own ``postprocessing`` should then be set.

    Example::

        >>> isolation = CaseIsolationHandler("out/failures.csv")  # doctest: +SKIP
        >>> evaluator = SupervisedEvaluator(device, loader, net, inferer=inferer, postprocessing=None,
        ...     val_handlers=[isolation, BackgroundPostprocessing(post, isolation)])  # doctest: +SKIP
        >>> evaluator.run(); isolation.conclude()  # doctest: +SKIP
    """

    def __init__(
        self,
        transform: Callable[[dict], Any],
        case_isolation: CaseIsolationHandler | None = None,
        enabled: bool = True,
    ) -> None:
        self.transform = transform
        self.case_isolation = case_isolation
        self.enabled = enabled
        self._executor: ThreadPoolExecutor | None = None
        self._pending: tuple[Future, Any] | None = None

    def attach(self, engine: Engine) -> None:
        """Postprocess ``engine``'s cases in the background from now on (nothing when not ``enabled``)."""
        if not self.enabled:
            return
        engine.add_event_handler(IterationEvents.MODEL_COMPLETED, self._submit)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _submit(self, engine: Engine) -> None:
        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="postprocessing")
        batch, output = engine.state.batch, engine.state.output
        future = self._executor.submit(self._apply, batch, output)
        self._pending = (future, batch)

    @torch.no_grad()
    def _apply(self, batch: Any, output: Any) -> None:
        # grad mode is per thread: the evaluator's no_grad does not reach this one
        if isinstance(batch, list) and isinstance(output, list):
            for item, out in zip(batch, output):
                engine_apply_transform(item, out, self.transform)
        else:
            engine_apply_transform(batch, output, self.transform)

    def _completed(self, _engine: Engine) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None

    def wait(self) -> None:
        """Finish the case being postprocessed, if any; report its failure to ``case_isolation``."""
        if self._pending is None:
            return
        future, batch = self._pending
        self._pending = None
        try:
            future.result()
        except Exception as error:  # noqa: BLE001 - a failing case must leave the others running
            stage, reason = failure_stage(error, "postprocessing"), describe_error(error)
            if self.case_isolation is None:
                name, file, _ = batch_cases(batch)[0]
                raise RuntimeError(f"case {name} ({file}) failed in {stage}: {reason}") from error
            self.case_isolation.record_failure(batch, stage, reason)
