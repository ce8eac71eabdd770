"""What an evaluation leaves for people to look at: overlays per case, label volumes and one HTML report.

The report is built from files only (``metrics_per_case.csv``, ``metrics_summary.csv``, ``volumes_per_case.csv``,
``overlays/``, ``run.json``, ``failures.csv`` and the TensorBoard logs of the training), so
``monai-unets report <eval dir>`` rebuilds it from any evaluation folder, however it was produced.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import logging
import math
import os
import shlex
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import ImageMetaKey, min_version, optional_import

from ..data.atomic import atomic_open, atomic_path, from_text_safe
from ..data.cases import CASE_NAME_KEY, case_name, case_output_names, gather_items, per_case, rank_and_world_size
from ..data.medical_io import RUN_MARKER
from .case_metrics import PER_CASE_NAME, SUMMARY_NAME, default_batch_transform
from .overlays import PREDICTION_COLORS, TRUTH_COLORS, label_map, label_volumes, render_overlay

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["EvaluationReport", "write_report"]

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
VOLUMES_NAME = "volumes_per_case.csv"
RUN_INFO_NAME = "run.json"
OVERLAY_DIR = "overlays"


def _read_picture(path: Path) -> bytes | None:
    """An overlay's bytes; ``None`` where it is missing or cannot be read (the report then says so)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write_text(path: Path, text: str) -> None:
    # a complete file or none: readers never see half a CSV or report
    with atomic_open(path, encoding="utf-8") as f:
        f.write(text)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    _write_text(path, buffer.getvalue())


