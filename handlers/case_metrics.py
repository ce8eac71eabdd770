"""Per-case metric tables for evaluation runs."""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.metrics import compute_confusion_matrix_metric
from monai.utils import ImageMetaKey, min_version, optional_import

from ..data.atomic import atomic_open
from ..data.cases import case_name, file_meta, gather_items, per_case, rank_and_world_size

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["PER_CASE_NAME", "SUMMARY_NAME", "CaseMetricsWriter"]

#: the tables an evaluation writes into its folder, which the report and the quick start read
PER_CASE_NAME = "metrics_per_case.csv"
SUMMARY_NAME = "metrics_summary.csv"

logger = logging.getLogger(__name__)


def default_batch_transform(batch: Any) -> list[Mapping]:
    """The file metadata of each case of an engine's batch, decollated or not (an evaluator's ``decollate=False``),
    whatever the image's key: what the per-case tables name their rows by.

    Args:
        batch: an engine's ``state.batch``.
    """
    return [file_meta(case) for case in per_case(batch)]


class CaseMetricsWriter:
    """Writes one row per case with every metric of an evaluator, plus a summary, when the evaluation ends.

    MONAI's metric handlers keep their per-case values in ``engine.state.metric_details`` (with
    ``save_details=True``, the default). This handler joins them into ``metrics_per_case.csv`` (a ``case``
    column with the image file, a ``name`` column with the case's name (:func:`~monai_unets.data.case_name`: its
    output name, as its overlay and ``failures.csv`` name it, unique per datalist entry, so that one image scored
    against two labels gives two rows that can be told apart), then one column per metric, and per class when there
    are several classes)
    and ``metrics_summary.csv`` (mean, standard deviation of the cases as a population (numpy's ``std``), median,
    min, max and count of each column, ignoring NaN),
    and logs the summary. Both files appear complete or not at all (written to a temporary file, then renamed).
    They describe this run only: a run without any case (every one failed to load) writes them with their header
    and no rows, replacing those of an earlier run.
    In a ``torchrun`` job every process attaches it; the cases of all processes are gathered and rank 0
    writes the files. Confusion-matrix handlers store raw TP/FP/TN/FN counts as details; name them in
    ``confusion_metrics`` to get their per-case metric (sensitivity, specificity, ...) instead.

    MONAI's ``MetricsSaver(metric_details=...)`` writes a table per metric, rows named by image file, with the raw
    confusion counts: one image scored against two labels gives two rows of one name there, and a reader joins the
    tables by that name. This writer's one table is what the evaluation report and the quick start read.

    Args:
        save_dir: folder of the two CSV files.
        confusion_metrics: metric handler name -> confusion-matrix metric name, e.g.
            ``{"val_sensitivity": "sensitivity"}``.
        class_names: names of the classes in the metrics' channel order (e.g. ``["pancreas", "tumour"]`` for
            metrics without background), used in the per-class column names instead of ``class<i>``.
        batch_transform: maps ``engine.state.batch`` to a list of meta dictionaries, one per case.

    Example::

        >>> writer = CaseMetricsWriter("eval", confusion_metrics={"val_accuracy": "accuracy"})  # doctest: +SKIP
        >>> writer.attach(evaluator)  # doctest: +SKIP
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        confusion_metrics: Mapping[str, str] | None = None,
        class_names: Sequence[str] | None = None,
        batch_transform: Callable = default_batch_transform,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.confusion_metrics = dict(confusion_metrics or {})
        self.class_names = list(class_names) if class_names else None
        self.batch_transform = batch_transform
        self._cases: list[tuple[str, str]] = []

    def run_output_paths(self) -> list[Path]:
        """The tables written when the evaluation ends, for :class:`~monai_unets.handlers.CaseIsolationHandler` to
        remove an earlier run's when this one starts."""
        return [self.save_dir / PER_CASE_NAME, self.save_dir / SUMMARY_NAME]

    def case_mark(self) -> int:
        """How many cases are recorded, for :class:`~monai_unets.handlers.CaseIsolationHandler` to roll back to."""
        return len(self._cases)

    def roll_back_case(self, mark: int) -> None:
        """Forgets the cases recorded after ``mark`` (:meth:`case_mark`): one that failed in a later handler."""
        del self._cases[mark:]

    def attach(self, engine: Engine) -> None:
        # attached twice, each case was recorded twice against one row of metrics
        if engine.has_event_handler(self._collect_cases, Events.ITERATION_COMPLETED):
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_cases)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _started(self, _engine: Engine) -> None:
        self._cases = []

    def _collect_cases(self, engine: Engine) -> None:
        self._cases.extend(
            (str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, "")), case_name(meta))
            for meta in self.batch_transform(engine.state.batch)
        )

    def _columns(self, engine: Engine) -> dict[str, list[float]]:
        columns: dict[str, list[float]] = {}
        for name, details in getattr(engine.state, "metric_details", {}).items():
            values = torch.as_tensor(details).float().cpu()
            if name in self.confusion_metrics:
                values = compute_confusion_matrix_metric(self.confusion_metrics[name], values)
            values = values.reshape(values.shape[0], -1)  # (cases, classes)
            if values.shape[1] > 1:
                names = self.class_names or [f"class{c}" for c in range(values.shape[1])]
                if len(names) != values.shape[1]:
                    raise ValueError(f"{name} has {values.shape[1]} classes but class_names names {len(names)}.")
                for c, class_name in enumerate(names):
                    columns[f"{name}_{class_name}"] = values[:, c].tolist()
            columns[name] = torch.nanmean(values, dim=1).tolist()
        return columns

    def __call__(self, engine: Engine) -> None:
        columns = self._columns(engine)
        # MONAI's metrics gather their details from every process rank by rank; the case names follow suit (not with
        # MONAI's string_list_all_gather, which gives a process without cases one case named "")
        cases = gather_items(self._cases)
        if rank_and_world_size()[0] != 0:
            return
        if not columns:
            # the tables are still written, empty, so that none of an earlier run in save_dir passes for this run's
            logger.warning("no per-case metric details to write (did the evaluator see any case?)")
        names = list(columns)
        per_case, summary = self.run_output_paths()
        with atomic_open(per_case, newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "name"] + names)
            for i, (case, name) in enumerate(cases):
                writer.writerow([case, name] + [f"{columns[n][i]:.6f}" for n in names])

        lines = [f"{'metric':<24}{'mean':>9}{'std':>9}{'median':>9}{'min':>9}{'max':>9}{'cases':>7}"]
        with atomic_open(summary, newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["metric", "mean", "std", "median", "min", "max", "cases"])
            for name in names:
                stats = _summary([v for v in columns[name] if not math.isnan(v)])
                writer.writerow([name] + [f"{v:.6f}" for v in stats[:-1]] + [int(stats[-1])])
                lines.append(f"{name:<24}" + "".join(f"{v:9.4f}" for v in stats[:-1]) + f"{int(stats[-1]):7d}")
        # the table in the message, whose line breaks stay: a logged value's are escaped (printable_records)
        table = "\n".join(lines).replace("%", "%%")
        logger.info(f"per-case metrics of %d cases:\n{table}\nwritten to %s and %s", len(cases), per_case, summary)


def _summary(values: list[float]) -> tuple[float, ...]:
    """mean, std, median, min, max and count of ``values`` (NaN everywhere when there are none)."""
    if not values:
        return (math.nan,) * 5 + (0,)
    t = torch.tensor(values, dtype=torch.float64)
    std = float(t.std(unbiased=False))
    return (float(t.mean()), std, float(t.quantile(0.5)), float(t.min()), float(t.max()), len(values))
