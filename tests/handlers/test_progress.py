from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler
from monai_unets.handlers import ProgressLogger, format_duration


@pytest.fixture
def restore_logging():
    yield
    logging.disable(logging.NOTSET)


def _evaluator(num_cases: int, batch_size: int) -> Engine:
    engine = Engine(lambda engine, batch: None)
    cases = [{"image": torch.zeros(1, 2, 2)} for _ in range(num_cases)]
    engine.data_loader = torch.utils.data.DataLoader(cases, batch_size=batch_size)
    return engine


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "monai_unets.progress"]


def test_format_duration():
    assert format_duration(3725.4) == "1:02:05"
    assert format_duration(-3) == "0:00:00"


def test_evaluator_counts_cases_of_every_batch(caplog):
    engine = _evaluator(num_cases=5, batch_size=2)
    ProgressLogger("evaluation", interval_s=0).attach(engine)
    with caplog.at_level(logging.INFO, logger="monai_unets.progress"):
        engine.run(engine.data_loader)
    lines = _lines(caplog)
    assert [line.split(",")[0] for line in lines[:3]] == [
        "evaluation: case 2/5 (40.0%)",
        "evaluation: case 4/5 (80.0%)",
        "evaluation: case 5/5 (100.0%)",
    ]
    assert "ETA" in lines[0]
    assert lines[-1].startswith("evaluation: finished 5 cases in ")


def test_interval_keeps_the_first_and_the_last_case(caplog):
    engine = _evaluator(num_cases=6, batch_size=1)
    ProgressLogger("inference", interval_s=3600).attach(engine)
    with caplog.at_level(logging.INFO, logger="monai_unets.progress"):
        engine.run(engine.data_loader)
    assert [line.split(" (")[0] for line in _lines(caplog)[:-1]] == ["inference: case 1/6", "inference: case 6/6"]


def _trainer(max_epochs: int) -> SupervisedTrainer:
    """A trainer of 3 iterations an epoch."""
    network = torch.nn.Linear(2, 1)
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=[{"image": torch.zeros(2, 2), "label": torch.zeros(2, 1)} for _ in range(3)],
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=torch.nn.MSELoss(),
    )


def test_trainer_counts_iterations_over_every_epoch(caplog):
    trainer = _trainer(max_epochs=2)
    ProgressLogger("training", interval_s=0).attach(trainer)
    with caplog.at_level(logging.INFO, logger="monai_unets.progress"):
        trainer.run()
    lines = _lines(caplog)
    assert lines[0].startswith("training: epoch 1/2, iteration 1/6 (16.7%)")
    assert lines[5].startswith("training: epoch 2/2, iteration 6/6 (100.0%)")
    assert lines[-1].startswith("training: finished 6 iterations")


def test_a_resumed_run_counts_its_own_iterations(caplog):
    trainer = _trainer(max_epochs=4)
    ProgressLogger("training", interval_s=0).attach(trainer)

    def resume(engine):  # as the checkpoint's handler, attached after the logger: epochs 1-2 were done before
        engine.state.epoch, engine.state.iteration = 2, 6

    trainer.add_event_handler(Events.STARTED, resume)
    with caplog.at_level(logging.INFO, logger="monai_unets.progress"):
        trainer.run()
    lines = _lines(caplog)
    assert lines[0].startswith("training: epoch 3/4, iteration 7/12 (16.7%)")
    assert lines[-1].startswith("training: finished 6 iterations")


def test_a_resumed_run_with_no_epoch_left_did_no_iteration(caplog):
    trainer = _trainer(max_epochs=2)
    ProgressLogger("training", interval_s=0).attach(trainer)
    trainer.add_event_handler(Events.STARTED, lambda engine: setattr(engine.state, "epoch", 2))
    trainer.add_event_handler(Events.STARTED, lambda engine: setattr(engine.state, "iteration", 6))
    with caplog.at_level(logging.INFO, logger="monai_unets.progress"):
        trainer.run()
    assert _lines(caplog)[-1].startswith("training: finished 0 iterations")


def test_a_time_budget_bounds_the_eta(caplog, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("monai_unets.handlers.progress.time.monotonic", lambda: clock[0])
    network = torch.nn.Linear(2, 1)
    data = [{"image": torch.zeros(2, 2), "label": torch.zeros(2, 1)}]

    def slow_step(engine):
        clock[0] += 10.0  # 10 s per iteration: 10^6 epochs would take 115 days

    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=10**6,
        train_data_loader=data,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
        loss_function=torch.nn.MSELoss(),
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, slow_step)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), lambda engine: engine.terminate())
    ProgressLogger("training", interval_s=0, minutes=1.0).attach(trainer)
    with caplog.at_level(logging.INFO, logger="monai_unets.progress"):
        trainer.run()
    # after 10, 20 and 30 s of a 1-minute budget
    assert [line.split("ETA ")[1] for line in _lines(caplog)[:3]] == ["0:00:50", "0:00:40", "0:00:30"]


def test_quiet_logs_nothing_below_warning(restore_logging):
    records: list[logging.LogRecord] = []
    collector = logging.Handler(logging.DEBUG)
    collector.emit = records.append
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        engine = _evaluator(num_cases=2, batch_size=1)
        ProgressLogger("evaluation", interval_s=0, quiet=True).attach(engine)
        StatsHandler(iteration_log=False).attach(engine)  # MONAI's handler and ignite log at INFO
        engine.logger.setLevel(logging.INFO)
        engine.run(engine.data_loader)
        logging.getLogger("monai_unets").warning("still shown")
    finally:
        root.removeHandler(collector)
    assert [r.getMessage() for r in records] == ["still shown"]


def test_negative_interval_is_an_error():
    with pytest.raises(ValueError, match="interval_s"):
        ProgressLogger(interval_s=-1)


def test_failed_cases_count_toward_the_progress(caplog, tmp_path):
    from monai.data import DataLoader
    from monai.engines import SupervisedEvaluator
    from monai.transforms import Lambdad
    from monai_unets.data import CaseDataset
    from monai_unets.handlers import CaseIsolationHandler

    def read(value):
        if value % 2:
            raise ValueError("unreadable")
        return torch.zeros(1, 4, 4)

    dataset = CaseDataset([{"image": v} for v in range(6)], Lambdad("image", read))
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(dataset, batch_size=1, num_workers=0),
        network=torch.nn.Identity(),
        val_handlers=[CaseIsolationHandler(tmp_path / "failures.csv"), ProgressLogger("inference", interval_s=0)],
    )
    with caplog.at_level(logging.INFO, logger="monai_unets.progress"):
        evaluator.run()
    # the failed cases had been left out: the run seemed to stop half-way at "case 3/6" and then say "finished"
    assert _lines(caplog)[-2].startswith("inference: case 6/6 (100.0%)")
    assert _lines(caplog)[-1].startswith("inference: finished 6 cases")
