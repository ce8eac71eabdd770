"""A reduction of per-case scores that says NaN where no case has a value, not MONAI's 0."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["NanWithoutValues"]


class NanWithoutValues:
    """Mixin for MONAI's cumulative metrics: their reduction (``aggregate``) gives NaN where no case has a value.

    MONAI's ``do_metric_reduction`` gives 0 where every case is NaN: a model that found nothing on any case had an
    HD95 of 0 mm (perfect boundaries) in ``metrics.csv`` and the log, and a run of only empty references a Dice of
    0, where the per-case tables said NaN. A mean of no values is NaN, as the project's tables and report give it.

    Example::

        >>> from monai.metrics import DiceMetric
        >>> class Dice(NanWithoutValues, DiceMetric): ...
        >>> metric = Dice(ignore_empty=True)
        >>> metric(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
        tensor([[nan]])
        >>> metric.aggregate()
        tensor([nan])
    """

    get_not_nans: bool

    def aggregate(self, *args: Any, **kwargs: Any) -> Any:
        wanted = self.get_not_nans
        self.get_not_nans = True
        try:
            scores, not_nans = super().aggregate(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.get_not_nans = wanted
        scores = torch.where(not_nans > 0, scores, torch.full_like(scores, float("nan")))
        return (scores, not_nans) if wanted else scores