class EvaluationReport:
    """Per evaluated case an overlay PNG and the label volumes; at the end ``volumes_per_case.csv`` and the report.

    For each case, the image with the true and predicted contours of every class is saved as
    ``overlays/<case>.png``, named as the case's masks (its output name in a ``CaseDataset``); for 3D, the axial,
    coronal and sagittal slices that show the most classes, then the most foreground. The size of each label in the
    truth and the prediction is recorded: millilitres for 3D images with an affine, pixels for 2D images, which
    carry no physical size.
    Each row has the case's image file (``case``) and its name (``name``, :func:`~monai_unets.data.case_name`),
    which the report joins with the row of ``metrics_per_case.csv``.
    When the evaluation ends, ``volumes_per_case.csv``, ``run.json`` (the settings given here, the command line
    and the time) and ``report.html`` are written to ``save_dir`` (on rank 0; the rows of every rank are gathered
    first); ``volumes_per_case.csv`` has no rows when no case was evaluated. Attach it after the handler that
    writes ``metrics_per_case.csv`` (:class:`CaseMetricsWriter`). A failed case's overlay from an earlier run is
    found by ``output_paths`` (:class:`~monai_unets.handlers.CaseIsolationHandler` removes it).

    The prediction and label are read from each case of ``engine.state.output``, where the bundles' postprocessing
    has taken them back to the image's original grid (``InvertArgmaxd`` on ``pred``); the image under the contours
    (``image_key``) from the case's output too, or else from its entry of ``engine.state.batch``, on that grid: the
    2D bundles take the image back with ``Invertd``, the 3D bundles keep a copy of the study as read, whose voxels
    outside their body crop no inverse restores.

    Args:
        save_dir: the evaluation folder (the one of ``metrics_per_case.csv``).
        class_names: names of the foreground labels 1, 2, ...; default ``class1``, ``class2``, ...
        log_dir: TensorBoard folder of the training, for the training curves of the report.
        settings: what to record of the run's configuration (shown in the report), e.g. the dataset folder.
        overlays: draw the overlay PNGs.
        report: write ``report.html`` at the end.
        num_extreme_cases: how many best and worst cases the report shows with their overlays.
        batch_transform: maps ``engine.state.batch`` to a list of meta dictionaries, one per case.
        image_key: key of the image the overlays are drawn on.

    Example::

        >>> report = EvaluationReport("eval", class_names=["pancreas", "tumour"], log_dir="logs")
        >>> report.attach(evaluator)  # doctest: +SKIP
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        class_names: Sequence[str] | None = None,
        log_dir: str | os.PathLike | None = None,
        settings: Mapping[str, Any] | None = None,
        overlays: bool = True,
        report: bool = True,
        num_extreme_cases: int = 3,
        batch_transform: Callable = default_batch_transform,
        image_key: str = "image",
    ) -> None:
        self.save_dir = Path(save_dir)
        self.class_names = list(class_names) if class_names else None
        self.log_dir = str(log_dir) if log_dir else None
        self.settings = {str(k): v for k, v in (settings or {}).items()}
        self.overlays = overlays
        self.report = report
        self.num_extreme_cases = num_extreme_cases
        self.batch_transform = batch_transform
        self.image_key = image_key
        self._rows: list[dict[str, Any]] = []
        self._stems: set[str] = set()

    def case_mark(self) -> int:
        """How many cases are recorded, for :class:`~monai_unets.handlers.CaseIsolationHandler` to roll back to."""
        return len(self._rows)

    def roll_back_case(self, mark: int) -> None:
        """Forgets the cases recorded after ``mark`` (:meth:`case_mark`): one that failed in a later handler."""
        for row in self._rows[mark:]:
            self._stems.discard(Path(row["overlay"]).stem)
        del self._rows[mark:]

    def attach(self, engine: Engine) -> None:
        if engine.has_event_handler(self._cases, Events.ITERATION_COMPLETED):
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._cases)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write_volumes)
        engine.add_event_handler(Events.COMPLETED, self._write_report)

    def _started(self, _engine: Engine) -> None:
        self._rows = []
        self._stems = set()

    def _names(self, num_channels: int) -> list[str]:
        count = max(num_channels - 1, 1)
        names = self.class_names or [f"class{c}" for c in range(1, count + 1)]
        if len(names) != count:
            raise ValueError(f"the prediction has {count} foreground classes but class_names names {len(names)}.")
        return names

    def _overlay_name(self, case: str, name: str | None) -> str:
        if name:  # the case's output name (CaseDataset): unique over the job, and its masks' name too
            return f"{OVERLAY_DIR}/{name}.png"
        # the name the case's masks get from a bundle (CaseDataset), here without the job's other cases to compare
        stem = case_output_names([case])[0]
        # names must not collide, within this process or with another rank's
        if stem in self._stems or rank_and_world_size()[1] > 1:
            stem = f"{stem}_{hashlib.sha1(os.fsencode(case)).hexdigest()[:8]}"
        self._stems.add(stem)
        return f"{OVERLAY_DIR}/{stem}.png"

    def output_paths(self, name: str) -> list[Path]:
        """The files written for the case named ``name`` (its output name): its overlay, for
        :class:`~monai_unets.handlers.CaseIsolationHandler` to remove an earlier run's when the case fails."""
        return [self.save_dir / OVERLAY_DIR / f"{name}.png"] if self.overlays else []

    def run_output_paths(self) -> list[Path]:
        """The files written when the evaluation ends, for :class:`~monai_unets.handlers.CaseIsolationHandler` to
        remove an earlier run's when this one starts."""
        names = [VOLUMES_NAME, RUN_INFO_NAME] + ([REPORT_NAME] if self.report else [])
        return [self.save_dir / name for name in names]

    def _cases(self, engine: Engine) -> None:
        outputs, batches = per_case(engine.state.output), per_case(engine.state.batch)
        metas = self.batch_transform(engine.state.batch)
        for meta, output, batch in zip(metas, outputs, batches):
            case = str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, ""))
            pred = output["pred"]
            names = self._names(pred.shape[0])
            prediction = label_map(pred)
            truth = label_map(output["label"]) if output.get("label") is not None else None
            affine = getattr(pred, "affine", None)
            affine = None if affine is None else np.asarray(affine.detach().cpu(), dtype=float)
            unit = "ml" if prediction.ndim == 3 and affine is not None else "px"
            row: dict[str, Any] = {"case": case, "name": case_name(meta), "overlay": ""}
            true_sizes = label_volumes(truth, affine, len(names)) if truth is not None else [math.nan] * len(names)
            for name, true_size, pred_size in zip(names, true_sizes, label_volumes(prediction, affine, len(names))):
                row[f"{name}_true_{unit}"] = true_size
                row[f"{name}_pred_{unit}"] = pred_size
            if self.overlays:
                try:
                    image = output[self.image_key] if self.image_key in output else batch[self.image_key]
                    picture = render_overlay(image, truth, prediction, names, affine)
                    row["overlay"] = self._overlay_name(case, meta.get(CASE_NAME_KEY))
                    with atomic_path(self.save_dir / row["overlay"]) as partial:
                        picture.save(partial, format="PNG")
                except (ValueError, OSError) as error:
                    # a picture is a convenience: its failure must not lose the case's metrics
                    logger.warning("no overlay for %s: %s", case, error)
                    row["overlay"] = ""
            self._rows.append(row)

    def _write_volumes(self, _engine: Engine) -> None:
        rows = gather_items(self._rows)
        if rank_and_world_size()[0] != 0:
            return
        # a run without any case still writes the table (its header), so that an earlier run's rows are gone
        header = list(rows[0]) if rows else ["case", "name", "overlay"]
        _write_csv(
            self.save_dir / VOLUMES_NAME,
            header,
            [[_size_text(r[k], k) if isinstance(r[k], float) else r[k] for k in header] for r in rows],
        )

    def _write_report(self, _engine: Engine) -> None:
        if rank_and_world_size()[0] != 0:
            return
        argv = list(sys.argv)
        if argv and Path(argv[0]).parts[-2:] == ("bundle", "__main__.py"):
            argv[:1] = ["python", "-m", "monai.bundle"]
        info = {
            "command": shlex.join(argv),
            "working_dir": os.getcwd(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "log_dir": self.log_dir,
            "settings": {k: str(v) for k, v in self.settings.items()},
        }
        _write_text(self.save_dir / RUN_INFO_NAME, json.dumps(info, indent=2))
        if self.report:
            path = write_report(self.save_dir, num_extreme_cases=self.num_extreme_cases)
            logger.info("evaluation report: %s", path)

    def run_concluded(self, failures: int) -> None:
        """Writes the report again once :class:`~monai_unets.handlers.CaseIsolationHandler` has written the
        failure log, which the evaluator's end came before: the failed cases then have their count and table.

        Args:
            failures: how many cases failed in the run (all processes).
        """
        if failures and self.report and rank_and_world_size()[0] == 0:
            write_report(self.save_dir, num_extreme_cases=self.num_extreme_cases)


# ---------------------------------------------------------------------------------------------------------------
# the HTML report


def _read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a table of the evaluation folder (none where it has no such file); a damaged one names itself."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a table an evaluation writes ({error}); evaluate again.") from error
    for number, row in enumerate(rows, start=2):
        # csv keeps extra values under None and gives None for missing ones
        if None in row or None in row.values():
            raise ValueError(
                f"{path}: line {number} has {'more' if None in row else 'fewer'} values than the header (the file "
                "was cut short or edited); evaluate again."
            )
    return rows


