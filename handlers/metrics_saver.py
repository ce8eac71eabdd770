"""MONAI's metrics report, written so that no report is ever found half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from monai.handlers import MetricsSaver
from monai.utils import min_version, optional_import

from ..data.atomic import PARTIAL_PREFIX, fsync_file, text_safe

Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["AtomicMetricsSaver"]


class AtomicMetricsSaver(MetricsSaver):
    """MONAI's :class:`~monai.handlers.MetricsSaver` whose files (``metrics.csv``, ``*_raw.csv``, ...) appear whole.

    The reports are written into a hidden staging folder inside ``save_dir`` and each is then renamed into
    ``save_dir``, so a run killed while writing leaves the previous report (or none), never a truncated one.
    File names that are not valid UTF-8 are listed escaped (:func:`monai_unets.data.atomic.text_safe`).
    Arguments are ``MetricsSaver``'s.

    Args:
        save_dir: the folder of the reports, created when missing; the staging folder is made inside it.
        metrics: the engine's metrics written to ``metrics.csv``: ``"*"`` (the default) all of them, a list of
            names, or ``None`` for no ``metrics.csv``.
        metric_details: the metrics whose per-case, per-class values (``engine.state.metric_details``) are written
            to ``<name>_raw.csv``, one row per case file: ``"*"``, a list of names, or ``None`` (the default) for none.
        batch_transform: takes ``engine.state.batch`` to the cases' metadata (a dictionary of lists, or one
            dictionary per case), whose ``filename_or_obj`` names the rows of the detail reports; by default the
            batch as it is. Used only with ``metric_details``.
        summary_ops: statistics of each detail report written to ``<name>_summary.csv`` (``"mean"``, ``"median"``,
            ``"90percentile"``, ...; ``"*"`` all of MONAI's); ``None`` (the default) writes no summaries.
        save_rank: the process of a multi-GPU evaluation that writes the reports (0 by default).
        delimiter: the column separator of the files (``","``).
        output_type: the file type; MONAI supports ``"csv"`` only.

    Example::

        >>> AtomicMetricsSaver(save_dir="eval", metrics="*").attach(evaluator)  # doctest: +SKIP
    """

    def run_output_paths(self) -> list[Path]:
        """The reports written when the evaluation ends, for :class:`~monai_unets.handlers.CaseIsolationHandler` to
        remove an earlier run's when this one starts; with ``metric_details="*"`` the per-metric reports in
        ``save_dir``."""
        folder = Path(self.save_dir)
        paths = [folder / "metrics.csv"] if self.metrics else []
        details = self.metric_details or ()
        if "*" in details:
            # the names of the metrics are known at the end only: those of the reports there
            details = tuple(path.name[: -len("_raw.csv")] for path in folder.glob("*_raw.csv"))
        for name in details:
            paths += [folder / f"{name}_raw.csv"] + ([folder / f"{name}_summary.csv"] if self.summary_ops else [])
        return paths

    def _get_filenames(self, engine: Engine) -> None:
        # MONAI writes the raw reports in the locale's encoding without an error handler, and gathers the names of
        # a multi-GPU run as UTF-8: a file name that is not valid UTF-8 would fail both
        known = len(self._filenames)
        super()._get_filenames(engine)
        self._filenames[known:] = [text_safe(name) for name in self._filenames[known:]]

    def __call__(self, engine: Engine) -> None:
        final = Path(self.save_dir)
        final.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=PARTIAL_PREFIX, dir=final) as staging:
            self.save_dir = staging
            try:
                super().__call__(engine)
            finally:
                self.save_dir = str(final)
            for report in sorted(Path(staging).iterdir()):
                fsync_file(report)
                os.replace(report, final / report.name)
