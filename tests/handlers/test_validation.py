from __future__ import annotations

import pytest
from ignite.engine import Engine
from monai_unets.handlers import FinalValidationHandler


class _Validator:
    def __init__(self):
        self.epochs: list[int] = []

    def run(self, epoch: int) -> None:
        self.epochs.append(epoch)


def _validated_trainer(handler: FinalValidationHandler) -> tuple[Engine, _Validator]:
    trainer, handler.validator = Engine(lambda engine, batch: None), _Validator()  # a stand-in that records runs
    handler.attach(trainer)
    return trainer, handler.validator


@pytest.mark.parametrize("max_epochs, expected", [(2, [2]), (5, [5]), (7, [5, 7]), (10, [5, 10])])
def test_validates_every_interval_and_after_the_last_epoch(max_epochs, expected):
    trainer, validator = _validated_trainer(FinalValidationHandler(interval=5))
    trainer.run([0], max_epochs=max_epochs)
    assert validator.epochs == expected


def test_a_run_that_trains_nothing_does_not_validate():
    from ignite.engine import Events

    trainer, validator = _validated_trainer(FinalValidationHandler(interval=5))

    def resumed_after_the_last_epoch(engine):
        engine.state.epoch, engine.state.iteration = 3, 3

    # a rerun of a finished training: the checkpoint puts the trainer at its last epoch when the run starts
    trainer.add_event_handler(Events.STARTED, resumed_after_the_last_epoch)
    trainer.run([0], max_epochs=3)
    # its unchanged weights validated with a changed plan had replaced the plan beside them
    assert validator.epochs == []


def test_epoch_level_only():
    with pytest.raises(ValueError):
        FinalValidationHandler(interval=5, epoch_level=False).attach(Engine(lambda e, b: None))


def test_time_limit_stops_training_and_the_last_weights_are_validated():
    from monai_unets.handlers import TrainingTimeLimit

    trainer, validator = _validated_trainer(FinalValidationHandler(interval=5))
    TrainingTimeLimit(minutes=1e-9, clock="cpu").attach(trainer)
    trainer.run([0, 1, 2], max_epochs=10)
    assert trainer.state.iteration == 1
    assert validator.epochs == [1]


def test_no_time_limit_runs_all_epochs():
    from monai_unets.handlers import TrainingTimeLimit

    trainer = Engine(lambda engine, batch: None)
    TrainingTimeLimit(None).attach(trainer)
    trainer.run([0, 1], max_epochs=3)
    assert trainer.state.iteration == 6


class _SlowValidator(_Validator):
    """Validation that takes `cost` seconds of (patched) clock time, as a large volume does."""

    def __init__(self, clock: list[float], cost: float):
        super().__init__()
        self.clock, self.cost = clock, cost

    def run(self, epoch: int) -> None:
        super().run(epoch)
        self.clock[0] += self.cost


def test_validation_keeps_to_its_share_of_the_run(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("monai_unets.handlers.validation.time.monotonic", lambda: clock[0])
    validator = _SlowValidator(clock, cost=10.0)

    def step(engine, batch):
        clock[0] += 1.0  # one second of training per epoch

    trainer = Engine(step)
    handler = FinalValidationHandler(interval=1, max_time_fraction=0.5)
    handler.validator = validator
    handler.attach(trainer)
    trainer.run([0], max_epochs=40)
    # every epoch is due and each validation costs 10 s; one runs only while validation so far is at most half of
    # the time since the start (epoch e ends at e + 10 * validations so far): 10 <= (10 + 10) / 2, 20 <= 40 / 2, ...
    assert validator.epochs == [1, 10, 20, 30, 40]
    unlimited = _Validator()
    trainer = Engine(step)
    handler = FinalValidationHandler(interval=1)
    handler.validator = unlimited
    handler.attach(trainer)
    trainer.run([0], max_epochs=40)
    assert unlimited.epochs == list(range(1, 41))


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_validation_share_out_of_range(fraction):
    with pytest.raises(ValueError, match="max_time_fraction"):
        FinalValidationHandler(interval=1, max_time_fraction=fraction)


def _stop_iteration(rank: int, port: int, results: str) -> None:
    import json

    import torch.distributed as dist
    from monai_unets.handlers import TrainingTimeLimit

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        trainer = Engine(lambda engine, batch: None)
        limit = TrainingTimeLimit(minutes=1.0)
        # each process's own clock: rank 1's passes the minute after its 2nd iteration, rank 0's after its 4th
        per_iteration = 61.0 / (2 if rank == 1 else 4)
        limit._clock = lambda: per_iteration * trainer.state.iteration
        limit.attach(trainer)
        trainer.run(list(range(10)), max_epochs=1)
        with open(f"{results}.{rank}", "w") as f:
            json.dump(trainer.state.iteration, f)
    finally:
        dist.destroy_process_group()


def test_the_processes_of_a_torchrun_job_stop_after_the_same_iteration(tmp_path):
    import json

    import torch.multiprocessing as mp

    from tests.distributed import free_port

    port = free_port()
    # each stopping after its own clock, one process would validate while the other waited in its next step
    mp.spawn(_stop_iteration, args=(port, str(tmp_path / "stop")), nprocs=2, join=True)
    stops = [json.loads((tmp_path / f"stop.{rank}").read_text()) for rank in (0, 1)]
    assert stops == [4, 4]