def _read_run_info(path: Path) -> dict[str, Any]:
    """The run's command, folder and settings (``run.json``); a damaged file is left out with a warning, as the
    report's tables do without it."""
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        info = error
    if not isinstance(info, dict):
        logger.warning("%s is damaged (%s): the report leaves out the run's command and settings.", path, info)
        return {}
    return info


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _metric_groups(columns: Sequence[str]) -> dict[str, list[str]]:
    """Metric -> its per-class columns (``val_mean_dice`` -> ``val_mean_dice_pancreas``, ...), or itself."""
    groups: dict[str, list[str]] = {}
    for column in columns:
        parents = [c for c in columns if c != column and column.startswith(f"{c}_")]
        if parents:
            groups.setdefault(max(parents, key=len), []).append(column)
        else:
            groups.setdefault(column, [])
    return {metric: per_class or [metric] for metric, per_class in groups.items()}


def _distribution_figure(cases: list[dict[str, str]], groups: Mapping[str, list[str]]) -> bytes:
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.2), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, (metric, columns) in zip(axes[0], groups.items()):
        values = [[v for v in (_float(c[col]) for c in cases) if not math.isnan(v)] for col in columns]
        positions = list(range(1, len(columns) + 1))
        ax.boxplot([v or [math.nan] for v in values], positions=positions, widths=0.5, showfliers=False)
        for position, v in zip(positions, values):
            ax.scatter(position + rng.uniform(-0.15, 0.15, len(v)), v, s=10, alpha=0.6)
        ax.set_xticks(positions, [col[len(metric) + 1 :] or metric for col in columns], rotation=20)
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return _figure_png(figure)


