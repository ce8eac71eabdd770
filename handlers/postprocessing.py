"""Post-processing chosen on validation data: keep the largest connected component of a class where it helps."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.utils import min_version, optional_import

from ..data.cases import gather_items, per_case
from ..data.plan import load_plan, save_plan
from ..transforms.label import keep_largest_component
from .checkpoint import is_main_process

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["PostprocessingSelector", "binary_dice", "choose_keep_largest"]


def binary_dice(pred: np.ndarray, label: np.ndarray) -> float:
    """Dice of two masks; NaN where both are empty (nnU-Net's convention, which leaves such cases out of a mean).

    MONAI's ``compute_dice`` gives an empty reference NaN (``ignore_empty=True``) or 1 whatever the prediction:
    here a prediction in a case without the class scores 0.

    Args:
        pred: the predicted mask (bool, or 0/1).
        label: the reference mask, of the same shape.

    Example::

        >>> binary_dice(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])), binary_dice(np.zeros(3), np.zeros(3))
        (0.6666666666666666, nan)
    """
    pred, label = np.asarray(pred, dtype=bool), np.asarray(label, dtype=bool)
    total = int(pred.sum()) + int(label.sum())
    return float("nan") if total == 0 else 2.0 * int(np.logical_and(pred, label).sum()) / total


def choose_keep_largest(
    dice_plain: Sequence[Sequence[float]], dice_largest: Sequence[Sequence[float]], class_values: Sequence[int]
) -> list[int]:
    """Classes whose mean validation Dice rises when only their largest component is kept, as nnU-Net decides.

    Args:
        dice_plain: per case, per class Dice of the prediction as it is (NaN where the class is in neither).
        dice_largest: the same after keeping each class's largest component.
        class_values: label value of each class column.

    Example::

        >>> choose_keep_largest([[0.8, 0.5]], [[0.9, 0.4]], [1, 2])
        [1]
    """
    with warnings.catch_warnings():
        # a class absent from every case has no mean: NaN, and it is not chosen
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = np.nanmean(np.asarray(dice_plain, dtype=float), axis=0)
        largest = np.nanmean(np.asarray(dice_largest, dtype=float), axis=0)
    return [int(v) for v, p, q in zip(class_values, plain, largest) if np.isfinite(p) and q > p]


class PostprocessingSelector:
    """Decide per class on validation data whether keeping the largest connected component helps; record it.

    Attached to a validation evaluator whose outputs hold one-hot ``pred`` and ``label`` (after
    ``AsDiscreted``), it measures each case's Dice per foreground class with and without keeping the largest
    component of the class. Whenever the validation's key metric reaches a new best (the weights that
    :class:`~monai_unets.handlers.BestModelSaver` writes, with their plan, in the same event before this handler),
    it writes the classes where the largest component raises the mean Dice into the plan file
    (``postprocessing.keep_largest``), which the inference config applies. In a ``torchrun`` job every process
    attaches it to its validator: the scores of every process's cases are gathered, and rank 0 decides and writes.

    Args:
        plan_file: the plan stored beside the model (the defaults if absent).
        pred_key: key of the prediction in the evaluator's output.
        label_key: key of the reference.

    Example::

        >>> PostprocessingSelector("models/plan.json").attach(evaluator)  # doctest: +SKIP
    """

    def __init__(self, plan_file: str | os.PathLike, pred_key: str = "pred", label_key: str = "label") -> None:
        self.plan_file = plan_file
        self.pred_key = pred_key
        self.label_key = label_key
        self.plain: list[list[float]] = []
        self.largest: list[list[float]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.decide)

    def reset(self, engine: Engine | None = None) -> None:
        """Forgets the cases of the last validation (at each validation's start)."""
        self.plain, self.largest = [], []

    def collect(self, engine: Engine) -> None:
        """Scores each case of the evaluator's output as it is and with only its largest components kept."""
        for item in per_case(engine.state.output):
            pred = np.asarray(torch.as_tensor(item[self.pred_key]).detach().cpu()) > 0.5
            label = np.asarray(torch.as_tensor(item[self.label_key]).detach().cpu()) > 0.5
            classes = range(1, pred.shape[0])
            self.plain.append([binary_dice(pred[c], label[c]) for c in classes])
            self.largest.append([binary_dice(keep_largest_component(pred[c]), label[c]) for c in classes])

    def decide(self, engine: Engine) -> None:
        """Chooses the classes to post-process from the cases of all processes and records them in the plan."""
        # every validation, on every process, before anything is compared: a collective that only some processes
        # reach hangs the job, and the decision is to rest on all the job's cases, as in a one-process run
        plain, largest = gather_items(self.plain), gather_items(self.largest)
        # the process that wrote the weights and their plan: another one could read the plan before that write
        if not plain or engine.state.best_metric_epoch != engine.state.epoch or not is_main_process():
            return
        values = list(range(1, len(plain[0]) + 1))
        plan = load_plan(self.plan_file)
        plan["postprocessing"] = {"keep_largest": choose_keep_largest(plain, largest, values)}
        save_plan(plan, self.plan_file)
