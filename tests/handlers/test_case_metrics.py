from __future__ import annotations

import csv
import logging

import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai_unets.handlers import CaseMetricsWriter
from monai_unets.handlers.errors import printable_records

from tests.distributed import run_in_two_processes


def _batches(files: list[str]) -> list:
    return [[{"image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": f})}] for f in files]


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_per_case_rows_with_classes_and_confusion_metrics(tmp_path, caplog):
    dice = torch.tensor([[0.5, 1.0], [0.25, float("nan")]])  # two cases, two classes, one class absent
    # TP, FP, TN, FN for each case and class
    confusion = torch.tensor([[[8.0, 2.0, 88.0, 2.0]], [[0.0, 0.0, 90.0, 10.0]]])
    engine = Engine(lambda e, batch: None)
    writer = CaseMetricsWriter(tmp_path, confusion_metrics={"sens": "sensitivity"})

    # metric handlers fill the details before the writer runs, as MONAI's do when attached first
    @engine.on(Events.EPOCH_COMPLETED)
    def _set_details(e):
        e.state.metric_details = {"dice": dice, "sens": confusion}

    writer.attach(engine)
    engine.run(_batches(["a.png", "b.png"]), max_epochs=1)

    rows = _read(tmp_path / "metrics_per_case.csv")
    assert [r["case"] for r in rows] == ["a.png", "b.png"]
    # cases read without a CaseDataset have no output name: their file names them
    assert [r["name"] for r in rows] == ["a.png", "b.png"]
    assert list(rows[0]) == ["case", "name", "dice_class0", "dice_class1", "dice", "sens"]
    assert float(rows[0]["dice"]) == pytest.approx(0.75)
    assert float(rows[1]["dice"]) == pytest.approx(0.25)  # the absent class is left out of the mean
    assert float(rows[0]["sens"]) == pytest.approx(0.8)  # 8 / (8 + 2)
    assert float(rows[1]["sens"]) == pytest.approx(0.0)

    summary = {r["metric"]: r for r in _read(tmp_path / "metrics_summary.csv")}
    assert float(summary["dice"]["mean"]) == pytest.approx(0.5)
    # the log's table keeps its lines where logged values have their line breaks escaped (report_errors' records)
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(printable_records(factory))
    try:
        with caplog.at_level(logging.INFO):
            engine.run(_batches(["a.png", "b.png"]), max_epochs=1)
    finally:
        logging.setLogRecordFactory(factory)
    logged = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("per-case metrics"))
    assert logged.splitlines()[1].split() == ["metric", "mean", "std", "median", "min", "max", "cases"]
    assert float(summary["dice"]["median"]) == pytest.approx(0.5)
    assert summary["dice_class1"]["cases"] == "1"


@pytest.mark.parametrize("layout", ["collated", "other image key", "attached twice"])
def test_cases_are_named_from_collated_batches_any_image_key_and_one_attachment(tmp_path, layout):
    # an evaluator built with decollate=False holds one dictionary per batch (iterated as its keys, a TypeError), an
    # image under another key had raised KeyError, and a writer attached twice recorded each case twice (IndexError)
    key = "img" if layout == "other image key" else "image"
    files = ["a.png", "b.png", "c.png"]
    if layout == "collated":
        batch = {key: MetaTensor(torch.zeros(3, 1, 2, 2), meta={"filename_or_obj": files})}
        batch[key].is_batch = True
        batches = [batch]
    else:
        batches = [[{key: MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": f})}] for f in files]
    engine = Engine(lambda e, batch: None)
    writer = CaseMetricsWriter(tmp_path)

    @engine.on(Events.EPOCH_COMPLETED)
    def _set_details(e):
        e.state.metric_details = {"dice": torch.tensor([[0.5], [0.25], [1.0]])}

    writer.attach(engine)
    if layout == "attached twice":
        writer.attach(engine)
    engine.run(batches, max_epochs=1)
    rows = _read(tmp_path / "metrics_per_case.csv")
    assert [(r["case"], float(r["dice"])) for r in rows] == [("a.png", 0.5), ("b.png", 0.25), ("c.png", 1.0)]


def test_a_run_without_cases_replaces_the_tables_of_the_previous_run(tmp_path):
    details = {"dice": torch.tensor([[0.5]])}
    for cases, run_details in ((["a.png"], details), ([], {})):
        engine = Engine(lambda e, batch: None)

        @engine.on(Events.EPOCH_COMPLETED)
        def _set_details(e):
            e.state.metric_details = run_details

        CaseMetricsWriter(tmp_path).attach(engine)
        # a run whose every case failed to load: one iteration without a case
        engine.run(_batches(cases) or [[]], max_epochs=1)

    with open(tmp_path / "metrics_per_case.csv", newline="") as f:
        assert list(csv.reader(f)) == [["case", "name"]]
    with open(tmp_path / "metrics_summary.csv", newline="") as f:
        assert list(csv.reader(f)) == [["metric", "mean", "std", "median", "min", "max", "cases"]]


def _write_without_cases_on_rank_zero(rank: int, save_dir: str) -> None:
    engine = Engine(lambda e, batch: None)
    writer = CaseMetricsWriter(save_dir)

    # MONAI's metric handlers give every process the details of all the job's cases: here rank 1's one case
    @engine.on(Events.EPOCH_COMPLETED)
    def _set_details(e):
        e.state.metric_details = {"dice": torch.tensor([[0.5]])}

    writer.attach(engine)
    # rank 0's only case failed: its one iteration brought no case
    engine.run([[]] if rank == 0 else _batches(["b.png"]), max_epochs=1)


def test_a_process_without_cases_adds_no_row(tmp_path):
    run_in_two_processes(_write_without_cases_on_rank_zero, str(tmp_path))
    rows = _read(tmp_path / "metrics_per_case.csv")
    assert [r["case"] for r in rows] == ["b.png"]