def _runs(log_dir: Path) -> list[list[Path]]:
    """TensorBoard event files of ``log_dir`` grouped by run (one trainer and one validator file each), newest first."""
    files = sorted(log_dir.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime, reverse=True)
    runs: dict[str, list[Path]] = {}
    for path in files:
        # events.out.tfevents.<time>.<host>.<pid>.<n>: one run's writers share its process id
        runs.setdefault(path.name.split(".")[-2], []).append(path)
    return list(runs.values())


def _training_curves(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the newest run in ``log_dir`` that logged any (a workflow only built, never run, logs none)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in _runs(log_dir):
        curves: dict[str, list[tuple[int, float]]] = {}
        for path in run:
            events = EventAccumulator(str(path), size_guidance={"scalars": 0})
            events.Reload()
            for tag in events.Tags().get("scalars", []):
                curves.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
        if curves:
            return {tag: sorted(points) for tag, points in sorted(curves.items())}
    return {}


def _curves_figure(curves: Mapping[str, list[tuple[int, float]]]) -> bytes:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.0), squeeze=False)
    for ax, (tag, points) in zip(axes[0], curves.items()):
        steps, values = zip(*points)
        ax.plot(steps, values, marker="." if len(points) < 50 else None)
        ax.set_title(tag, fontsize=10)
        # the trainer logs per iteration, the validator per epoch
        ax.set_xlabel("iteration" if "loss" in tag else "epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return _figure_png(figure)


def _volume_figure(volumes: list[dict[str, str]], pairs: list[tuple[str, str, str]], unit: str) -> bytes:
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(pairs), figsize=(3.4 * len(pairs), 3.4), squeeze=False)
    for ax, (name, true_col, pred_col) in zip(axes[0], pairs):
        truth = np.array([_float(r[true_col]) for r in volumes])
        prediction = np.array([_float(r[pred_col]) for r in volumes])
        ax.scatter(truth, prediction, s=12)
        finite = np.concatenate([truth[np.isfinite(truth)], prediction[np.isfinite(prediction)]])
        top = float(finite.max()) if finite.size else 1.0
        ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle="--")
        ax.set_xlabel(f"true ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return _figure_png(figure)


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _case_key(row: Mapping[str, str]) -> str:
    """What joins a case's rows of the tables: its ``name``; its file in a folder written before they had names."""
    return row.get("name") or row["case"]


def _number(text: str | None, digits: int = 4) -> str:
    value = _float(text)
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _size_text(value: float, column: str) -> str:
    # pixels are counts; millilitres to the mm^3, so that a structure of one small voxel (0.00025 ml on a 0.5 x 0.5 x
    # 1 mm grid) is not written as the 0.000 of an absent one
    return f"{value:.0f}" if column.endswith("_px") else f"{value:.6f}"


def _size(text: str | None, column: str) -> str:
    value = _float(text)
    if math.isnan(value):
        return "n/a"
    if column.endswith("_px"):
        return f"{value:.0f}"
    # hundredths of a ml, but a structure smaller than that with its own digits rather than as 0.00, an absent one
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.01 else f"{value:.2g}"


def _figure(title: str, png: bytes, figure_id: str) -> str:
    return f'<figure id="{figure_id}"><img alt="{html.escape(title)}" src="{_png_data_uri(png)}"></figure>'


def _href(path: Path, page_dir: Path) -> str:
    """A link from a page in ``page_dir`` to ``path``: relative, URL-encoded (``#``, ``%``, ``?`` are no delimiters).

    Example::

        >>> _href(Path("eval/overlays/lesion #1.png"), Path("reports"))
        '../eval/overlays/lesion%20%231.png'
    """
    try:
        relative = Path(os.path.relpath(path, page_dir))
    except ValueError:  # on another drive (Windows): no relative path leads there
        return path.resolve().as_uri()
    return urllib.parse.quote(relative.as_posix())


def _legend_html(names: Sequence[str]) -> str:
    def swatch(color: tuple[int, int, int]) -> str:
        return f'<span class="swatch" style="background: rgb{color}"></span>'

    truth = " ".join(f"{swatch(TRUTH_COLORS[i % len(TRUTH_COLORS)])}{html.escape(n)}" for i, n in enumerate(names))
    prediction = " ".join(
        f"{swatch(PREDICTION_COLORS[i % len(PREDICTION_COLORS)])}{html.escape(n)}" for i, n in enumerate(names)
    )
    return f'<p class="legend">Contours, truth: {truth} &nbsp; prediction: {prediction}</p>'


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 0.5em 0; } img { max-width: 100%; }
.cases { display: flex; flex-wrap: wrap; gap: 1em; } .case { border: 1px solid #ddd; padding: 0.5em; }
.case img { max-height: 360px; } .note { color: #666; } .swatch { display: inline-block; width: 0.9em;
height: 0.9em; margin: 0 0.2em 0 0.6em; vertical-align: middle; }
#settings td { text-align: left; } .wide { overflow-x: auto; max-width: 100%; }
pre { background: #f6f6f6; padding: 0.8em; white-space: pre-wrap; word-break: break-all; font-size: 0.85em; }
"""


def _summary_section(summary: list[dict[str, str]]) -> str:
    rows = [
        [html.escape(r["metric"])]
        + [_number(r[k]) for k in ("mean", "std", "median", "min", "max")]
        + [html.escape(r["cases"])]
        for r in summary
    ]
    return "<h2>Summary</h2>" + _table("summary", ["metric", "mean", "std", "median", "min", "max", "cases"], rows)


def _curves_section(log_dir: str | os.PathLike | None) -> str:
    curves = _training_curves(Path(log_dir)) if log_dir and Path(log_dir).is_dir() else {}
    folder = html.escape(str(log_dir))
    if not curves:
        return f'<h2>Training curves</h2><p class="note">No TensorBoard logs found (log folder: {folder}).</p>'
    return f'<h2>Training curves</h2><p class="note">From the TensorBoard logs in {folder}.</p>' + _figure(
        "training curves", _curves_figure(curves), "curves"
    )


def _extreme_cases_section(
    folder: Path,
    cases: list[dict[str, str]],
    metrics: Sequence[str],
    volumes: list[dict[str, str]],
    volume_by_case: Mapping[str, dict[str, str]],
    num_extreme_cases: int,
) -> str:
    """The best and worst cases by the first metric over all classes (the key metric of the bundles, not one
    class's column), with their overlays."""
    key = next(iter(_metric_groups(metrics)))
    ranked = sorted((c for c in cases if not math.isnan(_float(c[key]))), key=lambda c: _float(c[key]))
    # the best take the middle case of an odd count, so that no case is shown as both
    best, worst = min(num_extreme_cases, (len(ranked) + 1) // 2), min(num_extreme_cases, len(ranked) // 2)
    names = [c.rsplit("_true_", 1)[0] for c in (volumes[0] if volumes else {}) if "_true_" in c]
    parts = [f"<h2>Best and worst cases by {html.escape(key)}</h2>"]
    if names:
        parts.append(_legend_html(names))
    for title, chosen, section_id in (("Best", ranked[::-1][:best], "best"), ("Worst", ranked[:worst], "worst")):
        if not chosen:
            continue
        items = []
        for case in chosen:
            overlay = volume_by_case.get(_case_key(case), {}).get("overlay", "")
            # the CSV holds a name that is not UTF-8 escaped: the file has its own bytes
            picture = _read_picture(folder / from_text_safe(overlay)) if overlay else None
            image = (
                f'<img alt="overlay" src="{_png_data_uri(picture)}">'
                if picture is not None
                else '<p class="note">no overlay</p>'
            )
            items.append(
                f'<div class="case"><b>{html.escape(case.get("name") or Path(case["case"]).name)}</b><br>'
                f"{html.escape(key)} = {_number(case[key])}<br>{image}</div>"
            )
        parts.append(f'<h3>{title}</h3><div class="cases" id="{section_id}">{"".join(items)}</div>')
    return "".join(parts)


def _sizes_section(volumes: list[dict[str, str]], size_columns: Sequence[str]) -> str:
    unit = "ml" if size_columns[0].endswith("_ml") else "px"
    pairs = [
        (c[: -len(f"_true_{unit}")], c, c.replace("_true_", "_pred_"))
        for c in size_columns
        if c.endswith(f"_true_{unit}")
    ]
    return (
        ("<h2>Label volumes</h2>" if unit == "ml" else "<h2>Label areas (pixels)</h2>")
        + '<p class="note">Predicted against true size per case'
        + (" in millilitres." if unit == "ml" else "; 2D images carry no physical size.")
        + "</p>"
        + _figure("label volumes", _volume_figure(volumes, pairs, unit), "volumes")
    )


def _configuration_section(info: Mapping[str, Any]) -> str:
    if not info:
        return f'<h2>Configuration</h2><p class="note">No {RUN_INFO_NAME} in this folder.</p>'
    settings = info.get("settings", {})
    return (
        "<h2>Configuration</h2>"
        + _table("settings", ["setting", "value"], [[html.escape(k), html.escape(v)] for k, v in settings.items()])
        + f"<p>Command:</p><pre>{html.escape(info.get('command', ''))}</pre>"
        + f"<p>Run in:</p><pre>{html.escape(info.get('working_dir', ''))}</pre>"
        + f'<p class="note">Finished {html.escape(info.get("finished", ""))}.</p>'
    )


def write_report(
    eval_dir: str | os.PathLike,
    log_dir: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    num_extreme_cases: int = 3,
) -> Path:
    """Writes a self-contained HTML report of an evaluation folder (figures embedded as PNG) and returns its path.

    Sections: summary statistics (``metrics_summary.csv``), the distribution of each metric per class, the
    training curves (TensorBoard logs of ``log_dir``, or of the ``log_dir`` recorded in ``run.json``), the best
    and worst cases by the first metric (its mean over classes) with their overlays, predicted against true label
    volumes, a table of every case (metrics and volumes, with a link to its overlay), the cases that failed, and
    the configuration recorded in ``run.json``.

    Args:
        eval_dir: folder with ``metrics_per_case.csv`` (required) and the other files of an evaluation.
        log_dir: TensorBoard folder of the training; default the one recorded in ``run.json``.
        output: the HTML file; default ``<eval_dir>/report.html``. Its links to the overlays are relative to its
            folder, so the report and ``eval_dir`` can be moved together.
        num_extreme_cases: how many best and worst cases to show with their overlays.

    Raises:
        FileNotFoundError: ``eval_dir`` has no ``metrics_per_case.csv``.

    Example::

        >>> write_report("bundle/eval")  # doctest: +SKIP
        PosixPath('bundle/eval/report.html')
    """
    folder = Path(eval_dir)
    per_case_file = folder / PER_CASE_NAME
    if not per_case_file.is_file():
        unfinished = sorted(folder.glob("failures.rank*.csv"))
        if unfinished:
            raise FileNotFoundError(
                f"{per_case_file}: no per-case metrics: the evaluation writing into {folder} did not finish (its "
                f"per-process report {unfinished[0].name} is there); evaluate again."
            )
        raise FileNotFoundError(f"{per_case_file}: no per-case metrics; is {folder} an evaluation folder?")
    cases = _read_csv(per_case_file)
    summary = _read_csv(folder / SUMMARY_NAME)
    volumes = _read_csv(folder / VOLUMES_NAME)
    failures = _read_csv(folder / RUN_MARKER)
    info_file = folder / RUN_INFO_NAME
    info = _read_run_info(info_file)
    log_dir = log_dir or info.get("log_dir")
    # the image file, and the case's name where the tables have it (one image scored against two labels is two cases)
    identity = [c for c in ("case", "name") if c in (cases[0] if cases else {})] or ["case"]
    metrics = [c for c in (cases[0] if cases else {}) if c not in identity]
    volume_by_case = {_case_key(row): row for row in volumes}
    target = Path(output) if output else folder / REPORT_NAME

    size_columns = [c for c in (volumes[0] if volumes else {}) if c.endswith(("_ml", "_px"))]
    parts = [
        f"<h1>Evaluation report: {html.escape(str(folder.resolve()))}</h1>",
        f'<p id="counts">{len(cases)} cases evaluated, {len(failures)} failed. '
        f"Written {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}.</p>",
        _summary_section(summary),
    ]
    if cases and metrics:
        parts.append("<h2>Metric distribution per class</h2>")
        parts.append(_figure("metric distribution", _distribution_figure(cases, _metric_groups(metrics)), "dist"))
    parts.append(_curves_section(log_dir))
    if cases and metrics:
        parts.append(_extreme_cases_section(folder, cases, metrics, volumes, volume_by_case, num_extreme_cases))
    if size_columns:
        parts.append(_sizes_section(volumes, size_columns))
    parts.append("<h2>Every case</h2>")
    header = identity + metrics + size_columns + ["overlay"]
    rows = []
    for case in cases:
        sizes = volume_by_case.get(_case_key(case), {})
        overlay = sizes.get("overlay", "")
        link = f'<a href="{html.escape(_href(folder / overlay, target.parent))}">png</a>' if overlay else ""
        rows.append(
            [html.escape(case[c]) for c in identity]
            + [_number(case[m]) for m in metrics]
            + [_size(sizes.get(c), c) for c in size_columns]
            + [link]
        )
    # one column per metric, class and volume is wider than a page: the table scrolls in its own box, not the page
    parts.append(f'<div class="wide">{_table("cases", header, rows)}</div>')
    if failures:
        parts.append("<h2>Cases that failed</h2>")
        columns = ["case", "file", "stage", "error"]
        # a case fails at any stage (reading, the network, a writer, the metrics): the stage says which
        parts.append(_table("failures", columns, [[html.escape(f.get(c) or "") for c in columns] for f in failures]))
    parts.append(_configuration_section(info))

    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Evaluation report</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; give the report's file, e.g. {target / REPORT_NAME}.")
    try:
        _write_text(target, document)
    except OSError as error:  # named by the file asked for, not by the temporary one it is written through
        # the message names the report, which the error of the write alone does not
        raise OSError(f"cannot write the report {target}: {error.strerror or error}") from None
    return target
